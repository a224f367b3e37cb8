"""Tabular mortality models: radiomics features or QCT metrics -> 1/3/5-year risk.

Per horizon, on standardised features (median-imputed, then z-scored with training-set
statistics): a penalised (L2) logistic regression whose strength is chosen by a patient-grouped
inner CV, and (radiomics only) a histogram gradient-boosting classifier with fixed, conservative
settings. Training uses patient-grouped k-fold CV: no patient is ever in a training and a test
fold together; censored scans are left out of each horizon's fits by the one label rule
(:func:`sscmort_core.labels.label_scans`). Out-of-fold (OOF) risks of every scan are stored
(split ``oof``); the registered model is fit on all labelled scans. Per-horizon risks of a scan
are made monotone across horizons by a running maximum (the card counts how often it acted).

Models are files in a models directory (``<model_id>.joblib``, unpickled only after its sha256
matches the registry, and ``<model_id>.json``, the model card) and rows in the ``models`` table.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st
from sscmort_core.errors import ChecksumMismatchError, DataError, ModelError, SscmortError
from sscmort_core.labels import HORIZONS_YEARS, HorizonLabels, label_scans
from sscmort_core.predictions import RiskPrediction
from sscmort_core.registry import default_models_dir, file_sha256

TABULAR_VERSION = "1"
KINDS: tuple[str, ...] = ("radiomics", "qct")
ALGORITHMS: dict[str, tuple[str, ...]] = {"radiomics": ("logistic", "gbm"), "qct": ("logistic",)}
ALGORITHM_LABELS = {"logistic": "penalised logistic", "gbm": "gradient boosting"}
QCT_FEATURES: tuple[str, ...] = ("lung_volume_ml", "mean_lung_density_hu", "skewness",
                                 "kurtosis", "haa_pct", "ild_extent_pct")
MAX_MISSING_SHARE = 0.2  # a feature missing in more scans than this is dropped
MIN_CLASS_COUNT = 3  # fewer positives (or negatives) than this: a constant (prevalence) model
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-3, 1, 9))  # inverse L2 strength grid
INNER_FOLDS = 3
GBM_PARAMS: Mapping[str, Any] = {  # fixed: shallow trees, slow learning, strong L2
    "learning_rate": 0.05, "max_iter": 120, "max_leaf_nodes": 8, "min_samples_leaf": 20,
    "l2_regularization": 1.0, "max_features": 0.5, "early_stopping": False}
ProgressFn = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


# ---------------------------------------------------------------------------------------------
# feature matrices
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureMatrix:
    """Features of the scans that have them. X: (n_scans, n_features) float64, NaN = missing."""

    kind: str
    scan_ids: tuple[str, ...]
    patient_ids: np.ndarray = field(repr=False)  # (n,) str
    feature_names: tuple[str, ...]
    X: np.ndarray = field(repr=False)
    param_hash: str | None  # radiomics parameter hash (None for QCT)
    dropped_features: tuple[str, ...] = ()  # constant or too often missing
    n_scans_without: int = 0  # scans in the store with no features of this kind


def current_param_hash(store: st.Store) -> str:
    """The parameter hash of the repo's radiomics parameter file."""
    from sscmort_core.radiomics import load_params

    return load_params().param_hash


