"""Tabular mortality models: radiomics features or QCT metrics -> 1/3/5-year risk (pure: arrays
in, fitted models and risks out).

Per horizon, on standardised features (median-imputed, then z-scored with training-set
statistics): a penalised (L2) logistic regression whose strength is chosen by a patient-grouped
inner CV, and (radiomics only) a histogram gradient-boosting classifier with fixed, conservative
settings. Per-horizon risks of a scan are made monotone across horizons by a running maximum
(the card counts how often it acted). Training (:mod:`.train`) uses patient-grouped k-fold CV;
files and the store are :mod:`.io`'s business.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from sscmort_core.errors import ModelError
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.predictions import RiskPrediction
from sscmort_core.tabular.recalibration import Recalibration
from sscmort_core.tabular.survival import CumulativeRisk, fit_survival

TABULAR_VERSION = "1"
KINDS: tuple[str, ...] = ("radiomics", "qct")
# Clinical reference kinds (features from .clinical; never predicted from a volume alone).
REFERENCE_KINDS: tuple[str, ...] = ("goh", "sadl", "clinical", "clinical_qct")
# Each scan with its patient's earlier scans (features from .longitudinal; scored from the
# store's history, never from a volume alone).
LONGITUDINAL_KINDS: tuple[str, ...] = ("longitudinal",)
TRAINABLE_KINDS: tuple[str, ...] = KINDS + REFERENCE_KINDS + LONGITUDINAL_KINDS
ALGORITHMS: dict[str, tuple[str, ...]] = {"radiomics": ("logistic", "gbm", "discrete_time"),
                                          "qct": ("logistic", "discrete_time"),
                                          **dict.fromkeys(REFERENCE_KINDS + LONGITUDINAL_KINDS,
                                                          ("discrete_time",))}
KIND_LABELS = {"radiomics": "Radiomics", "qct": "QCT", "goh": "Goh staging", "sadl": "SADL",
               "clinical": "Clinical", "clinical_qct": "Clinical + QCT",
               "longitudinal": "Longitudinal QCT + PFT"}
ALGORITHM_LABELS = {"logistic": "penalised logistic (complete cases)",
                    "gbm": "gradient boosting (complete cases)",
                    "discrete_time": "discrete-time survival"}
# How each algorithm treats censored scans (model cards, the Models page, reports).
SURVIVAL_ALGORITHMS: tuple[str, ...] = ("discrete_time",)
FIT_LIKELIHOOD: dict[str, str] = {
    "logistic": "complete cases: per horizon, binary likelihood on the labelled scans "
                "(censored scans excluded)",
    "gbm": "complete cases: per horizon, binary likelihood on the labelled scans "
           "(censored scans excluded)",
    "discrete_time": "survival likelihood: discrete-time hazard over (0,1], (1,3], (3,5] "
                     "years; every scan counts up to its death or last follow-up"}
QCT_FEATURES: tuple[str, ...] = ("lung_volume_ml", "mean_lung_density_hu", "skewness",
                                 "kurtosis", "haa_pct", "ild_extent_pct",
                                 # the pattern map's extents (% of lung; normal is the rest)
                                 "emphysema_pct", "ground_glass_pct", "reticulation_pct",
                                 "honeycombing_pct", "consolidation_pct")
MAX_MISSING_SHARE = 0.2  # a feature missing in more scans than this is dropped
MIN_CLASS_COUNT = 3  # fewer positives (or negatives) than this: a constant (prevalence) model
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-3, 1, 9))  # inverse L2 strength grid
INNER_FOLDS = 3
GBM_PARAMS: Mapping[str, Any] = {  # fixed: shallow trees, slow learning, strong L2
    "learning_rate": 0.05, "max_iter": 120, "max_leaf_nodes": 8, "min_samples_leaf": 20,
    "l2_regularization": 1.0, "max_features": 0.5, "early_stopping": False}


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
    n_flagged_excluded: int = 0  # scans left out: lung mask flagged by QC, not accepted


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
        if self.algorithm == "discrete_time":
            c = self.hyperparameters.get("C")
            return "discrete-time survival, " + ("intervals only (too few deaths)" if c is None
                                                 else f"L2 C={c:.3g}")
        return "histogram gradient boosting, " + ", ".join(
            f"{k}={v}" for k, v in self.hyperparameters.items())


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _inner_splits(y: np.ndarray, groups: np.ndarray, seed: int
                  ) -> list[tuple[np.ndarray, np.ndarray]] | None:
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
    from sklearn.linear_model import LogisticRegressionCV

    if "use_legacy_attributes" in inspect.signature(LogisticRegressionCV).parameters:
        return {"l1_ratios": (0.0,), "use_legacy_attributes": False}, {"l1_ratio": 0.0}
    return {}, {}


def fit_horizon(x: np.ndarray, y: np.ndarray, groups: np.ndarray, algorithm: str,
                horizon_years: int, seed: int) -> HorizonModel:
    """Fit one horizon on labelled rows. x: (n, p) raw features, y: (n,) 0/1, groups: (n,)."""
    y = np.asarray(y).astype(int)
    medians, means, scales, z = _standardisation(x)  # z: (n, p)
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


def _standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(medians, means, scales, z) of raw rows x (n, p): median-imputed, then z-scored."""
    medians = np.nanmedian(x, axis=0) if len(x) else np.zeros(x.shape[1])
    medians = np.where(np.isnan(medians), 0.0, medians)
    filled = np.where(np.isnan(x), medians, x)
    means = filled.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    scales = filled.std(axis=0) if len(x) else np.ones(x.shape[1])
    scales = np.where(scales > 0, scales, 1.0)
    return medians, means, scales, (filled - means) / scales


