"""Metrics evaluated under many patient weightings at once: the fast path of the patient
bootstrap (:func:`~sscmort_core.evaluation.resampling.bootstrap_cis`).

A :class:`BatchMetric` is prepared once from the scans (input checks, sorting, pair matrices)
by one of the ``*_metric`` functions here. ``values(counts)`` then gives the metric under each
column of patient multiplicities ``counts`` (n_groups, b): scan ``i`` weighs
``base_weight[i] * counts[patient(i)]`` (its patient's multiplicity in a resample, times 1 or
``1 / k`` by estimand), and a metric that uses the censoring distribution re-estimates it
under those weights. All-ones counts give the point estimate (:meth:`BatchMetric.point`).

Cost per resample: O(n) for the Brier scores and O/E, O(n) per Newton step for calibration,
and for the C statistics and the time-dependent AUC one product with a pair matrix summed per
patient once (rows: the deaths that open pairs, columns: patients), so
O(n_deaths x n_groups) with no loop over resamples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.special import logit

from sscmort_core.errors import (
    CalibrationFitError,
    InputShapeError,
    MetricInputError,
    NoComparablePairsError,
)
from sscmort_core.evaluation._checks import check_scored_labels, require_both_classes
from sscmort_core.evaluation._km import (
    HorizonSplit,
    TimeLayout,
    censoring_left,
    horizon_split,
    inverse,
    ipcw_matrix,
    time_layout,
)
from sscmort_core.evaluation._logistic import fit_logistic_many
from sscmort_core.evaluation.bootstrap import _level_layout, _LevelLayout, _weighted_auc_many
from sscmort_core.evaluation.calibration import _P_CLIP, _check_prob_inputs
from sscmort_core.evaluation.ipcw import (
    _ipcw_inputs,
    _require_cases_and_controls,
    _require_followed,
    ipcw_brier_many,
    observed_expected_many,
)
from sscmort_core.evaluation.survival import (
    _check_survival_inputs,
    _pair_rows,
    check_horizon,
)
from sscmort_core.evaluation.weights import PatientClusters

# Rows of a pair matrix built at a time (rows x n_scans booleans, about 4 MiB).
_PAIR_BLOCK = 1 << 22


@dataclass(frozen=True, eq=False)
class BatchMetric:
    """A metric ready to evaluate under many patient weightings (module docstring).

    ``name`` is the metric's stored name (e.g. ``"uno_c"``), ``clusters`` the scans' patients
    and estimand, ``n_events`` the events it counts.
    """

    name: str
    clusters: PatientClusters
    n_events: int

    def values(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        """The metric (b,) under patient multiplicities ``counts`` (n_groups, b); NaN where
        a weighting leaves it undefined (e.g. no death drawn)."""
        raise NotImplementedError

    def point(self) -> float:
        """The estimate on the scans as given (every patient once)."""
        return float(self.values(np.ones((self.clusters.n_groups, 1)))[0])


# --- binary outcome at a horizon (labelled scans) ----------------------------------------------
@dataclass(frozen=True, eq=False)
class _AUC(BatchMetric):
    layout: _LevelLayout

    def values(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        return _weighted_auc_many(self.layout, counts.T)


@dataclass(frozen=True, eq=False)
class _Brier(BatchMetric):
    loss: NDArray[np.float64]  # (n,) squared error of each scan

    def values(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        w = self.clusters.scan_weights(counts)  # (n, b)
        total = w.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (self.loss @ w) / total, np.nan)


@dataclass(frozen=True, eq=False)
class _Recalibration(BatchMetric):
    """Logistic recalibration on ``rows``: binary labels (weights = scan weights) or cases and
    controls at a horizon (weights x IPCW, G re-estimated per weighting when ``split``)."""

    part: str  # "intercept" or "slope"
    rows: NDArray[np.intp]
    y: NDArray[np.float64]  # (len(rows),)
    lp: NDArray[np.float64]  # (len(rows),) logit of the predicted risk
    layout: TimeLayout | None
    split: HorizonSplit | None
    start: NDArray[np.float64] | None = None  # (k,) where resamples start: the point fit

    def values(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._fit(counts, self.start)[-1]

    def _fit(self, counts: NDArray[np.float64],
             start: NDArray[np.float64] | None) -> NDArray[np.float64]:
        """Coefficients (k, b): the intercept (k = 1) or (intercept, slope) (k = 2)."""
        w = self.clusters.scan_weights(counts)  # (n, b)
        if self.split is not None:
            w = w * ipcw_matrix(self.layout, self.split, w)
        u = w[self.rows]
        ones = np.ones((len(self.rows), 1))
        if self.part == "intercept":
            return fit_logistic_many(ones, self.y, self.lp, u, start)
        return fit_logistic_many(np.column_stack([ones, self.lp]), self.y,
                                 np.zeros_like(self.lp), u, start)

    def with_start(self) -> _Recalibration:
        """This metric with resamples starting from the point estimate's coefficients (a few
        Newton steps from each resample's optimum; unchanged if the point fit fails)."""
        point = self._fit(np.ones((self.clusters.n_groups, 1)), None)[:, 0]
        return replace(self, start=point) if np.isfinite(point).all() else self


