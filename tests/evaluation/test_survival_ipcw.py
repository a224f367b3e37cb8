"""Censoring-aware metrics against scikit-survival, lifelines, slow loops and hand-computed
cohorts.

Agreement with scikit-survival is exact (1e-12) wherever no death shares its time with a
censoring: tie-free data, and data whose deaths tie with deaths and whose risks tie. Where a
death and a censoring tie, sscmort weights the death by 1/G(T-) and scikit-survival by 1/G(T):
there the tests show that each package equals the slow loop with its own side limit, and check
ours by hand on a six-scan cohort.
"""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index as lifelines_cindex
from sksurv.metrics import brier_score as sk_brier
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
from sksurv.util import Surv

from sscmort_core.errors import (
    MetricInputError,
    NoComparablePairsError,
    NonFiniteError,
    NoPositivesError,
    ProbabilityRangeError,
)
from sscmort_core.evaluation import (
    brier_score,
    calibration_intercept_slope,
    concordance_index,
    decision_curve,
    ipcw_brier,
    ipcw_calibration_intercept_slope,
    ipcw_decision_curve,
    ipcw_weights,
    km_calibration_curve,
    observed_expected,
    uno_c,
)
from tests.evaluation import slow_reference as slow


# --- cohorts -----------------------------------------------------------------------------------
def cohort(rng, n=300, ties="none"):
    """Exponential deaths (hazard rising with risk), uniform censoring.

    ties "none": continuous times and risks. "deaths": deaths on a 0.25-year grid (ties among
    deaths), censorings off it, risks rounded to 0.1 (ties in risk). "all": both on the grid,
    so deaths also tie with censorings.
    """
    score = rng.normal(size=n)
    death = rng.exponential(5.0 * np.exp(-0.7 * score))
    censor = rng.uniform(0.5, 8.0, n)
    event = (death <= censor).astype(int)
    if ties == "none":
        return np.minimum(death, censor), event, score
    grid_death = np.ceil(death * 4) / 4
    grid_censor = np.ceil(censor * 4) / 4 if ties == "all" else np.ceil(censor * 4) / 4 + 0.125
    event = (grid_death <= grid_censor).astype(int)
    return np.where(event == 1, grid_death, grid_censor), event, np.round(score, 1)


def prob_of(score):
    return 1.0 / (1.0 + np.exp(-(score - 1.0)))


def surv(time_, event):
    return Surv.from_arrays(np.asarray(event).astype(bool), np.asarray(time_, dtype=float))


def death_ties_censoring(time_, event) -> bool:
    return bool(np.isin(time_[event == 1], time_[event == 0]).any())


# Six scans, the death and the censoring at t = 2 tie (hand computations below).
T6 = np.array([1, 2, 2, 3, 4, 5.0])
E6 = np.array([1, 1, 0, 1, 0, 0])
R6 = np.array([0.9, 0.5, 0.6, 0.7, 0.2, 0.1])
P6 = np.array([0.8, 0.5, 0.4, 0.6, 0.3, 0.2])
# Censoring KM, deaths first: G = 1 before 2, 3/4 after 2, 3/8 after 4, 0 after 5.


# --- Uno's C and truncated Harrell's C ---------------------------------------------------------
@pytest.mark.parametrize("ties", ["none", "deaths"])
@pytest.mark.parametrize(("seed", "tau"), [(0, 1.0), (1, 3.0), (2, 5.0)])
def test_uno_c_matches_sksurv(seed, tau, ties):
    time_, event, risk = cohort(np.random.default_rng(seed), ties=ties)
    assert not death_ties_censoring(time_, event)
    y = surv(time_, event)
    expected = concordance_index_ipcw(y, y, risk, tau=tau)[0]
    assert uno_c(time_, event, risk, tau) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_uno_c_with_death_censoring_ties_differs_from_sksurv_only_by_the_side_limit(seed):
    time_, event, risk = cohort(np.random.default_rng(seed), n=120, ties="all")
    assert death_ties_censoring(time_, event)
    y, w, tau = surv(time_, event), slow.ones(len(time_)), 4.0
    ours = uno_c(time_, event, risk, tau)
    assert ours == pytest.approx(slow.concordance(time_, event, risk, w, tau, uno=True),
                                 abs=1e-12)
    theirs = concordance_index_ipcw(y, y, risk, tau=tau)[0]
    assert theirs == pytest.approx(
        slow.concordance(time_, event, risk, w, tau, uno=True, side="right"), abs=1e-12)
    assert abs(ours - theirs) > 1e-6


