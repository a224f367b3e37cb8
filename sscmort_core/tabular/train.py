"""Training of the tabular models: patient-grouped CV, OOF risks, final fits, SHAP, registry.

:func:`train_tabular` is the entry point (it limits BLAS / OpenMP to one thread); see
:mod:`sscmort_core.tabular.model` for the models themselves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from sscmort_core import store as st
from sscmort_core.cards import ModelCard
from sscmort_core.errors import DataError
from sscmort_core.evaluation import auc_or_none
from sscmort_core.folds import grouped_folds
from sscmort_core.labels import HORIZONS_YEARS, HorizonLabels
from sscmort_core.radiomics.features import load_params
from sscmort_core.tabular.explain import ShapValues, shap_values
from sscmort_core.tabular.io import (
    feature_matrix,
    horizon_labels,
    save_model,
    survival_times,
    training_label_fingerprint,
)
from sscmort_core.tabular.longitudinal import LONGITUDINAL_VERSION, MIN_PRIOR_YEARS
from sscmort_core.tabular.model import (
    ALGORITHMS,
    FIT_LIKELIHOOD,
    GBM_PARAMS,
    INNER_FOLDS,
    LOGISTIC_CS,
    LONGITUDINAL_KINDS,
    SURVIVAL_ALGORITHMS,
    TABULAR_VERSION,
    TRAINABLE_KINDS,
    FeatureMatrix,
    HorizonModel,
    TabularModel,
    fit_horizon,
    fit_survival_horizons,
    model_label,
    monotone,
)
from sscmort_core.tabular.recalibration import fit_recalibration
from sscmort_core.tabular.survival import INTERVAL_EDGES_YEARS, SURVIVAL_CS
from sscmort_core.util.paths import default_models_dir
from sscmort_core.util.progress import ProgressFn, no_progress

# Split of the OOF risks before recalibration (the stored "oof" are recalibrated).
UNCALIBRATED_SPLIT = "oof_uncalibrated"


def train_tabular(store: st.Store, kind: str, *, models_dir: Path | None = None,
                  seed: int = 0, folds: int = 5, progress: ProgressFn = no_progress
                  ) -> list[str]:
    """Train, cross-validate, explain and register the tabular models of ``kind``.

    Returns the registered model ids. Each model's registry row, OOF predictions and SHAP
    values are written in one transaction (a model trained again on the same data and settings
    replaces itself). Raises DataError without features or with too few patients for ``folds``.

    Runs single-threaded (BLAS / OpenMP limited to one thread): these fits are small, and on a
    shared machine thread synchronisation made them several times slower, not faster.
    """
    if kind not in TRAINABLE_KINDS:
        raise ValueError(f"kind must be one of {TRAINABLE_KINDS}, got {kind!r}")
    with threadpool_limits(limits=1):
        return _train(store, kind, models_dir=Path(models_dir or default_models_dir()),
                      seed=seed, folds=folds, progress=progress)


@dataclass(frozen=True)
class _Data:
    """What every algorithm of one kind is trained on."""

    fm: FeatureMatrix
    labels: Mapping[int, HorizonLabels]
    time_years: np.ndarray  # (n,) years from the scan to death or last follow-up
    event: np.ndarray  # (n,) bool death observed
    fold_of: np.ndarray  # (n,) fold of each scan
    data_hash: str
    params_text: str | None
    pyradiomics_version: str | None
    label_fingerprint: str


def _training_data(store: st.Store, kind: str, folds: int, seed: int) -> _Data:
    fm = feature_matrix(store, kind)
    labels = horizon_labels(store, fm.scan_ids)
    n_patients = len(np.unique(fm.patient_ids))
    if n_patients < folds:
        raise DataError(f"{n_patients} patients with {kind} features cannot fill {folds} "
                        "cross-validation folds", store.path)
    five = labels[HORIZONS_YEARS[-1]]
    fold_of = grouped_folds(fm.patient_ids, folds, seed, stratify=five.positive & five.known)
    params_text, pyr_version = _radiomics_provenance(store, fm)
    time_years, event = survival_times(store, fm.scan_ids)
    return _Data(fm, labels, time_years, event, fold_of, data_hash(fm, labels), params_text,
                 pyr_version, training_label_fingerprint(store, fm.scan_ids))


def _train(store: st.Store, kind: str, *, models_dir: Path, seed: int, folds: int,
           progress: ProgressFn) -> list[str]:
    data = _training_data(store, kind, folds, seed)
    algorithms = ALGORITHMS[kind]
    per_algo = len(HORIZONS_YEARS) * (folds + 1) + 1 + folds * INNER_FOLDS * len(HORIZONS_YEARS)
    total, done = per_algo * len(algorithms), 0
    stage = f"train {kind}"
    progress(stage, 0, total)

    def tick() -> None:
        nonlocal done
        done += 1
        progress(stage, done, total)

    ids = []
    for algorithm in algorithms:
        t1 = time.perf_counter()
        if algorithm in SURVIVAL_ALGORITHMS:
            oof, finals = _cross_validate_survival(data, seed, tick)
        else:
            oof, finals = _cross_validate(data.fm, data.labels, data.fold_of, algorithm, seed,
                                          tick)
        oof_cal = _recalibrated_oof(data, oof, algorithm, seed, tick)
        recalibration = fit_recalibration(data.time_years, data.event, oof)
        config = {"algorithm": algorithm, "version": TABULAR_VERSION, "folds": folds,
                  "seed": seed, "features": list(data.fm.feature_names),
                  "param_hash": data.fm.param_hash,
                  "gbm_params": dict(GBM_PARAMS) if algorithm == "gbm" else None,
                  "logistic_cs": list(LOGISTIC_CS) if algorithm == "logistic" else None}
        if algorithm in SURVIVAL_ALGORITHMS:  # follow-up times enter the fit, so the id
            config |= {"survival_cs": list(SURVIVAL_CS), "intervals_years":
                       list(INTERVAL_EDGES_YEARS), "follow_up_hash": data.label_fingerprint}
        if kind in LONGITUDINAL_KINDS:
            config |= {"longitudinal_version": LONGITUDINAL_VERSION,
                       "min_prior_years": MIN_PRIOR_YEARS}
        short = hashlib.sha256((json.dumps(config, sort_keys=True) + data.data_hash).encode())
        model = TabularModel(model_id=f"{kind}-{algorithm}-v{TABULAR_VERSION}-"
                                      f"{short.hexdigest()[:8]}",
                             kind=kind, algorithm=algorithm, label=model_label(kind, algorithm),
                             feature_names=data.fm.feature_names, horizons=finals,
                             param_hash=data.fm.param_hash,
                             radiomics_params_text=data.params_text,
                             recalibration=recalibration)
        shap = shap_values(model, data.fm.X)
        tick()
        ids.append(_register(store, model, data, _OOF(oof, oof_cal), shap, config,
                             models_dir, time.perf_counter() - t1))
    progress(stage, total, total)
    return ids


def data_hash(fm: FeatureMatrix, labels: Mapping[int, HorizonLabels]) -> str:
    """sha256 (16 hex) of the scans, features, values and labels a model is trained on."""
    h = hashlib.sha256()
    h.update("\n".join(fm.scan_ids).encode())
    h.update("\n".join(fm.feature_names).encode())
    h.update(np.nan_to_num(fm.X, nan=-1.2345e300).astype("<f8").tobytes())
    for hy in sorted(labels):
        h.update(labels[hy].positive.astype(np.uint8).tobytes())
        h.update(labels[hy].known.astype(np.uint8).tobytes())
    return h.hexdigest()[:16]


def cv_splits(fold_of: np.ndarray, known: np.ndarray
              ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(fold, train rows, test rows) for one horizon: train on the labelled (uncensored) scans
    of the other folds, predict every scan of this fold (censored ones too: they get an
    out-of-fold risk, they are only excluded from fitting and from binary metrics)."""
    out = []
    for f in range(int(fold_of.max()) + 1):
        out.append((f, np.flatnonzero((fold_of != f) & known), np.flatnonzero(fold_of == f)))
    return out


