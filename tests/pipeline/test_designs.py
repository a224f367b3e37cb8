"""Validation designs: temporal and external splits, refits on the training part only, stored
test-part predictions, metrics by the evaluation code, and refusals.

The store (tests/pipeline/design_store.py) holds 160 synthetic patients (588 scans, 2005-2022)
as two sources, QCT rows made from the true ILD extent, the oracle and a "deep" model; a QCT
discrete-time survival recipe is registered without its cross-validation (a design reads only
the recipe).
"""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pytest

from sscmort_core import store as st
from sscmort_core.errors import DataError, StoreError
from sscmort_core.evaluation import PER_SCAN, auc_with_ci
from sscmort_core.labels import label_scans
from sscmort_core.pipeline import designs as ds
from sscmort_core.tabular.holdout import fit_holdout
from tests.pipeline.design_store import (
    SOURCES,
    build_design_store,
    register_oracle_and_deep,
    register_recipe,
)

CUT = dt.date(2015, 1, 1)
N_BOOT = 100
RECIPE = "qct-discrete_time-recipe"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("designs") / "designs.duckdb"
    build_design_store(path)
    register_oracle_and_deep(path)
    register_recipe(path)
    return path


@pytest.fixture()
def store_path(template, tmp_path):
    dest = tmp_path / "designs.duckdb"
    shutil.copy(template, dest)
    return dest


def _scans(path) -> pd.DataFrame:
    with st.open_store(path, read_only=True) as s:
        scans = st.scans_frame(s)
        source = st.patients_frame(s).set_index("patient_id")["source"]
    return scans.assign(patient_source=scans["patient_id"].map(source),
                        scan_date=pd.to_datetime(scans["scan_date"]))


@pytest.mark.parametrize("all_patients", [False, True])
def test_temporal_split_never_puts_a_later_scan_in_training(store_path, all_patients):
    design = ds.ValidationDesign("temporal", before=CUT, all_patients=all_patients)
    with st.open_store(store_path, read_only=True) as s:
        split = ds.design_split(s, design)
    scans = _scans(store_path).set_index("scan_id")
    train = scans.loc[list(split.train_scan_ids)]
    test = scans.loc[list(split.test_scan_ids)]
    day = pd.Timestamp(CUT)
    assert (train["scan_date"] < day).all() and (test["scan_date"] >= day).all()
    assert len(train) == int((scans["scan_date"] < day).sum())  # every earlier scan trains
    shared = set(train["patient_id"]) & set(test["patient_id"])
    assert split.n_shared_patients == len(shared)
    if all_patients:
        assert len(test) == int((scans["scan_date"] >= day).sum()) and shared
    else:  # new patients only: nobody tested was seen before the date
        assert not shared and split.n_left_out > 0
        assert len(train) + len(test) + split.n_left_out == len(scans)


def test_temporal_refit_never_sees_test_outcomes_or_later_scans(store_path):
    design = ds.ValidationDesign("temporal", before=CUT)
    with st.open_store(store_path, read_only=True) as s:
        split = ds.design_split(s, design)
        first = fit_holdout(s, RECIPE, split.train_scan_ids, split.test_scan_ids)
    test_patients = _scans(store_path).set_index("scan_id").loc[
        list(split.test_scan_ids), "patient_id"].unique().tolist()
    left_out = sorted(set(_scans(store_path)["scan_id"]) - set(split.train_scan_ids)
                      - set(split.test_scan_ids))
    with st.open_store(store_path) as s, s.transaction() as cur:
        # every tested patient survives to the end of follow-up, and the later scans of
        # patients seen before the cut (in neither part) get other QCT values
        cur.execute(f"UPDATE patients SET death_date = NULL, last_followup_date = "
                    f"DATE '2024-06-30' WHERE patient_id IN "
                    f"({','.join('?' * len(test_patients))})", test_patients)
        cur.execute(f"UPDATE qct SET ild_extent_pct = 99 WHERE scan_id IN "
                    f"({','.join('?' * len(left_out))})", left_out)
    with st.open_store(store_path, read_only=True) as s:
        again = fit_holdout(s, RECIPE, split.train_scan_ids, split.test_scan_ids)
    assert again.scan_ids == first.scan_ids
    np.testing.assert_array_equal(again.risks, first.risks)
    assert first.n_train_scans == len(split.train_scan_ids)
    # ...while the training patients' outcomes do move them (the check can fail)
    train_patients = _scans(store_path).set_index("scan_id").loc[
        list(split.train_scan_ids), "patient_id"].unique().tolist()
    with st.open_store(store_path) as s, s.transaction() as cur:
        cur.execute(f"UPDATE patients SET death_date = NULL, last_followup_date = "
                    f"DATE '2024-06-30' WHERE patient_id IN "
                    f"({','.join('?' * len(train_patients[::2]))})", train_patients[::2])
    with st.open_store(store_path, read_only=True) as s:
        moved = fit_holdout(s, RECIPE, split.train_scan_ids, split.test_scan_ids)
    assert np.abs(moved.risks - first.risks).max() > 1e-3
    assert (np.diff(first.risks, axis=1) >= 0).all()  # monotone across horizons


