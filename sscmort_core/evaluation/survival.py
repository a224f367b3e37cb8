"""Discrimination with censored survival times: Harrell's C and time-dependent AUC.

``time`` is follow-up from the scan (any unit, e.g. years), ``event`` is 1 for a death at
``time`` and 0 for censoring at ``time``, ``risk`` is higher for an earlier expected death.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sscmort_core.errors import (
    NoComparablePairsError,
    NoNegativesError,
    NonFiniteError,
    NoPositivesError,
)
from sscmort_core.evaluation._checks import check_binary, check_finite, same_length

# Pairs per block in the chunked O(n^2) concordance count (about 4 MiB of booleans).
_PAIR_BLOCK = 1 << 22


# --- public ------------------------------------------------------------------------------------
def concordance_index(time: ArrayLike, event: ArrayLike, risk: ArrayLike) -> float:
    """Harrell's C: the fraction of comparable pairs whose higher risk died first.

    A pair (i, j) is comparable when i died (``event[i] == 1``) and either ``time[j] > time[i]``
    or j was censored at the same time (censored at t outlives a death at t). Ties in risk count
    1/2; two deaths at the same time are not comparable. Equals
    ``lifelines.utils.concordance_index(time, -risk, event)``. Vectorised O(n^2) in blocks
    (about 20 ms for 2,000 scans).
    """
    t_arr, e_arr, r_arr = _check_survival_inputs(time, event, risk)
    concordant, tied, pairs = _concordance_counts(t_arr, e_arr, r_arr)
    if pairs == 0:
        raise NoComparablePairsError(
            f"no comparable pair among {len(t_arr)} sample(s): "
            "Harrell's C needs a death followed by a longer follow-up"
        )
    return (concordant + 0.5 * tied) / pairs


def time_dependent_auc(time: ArrayLike, event: ArrayLike, risk: ArrayLike, horizon: float) -> float:
    """Cumulative/dynamic AUC at ``horizon`` with inverse-probability-of-censoring weights (Uno).

    Cases: death at or before ``horizon`` (weight 1 / G(time-)); controls: ``time > horizon``
    (weight 1 / G(horizon), which cancels). G is the Kaplan-Meier estimate of the censoring
    distribution on the same data. Scans censored before ``horizon`` enter only through G.
    Without censoring before the horizon this is the plain AUC of ``time <= horizon``.
    """
    t_arr, e_arr, r_arr = _check_survival_inputs(time, event, risk)
    h = float(horizon)
    if not np.isfinite(h):
        raise NonFiniteError(f"horizon must be finite, got {horizon}")
    is_case = (e_arr == 1) & (t_arr <= h)
    is_control = t_arr > h
    if not is_case.any():
        raise NoPositivesError(
            f"no positives at horizon {h:g}: no death at or before it among {len(t_arr)} sample(s)"
        )
    if not is_control.any():
        raise NoNegativesError(
            f"no negatives at horizon {h:g}: no follow-up beyond it among {len(t_arr)} sample(s)"
        )
    g_left = censoring_survival_left(t_arr, e_arr, t_arr[is_case])
    return _ipcw_auc(r_arr[is_case], 1.0 / g_left, r_arr[is_control])


def censoring_survival_left(
    time: NDArray[np.float64], event: NDArray[np.int8], at: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Kaplan-Meier estimate of P(C >= at), the censoring survival just before ``at``.

    Censorings are the "events" of this estimate; everyone with ``time >= s`` is at risk at s
    (a death at s is counted at risk of censoring at s). Shape of ``at``.
    """
    n = len(time)
    cens_times, n_censored = np.unique(time[event == 0], return_counts=True)
    at_risk = n - np.searchsorted(np.sort(time), cens_times, side="left")  # #{time >= s}
    survival = np.r_[1.0, np.cumprod(1.0 - n_censored / at_risk)]
    return survival[np.searchsorted(cens_times, at, side="left")]  # product over s < at


# --- checks ------------------------------------------------------------------------------------
def _check_survival_inputs(
    time: ArrayLike, event: ArrayLike, risk: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.int8], NDArray[np.float64]]:
    t_arr = check_finite(time, "time")
    e_arr = check_binary(event, "event")
    r_arr = check_finite(risk, "risk")
    same_length(time=t_arr, event=e_arr, risk=r_arr)
    return t_arr, e_arr, r_arr


# --- computation ---------------------------------------------------------------------------------
def _concordance_counts(
    time: NDArray[np.float64], event: NDArray[np.int8], risk: NDArray[np.float64]
) -> tuple[int, int, int]:
    """(concordant, tied-in-risk, comparable) pair counts; rows are deaths, columns everyone."""
    deaths = np.flatnonzero(event == 1)
    censored = event == 0
    block = max(1, _PAIR_BLOCK // max(len(time), 1))
    concordant = tied = pairs = 0
    for start in range(0, len(deaths), block):
        rows = deaths[start : start + block]
        t_i, r_i = time[rows, None], risk[rows, None]  # (b, 1)
        comparable = (time > t_i) | ((time == t_i) & censored)  # (b, n)
        pairs += int(comparable.sum())
        concordant += int((comparable & (r_i > risk)).sum())
        tied += int((comparable & (r_i == risk)).sum())
    return concordant, tied, pairs


def _ipcw_auc(
    case_risk: NDArray[np.float64],
    case_weight: NDArray[np.float64],
    control_risk: NDArray[np.float64],
) -> float:
    """Weighted Mann-Whitney AUC: cases weighted, controls unweighted, ties 1/2."""
    sorted_controls = np.sort(control_risk)
    below = np.searchsorted(sorted_controls, case_risk, side="left")
    tie = np.searchsorted(sorted_controls, case_risk, side="right") - below
    numerator = float(np.sum(case_weight * (below + 0.5 * tie)))
    return numerator / (float(case_weight.sum()) * len(control_risk))