def _cross_validate(fm: FeatureMatrix, labels: Mapping[int, HorizonLabels], fold_of: np.ndarray,
                    algorithm: str, seed: int, tick: Callable[[], None]
                    ) -> tuple[np.ndarray, tuple[HorizonModel, ...]]:
    """(n, 3) OOF risks of every scan, and the final per-horizon models."""
    oof = np.full((len(fm.scan_ids), len(HORIZONS_YEARS)), np.nan)
    finals = []
    for j, h in enumerate(HORIZONS_YEARS):
        lab = labels[h]
        for _, train, test in cv_splits(fold_of, lab.known):
            m = fit_horizon(fm.X[train], lab.positive[train], fm.patient_ids[train], algorithm,
                            h, seed)
            oof[test, j] = m.risk(fm.X[test])
            tick()
        finals.append(fit_horizon(fm.X[lab.known], lab.positive[lab.known],
                                  fm.patient_ids[lab.known], algorithm, h, seed))
        tick()
    return oof, tuple(finals)


def _cross_validate_survival(data: _Data, seed: int, tick: Callable[[], None]
                             ) -> tuple[np.ndarray, tuple[HorizonModel, ...]]:
    """(n, 3) OOF risks and the final models of the discrete-time survival algorithm: one fit
    per fold on every scan of the other folds (censored ones count up to their follow-up)."""
    fm = data.fm
    oof = np.full((len(fm.scan_ids), len(HORIZONS_YEARS)), np.nan)
    every = np.ones(len(fm.scan_ids), dtype=bool)
    for _, train, test in cv_splits(data.fold_of, every):
        hms = fit_survival_horizons(fm.X[train], data.time_years[train], data.event[train],
                                    fm.patient_ids[train], seed)
        oof[test] = np.column_stack([m.risk(fm.X[test]) for m in hms])
        for _ in HORIZONS_YEARS:
            tick()
    finals = fit_survival_horizons(fm.X, data.time_years, data.event, fm.patient_ids, seed)
    for _ in HORIZONS_YEARS:
        tick()
    return oof, finals


