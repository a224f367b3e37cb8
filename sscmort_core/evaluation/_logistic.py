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
    starts from the point estimate, a few Newton steps from each resample's optimum.

    Safeguard: a step must not lower the log-likelihood (as
    :func:`calibration._logistic_newton`). The log-likelihood is concave, so a step whose
    end still climbs along it (gradient there . step >= 0) cannot have lowered it; only the
    other columns compute the log-likelihood and halve their step until it does not drop.
    A column is done when its step is below :data:`NEWTON_TOL`; only the columns still
    iterating are computed on.
    """
    k, b = x.shape[1], u.shape[1]
    beta = np.zeros((k, b)) if start is None else np.repeat(
        np.asarray(start, dtype=np.float64).reshape(k, 1), b, axis=1)
    result = np.full((k, b), np.nan)
    cols = np.arange(b)  # the columns still iterating
    eta = _eta(x, offset, beta)  # (m, a)
    grad, info = _derivatives(x, y, u, eta)
    for _ in range(MAX_NEWTON_STEPS):
        if cols.size == 0:
            break
        ua = u[:, cols]
        step, ok = _solve(grad, info)
        cand = beta + step
        eta_c = _eta(x, offset, cand)
        grad_c, info_c = _derivatives(x, y, ua, eta_c)
        unsure = np.flatnonzero(ok & (np.einsum("ka,ka->a", grad_c, step) < 0))
        if unsure.size:
            _backtrack(x, y, offset, ua, beta, eta, step, (cand, eta_c, grad_c, info_c),
                       unsure)
        done = ok & (np.max(np.abs(cand - beta), axis=0) < NEWTON_TOL)
        result[:, cols[done]] = cand[:, done]
        keep = ok & ~done  # failed columns stay NaN
        cols, beta, eta = cols[keep], cand[:, keep], eta_c[:, keep]
        grad, info = grad_c[:, keep], info_c[:, keep]
    return result


def _eta(x: NDArray[np.float64], offset: NDArray[np.float64],
         beta: NDArray[np.float64]) -> NDArray[np.float64]:
    return offset[:, None] + x @ beta  # (m, a)


def _loglik(y: NDArray[np.float64], u: NDArray[np.float64],
            eta: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.einsum("ma,ma->a", u, y[:, None] * eta - np.logaddexp(0.0, eta))


def _derivatives(x: NDArray[np.float64], y: NDArray[np.float64], u: NDArray[np.float64],
                 eta: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gradient (k, a) and information matrix entries at ``eta`` (m, a): (1, a) ``h00`` for
    k = 1, (3, a) ``h00, h01, h11`` for k = 2."""
    mu = expit(eta)  # (m, a)
    gradient = x.T @ (u * (y[:, None] - mu))  # (k, a)
    v = u * mu * (1.0 - mu)  # (m, a)
    if x.shape[1] == 1:
        return gradient, ((x[:, 0] ** 2) @ v)[None, :]
    return gradient, np.vstack([(x[:, 0] ** 2) @ v, (x[:, 0] * x[:, 1]) @ v,
                                (x[:, 1] ** 2) @ v])


def _solve(gradient: NDArray[np.float64], info: NDArray[np.float64]
           ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Newton step (k, a) and whether the information matrix was invertible (a,)."""
    if gradient.shape[0] == 1:
        ok = info[0] > 0
        return np.where(ok, gradient[0] / np.where(ok, info[0], 1.0), 0.0)[None, :], ok
    h00, h01, h11 = info
    det = h00 * h11 - h01**2
    ok = det > 1e-12 * np.maximum(h00 * h11, 1e-300)
    safe = np.where(ok, det, 1.0)
    step = np.vstack([(h11 * gradient[0] - h01 * gradient[1]) / safe,
                      (h00 * gradient[1] - h01 * gradient[0]) / safe])
    return np.where(ok, step, 0.0), ok


def _backtrack(x: NDArray[np.float64], y: NDArray[np.float64], offset: NDArray[np.float64],
               u: NDArray[np.float64], beta: NDArray[np.float64], eta: NDArray[np.float64],
               step: NDArray[np.float64],
               candidate: tuple[NDArray[np.float64], NDArray[np.float64],
                                NDArray[np.float64], NDArray[np.float64]],
               cols: NDArray[np.intp]) -> None:
    """For columns ``cols``: halve the step until the log-likelihood does not drop by more
    than its rounding (1e-12 relative: a sum over thousands of weighted terms is exact to
    about that, so a converged step is not halved over noise). Updates ``candidate`` (beta,
    eta, gradient, information of the accepted points) in place."""
    cand, eta_c, grad_c, info_c = candidate
    uc = u[:, cols]
    ll_old = _loglik(y, uc, eta[:, cols])
    ll_new = _loglik(y, uc, eta_c[:, cols])
    slack = 1e-12 * np.maximum(1.0, np.abs(ll_old))
    scale = np.ones(len(cols))
    for _ in range(_MAX_HALVINGS):
        bad = np.flatnonzero(ll_new < ll_old - slack)
        if bad.size == 0:
            break
        scale[bad] /= 2.0
        c = cols[bad]
        cand[:, c] = beta[:, c] + scale[bad] * step[:, c]
        eta_c[:, c] = _eta(x, offset, cand[:, c])
        ll_new[bad] = _loglik(y, uc[:, bad], eta_c[:, c])
    changed = cols[scale < 1.0]
    if changed.size:
        grad_c[:, changed], info_c[:, changed] = _derivatives(x, y, u[:, changed],
                                                              eta_c[:, changed])
