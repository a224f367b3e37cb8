"""The patient bootstrap of every metric: the batch fast path against explicit resampling.

Per scan, a resample is checked against the public metric on the expanded scans (each drawn
patient's scans repeated by its multiplicity, censoring distribution re-estimated on them);
per patient, against weighted double loops (tests/evaluation/slow_reference.py). Same
resamples (``cluster_counts`` with the same seed), equal to 1e-12 (the recalibration fits
included: both paths iterate Newton to a step below 1e-10, which leaves rounding only).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sscmort_core.errors import InputShapeError, MetricInputError
from sscmort_core.evaluation import (
    PER_PATIENT,
    PER_SCAN,
    auc,
    auc_metric,
    auc_with_ci,
    bootstrap_cis,
    bootstrap_values,
    brier_metric,
    brier_score,
    calibration_intercept_slope,
    calibration_metric,
    cluster_counts,
    concordance_index,
    harrell_c_metric,
    ipcw_brier,
    ipcw_brier_metric,
    ipcw_calibration_intercept_slope,
    ipcw_calibration_metric,
    metric_with_ci,
    observed_expected,
    observed_expected_metric,
    paired_bootstrap_difference,
    patient_clusters,
    td_auc_metric,
    time_dependent_auc,
    uno_c,
    uno_c_metric,
)
from tests.evaluation import slow_reference as slow

H = 2.0  # horizon of the horizon metrics (years)


def clustered_survival(rng, n_patients=40, grid=True):
    """Patients with 1-5 scans. Scan risk = patient effect + noise; a patient's scans share
    one uniform U in T = -log(U) / hazard (strongly correlated within the patient, each scan
    exponential given its risk) and one censoring time. On a 0.25 grid (grid=True) deaths tie
    with deaths and with censorings; risks rounded to 0.1 tie too."""
    k = rng.integers(1, 6, n_patients)
    groups = np.repeat(np.arange(n_patients), k)
    score = rng.normal(0, 1, n_patients)[groups] + rng.normal(0, 0.5, len(groups))
    death = -np.log(rng.random(n_patients))[groups] / (0.2 * np.exp(0.8 * score))
    censor = rng.uniform(0.5, 6.0, n_patients)[groups]
    time_, event = np.minimum(death, censor), (death <= censor).astype(int)
    if grid:
        time_, score = np.ceil(time_ * 4) / 4, np.round(score, 1)
    prob = 1 - np.exp(-0.2 * np.exp(0.8 * score) * H)
    return time_, event, score, prob, groups


def labelled_at(time_, event, horizon):
    known = (time_ > horizon) | (event == 1)
    return known, ((time_ <= horizon) & (event == 1))[known].astype(int)


def _nan_on_error(fn):
    try:
        return fn()
    except MetricInputError:
        return math.nan


# Each case: (name, batch metric factory, public point function on expanded scans).
def _cases(time_, event, score, prob, groups, estimand):
    known, y = labelled_at(time_, event, H)
    all_c = patient_clusters(groups, estimand)
    lab_c = all_c.subset(known)
    s, p = score[known], prob[known]
    return [
        ("auc", lambda: auc_metric(y, s, lab_c), lambda i: auc(y[i], s[i]), known),
        ("brier", lambda: brier_metric(y, p, lab_c), lambda i: brier_score(y[i], p[i]), known),
        ("calibration_intercept", lambda: calibration_metric(y, p, lab_c, "intercept"),
         lambda i: calibration_intercept_slope(y[i], p[i]).intercept, known),
        ("calibration_slope", lambda: calibration_metric(y, p, lab_c, "slope"),
         lambda i: calibration_intercept_slope(y[i], p[i]).slope, known),
        ("c_index", lambda: harrell_c_metric(time_, event, score, all_c),
         lambda i: concordance_index(time_[i], event[i], score[i]), None),
        ("harrell_c", lambda: harrell_c_metric(time_, event, score, all_c, tau=H),
         lambda i: concordance_index(time_[i], event[i], score[i], tau=H), None),
        ("uno_c", lambda: uno_c_metric(time_, event, score, H, all_c),
         lambda i: uno_c(time_[i], event[i], score[i], H), None),
        ("td_auc", lambda: td_auc_metric(time_, event, score, H, all_c),
         lambda i: time_dependent_auc(time_[i], event[i], score[i], H), None),
        ("ipcw_brier", lambda: ipcw_brier_metric(time_, event, prob, H, all_c),
         lambda i: ipcw_brier(time_[i], event[i], prob[i], H), None),
        ("calibration_oe", lambda: observed_expected_metric(time_, event, prob, H, all_c),
         lambda i: observed_expected(time_[i], event[i], prob[i], H).ratio, None),
        ("ipcw_calibration_intercept",
         lambda: ipcw_calibration_metric(time_, event, prob, H, all_c, "intercept"),
         lambda i: ipcw_calibration_intercept_slope(time_[i], event[i], prob[i], H).intercept,
         None),
        ("ipcw_calibration_slope",
         lambda: ipcw_calibration_metric(time_, event, prob, H, all_c, "slope"),
         lambda i: ipcw_calibration_intercept_slope(time_[i], event[i], prob[i], H).slope, None),
    ]


CASE_NAMES = [c[0] for c in _cases(*clustered_survival(np.random.default_rng(0)), PER_SCAN)]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_point_estimate_of_the_batch_path_is_the_public_metric(name):
    data = clustered_survival(np.random.default_rng(1))
    (case,) = [c for c in _cases(*data, PER_SCAN) if c[0] == name]
    _, factory, public, known = case
    n = int(known.sum()) if known is not None else len(data[0])
    metric = factory()
    assert metric.name == name
    assert metric.point() == pytest.approx(public(np.arange(n)), abs=1e-12)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_fast_bootstrap_equals_explicit_resampling_per_scan(name):
    data = clustered_survival(np.random.default_rng(2))
    groups = data[4]
    (case,) = [c for c in _cases(*data, PER_SCAN) if c[0] == name]
    _, factory, public, known = case
    n_boot, seed = 40, 5
    fast = bootstrap_values([factory()], n_boot=n_boot, seed=seed)[0]
    codes = np.unique(groups, return_inverse=True)[1]
    codes = codes if known is None else codes[known]
    counts = cluster_counts(len(np.unique(groups)), n_boot, seed)
    expected = np.array([_nan_on_error(lambda: public(slow.expand(row, codes)))
                         for row in counts])
    assert np.isfinite(expected).sum() >= n_boot // 2
    np.testing.assert_allclose(fast, expected, atol=1e-12, equal_nan=True)


def _weighted_slow(name, data, w_all, known):
    time_, event, score, prob, _ = data
    _, y = labelled_at(time_, event, H)
    w_lab = w_all[known]
    s, p = score[known], prob[known]
    refs = {
        "auc": lambda: slow.weighted_auc(y, s, w_lab),
        "brier": lambda: slow.brier(y, p, w_lab),
        "calibration_intercept": lambda: slow.recalibration(y, p, w_lab, "intercept"),
        "calibration_slope": lambda: slow.recalibration(y, p, w_lab, "slope"),
        "c_index": lambda: slow.concordance(time_, event, score, w_all),
        "harrell_c": lambda: slow.concordance(time_, event, score, w_all, tau=H),
        "uno_c": lambda: slow.concordance(time_, event, score, w_all, tau=H, uno=True),
        "td_auc": lambda: slow.td_auc(time_, event, score, w_all, H),
        "ipcw_brier": lambda: slow.ipcw_brier(time_, event, prob, w_all, H),
        "calibration_oe": lambda: slow.observed_expected(time_, event, prob, w_all, H),
        "ipcw_calibration_intercept":
            lambda: slow.ipcw_recalibration(time_, event, prob, w_all, H, "intercept"),
        "ipcw_calibration_slope":
            lambda: slow.ipcw_recalibration(time_, event, prob, w_all, H, "slope"),
    }
    return refs[name]()


@pytest.mark.parametrize("name", CASE_NAMES)
def test_fast_bootstrap_equals_weighted_loops_per_patient(name):
    """Per patient, each of a patient's k scans (among those the metric uses) weighs 1/k."""
    data = clustered_survival(np.random.default_rng(3), n_patients=25)
    groups = data[4]
    (case,) = [c for c in _cases(*data, PER_PATIENT) if c[0] == name]
    known = labelled_at(data[0], data[1], H)[0]
    metric = case[1]()
    assert metric.clusters.estimand == PER_PATIENT
    n_boot, seed = 8, 6
    fast = bootstrap_values([metric], n_boot=n_boot, seed=seed)[0]
    subset = case[3] is not None
    k = np.bincount(groups[known] if subset else groups, minlength=25)
    counts = cluster_counts(25, n_boot, seed)
    for b, row in enumerate(counts):
        base = np.where(known, 1.0 / np.maximum(k[groups], 1), 0.0) if subset \
            else 1.0 / k[groups]
        w_all = base * row[groups]
        expected = _nan_on_error(lambda: _weighted_slow(name, data, w_all, known))
        assert fast[b] == pytest.approx(expected, abs=1e-12, nan_ok=True)


