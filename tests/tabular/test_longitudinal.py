"""Longitudinal model: features from the scan and earlier scans only (a later scan changes no
earlier row), change per year by hand, fallback flagged, trained and evaluated on the tiny
demo store beside the other tabular models (same patient-grouped folds)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from sscmort_core import store as st
from sscmort_core.pipeline.evaluate import run_evaluation
from sscmort_core.pipeline.export_dicom import stored_predictions
from sscmort_core.tabular.longitudinal import (
    DAYS_PER_YEAR,
    LONGITUDINAL_FEATURES,
    MEASURES,
    SLOPES,
    fallback_scans,
    longitudinal_features,
    store_longitudinal_features,
)
from sscmort_core.tabular.train import train_tabular
from sscmort_core.views import comparison as cmp
from sscmort_core.views.radiomics import risk_lines_frame
from sscmort_core.views.radiomics_charts import risk_lines_chart


def _patient() -> pd.DataFrame:
    """One hand-made patient: A 2020-01-01, D a month later, B 2022-01-01 (731 days), E the
    same day as B, C 2024-01-01 (1461 days = 4 years); DLCO missing at B."""
    rows = [("A", "2020-01-01", 10.0, 60.0), ("D", "2020-01-31", 10.5, 61.0),
            ("B", "2022-01-01", 12.0, np.nan), ("E", "2022-01-01", 13.0, 58.0),
            ("C", "2024-01-01", 20.0, 50.0)]
    frame = pd.DataFrame(rows, columns=["scan_id", "scan_date", "ild_extent_pct",
                                        "dlco_pct_pred"])
    frame["patient_id"] = "p1"
    for m in MEASURES:
        if m not in frame:
            frame[m] = 5.0  # constant: change per year 0
    return frame


def test_change_per_year_by_hand():
    f = longitudinal_features(_patient())
    assert list(f.columns) == list(LONGITUDINAL_FEATURES)
    # A: first scan; D: a month later, no prior at least 3 months before: both fall back
    for s in ("A", "D"):
        assert f.loc[s, "has_prior"] == 0.0
        assert (f.loc[s, list(SLOPES)] == 0.0).all()
    assert f.loc["D", "years_since_first_scan"] == pytest.approx(30 / DAYS_PER_YEAR)
    assert f.loc["D", "ild_extent_pct"] == 10.5  # cross-sectional values kept
    # B: its priors are A and D (E is the same day, not a prior); least squares over A, D, B
    t = np.array([0.0, 30.0, 731.0]) / DAYS_PER_YEAR
    assert f.loc["B", "has_prior"] == 1.0
    assert f.loc["B", "ild_extent_pct_per_year"] == pytest.approx(
        np.polyfit(t, [10.0, 10.5, 12.0], 1)[0], rel=1e-12)
    # DLCO missing at B: slope over A and D only (a month apart)
    assert f.loc["B", "dlco_pct_pred_per_year"] == pytest.approx(1.0 / (30 / DAYS_PER_YEAR))
    # C at exactly 4 years: every earlier scan, B and E included
    tc = np.array([0.0, 30.0, 731.0, 731.0, 1461.0]) / DAYS_PER_YEAR
    assert f.loc["C", "years_since_first_scan"] == pytest.approx(4.0)
    assert f.loc["C", "ild_extent_pct_per_year"] == pytest.approx(
        np.polyfit(tc, [10.0, 10.5, 12.0, 13.0, 20.0], 1)[0], rel=1e-12)
    assert f.loc["C", "lung_volume_ml_per_year"] == 0.0  # constant measure


def test_two_scans_give_the_difference_over_the_interval():
    two = _patient().loc[lambda d: d["scan_id"].isin(["A", "C"])]
    f = longitudinal_features(two)
    assert f.loc["C", "ild_extent_pct_per_year"] == pytest.approx((20.0 - 10.0) / 4.0)
    assert f.loc["C", "dlco_pct_pred_per_year"] == pytest.approx((50.0 - 60.0) / 4.0)


def _random_cohort(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(30):
        days = np.sort(rng.choice(3000, size=rng.integers(1, 7), replace=False))
        for k, d in enumerate(days):
            rows.append({"scan_id": f"p{p}s{k}", "patient_id": f"p{p}",
                         "scan_date": pd.Timestamp("2015-01-01") + pd.Timedelta(days=int(d)),
                         **{m: rng.normal(50, 10) if rng.random() > 0.1 else np.nan
                            for m in MEASURES}})
    return pd.DataFrame(rows)


def test_a_later_scan_changes_no_earlier_row():
    cohort = _random_cohort(0)
    base = longitudinal_features(cohort)
    last = cohort.sort_values("scan_date").groupby("patient_id").tail(1)["scan_id"]
    perturbed = cohort.copy()
    rows = perturbed["scan_id"].isin(last)
    perturbed.loc[rows, list(MEASURES)] += 1000.0  # every patient's latest scan
    moved = perturbed.copy()
    moved.loc[rows, "scan_date"] += pd.Timedelta(days=400)  # and later still
    for other in (perturbed, moved, cohort.loc[~rows]):  # or removed altogether
        got = longitudinal_features(other)
        keep = ~got.index.isin(last)
        pd.testing.assert_frame_equal(got.loc[keep], base.loc[got.index[keep]])
    assert not longitudinal_features(perturbed).loc[last].equals(base.loc[last])


def test_store_features_use_only_earlier_scans(tiny_store):
    with st.open_store(tiny_store) as s:
        base = store_longitudinal_features(s)
        scans = st.scans_frame(s)
        latest = scans.sort_values("scan_date").groupby("patient_id").tail(1)["scan_id"]
        with s.transaction() as cur:
            cur.execute(f"UPDATE qct SET ild_extent_pct = ild_extent_pct + 50, "
                        f"lung_volume_ml = lung_volume_ml * 2 WHERE "
                        f"{st.in_clause('scan_id', list(latest))}", list(latest))
        after = store_longitudinal_features(s)
    earlier = ~base.index.isin(latest)
    assert earlier.sum() > 0
    pd.testing.assert_frame_equal(after.loc[earlier], base.loc[earlier])
    assert (after.loc[latest, "ild_extent_pct"] != base.loc[latest, "ild_extent_pct"]).all()
    first = scans.sort_values("scan_date").groupby("patient_id").head(1)["scan_id"]
    assert (base.loc[first, "has_prior"] == 0).all()  # a patient's first scan falls back


@pytest.fixture(scope="module")
def trained(tiny_store_template, tmp_path_factory):
    root = tmp_path_factory.mktemp("longitudinal")
    path = root / "store.duckdb"
    shutil.copy(tiny_store_template, path)
    with st.open_store(path) as s:
        (lid,) = train_tabular(s, "longitudinal", models_dir=root / "m", folds=3, seed=0)
        (gid,) = train_tabular(s, "goh", models_dir=root / "m", folds=3, seed=0)
        run_evaluation(s, model_ids=[lid, gid], n_boot=50, seed=0)
    return path, lid, gid


def test_trains_in_the_same_folds_and_is_evaluated_and_compared(trained):
    path, lid, gid = trained
    with st.open_store(path, read_only=True) as s:
        preds = st.predictions_frame(s, [lid, gid])
        metrics = st.metrics_for_models(s, [lid])
        choices = {c.model_id: c for c in cmp.model_choices(s)}
        row = st.model_row(s, lid)
        flags = fallback_scans(s)
        scans = st.scans_frame(s)
    folds = preds.pivot_table(index="scan_id", columns="model_id", values="fold",
                              aggfunc="first")
    assert (folds[lid] == folds[gid]).all()  # same scans, same patient-grouped folds
    assert choices[lid].kind == "longitudinal" and choices[lid].has_metrics
    auc = metrics.loc[metrics["metric"] == "auc"]
    assert len(auc) == 3 and auc["n_events"].notna().all()
    assert auc.loc[auc["value"].notna(), "ci_low"].notna().all()
    extra = json.loads(row["card"])
    assert "survival likelihood" in extra["likelihood"]
    n_first = scans["patient_id"].nunique()
    assert extra["longitudinal"]["scans_fallback_cross_sectional"] == \
        int((~flags["has_prior"]).sum()) >= n_first
    assert set(extra["features"]) >= {"ild_extent_pct_per_year", "fvc_pct_pred_per_year",
                                      "years_since_first_scan"}


def test_timeline_draws_the_longitudinal_risk_with_the_fallback_flag(trained):
    path, lid, _ = trained
    with st.open_store(path, read_only=True) as s:
        pid = st.scans_frame(s)["patient_id"].value_counts().index[0]  # most scans
        frame = risk_lines_frame(s, pid)
        own = st.scans_frame(s, pid).sort_values("scan_date")
        labels = cmp.model_labels(s)
        # the DICOM SR of a stored scan names its models as the pages do too
        sr = stored_predictions(s, own["scan_id"].iloc[-1], pid)
        assert sr and {p.model_id: p.label for p in sr} == {p.model_id: labels[p.model_id]
                                                          for p in sr}
        # one patient's fallback flags, computed from their scans alone, equal the store's
        whole = fallback_scans(s).set_index("scan_id")["has_prior"]
        mine_flags = fallback_scans(s, pid).set_index("scan_id")["has_prior"]
        assert len(mine_flags) == len(own) and whole.loc[mine_flags.index].equals(mine_flags)
    # the legend names each model as Model comparison does (one naming layer)
    assert dict(zip(frame["model_id"], frame["model"])) == {
        m: labels[m] for m in frame["model_id"].unique()}
    mine = frame.loc[frame["model_id"] == lid]
    assert set(mine["scan_id"]) == set(own["scan_id"]) and len(mine) == 3 * len(own)
    first = own["scan_id"].iloc[0]
    assert mine.loc[mine["scan_id"] == first, "fallback"].all()
    assert not mine.loc[mine["scan_id"] == own["scan_id"].iloc[-1], "fallback"].any()
    assert not frame.loc[frame["model_id"] != lid, "fallback"].any()
    spec = risk_lines_chart(mine).to_dict()
    assert len(spec["layer"]) == 3  # lines, points and the fallback rings