def auc_metric(y: ArrayLike, score: ArrayLike, clusters: PatientClusters,
               name: str = "auc") -> BatchMetric:
    """AUC of ``score`` for 0/1 labels ``y`` (n,) (weighted Mann-Whitney, ties 1/2)."""
    y_arr, s_arr = check_scored_labels(y, score)
    n_pos, _ = require_both_classes(y_arr)
    _check_clusters(clusters, len(y_arr))
    layout = _level_layout(y_arr, s_arr, clusters.codes, clusters.n_groups,
                           clusters.base_weight)
    return _AUC(name=name, clusters=clusters, n_events=n_pos, layout=layout)


def brier_metric(y: ArrayLike, prob: ArrayLike, clusters: PatientClusters,
                 name: str = "brier") -> BatchMetric:
    """Brier score of probabilities ``prob`` for 0/1 labels ``y`` (labelled scans only)."""
    y_arr, p_arr = _check_prob_inputs(y, prob)
    _check_clusters(clusters, len(y_arr))
    return _Brier(name=name, clusters=clusters, n_events=int(y_arr.sum()),
                  loss=(p_arr - y_arr) ** 2)


def calibration_metric(y: ArrayLike, prob: ArrayLike, clusters: PatientClusters, part: str,
                       name: str | None = None) -> BatchMetric:
    """Calibration ``part`` ("intercept" or "slope") of ``prob`` for 0/1 labels ``y``, as
    :func:`~sscmort_core.evaluation.calibration_intercept_slope`."""
    y_arr, p_arr = _check_prob_inputs(y, prob)
    n_pos, _ = require_both_classes(y_arr)
    _check_clusters(clusters, len(y_arr))
    lp = _logit_checked(p_arr)
    return _Recalibration(name=name or f"calibration_{_check_part(part)}", clusters=clusters,
                          n_events=n_pos, part=part, rows=np.arange(len(y_arr)),
                          y=y_arr.astype(np.float64), lp=lp, layout=None,
                          split=None).with_start()


