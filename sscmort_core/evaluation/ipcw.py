"""Censoring-aware accuracy of predicted risks at a horizon: inverse probability of censoring
weights (IPCW), Brier score, calibration and decision curves.

Inputs are every scan, censored ones included: ``time`` (follow-up from the scan), ``event``
(1 death, 0 censored) and ``risk_at_horizon``, the predicted probability of death by
``horizon`` (same unit as ``time``). Scans fall in three groups at the horizon:

* **cases**: death at or before it (``event == 1 and time <= horizon``), weight ``1 / G(T-)``;
* **controls**: follow-up beyond it (``time > horizon``), weight ``1 / G(horizon)``;
* **censored** at or before it: weight 0. They are not dropped from the estimate: the
  censoring distribution ``G`` (Kaplan-Meier of censoring on the same scans) carries them,
  and they count in every denominator ``n``.

Side limits: a case needs its scan uncensored until its death, a censoring at the same time
coming after the death (module :mod:`sscmort_core.evaluation._km`), so its weight uses the
left limit ``G(T-) = P(C >= T)``; a control needs follow-up past the horizon, so
``G(horizon) = P(C > horizon)`` (right-continuous). This is the convention of Gerds &
Schumacher (Biom J 2006) and the R packages pec / riskRegression. With it the IPCW risk
``sum(case / G(T-)) / n`` equals ``1 - KM(horizon)`` exactly (Satten & Datta 2001).
scikit-survival's ``brier_score`` weights cases by ``1 / G(T)`` (right limit): the two agree
unless a death shares its time with a censoring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logit

from sscmort_core.errors import (
    CalibrationFitError,
    MetricInputError,
    NoNegativesError,
    NoPositivesError,
)
from sscmort_core.evaluation._checks import (
    check_binary,
    check_finite,
    check_positive_int,
    check_probability,
    same_length,
)
from sscmort_core.evaluation._km import (
    HorizonSplit,
    TimeLayout,
    censoring_left,
    horizon_split,
    ipcw_matrix,
    row_after,
    survival_left,
    time_layout,
)
from sscmort_core.evaluation._logistic import fit_logistic_many
from sscmort_core.evaluation.calibration import _P_CLIP, DEFAULT_THRESHOLDS
from sscmort_core.evaluation.results import (
    CalibrationResult,
    DecisionCurve,
    IPCWWeights,
    ObservedExpected,
    SurvivalReliabilityCurve,
)
from sscmort_core.evaluation.survival import check_horizon


# --- public ------------------------------------------------------------------------------------
def ipcw_weights(time: ArrayLike, event: ArrayLike, horizon: float) -> IPCWWeights:
    """IPCW weights at ``horizon`` (module docstring): cases ``1 / G(T-)``, controls
    ``1 / G(horizon)``, scans censored at or before the horizon 0."""
    t_arr, e_arr = _check_time_event(time, event)
    h = check_horizon(horizon)
    layout, split = _layout_split(t_arr, e_arr, h)
    weight = ipcw_matrix(layout, split, np.ones((len(t_arr), 1)))[:, 0]
    g_h = float(censoring_left(layout, np.ones((len(t_arr), 1)))[split.horizon_row, 0])
    return IPCWWeights(weight=weight, case=split.case, control=split.control, horizon=h,
                       censoring_at_horizon=g_h)


def ipcw_brier(time: ArrayLike, event: ArrayLike, risk_at_horizon: ArrayLike,
               horizon: float) -> float:
    """Brier score at ``horizon`` with IPCW (Graf et al., Stat Med 1999):
    ``(1 / n) * sum(case * (1 - risk)^2 / G(T-) + control * risk^2 / G(horizon))`` over all
    n scans. Equals ``sksurv.metrics.brier_score(y, y, 1 - risk, horizon)`` when no death
    shares its time with a censoring (module docstring for the difference)."""
    inputs = _ipcw_inputs(time, event, risk_at_horizon, horizon)
    _require_followed(inputs.split)
    w = np.ones((len(inputs.risk), 1))
    ipcw = ipcw_matrix(inputs.layout, inputs.split, w)
    return float(ipcw_brier_many(inputs.split, inputs.risk, ipcw, w)[0])


def observed_expected(time: ArrayLike, event: ArrayLike, risk_at_horizon: ArrayLike,
                      horizon: float) -> ObservedExpected:
    """Observed risk by ``horizon`` (``1 - `` Kaplan-Meier, equal to the IPCW estimate) over
    expected (the mean predicted risk of all scans): calibration-in-the-large."""
    inputs = _ipcw_inputs(time, event, risk_at_horizon, horizon)
    w = np.ones((len(inputs.risk), 1))
    observed, expected = observed_expected_many(inputs.layout, inputs.split, inputs.risk, w)
    if expected[0] <= 0:
        raise MetricInputError("every predicted risk is 0: observed / expected is undefined")
    return ObservedExpected(observed=float(observed[0]), expected=float(expected[0]),
                            ratio=float(observed[0] / expected[0]), n=len(inputs.risk),
                            n_events=int(inputs.split.case.sum()))


def ipcw_calibration_intercept_slope(time: ArrayLike, event: ArrayLike,
                                     risk_at_horizon: ArrayLike,
                                     horizon: float) -> CalibrationResult:
    """Calibration intercept and slope at ``horizon`` by IPCW-weighted logistic recalibration.

    Cases (outcome 1, weight ``1 / G(T-)``) and controls (outcome 0, weight
    ``1 / G(horizon)``) stand for the whole cohort; scans censored by the horizon carry
    weight 0. Intercept: ``a`` in ``logit P = a + logit(p)``; slope: ``b`` in
    ``logit P = a + b logit(p)`` (see :class:`CalibrationResult`; ``n`` counts all scans,
    ``n_events`` the cases). Raises :class:`CalibrationFitError` when a fit fails.
    """
    inputs = _ipcw_inputs(time, event, risk_at_horizon, horizon)
    _require_cases_and_controls(inputs.split)
    lp = logit(np.clip(inputs.risk, _P_CLIP, 1.0 - _P_CLIP))
    followed = inputs.split.case | inputs.split.control
    if np.ptp(lp[followed]) == 0.0:
        raise CalibrationFitError(
            "all predicted probabilities are equal: the calibration slope is undefined")
    w = np.ones((len(lp), 1))
    ipcw = ipcw_matrix(inputs.layout, inputs.split, w)
    intercept = ipcw_intercept_many(lp, inputs.split, ipcw * w)
    slope, slope_intercept = ipcw_slope_many(lp, inputs.split, ipcw * w)
    if not np.isfinite([intercept[0], slope[0], slope_intercept[0]]).all():
        raise CalibrationFitError(
            "IPCW calibration: logistic fit did not converge (outcomes perfectly separated "
            "by the predictions?)")
    return CalibrationResult(intercept=float(intercept[0]), slope=float(slope[0]),
                             slope_intercept=float(slope_intercept[0]), n=len(lp),
                             n_events=int(inputs.split.case.sum()))


def km_calibration_curve(time: ArrayLike, event: ArrayLike, risk_at_horizon: ArrayLike,
                         horizon: float, n_bins: int = 10) -> SurvivalReliabilityCurve:
    """Observed against predicted risk by ``horizon`` in ``n_bins`` quantile groups of risk.

    Observed per group: ``1 - `` the group's own Kaplan-Meier at the horizon, and the IPCW
    estimate with the cohort's censoring distribution. Bins as
    :func:`~sscmort_core.evaluation.calibration_curve` (all scans, censored ones included).
    """
    inputs = _ipcw_inputs(time, event, risk_at_horizon, horizon)
    n_bins = check_positive_int(n_bins, "n_bins")
    risk, split = inputs.risk, inputs.split
    edges = np.percentile(risk, np.linspace(0.0, 100.0, n_bins + 1))  # (n_bins + 1,)
    bin_id = np.searchsorted(edges[1:-1], risk)  # value on an inner edge -> lower bin
    keep = np.flatnonzero(np.bincount(bin_id, minlength=n_bins) > 0)
    member = (bin_id[:, None] == keep[None, :]).astype(np.float64)  # (n, n_kept)
    km = survival_left(inputs.layout, member)[row_after(inputs.layout, split.horizon)]
    ipcw = ipcw_matrix(inputs.layout, split, np.ones((len(risk), 1)))[:, 0]
    count = member.sum(axis=0)
    censored = ~(split.case | split.control)
    return SurvivalReliabilityCurve(
        mean_predicted=(risk @ member) / count,
        observed_km=1.0 - km,
        observed_ipcw=((split.case * ipcw) @ member) / count,
        count=count.astype(np.int64),
        n_events=(split.case @ member).astype(np.int64),
        n_censored=(censored @ member).astype(np.int64),
        bin_low=edges[:-1][keep],
        bin_high=edges[1:][keep],
    )


def ipcw_decision_curve(time: ArrayLike, event: ArrayLike, risk_at_horizon: ArrayLike,
                        horizon: float,
                        thresholds: ArrayLike = DEFAULT_THRESHOLDS) -> DecisionCurve:
    """Net benefit at ``horizon`` with IPCW: true positives ``sum(treated * case / G(T-)) / n``,
    false positives ``sum(treated * control / G(horizon)) / n`` over all n scans, treated
    when ``risk >= t``. Treat-all is computed the same way (everyone treated), and
    ``prevalence`` is the IPCW risk (``1 - KM(horizon)``)."""
    inputs = _ipcw_inputs(time, event, risk_at_horizon, horizon)
    t_arr = check_probability(thresholds, "thresholds")
    if ((t_arr <= 0.0) | (t_arr >= 1.0)).any():
        raise MetricInputError("thresholds must lie strictly between 0 and 1")
    ipcw = ipcw_matrix(inputs.layout, inputs.split, np.ones((len(inputs.risk), 1)))[:, 0]
    return _ipcw_net_benefit(inputs.risk, inputs.split, ipcw, t_arr)


# --- computation over many weightings (shared with the bootstrap) ------------------------------
def ipcw_brier_many(split: HorizonSplit, risk: NDArray[np.float64], ipcw: NDArray[np.float64],
                    w: NDArray[np.float64]) -> NDArray[np.float64]:
    """IPCW Brier (b,) for scan weights ``w`` (n, b) and IPCW weights ``ipcw`` (n, b)."""
    loss = np.where(split.case, (1.0 - risk) ** 2, risk**2)  # (n,); 0-weighted if censored
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (loss @ (w * ipcw)) / total, np.nan)


def observed_expected_many(layout: TimeLayout, split: HorizonSplit, risk: NDArray[np.float64],
                           w: NDArray[np.float64]
                           ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(observed ``1 - KM(horizon)``, expected mean risk), each (b,), under weights ``w``."""
    observed = 1.0 - survival_left(layout, w)[row_after(layout, split.horizon)]
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(total > 0, (risk @ w) / total, np.nan)
    return observed, expected


