"""The batch logistic recalibration fit against the one-fit Newton of calibration.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logit

from sscmort_core.evaluation import _logistic
from sscmort_core.evaluation._logistic import fit_logistic_many
from sscmort_core.evaluation.calibration import _logistic_newton


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_fits_equal_one_fit_newton_on_repeated_rows(seed):
    """Integer weights (bootstrap multiplicities) fit as the rows repeated that often."""
    rng = np.random.default_rng(seed)
    m, b = 300, 12
    lp = logit(np.clip(rng.beta(0.3, 0.6, m), 1e-7, 1 - 1e-7))  # many extreme predictions
    y = (rng.random(m) < 1 / (1 + np.exp(-0.6 * lp))).astype(float)
    u = rng.poisson(1.0, (m, b)).astype(float)
    x1, x2 = np.ones((m, 1)), np.column_stack([np.ones(m), lp])
    intercepts = fit_logistic_many(x1, y, lp, u)
    slopes = fit_logistic_many(x2, y, np.zeros(m), u, start=np.array([0.1, 0.9]))
    for k in range(b):
        idx = np.repeat(np.arange(m), u[:, k].astype(int))
        yk = y[idx].astype(np.int8)
        assert intercepts[0, k] == pytest.approx(
            _logistic_newton(x1[idx], yk, lp[idx], "test")[0], abs=1e-12)
        np.testing.assert_allclose(
            slopes[:, k], _logistic_newton(x2[idx], yk, np.zeros(len(idx)), "test"), atol=1e-12)


def test_separated_outcomes_give_nan_columns():
    lp = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    x = np.column_stack([np.ones(6), lp])
    u = np.column_stack([np.ones(6), [1, 2, 0, 1, 1, 1.0]])
    separated = np.array([0, 0, 0, 1, 1, 1.0])
    assert np.isnan(fit_logistic_many(x, separated, np.zeros(6), u)).all()  # no optimum
    overlapping = np.array([0, 1, 0, 1, 0, 1.0])
    assert np.isfinite(fit_logistic_many(x, overlapping, np.zeros(6), u)).all()


def test_backtracking_keeps_every_step_from_lowering_the_likelihood(monkeypatch):
    """From a far start the full Newton step overshoots; the halving must then be used and
    the fit still reach the one-fit optimum."""
    rng = np.random.default_rng(4)
    m = 200
    lp = rng.normal(0, 3, m)
    y = (rng.random(m) < 1 / (1 + np.exp(-lp))).astype(float)
    calls = []
    original = _logistic._backtrack
    monkeypatch.setattr(_logistic, "_backtrack",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    x = np.column_stack([np.ones(m), lp])
    fit = fit_logistic_many(x, y, np.zeros(m), np.ones((m, 1)), start=np.array([8.0, -6.0]))
    assert calls, "the far start should need the safeguard"
    np.testing.assert_allclose(fit[:, 0], _logistic_newton(x, y.astype(np.int8), np.zeros(m),
                                                           "test"), atol=1e-10)
