"""Metrics for a model at a horizon (../shared/DESIGN.md "Evaluation"). Pure functions over
NumPy arrays.

Each public metric checks its inputs (named :class:`~sscmort_core.errors.MetricInputError`
subclasses), then calls a computation helper, and returns a float or a frozen dataclass.

* discrimination: :func:`roc_curve_points`, :func:`auc` (:func:`auc_or_none`),
  :func:`delong_test`
* patient-level bootstrap: :func:`auc_with_ci`, :func:`paired_bootstrap_auc_difference`
* calibration: :func:`calibration_curve`, :func:`calibration_intercept_slope`,
  :func:`brier_score`, :func:`decision_curve`
* survival: :func:`concordance_index` (Harrell), :func:`time_dependent_auc` (Uno, IPCW)
* paired comparison of two models: :func:`compare_models` (DeLong + bootstrap)

May import: errors, numpy, scipy. Never the store: callers pass arrays in.
"""

from __future__ import annotations

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
from sscmort_core.evaluation.discrimination import (
    auc,
    auc_columns,
    auc_or_none,
    delong_test,
    roc_curve_points,
)
from sscmort_core.evaluation.paired import compare_models
from sscmort_core.evaluation.results import (
    AUCDifference,
    AUCResult,
    CalibrationResult,
    DecisionCurve,
    DeLongResult,
    PairedComparison,
    ReliabilityCurve,
    RocCurve,
)
from sscmort_core.evaluation.survival import (
    censoring_survival_left,
    concordance_index,
    time_dependent_auc,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "AUCDifference",
    "AUCResult",
    "CalibrationResult",
    "DeLongResult",
    "DecisionCurve",
    "PairedComparison",
    "ReliabilityCurve",
    "RocCurve",
    "auc",
    "auc_columns",
    "auc_or_none",
    "auc_with_ci",
    "brier_score",
    "calibration_curve",
    "calibration_intercept_slope",
    "censoring_survival_left",
    "cluster_counts",
    "compare_models",
    "concordance_index",
    "decision_curve",
    "delong_test",
    "paired_bootstrap_auc_difference",
    "roc_curve_points",
    "time_dependent_auc",
]