def feature_matrix(store: st.Store, kind: str, *, param_hash: str | None = None) -> FeatureMatrix:
    """The feature matrix of ``kind`` ("radiomics" or "qct") over the stored scans.

    Radiomics uses ``param_hash`` (default: the current parameter file's). Features that are
    constant, or missing in more than :data:`MAX_MISSING_SHARE` of the scans, are dropped.
    Raises DataError when no scan has features.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    scans = st.scans_frame(store)[["scan_id", "patient_id"]]
    if kind == "qct":
        wide = st.qct_frame(store).set_index("scan_id")[list(QCT_FEATURES)]
        param_hash = None
        hint = "measure QCT first (`sscmort demo` or `sscmort ingest`)"
    else:
        param_hash = param_hash or current_param_hash(store)
        long = st.radiomics_long_frame(store, param_hash)
        wide = long.pivot(index="scan_id", columns="feature", values="value") if len(long) \
            else pd.DataFrame()
        hint = f"run `sscmort radiomics` first (parameter hash {param_hash})"
    wide = wide.reindex(scans["scan_id"]).dropna(how="all")
    if wide.empty:
        raise DataError(f"no scan in the store has {kind} features; {hint}", store.path)
    x = wide.to_numpy(dtype=np.float64)  # (n, p)
    missing = np.isnan(x).mean(axis=0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: dropped below
        spread = np.nanstd(x, axis=0)
    keep = (missing <= MAX_MISSING_SHARE) & (np.nan_to_num(spread) > 0)
    names = [str(c) for c in wide.columns]
    pid = scans.set_index("scan_id").loc[wide.index, "patient_id"].to_numpy().astype(str)
    return FeatureMatrix(
        kind=kind, scan_ids=tuple(str(s) for s in wide.index), patient_ids=pid,
        feature_names=tuple(n for n, k in zip(names, keep) if k), X=x[:, keep],
        param_hash=param_hash, dropped_features=tuple(n for n, k in zip(names, keep) if not k),
        n_scans_without=len(scans) - len(wide))


def horizon_labels(store: st.Store, scan_ids: Sequence[str]) -> dict[int, HorizonLabels]:
    """Labels of ``scan_ids`` (in that order) at every horizon, by the one label rule."""
    scans = st.scans_frame(store).set_index("scan_id").loc[list(scan_ids)]
    return {h: label_scans(scans["scan_date"], scans["death_date"],
                           scans["last_followup_date"], h) for h in HORIZONS_YEARS}


# ---------------------------------------------------------------------------------------------
# one horizon's model
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HorizonModel:
    """A fitted model for one horizon: impute (medians) -> standardise -> estimator.

    ``estimator`` None means a constant model predicting ``constant_logit`` (too few events).
    """

    horizon_years: int
    algorithm: str
    medians: np.ndarray = field(repr=False)  # (p,)
    means: np.ndarray = field(repr=False)  # (p,)
    scales: np.ndarray = field(repr=False)  # (p,)
    estimator: Any = field(repr=False)
    constant_logit: float | None
    hyperparameters: Mapping[str, Any]
    background: np.ndarray = field(repr=False)  # (m, p) standardised training rows (SHAP)
    n_train: int
    n_positive: int

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """(n, p) raw features -> (n, p) imputed, standardised features."""
        x = np.where(np.isnan(x), self.medians, x)
        return (x - self.means) / self.scales

    def logit(self, x: np.ndarray) -> np.ndarray:
        """(n,) log-odds of death within the horizon."""
        if self.estimator is None:
            return np.full(len(x), float(self.constant_logit))
        return np.asarray(self.estimator.decision_function(self.standardise(x)), dtype=float)

    def risk(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(x)))

    def describe(self) -> str:
        if self.estimator is None:
            return "constant (too few events to fit)"
        if self.algorithm == "logistic":
            return f"L2 logistic, C={self.hyperparameters['C']:.3g}"
        return "histogram gradient boosting, " + ", ".join(
            f"{k}={v}" for k, v in self.hyperparameters.items())


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _inner_splits(y: np.ndarray, groups: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Patient-grouped, stratified inner CV splits, or None when they cannot hold both classes."""
    from sklearn.model_selection import StratifiedGroupKFold

    if len(np.unique(groups)) < INNER_FOLDS:
        return None
    splitter = StratifiedGroupKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(y)), y, groups))
    for train, test in splits:
        if len(np.unique(y[train])) < 2 or len(np.unique(y[test])) < 2:
            return None
    return splits


def _fit_estimator(z: np.ndarray, y: np.ndarray, groups: np.ndarray, algorithm: str,
                   seed: int) -> tuple[Any, dict[str, Any]]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    if algorithm == "gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier

        est = HistGradientBoostingClassifier(random_state=seed, **GBM_PARAMS).fit(z, y)
        return est, {k: GBM_PARAMS[k] for k in ("learning_rate", "max_iter", "max_leaf_nodes")}
    if algorithm != "logistic":
        raise ValueError(f"unknown algorithm {algorithm!r}")
    splits = _inner_splits(y, groups, seed)
    cv_kw, lr_kw = _l2_keywords()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if splits is None:
            c = 0.1
        else:
            cv = LogisticRegressionCV(Cs=list(LOGISTIC_CS), cv=splits, scoring="neg_log_loss",
                                      max_iter=2000, **cv_kw).fit(z, y)
            c = float(np.ravel(cv.C_)[0])
        est = LogisticRegression(C=c, max_iter=2000, **lr_kw).fit(z, y)
    return est, {"C": c}


def _l2_keywords() -> tuple[dict[str, Any], dict[str, Any]]:
    """Keywords for a pure L2 penalty in this scikit-learn: 1.8+ deprecates ``penalty`` for
    ``l1_ratio(s)=0``; older versions are L2 by default (and warn about l1_ratio)."""
    import inspect

    from sklearn.linear_model import LogisticRegressionCV

    if "use_legacy_attributes" in inspect.signature(LogisticRegressionCV).parameters:
        return {"l1_ratios": (0.0,), "use_legacy_attributes": False}, {"l1_ratio": 0.0}
    return {}, {}