def test_per_patient_equals_per_scan_with_one_scan_each_and_differs_otherwise():
    time_, event, score, prob, groups = clustered_survival(np.random.default_rng(4))
    singles = np.arange(len(time_))
    for make in (lambda c: uno_c_metric(time_, event, score, H, c),
                 lambda c: ipcw_brier_metric(time_, event, prob, H, c)):
        per_scan = make(patient_clusters(singles)).point()
        assert make(patient_clusters(singles, PER_PATIENT)).point() == pytest.approx(
            per_scan, abs=1e-12)
        assert make(patient_clusters(groups, PER_PATIENT)).point() != pytest.approx(
            make(patient_clusters(groups)).point(), abs=1e-6)


def test_auc_metric_ci_is_auc_with_ci_on_the_same_resamples():
    time_, event, score, _, groups = clustered_survival(np.random.default_rng(5), 60)
    known, y = labelled_at(time_, event, H)
    for estimand in (PER_SCAN, PER_PATIENT):
        ref = auc_with_ci(y, score[known], groups[known], n_boot=300, seed=9, estimand=estimand)
        ci = metric_with_ci(auc_metric(y, score[known],
                                       patient_clusters(groups[known], estimand)),
                            n_boot=300, seed=9)
        assert ci.value == pytest.approx(ref.auc, abs=1e-12)
        assert (ci.ci_low, ci.ci_high) == pytest.approx((ref.ci_low, ref.ci_high), abs=1e-12)
        assert ci.n_boot_used == ref.n_boot_used and ci.estimand == ref.estimand == estimand
    assert auc_with_ci(y, score[known], groups[known], n_boot=10).estimand == PER_SCAN


