"""Discrete-time survival model of the tabular features: person-periods, the fit against a
slow reference, monotone risks, and that censored scans count."""

from __future__ import annotations

import numpy as np
import pytest

from sscmort_core.tabular import model as tab
from sscmort_core.tabular import survival as sv
from sscmort_core.tabular.explain import shap_values


def test_person_periods_by_hand():
    # died at 0.5 y; censored at 2 y; died at 4 y; alive at 6 y; censored at exactly 3 y
    t = np.array([0.5, 2.0, 4.0, 6.0, 3.0])
    e = np.array([True, False, True, False, False])
    pp = sv.person_periods(t, e)
    rows = sorted(zip(pp.scan.tolist(), pp.interval.tolist(), pp.y.tolist(),
                      pp.weight.tolist()))
    assert rows == [
        (0, 0, 1.0, 1.0),
        (1, 0, 0.0, 1.0), (1, 1, 0.0, 0.5),  # half of (1, 3] observed
        (2, 0, 0.0, 1.0), (2, 1, 0.0, 1.0), (2, 2, 1.0, 1.0),
        (3, 0, 0.0, 1.0), (3, 1, 0.0, 1.0), (3, 2, 0.0, 1.0),
        (4, 0, 0.0, 1.0), (4, 1, 0.0, 1.0)]  # followed to the end of (1, 3], no further


def _cohort(n: int, seed: int):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    eta = 0.9 * z[:, 0] - 0.4 * z[:, 1]
    death = rng.exponential(1 / (0.08 * np.exp(eta)))
    censor = rng.uniform(0.3, 6.0, n)  # heavy censoring before 5 years
    return z, np.minimum(death, censor), death <= censor, np.arange(n)


def test_unpenalised_fit_matches_sklearn_on_the_person_periods():
    """Slow reference: scikit-learn's unpenalised logistic regression on the expanded rows
    with interval dummies and the actuarial weights."""
    from sklearn.linear_model import LogisticRegression

    z, t, e, _ = _cohort(400, 1)
    ours = sv.fit_hazard(z, t, e, c=1e12)
    pp = sv.person_periods(t, e)
    design = np.hstack([np.eye(3)[pp.interval], z[pp.scan]])
    ref = LogisticRegression(C=1e12, fit_intercept=False, tol=1e-12, max_iter=10_000)
    ref.fit(design, pp.y, sample_weight=pp.weight)
    np.testing.assert_allclose(np.concatenate([ours.alpha, ours.beta]), ref.coef_[0],
                               atol=1e-4)


def test_risks_are_monotone_and_censored_scans_count():
    """On a cohort censored well before 5 years, the complete-case logistic (which keeps the
    early deaths and drops the censored survivors) over-predicts the 5-year risk against
    Kaplan-Meier; the survival model, which counts the censored scans, does not."""
    z, t, e, groups = _cohort(1500, 2)
    hms = tab.fit_survival_horizons(z, t, e, groups, seed=0)
    risks = np.column_stack([m.risk(z) for m in hms])
    assert (np.diff(risks, axis=1) >= -1e-12).all()
    km = 1.0 - _kaplan_meier(t, e, 5.0)
    known = e & (t <= 5) | (t >= 5)
    cc = tab.fit_horizon(z[known], (e & (t <= 5))[known], groups[known], "logistic", 5, 0)
    assert abs(risks[:, 2].mean() - km) < 0.03
    assert cc.risk(z).mean() - km > 0.08
    assert hms[0].estimator.hazard.beta[0] > 0.5 > abs(hms[0].estimator.hazard.beta[2])


def _kaplan_meier(t: np.ndarray, e: np.ndarray, at: float) -> float:
    """Product-limit survival at ``at``, written out (reference)."""
    s = 1.0
    for u in np.unique(t[e & (t <= at)]):
        at_risk = (t >= u).sum()
        s *= 1.0 - (e & (t == u)).sum() / at_risk
    return s


def test_too_few_deaths_fit_intervals_only():
    z, t, _, groups = _cohort(60, 3)
    e = np.zeros(60, bool)
    e[:2] = True
    hz = sv.fit_survival(z, t, e, groups, seed=0)
    assert hz.c is None and (hz.beta == 0).all()


@pytest.mark.parametrize("with_missing", [False, True])
def test_attributions_add_up_to_the_cumulative_log_odds(with_missing):
    z, t, e, groups = _cohort(300, 4)
    x = z * [1, 10, 100] + [0, -800, 5]
    if with_missing:
        x[np.random.default_rng(0).random(x.shape) < 0.05] = np.nan
    hms = tab.fit_survival_horizons(x, t, e, groups, seed=0)
    model = tab.TabularModel("m", "qct", "discrete_time", "test", ("a", "b", "c"), hms, None)
    values = shap_values(model, x)
    assert values.max_additivity_error < 1e-8
    linear = hms[0].estimator.hazard.beta * (hms[0].standardise(x) - hms[0].background.mean(0))
    assert (np.sign(values.values[2]) == np.sign(linear)).all()  # signs of the linear model
