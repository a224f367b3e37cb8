"""Slow, obviously-correct references for the censoring-aware metrics: explicit loops over
scans and pairs, every scan with a weight ``w`` (1 each, a bootstrap multiplicity, or 1/k
for a patient's k scans). Ties in time: deaths first (a censoring at s comes after a death at
s); ``side`` chooses the limit of G at a case's own death time: "left" is sscmort's
``G(T-)``, "right" scikit-survival's ``G(T)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy.special import expit, logit


def psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def ones(n: int) -> np.ndarray:
    return np.ones(n)


def censoring_g(time_, event, w, t: float, include_t: bool) -> float:
    """Weighted KM of censoring: product over censoring times s < t (or <= t) of
    1 - (weight censored at s) / (weight with time > s or censored at s)."""
    g = 1.0
    for s in sorted({time_[i] for i in range(len(time_)) if not event[i]}):
        if s > t or (s == t and not include_t):
            break
        at_risk = sum(w[k] for k in range(len(time_))
                      if time_[k] > s or (time_[k] == s and not event[k]))
        censored = sum(w[k] for k in range(len(time_)) if time_[k] == s and not event[k])
        if at_risk > 0:
            g *= 1.0 - censored / at_risk
    return g


def km_survival(time_, event, w, t: float) -> float:
    """Weighted Kaplan-Meier of deaths at t (everyone with time >= s at risk at s)."""
    s_t = 1.0
    for s in sorted({time_[i] for i in range(len(time_)) if event[i]}):
        if s > t:
            break
        at_risk = sum(w[k] for k in range(len(time_)) if time_[k] >= s)
        deaths = sum(w[k] for k in range(len(time_)) if time_[k] == s and event[k])
        if at_risk > 0:
            s_t *= 1.0 - deaths / at_risk
    return s_t


def case_weight(time_, event, w, i: int, side: str) -> float:
    g = censoring_g(time_, event, w, time_[i], include_t=side == "right")
    return 0.0 if g == 0 else 1.0 / g


def ipcw(time_, event, w, horizon: float, side: str = "left") -> np.ndarray:
    """IPCW weight of every scan: cases 1/G(T-) (or G(T)), controls 1/G(h), others 0."""
    g_h = censoring_g(time_, event, w, horizon, include_t=True)
    out = np.zeros(len(time_))
    for i in range(len(time_)):
        if event[i] and time_[i] <= horizon:
            out[i] = case_weight(time_, event, w, i, side)
        elif time_[i] > horizon:
            out[i] = 0.0 if g_h == 0 else 1.0 / g_h
    return out


def concordance(time_, event, risk, w, tau=None, uno: bool = False, side: str = "left"):
    """Harrell's (uno False) or Uno's C over pairs (i died first, before tau), weights
    w_i w_j (times 1/G(T_i)^2 for Uno)."""
    num = den = 0.0
    for i in range(len(time_)):
        if not event[i] or (tau is not None and time_[i] >= tau) or w[i] == 0:
            continue
        wi = w[i] * (case_weight(time_, event, w, i, side) ** 2 if uno else 1.0)
        for j in range(len(time_)):
            if time_[j] > time_[i] or (time_[j] == time_[i] and not event[j]):
                den += wi * w[j]
                num += wi * w[j] * psi(risk[i], risk[j])
    return num / den if den > 0 else math.nan


def td_auc(time_, event, risk, w, horizon: float) -> float:
    iw = ipcw(time_, event, w, horizon)
    num = den = 0.0
    for i in range(len(time_)):
        if not (event[i] and time_[i] <= horizon):
            continue
        for j in range(len(time_)):
            if time_[j] > horizon:
                den += w[i] * iw[i] * w[j]
                num += w[i] * iw[i] * w[j] * psi(risk[i], risk[j])
    return num / den if den > 0 else math.nan


def weighted_auc(y, score, w) -> float:
    num = den = 0.0
    for i in range(len(y)):
        for j in range(len(y)):
            if y[i] == 1 and y[j] == 0:
                den += w[i] * w[j]
                num += w[i] * w[j] * psi(score[i], score[j])
    return num / den if den > 0 else math.nan


def brier(y, prob, w) -> float:
    return sum(wi * (p - yi) ** 2 for yi, p, wi in zip(y, prob, w)) / sum(w)


def ipcw_brier(time_, event, prob, w, horizon: float, side: str = "left") -> float:
    iw = ipcw(time_, event, w, horizon, side)
    total = 0.0
    for i in range(len(time_)):
        case = event[i] and time_[i] <= horizon
        total += w[i] * iw[i] * ((1 - prob[i]) ** 2 if case else prob[i] ** 2)
    return total / sum(w)


def observed_expected(time_, event, prob, w, horizon: float) -> float:
    observed = 1.0 - km_survival(time_, event, w, horizon)
    expected = sum(wi * p for wi, p in zip(w, prob)) / sum(w)
    return observed / expected


def recalibration(y, prob, u, part: str) -> float:
    """Weighted logistic recalibration by solving the score equations with scipy (not
    Newton): intercept with offset logit(p), or the slope of a + b logit(p)."""
    y, u = np.asarray(y, float), np.asarray(u, float)
    lp = logit(np.clip(prob, 1e-7, 1 - 1e-7))
    if part == "intercept":
        def score(a):
            return float(np.sum(u * (y - expit(lp + a))))
        return optimize.brentq(score, -30, 30, xtol=1e-14, rtol=4 * np.finfo(float).eps)

    def scores(beta):
        mu = expit(beta[0] + beta[1] * lp)
        return [np.sum(u * (y - mu)), np.sum(u * (y - mu) * lp)]

    sol = optimize.root(scores, [0.0, 1.0], method="hybr", tol=1e-13)
    assert np.max(np.abs(scores(sol.x))) < 1e-9 * u.sum(), sol.message  # a root, to rounding
    return float(sol.x[1])


def ipcw_recalibration(time_, event, prob, w, horizon: float, part: str) -> float:
    iw = ipcw(time_, event, w, horizon)
    case = np.array([bool(e) and t <= horizon for t, e in zip(time_, event)])
    followed = case | (np.asarray(time_) > horizon)
    return recalibration(case[followed].astype(float), np.asarray(prob)[followed],
                         (np.asarray(w) * iw)[followed], part)


def net_benefit(time_, event, prob, w, horizon: float, threshold: float, iw=None) -> float:
    """IPCW net benefit at ``threshold``; ``iw`` the IPCW weights if already computed."""
    iw = ipcw(time_, event, w, horizon) if iw is None else iw
    tp = fp = 0.0
    for i in range(len(time_)):
        if prob[i] >= threshold:
            if event[i] and time_[i] <= horizon:
                tp += w[i] * iw[i]
            elif time_[i] > horizon:
                fp += w[i] * iw[i]
    n = sum(w)
    return tp / n - fp / n * threshold / (1 - threshold)


def expand(counts_row, codes):
    """Scan indices of one patient resample: each drawn patient's scans, repeated."""
    rows_of = [np.flatnonzero(codes == p) for p in range(len(counts_row))]
    return np.concatenate([np.tile(rows_of[p], c) for p, c in enumerate(counts_row) if c])
