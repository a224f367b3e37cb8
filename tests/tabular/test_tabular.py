"""Tabular (radiomics / QCT) models: grouped CV, censoring, SHAP additivity, registry, predict."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from sscmort_core import store as st
from sscmort_core.errors import ChecksumMismatchError, DataError
from sscmort_core.folds import grouped_folds
from sscmort_core.labels import HORIZONS_YEARS, label_scans
from sscmort_core.pipeline.predict import tabular_predictions
from sscmort_core.predictions import RiskPrediction
from sscmort_core.tabular import io as tab_io
from sscmort_core.tabular import model as tab
from sscmort_core.tabular.explain import shap_values
from sscmort_core.tabular.train import cv_splits, train_tabular
from sscmort_core.util.cache import MODEL_CACHE

FAKE_FEATURES = ("original_firstorder_Mean", "original_firstorder_Median",
                 "original_firstorder_Skewness", "original_firstorder_Kurtosis",
                 "original_firstorder_10Percentile", "original_firstorder_90Percentile",
                 "original_firstorder_Entropy", "original_glcm_Contrast",
                 "original_glcm_Correlation", "original_glcm_JointEntropy",
                 "original_glrlm_RunEntropy", "original_glszm_ZoneEntropy")
N_FAKE_FEATURES = len(FAKE_FEATURES)


def add_fake_radiomics(path: Path, seed: int = 0) -> None:
    """Random values under real feature names for every scan (the first tracks the true ILD
    extent), stored under the repo's parameter hash: models train without the minutes of
    extraction, and a real extraction of a new volume still finds every feature."""
    from sscmort_core.radiomics.features import load_params

    rng = np.random.default_rng(seed)
    with st.open_store(path) as s:
        truth = st.truth_frame(s)
        rows = []
        for r in truth.itertuples():
            for j, name in enumerate(FAKE_FEATURES):
                signal = r.true_ild_extent_pct if j == 0 else 0.0
                rows.append({"scan_id": r.scan_id, "feature": name,
                             "value": signal + rng.normal(0, 5)})
        df = pd.DataFrame(rows)
        df["param_hash"], df["pyradiomics_version"] = load_params().param_hash, "v3.0.1"
        with s.transaction() as cur:
            st.insert_frame(cur, "radiomics_features", df)


@dataclass(frozen=True)
class Trained:
    path: Path
    models_dir: Path
    ids: tuple[str, ...]


@pytest.fixture(scope="module")
def trained(tiny_store_template, tmp_path_factory) -> Trained:
    root = tmp_path_factory.mktemp("tabular")
    path = root / "store.duckdb"
    shutil.copy(tiny_store_template, path)
    add_fake_radiomics(path)
    with st.open_store(path) as s:
        ids = train_tabular(s, "radiomics", models_dir=root / "models", folds=3, seed=0)
        ids += train_tabular(s, "qct", models_dir=root / "models", folds=3, seed=0)
    return Trained(path, root / "models", tuple(ids))


# ---------------------------------------------------------------------------------------------
# folds and labels
# ---------------------------------------------------------------------------------------------
def test_grouped_cv_never_shares_a_patient():
    """Over the actual split indices, on a 120-patient synthetic cohort (dates only)."""
    from sscmort_core.synthetic.cohort import generate_cohort

    cohort = generate_cohort(n_patients=120, seed=5)
    scans = cohort.scans.merge(cohort.patients[["patient_id", "death_date",
                                                "last_followup_date"]], on="patient_id")
    pid = scans["patient_id"].to_numpy()
    five = label_scans(scans["scan_date"], scans["death_date"], scans["last_followup_date"], 5)
    fold_of = grouped_folds(pid, 5, seed=0, stratify=five.positive & five.known)
    for h in HORIZONS_YEARS:
        lab = label_scans(scans["scan_date"], scans["death_date"], scans["last_followup_date"], h)
        seen_test = []
        for _, train, test in cv_splits(fold_of, lab.known):
            assert not set(pid[train]) & set(pid[test])
            assert lab.known[train].all()  # censored scans never fit a model
            seen_test.append(test)
        every = np.sort(np.concatenate(seen_test))
        np.testing.assert_array_equal(every, np.arange(len(pid)))  # each scan tested once


def test_stored_folds_are_patient_constant_and_every_scan_has_oof(trained):
    with st.open_store(trained.path, read_only=True) as s:
        scans = st.scans_frame(s)
        pred = st.predictions_frame(s, list(trained.ids))
    assert set(pred["split"]) == {"oof"}  # the default split; before recalibration apart
    merged = pred.merge(scans[["scan_id", "patient_id"]], on="scan_id")
    assert (merged.groupby(["model_id", "patient_id"])["fold"].nunique() == 1).all()
    per_model = pred.groupby("model_id").size()
    assert (per_model == 3 * len(scans)).all()
    wide = pred.pivot_table(index=["model_id", "scan_id"], columns="horizon_years",
                            values="risk")
    assert ((wide[1] <= wide[3] + 1e-12) & (wide[3] <= wide[5] + 1e-12)).all()  # monotone


def test_cards_record_censoring_cv_and_provenance(trained):
    with st.open_store(trained.path, read_only=True) as s:
        models = st.models_frame(s).set_index("model_id").loc[list(trained.ids)]
        scans = st.scans_frame(s)
    assert sorted(models["kind"]) == ["qct"] * 2 + ["radiomics"] * 3
    assert sorted(json.loads(c)["algorithm"] for c in models["card"]) == sorted(
        ["logistic", "gbm", "discrete_time", "logistic", "discrete_time"])
    for model_id, row in models.iterrows():
        card = json.loads(row["card"])
        survival = card["algorithm"] == "discrete_time"
        assert card["likelihood"].startswith("survival likelihood" if survival
                                             else "complete cases")
        assert card["cv"]["censored"].startswith("counted" if survival else "excluded")
        assert "inner patient-grouped" in card["settings"].get("C (L2 strength)",
                                                              "inner patient-grouped")
        assert card["cv"]["folds"] == 3 and card["cv"]["grouped_by"] == "patient"
        assert card["data_hash"] == row["data_hash"] and card["created"]
        assert (trained.models_dir / f"{model_id}.joblib").exists()
        assert json.loads((trained.models_dir / f"{model_id}.json").read_text())[
            "weights_sha256"] == row["weights_sha256"]
        for h, info in zip(HORIZONS_YEARS, card["horizons"]):
            lab = label_scans(scans["scan_date"], scans["death_date"],
                              scans["last_followup_date"], h)
            assert info["n_scans_labelled"] == int(lab.known.sum())
            assert info["n_censored_excluded"] == (0 if survival else lab.n_censored)
            assert info["n_censored_counted"] == (lab.n_censored if survival else 0)
        if row["kind"] == "radiomics":
            assert card["param_hash"] and len(card["features"]) == N_FAKE_FEATURES
        else:
            assert card["features"] == list(tab.QCT_FEATURES)


def test_final_models_fit_only_labelled_scans(trained):
    """The complete-case logistic fits the labelled scans; the survival model every scan."""
    with st.open_store(trained.path) as s:
        scans = st.scans_frame(s)
        logistic = tab_io.load_model(s, _qct_id(trained, "logistic"),
                                     models_dir=trained.models_dir)
        survival = tab_io.load_model(s, _qct_id(trained, "discrete_time"),
                                     models_dir=trained.models_dir)
    for h, hm, hs in zip(HORIZONS_YEARS, logistic.horizons, survival.horizons):
        lab = label_scans(scans["scan_date"], scans["death_date"], scans["last_followup_date"], h)
        assert hm.n_train == int(lab.known.sum()) and hm.n_positive == lab.n_positive
        assert hs.n_train == len(scans) > int(lab.known.sum()) or lab.n_censored == 0
        assert hs.algorithm == "discrete_time" and hs.estimator.hazard is \
            survival.horizons[0].estimator.hazard  # one fit shared by the horizons


def _qct_id(trained: Trained, algorithm: str) -> str:
    (found,) = [m for m in trained.ids if m.startswith(f"qct-{algorithm}-")]
    return found


# ---------------------------------------------------------------------------------------------
# SHAP
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["logistic", "gbm"])
def test_shap_values_add_up_to_the_model_output(algorithm):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)) * [1, 10, 100, 1, 1, 1] + [0, -800, 5, 0, 0, 0]
    x[rng.random(x.shape) < 0.03] = np.nan  # imputed by the model's medians
    logit = 1.2 * np.nan_to_num(x[:, 0]) - 0.05 * (np.nan_to_num(x[:, 1], nan=-800) + 800)
    y = (rng.random(400) < 1 / (1 + np.exp(-(logit - 1)))).astype(int)
    groups = np.repeat(np.arange(100), 4)
    with threadpool_limits(limits=1):  # as train_tabular does: tiny fits, shared cores
        hms = tuple(tab.fit_horizon(x, y, groups, algorithm, h, seed=0) for h in HORIZONS_YEARS)
    assert all(hm.estimator is not None for hm in hms)
    model = tab.TabularModel("m", "radiomics", algorithm, "test", tuple(f"f{i}" for i in range(6)),
                             hms, None)
    sv = shap_values(model, x)
    assert sv.values.shape == (3, 400, 6)
    recon = sv.base[:, None] + sv.values.sum(axis=2)  # (3, n) log-odds
    np.testing.assert_allclose(recon, sv.logits, atol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-recon)), model.raw_risks(x).T, atol=1e-6)
    assert sv.max_additivity_error < 1e-6


def test_stored_shap_adds_up_to_stored_models(trained):
    with st.open_store(trained.path) as s:
        for model_id in trained.ids:
            model = tab_io.load_model(s, model_id, models_dir=trained.models_dir)
            fm = tab_io.feature_matrix(s, model.kind)
            expl = st.explanations_frame(s, model_id)
            assert len(expl) == len(fm.scan_ids) * len(fm.feature_names) * 3
            sums = expl.groupby(["scan_id", "horizon_years"]).agg(
                total=("value", "sum"), base=("base_value", "first"))
            for j, h in enumerate(HORIZONS_YEARS):
                logit = model.horizons[j].logit(fm.X)
                got = (sums.xs(h, level="horizon_years").loc[list(fm.scan_ids)]
                       .eval("total + base").to_numpy())
                np.testing.assert_allclose(got, logit, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# registry, prediction, CLI
# ---------------------------------------------------------------------------------------------
def test_tampered_model_file_is_refused(trained, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(trained.models_dir, models)
    model_id = trained.ids[0]
    path = models / f"{model_id}.joblib"
    path.write_bytes(path.read_bytes() + b"\0")
    with st.open_store(trained.path, read_only=True) as s:
        with pytest.raises(ChecksumMismatchError, match="sha256"):
            tab_io.load_model(s, model_id, models_dir=models)


def test_predict_tabular_and_for_volume(trained):
    from sscmort_core.lungs import segment_lungs
    from sscmort_core.scans import load_scan_volume

    with st.open_store(trained.path, read_only=True) as s:
        scan_id = st.scans_frame(s)["scan_id"].iloc[0]
        qct = st.qct_features_frame(s).set_index("scan_id").loc[scan_id, list(tab.QCT_FEATURES)]
        qct_id = next(i for i in trained.ids if i.startswith("qct-"))
        one = tab_io.predict_tabular(s, qct_id, qct.to_dict(), models_dir=trained.models_dir)
        assert isinstance(one, RiskPrediction) and one.kind == "qct"
        assert one.risk_1y <= one.risk_3y <= one.risk_5y
        vol = load_scan_volume(s, scan_id)
        mask = segment_lungs(vol.hu, vol.spacing_mm).mask
        preds, problems = tabular_predictions(s, vol.hu, mask, vol.spacing_mm,
                                               models_dir=trained.models_dir)
        # one model's file gone: it is named, the others still predict
        rad_id = next(i for i in trained.ids if i.startswith("radiomics-"))
        gone = trained.models_dir / f"{rad_id}.joblib"
        saved = gone.read_bytes()
        gone.unlink()
        MODEL_CACHE.clear()
        try:
            some, missing = tabular_predictions(s, vol.hu, mask, vol.spacing_mm,
                                                 models_dir=trained.models_dir)
        finally:
            gone.write_bytes(saved)
    assert problems == []
    assert sorted(p.kind for p in preds) == ["qct"] * 2 + ["radiomics"] * 3
    assert [m for m, _ in missing] == [rad_id] and "missing" in missing[0][1]
    assert sorted(p.kind for p in some) == ["qct"] * 2 + ["radiomics"] * 2
    got = next(p for p in preds if p.model_id == qct_id)
    # QCT of the same regenerated volume, segmented the same way as at build time
    assert got.risk_5y == pytest.approx(one.risk_5y, rel=1e-6)
    assert all(p.note is None or "missing" not in p.note for p in preds)


def _cli(argv: list[str]):
    from sscmort_core.cli import build_parser

    parser, commands = build_parser()
    return parser.parse_args(argv), commands


def test_cli_train_qct_is_idempotent(trained, tmp_path, capsys):
    path = tmp_path / "s.duckdb"
    shutil.copy(trained.path, path)
    with st.open_store(path, read_only=True) as s:
        before = st.table_counts(s)
    args, commands = _cli(["train", "--kind", "qct", "--store", str(path), "--json", "--quiet",
                           "--folds", "3", "--models-dir", str(tmp_path / "m")])
    commands["train"](args)
    out = json.loads(capsys.readouterr().out)
    assert [m["model_id"] for m in out["models"]] == [i for i in trained.ids
                                                      if i.startswith("qct-")]
    assert set(out["models"][0]["oof_auc"]) == {"1y", "3y", "5y"}
    with st.open_store(path, read_only=True) as s:
        assert st.table_counts(s) == before  # same data + settings: replaced, not duplicated
    bad, _ = _cli(["train", "--kind", "qct", "--store", str(path), "--folds", "50"])
    with pytest.raises(DataError, match="cannot fill 50"):
        commands["train"](bad)


def test_auc_columns_matches_sklearn():
    """The vectorised rank AUC of the feature browser against roc_auc_score (with ties and a
    NaN, which leaves that row out of its column only)."""
    from sklearn.metrics import roc_auc_score

    from sscmort_core.evaluation import auc_columns

    rng = np.random.default_rng(3)
    x = rng.normal(size=(250, 4))
    x[:, 1] = np.round(x[:, 1])  # heavy ties
    x[7, 2] = np.nan
    y = rng.random(250) < 0.3
    got = auc_columns(x, y)
    ok = np.isfinite(x[:, 2])
    want = [roc_auc_score(y, x[:, 0]), roc_auc_score(y, x[:, 1]),
            roc_auc_score(y[ok], x[ok, 2]), roc_auc_score(y, x[:, 3])]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isnan(auc_columns(x, np.zeros(250))).all()  # one class: undefined


def test_model_files_name_the_stable_class_path(trained):
    """joblib files record ``sscmort_core.tabular.TabularModel`` (the path before the package
    was split), so files written by any version load with this one."""
    import pickle
    import pickletools

    with st.open_store(trained.path, read_only=True) as s:
        model = tab_io.load_model(s, trained.ids[-1], models_dir=trained.models_dir)
    data = pickle.dumps(model, protocol=4)
    strings = [arg for op, arg, _ in pickletools.genops(data) if isinstance(arg, str)]
    assert "sscmort_core.tabular" in strings and "sscmort_core.tabular.model" not in strings
    assert pickle.loads(data).model_id == model.model_id


def test_cli_predict_all_means_every_registered_model_kind(trained, tmp_path, capsys):
    """`sscmort predict PATH` uses every registered model, as the upload page does: here the
    radiomics and QCT models (no deep model is registered); `--model ID` just that one."""
    import SimpleITK as sitk

    from sscmort_core.cli import main
    from sscmort_core.scans import load_scan_volume

    with st.open_store(trained.path, read_only=True) as s:
        vol = load_scan_volume(s, st.scans_frame(s)["scan_id"].iloc[0])
    img = sitk.GetImageFromArray(np.asarray(vol.hu, dtype=np.int16))  # (z, y, x) -> x, y, z
    img.SetSpacing(tuple(float(v) for v in vol.spacing_mm[::-1]))
    scan = tmp_path / "scan.nii.gz"
    sitk.WriteImage(img, str(scan))
    base = ["predict", str(scan), "--store", str(trained.path), "--models-dir",
            str(trained.models_dir), "--json", "--quiet"]
    assert main(base) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(m["model_id"] for m in out["models"]) == sorted(trained.ids)
    assert {m["kind"] for m in out["models"]} == {"radiomics", "qct"}
    assert out["ensemble"] is None and out["device"] is None and out["problems"] == []
    qct_id = next(i for i in trained.ids if i.startswith("qct-"))
    assert main(base + ["--model", qct_id]) == 0
    assert [m["model_id"] for m in json.loads(capsys.readouterr().out)["models"]] == [qct_id]
    assert main(base + ["--model", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no registered model 'nonsense'" in err and qct_id in err
