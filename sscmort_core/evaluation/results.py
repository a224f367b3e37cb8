"""Frozen result types returned by :mod:`sscmort_core.evaluation`.

Absent values are ``None`` (never a sentinel number). Result types that hold arrays make them
read-only and compare by identity (``eq=False``), since element-wise ``==`` on arrays has no
single truth value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray


def _freeze_arrays(obj: object) -> None:
    """Make every ndarray field of a dataclass read-only."""
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            value.setflags(write=False)


@dataclass(frozen=True, eq=False)
class RocCurve:
    """Empirical ROC curve, one point per distinct score plus the origin.

    ``thresholds`` decrease; point ``k`` flags samples with ``score >= thresholds[k]``.
    ``thresholds[0]`` is ``+inf`` (flag nothing: the point (0, 0)), as in scikit-learn.
    All arrays have shape (n_distinct_scores + 1,).
    """

    fpr: NDArray[np.float64]
    tpr: NDArray[np.float64]
    thresholds: NDArray[np.float64]

    def __post_init__(self) -> None:
        _freeze_arrays(self)


@dataclass(frozen=True)
class AUCResult:
    """AUC with a patient-level (cluster) percentile bootstrap CI.

    ``ci_low`` / ``ci_high`` are ``None`` when no CI can be formed: a single patient
    (``n_groups == 1``) or no bootstrap resample holding both classes (``n_boot_used == 0``).
    ``n`` counts scans, ``n_events`` positive scans, ``n_groups`` patients.
    ``n_boot_dropped`` resamples held one class only and were left out.
    """

    auc: float
    ci_low: float | None
    ci_high: float | None
    level: float
    n: int
    n_events: int
    n_groups: int
    n_boot_used: int
    n_boot_dropped: int
    estimand: str = "per scan"


@dataclass(frozen=True)
class DeLongResult:
    """DeLong test of two correlated AUCs on the same scans (``auc_diff = auc_a - auc_b``).

    ``se`` is the standard error of ``auc_diff``. When ``se == 0`` (e.g. identical scores),
    ``z`` is 0 and ``p_value`` is 1 if ``auc_diff == 0``; otherwise ``z`` is +/-inf and
    ``p_value`` 0. DeLong treats scans as independent; use the patient-level bootstrap
    (:class:`AUCDifference`) when patients contribute several scans.
    """

    auc_a: float
    auc_b: float
    auc_diff: float
    se: float
    z: float
    p_value: float
    n: int
    n_events: int


@dataclass(frozen=True)
class AUCDifference:
    """Patient-level paired bootstrap of ``auc_a - auc_b``.

    ``p_value`` is the two-sided bootstrap proportion
    ``min(1, 2 * min(P*(d <= 0), P*(d >= 0)))`` over the ``n_boot_used`` resamples, so its
    resolution is ``1 / n_boot_used`` (a value of 0 means "below that"). CI bounds and
    ``p_value`` are ``None`` when no CI can be formed (see :class:`AUCResult`).
    """

    diff: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    level: float
    n_groups: int
    n_boot_used: int
    n_boot_dropped: int


@dataclass(frozen=True, eq=False)
class ReliabilityCurve:
    """Reliability (calibration) curve over quantile bins; empty bins are left out.

    Arrays have shape (n_nonempty_bins,): ``mean_predicted`` and ``observed_fraction`` are
    proportions in [0, 1]; ``count`` is the number of samples per bin; ``bin_low`` and
    ``bin_high`` are the bin's quantile edges (a sample equal to an inner edge falls in the
    lower bin, as in ``sklearn.calibration.calibration_curve(strategy="quantile")``).
    """

    mean_predicted: NDArray[np.float64]
    observed_fraction: NDArray[np.float64]
    count: NDArray[np.int64]
    bin_low: NDArray[np.float64]
    bin_high: NDArray[np.float64]

    def __post_init__(self) -> None:
        _freeze_arrays(self)


@dataclass(frozen=True)
class CalibrationResult:
    """Logistic recalibration of predicted probabilities.

    ``slope``: coefficient of logit(p) in ``logit P(y=1) = a + b * logit(p)`` (ideal 1; < 1 means
    predictions too extreme). ``intercept``: calibration-in-the-large, ``a`` in
    ``logit P(y=1) = a + logit(p)`` (ideal 0; > 0 means risks underestimated on average).
    ``slope_intercept`` is ``a`` of the two-parameter fit, kept for drawing the recalibration line.
    """

    intercept: float
    slope: float
    slope_intercept: float
    n: int
    n_events: int


@dataclass(frozen=True, eq=False)
class DecisionCurve:
    """Net benefit (Vickers & Elkin 2006) per threshold probability, shape (n_thresholds,).

    Treat when ``prob >= threshold``. ``net_benefit = TP/n - FP/n * t / (1 - t)``.
    Treat-all is ``prevalence - (1 - prevalence) * t / (1 - t)``; treat-none is 0.
    """

    thresholds: NDArray[np.float64]
    net_benefit_model: NDArray[np.float64]
    net_benefit_treat_all: NDArray[np.float64]
    net_benefit_treat_none: NDArray[np.float64]
    prevalence: float

    def __post_init__(self) -> None:
        _freeze_arrays(self)


@dataclass(frozen=True)
class ClusteredDeLongResult:
    """DeLong test of ``auc_a == auc_b`` with scans clustered in patients (Obuchowski 1997).

    The structural components of DeLong's test are summed per patient, so the variance
    counts a patient's scans as correlated; with one scan per patient it is DeLong's.
    ``se_a`` / ``se_b`` are the standard errors of each AUC, ``se`` that of
    ``auc_diff = auc_a - auc_b``; ``z`` and ``p_value`` (two-sided, normal) follow
    :class:`DeLongResult` when ``se == 0``. The estimand is per scan.
    """

    auc_a: float
    auc_b: float
    auc_diff: float
    se_a: float
    se_b: float
    se: float
    z: float
    p_value: float
    n: int
    n_events: int
    n_groups: int


@dataclass(frozen=True)
class PairedComparison:
    """Two models on the same scans: DeLong test, patient-level paired bootstrap, and the
    clustered DeLong test (``None`` when fewer than 2 patients hold positives or negatives).

    :attr:`p_value` is the one to show: the clustered DeLong p where computed, else the
    bootstrap's; both respect that scans cluster in patients (plain DeLong does not).
    """

    delong: DeLongResult
    bootstrap: AUCDifference
    clustered: ClusteredDeLongResult | None = None

    @property
    def p_value(self) -> float | None:
        return self.clustered.p_value if self.clustered is not None else self.bootstrap.p_value

    @property
    def p_value_method(self) -> str:
        if self.clustered is not None:
            return "clustered DeLong (Obuchowski 1997)"
        return "patient bootstrap"


@dataclass(frozen=True, eq=False)
class IPCWWeights:
    """Inverse probability of censoring weights at ``horizon``, arrays of shape (n,).

    ``weight``: cases ``1 / G(T-)``, controls ``1 / G(horizon)``, others 0. ``case``: death
    at or before the horizon; ``control``: follow-up beyond it; neither: censored at or before
    it. ``censoring_at_horizon`` is ``G(horizon)``, the Kaplan-Meier probability of remaining
    uncensored beyond the horizon.
    """

    weight: NDArray[np.float64]
    case: NDArray[np.bool_]
    control: NDArray[np.bool_]
    horizon: float
    censoring_at_horizon: float

    def __post_init__(self) -> None:
        _freeze_arrays(self)

    @property
    def n_censored(self) -> int:
        """Scans censored at or before the horizon (weight 0)."""
        return int((~(self.case | self.control)).sum())


@dataclass(frozen=True)
class ObservedExpected:
    """Calibration-in-the-large at a horizon: ``ratio = observed / expected`` (ideal 1; > 1
    means risks underestimated). ``observed`` is ``1 - `` Kaplan-Meier at the horizon,
    ``expected`` the mean predicted risk; ``n`` scans, ``n_events`` deaths by the horizon."""

    observed: float
    expected: float
    ratio: float
    n: int
    n_events: int


@dataclass(frozen=True, eq=False)
class SurvivalReliabilityCurve:
    """Calibration against survival estimates per quantile group of predicted risk.

    Arrays of shape (n_nonempty_bins,): ``mean_predicted``; ``observed_km`` (``1 - `` the
    group's Kaplan-Meier at the horizon); ``observed_ipcw`` (the IPCW risk with the cohort's
    censoring distribution); ``count`` scans, ``n_events`` deaths by the horizon,
    ``n_censored`` scans censored at or before it; bin edges as :class:`ReliabilityCurve`.
    """

    mean_predicted: NDArray[np.float64]
    observed_km: NDArray[np.float64]
    observed_ipcw: NDArray[np.float64]
    count: NDArray[np.int64]
    n_events: NDArray[np.int64]
    n_censored: NDArray[np.int64]
    bin_low: NDArray[np.float64]
    bin_high: NDArray[np.float64]

    def __post_init__(self) -> None:
        _freeze_arrays(self)


@dataclass(frozen=True)
class MetricCI:
    """A metric with its patient-level (cluster) percentile bootstrap CI.

    ``metric`` names it (e.g. ``"uno_c"``); ``estimand`` is "per scan" or "per patient (each
    patient weighted equally)". ``n`` scans, ``n_events`` events the metric counts (deaths
    by the horizon, or all deaths for an untruncated C-index), ``n_groups`` patients holding
    those scans. ``se_boot`` is the standard deviation of the usable resamples. CI bounds and
    ``se_boot`` are ``None`` when no resample was usable (``n_boot_used == 0``) or there is a
    single patient; ``n_boot_dropped`` resamples left the metric undefined (e.g. no death).
    """

    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    se_boot: float | None
    level: float
    estimand: str
    n: int
    n_events: int
    n_groups: int
    n_boot_used: int
    n_boot_dropped: int


@dataclass(frozen=True)
class MetricDifference:
    """Patient-level paired bootstrap of ``value_a - value_b`` (same resamples for both).

    ``p_value`` as :class:`AUCDifference` (two-sided bootstrap proportion, resolution
    ``1 / n_boot_used``); CI bounds and ``p_value`` are ``None`` when no resample was usable.
    """

    metric: str
    value_a: float
    value_b: float
    diff: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    level: float
    estimand: str
    n_groups: int
    n_boot_used: int
    n_boot_dropped: int
