"""Weighted Kaplan-Meier estimates of death and of censoring, many weight vectors at once.

One convention for ties everywhere in :mod:`sscmort_core.evaluation`: at a time ``s`` where
deaths and censorings coincide, **the deaths come first** (a scan censored at ``s`` outlives a
death at ``s``, as in Harrell's C and in Kaplan & Meier 1958). So

* the Kaplan-Meier of deaths counts everyone with ``time >= s`` at risk at ``s``;
* the Kaplan-Meier of censoring ("reverse" KM, ``G``) counts at ``s`` only those still there
  after the deaths at ``s``: ``#{time > s} + #{censored at s}`` (scikit-survival's
  ``kaplan_meier_estimator(reverse=True)`` does the same; lifelines'
  ``KaplanMeierFitter().fit(time, 1 - event)`` counts the deaths at ``s`` too).

With both conventions together ``S(t) * G(t) = #{time > t} / n`` exactly, which makes the IPCW
estimate of the risk by ``t`` equal ``1 - S(t)`` (Satten & Datta 2001), ties included.

Weights ``w`` have shape (n, b): column ``k`` is one weighting of the n scans (a bootstrap
resample, or all ones). Every estimate has a column per weighting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse


@dataclass(frozen=True, eq=False)
class TimeLayout:
    """Scans reduced to their sorted distinct times.

    ``times`` (L,) the distinct times; ``level`` (n,) each scan's index into ``times``;
    ``deaths`` / ``censorings`` sparse (L, n) indicators of a death / a censoring at a level.
    """

    times: NDArray[np.float64]
    level: NDArray[np.intp]
    deaths: sparse.csr_matrix
    censorings: sparse.csr_matrix

    @property
    def n_levels(self) -> int:
        return len(self.times)


def time_layout(time: NDArray[np.float64], event: NDArray[np.int8]) -> TimeLayout:
    times, level = np.unique(time, return_inverse=True)
    level = level.reshape(-1).astype(np.intp)
    shape = (len(times), len(time))
    cols = np.arange(len(time))

    def indicator(mask: NDArray[np.bool_]) -> sparse.csr_matrix:
        ones = np.ones(int(mask.sum()))
        return sparse.csr_matrix((ones, (level[mask], cols[mask])), shape=shape)

    is_death = event == 1
    return TimeLayout(times=times, level=level, deaths=indicator(is_death),
                      censorings=indicator(~is_death))


def _level_sums(layout: TimeLayout, w: NDArray[np.float64]
                ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per level (L, b): weight of deaths, of censorings, and of scans strictly later."""
    d = np.asarray(layout.deaths @ w)  # (L, b)
    c = np.asarray(layout.censorings @ w)  # (L, b)
    total = d + c
    later = np.cumsum(total[::-1], axis=0)[::-1] - total  # weight with time > level
    return d, c, later


def censoring_left(layout: TimeLayout, w: NDArray[np.float64]) -> NDArray[np.float64]:
    """Censoring survival (L + 1, b): row ``l`` is ``G`` just before ``times[l]`` (the product
    over levels ``< l``), row ``L`` is ``G`` after the last time. Deaths-first at ties."""
    _, c, later = _level_sums(layout, w)
    at_risk = c + later  # after the deaths at the level
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(at_risk > 0, later / at_risk, 1.0)  # 1 - c / at_risk
    return np.vstack([np.ones((1, w.shape[1])), np.cumprod(factor, axis=0)])


def survival_left(layout: TimeLayout, w: NDArray[np.float64]) -> NDArray[np.float64]:
    """Kaplan-Meier survival of deaths (L + 1, b), laid out as :func:`censoring_left`."""
    d, c, later = _level_sums(layout, w)
    at_risk = d + c + later
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(at_risk > 0, (c + later) / at_risk, 1.0)  # 1 - d / at_risk
    return np.vstack([np.ones((1, w.shape[1])), np.cumprod(factor, axis=0)])


def row_after(layout: TimeLayout, t: float) -> int:
    """Row of :func:`censoring_left` / :func:`survival_left` holding the value at ``t`` (the
    right-continuous ``G(t)``: every level with time ``<= t`` included)."""
    return int(np.searchsorted(layout.times, t, side="right"))


def row_before(layout: TimeLayout, at: NDArray[np.float64]) -> NDArray[np.intp]:
    """Rows holding the left limits ``G(at-)`` (levels with time ``< at``), shape of ``at``."""
    return np.searchsorted(layout.times, at, side="left")


def inverse(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """``1 / values`` where positive, else 0. A zero G only meets scans of zero weight (a
    case is at risk of censoring until its own death, a control until the horizon)."""
    with np.errstate(divide="ignore"):
        return np.where(values > 0, 1.0 / np.where(values > 0, values, 1.0), 0.0)


@dataclass(frozen=True, eq=False)
class HorizonSplit:
    """Cases (death at or before the horizon) and controls (time beyond it) of n scans.

    ``case`` / ``control`` (n,) masks; scans censored at or before the horizon are neither.
    ``case_rows`` (n_cases,) are the rows of :func:`censoring_left` at each case's ``G(T-)``;
    ``horizon_row`` the row of ``G(horizon)``.
    """

    horizon: float
    case: NDArray[np.bool_]
    control: NDArray[np.bool_]
    case_rows: NDArray[np.intp]
    horizon_row: int


def horizon_split(layout: TimeLayout, time: NDArray[np.float64], event: NDArray[np.int8],
                  horizon: float) -> HorizonSplit:
    case = (event == 1) & (time <= horizon)
    control = time > horizon
    return HorizonSplit(horizon=horizon, case=case, control=control,
                        case_rows=layout.level[case], horizon_row=row_after(layout, horizon))


def ipcw_matrix(layout: TimeLayout, split: HorizonSplit, w: NDArray[np.float64]
                ) -> NDArray[np.float64]:
    """IPCW weights (n, b) with G re-estimated under each column of ``w``: cases
    ``1 / G(T-)``, controls ``1 / G(horizon)``, scans censored by the horizon 0 (not
    multiplied by ``w``)."""
    g = censoring_left(layout, w)  # (L + 1, b)
    out = np.zeros_like(w)
    out[split.case] = inverse(g[split.case_rows])
    out[split.control] = inverse(g[split.horizon_row])[None, :]
    return out
