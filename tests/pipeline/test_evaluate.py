"""Evaluation runs over a store: stored metrics, NULL rows with notes, paired tests, CLI.

The store is the tiny synthetic demo store (12 patients, built by the real pipeline, with the
generator's true risks registered as the "oracle" model). A second model, "noisy", is made
here: the oracle's risk with Gaussian noise on the logit scale (sd 1), registered like any
model, so nothing depends on other model kinds existing.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from sscmort_core import cli
from sscmort_core import store as st
from sscmort_core.errors import UnknownModelError
from sscmort_core.evaluation import auc_with_ci, concordance_index
from sscmort_core.labels import HORIZONS_YEARS, label_scans, time_to_event_years
from sscmort_core.pipeline import evaluate as ev
from sscmort_core.pipeline.eval_data import load_horizon_data
from sscmort_core.views import comparison as cmp
from sscmort_core.views import study

N_BOOT = 200  # enough to exercise the bootstrap; CI values are compared with the same seed


def add_noisy_model(path, model_id: str = "noisy", sd: float = 1.0, seed: int = 7,
                    scan_ids: list[str] | None = None) -> None:
    """Register ``model_id`` with OOF risks = expit(logit(oracle risk) + N(0, sd))."""
    with st.open_store(path) as s:
        oracle = st.predictions_frame(s, ["oracle"])
        if scan_ids is not None:
            oracle = oracle.loc[oracle["scan_id"].isin(scan_ids)]
        rng = np.random.default_rng(seed)
        noise = dict(zip(oracle["scan_id"].unique(), rng.normal(0.0, sd, oracle["scan_id"]
                                                                    .nunique())))
        risk = expit(logit(np.clip(oracle["risk"], 1e-6, 1 - 1e-6))
                     + oracle["scan_id"].map(noise))
        preds = oracle.assign(model_id=model_id, risk=risk, fold=0)
        with s.transaction() as cur:
            st.upsert_model(cur, model_id=model_id, kind="deep", backbone="resnet18",
                            version="1", config={"test": True}, data_hash=None,
                            weights_path=None, weights_sha256=None, card={}, synthetic=True)
            st.insert_frame(cur, "predictions", preds)


@pytest.fixture()
def store_path(tiny_store):
    add_noisy_model(tiny_store)
    return tiny_store


def _labels_and_scans(path):
    with st.open_store(path, read_only=True) as s:
        return st.scans_frame(s), st.predictions_frame(s, ["noisy"])


def test_metrics_stored_with_label_rule_counts(store_path):
    with st.open_store(store_path) as s:
        run = ev.run_evaluation(s, n_boot=N_BOOT, seed=0)
        stored = st.metrics_frame(s)
    assert run.model_ids == ("noisy", "oracle", "oracle_imaging")  # kind, then id
    # 3 models (noisy and both oracles) x 3 horizons x every metric, every row written
    assert run.rows_written == len(stored) == 3 * 3 * len(ev.METRICS)
    scans, preds = _labels_and_scans(store_path)
    for h in HORIZONS_YEARS:
        lab = label_scans(scans["scan_date"], scans["death_date"], scans["last_followup_date"], h)
        rows = stored.loc[(stored["horizon_years"] == h)
                          & stored["metric"].isin(["auc", "brier", "calibration_slope"])]
        # binary-metric rows count the labelled (uncensored) scans and their deaths
        assert (rows["n_scans"] == int(lab.known.sum())).all()
        assert (rows["n_events"] == lab.n_positive).all()
        assert (rows["n_patients"] == scans.loc[lab.known, "patient_id"].nunique()).all()
        c_rows = stored.loc[(stored["horizon_years"] == h) & (stored["metric"] == "c_index")]
        assert (c_rows["n_scans"] == len(scans)).all()  # C-index keeps censored scans
        assert (c_rows["n_events"] == scans["death_date"].notna().sum()).all()


def test_stored_values_match_the_metric_functions(store_path):
    """The stored AUC and CI equal auc_with_ci on the labelled scans (same seed); the stored
    C-index equals concordance_index on all scans: the run only routes data."""
    with st.open_store(store_path) as s:
        ev.run_evaluation(s, model_ids=["noisy"], n_boot=N_BOOT, seed=3, min_events=1)
        stored = st.metrics_frame(s).set_index(["horizon_years", "metric"])
    scans, preds = _labels_and_scans(store_path)
    h = 5
    p = preds.loc[preds["horizon_years"] == h].merge(scans, on="scan_id")
    lab = label_scans(p["scan_date"], p["death_date"], p["last_followup_date"], h)
    y = lab.positive[lab.known].astype(int)
    expected = auc_with_ci(y, p["risk"][lab.known], p["patient_id"][lab.known],
                           n_boot=N_BOOT, seed=3)
    row = stored.loc[(h, "auc")]
    assert row["value"] == pytest.approx(expected.auc, abs=1e-12)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.ci_low, expected.ci_high))
    t, e = time_to_event_years(p["scan_date"], p["death_date"], p["last_followup_date"])
    assert stored.loc[(h, "c_index"), "value"] == pytest.approx(
        concordance_index(t, e, p["risk"]), abs=1e-12)


def test_rerun_replaces_rows_of_the_same_models_only(store_path):
    with st.open_store(store_path) as s:
        ev.run_evaluation(s, n_boot=N_BOOT, seed=0)
        with s.transaction() as cur:  # a stale row of a metric no longer computed
            st.insert_frame(cur, "metrics", pd.DataFrame([{
                "model_id": "noisy", "horizon_years": 3, "metric": "old_metric", "value": 1.0,
                "ci_low": None, "ci_high": None, "n_scans": 1, "n_patients": 1, "n_events": 1,
                "note": None}]))
        before = st.metrics_frame(s)
        ev.run_evaluation(s, model_ids=["noisy"], n_boot=N_BOOT, seed=1)
        after = st.metrics_frame(s)
    assert "old_metric" not in set(after["metric"])
    assert len(after) == len(before) - 1
    oracle_before = before.loc[before["model_id"] == "oracle"].drop(columns="created_at")
    oracle_after = after.loc[after["model_id"] == "oracle"].drop(columns="created_at")
    pd.testing.assert_frame_equal(oracle_before.reset_index(drop=True),
                                  oracle_after.reset_index(drop=True))


def test_too_few_events_gives_null_rows_with_a_note(store_path):
    scans, _ = _labels_and_scans(store_path)
    pos_1y = label_scans(scans["scan_date"], scans["death_date"], scans["last_followup_date"],
                         1).n_positive
    with st.open_store(store_path) as s:
        # one more than the 1-year positives: 1 y cannot be evaluated, by construction
        run = ev.run_evaluation(s, model_ids=["noisy"], n_boot=N_BOOT, min_events=pos_1y + 1)
        stored = st.metrics_frame(s)
    one = stored.loc[stored["horizon_years"] == 1]
    assert len(one) == len(ev.METRICS)
    assert one["value"].isna().all()
    assert one["note"].str.contains(f"too few events: {pos_1y} death").all()
    assert run.results[0].get("auc").value is None


def test_model_predicting_few_scans_does_not_fail_the_run(store_path):
    scans, _ = _labels_and_scans(store_path)
    add_noisy_model(store_path, "tiny_subset", scan_ids=scans["scan_id"].iloc[:3].tolist())
    with st.open_store(store_path) as s:
        run = ev.run_evaluation(s, n_boot=N_BOOT)
        stored = st.metrics_frame(s)
    assert "tiny_subset" in run.model_ids
    sub = stored.loc[stored["model_id"] == "tiny_subset"]
    assert sub["value"].isna().all() and sub["note"].notna().all()
    assert stored.loc[(stored["model_id"] == "oracle") & (stored["metric"] == "auc")
                      & (stored["horizon_years"] == 5), "value"].notna().all()


def test_paired_tests_are_symmetric(store_path):
    with st.open_store(store_path) as s:
        ab = ev.paired_tests(s, ["noisy", "oracle"], 5, n_boot=N_BOOT, seed=2, min_events=1)
        ba = ev.paired_tests(s, ["oracle", "noisy"], 5, n_boot=N_BOOT, seed=2, min_events=1)
    (x,), (y,) = ab, ba
    assert (x.model_a, x.model_b) == ("noisy", "oracle") and x.comparison is not None
    dx, dy = x.comparison, y.comparison
    assert dx.delong.auc_diff == pytest.approx(-dy.delong.auc_diff, abs=1e-12)
    assert dx.delong.p_value == pytest.approx(dy.delong.p_value, abs=1e-12)
    assert dx.bootstrap.p_value == dy.bootstrap.p_value  # same resamples, swapped signs
    assert (dx.bootstrap.ci_low, dx.bootstrap.ci_high) == pytest.approx(
        (-dy.bootstrap.ci_high, -dy.bootstrap.ci_low), abs=1e-12)
    assert x.n_scans == y.n_scans and x.n_events == y.n_events


def test_model_against_itself_has_no_difference(store_path):
    """Golden: identical scores give DeLong diff 0 with p = 1 (se 0 by definition in
    delong_test) and bootstrap CI [0, 0]."""
    add_noisy_model(store_path, "noisy_copy")  # same seed and sd: the same risks
    with st.open_store(store_path) as s:
        (t,) = ev.paired_tests(s, ["noisy", "noisy_copy"], 5, n_boot=N_BOOT, min_events=1)
    assert t.comparison.delong.auc_diff == 0.0 and t.comparison.delong.p_value == 1.0
    assert (t.comparison.bootstrap.ci_low, t.comparison.bootstrap.ci_high) == (0.0, 0.0)


def test_curves_tables_and_best_models(store_path):
    with st.open_store(store_path) as s:
        ev.run_evaluation(s, n_boot=N_BOOT, min_events=1)
        roc = cmp.roc_frames(s, ["noisy", "oracle"], 5, min_events=1)
        cal = cmp.calibration_frames(s, ["noisy", "oracle"], 5, min_events=1)
        dec = cmp.decision_frames(s, ["noisy", "oracle"], 5, min_events=1)
        table = cmp.metrics_table(s, ["noisy", "oracle"])
        best = cmp.best_models(s)
        stored = st.metrics_frame(s).set_index(["model_id", "horizon_years", "metric"])
    for m in ("noisy", "oracle"):  # the thinned ROC keeps the area: trapezoids = stored AUC
        part = roc.frame.loc[roc.frame["model_id"] == m]
        area = float(np.sum(np.diff(part["fpr"]) * (part["tpr"].to_numpy()[1:]
                                                    + part["tpr"].to_numpy()[:-1]) / 2))
        assert area == pytest.approx(stored.loc[(m, 5, "auc"), "value"], abs=1e-12)
    # (on the 12-patient store an AUC can be 1.000)
    assert roc.frame["model"].str.contains(r"AUC [01]\.\d{3} \[[01]\.\d{3}, ").all()
    assert set(cal.frame["model_id"]) == {"noisy", "oracle"}
    assert {"Treat all", "Treat none"} <= set(dec.frame["model"])
    reported = table.loc[table["kind"] == "reported"]
    assert reported.loc[reported["horizon (years)"] == 3, "AUC"].dropna().tolist() == [0.801]
    assert set(table.columns) == set(cmp.TABLE_COLUMNS)
    assert all(b.model_id == "noisy" for b in best)  # the oracle is never "best"
    assert [b.horizon_years for b in best] == [1, 3, 5]


def test_horizon_with_too_few_events_draws_no_curve(store_path):
    with st.open_store(store_path) as s:
        roc = cmp.roc_frames(s, ["noisy"], 1, min_events=10_000)
    assert roc.empty and "too few events" in roc.unavailable[0][1]


def test_unknown_model_is_a_named_error_and_writes_nothing(store_path):
    with st.open_store(store_path) as s:
        with pytest.raises(UnknownModelError, match="unknown model id.*nope"):
            ev.run_evaluation(s, model_ids=["nope"])
        assert st.metrics_frame(s).empty  # nothing written


def test_cli_evaluate_json(store_path, capsys):
    rc = cli.main(["evaluate", "--store", str(store_path), "--json", "--quiet",
                   "--n-boot", str(N_BOOT), "--models", "oracle", "noisy"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["models"]) == {"oracle", "noisy"}
    assert set(out["models"]["oracle"]) == {"1", "3", "5"}
    assert set(out["models"]["oracle"]["5"]) == set(ev.METRICS)
    assert out["n_boot"] == N_BOOT


def test_cli_evaluate_unknown_model_exits_2_with_one_line(store_path, capsys):
    rc = cli.main(["evaluate", "--store", str(store_path), "--models", "nope"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_BAD_INPUT
    assert err.strip().count("\n") == 0 and "unknown model id(s) nope" in err


def test_cli_evaluate_missing_store_exits_2(tmp_path, capsys):
    missing = tmp_path / "absent.duckdb"
    assert cli.main(["evaluate", "--store", str(missing)]) == cli.EXIT_BAD_INPUT
    assert "no store at this path" in capsys.readouterr().err
    assert not missing.exists()


def test_reported_aucs_are_the_studys():
    """Golden values from the study's abstract (arXiv 2509.23530)."""
    deep = {r.horizon_years: r.auc_low for r in study.STUDY_REPORTED_AUCS if r.group == "deep"}
    assert deep == {1: 0.769, 3: 0.801, 5: 0.709}
    (rad,) = [r for r in study.STUDY_REPORTED_AUCS if r.group == "radiomics"]
    assert (rad.auc_low, rad.auc_high, rad.is_range) == (0.682, 0.723, True)
    assert len(study.reported_aucs(3)) == 2


