"""Metrics for a model at a horizon (../shared/DESIGN.md "Evaluation"). Pure functions over
NumPy arrays.

Each public metric checks its inputs (named :class:`~sscmort_core.errors.MetricInputError`
subclasses), then calls a computation helper, and returns a float or a frozen dataclass.

* discrimination: :func:`roc_curve_points`, :func:`auc` (:func:`auc_or_none`),
  :func:`delong_test`
* patient-level bootstrap: :func:`auc_with_ci`, :func:`paired_bootstrap_auc_difference`
* calibration: :func:`calibration_curve`, :func:`calibration_intercept_slope`,
  :func:`brier_score`, :func:`decision_curve`
* survival: :func:`concordance_index` (Harrell, optionally truncated at ``tau``),
  :func:`uno_c` (Uno's C truncated at ``tau``), :func:`time_dependent_auc` (Uno, IPCW)
* censoring-aware accuracy at a horizon (ipcw): :func:`ipcw_weights`, :func:`ipcw_brier`,
  :func:`observed_expected`, :func:`ipcw_calibration_intercept_slope`,
  :func:`km_calibration_curve`, :func:`ipcw_decision_curve`
* estimands and patients (weights): :data:`PER_SCAN`, :data:`PER_PATIENT`,
  :func:`patient_clusters`
* patient bootstrap of any metric (batch, resampling): the ``*_metric`` constructors, then
  :func:`bootstrap_cis` / :func:`metric_with_ci` / :func:`paired_bootstrap_difference`
* paired comparison of two models: :func:`compare_models` (DeLong, bootstrap and the
  clustered DeLong :func:`clustered_delong_test`, Obuchowski 1997)

May import: errors, numpy, scipy. Never the store: callers pass arrays in.
"""

from __future__ import annotations

from sscmort_core.evaluation.batch import (
    BatchMetric,
    auc_metric,
    brier_metric,
    calibration_metric,
    harrell_c_metric,
    ipcw_brier_metric,
    ipcw_calibration_metric,
    observed_expected_metric,
    td_auc_metric,
    uno_c_metric,
)
from sscmort_core.evaluation.bootstrap import (
    auc_with_ci,
    cluster_counts,
    paired_bootstrap_auc_difference,
)
from sscmort_core.evaluation.calibration import (
    DEFAULT_THRESHOLDS,
    brier_score,
    calibration_curve,
    calibration_intercept_slope,
    decision_curve,
)
from sscmort_core.evaluation.clustered import clustered_delong_test, obuchowski_covariance
from sscmort_core.evaluation.discrimination import (
    auc,
    auc_columns,
    auc_or_none,
    delong_test,
    roc_curve_points,
)
from sscmort_core.evaluation.ipcw import (
    ipcw_brier,
    ipcw_calibration_intercept_slope,
    ipcw_decision_curve,
    ipcw_weights,
    km_calibration_curve,
    observed_expected,
)
from sscmort_core.evaluation.paired import compare_models
from sscmort_core.evaluation.resampling import (
    bootstrap_cis,
    bootstrap_values,
    metric_with_ci,
    paired_bootstrap_difference,
)
from sscmort_core.evaluation.results import (
    AUCDifference,
    AUCResult,
    CalibrationResult,
    ClusteredDeLongResult,
    DecisionCurve,
    DeLongResult,
    IPCWWeights,
    MetricCI,
    MetricDifference,
    ObservedExpected,
    PairedComparison,
    ReliabilityCurve,
    RocCurve,
    SurvivalReliabilityCurve,
)
from sscmort_core.evaluation.survival import (
    censoring_survival_left,
    concordance_index,
    time_dependent_auc,
    uno_c,
)
from sscmort_core.evaluation.weights import (
    ESTIMANDS,
    PER_PATIENT,
    PER_SCAN,
    PatientClusters,
    patient_clusters,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ESTIMANDS",
    "PER_PATIENT",
    "PER_SCAN",
    "AUCDifference",
    "AUCResult",
    "BatchMetric",
    "CalibrationResult",
    "ClusteredDeLongResult",
    "DecisionCurve",
    "DeLongResult",
    "IPCWWeights",
    "MetricCI",
    "MetricDifference",
    "ObservedExpected",
    "PairedComparison",
    "PatientClusters",
    "ReliabilityCurve",
    "RocCurve",
    "SurvivalReliabilityCurve",
    "auc",
    "auc_columns",
    "auc_metric",
    "auc_or_none",
    "auc_with_ci",
    "bootstrap_cis",
    "bootstrap_values",
    "brier_metric",
    "brier_score",
    "calibration_curve",
    "calibration_intercept_slope",
    "calibration_metric",
    "censoring_survival_left",
    "cluster_counts",
    "clustered_delong_test",
    "compare_models",
    "concordance_index",
    "decision_curve",
    "delong_test",
    "harrell_c_metric",
    "ipcw_brier",
    "ipcw_brier_metric",
    "ipcw_calibration_intercept_slope",
    "ipcw_calibration_metric",
    "ipcw_decision_curve",
    "ipcw_weights",
    "km_calibration_curve",
    "metric_with_ci",
    "observed_expected",
    "observed_expected_metric",
    "obuchowski_covariance",
    "paired_bootstrap_auc_difference",
    "paired_bootstrap_difference",
    "patient_clusters",
    "roc_curve_points",
    "td_auc_metric",
    "time_dependent_auc",
    "uno_c",
    "uno_c_metric",
]
