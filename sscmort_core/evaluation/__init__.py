"""Metrics for a model at a horizon (DESIGN.md "Evaluation"). Pure functions over NumPy arrays.

Each public metric checks its inputs (named :class:`~sscmort_core.errors.MetricInputError`
subclasses), then calls a computation helper, and returns a float or a frozen dataclass.

* discrimination: :func:`roc_curve_points`, :func:`auc`, :func:`delong_test`
* patient-level bootstrap: :func:`auc_with_ci`, :func:`paired_bootstrap_auc_difference`
* calibration: :func:`calibration_curve`, :func:`calibration_intercept_slope`,
  :func:`brier_score`, :func:`decision_curve`
* survival: :func:`concordance_index` (Harrell), :func:`time_dependent_auc` (Uno, IPCW)
* one call per model and horizon: :func:`evaluate_model`, :func:`compare_models`
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
from sscmort_core.evaluation.discrimination import auc, delong_test, roc_curve_points
from sscmort_core.evaluation.results import (
    AUCDifference,
    AUCResult,
    CalibrationResult,
    DecisionCurve,
    DeLongResult,
    ModelEvaluation,
    PairedComparison,
    ReliabilityCurve,
    RocCurve,
)
from sscmort_core.evaluation.summary import compare_models, evaluate_model
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
    "ModelEvaluation",
    "PairedComparison",
    "ReliabilityCurve",
    "RocCurve",
    "auc",
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
    "evaluate_model",
    "paired_bootstrap_auc_difference",
    "roc_curve_points",
    "time_dependent_auc",
]