def test_per_patient_auc_is_the_weighted_mann_whitney():
    # by hand: patient A has two positive scans (.9, .3), B one negative (.5), C two
    # negatives (.1, .95). Per scan, 6 pairs: .9 beats .5 and .1, .3 beats .1 -> 3/6.
    # Per patient A's and C's scans weigh 1/2, B's 1: numerator .5*1 (.9>.5) + .5*.5 (.9>.1)
    # + .5*.5 (.3>.1) = 1, denominator (.5 + .5) * (1 + .5 + .5) = 2 -> 1/2.
    y, s, g = [1, 1, 0, 0, 0], [0.9, 0.3, 0.5, 0.1, 0.95], ["A", "A", "B", "C", "C"]
    assert auc(y, s) == pytest.approx(3 / 6)
    assert auc_with_ci(y, s, g, n_boot=20, estimand=PER_PATIENT).auc == pytest.approx(1 / 2)
    # C's second negative at .2 instead: per scan 5/6; per patient .9 row .5 * (1 + .5 + .5)
    # + .3 row .5 * (0 + .5 + .5) = 1.5, over 2 -> 3/4
    s2 = [0.9, 0.3, 0.5, 0.1, 0.2]
    assert auc(y, s2) == pytest.approx(5 / 6)
    assert auc_with_ci(y, s2, g, n_boot=20, estimand=PER_PATIENT).auc == pytest.approx(3 / 4)


