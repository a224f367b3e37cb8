"""Discrete-time survival model for the tabular features: censored scans count (pure).

The follow-up after a scan is cut at the horizons into intervals ``(0, 1]``, ``(1, 3]``,
``(3, 5]`` years (:data:`INTERVAL_EDGES_YEARS`). Each scan contributes one person-period row
per interval it entered alive: outcome 1 in the interval of its death, 0 in every interval it
survived, and, in the interval where its follow-up ends without a death, a 0 weighted by the
share of the interval it was observed (the actuarial convention: a scan censored half-way
through counts half an interval at risk). The hazard of dying in interval ``k`` is

    logit h_k(z) = alpha_k + beta . z        (z: standardised features, beta shared)

fitted by L2-penalised maximum likelihood (Newton's method; the interval intercepts
``alpha`` unpenalised), the strength chosen by a patient-grouped inner CV on held-out
person-period log-loss. The risk of death by horizon ``j`` is
``1 - prod_{k <= j} (1 - h_k)``: monotone across horizons by construction, and every scan,
censored or not, informs the fit up to its last follow-up. This is Cox-like discrete-time
survival (Singer & Willett, *Applied Longitudinal Data Analysis*, 2003, ch. 10-12); the
complete-case logistic of :mod:`.model` stays as the labelled comparison.

Times are in years of 365.25 days (:func:`sscmort_core.labels.time_to_event_years`), so a
death within a day of an anniversary may sit in the neighbouring interval from the calendar
label rule's point of view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from sscmort_core.labels import HORIZONS_YEARS

INTERVAL_EDGES_YEARS: tuple[float, ...] = (0.0, *map(float, HORIZONS_YEARS))
SURVIVAL_CS = tuple(float(c) for c in np.logspace(-3, 1, 9))  # inverse L2 strength grid
SURVIVAL_INNER_FOLDS = 3
MIN_EVENTS = 3  # fewer deaths in the training rows than this: intervals only (beta = 0)


@dataclass(frozen=True)
class PersonPeriods:
    """Person-period rows. scan: (m,) row of the scan; interval: (m,) 0..K-1; y: (m,) 0/1;
    weight: (m,) share of the interval at risk (1 except where follow-up ends)."""

    scan: np.ndarray
    interval: np.ndarray
    y: np.ndarray
    weight: np.ndarray


def person_periods(time_years: np.ndarray, event: np.ndarray,
                   edges: Sequence[float] = INTERVAL_EDGES_YEARS) -> PersonPeriods:
    """Expand n scans (time to death or last follow-up, event flag; shapes (n,)) into rows."""
    t = np.asarray(time_years, dtype=float)
    e = np.asarray(event, dtype=bool)
    scans, intervals, ys, ws = [], [], [], []
    for k in range(len(edges) - 1):
        start, end = edges[k], edges[k + 1]
        at_risk = t > start
        died = at_risk & e & (t <= end)
        censored = at_risk & ~e & (t < end)
        rows = np.flatnonzero(at_risk)
        scans.append(rows)
        intervals.append(np.full(len(rows), k))
        ys.append(died[rows].astype(float))
        ws.append(np.where(censored[rows], (t[rows] - start) / (end - start), 1.0))
    return PersonPeriods(np.concatenate(scans), np.concatenate(intervals),
                         np.concatenate(ys), np.concatenate(ws))


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(v, -35.0, 35.0)))


def _newton(design: np.ndarray, y: np.ndarray, w: np.ndarray, penalty: np.ndarray,
            max_iter: int = 100, tol: float = 1e-9) -> np.ndarray:
    """argmin of -sum w [y log p + (1 - y) log(1 - p)] + 1/2 sum penalty theta^2, p = sigmoid
    (design @ theta); design (m, q), penalty (q,) (0 = unpenalised)."""
    theta = np.zeros(design.shape[1])

    def objective(th: np.ndarray) -> float:
        eta = design @ th
        return float(np.sum(w * (np.logaddexp(0.0, eta) - y * eta)) + 0.5 * penalty @ th ** 2)

    current = objective(theta)
    for _ in range(max_iter):
        p = _sigmoid(design @ theta)
        grad = design.T @ (w * (p - y)) + penalty * theta
        hess = (design * (w * p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-10)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6:
            trial = theta - scale * step
            value = objective(trial)
            if value <= current + 1e-12:
                break
            scale /= 2
        theta, previous, current = trial, current, value
        if previous - current < tol * (1 + abs(current)):
            break
    return theta


@dataclass(frozen=True)
class DiscreteTimeHazard:
    """Fitted interval intercepts ``alpha`` (K,) and shared coefficients ``beta`` (p,) on
    standardised features; ``c`` the inverse L2 strength (None: intervals only)."""

    alpha: np.ndarray = field(repr=False)
    beta: np.ndarray = field(repr=False)
    c: float | None

    def linear_predictor(self, z: np.ndarray) -> np.ndarray:
        """(n,) beta . z of standardised rows z (n, p)."""
        return np.asarray(z, dtype=float) @ self.beta

    def cumulative_logit(self, eta: np.ndarray, horizon_index: int) -> np.ndarray:
        """(n,) log-odds of death by horizon ``horizon_index`` given linear predictors eta."""
        eta = np.asarray(eta, dtype=float)
        log_surv = np.zeros_like(eta)
        for k in range(horizon_index + 1):
            log_surv += -np.logaddexp(0.0, self.alpha[k] + eta)  # log(1 - h_k)
        # logit(1 - S) = log(1 - S) - log S
        return np.log(-np.expm1(np.minimum(log_surv, -1e-300))) - log_surv


@dataclass(frozen=True)
class CumulativeRisk:
    """The estimator of one horizon: ``decision_function`` gives the log-odds of death by
    horizon ``horizon_index`` (what :class:`~sscmort_core.tabular.HorizonModel` expects)."""

    hazard: DiscreteTimeHazard
    horizon_index: int

    def decision_function(self, z: np.ndarray) -> np.ndarray:
        return self.hazard.cumulative_logit(self.hazard.linear_predictor(z), self.horizon_index)


def _design(pp: PersonPeriods, z: np.ndarray, n_intervals: int) -> np.ndarray:
    dummies = np.eye(n_intervals)[pp.interval]  # (m, K)
    return np.hstack([dummies, z[pp.scan]])  # (m, K + p)


def fit_hazard(z: np.ndarray, time_years: np.ndarray, event: np.ndarray, c: float | None
               ) -> DiscreteTimeHazard:
    """Fit on standardised rows z (n, p) with follow-up (n,) and events (n,); c None fits
    the interval intercepts alone."""
    k = len(INTERVAL_EDGES_YEARS) - 1
    pp = person_periods(time_years, event)
    zz = z if c is not None else np.zeros((len(z), 0))
    penalty = np.concatenate([np.zeros(k), np.full(zz.shape[1], 0.0 if c is None else 1 / c)])
    theta = _newton(_design(pp, zz, k), pp.y, pp.weight, penalty)
    beta = theta[k:] if c is not None else np.zeros(z.shape[1])
    return DiscreteTimeHazard(alpha=theta[:k], beta=beta, c=c)


def _held_out_loss(hazard: DiscreteTimeHazard, z: np.ndarray, time_years: np.ndarray,
                   event: np.ndarray) -> float:
    pp = person_periods(time_years, event)
    eta = hazard.alpha[pp.interval] + hazard.linear_predictor(z)[pp.scan]
    return float(np.sum(pp.weight * (np.logaddexp(0.0, eta) - pp.y * eta))
                 / max(pp.weight.sum(), 1e-12))


def choose_c(z: np.ndarray, time_years: np.ndarray, event: np.ndarray, groups: np.ndarray,
             seed: int) -> float:
    """Inverse L2 strength from :data:`SURVIVAL_CS` by patient-grouped inner CV (folds
    stratified by death), minimising held-out person-period log-loss; 0.1 when the patients
    are too few for the folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    event = np.asarray(event, dtype=bool)
    if len(np.unique(groups)) < SURVIVAL_INNER_FOLDS or event.sum() < SURVIVAL_INNER_FOLDS:
        return 0.1
    splitter = StratifiedGroupKFold(n_splits=SURVIVAL_INNER_FOLDS, shuffle=True,
                                    random_state=seed)
    splits = list(splitter.split(z, event, groups))
    losses = []
    for c in SURVIVAL_CS:
        losses.append(np.mean([_held_out_loss(fit_hazard(z[tr], time_years[tr], event[tr], c),
                                              z[te], time_years[te], event[te])
                               for tr, te in splits]))
    return SURVIVAL_CS[int(np.argmin(losses))]


def fit_survival(z: np.ndarray, time_years: np.ndarray, event: np.ndarray, groups: np.ndarray,
                 seed: int) -> DiscreteTimeHazard:
    """Choose the strength (inner CV) and fit on every row (censored ones included)."""
    event = np.asarray(event, dtype=bool)
    if event.sum() < MIN_EVENTS:
        return fit_hazard(z, time_years, event, None)
    return fit_hazard(z, time_years, event, choose_c(z, time_years, event, groups, seed))