def fit_survival_horizons(x: np.ndarray, time_years: np.ndarray, event: np.ndarray,
                          groups: np.ndarray, seed: int) -> tuple[HorizonModel, ...]:
    """One discrete-time survival fit (:mod:`.survival`) on every row, censored ones included,
    as a :class:`HorizonModel` per horizon sharing it. x: (n, p) raw features, time_years and
    event: (n,) follow-up from the scan."""
    medians, means, scales, z = _standardisation(x)
    hazard = fit_survival(z, np.asarray(time_years, float), np.asarray(event, bool), groups,
                          seed)
    rng = np.random.default_rng(seed)
    background = z[rng.choice(len(z), size=min(len(z), 200), replace=False)] if len(z) else z
    return tuple(HorizonModel(
        horizon_years=h, algorithm="discrete_time", medians=medians, means=means, scales=scales,
        estimator=CumulativeRisk(hazard, j), constant_logit=None,
        hyperparameters={"C": hazard.c}, background=background, n_train=len(z),
        n_positive=int((np.asarray(event, bool) & (np.asarray(time_years) <= h)).sum()))
        for j, h in enumerate(HORIZONS_YEARS))


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
    # per-horizon recalibration fitted on out-of-fold risks (None: none; older model files)
    recalibration: Recalibration | None = None

    def vector(self, features: Mapping[str, float]) -> tuple[np.ndarray, int]:
        """(1, p) row in this model's feature order, and how many features were missing."""
        row = [features.get(n) for n in self.feature_names]
        missing = sum(v is None or not np.isfinite(v) for v in row)
        x = np.array([[np.nan if v is None else float(v) for v in row]], dtype=np.float64)
        return x, missing

    def raw_risks(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) per-horizon risks before recalibration and the monotone adjustment."""
        return np.column_stack([m.risk(x) for m in self.horizons])

    def calibrated_risks(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) per-horizon risks after the stored recalibration, before the monotone
        adjustment (the raw risks when the model has none)."""
        raw = self.raw_risks(x)
        return raw if self.recalibration is None else self.recalibration.apply(raw)


# joblib files name the classes by this stable path (re-exported by the package), as before
# the package was split, so files written by any version load.
HorizonModel.__module__ = TabularModel.__module__ = "sscmort_core.tabular"


def monotone(risks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running maximum over horizons: ((n, 3) monotone risks, (n,) bool "was adjusted")."""
    adjusted = np.maximum.accumulate(risks, axis=1)
    return adjusted, np.any(adjusted - risks > 1e-12, axis=1)


def model_label(kind: str, algorithm: str) -> str:
    """E.g. "QCT discrete-time survival v1", "QCT penalised logistic (complete cases) v1"."""
    return f"{KIND_LABELS[kind]} {ALGORITHM_LABELS[algorithm]} v{TABULAR_VERSION}"


def predict_features(model: TabularModel, features: Mapping[str, float]) -> RiskPrediction:
    """Per-horizon risk of one scan from its features (names as in the model card).

    Missing features are imputed with the training medians and named in the note; more than
    :data:`MAX_MISSING_SHARE` of them missing is a ModelError.
    """
    x, missing = model.vector(features)
    if missing > MAX_MISSING_SHARE * len(model.feature_names):
        raise ModelError(f"{missing} of the {len(model.feature_names)} features model "
                         f"{model.model_id} needs are missing")
    risks, adjusted = monotone(model.calibrated_risks(x))
    note = f"{missing} missing feature(s) imputed with training medians" if missing else None
    r = risks[0]
    return RiskPrediction(model_id=model.model_id, kind=model.kind, label=model.label,
                          risk_1y=float(r[0]), risk_3y=float(r[1]), risk_5y=float(r[2]),
                          monotone_adjusted=bool(adjusted[0]), note=note)


@dataclass(frozen=True)
class BatchRisks:
    """Risks of n scans from one tabular model (:func:`predict_matrix`)."""

    risks: np.ndarray  # (n, 3) per-horizon risks, monotone across horizons
    adjusted: np.ndarray  # (n,) bool: the running maximum changed the row
    n_missing: np.ndarray  # (n,) int: features missing (imputed with the training medians)
    usable: np.ndarray  # (n,) bool: at most MAX_MISSING_SHARE of the features missing


def predict_matrix(model: TabularModel, x: np.ndarray) -> BatchRisks:
    """:func:`predict_features` for n scans at once (a batch over the store).

    x: (n, p) raw features in ``model.feature_names`` order, NaN where missing. Rows with more
    than :data:`MAX_MISSING_SHARE` of the features missing are marked not ``usable`` (where
    :func:`predict_features` raises); their risks are not meaningful.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(model.feature_names):
        raise ValueError(f"need (n, {len(model.feature_names)}) features, got {x.shape}")
    n_missing = (~np.isfinite(x)).sum(axis=1)  # as predict_features counts them
    risks, adjusted = monotone(model.calibrated_risks(x)) if len(x) else (np.zeros((0, 3)),
                                                                   np.zeros(0, bool))
    usable = n_missing <= MAX_MISSING_SHARE * len(model.feature_names)
    return BatchRisks(risks, adjusted, n_missing, usable)