def _oof_rows(data: _Data, rows: np.ndarray, fold_of: np.ndarray, algorithm: str, seed: int,
              tick: Callable[[], None]) -> np.ndarray:
    """(len(rows), 3) out-of-fold risks of ``rows`` over the folds ``fold_of`` (len(rows),):
    complete-case algorithms fit each horizon on the labelled rows of the other folds, the
    survival algorithm every row of the other folds. Ticks once per fold and horizon."""
    fm = data.fm
    x, pid = fm.X[rows], fm.patient_ids[rows]
    out = np.full((len(rows), len(HORIZONS_YEARS)), np.nan)
    if algorithm in SURVIVAL_ALGORITHMS:
        t, e = data.time_years[rows], data.event[rows]
        for _, train, test in cv_splits(fold_of, np.ones(len(rows), dtype=bool)):
            hms = fit_survival_horizons(x[train], t[train], e[train], pid[train], seed)
            out[test] = np.column_stack([m.risk(x[test]) for m in hms])
            for _ in HORIZONS_YEARS:
                tick()
        return out
    for j, h in enumerate(HORIZONS_YEARS):
        lab = data.labels[h]
        known, positive = lab.known[rows], lab.positive[rows]
        for _, train, test in cv_splits(fold_of, known):
            m = fit_horizon(x[train], positive[train], pid[train], algorithm, h, seed)
            out[test, j] = m.risk(x[test])
            tick()
    return out


def _recalibrated_oof(data: _Data, oof_raw: np.ndarray, algorithm: str, seed: int,
                      tick: Callable[[], None]) -> np.ndarray:
    """(n, 3) recalibrated OOF risks (before the running maximum): each outer fold's map is
    fitted on inner out-of-fold risks of that fold's training scans only (INNER_FOLDS
    patient-grouped folds), never on the fold it recalibrates."""
    five = data.labels[HORIZONS_YEARS[-1]]
    died5 = five.positive & five.known
    out = np.full_like(oof_raw, np.nan)
    for f in range(int(data.fold_of.max()) + 1):
        train, test = np.flatnonzero(data.fold_of != f), np.flatnonzero(data.fold_of == f)
        inner = grouped_folds(data.fm.patient_ids[train], INNER_FOLDS, seed + 1 + f,
                              stratify=died5[train])
        inner_oof = _oof_rows(data, train, inner, algorithm, seed, tick)
        rec = fit_recalibration(data.time_years[train], data.event[train], inner_oof)
        out[test] = rec.apply(oof_raw[test])
    return out


def _radiomics_provenance(store: st.Store, fm: FeatureMatrix) -> tuple[str | None, str | None]:
    if fm.kind != "radiomics":
        return None, None
    params = load_params()
    if params.param_hash != fm.param_hash:
        raise DataError(f"radiomics features with parameter hash {fm.param_hash} were made with "
                        "a parameter file that is no longer the repo's; models trained on them "
                        "could not extract features for new scans", store.path)
    sets = st.radiomics_param_sets(store)
    version = sets.loc[sets["param_hash"] == fm.param_hash, "pyradiomics_version"]
    return params.text, (str(version.iloc[0]) if len(version) else None)