def test_run_design_stores_the_test_part_and_its_metrics_by_the_label_rule(store_path):
    design = ds.ValidationDesign("temporal", before=CUT)
    with st.open_store(store_path) as s:
        run = ds.run_design(s, design, n_boot=N_BOOT)
        stored = st.predictions_frame(s, split=design.split)
        metrics_rows = len(st.metrics_frame(s))
    assert set(run.model_ids) == {RECIPE, "oracle"}
    assert [m for m, _ in run.skipped] == ["deep-test"]  # deep: cross-validation only
    assert set(stored["scan_id"]) == set(run.split.test_scan_ids)
    assert stored["fold"].isna().all() and metrics_rows == 0  # design metrics are not stored
    scans = _scans(store_path).set_index("scan_id").loc[list(run.split.test_scan_ids)]
    for r in run.results:
        lab = label_scans(scans["scan_date"].dt.date, scans["death_date"],
                          scans["last_followup_date"], r.horizon_years)
        a = r.get("auc")
        assert (a.n_scans, a.n_events) == (int(lab.known.sum()), lab.n_positive)
        assert a.estimand == PER_SCAN and a.ci_low <= a.value <= a.ci_high
        # the same AUC and patient-bootstrap CI as the evaluation code on the stored rows
        risk = stored.loc[(stored["model_id"] == r.model_id)
                          & (stored["horizon_years"] == r.horizon_years)].set_index("scan_id")
        known = scans.index[lab.known]
        ref = auc_with_ci(lab.positive[lab.known].astype(np.int8),
                          risk.loc[known, "risk"].to_numpy(),
                          scans.loc[known, "patient_id"].to_numpy(), n_boot=N_BOOT, seed=0)
        assert (a.value, a.ci_low, a.ci_high) == pytest.approx((ref.auc, ref.ci_low,
                                                                ref.ci_high))
        assert r.get("uno_c").ci_low is not None and r.get("ipcw_brier").n_events >= 0
    j = run.to_json()
    assert j["split"] == design.split and j["metrics_stored"] is False


def test_external_design_trains_on_one_source_and_scores_the_other(store_path):
    design = ds.ValidationDesign("external", train_source=SOURCES[0], test_source=SOURCES[1])
    with st.open_store(store_path) as s:
        run = ds.run_design(s, design, model_ids=[RECIPE], n_boot=N_BOOT)
        stored = st.predictions_frame(s, split=design.split)
    scans = _scans(store_path).set_index("scan_id")
    assert set(scans.loc[list(run.split.train_scan_ids), "patient_source"]) == {SOURCES[0]}
    assert set(scans.loc[stored["scan_id"].unique(), "patient_source"]) == {SOURCES[1]}
    assert len(stored["scan_id"].unique()) == int((scans["patient_source"] == SOURCES[1]).sum())
    assert run.split.n_shared_patients == 0
    assert all(r.get("auc").value > 0.6 for r in run.results)  # QCT carries signal
    # the other source's outcomes never enter the fit
    pids = scans.loc[scans["patient_source"] == SOURCES[1], "patient_id"].unique().tolist()
    with st.open_store(store_path) as s, s.transaction() as cur:
        cur.execute(f"UPDATE patients SET death_date = NULL WHERE patient_id IN "
                    f"({','.join('?' * len(pids))})", pids)
    with st.open_store(store_path, read_only=True) as s:
        again = fit_holdout(s, RECIPE, run.split.train_scan_ids, run.split.test_scan_ids)
    risk = stored.pivot(index="scan_id", columns="horizon_years", values="risk")
    np.testing.assert_allclose(again.risks, risk.loc[list(again.scan_ids)].to_numpy())
    assert [d.split for d in ds.stored_designs(st.open_store(store_path, read_only=True))] \
        == [design.split]


def test_split_names_round_trip():
    for d in (ds.ValidationDesign("temporal", before=CUT),
              ds.ValidationDesign("temporal", before=CUT, all_patients=True),
              ds.ValidationDesign("external", train_source="a.b_c-1", test_source="z")):
        assert ds.ValidationDesign.from_split(d.split) == d
    with pytest.raises(ValueError, match="of this version"):  # another refit's rows
        ds.ValidationDesign.from_split("design:temporal:2015-01-01:new@v0")


@pytest.mark.parametrize("design, message", [
    (lambda: ds.ValidationDesign("external", train_source=SOURCES[0],
                                 test_source="registry-x"),
     "no patient from source 'registry-x'; sources in the store: registry-a, registry-b"),
    (lambda: ds.ValidationDesign("temporal", before=dt.date(2006, 1, 1)),
     "training part: too few events"),
    (lambda: ds.ValidationDesign("temporal", before=dt.date(2030, 1, 1)),
     "test part: no scan with a known outcome"),
])
def test_refused_designs_name_the_problem_and_write_nothing(store_path, design, message):
    with st.open_store(store_path) as s:
        with pytest.raises(DataError, match=message.replace("(", r"\(")):
            ds.run_design(s, design(), n_boot=N_BOOT)
        assert st.prediction_splits(s, prefix=ds.DESIGN_PREFIX).empty


def test_refusals_before_any_fit(store_path):
    with pytest.raises(DataError, match="both 'a'"):
        ds.ValidationDesign("external", train_source="a", test_source="a")
    with pytest.raises(DataError, match="needs a date"):
        ds.ValidationDesign("temporal")
    design = ds.ValidationDesign("temporal", before=CUT)
    with st.open_store(store_path) as s:
        with pytest.raises(DataError, match="deep-test is a deep model; deep models have only"):
            ds.run_design(s, design, model_ids=[RECIPE, "deep-test"], n_boot=N_BOOT)
    with st.open_store(store_path, read_only=True) as s:
        with pytest.raises(StoreError, match="read-only"):
            ds.run_design(s, design, n_boot=N_BOOT)
