"""One call per model and horizon: everything the Model comparison page needs.

Unlike the single metrics, these conveniences take the labels of *all* scans at a horizon:
``y`` is 1 (positive), 0 (negative) or NaN (censored at this horizon, DESIGN.md "Labels").
Censored scans are left out of the binary metrics but kept for Harrell's C and the
time-dependent AUC, whose censoring handling needs them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sscmort_core.errors import MetricInputError, NotBinaryError
from sscmort_core.evaluation._checks import as_1d, check_finite, same_length
from sscmort_core.evaluation.bootstrap import Seed, auc_with_ci, paired_bootstrap_auc_difference
from sscmort_core.evaluation.calibration import (
    DEFAULT_THRESHOLDS,
    brier_score,
    calibration_curve,
    calibration_intercept_slope,
    decision_curve,
)
from sscmort_core.evaluation.discrimination import delong_test, roc_curve_points
from sscmort_core.evaluation.results import ModelEvaluation, PairedComparison
from sscmort_core.evaluation.survival import concordance_index, time_dependent_auc


def evaluate_model(
    y: ArrayLike,
    score: ArrayLike,
    groups: ArrayLike,
    *,
    time: ArrayLike | None = None,
    event: ArrayLike | None = None,
    horizon: float | None = None,
    n_boot: int = 2000,
    seed: Seed = 0,
    level: float = 0.95,
    n_bins: int = 10,
    thresholds: ArrayLike = DEFAULT_THRESHOLDS,
) -> ModelEvaluation:
    """Evaluate one model's predicted probabilities at one horizon.

    Args:
        y: shape (n,), 1 / 0 / NaN (censored at this horizon; excluded from binary metrics).
        score: shape (n,), predicted probability of death by the horizon, in [0, 1].
        groups: shape (n,), patient id of each scan (for the cluster bootstrap).
        time, event: shape (n,), follow-up from the scan and death indicator; give both or
            neither. With them, ``horizon`` (same unit as ``time``) is required, and Harrell's C
            (over all follow-up) and the time-dependent AUC at ``horizon`` are computed on all n
            scans.

    Raises any :class:`~sscmort_core.errors.MetricInputError` of the underlying metrics, e.g.
    :class:`~sscmort_core.errors.NoPositivesError` when no labelled scan is positive.
    """
    labelled, y_bin = _labelled(y)
    s_arr = check_finite(score, "score")
    g_arr = as_1d(groups, "groups")
    same_length(y=labelled, score=s_arr, groups=g_arr)
    survival = _check_survival_args(time, event, horizon, len(s_arr))

    s_lab, g_lab = s_arr[labelled], g_arr[labelled]
    c_index = td_auc = None
    if survival is not None:
        t_arr, e_arr, h = survival
        c_index = concordance_index(t_arr, e_arr, s_arr)
        td_auc = time_dependent_auc(t_arr, e_arr, s_arr, h)
    return ModelEvaluation(
        auc=auc_with_ci(y_bin, s_lab, g_lab, n_boot=n_boot, seed=seed, level=level),
        roc=roc_curve_points(y_bin, s_lab),
        reliability=calibration_curve(y_bin, s_lab, n_bins=n_bins),
        calibration=calibration_intercept_slope(y_bin, s_lab),
        brier=brier_score(y_bin, s_lab),
        decision=decision_curve(y_bin, s_lab, thresholds),
        c_index=c_index,
        time_dependent_auc=td_auc,
        horizon=None if horizon is None else float(horizon),
        n_censored=int((~labelled).sum()),
    )


def compare_models(
    y: ArrayLike,
    score_a: ArrayLike,
    score_b: ArrayLike,
    groups: ArrayLike,
    n_boot: int = 2000,
    seed: Seed = 0,
    level: float = 0.95,
) -> PairedComparison:
    """DeLong test and patient-level paired bootstrap of ``AUC(a) - AUC(b)`` on the same scans.

    ``y`` as in :func:`evaluate_model` (NaN = censored, left out); scores of shape (n,).
    """
    labelled, y_bin = _labelled(y)
    a_arr = check_finite(score_a, "score_a")
    b_arr = check_finite(score_b, "score_b")
    g_arr = as_1d(groups, "groups")
    same_length(y=labelled, score_a=a_arr, score_b=b_arr, groups=g_arr)
    a_lab, b_lab, g_lab = a_arr[labelled], b_arr[labelled], g_arr[labelled]
    return PairedComparison(
        delong=delong_test(y_bin, a_lab, b_lab),
        bootstrap=paired_bootstrap_auc_difference(
            y_bin, a_lab, b_lab, g_lab, n_boot=n_boot, seed=seed, level=level
        ),
    )


# --- checks ------------------------------------------------------------------------------------
def _labelled(y: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.int8]]:
    """(mask of labelled scans over all n, 0/1 labels of the labelled ones)."""
    arr = as_1d(y, "y")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise NotBinaryError(f"y must be numeric 0/1 (NaN = censored), got dtype {arr.dtype}")
    values = arr.astype(np.float64)
    labelled = ~np.isnan(values)
    bad = labelled & ~np.isin(values, (0.0, 1.0))
    if bad.any():
        examples = np.unique(values[bad])[:3].tolist()
        raise NotBinaryError(f"y must hold 0, 1 or NaN (censored); found e.g. {examples}")
    return labelled, values[labelled].astype(np.int8)


def _check_survival_args(
    time: ArrayLike | None, event: ArrayLike | None, horizon: float | None, n: int
) -> tuple[ArrayLike, ArrayLike, float] | None:
    if time is None and event is None:
        return None
    if time is None or event is None:
        raise MetricInputError("give both time and event for the survival metrics, or neither")
    if horizon is None:
        raise MetricInputError("horizon is required with time and event (time-dependent AUC)")
    t_arr, e_arr = as_1d(time, "time"), as_1d(event, "event")
    same_length(score=np.empty(n), time=t_arr, event=e_arr)
    return t_arr, e_arr, float(horizon)
