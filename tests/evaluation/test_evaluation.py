"""Tests for sscmort_core.evaluation.

Three kinds of check, as in scikit-survival and lifelines:
* golden values on tiny hand-made cohorts, each saying where the number came from;
* fast paths against slow, obviously-correct references written here (double loops);
* agreement with scikit-learn and lifelines where they overlap.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index as lifelines_cindex
from scipy import stats
from sklearn.calibration import calibration_curve as sk_calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve
from sksurv.nonparametric import kaplan_meier_estimator

from sscmort_core.errors import (
    CalibrationFitError,
    InputShapeError,
    MetricInputError,
    NoComparablePairsError,
    NoNegativesError,
    NonFiniteError,
    NoPositivesError,
    NotBinaryError,
    ProbabilityRangeError,
    SingleClassError,
)
from sscmort_core.evaluation import (
    auc,
    auc_or_none,
    auc_with_ci,
    brier_score,
    calibration_curve,
    calibration_intercept_slope,
    censoring_survival_left,
    cluster_counts,
    compare_models,
    concordance_index,
    decision_curve,
    delong_test,
    paired_bootstrap_auc_difference,
    roc_curve_points,
    time_dependent_auc,
)
from sscmort_core.evaluation.discrimination import _delong_components


# --- slow, obviously-correct references ----------------------------------------------------------
def psi(x: float, y: float) -> float:
    """Mann-Whitney kernel: 1 if the positive scores higher, 1/2 on a tie, else 0."""
    return 1.0 if x > y else 0.5 if x == y else 0.0


def slow_auc(y, score) -> float:
    pos = [s for s, t in zip(score, y) if t == 1]
    neg = [s for s, t in zip(score, y) if t == 0]
    return sum(psi(p, q) for p in pos for q in neg) / (len(pos) * len(neg))


def slow_delong_components(y, score):
    """DeLong (1988) structural components by explicit double loops over the psi kernel."""
    pos = [s for s, t in zip(score, y) if t == 1]
    neg = [s for s, t in zip(score, y) if t == 0]
    v10 = np.array([sum(psi(x, q) for q in neg) / len(neg) for x in pos])
    v01 = np.array([sum(psi(p, x) for p in pos) / len(pos) for x in neg])
    return v10, v01


def slow_delong(y, a, b):
    """z and p of DeLong's test from the slow components and the textbook variance formula."""
    v10a, v01a = slow_delong_components(y, a)
    v10b, v01b = slow_delong_components(y, b)
    m, n = len(v10a), len(v01a)

    def cov(u, v):
        return sum((ui - u.mean()) * (vi - v.mean()) for ui, vi in zip(u, v)) / (len(u) - 1)

    var = (cov(v10a, v10a) + cov(v10b, v10b) - 2 * cov(v10a, v10b)) / m + (
        cov(v01a, v01a) + cov(v01b, v01b) - 2 * cov(v01a, v01b)
    ) / n
    z = (v10a.mean() - v10b.mean()) / math.sqrt(var)
    return z, 2 * stats.norm.sf(abs(z))


def slow_cindex(time_, event, risk) -> float:
    """Harrell's C by the definition: loop over ordered pairs (i died first)."""
    num = den = 0.0
    for i in range(len(time_)):
        if not event[i]:
            continue
        for j in range(len(time_)):
            if time_[j] > time_[i] or (time_[j] == time_[i] and not event[j]):
                den += 1
                num += psi(risk[i], risk[j])
    return num / den


def slow_censoring_km_left(time_, event, t) -> float:
    """P(C >= t): product over censoring times s < t of (1 - censored at s / at risk at s),
    deaths first at a tie: a death at s has left the risk set of censoring at s."""
    g = 1.0
    for s in sorted(set(time_[i] for i in range(len(time_)) if not event[i])):
        if s >= t:
            break
        at_risk = sum(1 for u, e in zip(time_, event) if u > s or (u == s and not e))
        censored = sum(1 for u, e in zip(time_, event) if u == s and not e)
        g *= 1 - censored / at_risk
    return g


def slow_td_auc(time_, event, risk, horizon) -> float:
    """Uno's cumulative/dynamic AUC by a double loop (weights 1/G(T_i-), controls 1/G(h))."""
    g_h = slow_censoring_km_left(time_, event, np.nextafter(horizon, np.inf))
    num = den = 0.0
    for i in range(len(time_)):
        if not (event[i] and time_[i] <= horizon):
            continue
        w_i = 1 / slow_censoring_km_left(time_, event, time_[i])
        for j in range(len(time_)):
            if time_[j] > horizon:
                den += w_i / g_h
                num += w_i / g_h * psi(risk[i], risk[j])
    return num / den