def test_bootstrap_cis_share_resamples_and_report_counts():
    time_, event, score, prob, groups = clustered_survival(np.random.default_rng(7), 80)
    c = patient_clusters(groups)
    uno, brier = uno_c_metric(time_, event, score, H, c), ipcw_brier_metric(time_, event,
                                                                           prob, H, c)
    joint = bootstrap_cis([uno, brier], n_boot=200, seed=3)
    assert joint == (metric_with_ci(uno, n_boot=200, seed=3),
                     metric_with_ci(brier, n_boot=200, seed=3))
    ci = joint[0]
    assert ci.ci_low < ci.value < ci.ci_high and ci.se_boot > 0
    assert (ci.n, ci.n_groups, ci.estimand) == (len(time_), 80, PER_SCAN)
    assert ci.n_events == int(((event == 1) & (time_ < H)).sum())
    assert ci.n_boot_used + ci.n_boot_dropped == 200
    assert bootstrap_cis([uno], n_boot=50, seed=np.random.default_rng(1)) == bootstrap_cis(
        [uno], n_boot=50, seed=np.random.default_rng(1))


def test_bootstrap_blocks_agree(monkeypatch):
    from sscmort_core.evaluation import batch, resampling

    time_, event, score, prob, groups = clustered_survival(np.random.default_rng(8))
    c = patient_clusters(groups)
    metrics = [uno_c_metric(time_, event, score, H, c), td_auc_metric(time_, event, score, H, c)]
    whole = bootstrap_values(metrics, n_boot=100, seed=1)
    monkeypatch.setattr(resampling, "_BLOCK_ELEMENTS", 500)  # blocks of 16 resamples
    monkeypatch.setattr(batch, "_PAIR_BLOCK", 300)  # pair matrices built a few rows at a time
    metrics = [uno_c_metric(time_, event, score, H, c), td_auc_metric(time_, event, score, H, c)]
    np.testing.assert_allclose(bootstrap_values(metrics, n_boot=100, seed=1), whole, atol=1e-13)


def test_single_patient_has_no_ci_and_other_patients_are_refused():
    time_, event, score, prob, groups = clustered_survival(np.random.default_rng(9))
    one = uno_c_metric(time_, event, score, H, patient_clusters(np.zeros(len(time_))))
    ci = metric_with_ci(one, n_boot=50)
    assert ci.ci_low is None and ci.se_boot is None and ci.n_groups == 1
    assert ci.value == pytest.approx(uno_c(time_, event, score, H))
    other = uno_c_metric(time_, event, score, H, patient_clusters(groups))
    with pytest.raises(MetricInputError, match="other patients"):
        bootstrap_cis([one, other], n_boot=10)
    with pytest.raises(InputShapeError, match="clusters describe"):
        uno_c_metric(time_[:-1], event[:-1], score[:-1], H, patient_clusters(groups))
    with pytest.raises(MetricInputError, match="estimand"):
        patient_clusters(groups, "per visit")


def test_resamples_without_a_death_are_dropped_and_counted():
    # 2 of 12 patients hold the deaths before the horizon: some resamples draw neither
    time_ = np.r_[np.full(10, 5.0), [1.0, 1.5]]
    event = np.r_[np.zeros(10, int), [1, 1]]
    score = np.linspace(0, 1, 12)
    ci = metric_with_ci(uno_c_metric(time_, event, score, H, patient_clusters(np.arange(12))),
                        n_boot=400, seed=0)
    p_none = (10 / 12) ** 12  # a resample draws neither death
    assert ci.n_boot_dropped > 0 and ci.n_boot_used + ci.n_boot_dropped == 400
    assert ci.n_boot_dropped / 400 == pytest.approx(p_none, abs=0.05)