# --- survival: all scans, censored ones included ----------------------------------------------
@dataclass(frozen=True, eq=False)
class _Concordance(BatchMetric):
    """Harrell's (``layout`` None) or Uno's C over the pairs opened by the deaths ``rows``."""

    rows: NDArray[np.intp]  # (d,)
    concordant: NDArray[np.float64]  # (d, n_groups): (concordant + tied / 2) x base, by patient
    comparable: NDArray[np.float64]  # (d, n_groups): comparable x base, by patient
    layout: TimeLayout | None

    def values(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        c = self.clusters
        w_rows = c.base_weight[self.rows, None] * counts[c.codes[self.rows]]  # (d, b)
        if self.layout is not None:
            g = censoring_left(self.layout, c.scan_weights(counts))  # (L + 1, b)
            w_rows = w_rows * inverse(g[self.layout.level[self.rows]]) ** 2
        numerator = np.einsum("db,db->b", w_rows, self.concordant @ counts)
        denominator = np.einsum("db,db->b", w_rows, self.comparable @ counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, numerator / denominator, np.nan)


@dataclass(frozen=True, eq=False)
class _TimeDependentAUC(BatchMetric):
    cases: NDArray[np.intp]  # (m,)
    concordant: NDArray[np.float64]  # (m, n_groups): psi(case, control) x base, by patient
    control_weight: NDArray[np.float64]  # (n_groups,) base weight of each patient's controls
    layout: TimeLayout

    def values(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        c = self.clusters
        g = censoring_left(self.layout, c.scan_weights(counts))  # (L + 1, b)
        a = (c.base_weight[self.cases, None] * counts[c.codes[self.cases]]
             * inverse(g[self.layout.level[self.cases]]))  # (m, b) case weights
        numerator = np.einsum("mb,mb->b", a, self.concordant @ counts)
        denominator = a.sum(axis=0) * (self.control_weight @ counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, numerator / denominator, np.nan)


@dataclass(frozen=True, eq=False)
class _HorizonMetric(BatchMetric):
    """IPCW Brier ("brier") or observed / expected ("oe") at a horizon."""

    kind: str
    risk: NDArray[np.float64]
    layout: TimeLayout
    split: HorizonSplit

    def values(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        w = self.clusters.scan_weights(counts)  # (n, b)
        if self.kind == "brier":
            return ipcw_brier_many(self.split, self.risk, ipcw_matrix(self.layout, self.split, w),
                                   w)
        observed, expected = observed_expected_many(self.layout, self.split, self.risk, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(expected > 0, observed / expected, np.nan)


def harrell_c_metric(time: ArrayLike, event: ArrayLike, risk: ArrayLike,
                     clusters: PatientClusters, tau: float | None = None,
                     name: str | None = None) -> BatchMetric:
    """Harrell's C (truncated at ``tau`` if given), as
    :func:`~sscmort_core.evaluation.concordance_index`; named "c_index" or "harrell_c"."""
    return _concordance(time, event, risk, clusters, tau, False,
                        name or ("c_index" if tau is None else "harrell_c"))


def uno_c_metric(time: ArrayLike, event: ArrayLike, risk: ArrayLike, tau: float,
                 clusters: PatientClusters, name: str = "uno_c") -> BatchMetric:
    """Uno's C truncated at ``tau``, as :func:`~sscmort_core.evaluation.uno_c`."""
    return _concordance(time, event, risk, clusters, check_horizon(tau, "tau"), True, name)


def td_auc_metric(time: ArrayLike, event: ArrayLike, risk: ArrayLike, horizon: float,
                  clusters: PatientClusters, name: str = "td_auc") -> BatchMetric:
    """Cumulative/dynamic AUC at ``horizon``, as
    :func:`~sscmort_core.evaluation.time_dependent_auc`."""
    t_arr, e_arr, r_arr = _check_survival_inputs(time, event, risk)
    _check_clusters(clusters, len(t_arr))
    layout = time_layout(t_arr, e_arr)
    split = horizon_split(layout, t_arr, e_arr, check_horizon(horizon))
    _require_cases_and_controls(split)
    cases, controls = np.flatnonzero(split.case), np.flatnonzero(split.control)
    by_patient = _by_patient(clusters, controls)  # (n_controls, n_groups)
    concordant = _blocked_rows(len(cases), len(controls), lambda part: _psi(
        r_arr[cases[part], None], r_arr[None, controls]) @ by_patient, clusters.n_groups)
    return _TimeDependentAUC(name=name, clusters=clusters, n_events=len(cases), cases=cases,
                             concordant=concordant,
                             control_weight=np.asarray(by_patient.sum(axis=0)).ravel(),
                             layout=layout)


def ipcw_brier_metric(time: ArrayLike, event: ArrayLike, risk_at_horizon: ArrayLike,
                      horizon: float, clusters: PatientClusters,
                      name: str = "ipcw_brier") -> BatchMetric:
    """IPCW Brier score at ``horizon``, as :func:`~sscmort_core.evaluation.ipcw_brier`."""
    inputs = _ipcw_inputs(time, event, risk_at_horizon, horizon)
    _check_clusters(clusters, len(inputs.risk))
    _require_followed(inputs.split)
    return _HorizonMetric(name=name, clusters=clusters, n_events=int(inputs.split.case.sum()),
                          kind="brier", risk=inputs.risk, layout=inputs.layout,
                          split=inputs.split)


def observed_expected_metric(time: ArrayLike, event: ArrayLike, risk_at_horizon: ArrayLike,
                             horizon: float, clusters: PatientClusters,
                             name: str = "calibration_oe") -> BatchMetric:
    """Observed / expected risk at ``horizon``, as
    :func:`~sscmort_core.evaluation.observed_expected` (its ``ratio``)."""
    inputs = _ipcw_inputs(time, event, risk_at_horizon, horizon)
    _check_clusters(clusters, len(inputs.risk))
    return _HorizonMetric(name=name, clusters=clusters, n_events=int(inputs.split.case.sum()),
                          kind="oe", risk=inputs.risk, layout=inputs.layout, split=inputs.split)


def ipcw_calibration_metric(time: ArrayLike, event: ArrayLike, risk_at_horizon: ArrayLike,
                            horizon: float, clusters: PatientClusters, part: str,
                            name: str | None = None) -> BatchMetric:
    """IPCW calibration ``part`` ("intercept" or "slope") at ``horizon``, as
    :func:`~sscmort_core.evaluation.ipcw_calibration_intercept_slope`."""
    inputs = _ipcw_inputs(time, event, risk_at_horizon, horizon)
    _check_clusters(clusters, len(inputs.risk))
    split = inputs.split
    _require_cases_and_controls(split)
    rows = np.flatnonzero(split.case | split.control)
    return _Recalibration(name=name or f"ipcw_calibration_{_check_part(part)}",
                          clusters=clusters, n_events=int(split.case.sum()), part=part,
                          rows=rows, y=split.case[rows].astype(np.float64),
                          lp=_logit_checked(inputs.risk[rows]), layout=inputs.layout,
                          split=split).with_start()


# --- helpers -----------------------------------------------------------------------------------
def _concordance(time: ArrayLike, event: ArrayLike, risk: ArrayLike,
                 clusters: PatientClusters, tau: float | None, ipcw: bool,
                 name: str) -> BatchMetric:
    t_arr, e_arr, r_arr = _check_survival_inputs(time, event, risk)
    _check_clusters(clusters, len(t_arr))
    rows = _pair_rows(t_arr, e_arr, tau)
    by_patient = _by_patient(clusters, np.arange(len(t_arr)))  # (n, n_groups)
    censored = e_arr == 0

    def comparable_rows(part: slice) -> NDArray[np.bool_]:
        t_i = t_arr[rows[part], None]  # (b, 1)
        return (t_arr > t_i) | ((t_arr == t_i) & censored)  # (b, n)

    def concordant_rows(part: slice) -> NDArray[np.float64]:
        score = np.where(comparable_rows(part), _psi(r_arr[rows[part], None], r_arr[None, :]),
                         0.0)
        return score @ by_patient

    n = len(t_arr)
    concordant = _blocked_rows(len(rows), n, concordant_rows, clusters.n_groups)
    comparable = _blocked_rows(len(rows), n, lambda part: comparable_rows(part).astype(
        np.float64) @ by_patient, clusters.n_groups)
    if not comparable.any():
        raise NoComparablePairsError(
            f"no comparable pair among {len(t_arr)} sample(s)"
            + ("" if tau is None else f" with a death before tau = {tau:g}"))
    return _Concordance(name=name, clusters=clusters, n_events=len(rows), rows=rows,
                        concordant=concordant, comparable=comparable,
                        layout=time_layout(t_arr, e_arr) if ipcw else None)


def _psi(case: NDArray[np.float64], other: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mann-Whitney kernel (broadcast): 1 if the case scores higher, 1/2 if equal, else 0."""
    return (case > other) + 0.5 * (case == other)


def _by_patient(clusters: PatientClusters, scans: NDArray[np.intp]) -> sparse.csr_matrix:
    """(len(scans), n_groups) sparse: row k has the base weight of scan ``scans[k]`` in its
    patient's column, so ``matrix_over_scans @ result`` sums per patient."""
    return sparse.csr_matrix(
        (clusters.base_weight[scans], (np.arange(len(scans)), clusters.codes[scans])),
        shape=(len(scans), clusters.n_groups))


def _rows_per_block(n_columns: int) -> int:
    return max(1, _PAIR_BLOCK // max(n_columns, 1))


def _blocked_rows(n_rows: int, n_columns: int, fn: Callable[[slice], NDArray[np.float64]],
                  n_groups: int) -> NDArray[np.float64]:
    """``fn(slice)`` -> (rows in slice, n_groups), stacked over blocks of ``n_rows`` rows
    (each block of rows x ``n_columns`` pairs about 4 MiB)."""
    step = _rows_per_block(n_columns)
    parts = [np.asarray(fn(slice(s, s + step))) for s in range(0, n_rows, step)]
    return np.vstack(parts) if parts else np.zeros((0, n_groups))


def _check_clusters(clusters: PatientClusters, n: int) -> None:
    if clusters.n_scans != n:
        raise InputShapeError(f"clusters describe {clusters.n_scans} scan(s), the metric's "
                              f"inputs {n}")


def _check_part(part: str) -> str:
    if part not in ("intercept", "slope"):
        raise MetricInputError(f"part must be 'intercept' or 'slope', got {part!r}")
    return part


def _logit_checked(prob: NDArray[np.float64]) -> NDArray[np.float64]:
    lp = logit(np.clip(prob, _P_CLIP, 1.0 - _P_CLIP))
    if np.ptp(lp) == 0.0:
        raise CalibrationFitError(
            "all predicted probabilities are equal: the calibration slope is undefined")
    return lp