# --- censoring-aware rows (issue 16) ------------------------------------------------------------
def test_censoring_aware_rows_match_the_metric_functions(store_path):
    """The new rows route data: Uno's C, truncated Harrell's C, IPCW Brier and O/E on all
    predicted scans, the per-patient AUC on the labelled ones, each with a patient CI."""
    from sscmort_core.evaluation import (
        PER_PATIENT,
        ipcw_brier,
        observed_expected,
        uno_c,
    )

    with st.open_store(store_path) as s:
        run = ev.run_evaluation(s, model_ids=["noisy"], n_boot=N_BOOT, seed=3, min_events=1)
        stored = st.metrics_frame(s).set_index(["horizon_years", "metric"])
    scans, preds = _labels_and_scans(store_path)
    h = 5
    p = preds.loc[preds["horizon_years"] == h].merge(scans, on="scan_id")
    t, e = time_to_event_years(p["scan_date"], p["death_date"], p["last_followup_date"])
    risk = p["risk"].to_numpy()
    assert stored.loc[(h, "uno_c"), "value"] == pytest.approx(uno_c(t, e, risk, h), abs=1e-12)
    assert stored.loc[(h, "harrell_c"), "value"] == pytest.approx(
        concordance_index(t, e, risk, tau=h), abs=1e-12)
    assert stored.loc[(h, "ipcw_brier"), "value"] == pytest.approx(
        ipcw_brier(t, e, risk, h), abs=1e-12)
    assert stored.loc[(h, "calibration_oe"), "value"] == pytest.approx(
        observed_expected(t, e, risk, h).ratio, abs=1e-12)
    lab = label_scans(p["scan_date"], p["death_date"], p["last_followup_date"], h)
    per_patient = auc_with_ci(lab.positive[lab.known].astype(int), risk[lab.known],
                              p["patient_id"][lab.known], n_boot=N_BOOT, seed=3,
                              estimand=PER_PATIENT)
    row = stored.loc[(h, "auc_per_patient")]
    assert (row["value"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (per_patient.auc, per_patient.ci_low, per_patient.ci_high), abs=1e-12)
    for metric in ev.METRICS:  # every computed row has a patient-bootstrap CI
        r = stored.loc[(h, metric)]
        if pd.notna(r["value"]):
            assert pd.notna(r["ci_low"]) and r["ci_low"] <= r["ci_high"], metric
    assert stored.loc[(h, "uno_c"), "n_scans"] == len(p)  # censored scans kept
    estimands = {m.metric: m.estimand for m in run.results[-1].metrics}
    assert estimands["auc_per_patient"] == PER_PATIENT
    assert set(estimands.values()) == {PER_PATIENT, "per scan"}


def test_paired_frame_shows_the_clustered_p_and_long_table_names_estimands(store_path):
    with st.open_store(store_path) as s:
        ev.run_evaluation(s, n_boot=N_BOOT, min_events=1)
        tests = ev.paired_tests(s, ["noisy", "oracle"], 5, n_boot=N_BOOT, min_events=1)
        frame = cmp.paired_tests_frame(tests, {})
        long = cmp.metrics_long(s, ["noisy", "oracle"])
        table = cmp.metrics_table(s, ["noisy"])
    (t,) = tests
    assert frame["p"].iloc[0] == t.comparison.p_value
    if t.comparison.clustered is not None:
        assert frame["p"].iloc[0] == frame["clustered DeLong p"].iloc[0]
        assert frame["p method"].iloc[0].startswith("clustered DeLong")
    assert list(long.columns) == list(cmp.LONG_COLUMNS)
    assert len(long) == 2 * 3 * len(ev.METRICS)
    per_patient = long.loc[long["metric"] == "AUC per patient", "estimand"]
    assert (per_patient == "per patient (each patient weighted equally)").all()
    assert (long.loc[long["metric"] == "Uno's C to horizon", "censoring"]
            .str.contains("inverse probability of censoring").all())
    computed = table.loc[table["kind"] != "reported"]
    assert computed["Uno's C to horizon CI low"].notna().any()
    assert computed["estimand"].str.startswith("per scan").all()


def test_censoring_aware_curves_use_every_predicted_scan(store_path):
    from sscmort_core.evaluation import ipcw_decision_curve, km_calibration_curve

    with st.open_store(store_path) as s:
        curves = cmp.horizon_curves(s, ["noisy", "oracle"], 5, min_events=1)
    scans, preds = _labels_and_scans(store_path)
    p = preds.loc[preds["horizon_years"] == 5].merge(scans, on="scan_id")
    t, e = time_to_event_years(p["scan_date"], p["death_date"], p["last_followup_date"])
    km = curves.km_calibration.frame
    part = km.loc[km["model_id"] == "noisy"]
    expected = km_calibration_curve(t, e, p["risk"], 5)
    np.testing.assert_allclose(part["observed_fraction"], expected.observed_km)
    assert part["count"].sum() == len(p)  # censored scans included
    dec = curves.ipcw_decision.frame
    nb = dec.loc[dec["model_id"] == "noisy", "net_benefit"].to_numpy()
    np.testing.assert_allclose(nb, ipcw_decision_curve(t, e, p["risk"], 5,
                                                       cmp.DECISION_THRESHOLDS)
                               .net_benefit_model)
    assert {"Treat all", "Treat none"} <= set(dec["model"])


def test_per_model_pieces_combine_to_the_all_models_results(store_path):
    """The Model comparison page caches each model's curves, rows and pairs (issue 17): put
    together they must equal what the all-models functions give."""
    add_noisy_model(store_path, "noisier", sd=2.0, seed=8)
    ids = ["noisier", "noisy", "oracle"]
    with st.open_store(store_path) as s:
        ev.run_evaluation(s, n_boot=N_BOOT)
        versions = cmp.data_versions(s, ids)
        for h in HORIZONS_YEARS:
            whole = cmp.horizon_curves(s, ids, h, min_events=1)
            parts = cmp.combine_curves([cmp.horizon_curves(s, [m], h, min_events=1)
                                        for m in ids])
            for field in ("roc", "calibration", "decision", "km_calibration", "ipcw_decision"):
                a, b = getattr(whole, field), getattr(parts, field)
                pd.testing.assert_frame_equal(a.frame.reset_index(drop=True), b.frame)
                assert sorted(a.unavailable) == sorted(b.unavailable)
            loaded = load_horizon_data(s, ids, HORIZONS_YEARS)  # what a page caches
            given = cmp.horizon_curves(s, ids, h, min_events=1, data=loaded)
            for field in ("roc", "km_calibration", "ipcw_decision"):
                pd.testing.assert_frame_equal(getattr(whole, field).frame,
                                              getattr(given, field).frame)
            assert ev.paired_tests(s, ids, h, n_boot=N_BOOT, data=loaded) == \
                ev.paired_tests(s, ids, h, n_boot=N_BOOT)
            treat = parts.decision.frame["model"].isin(["Treat all", "Treat none"])
            assert treat.sum() == 2 * len(cmp.DECISION_THRESHOLDS)  # once, not per model
            pairs = ev.paired_tests(s, ids, h, n_boot=N_BOOT)
            one_by_one = [ev.paired_tests(s, [a, b], h, n_boot=N_BOOT)[0]
                          for a, b in [("noisier", "noisy"), ("noisier", "oracle"),
                                       ("noisy", "oracle")]]
            assert pairs == one_by_one
        long = cmp.metrics_long(s, ids, include_reference=True)
        combined = cmp.combine_long([cmp.metrics_long(s, [m]) for m in ids],
                                    include_reference=True)
        pd.testing.assert_frame_equal(long, combined, check_dtype=False)
        # a model's version changes with its own predictions only
        add_noisy_model(store_path, "noisiest", sd=3.0, seed=9)
    with st.open_store(store_path) as s:
        assert cmp.data_versions(s, ids) == versions
        with s.transaction() as cur:
            cur.execute("UPDATE predictions SET risk = risk * 0.5 WHERE model_id = 'noisy'")
        after = cmp.data_versions(s, ids)
    assert after["noisy"] != versions["noisy"]
    assert after["oracle"] == versions["oracle"] and after["noisier"] == versions["noisier"]