def fit_horizon(x: np.ndarray, y: np.ndarray, groups: np.ndarray, algorithm: str,
                horizon_years: int, seed: int) -> HorizonModel:
    """Fit one horizon on labelled rows. x: (n, p) raw features, y: (n,) 0/1, groups: (n,)."""
    y = np.asarray(y).astype(int)
    medians = np.nanmedian(x, axis=0) if len(x) else np.zeros(x.shape[1])
    medians = np.where(np.isnan(medians), 0.0, medians)
    filled = np.where(np.isnan(x), medians, x)
    means = filled.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    scales = filled.std(axis=0) if len(x) else np.ones(x.shape[1])
    scales = np.where(scales > 0, scales, 1.0)
    z = (filled - means) / scales  # (n, p)
    n_pos = int(y.sum())
    rng = np.random.default_rng(seed)
    background = z[rng.choice(len(z), size=min(len(z), 200), replace=False)] if len(z) else z
    common = dict(horizon_years=horizon_years, algorithm=algorithm, medians=medians,
                  means=means, scales=scales, background=background, n_train=len(y),
                  n_positive=n_pos)
    if min(n_pos, len(y) - n_pos) < MIN_CLASS_COUNT:
        prevalence = (n_pos + 0.5) / (len(y) + 1.0)
        return HorizonModel(estimator=None, constant_logit=_logit(prevalence),
                            hyperparameters={}, **common)
    est, hyper = _fit_estimator(z, y, groups, algorithm, seed)
    return HorizonModel(estimator=est, constant_logit=None, hyperparameters=hyper, **common)


# ---------------------------------------------------------------------------------------------
# a registered model
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TabularModel:
    """One registered tabular model: a :class:`HorizonModel` per horizon (1, 3, 5 years)."""

    model_id: str
    kind: str
    algorithm: str
    label: str
    feature_names: tuple[str, ...]
    horizons: tuple[HorizonModel, ...]
    param_hash: str | None
    radiomics_params_text: str | None = field(default=None, repr=False)

    def vector(self, features: Mapping[str, float]) -> tuple[np.ndarray, int]:
        """(1, p) row in this model's feature order, and how many features were missing."""
        row = [features.get(n) for n in self.feature_names]
        missing = sum(v is None or not np.isfinite(v) for v in row)
        x = np.array([[np.nan if v is None else float(v) for v in row]], dtype=np.float64)
        return x, missing

    def raw_risks(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) per-horizon risks before the monotone adjustment."""
        return np.column_stack([m.risk(x) for m in self.horizons])


def monotone(risks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running maximum over horizons: ((n, 3) monotone risks, (n,) bool "was adjusted")."""
    adjusted = np.maximum.accumulate(risks, axis=1)
    return adjusted, np.any(adjusted - risks > 1e-12, axis=1)


def model_label(kind: str, algorithm: str) -> str:
    return f"{'Radiomics' if kind == 'radiomics' else 'QCT'} {ALGORITHM_LABELS[algorithm]} " \
           f"v{TABULAR_VERSION}"


def save_model(model: TabularModel, card: Mapping[str, Any], models_dir: Path) -> tuple[Path, str]:
    """Write ``<model_id>.joblib`` (atomically) and its card; return (path, sha256)."""
    import joblib

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{model.model_id}.joblib"
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    joblib.dump(model, tmp, compress=3)
    os.replace(tmp, path)
    sha = file_sha256(path)
    card_path = models_dir / f"{model.model_id}.json"
    card_path.write_text(json.dumps({**card, "weights_file": path.name, "weights_sha256": sha},
                                    indent=2, default=str), encoding="utf-8")
    return path, sha


_LOADED: dict[tuple[str, str], TabularModel] = {}


def load_model(store: st.Store, model_id: str, *,
               models_dir: Path | None = None) -> TabularModel:
    """Load a registered tabular model; its file must match the sha256 in the registry
    (``models_dir``: default $SSCMORT_MODELS or models/, resolved at call time)."""
    import joblib

    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    row = st.model_row(store, model_id)
    if row is None:
        raise ModelError(f"no model {model_id!r} in the registry", store.path)
    if row["kind"] not in KINDS:
        raise ModelError(f"model {model_id!r} is a {row['kind']} model, not a tabular one")
    name = Path(str(row["weights_path"] or f"{model_id}.joblib")).name
    path = Path(models_dir) / name
    if not path.exists():
        raise ModelError("model file is missing (train it again with `sscmort train --kind "
                         f"{row['kind']}`)", path)
    key = (str(path.resolve()), str(row["weights_sha256"]))
    if key in _LOADED:
        return _LOADED[key]
    if file_sha256(path) != row["weights_sha256"]:
        raise ChecksumMismatchError("model file does not match the sha256 in the registry; "
                                    "it was changed or replaced, so it is not loaded", path)
    model = joblib.load(path)
    if not isinstance(model, TabularModel) or model.model_id != model_id:
        raise ModelError("file does not hold this tabular model", path)
    _LOADED[key] = model
    return model