def test_uno_c_golden_six_scans():
    # by hand, tau 4.5: deaths before tau open pairs (risk beats risk = concordant)
    #   t1 (.9): vs all 5 later scans, 5 concordant; weight 1 / G(1-)^2 = 1
    #   t2 (.5): vs censored-at-2 (.6), t3 (.7), t4 (.2), t5 (.1): 4 pairs, 2 concordant;
    #            weight 1 / G(2-)^2 = 1 (the censoring at 2 comes after the death)
    #   t3 (.7): vs t4, t5: 2 pairs, 2 concordant; weight 1 / G(3-)^2 = 16 / 9
    # C = (5 + 2 + 2 * 16/9) / (5 + 4 + 2 * 16/9) = (95/9) / (113/9) = 95 / 113.
    assert uno_c(T6, E6, R6, 4.5) == pytest.approx(95 / 113, abs=1e-12)
    # scikit-survival weights the t2 death by 1 / G(2)^2 = 16/9: (5 + 64/9) / (5 + 96/9)
    y = surv(T6, E6)
    assert concordance_index_ipcw(y, y, R6, tau=4.5)[0] == pytest.approx(109 / 141, abs=1e-12)


def test_harrell_truncated_golden_six_scans():
    # pairs as in the Uno golden with weight 1: all deaths 5/5 + 2/4 + 2/2 = 9/11;
    # tau 2.5 keeps the deaths at 1 and 2: 7/9; tau 1 keeps none (deaths strictly before tau)
    assert concordance_index(T6, E6, R6) == pytest.approx(9 / 11, abs=1e-12)
    assert concordance_index(T6, E6, R6, tau=2.5) == pytest.approx(7 / 9, abs=1e-12)
    with pytest.raises(NoComparablePairsError, match="before tau = 1"):
        concordance_index(T6, E6, R6, tau=1.0)


@pytest.mark.parametrize("ties", ["none", "deaths", "all"])
def test_truncated_harrell_is_harrell_with_later_deaths_censored(ties):
    time_, event, risk = cohort(np.random.default_rng(5), ties=ties)
    for tau in (1.0, 2.5, 5.0):
        recoded = np.where(time_ < tau, event, 0)
        truncated = concordance_index(time_, event, risk, tau=tau)
        assert truncated == pytest.approx(
            concordance_index_censored(recoded.astype(bool), time_, risk)[0], abs=1e-12)
        assert truncated == pytest.approx(lifelines_cindex(time_, -risk, recoded), abs=1e-12)
    beyond = time_.max() + 1
    assert concordance_index(time_, event, risk, tau=beyond) == concordance_index(
        time_, event, risk)


def test_uno_c_bad_inputs_raise_named_errors():
    with pytest.raises(NonFiniteError, match="tau"):
        uno_c(T6, E6, R6, np.nan)
    with pytest.raises(NonFiniteError, match="tau"):
        uno_c(T6, E6, R6, None)  # type: ignore[arg-type]
    with pytest.raises(NoComparablePairsError, match="Uno"):
        uno_c([1, 2, 3], [0, 0, 0], [0.1, 0.2, 0.3], 2.0)


# --- IPCW weights, Brier, observed / expected --------------------------------------------------
def test_ipcw_weights_golden_six_scans():
    # horizon 3.5: cases t1, t2, t3 -> 1/G(1-) = 1, 1/G(2-) = 1, 1/G(3-) = 4/3; the scan
    # censored at 2 -> 0; controls t4, t5 -> 1/G(3.5) = 4/3
    w = ipcw_weights(T6, E6, 3.5)
    np.testing.assert_allclose(w.weight, [1, 1, 0, 4 / 3, 4 / 3, 4 / 3], atol=1e-12)
    assert w.case.tolist() == [True, True, False, True, False, False]
    assert w.control.tolist() == [False, False, False, False, True, True]
    assert w.censoring_at_horizon == pytest.approx(3 / 4) and w.n_censored == 1


