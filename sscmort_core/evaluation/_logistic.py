"""Weighted logistic recalibration fits, many weight vectors at once (Newton-Raphson).

Fits ``logit P(y = 1) = offset + x @ beta`` with observation weights ``u`` (m, b): one fit per
column of ``u`` (a bootstrap resample, IPCW weights, or all ones), all columns advanced
together. Columns whose fit fails (singular information, no convergence: outcomes perfectly
separated by the predictions) come back as NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

MAX_NEWTON_STEPS = 100
NEWTON_TOL = 1e-10
_MAX_HALVINGS = 27  # step scale down to about 1e-8, as calibration._logistic_newton


def fit_logistic_many(
    x: NDArray[np.float64], y: NDArray[np.float64], offset: NDArray[np.float64],
    u: NDArray[np.float64], start: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Maximum-likelihood ``beta`` (k, b) for k = 1 or 2 columns of ``x`` (m, k); outcomes
    ``y`` (m,) in {0, 1}; ``offset`` (m,); weights ``u`` (m, b) >= 0. NaN where a fit fails.

    ``start`` (k,): where every column's iteration starts (zeros if None); a bootstrap
    starts from the point estimate, a few Newton steps from each resample's optimum. Each
    step is halved per column until the log-likelihood does not decrease (as
    :func:`calibration._logistic_newton`); a column is done when its step is below
    :data:`NEWTON_TOL`, and only the columns still iterating are computed on.
    """
    k, b = x.shape[1], u.shape[1]
    beta = np.zeros((k, b)) if start is None else np.repeat(
        np.asarray(start, dtype=np.float64).reshape(k, 1), b, axis=1)
    result = np.full((k, b), np.nan)
    cols = np.arange(b)  # the columns still iterating
    eta = _eta(x, offset, beta)  # (m, a)
    loglik = _loglik(y, u, eta)  # (a,)
    for _ in range(MAX_NEWTON_STEPS):
        if cols.size == 0:
            break
        ua = u[:, cols]
        step, ok = _newton_step(x, y, ua, eta)
        cand, eta_c, ll_c = _halve_until_ascent(x, y, offset, ua, beta, step, loglik)
        done = ok & (np.max(np.abs(cand - beta), axis=0) < NEWTON_TOL)
        result[:, cols[done]] = cand[:, done]
        keep = ok & ~done  # failed columns stay NaN
        cols, beta, eta, loglik = cols[keep], cand[:, keep], eta_c[:, keep], ll_c[keep]
    return result


def _eta(x: NDArray[np.float64], offset: NDArray[np.float64],
         beta: NDArray[np.float64]) -> NDArray[np.float64]:
    return offset[:, None] + x @ beta  # (m, a)


def _loglik(y: NDArray[np.float64], u: NDArray[np.float64],
            eta: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.einsum("ma,ma->a", u, y[:, None] * eta - np.logaddexp(0.0, eta))


def _newton_step(x: NDArray[np.float64], y: NDArray[np.float64], u: NDArray[np.float64],
                 eta: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Newton step (k, a) at linear predictors ``eta`` (m, a), and whether the information
    matrix was invertible (a,)."""
    mu = expit(eta)  # (m, a)
    gradient = x.T @ (u * (y[:, None] - mu))  # (k, a)
    v = u * mu * (1.0 - mu)  # (m, a)
    if x.shape[1] == 1:
        info = (x[:, 0] ** 2) @ v  # (a,)
        ok = info > 0
        step = np.where(ok, gradient[0] / np.where(ok, info, 1.0), 0.0)[None, :]
        return step, ok
    h00, h01, h11 = (x[:, 0] ** 2) @ v, (x[:, 0] * x[:, 1]) @ v, (x[:, 1] ** 2) @ v
    det = h00 * h11 - h01**2
    ok = det > 1e-12 * np.maximum(h00 * h11, 1e-300)
    safe = np.where(ok, det, 1.0)
    step = np.vstack([(h11 * gradient[0] - h01 * gradient[1]) / safe,
                      (h00 * gradient[1] - h01 * gradient[0]) / safe])
    return np.where(ok, step, 0.0), ok


def _halve_until_ascent(x: NDArray[np.float64], y: NDArray[np.float64],
                        offset: NDArray[np.float64], u: NDArray[np.float64],
                        beta: NDArray[np.float64], step: NDArray[np.float64],
                        loglik: NDArray[np.float64]
                        ) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                   NDArray[np.float64]]:
    """(``beta + scale * step``, its eta, its log-likelihood), the scale halved per column
    until the log-likelihood does not decrease by more than its rounding (1e-12 relative: a
    sum over thousands of weighted terms is exact to about that, so a converged step is not
    halved over noise)."""
    scale = np.ones(beta.shape[1])
    cand = beta + step
    eta = _eta(x, offset, cand)
    ll_new = _loglik(y, u, eta)
    slack = 1e-12 * np.maximum(1.0, np.abs(loglik))
    for _ in range(_MAX_HALVINGS):
        bad = np.flatnonzero(ll_new < loglik - slack)
        if bad.size == 0:
            break
        scale[bad] /= 2.0
        cand[:, bad] = beta[:, bad] + scale[bad] * step[:, bad]
        eta[:, bad] = _eta(x, offset, cand[:, bad])
        ll_new[bad] = _loglik(y, u[:, bad], eta[:, bad])
    return cand, eta, ll_new