def tabular_model_ids(store: st.Store, kinds: Sequence[str] = KINDS) -> list[str]:
    models = st.models_frame(store)
    return models.loc[models["kind"].isin(list(kinds)), "model_id"].tolist()


# ---------------------------------------------------------------------------------------------
# prediction for new data
# ---------------------------------------------------------------------------------------------
def predict_tabular(store: st.Store, model_id: str, features: Mapping[str, float], *,
                    models_dir: Path | None = None) -> RiskPrediction:
    """Per-horizon risk of one scan from its features (names as in the model card).

    Missing features are imputed with the training medians and named in the note; more than
    :data:`MAX_MISSING_SHARE` of them missing is a ModelError.
    """
    return _predict(load_model(store, model_id, models_dir=models_dir), features)


def _predict(model: TabularModel, features: Mapping[str, float]) -> RiskPrediction:
    x, missing = model.vector(features)
    if missing > MAX_MISSING_SHARE * len(model.feature_names):
        raise ModelError(f"{missing} of the {len(model.feature_names)} features model "
                         f"{model.model_id} needs are missing")
    risks, adjusted = monotone(model.raw_risks(x))
    notes = []
    if missing:
        notes.append(f"{missing} missing feature(s) imputed with training medians")
    if adjusted[0]:
        notes.append("risks made monotone across horizons (running maximum)")
    r = risks[0]
    return RiskPrediction(model_id=model.model_id, kind=model.kind, label=model.label,
                          risk_1y=float(r[0]), risk_3y=float(r[1]), risk_5y=float(r[2]),
                          monotone_adjusted=bool(adjusted[0]), note="; ".join(notes) or None)


def predict_for_volume(store: st.Store, hu: np.ndarray, lung_mask: np.ndarray,
                       spacing_mm: Sequence[float], *, models_dir: Path | None = None,
                       qct: Mapping[str, float] | None = None
                       ) -> tuple[list[RiskPrediction], list[tuple[str, str]]]:
    """Risks from every registered radiomics and QCT model for one volume, and (model id,
    reason) for each model that could not be used (missing or changed file, failed
    extraction): one bad model never hides the others.

    hu: (z, y, x) HU; lung_mask: (z, y, x) bool; spacing_mm: (z, y, x). ``qct``: the volume's
    QCT metrics when the caller has them (else measured here). Radiomics features are
    extracted once per parameter set the models were trained with (the card keeps the file).
    """
    from sscmort_core.lungs import qct_metrics
    from sscmort_core.radiomics import extract_features, params_from_text

    out: list[RiskPrediction] = []
    problems: list[tuple[str, str]] = []
    feats_by_hash: dict[str, dict[str, float]] = {}
    for model_id in tabular_model_ids(store):
        try:
            model = load_model(store, model_id, models_dir=models_dir)
            if model.kind == "qct":
                if qct is None:
                    qct = qct_metrics(hu, lung_mask, tuple(spacing_mm)).to_dict()
                out.append(_predict(model, {k: float(v) for k, v in qct.items()}))
                continue
            key = str(model.param_hash)
            if key not in feats_by_hash:
                params = params_from_text(model.radiomics_params_text or "", f"model {model_id}")
                feats_by_hash[key] = extract_features(hu, lung_mask, spacing_mm,
                                                      params).as_dict()
            out.append(_predict(model, feats_by_hash[key]))
        except SscmortError as err:
            problems.append((model_id, str(err)))
    return out, problems


# ---------------------------------------------------------------------------------------------
# training (the cross-validation and registration live in sscmort_core.tabular_train)
# ---------------------------------------------------------------------------------------------
def train_tabular(store: st.Store, kind: str, *, models_dir: Path | None = None,
                  seed: int = 0, folds: int = 5, progress: ProgressFn = _no_progress,
                  param_hash: str | None = None) -> list[str]:
    """Train, cross-validate, explain and register the tabular models of ``kind``.

    Returns the registered model ids. Each model's registry row, OOF predictions and SHAP
    values are written in one transaction (a model trained again on the same data and settings
    replaces itself). Raises DataError without features or with too few patients for ``folds``.

    Runs single-threaded (BLAS / OpenMP limited to one thread): these fits are small, and on a
    shared machine thread synchronisation made them several times slower, not faster.
    """
    from threadpoolctl import threadpool_limits

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    from sscmort_core.tabular_train import train

    with threadpool_limits(limits=1):
        return train(store, kind, models_dir=Path(models_dir or default_models_dir()),
                     seed=seed, folds=folds, progress=progress, param_hash=param_hash)