def test_paired_bootstrap_difference():
    time_, event, score, prob, groups = clustered_survival(np.random.default_rng(10), 80)
    c = patient_clusters(groups)
    noisy = score + np.random.default_rng(0).normal(0, 1.5, len(score))
    a = uno_c_metric(time_, event, score, H, c)
    b = uno_c_metric(time_, event, noisy, H, c)
    ab, ba = paired_bootstrap_difference(a, b, 300, 4), paired_bootstrap_difference(b, a, 300, 4)
    assert ab.diff == pytest.approx(a.point() - b.point(), abs=1e-15) and ab.diff > 0
    assert (ab.ci_low, ab.ci_high) == pytest.approx((-ba.ci_high, -ba.ci_low), abs=1e-12)
    assert ab.p_value == ba.p_value and ab.metric == "uno_c"
    draws = bootstrap_values([a, b], 300, 4)
    assert ab.ci_low == pytest.approx(np.quantile(draws[0] - draws[1], 0.025), abs=1e-12)
    same = paired_bootstrap_difference(a, a, 100, 1)
    assert (same.diff, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(MetricInputError, match="one estimand"):
        paired_bootstrap_difference(a, uno_c_metric(time_, event, score, H,
                                                    patient_clusters(groups, PER_PATIENT)))


# --- coverage on simulated replications ---------------------------------------------------------
def _truth(h: float) -> dict[str, float]:
    """Population values of the simulation in :func:`_coverage_cohort` by quadrature: scan
    risk r ~ N(0, 1.25), hazard 0.2 exp(0.8 r), the true risk as prediction (so O/E and the
    calibration slope are 1, the intercept 0)."""
    r = np.linspace(-7, 7, 2801)
    f = stats.norm.pdf(r, scale=math.sqrt(1.25)) * (r[1] - r[0])  # quadrature weights
    lam = 0.2 * np.exp(0.8 * r)
    risk = 1 - np.exp(-lam * h)
    tau = h
    # Uno's C limit: P(r_i > r_j | T_i < T_j, T_i < tau), T exponential given r
    q = lam[:, None] / (lam[:, None] + lam[None, :]) * (1 - np.exp(-(lam[:, None]
                                                                     + lam[None, :]) * tau))
    ff = f[:, None] * f[None, :]
    conc = (r[:, None] > r[None, :]) + 0.5 * (r[:, None] == r[None, :])
    # cumulative/dynamic AUC: P(r_i > r_j | T_i <= h < T_j)
    pc = (risk[:, None] * (1 - risk[None, :])) * ff
    return {"uno_c": float((conc * q * ff).sum() / (q * ff).sum()),
            "td_auc": float((conc * pc).sum() / pc.sum()),
            "ipcw_brier": float((f * risk * (1 - risk)).sum()), "calibration_oe": 1.0,
            "ipcw_calibration_slope": 1.0, "ipcw_calibration_intercept": 0.0}


def _coverage_cohort(rng, n_patients=150):
    """As :func:`clustered_survival` without the grid (continuous times), censoring uniform
    on (0.5, 6); each scan's time is exponential given its risk, so the truths are those of
    :func:`_truth`; scans of a patient share the uniform behind their death times."""
    return clustered_survival(rng, n_patients=n_patients, grid=False)


def _coverage(n_reps: int, seed: int, scan_level: bool = False) -> dict[str, float]:
    truth = _truth(H)
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(truth, 0)
    for _ in range(n_reps):
        time_, event, score, prob, groups = _coverage_cohort(rng)
        c = patient_clusters(np.arange(len(time_)) if scan_level else groups)
        metrics = [uno_c_metric(time_, event, score, H, c),
                   td_auc_metric(time_, event, score, H, c),
                   ipcw_brier_metric(time_, event, prob, H, c),
                   observed_expected_metric(time_, event, prob, H, c),
                   ipcw_calibration_metric(time_, event, prob, H, c, "slope"),
                   ipcw_calibration_metric(time_, event, prob, H, c, "intercept")]
        for ci in bootstrap_cis(metrics, n_boot=400, seed=rng):
            hits[ci.metric] += ci.ci_low <= truth[ci.metric] <= ci.ci_high
    return {m: h / n_reps for m, h in hits.items()}


@pytest.mark.slow
def test_patient_bootstrap_covers_every_metric_and_scan_bootstrap_undercovers():
    # 200 replications of 150 patients (about 450 scans), Monte-Carlo sd of a 95% coverage
    # 0.015: accept [0.90, 0.99] (the truths' small within-patient pair share aside).
    coverage = _coverage(200, seed=11)
    for metric, value in coverage.items():
        assert 0.90 <= value <= 0.99, (metric, value, coverage)
    # resampling scans as if independent ignores the shared frailty of a patient's scans
    scan_level = _coverage(200, seed=11, scan_level=True)
    for metric in ("ipcw_brier", "calibration_oe"):
        assert scan_level[metric] < coverage[metric] - 0.05, (metric, scan_level, coverage)