@dataclass(frozen=True)
class _OOF:
    """Out-of-fold risks (n, 3) before the running maximum: as fitted, and recalibrated by
    maps fitted inside the training folds (what is stored as the model's ``oof``)."""

    raw: np.ndarray
    recalibrated: np.ndarray


def _model_card(model: TabularModel, data: _Data, oofs: _OOF, shap: ShapValues,
                config: Mapping[str, Any], synthetic: bool, seconds: float) -> ModelCard:
    """The model card (JSON beside the model file, and the models table's ``card``)."""
    fm, labels = data.fm, data.labels
    oof_raw = oofs.recalibrated
    oof, adjusted = monotone(oof_raw)
    before = monotone(oofs.raw)[0]
    horizons = []
    survival = model.algorithm in SURVIVAL_ALGORITHMS
    for j, h in enumerate(HORIZONS_YEARS):
        lab, hm = labels[h], model.horizons[j]
        horizons.append({
            "horizon_years": h, "n_scans_labelled": int(lab.known.sum()),
            "n_positive": lab.n_positive,
            "n_censored_excluded": 0 if survival else lab.n_censored,
            "n_censored_counted": lab.n_censored if survival else 0,
            "oof_auc": auc_or_none(lab.y, oof[lab.known, j]),
            "oof_auc_before_recalibration": auc_or_none(lab.y, before[lab.known, j]),
            "final_model": hm.describe()})
    extra = {
        "dropped_features": list(fm.dropped_features), "n_features": len(model.feature_names),
        "pyradiomics_version": data.pyradiomics_version,
        "scans_without_features": fm.n_scans_without,
        "flagged_masks_excluded": fm.n_flagged_excluded,
        "cv": {"folds": config["folds"], "seed": config["seed"], "grouped_by": "patient",
               "stratified_by": "death within 5 years",
               "censored": "counted by the survival likelihood up to the last follow-up"
               if survival else "excluded per horizon (label rule)"},
        "likelihood": FIT_LIKELIHOOD[model.algorithm],
        "settings": _settings_provenance(model.algorithm, model.kind),
        "horizons": horizons,
        **_longitudinal_card(fm),
        "recalibration": {
            "method": "per horizon, logit p' = a + b logit p, IPCW-weighted logistic fit",
            "fitted": f"OOF risks: each outer fold's map on inner {INNER_FOLDS}-fold "
                      "patient-grouped OOF risks of its training scans only; the stored map "
                      "(applied to new scans) on the outer OOF risks",
            "stored": [] if model.recalibration is None else model.recalibration.describe(),
            "notes": [] if model.recalibration is None else list(model.recalibration.notes)},
        "monotone": {"rule": "running maximum of the 1-, 3-, 5-year risks of a scan "
                             "(after recalibration)",
                     "oof_scans_adjusted": int(adjusted.sum()),
                     "oof_max_adjustment": float(np.max(oof - oof_raw)) if len(oof) else 0.0},
        "shap": {"explainer": shap.explainer,
                 "output": "log-odds before recalibration and the monotone adjustment",
                 "max_additivity_error": shap.max_additivity_error},
        "training_seconds": round(seconds, 1)}
    return ModelCard(
        model_id=model.model_id, kind=model.kind, label=model.label, version=TABULAR_VERSION,
        created=dt.datetime.now().isoformat(timespec="seconds"), data_hash=data.data_hash,
        label_fingerprint=data.label_fingerprint, synthetic=synthetic,
        oof_auc={h["horizon_years"]: h["oof_auc"] for h in horizons},
        n_scans=len(fm.scan_ids), n_patients=int(len(np.unique(fm.patient_ids))),
        algorithm=model.algorithm, features=tuple(model.feature_names),
        param_hash=model.param_hash, extra=extra)