def slow_net_benefit(y, prob, t) -> float:
    n = len(y)
    tp = sum(1 for yi, p in zip(y, prob) if p >= t and yi == 1)
    fp = sum(1 for yi, p in zip(y, prob) if p >= t and yi == 0)
    return tp / n - fp / n * t / (1 - t)


def slow_cluster_bootstrap(y, score, groups, n_boot, seed):
    """Explicit resampling: repeat each drawn patient's scans, then call sklearn per resample."""
    ids, codes = np.unique(groups, return_inverse=True)
    counts = cluster_counts(len(ids), n_boot, seed)  # same draws as the fast path
    rows_of = [np.flatnonzero(codes == p) for p in range(len(ids))]
    aucs = []
    for row in counts:
        idx = np.concatenate([np.tile(rows_of[p], c) for p, c in enumerate(row) if c])
        if 0 < y[idx].sum() < len(idx):
            aucs.append(roc_auc_score(y[idx], score[idx]))
    return np.array(aucs)


# --- simulated data ------------------------------------------------------------------------------
def clustered_cohort(rng, n_patients=120, shift=1.0, sd_patient=1.0, sd_scan=0.5):
    """Patients with 1-8 scans; the outcome is per patient, scores share a patient effect.

    Every positive-negative pair then comes from two different patients, so
    P(s_pos > s_neg) = Phi(shift / sqrt(2 (sd_patient^2 + sd_scan^2))) exactly.
    """
    n_scans = rng.integers(1, 9, n_patients)
    groups = np.repeat(np.arange(n_patients), n_scans)
    y_patient = (rng.random(n_patients) < 0.3).astype(int)
    u = rng.normal(0, sd_patient, n_patients)
    score = shift * y_patient[groups] + u[groups] + rng.normal(0, sd_scan, len(groups))
    true_auc = stats.norm.cdf(shift / math.sqrt(2 * (sd_patient**2 + sd_scan**2)))
    return y_patient[groups], score, groups, true_auc


def random_tied(rng, n=300, levels=12):
    y = (rng.random(n) < 0.35).astype(int)
    score = np.round(rng.normal(size=n) + 0.8 * y, 0) + rng.integers(0, levels, n) / levels
    return y, score


def survival_data(rng, n=250):
    """Exponential deaths and uniform censoring, both on a grid of 0.25 years to force ties."""
    risk = rng.normal(size=n)
    death = rng.exponential(5.0 * np.exp(-0.7 * risk))
    censor = rng.uniform(0.5, 8.0, n)
    time_ = np.ceil(np.minimum(death, censor) * 4) / 4
    event = (death <= censor).astype(int)
    return time_, event, np.round(risk, 1)


# --- ROC and AUC ---------------------------------------------------------------------------------
Y5 = np.array([1, 1, 1, 0, 0])
S5 = np.array([0.9, 0.8, 0.4, 0.5, 0.1])


def test_auc_golden_small_cohort():
    # by hand: 3 positives x 2 negatives = 6 pairs; only (0.4 vs 0.5) is discordant -> 5/6
    assert auc(Y5, S5) == pytest.approx(5 / 6)
    # by hand with a tie: pairs (.7,.5)=1 (.7,.2)=1 (.5,.5)=1/2 (.5,.2)=1 -> 3.5 / 4
    assert auc([1, 1, 0, 0], [0.7, 0.5, 0.5, 0.2]) == pytest.approx(0.875)


