"""Clustered DeLong test (Obuchowski 1997): reduction to DeLong, a slow loop, and (slow) its
variance against the patient bootstrap's and its size under the null on clustered data."""

from __future__ import annotations

import numpy as np
import pytest

from sscmort_core.errors import MetricInputError
from sscmort_core.evaluation import (
    auc,
    clustered_delong_test,
    compare_models,
    delong_test,
    paired_bootstrap_auc_difference,
)
from tests.evaluation.slow_reference import psi


def clustered_pair(rng, n_patients=60, sd_patient=1.0, shift_b=0.0):
    """Patients with 1-6 scans, outcome per scan (patient propensity), two scores sharing
    the patient effect; ``shift_b`` lowers model b's signal."""
    k = rng.integers(1, 7, n_patients)
    groups = np.repeat(np.arange(n_patients), k)
    u = rng.normal(0, sd_patient, n_patients)[groups]
    y = (rng.random(len(groups)) < 1 / (1 + np.exp(-(u - 0.5)))).astype(int)
    a = y + u + rng.normal(0, 1, len(groups))
    b = (1 - shift_b) * y + u + rng.normal(0, 1, len(groups))
    return y, a, b, groups


def slow_obuchowski_var(y, groups, kernel):
    """Obuchowski (1997) variance of the statistic with pair kernel ``kernel(i, j)`` (psi of
    one score, or the difference of two models' psi) by explicit loops over patients."""
    pos = [i for i in range(len(y)) if y[i] == 1]
    neg = [j for j in range(len(y)) if y[j] == 0]
    m, n = len(pos), len(neg)
    theta = sum(kernel(i, j) for i in pos for j in neg) / (m * n)
    pats = sorted(set(groups))
    v10 = {p: sum(sum(kernel(i, j) for j in neg) / n for i in pos if groups[i] == p)
           for p in pats}
    v01 = {p: sum(sum(kernel(i, j) for i in pos) / m for j in neg if groups[j] == p)
           for p in pats}
    m_i = {p: sum(1 for i in pos if groups[i] == p) for p in pats}
    n_i = {p: sum(1 for j in neg if groups[j] == p) for p in pats}
    i10 = sum(1 for p in pats if m_i[p] > 0)
    i01 = sum(1 for p in pats if n_i[p] > 0)
    big_i = len(pats)
    s10 = i10 / ((i10 - 1) * m) * sum((v10[p] - m_i[p] * theta) ** 2 for p in pats)
    s01 = i01 / ((i01 - 1) * n) * sum((v01[p] - n_i[p] * theta) ** 2 for p in pats)
    s11 = big_i / (big_i - 1) * sum((v10[p] - m_i[p] * theta) * (v01[p] - n_i[p] * theta)
                                    for p in pats)
    return s10 / m + s01 / n + 2 * s11 / (m * n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_scan_per_patient_is_delong_exactly(seed):
    y, a, b, _ = clustered_pair(np.random.default_rng(seed))
    singles = np.arange(len(y))
    ours, plain = clustered_delong_test(y, a, b, singles), delong_test(y, a, b)
    assert ours.se == pytest.approx(plain.se, rel=1e-12)
    assert (ours.z, ours.p_value) == pytest.approx((plain.z, plain.p_value), rel=1e-12)
    assert ours.auc_diff == plain.auc_diff and ours.n_groups == len(y)


@pytest.mark.parametrize("seed", [3, 4])
def test_variances_match_the_slow_loop(seed):
    y, a, b, groups = clustered_pair(np.random.default_rng(seed), n_patients=30)
    a, b = np.round(a, 1), np.round(b, 1)  # ties in score
    result = clustered_delong_test(y, a, b, groups)
    assert result.se_a ** 2 == pytest.approx(
        slow_obuchowski_var(y, groups, lambda i, j: psi(a[i], a[j])), rel=1e-12)
    assert result.se_b ** 2 == pytest.approx(
        slow_obuchowski_var(y, groups, lambda i, j: psi(b[i], b[j])), rel=1e-12)
    # the AUC difference is the statistic of the kernel psi_a - psi_b
    assert result.se ** 2 == pytest.approx(slow_obuchowski_var(
        y, groups, lambda i, j: psi(a[i], a[j]) - psi(b[i], b[j])), rel=1e-12)
    assert (result.auc_a, result.auc_b) == pytest.approx((auc(y, a), auc(y, b)), abs=1e-12)
    swapped = clustered_delong_test(y, b, a, groups)
    assert swapped.z == pytest.approx(-result.z) and swapped.p_value == pytest.approx(
        result.p_value)


def test_identical_scores_and_too_few_patients():
    y, a, _, groups = clustered_pair(np.random.default_rng(5))
    same = clustered_delong_test(y, a, a, groups)
    assert (same.auc_diff, same.se, same.z, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    y2 = np.array([1, 1, 0, 0, 0])
    with pytest.raises(MetricInputError, match="2 patients with a positive"):
        clustered_delong_test(y2, [0.9, 0.8, 0.1, 0.2, 0.3], [0.5] * 5, ["A", "A", "B", "C", "D"])


def test_compare_models_carries_the_clustered_p_value_it_shows():
    y, a, b, groups = clustered_pair(np.random.default_rng(6), shift_b=0.5)
    result = compare_models(y.astype(float), a, b, groups, n_boot=200, seed=1)
    assert result.clustered == clustered_delong_test(y, a, b, groups)
    assert result.p_value == result.clustered.p_value
    assert result.p_value_method.startswith("clustered DeLong")
    # clustering widens the standard error relative to DeLong's independent-scans one
    assert result.clustered.se > result.delong.se


# --- slow: variance against the bootstrap, size under the null ---------------------------------
def patient_outcome_pair(rng, n_patients=60, shift_b=0.0):
    """Patients with 1-8 scans sharing one outcome; each model's score has its own
    patient-level noise besides the shared patient effect, so a patient's scans move both
    AUCs and their difference together (strong clustering of the difference)."""
    k = rng.integers(1, 9, n_patients)
    groups = np.repeat(np.arange(n_patients), k)
    u = rng.normal(0, 1.0, n_patients)
    y = (rng.random(n_patients) < 1 / (1 + np.exp(-(u - 0.5))))[groups].astype(int)
    a = y + u[groups] + rng.normal(0, 1, n_patients)[groups] + rng.normal(0, 1, len(groups))
    b = ((1 - shift_b) * y + u[groups] + rng.normal(0, 1, n_patients)[groups]
         + rng.normal(0, 1, len(groups)))
    return y, a, b, groups


@pytest.mark.slow
def test_clustered_variance_agrees_with_bootstrap_and_replication_variance():
    """400 replications of 60 clustered patients: the mean Obuchowski variance of the AUC
    difference and the mean patient-bootstrap variance (from the CI width) agree with the
    variance of the difference over replications (Monte-Carlo sd of that variance about 7%:
    accept 20%); DeLong's, counting scans as independent, is less than half of it."""
    rng = np.random.default_rng(21)
    diffs, obu, boot, plain = [], [], [], []
    for _ in range(400):
        y, a, b, groups = patient_outcome_pair(rng, shift_b=0.3)
        c = clustered_delong_test(y, a, b, groups)
        bs = paired_bootstrap_auc_difference(y, a, b, groups, n_boot=300, seed=rng)
        diffs.append(c.auc_diff)
        obu.append(c.se ** 2)
        boot.append(((bs.ci_high - bs.ci_low) / (2 * 1.959964)) ** 2)
        plain.append(delong_test(y, a, b).se ** 2)
    empirical = np.var(diffs, ddof=1)
    assert np.mean(obu) == pytest.approx(empirical, rel=0.2)
    assert np.mean(boot) == pytest.approx(np.mean(obu), rel=0.2)
    assert np.mean(plain) < 0.5 * empirical


@pytest.mark.slow
def test_clustered_delong_holds_its_size_where_delong_does_not():
    """Under the null (both models with the same signal), 400 replications: the clustered
    test rejects at 5% about 5% of the time (Monte-Carlo sd 1.1%: accept 2.5-8%); DeLong,
    counting scans as independent, far more often."""
    rng = np.random.default_rng(22)
    rej_c = rej_d = 0
    n_reps = 400
    for _ in range(n_reps):
        y, a, b, groups = patient_outcome_pair(rng)
        rej_c += clustered_delong_test(y, a, b, groups).p_value < 0.05
        rej_d += delong_test(y, a, b).p_value < 0.05
    assert 0.025 <= rej_c / n_reps <= 0.08
    assert rej_d / n_reps > 0.15