@pytest.mark.parametrize("ties", ["none", "all"])
def test_ipcw_weights_match_slow_loop(ties):
    time_, event, _ = cohort(np.random.default_rng(6), n=120, ties=ties)
    for h in (1.0, 3.0, 5.0):
        np.testing.assert_allclose(ipcw_weights(time_, event, h).weight,
                                   slow.ipcw(time_, event, slow.ones(len(time_)), h),
                                   atol=1e-12)


@pytest.mark.parametrize("ties", ["none", "deaths", "all"])
def test_ipcw_risk_equals_one_minus_kaplan_meier(ties):
    """Satten & Datta (2001): sum(case / G(T-)) / n = 1 - KM(h), exactly with deaths first."""
    time_, event, _ = cohort(np.random.default_rng(7), ties=ties)
    km = KaplanMeierFitter().fit(time_, event)
    for h in (1.0, 3.0, 5.0):
        w = ipcw_weights(time_, event, h)
        assert np.sum(w.weight * w.case) / len(time_) == pytest.approx(
            1.0 - km.survival_function_at_times(h).iloc[0], abs=1e-12)
        # and the controls carry the rest: S(h) G(h) = #{time > h} / n
        assert np.sum(w.weight * w.control) / len(time_) == pytest.approx(
            km.survival_function_at_times(h).iloc[0], abs=1e-12)


@pytest.mark.parametrize("ties", ["none", "deaths"])
@pytest.mark.parametrize(("seed", "horizon"), [(0, 1.0), (1, 3.0), (2, 5.0)])
def test_ipcw_brier_matches_sksurv(seed, horizon, ties):
    time_, event, score = cohort(np.random.default_rng(seed), ties=ties)
    prob = prob_of(score)
    y = surv(time_, event)
    _, expected = sk_brier(y, y, 1.0 - prob, horizon)  # sksurv takes survival probability
    assert ipcw_brier(time_, event, prob, horizon) == pytest.approx(expected[0], abs=1e-12)


def test_ipcw_brier_with_death_censoring_ties_differs_from_sksurv_only_by_the_side_limit():
    time_, event, score = cohort(np.random.default_rng(3), n=150, ties="all")
    prob, y, w = prob_of(score), surv(time_, event), slow.ones(len(time_))
    ours = ipcw_brier(time_, event, prob, 3.0)
    assert ours == pytest.approx(slow.ipcw_brier(time_, event, prob, w, 3.0), abs=1e-12)
    theirs = sk_brier(y, y, 1.0 - prob, 3.0)[1][0]
    assert theirs == pytest.approx(slow.ipcw_brier(time_, event, prob, w, 3.0, "right"),
                                   abs=1e-12)
    assert abs(ours - theirs) > 1e-6


def test_ipcw_brier_golden_six_scans():
    # horizon 3.5, weights as in the IPCW golden: (1/6) [(1-.8)^2 + (1-.5)^2
    #   + (4/3) ((1-.6)^2 + .3^2 + .2^2)] = (1/6) (0.29 + 0.29 * 4/3) = 2.03 / 18
    assert ipcw_brier(T6, E6, P6, 3.5) == pytest.approx(2.03 / 18, abs=1e-12)
    # scikit-survival weights the t2 death 1/G(2) = 4/3: (1/6) (0.04 + 0.72 * 4/3 ...) = 0.76/6
    y = surv(T6, E6)
    assert sk_brier(y, y, 1 - P6, 3.5)[1][0] == pytest.approx(0.76 / 6, abs=1e-12)


def test_ipcw_brier_without_censoring_before_horizon_is_plain_brier():
    time_, event, score = cohort(np.random.default_rng(8), ties="deaths")
    prob, h = prob_of(score), 1.0
    followed = (time_ > h) | (event == 1)
    t, e, p = time_[followed], event[followed], prob[followed]
    assert ipcw_brier(t, e, p, h) == pytest.approx(brier_score(t <= h, p), abs=1e-12)