def _longitudinal_card(fm: FeatureMatrix) -> dict[str, Any]:
    """What a longitudinal model's card says about its history features (empty otherwise)."""
    if fm.kind not in LONGITUDINAL_KINDS:
        return {}
    if "has_prior" in fm.feature_names:
        has_prior = fm.X[:, fm.feature_names.index("has_prior")] > 0
        counts = {"scans_with_prior": int(has_prior.sum()),
                  "scans_fallback_cross_sectional": int((~has_prior).sum())}
    else:  # the same for every scan, so dropped as a constant feature
        counts = {"scans_with_prior": None, "scans_fallback_cross_sectional": None}
    return {"longitudinal": {
        "history": "the scan and the same patient's strictly earlier scans only (never a "
                   "later one)",
        "change_per_year": "least-squares slope over the scan and its earlier scans",
        "min_prior_years": MIN_PRIOR_YEARS, "version": LONGITUDINAL_VERSION, **counts}}


# What a kind's features fix before any fit (the clinical scores' published rules).
_KIND_SETTINGS: dict[str, dict[str, str]] = {
    "goh": {"stage thresholds (extent > 20%, or 10-30% with FVC < 70%)":
            "fixed before looking (Goh et al., AJRCCM 2008)"},
    "sadl": {"SADL points (smoking, age, DLCO)":
             "fixed before looking (Morisset et al., Chest 2017)"},
    "longitudinal": {"history features, slope rule, MIN_PRIOR_YEARS":
                     "fixed before looking"},
}


def _settings_provenance(algorithm: str, kind: str | None = None) -> dict[str, str]:
    """How each setting of ``algorithm`` (and of ``kind``'s features) was chosen: fixed
    before looking at any result, or inside an inner patient-grouped split of the training
    scans (never on scored scans)."""
    fixed = "fixed before looking"
    by_kind = dict(_KIND_SETTINGS.get(kind or "", {}))
    if algorithm == "gbm":
        return {"gbm_params": "fixed before looking (conservative defaults, GBM_PARAMS)",
                **by_kind}
    inner = ("chosen per outer training fold by an inner patient-grouped "
             f"{INNER_FOLDS}-fold CV on held-out log-loss (nested CV)")
    if algorithm == "logistic":
        return {"C (L2 strength)": inner, "C grid": fixed, **by_kind}
    return {"C (L2 strength)": inner, "C grid": fixed, "intervals": fixed + " (the horizons)",
            **by_kind}


def _register(store: st.Store, model: TabularModel, data: _Data, oofs: _OOF,
              shap: ShapValues, config: dict[str, Any], models_dir: Path,
              seconds: float) -> str:
    """Save the model file and card, then register the model, its OOF risks (monotone) and
    SHAP values in one transaction (replacing an earlier registration of the same id)."""
    synthetic = st.is_synthetic(store)
    card = save_model(model, _model_card(model, data, oofs, shap, config, synthetic,
                                         seconds), models_dir)
    fm = data.fm
    preds = pd.concat([
        _prediction_rows(model.model_id, fm.scan_ids, monotone(oofs.recalibrated)[0],
                         data.fold_of),
        _prediction_rows(model.model_id, fm.scan_ids, monotone(oofs.raw)[0], data.fold_of,
                         split=UNCALIBRATED_SPLIT)], ignore_index=True)
    expl = shap.rows(model.model_id, fm.scan_ids, fm.feature_names, fm.X)
    registry_config = {**config, "label": model.label,
                       "radiomics_params": model.radiomics_params_text}
    with store.transaction() as cur:
        st.delete_model_outputs(cur, model.model_id)
        st.upsert_model(cur, model_id=model.model_id, kind=model.kind, backbone=None,
                        version=TABULAR_VERSION, config=registry_config,
                        data_hash=data.data_hash,
                        weights_path=str(Path(models_dir) / str(card.weights_file)),
                        weights_sha256=card.weights_sha256, card=card.to_json(),
                        synthetic=synthetic)
        st.insert_frame(cur, "predictions", preds)
        st.insert_frame(cur, "explanations", expl)
    return model.model_id


def _prediction_rows(model_id: str, scan_ids: Sequence[str], risks: np.ndarray,
                     fold_of: np.ndarray, split: str = "oof") -> pd.DataFrame:
    n, k = risks.shape
    return pd.DataFrame({
        "model_id": model_id, "scan_id": np.repeat(np.asarray(scan_ids, dtype=object), k),
        "horizon_years": np.tile(np.asarray(HORIZONS_YEARS), n),
        "risk": risks.reshape(-1),  # (n * 3,) scan-major
        "fold": np.repeat(fold_of, k), "split": split})