def ipcw_intercept_many(lp: NDArray[np.float64], split: HorizonSplit,
                        u: NDArray[np.float64]) -> NDArray[np.float64]:
    """Calibration intercept (b,): ``a`` in ``logit P = a + lp`` fitted on the cases (1) and
    controls (0) with observation weights ``u`` (n, b) (scan weight x IPCW weight, or scan
    weight alone for labelled scans); NaN where the fit fails."""
    y, x, uf = _followed(lp, split, u)
    return fit_logistic_many(np.ones((len(x), 1)), y, x, uf)[0]


def ipcw_slope_many(lp: NDArray[np.float64], split: HorizonSplit, u: NDArray[np.float64]
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(slope, its intercept), each (b,): ``b`` and ``a`` in ``logit P = a + b lp``, fitted as
    :func:`ipcw_intercept_many`."""
    y, x, uf = _followed(lp, split, u)
    fit = fit_logistic_many(np.column_stack([np.ones(len(x)), x]), y, np.zeros_like(x), uf)
    return fit[1], fit[0]


def _followed(lp: NDArray[np.float64], split: HorizonSplit, u: NDArray[np.float64]
              ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    followed = split.case | split.control
    return split.case[followed].astype(np.float64), lp[followed], u[followed]


def _ipcw_net_benefit(risk: NDArray[np.float64], split: HorizonSplit,
                      ipcw: NDArray[np.float64], thresholds: NDArray[np.float64]
                      ) -> DecisionCurve:
    n = len(risk)
    case_w = np.where(split.case, ipcw, 0.0)  # (n,)
    control_w = np.where(split.control, ipcw, 0.0)
    order = np.argsort(risk, kind="mergesort")
    case_cum = np.r_[0.0, np.cumsum(case_w[order])]  # case weight among the k lowest
    control_cum = np.r_[0.0, np.cumsum(control_w[order])]
    untreated = np.searchsorted(risk[order], thresholds, side="left")  # number with risk < t
    true_pos = (case_cum[-1] - case_cum[untreated]) / n
    false_pos = (control_cum[-1] - control_cum[untreated]) / n
    odds = thresholds / (1.0 - thresholds)
    prevalence = case_cum[-1] / n
    return DecisionCurve(
        thresholds=thresholds.copy(),
        net_benefit_model=true_pos - false_pos * odds,
        net_benefit_treat_all=prevalence - control_cum[-1] / n * odds,
        net_benefit_treat_none=np.zeros_like(thresholds),
        prevalence=float(prevalence),
    )


# --- checks ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Inputs:
    """Checked risks (n,) with the scans' time layout and horizon split."""

    risk: NDArray[np.float64]
    layout: TimeLayout
    split: HorizonSplit


def _check_time_event(time: ArrayLike, event: ArrayLike
                      ) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    t_arr = check_finite(time, "time")
    e_arr = check_binary(event, "event")
    same_length(time=t_arr, event=e_arr)
    if len(t_arr) == 0:
        raise MetricInputError("no samples: time and event are empty")
    return t_arr, e_arr


def _ipcw_inputs(time: ArrayLike, event: ArrayLike, risk_at_horizon: ArrayLike,
                 horizon: float) -> _Inputs:
    t_arr, e_arr = _check_time_event(time, event)
    r_arr = check_probability(risk_at_horizon, "risk_at_horizon")
    same_length(time=t_arr, risk_at_horizon=r_arr)
    layout, split = _layout_split(t_arr, e_arr, check_horizon(horizon))
    return _Inputs(r_arr, layout, split)


def _layout_split(time: NDArray[np.float64], event: NDArray[np.int8],
                  horizon: float) -> tuple[TimeLayout, HorizonSplit]:
    layout = time_layout(time, event)
    return layout, horizon_split(layout, time, event, horizon)


def _require_followed(split: HorizonSplit) -> None:
    if not (split.case | split.control).any():
        raise MetricInputError(
            f"every scan is censored at or before horizon {split.horizon:g}: "
            "no outcome is known there")


def _require_cases_and_controls(split: HorizonSplit) -> None:
    n = len(split.case)
    if not split.case.any():
        raise NoPositivesError(f"no positives at horizon {split.horizon:g}: no death at or "
                               f"before it among {n} sample(s)")
    if not split.control.any():
        raise NoNegativesError(f"no negatives at horizon {split.horizon:g}: no follow-up "
                               f"beyond it among {n} sample(s)")