def test_observed_expected_golden_and_against_lifelines():
    # by hand, horizon 3.5: KM of deaths 5/6 * 4/5 * 2/3 = 4/9 -> observed 5/9 (= the IPCW
    # risk (1 + 1 + 4/3) / 6); expected = mean risk 2.8 / 6; ratio = 30 / 25.2
    oe = observed_expected(T6, E6, P6, 3.5)
    assert (oe.observed, oe.expected) == pytest.approx((5 / 9, 2.8 / 6), abs=1e-12)
    assert oe.ratio == pytest.approx(30 / 25.2, abs=1e-12)
    assert (oe.n, oe.n_events) == (6, 3)
    time_, event, score = cohort(np.random.default_rng(9), ties="all")
    km = KaplanMeierFitter().fit(time_, event)
    oe = observed_expected(time_, event, prob_of(score), 3.0)
    assert oe.observed == pytest.approx(1 - km.survival_function_at_times(3.0).iloc[0],
                                        abs=1e-12)
    assert oe.expected == pytest.approx(prob_of(score).mean(), abs=1e-15)


# --- IPCW calibration, KM calibration by group, decision curve ----------------------------------
@pytest.mark.parametrize("ties", ["none", "all"])
def test_ipcw_calibration_matches_score_equations_solved_by_scipy(ties):
    time_, event, score = cohort(np.random.default_rng(10), n=200, ties=ties)
    prob, w = prob_of(score), slow.ones(len(time_))
    for h in (1.0, 3.0):
        cal = ipcw_calibration_intercept_slope(time_, event, prob, h)
        assert cal.intercept == pytest.approx(
            slow.ipcw_recalibration(time_, event, prob, w, h, "intercept"), abs=1e-9)
        assert cal.slope == pytest.approx(
            slow.ipcw_recalibration(time_, event, prob, w, h, "slope"), abs=1e-9)


def test_ipcw_calibration_without_censoring_is_plain_recalibration():
    time_, event, score = cohort(np.random.default_rng(11), ties="deaths")
    prob, h = prob_of(score), 1.0
    followed = (time_ > h) | (event == 1)
    t, e, p = time_[followed], event[followed], prob[followed]
    ours = ipcw_calibration_intercept_slope(t, e, p, h)
    plain = calibration_intercept_slope((t <= h).astype(int), p)
    assert (ours.intercept, ours.slope, ours.slope_intercept) == pytest.approx(
        (plain.intercept, plain.slope, plain.slope_intercept), abs=1e-9)


def test_true_risk_is_calibrated_under_ipcw_but_not_on_complete_cases():
    """The issue's audit: dropping censored scans makes the true risk look miscalibrated."""
    rng = np.random.default_rng(12)
    n, h = 20_000, 3.0
    rate = 0.1 * np.exp(rng.normal(size=n))
    death = rng.exponential(1 / rate)
    censor = rng.uniform(0.0, 6.0, n)
    time_, event = np.minimum(death, censor), (death <= censor).astype(int)
    true_risk = 1 - np.exp(-rate * h)
    oe = observed_expected(time_, event, true_risk, h)
    cal = ipcw_calibration_intercept_slope(time_, event, true_risk, h)
    assert abs(oe.ratio - 1) < 0.04 and abs(cal.slope - 1) < 0.08
    known = (time_ > h) | (event == 1)
    complete = ((time_ <= h) & (event == 1))[known].mean() / true_risk[known].mean()
    assert complete > 1.15  # complete cases over-represent early deaths


@pytest.mark.parametrize("ties", ["none", "all"])
def test_km_calibration_curve_matches_lifelines_per_group(ties):
    time_, event, score = cohort(np.random.default_rng(13), n=400, ties=ties)
    prob, h = np.round(prob_of(score), 2), 3.0  # ties in risk, some on bin edges
    curve = km_calibration_curve(time_, event, prob, h, n_bins=5)
    edges = np.percentile(prob, np.linspace(0, 100, 6))
    bin_id = np.searchsorted(edges[1:-1], prob)
    iw = slow.ipcw(time_, event, slow.ones(len(time_)), h)
    for k in range(5):
        member = bin_id == k
        km = KaplanMeierFitter().fit(time_[member], event[member])
        assert curve.observed_km[k] == pytest.approx(
            1 - km.survival_function_at_times(h).iloc[0], abs=1e-12)
        case = (event[member] == 1) & (time_[member] <= h)
        assert curve.observed_ipcw[k] == pytest.approx(np.sum(iw[member] * case) / member.sum(),
                                                       abs=1e-12)
        assert curve.mean_predicted[k] == pytest.approx(prob[member].mean(), abs=1e-12)
        assert curve.count[k] == member.sum() and curve.n_events[k] == case.sum()
    assert curve.count.sum() == len(prob)


