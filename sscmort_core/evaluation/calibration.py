"""Calibration and clinical usefulness of predicted probabilities.

Reliability curve over quantile bins, logistic recalibration (intercept and slope), Brier
score, and the decision curve (net benefit).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, logit

from sscmort_core.errors import CalibrationFitError, MetricInputError
from sscmort_core.evaluation._checks import (
    check_binary,
    check_positive_int,
    check_probability,
    require_both_classes,
    same_length,
)
from sscmort_core.evaluation.results import CalibrationResult, DecisionCurve, ReliabilityCurve

# Probabilities are clipped to [_P_CLIP, 1 - _P_CLIP] before the logit: a float32 sigmoid
# rounds risks within ~6e-8 of 0 or 1 to exactly 0 or 1, whose logit is infinite.
_P_CLIP = 1e-7
_MAX_NEWTON_STEPS = 100
_NEWTON_TOL = 1e-10

DEFAULT_THRESHOLDS: NDArray[np.float64] = np.linspace(0.01, 0.99, 99)
DEFAULT_THRESHOLDS.setflags(write=False)


# --- public ------------------------------------------------------------------------------------
def calibration_curve(y: ArrayLike, prob: ArrayLike, n_bins: int = 10) -> ReliabilityCurve:
    """Reliability curve with ``n_bins`` quantile bins of ``prob`` (empty bins left out).

    Same binning as ``sklearn.calibration.calibration_curve(y, prob, n_bins, strategy="quantile")``.
    """
    y_arr, p_arr = _check_prob_inputs(y, prob)
    n_bins = check_positive_int(n_bins, "n_bins")
    return _reliability(y_arr, p_arr, n_bins)


def calibration_intercept_slope(y: ArrayLike, prob: ArrayLike) -> CalibrationResult:
    """Calibration intercept (in-the-large) and slope by unpenalised logistic recalibration.

    Probabilities of exactly 0 or 1 are clipped to ``[1e-7, 1 - 1e-7]`` before the logit.
    Raises :class:`~sscmort_core.errors.CalibrationFitError` when a fit does not converge
    (perfect separation) or all predictions are equal (slope undefined).
    """
    y_arr, p_arr = _check_prob_inputs(y, prob)
    n_pos, _ = require_both_classes(y_arr)
    lp = logit(np.clip(p_arr, _P_CLIP, 1.0 - _P_CLIP))
    if np.ptp(lp) == 0.0:
        raise CalibrationFitError(
            "all predicted probabilities are equal: the calibration slope is undefined"
        )
    ones = np.ones((len(lp), 1))
    intercept = _logistic_newton(ones, y_arr, offset=lp, what="calibration intercept")[0]
    slope_fit = _logistic_newton(
        np.column_stack([ones, lp]), y_arr, offset=np.zeros_like(lp), what="calibration slope"
    )
    return CalibrationResult(
        intercept=float(intercept),
        slope=float(slope_fit[1]),
        slope_intercept=float(slope_fit[0]),
        n=len(y_arr),
        n_events=n_pos,
    )


def brier_score(y: ArrayLike, prob: ArrayLike) -> float:
    """Mean squared difference between predicted probability and 0/1 outcome (lower is better)."""
    y_arr, p_arr = _check_prob_inputs(y, prob)
    return float(np.mean((p_arr - y_arr) ** 2))


def decision_curve(
    y: ArrayLike, prob: ArrayLike, thresholds: ArrayLike = DEFAULT_THRESHOLDS
) -> DecisionCurve:
    """Net benefit of treating when ``prob >= t``, of treating all and of treating none.

    ``thresholds`` are threshold probabilities strictly inside (0, 1), shape (k,).
    """
    y_arr, p_arr = _check_prob_inputs(y, prob)
    t_arr = check_probability(thresholds, "thresholds")
    if ((t_arr <= 0.0) | (t_arr >= 1.0)).any():
        raise MetricInputError("thresholds must lie strictly between 0 and 1")
    return _net_benefit(y_arr, p_arr, t_arr)


# --- checks ------------------------------------------------------------------------------------
def _check_prob_inputs(
    y: ArrayLike, prob: ArrayLike
) -> tuple[NDArray[np.int8], NDArray[np.float64]]:
    y_arr = check_binary(y)
    p_arr = check_probability(prob)
    same_length(y=y_arr, prob=p_arr)
    if len(y_arr) == 0:
        raise MetricInputError("no samples: y and prob are empty")
    return y_arr, p_arr


# --- computation ---------------------------------------------------------------------------------
def _reliability(y: NDArray[np.int8], prob: NDArray[np.float64], n_bins: int) -> ReliabilityCurve:
    edges = np.percentile(prob, np.linspace(0.0, 100.0, n_bins + 1))  # (n_bins + 1,)
    bin_id = np.searchsorted(edges[1:-1], prob)  # value on an inner edge -> lower bin
    count = np.bincount(bin_id, minlength=n_bins)
    sum_prob = np.bincount(bin_id, weights=prob, minlength=n_bins)
    sum_y = np.bincount(bin_id, weights=y, minlength=n_bins)
    keep = count > 0
    return ReliabilityCurve(
        mean_predicted=sum_prob[keep] / count[keep],
        observed_fraction=sum_y[keep] / count[keep],
        count=count[keep].astype(np.int64),
        bin_low=edges[:-1][keep],
        bin_high=edges[1:][keep],
    )


def _log_likelihood(y: NDArray[np.int8], eta: NDArray[np.float64]) -> float:
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def _logistic_newton(
    x: NDArray[np.float64], y: NDArray[np.int8], offset: NDArray[np.float64], what: str
) -> NDArray[np.float64]:
    """Maximum-likelihood ``beta`` of ``logit P(y=1) = offset + x @ beta`` by Newton-Raphson.

    ``x`` has shape (n, k). Step-halving keeps the log-likelihood from decreasing.
    """
    beta = np.zeros(x.shape[1])
    loglik = _log_likelihood(y, offset)
    for _ in range(_MAX_NEWTON_STEPS):
        mu = expit(offset + x @ beta)
        gradient = x.T @ (y - mu)  # (k,)
        hessian = (x * (mu * (1.0 - mu))[:, None]).T @ x  # (k, k), negative of d2 loglik
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError as err:
            raise CalibrationFitError(
                f"{what}: logistic fit diverged (singular information matrix); "
                "are the outcomes perfectly separated by the predictions?"
            ) from err
        scale = 1.0
        while scale > 1e-8:
            candidate = beta + scale * step
            new_loglik = _log_likelihood(y, offset + x @ candidate)
            if new_loglik >= loglik - 1e-12:
                break
            scale /= 2.0
        beta, loglik = candidate, new_loglik
        if np.max(np.abs(scale * step)) < _NEWTON_TOL:
            return beta
    raise CalibrationFitError(
        f"{what}: logistic fit did not converge in {_MAX_NEWTON_STEPS} Newton steps "
        "(outcomes perfectly separated by the predictions?)"
    )


def _net_benefit(
    y: NDArray[np.int8], prob: NDArray[np.float64], thresholds: NDArray[np.float64]
) -> DecisionCurve:
    n = len(y)
    order = np.argsort(prob, kind="mergesort")
    sorted_prob = prob[order]
    pos_cum = np.r_[0, np.cumsum(y[order], dtype=np.int64)]  # positives among the k lowest
    n_pos = int(pos_cum[-1])
    untreated = np.searchsorted(sorted_prob, thresholds, side="left")  # number with prob < t
    true_pos = n_pos - pos_cum[untreated]
    false_pos = (n - untreated) - true_pos
    odds = thresholds / (1.0 - thresholds)
    prevalence = n_pos / n
    return DecisionCurve(
        thresholds=thresholds.copy(),
        net_benefit_model=true_pos / n - false_pos / n * odds,
        net_benefit_treat_all=prevalence - (1.0 - prevalence) * odds,
        net_benefit_treat_none=np.zeros_like(thresholds),
        prevalence=prevalence,
    )
