"""Clinical reference models: Goh staging by hand, PFTs at the scan date, and the reference
kinds trained and compared on the same scans as the imaging models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd

from sscmort_core import store as st
from sscmort_core.pipeline import evaluate as ev
from sscmort_core.tabular import io as tab_io
from sscmort_core.tabular.clinical import (
    CLINICAL_FEATURES,
    goh_extensive,
    pft_at_scan,
    reference_features,
    sadl_points,
)
from sscmort_core.tabular.train import train_tabular
from sscmort_core.views import comparison as cmp


def test_goh_staging_by_hand():
    """Goh et al. 2008: extent > 20% extensive; 10-30% with FVC < 70% extensive."""
    extent = np.array([25.0, 15.0, 15.0, 5.0, 25.0, 15.0, np.nan, 30.0, 10.0, 35.0])
    fvc = np.array([80.0, 65.0, 75.0, 50.0, np.nan, np.nan, 60.0, 69.9, 69.9, 90.0])
    want = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, np.nan, 1.0, 1.0, 1.0]
    np.testing.assert_array_equal(goh_extensive(extent, fvc), want)


def test_sadl_points_by_hand():
    """Morisset et al. 2017 points: ever smoked 1; age < 55 0, 55-70 1, > 70 2; DLCO > 60% 0,
    40-60% 3, < 40% 4; missing smoking or DLCO gives no score."""
    smoker = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, np.nan, 1.0, 0.0])
    age = np.array([40.0, 54.9, 55.0, 70.0, 70.1, 80.0, 60.0, 60.0, 50.0])
    dlco = np.array([80.0, 60.1, 60.0, 40.0, 39.9, 61.0, 50.0, np.nan, 20.0])
    want = [0.0, 1.0, 5.0, 4.0, 7.0, 2.0, np.nan, np.nan, 4.0]
    np.testing.assert_array_equal(sadl_points(smoker, age, dlco), want)


def test_pfts_are_the_latest_on_or_before_the_scan_within_a_year():
    scans = pd.DataFrame({"scan_id": ["a", "b", "c"], "patient_id": ["p", "p", "q"],
                          "scan_date": pd.to_datetime(["2020-06-01", "2022-06-01",
                                                       "2020-01-01"])})
    clinical = pd.DataFrame({
        "patient_id": ["p", "p", "p", "q"],
        "date": pd.to_datetime(["2020-05-01", "2020-07-01", "2021-01-01", "2020-01-02"]),
        "fvc_pct_pred": [70.0, 71.0, 72.0, 90.0], "dlco_pct_pred": [50.0, 51.0, 52.0, 60.0]})
    got = pft_at_scan(scans, clinical)
    assert got.loc["a", "fvc_pct_pred"] == 70.0  # not the later one
    assert np.isnan(got.loc["b", "fvc_pct_pred"])  # latest is 17 months before
    assert np.isnan(got.loc["c", "dlco_pct_pred"])  # only a measurement after the scan


def test_reference_models_train_on_the_same_scans_and_compare(tiny_store_template, tmp_path):
    path = tmp_path / "store.duckdb"
    shutil.copy(tiny_store_template, path)
    with st.open_store(path) as s:
        ids = {k: train_tabular(s, k, models_dir=tmp_path / "m", folds=3, seed=0)
               for k in ("goh", "sadl", "clinical", "clinical_qct")}
        sadl = reference_features(s, "sadl", ())
        smokers = st.patients_frame(s).set_index("patient_id")["ever_smoker"]
        cards = st.models_frame(s).set_index("model_id")["card"].map(json.loads)
        clinical = tab_io.feature_matrix(s, "clinical")
        qct = tab_io.feature_matrix(s, "qct")
        preds = st.predictions_frame(s, [m for v in ids.values() for m in v])
        tests = ev.paired_tests(s, [ids["clinical_qct"][0], ids["clinical"][0]], 3, n_boot=100,
                                min_events=1)
        pair = [ids["clinical_qct"][0], ids["clinical"][0], ids["goh"][0]]
        ev.run_evaluation(s, model_ids=pair, n_boot=50, min_events=1, horizons=(3,))
        best = cmp.best_clinical(s, pair, 3)
        aucs = st.metrics_for_models(s, pair).query("metric == 'auc'").set_index("model_id")
        kinds = st.models_frame(s).set_index("model_id")["kind"].to_dict()
        volume_kinds = set(st.models_frame(s).set_index("model_id")
                           .loc[tab_io.tabular_model_ids(s), "kind"])
    assert set(clinical.feature_names) <= set(CLINICAL_FEATURES)
    assert {"age_years", "fvc_pct_pred", "dlco_pct_pred"} <= set(clinical.feature_names)
    assert cards[ids["goh"][0]]["features"] == ["goh_extensive"]
    assert cards[ids["sadl"][0]]["features"] == ["sadl_points"]
    # each card says which settings were fixed before looking and which chosen inside folds
    sadl_settings = cards[ids["sadl"][0]]["settings"]
    assert sadl_settings["SADL points (smoking, age, DLCO)"].startswith("fixed before looking")
    assert "nested CV" in sadl_settings["C (L2 strength)"]
    assert any(k.startswith("stage thresholds") for k in cards[ids["goh"][0]]["settings"])
    assert not any(k.startswith(("SADL", "stage")) for k in cards[ids["clinical"][0]]["settings"])
    assert smokers.notna().all() and smokers.any() and not smokers.all()  # stored by the demo
    points = sadl["sadl_points"].dropna()
    assert len(points) > 0 and set(points) <= set(range(8)) and points.nunique() > 2
    both = set(cards[ids["clinical_qct"][0]]["features"])
    assert {"ild_extent_pct", "age_years"} <= both <= set(qct.feature_names) | set(
        clinical.feature_names)
    assert cards[ids["clinical"][0]]["label"].startswith("Clinical discrete-time survival")
    n_scans = preds.groupby("model_id")["scan_id"].nunique()
    assert n_scans.nunique() == 1  # every model predicts every scan, out of fold
    assert len(n_scans) == 4
    assert len(tests) == 1 and tests[0].n_scans > 0
    assert best == aucs.loc[pair[1:], "value"].idxmax()  # goh or clinical, never + QCT
    added = cmp.added_value_frame(tests, {}, kinds, ids["clinical"][0])
    c = tests[0].comparison
    assert len(added) == 1 and added["imaging model"][0] == ids["clinical_qct"][0]
    assert added.iloc[0, 1] == c.delong.auc_a - c.delong.auc_b  # imaging minus clinical
    assert added["CI low"][0] == c.bootstrap.ci_low and added["p (clustered)"][0] == c.p_value
    flipped = cmp.added_value_frame(tests, {}, kinds, ids["clinical_qct"][0])
    assert flipped.empty  # the clinical model is no imaging model
    assert volume_kinds == set()  # reference kinds never predict from a volume alone