def test_roc_golden_small_cohort():
    # by hand: scores descending 0.9(+) 0.8(+) 0.5(-) 0.4(+) 0.1(-); 3 positives, 2 negatives
    roc = roc_curve_points(Y5, S5)
    np.testing.assert_allclose(roc.tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(roc.fpr, [0, 0, 0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(roc.thresholds, [np.inf, 0.9, 0.8, 0.5, 0.4, 0.1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_and_slow_loop_with_ties(seed):
    y, score = random_tied(np.random.default_rng(seed))
    assert auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert auc(y, score) == pytest.approx(slow_auc(y, score), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_points_match_sklearn_and_area_equals_auc(seed):
    y, score = random_tied(np.random.default_rng(seed))
    roc = roc_curve_points(y, score)
    fpr, tpr, thr = roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(roc.fpr, fpr)
    np.testing.assert_allclose(roc.tpr, tpr)
    np.testing.assert_array_equal(roc.thresholds, thr)
    assert np.trapezoid(roc.tpr, roc.fpr) == pytest.approx(auc(y, score), abs=1e-12)


def test_ties_everywhere():
    y = np.array([1, 0, 1, 0, 0])
    flat = np.full(5, 0.3)
    assert auc(y, flat) == 0.5
    roc = roc_curve_points(y, flat)
    np.testing.assert_array_equal(roc.fpr, [0, 1])
    np.testing.assert_array_equal(roc.tpr, [0, 1])
    result = delong_test(y, flat, flat)
    assert (result.z, result.p_value, result.se) == (0.0, 1.0, 0.0)
    assert concordance_index([1, 2, 3, 4], [1, 1, 0, 1], [2, 2, 2, 2]) == 0.5


def test_labels_may_be_bool_or_float():
    assert auc(Y5.astype(bool), S5) == auc(Y5.astype(float), S5) == auc(Y5, S5)


# --- input checks --------------------------------------------------------------------------------
def test_single_class_raises_named_error():
    with pytest.raises(NoPositivesError, match="no positives"):
        auc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(NoNegativesError, match="no negatives"):
        auc_with_ci([1, 1], [0.1, 0.2], [1, 2])
    with pytest.raises(SingleClassError):
        roc_curve_points([1, 1], [0.1, 0.2])
    with pytest.raises(NoPositivesError):
        auc([], [])


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: auc([1, 0, 1], [0.1, 0.2]), InputShapeError, "differ in length"),
        (lambda: auc([[1, 0]], [[0.1, 0.2]]), InputShapeError, "1-D"),
        (lambda: auc([1, 0], [0.1, np.nan]), NonFiniteError, "non-finite"),
        (lambda: auc([1, 0], [np.inf, 0.2]), NonFiniteError, "non-finite"),
        (lambda: auc([1, 2], [0.1, 0.2]), NotBinaryError, "only 0 and 1"),
        (lambda: auc(["a", "b"], [0.1, 0.2]), NotBinaryError, "numeric"),
        (lambda: brier_score([1, 0], [1.2, 0.1]), ProbabilityRangeError, r"\[0, 1\]"),
        (lambda: calibration_curve([1, 0], [0.5, -0.1]), ProbabilityRangeError, "outside"),
        (lambda: auc_with_ci([1, 0], [0.5, 0.1], [1]), InputShapeError, "groups has 1"),
        (lambda: auc_with_ci([1, 0], [0.5, 0.1], [1, None]), MetricInputError, "missing patient"),
        (lambda: auc_with_ci([1, 0], [0.5, 0.1], [1, np.nan]), MetricInputError, "missing patient"),
        (lambda: auc_with_ci([1, 0], [0.5, 0.1], [1, 2], level=1.5), MetricInputError, "level"),
        (lambda: auc_with_ci([1, 0], [0.5, 0.1], [1, 2], n_boot=0), MetricInputError, "n_boot"),
        (lambda: decision_curve([1, 0], [0.5, 0.1], [0.0, 0.5]), MetricInputError, "strictly"),
        (lambda: delong_test([1, 0, 0], [1, 2, 3], [3, 2, 1]), MetricInputError, "at least 2"),
    ],
)
def test_bad_inputs_raise_named_errors(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_metric_errors_share_the_base_class():
    for cls in (NoPositivesError, NonFiniteError, CalibrationFitError, NoComparablePairsError):
        assert issubclass(cls, MetricInputError)


# --- DeLong --------------------------------------------------------------------------------------
def test_delong_golden_small_cohort():
    # By hand (DeLong 1988 formulas), 3 positives and 2 negatives:
    #   a = S5: V10 = (1, 1, 1/2), V01 = (2/3, 1), AUC 5/6
    #   b:      V10 = (1, 1/2, 1/2), V01 = (1/3, 1), AUC 2/3
    #   S10: var_a = var_b = 1/12, cov = 1/24 -> (1/12 + 1/12 - 1/12) / 3 = 1/36
    #   S01: var_a = 1/18, var_b = 2/9, cov = 1/9 -> (1/18 + 2/9 - 2/9) / 2 = 1/36
    #   var(diff) = 1/18, diff = 1/6, z = (1/6) * sqrt(18) = 1/sqrt(2)
    b = np.array([0.9, 0.3, 0.4, 0.5, 0.1])
    result = delong_test(Y5, S5, b)
    assert result.auc_a == pytest.approx(5 / 6)
    assert result.auc_b == pytest.approx(2 / 3)
    assert result.auc_diff == pytest.approx(1 / 6)
    assert result.se == pytest.approx(math.sqrt(1 / 18))
    assert result.z == pytest.approx(1 / math.sqrt(2))
    assert result.p_value == pytest.approx(2 * stats.norm.sf(1 / math.sqrt(2)))
    assert (result.n, result.n_events) == (5, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_fast_components_match_slow_double_loop(seed):
    rng = np.random.default_rng(seed)
    y, a = random_tied(rng, n=120)
    b = np.round(a + rng.normal(0, 1.0, len(a)), 1)
    comp = _delong_components(y.astype(np.int8), np.vstack([a, b]))
    for row, score in enumerate((a, b)):
        v10, v01 = slow_delong_components(y, score)
        np.testing.assert_allclose(comp.v_pos[row], v10, atol=1e-12)
        np.testing.assert_allclose(comp.v_neg[row], v01, atol=1e-12)
        assert comp.aucs[row] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    z, p = slow_delong(y, a, b)
    result = delong_test(y, a, b)
    assert result.z == pytest.approx(z, rel=1e-9)
    assert result.p_value == pytest.approx(p, rel=1e-9)


def test_delong_identical_scores_is_no_difference():
    y, score = random_tied(np.random.default_rng(4))
    result = delong_test(y, score, score.copy())
    assert (result.auc_diff, result.se, result.z, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    # a monotone transform leaves every rank, hence every component, unchanged
    result = delong_test(y, score, np.exp(score))
    assert (result.z, result.p_value) == (0.0, 1.0)


def test_delong_zero_se_with_a_difference():
    # a ranks perfectly (every component 1), b perfectly backwards (every component 0): se = 0
    y = np.array([1, 1, 0, 0])
    result = delong_test(y, [4, 3, 2, 1], [1, 2, 3, 4])
    assert (result.auc_diff, result.se, result.z, result.p_value) == (1.0, 0.0, np.inf, 0.0)


# --- patient-level bootstrap ---------------------------------------------------------------------
def test_bootstrap_fast_matches_explicit_resampling_with_sklearn():
    rng = np.random.default_rng(5)
    y, score, groups, _ = clustered_cohort(rng, n_patients=40)
    score = np.round(score, 1)  # ties
    groups = np.array([f"P{g:03d}" for g in groups])  # string ids work too
    slow = slow_cluster_bootstrap(y, score, groups, n_boot=300, seed=11)
    fast = auc_with_ci(y, score, groups, n_boot=300, seed=11)
    assert fast.n_boot_used == len(slow)
    assert fast.n_boot_dropped == 300 - len(slow)
    assert fast.ci_low == pytest.approx(np.quantile(slow, 0.025), abs=1e-12)
    assert fast.ci_high == pytest.approx(np.quantile(slow, 0.975), abs=1e-12)
    assert fast.auc == pytest.approx(roc_auc_score(y, score))
    assert (fast.n, fast.n_events, fast.n_groups) == (len(y), int(y.sum()), 40)


def test_bootstrap_is_deterministic_and_takes_a_generator():
    y, score, groups, _ = clustered_cohort(np.random.default_rng(6))
    assert auc_with_ci(y, score, groups, n_boot=200, seed=3) == auc_with_ci(
        y, score, groups, n_boot=200, seed=3
    )
    from_gen = auc_with_ci(y, score, groups, n_boot=200, seed=np.random.default_rng(3))
    assert from_gen == auc_with_ci(y, score, groups, n_boot=200, seed=3)


def test_bootstrap_single_patient_gives_no_ci():
    # one patient whose earlier scans are negative and later ones positive at this horizon
    result = auc_with_ci([0, 0, 1, 1], [0.1, 0.3, 0.2, 0.6], ["P1"] * 4)
    assert result.auc == pytest.approx(0.75)  # by hand: pairs (.2,.1)=1 (.2,.3)=0 (.6,.1) (.6,.3)
    assert (result.ci_low, result.ci_high) == (None, None)
    assert (result.n_groups, result.n_boot_used) == (1, 0)
    diff = paired_bootstrap_auc_difference([0, 0, 1, 1], [1, 2, 3, 4], [4, 3, 2, 1], [7] * 4)
    assert (diff.ci_low, diff.ci_high, diff.p_value, diff.n_groups) == (None, None, None, 1)
    assert diff.diff == 1.0


def test_bootstrap_drops_and_counts_single_class_resamples():
    # patient A holds all positives, B all negatives: a resample drawing A twice or B twice
    # (probability 1/2) has one class only; every usable resample gives AUC 1.
    result = auc_with_ci([1, 1, 0, 0, 0], [5, 4, 3, 2, 1], ["A", "A", "B", "B", "B"], n_boot=400)
    assert result.n_boot_used + result.n_boot_dropped == 400
    assert 120 < result.n_boot_dropped < 280  # Binomial(400, 1/2): mean 200, sd 10
    assert (result.ci_low, result.ci_high) == (1.0, 1.0)


def test_paired_bootstrap_matches_explicit_resampling():
    rng = np.random.default_rng(8)
    y, a, groups, _ = clustered_cohort(rng, n_patients=50)
    b = a + rng.normal(0, 1.5, len(a))
    slow_a = slow_cluster_bootstrap(y, a, groups, 250, 2)
    slow = slow_a - slow_cluster_bootstrap(y, b, groups, 250, 2)
    fast = paired_bootstrap_auc_difference(y, a, b, groups, n_boot=250, seed=2)
    assert fast.diff == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert fast.ci_low == pytest.approx(np.quantile(slow, 0.025), abs=1e-12)
    assert fast.ci_high == pytest.approx(np.quantile(slow, 0.975), abs=1e-12)
    expected_p = min(1.0, 2 * min(np.mean(slow <= 0), np.mean(slow >= 0)))
    assert fast.p_value == pytest.approx(expected_p)


def test_paired_bootstrap_identical_scores():
    y, score, groups, _ = clustered_cohort(np.random.default_rng(9))
    result = paired_bootstrap_auc_difference(y, score, score, groups, n_boot=200)
    assert (result.diff, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def _coverage(n_reps: int, seed: int, groups_as_scans: bool = False) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_reps):
        y, score, groups, true_auc = clustered_cohort(rng, n_patients=100)
        if groups_as_scans:
            groups = np.arange(len(y))
        result = auc_with_ci(y, score, groups, n_boot=500, seed=rng)
        hits += result.ci_low <= true_auc <= result.ci_high
    return hits / n_reps


def test_bootstrap_coverage_200_replications_and_scan_level_undercovers():
    # 200 replications, Monte-Carlo sd 0.015: accept [0.88, 0.99]. Resampling scans as if
    # independent ignores the shared patient effect and must cover clearly less often.
    coverage = _coverage(200, seed=7)
    assert 0.88 <= coverage <= 0.99
    assert _coverage(200, seed=7, groups_as_scans=True) < coverage - 0.05


# --- calibration, Brier, decision curve ----------------------------------------------------------
def test_calibration_curve_matches_sklearn_quantile_bins():
    rng = np.random.default_rng(10)
    prob = np.round(rng.beta(2, 5, 500), 2)  # ties, some on bin edges
    y = (rng.random(500) < prob).astype(int)
    curve = calibration_curve(y, prob, n_bins=10)
    observed, predicted = sk_calibration_curve(y, prob, n_bins=10, strategy="quantile")
    np.testing.assert_allclose(curve.observed_fraction, observed)
    np.testing.assert_allclose(curve.mean_predicted, predicted)
    assert curve.count.sum() == 500
    assert np.all(curve.bin_low <= curve.mean_predicted)
    assert np.all(curve.mean_predicted <= curve.bin_high)


def test_calibration_curve_golden():
    # by hand: quantile edges of 0.1..0.4 with 2 bins are [0.1, 0.25, 0.4]
    curve = calibration_curve([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], n_bins=2)
    np.testing.assert_allclose(curve.mean_predicted, [0.15, 0.35])
    np.testing.assert_allclose(curve.observed_fraction, [0.5, 0.5])
    np.testing.assert_array_equal(curve.count, [2, 2])


def test_calibration_slope_golden_two_groups():
    # Two prediction levels make the two-parameter fit saturated, so it passes through the
    # observed log-odds: logit(0.3) = a + b logit(0.2), logit(0.6) = a + b logit(0.6), giving
    # b = (logit .6 - logit .3) / (logit .6 - logit .2) = 1.252763 / 1.791759 = 0.699179.
    prob = np.repeat([0.2, 0.6], 10)
    y = np.r_[np.repeat([1, 0], [3, 7]), np.repeat([1, 0], [6, 4])]
    result = calibration_intercept_slope(y, prob)
    logit = stats.logistic.ppf
    b = (logit(0.6) - logit(0.3)) / (logit(0.6) - logit(0.2))
    assert result.slope == pytest.approx(b, abs=1e-8)
    assert result.slope_intercept == pytest.approx(logit(0.6) * (1 - b), abs=1e-8)
    # intercept: the score equation of the offset model, sum of fitted risks = events (9)
    fitted = stats.logistic.cdf(result.intercept + logit(prob))
    assert fitted.sum() == pytest.approx(9, abs=1e-8)
    assert (result.n, result.n_events) == (20, 9)


def test_calibration_perfect_and_overconfident():
    # y ~ Bernoulli(p) with logit(p) ~ N(-1, 1), n = 20,000. Large-sample SEs are about
    # 1 / sqrt(n var(logit p) mean p(1-p)) ~ 0.018 for the slope and ~ 0.018 for the intercept;
    # the tolerances are 4 SE. Seeded, so the test is deterministic.
    rng = np.random.default_rng(11)
    lp = rng.normal(-1.0, 1.0, 20_000)
    prob = stats.logistic.cdf(lp)
    y = (rng.random(lp.size) < prob).astype(int)
    result = calibration_intercept_slope(y, prob)
    assert result.slope == pytest.approx(1.0, abs=0.075)
    assert result.intercept == pytest.approx(0.0, abs=0.075)
    # over-confident: logits doubled -> the recalibration slope halves
    overconfident = calibration_intercept_slope(y, stats.logistic.cdf(2 * lp))
    assert overconfident.slope == pytest.approx(0.5, abs=0.04)
    # under-confident: logits halved -> slope about 2
    assert calibration_intercept_slope(y, stats.logistic.cdf(lp / 2)).slope > 1.5


def test_calibration_clips_certain_predictions():
    result = calibration_intercept_slope([0, 1, 0, 1, 1], [0.0, 0.4, 0.3, 1.0, 0.2])
    assert np.isfinite(result.slope) and np.isfinite(result.intercept)


def test_calibration_fit_errors():
    with pytest.raises(CalibrationFitError, match="separated"):
        calibration_intercept_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    with pytest.raises(CalibrationFitError, match="all predicted probabilities are equal"):
        calibration_intercept_slope([0, 1, 0], [0.3, 0.3, 0.3])
    with pytest.raises(NoPositivesError):
        calibration_intercept_slope([0, 0, 0], [0.1, 0.2, 0.3])


def test_brier_matches_sklearn():
    rng = np.random.default_rng(12)
    prob = rng.random(300)
    y = (rng.random(300) < prob).astype(int)
    assert brier_score(y, prob) == pytest.approx(brier_score_loss(y, prob), abs=1e-12)
    # by hand: ((0.9-1)^2 + (0.2-0)^2) / 2 = (0.01 + 0.04) / 2
    assert brier_score([1, 0], [0.9, 0.2]) == pytest.approx(0.025)
    assert brier_score([1, 1], [1.0, 1.0]) == 0.0  # one class is fine for Brier


def test_decision_curve_golden():
    # by hand: at t = 0.25 we treat p >= 0.25, i.e. 0.9(+) 0.3(+) 0.4(-): TP 2, FP 1, n 5
    #   model     2/5 - 1/5 * (0.25 / 0.75) = 1/3
    #   treat all prevalence 2/5: 2/5 - 3/5 * 1/3 = 1/5
    # at t = 0.3 the 0.3 prediction is still treated (>=): 2/5 - 1/5 * 3/7 = 11/35
    curve = decision_curve([1, 1, 0, 0, 0], [0.9, 0.3, 0.4, 0.1, 0.2], [0.25, 0.3])
    np.testing.assert_allclose(curve.net_benefit_model, [1 / 3, 11 / 35])
    np.testing.assert_allclose(curve.net_benefit_treat_all, [1 / 5, 2 / 5 - 3 / 5 * 3 / 7])
    np.testing.assert_array_equal(curve.net_benefit_treat_none, [0.0, 0.0])
    assert curve.prevalence == pytest.approx(0.4)


def test_decision_curve_matches_slow_loop_on_default_thresholds():
    rng = np.random.default_rng(13)
    prob = np.round(rng.beta(1, 4, 400), 2)
    y = (rng.random(400) < prob).astype(int)
    curve = decision_curve(y, prob)
    assert curve.thresholds.shape == (99,)
    expected = [slow_net_benefit(y, prob, t) for t in curve.thresholds]
    np.testing.assert_allclose(curve.net_benefit_model, expected, atol=1e-12)


# --- survival: Harrell's C and time-dependent AUC ------------------------------------------------
def test_concordance_golden_with_tied_time_and_censoring():
    # by hand: comparable pairs (i died first; a censoring at the same time outlives a death)
    #   i=0 (t1): vs 1,2,3,4 -> 0.8 beats 0.4, 0.6, 0.5, 0.2: 4 pairs, 4 concordant
    #   i=1 (t2): vs 2 (censored at t2), 3, 4 -> 0.4 vs 0.6 no, 0.5 no, 0.2 yes: 3 pairs, 1
    #   i=3 (t3): vs 4 -> 0.5 beats 0.2: 1 pair, 1        => C = 6 / 8
    time_ = [1, 2, 2, 3, 4]
    event = [1, 1, 0, 1, 0]
    risk = [0.8, 0.4, 0.6, 0.5, 0.2]
    assert concordance_index(time_, event, risk) == pytest.approx(0.75)
    assert lifelines_cindex(time_, -np.array(risk), event) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_concordance_matches_lifelines_and_slow_loop(seed):
    time_, event, risk = survival_data(np.random.default_rng(seed))
    fast = concordance_index(time_, event, risk)
    assert fast == pytest.approx(lifelines_cindex(time_, -risk, event), abs=1e-12)
    assert fast == pytest.approx(slow_cindex(time_, event, risk), abs=1e-12)


def test_concordance_blocks_agree(monkeypatch):
    from sscmort_core.evaluation import survival

    time_, event, risk = survival_data(np.random.default_rng(3))
    whole = concordance_index(time_, event, risk)
    monkeypatch.setattr(survival, "_PAIR_BLOCK", 1000)  # several blocks of rows
    assert concordance_index(time_, event, risk) == whole


def test_concordance_without_comparable_pairs():
    with pytest.raises(NoComparablePairsError, match="no comparable pair"):
        concordance_index([1, 2, 3], [0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(NoComparablePairsError):
        concordance_index([2, 2], [1, 1], [0.1, 0.2])  # two deaths at one time


def test_censoring_km_matches_sksurv_reverse_km_and_slow_loop():
    # grid times: deaths tie with censorings; sksurv's reverse KM also takes deaths first
    time_, event, _ = survival_data(np.random.default_rng(4))
    km_times, km_g = kaplan_meier_estimator(event.astype(bool), time_, reverse=True)
    at = np.unique(time_)
    left = np.r_[1.0, km_g][np.searchsorted(km_times, at, side="left")]  # product over s < at
    np.testing.assert_allclose(censoring_survival_left(time_, event, at), left, atol=1e-12)
    for t in at[::7]:
        assert censoring_survival_left(time_, event, np.array([t]))[0] == pytest.approx(
            slow_censoring_km_left(time_, event, t), abs=1e-12)


def test_censoring_km_matches_lifelines_when_no_death_ties_a_censoring():
    rng = np.random.default_rng(4)
    time_, event, _ = survival_data(rng)
    time_ = time_ + np.where(event == 1, 0.0, 0.1)  # censorings off the deaths' grid
    kmf = KaplanMeierFitter().fit(time_, 1 - event)  # censorings are the events of G
    at = np.unique(time_)
    left_limits = kmf.survival_function_at_times(np.nextafter(at, -np.inf)).to_numpy()
    np.testing.assert_allclose(censoring_survival_left(time_, event, at), left_limits, atol=1e-12)


def test_censoring_km_golden_deaths_first_at_a_tie():
    # by hand: times 1 2 2 3 4 5, the death and the censoring at 2 tie. Deaths first: at 2 the
    # risk set of censoring is {censored at 2} + {time > 2} = 4 -> G = 3/4 after 2 (lifelines'
    # reverse KM keeps the death: 5 at risk, 4/5); at 4: 1 + 1 = 2 -> 3/8; at 5: 1 -> 0.
    time_ = np.array([1, 2, 2, 3, 4, 5.0])
    event = np.array([1, 1, 0, 1, 0, 0])
    at = np.array([1, 2, 2.5, 4, 4.5, 5, 6.0])
    np.testing.assert_allclose(censoring_survival_left(time_, event, at),
                               [1, 1, 3 / 4, 3 / 4, 3 / 8, 3 / 8, 0])


def test_time_dependent_auc_golden():
    # by hand, horizon 3.5: cases t1 (risk .9) and t3 (risk .4); controls t4 (.5), t5 (.2);
    # the scan censored at t2 enters only through G: at t2, 4 at risk, 1 censored -> G = 3/4.
    # Weights 1/G(t-): case t1 -> 1, case t3 -> 4/3. Concordant: t1 beats both controls (2),
    # t3 beats .2 only (1). AUC = (1*2 + 4/3*1) / ((1 + 4/3) * 2) = (10/3) / (14/3) = 5/7.
    time_ = [1, 2, 3, 4, 5]
    event = [1, 0, 1, 0, 1]
    risk = [0.9, 0.1, 0.4, 0.5, 0.2]
    assert time_dependent_auc(time_, event, risk, 3.5) == pytest.approx(5 / 7)
    assert slow_td_auc(time_, event, risk, 3.5) == pytest.approx(5 / 7)


@pytest.mark.parametrize(("seed", "horizon"), [(0, 1.0), (1, 3.0), (2, 5.0), (3, 2.25)])
def test_time_dependent_auc_matches_slow_loop(seed, horizon):
    time_, event, risk = survival_data(np.random.default_rng(seed), n=150)
    assert time_dependent_auc(time_, event, risk, horizon) == pytest.approx(
        slow_td_auc(time_, event, risk, horizon), abs=1e-12
    )


def test_time_dependent_auc_without_censoring_is_plain_auc():
    rng = np.random.default_rng(5)
    time_, _, risk = survival_data(rng)
    event = np.ones_like(time_, dtype=int)  # every death observed
    for horizon in (1.0, 2.5, 4.0):
        died = (time_ <= horizon).astype(int)
        assert time_dependent_auc(time_, event, risk, horizon) == pytest.approx(auc(died, risk))
    # censoring only after the horizon leaves G = 1 up to it: still the plain AUC
    event = (time_ <= 3.0).astype(int)
    died = (time_ <= 2.0).astype(int)
    assert time_dependent_auc(time_, event, risk, 2.0) == pytest.approx(auc(died, risk))


def test_time_dependent_auc_errors_name_the_horizon():
    with pytest.raises(NoPositivesError, match="no positives at horizon 1"):
        time_dependent_auc([2, 3, 4], [1, 1, 0], [0.1, 0.2, 0.3], 1)
    with pytest.raises(NoNegativesError, match="horizon 5"):
        time_dependent_auc([2, 3, 4], [1, 1, 0], [0.1, 0.2, 0.3], 5)
    with pytest.raises(NonFiniteError, match="horizon"):
        time_dependent_auc([2, 3, 4], [1, 1, 0], [0.1, 0.2, 0.3], np.nan)


# --- paired comparison and helpers --------------------------------------------------------------
def _cohort_with_survival(seed: int, horizon: float = 3.0):
    rng = np.random.default_rng(seed)
    time_, event, risk = survival_data(rng, n=400)
    groups = np.arange(400) // 3
    prob = stats.logistic.cdf(risk - 0.5)
    died = event.astype(bool) & (time_ <= horizon)
    y = np.where(died, 1.0, np.where(time_ > horizon, 0.0, np.nan))  # NaN: censored
    return y, prob, groups, time_, event


def test_compare_models_refuses_bad_labels_and_scores():
    y, prob, groups, _, _ = _cohort_with_survival(1)
    other = np.clip(prob + 0.05, 0, 1)
    with pytest.raises(NotBinaryError, match="0, 1 or NaN"):
        compare_models(np.where(np.isnan(y), 2.0, y), prob, other, groups, n_boot=50)
    with pytest.raises(NoPositivesError, match="no positives"):
        compare_models(np.where(y == 1, np.nan, y), prob, other, groups, n_boot=50)


def test_auc_or_none_is_none_only_without_both_classes():
    assert auc_or_none([0, 0, 0], [0.1, 0.2, 0.3]) is None
    assert auc_or_none([1, 1], [0.1, 0.2]) is None
    assert auc_or_none(Y5, S5) == auc(Y5, S5)


def test_compare_models_agrees_with_its_parts():
    y, prob, groups, _, _ = _cohort_with_survival(2)
    other = stats.logistic.cdf(stats.logistic.ppf(prob) + np.random.default_rng(0).normal(size=400))
    result = compare_models(y, prob, other, groups, n_boot=300, seed=4)
    keep = ~np.isnan(y)
    assert result.delong == delong_test(y[keep], prob[keep], other[keep])
    assert result.bootstrap == paired_bootstrap_auc_difference(
        y[keep], prob[keep], other[keep], groups[keep], n_boot=300, seed=4
    )
    assert result.delong.auc_diff == pytest.approx(result.bootstrap.diff)


# --- result types and the module boundary ------------------------------------------------------
def test_results_are_frozen_with_read_only_arrays():
    roc = roc_curve_points(Y5, S5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        roc.fpr = np.zeros(2)  # type: ignore[misc]
    with pytest.raises(ValueError):
        roc.fpr[0] = 1.0
    result = auc_with_ci(Y5, S5, [1, 1, 2, 3, 3], n_boot=50)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.auc = 0.0  # type: ignore[misc]


def test_evaluation_never_imports_streamlit():
    package = Path(__file__).resolve().parents[2] / "sscmort_core" / "evaluation"
    for source in package.glob("*.py"):
        assert "streamlit" not in source.read_text(), source.name