def test_ipcw_decision_curve_golden_six_scans():
    # horizon 3.5, IPCW weights [1, 1, 0, 4/3, 4/3, 4/3], n = 6:
    #   t = .45 treats .8, .5, .6 (cases 1 + 1 + 4/3): TP 5/9, FP 0 -> 5/9
    #   t = .25 adds .4 (censored, 0) and .3 (control 4/3): FP 2/9 -> 5/9 - 2/9 / 3 = 13/27
    #   treat all at .25: TP 5/9, FP (4/3 + 4/3) / 6 = 4/9 -> 5/9 - 4/27 = 11/27
    dc = ipcw_decision_curve(T6, E6, P6, 3.5, thresholds=[0.45, 0.25])
    np.testing.assert_allclose(dc.net_benefit_model, [5 / 9, 13 / 27], atol=1e-12)
    np.testing.assert_allclose(dc.net_benefit_treat_all, [5 / 9 - 4 / 9 * 0.45 / 0.55, 11 / 27],
                               atol=1e-12)
    assert dc.prevalence == pytest.approx(5 / 9)


@pytest.mark.parametrize("ties", ["none", "all"])
def test_ipcw_decision_curve_matches_slow_loop(ties):
    time_, event, score = cohort(np.random.default_rng(14), n=150, ties=ties)
    prob, w, h = np.round(prob_of(score), 2), slow.ones(150), 3.0
    dc = ipcw_decision_curve(time_, event, prob, h)
    iw = slow.ipcw(time_, event, w, h)
    expected = [slow.net_benefit(time_, event, prob, w, h, t, iw) for t in dc.thresholds]
    np.testing.assert_allclose(dc.net_benefit_model, expected, atol=1e-12)
    everyone = [slow.net_benefit(time_, event, np.ones(150), w, h, t, iw)
                for t in dc.thresholds]
    np.testing.assert_allclose(dc.net_benefit_treat_all, everyone, atol=1e-12)


def test_ipcw_decision_curve_without_censoring_is_the_plain_curve():
    time_, event, score = cohort(np.random.default_rng(15), ties="deaths")
    prob, h = prob_of(score), 1.0
    followed = (time_ > h) | (event == 1)
    t, e, p = time_[followed], event[followed], prob[followed]
    ours, plain = ipcw_decision_curve(t, e, p, h), decision_curve((t <= h).astype(int), p)
    np.testing.assert_allclose(ours.net_benefit_model, plain.net_benefit_model, atol=1e-12)
    np.testing.assert_allclose(ours.net_benefit_treat_all, plain.net_benefit_treat_all,
                               atol=1e-12)


def test_ipcw_bad_inputs_raise_named_errors():
    with pytest.raises(ProbabilityRangeError, match="risk_at_horizon"):
        ipcw_brier(T6, E6, R6 * 2, 3.5)
    with pytest.raises(NonFiniteError, match="horizon"):
        ipcw_brier(T6, E6, P6, np.inf)
    with pytest.raises(MetricInputError, match="every scan is censored"):
        ipcw_brier([1, 2], [0, 0], [0.1, 0.2], 3.0)
    with pytest.raises(NoPositivesError, match="horizon 0.5"):
        ipcw_calibration_intercept_slope(T6, E6, P6, 0.5)
    with pytest.raises(MetricInputError, match="thresholds"):
        ipcw_decision_curve(T6, E6, P6, 3.5, thresholds=[0.0, 0.5])
    with pytest.raises(MetricInputError, match="empty"):
        ipcw_weights([], [], 1.0)
