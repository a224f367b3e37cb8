"""The synthetic cohort's oracles (sscmort_core.synthetic.oracle) and its new marginals.

* The honest oracle is an expectation: on a tiny cohort it agrees with a slow brute-force
  simulation average (fresh frailty and acute events drawn from the model, conditioned on what
  is known at the scan by rejection or likelihood weighting) within 4 Monte-Carlo standard
  errors plus the integration-grid error.
* The imaging-only oracle is a function of the imaging drivers only, and (tower property)
  its mean equals the honest oracle's mean on a cohort it was not fitted on.
* Binary patient shares lie within 4 binomial standard errors (n = 600) of what the generator
  is asked for, and inside the registry ranges the parameters cite.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.synthetic import cohort as co
from sscmort_core.synthetic import generate_cohort
from sscmort_core.synthetic.oracle import IMAGING_DRIVERS

imaging_risks = co.imaging_oracle_risks

P = co.DEFAULT_PARAMETERS


@pytest.fixture(scope="module")
def cohort0():
    return generate_cohort(600, seed=0)


def _four_se(share: float, n: int) -> float:
    return 4.0 * math.sqrt(share * (1.0 - share) / n)


# --- marginals ---------------------------------------------------------------------------
def test_antibody_smoking_ph_cardiac_shares(cohort0):
    p = cohort0.patients
    n = len(p)
    shares = p["antibody"].value_counts(normalize=True)
    for name, want in zip(co.ANTIBODIES, P.antibody_shares):
        assert abs(shares[name] - want) <= _four_se(want, n), name
    assert 0.53 <= shares["scl70"] <= 0.56  # SSc-ILD registries
    assert abs(shares["rnapol3"] - 0.05) <= _four_se(0.05, n)
    assert shares["centromere"] < shares["scl70"]
    assert abs(p["ever_smoker"].mean() - P.ever_smoker_share) <= _four_se(P.ever_smoker_share, n)
    assert 0.30 <= p["ever_smoker"].mean() <= 0.40
    assert abs(p["cardiac_involvement"].mean() - P.cardiac_share) <= _four_se(P.cardiac_share, n)
    # PH: the share the model implies for these baseline extents
    logit = (P.ph_logit_intercept
             + P.ph_logit_per_10pct_extent * (p["baseline_ild_extent_pct"] - 10.0) / 10.0)
    want_ph = float(np.mean(1.0 / (1.0 + np.exp(-logit))))
    assert abs(p["pulmonary_hypertension"].mean() - want_ph) <= _four_se(want_ph, n)
    # PH goes with extensive ILD
    big = p["baseline_ild_extent_pct"] > 20.0
    ph = p["pulmonary_hypertension"]
    assert ph[big].mean() > ph[~big].mean()


def test_emphysema_only_in_smokers(cohort0):
    s = cohort0.scans.merge(cohort0.patients[["patient_id", "ever_smoker"]], on="patient_id")
    assert (s.loc[~s["ever_smoker"], "emphysema_pct"] == 0.0).all()
    per_patient = (s.groupby("patient_id")["emphysema_pct"].first() > 0)
    smokers = cohort0.patients.set_index("patient_id")["ever_smoker"]
    share = per_patient[smokers[smokers].index].mean()
    want = P.emphysema_share_of_smokers
    assert abs(share - want) <= _four_se(want, int(smokers.sum()))


# --- the honest oracle is an expectation -------------------------------------------------
def _internals(n: int, seed: int):
    """What generate_cohort computes, up to the scans (same streams, same order)."""
    streams = np.random.SeedSequence(seed).spawn(8)
    rng_pat, rng_acute, rng_death, rng_visit, rng_cens = (
        np.random.default_rng(s) for s in streams[:5])
    pt = co._draw_patients(rng_pat, n, P)
    lat = co._latent_course(rng_acute, pt, P)
    death_tau = co._event_tau(rng_death, lat.grid_years, lat.cum_hazard)
    visible = lat.log_hazard - pt.log_frailty[:, None]
    planned = co._planned_scan_tau(rng_visit, pt, lat.grid_years, visible, P)
    out = co._outcomes(rng_cens, pt, death_tau, P)
    rows, days = co._scan_index(planned, lat.acute_tau, pt, out, P.max_scans)
    return pt, lat, rows, days


def _brute_force(h0_row: np.ndarray, grid: np.ndarray, t: float, acute_at: float,
                 rng: np.random.Generator, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """Death-within-horizon indicators (draws, H) and weights (draws,) for one scan at ``t``:
    frailty from its prior, the acute event and death simulated step by step on ``grid``
    from entry, kept when alive at ``t`` with the known acute history (rejection when no
    acute event came by ``t``; likelihood weighting by its density when one came at
    ``acute_at``)."""
    end = int(np.searchsorted(grid, t + max(HORIZONS_YEARS))) + 2
    grid, h0_row = grid[:end], h0_row[:end]  # nothing after the last horizon matters
    step = grid[1] - grid[0]
    u = np.exp(P.log_frailty_sd * rng.standard_normal(draws))  # (D,)
    cum0 = np.concatenate([[0.0], np.cumsum(0.5 * (h0_row[1:] + h0_row[:-1]) * step)])
    if np.isfinite(acute_at):
        a = np.full(draws, acute_at)
        weight = u * np.exp(-P.acute_rate_per_hazard * u * np.interp(acute_at, grid, cum0))
    else:  # first acute event: inverse cumulative hazard at an Exp(1) draw
        e = rng.exponential(size=draws) / (P.acute_rate_per_hazard * u)
        a = np.where(e < cum0[-1], np.interp(e, cum0, grid), np.inf)
        weight = (a > t).astype(float)  # rejection: no acute event by the scan
    since = grid[None, :] - a[:, None]
    acute_w = np.where(since >= 0, np.exp(-np.maximum(since, 0) / P.acute_decay_years), 0.0)
    h = u[:, None] * h0_row[None, :] * (1 + (math.exp(P.acute_log_hr) - 1) * acute_w)
    cum = np.concatenate([np.zeros((draws, 1)),
                          np.cumsum(0.5 * (h[:, 1:] + h[:, :-1]) * step, axis=1)], axis=1)
    e = rng.exponential(size=draws)  # death when the cumulative hazard reaches e

    def cum_at(x: float) -> np.ndarray:  # (D,) cumulative hazard at time x (linear)
        lo, frac = int(x // step), (x / step) % 1.0
        return cum[:, lo] * (1.0 - frac) + cum[:, lo + 1] * frac

    at_scan = cum_at(t)
    weight = weight * (e > at_scan)  # alive at the scan
    dead = np.stack([e <= cum_at(t + hz) for hz in HORIZONS_YEARS], axis=1).astype(float)
    return dead, weight


def test_honest_oracle_agrees_with_brute_force_simulation():
    n = 60
    pt, lat, rows, days = _internals(n, seed=3)
    scans = generate_cohort(n, seed=3).scans
    tau = (days - pt.entry_day[rows]) / co.DAYS_PER_YEAR
    known = co._acute_known_tau(pt, lat.acute_tau, rows, days)
    risk5 = scans["true_risk_5y"].to_numpy()
    picks = [int(i) for i in np.argsort(-risk5)[:3]]  # the riskiest scans
    picks += [int(np.nonzero(np.isfinite(known))[0][0])]  # a scan at or after an acute event
    picks += [int(np.argsort(risk5)[len(risk5) // 2])]  # a median one
    rng = np.random.default_rng(0)
    grid = lat.grid_years
    for i in picks:
        h0_row = np.exp(lat.base_log_hazard[rows[i]])
        dead, w = _brute_force(h0_row, grid, tau[i], known[i], rng, draws=6000)
        n_eff = w.sum() ** 2 / (w ** 2).sum()
        for col, h in enumerate(HORIZONS_YEARS):
            sim = float((dead[:, col] * w).sum() / w.sum())
            oracle = float(scans[f"true_risk_{h}y"].iloc[i])
            se = math.sqrt(max(sim * (1 - sim), 1e-4) / n_eff)
            # 0.005: the oracle integrates on a 0.02-year grid, the simulation on 0.01
            assert abs(oracle - sim) < 4 * se + 0.005, (i, h, oracle, sim, se)


def test_honest_oracle_conditions_on_the_acute_history():
    """At the scan an acute deterioration triggers, the oracle knows it: the risk is far above
    that of the same patient's scan just before (the realised hazard jumps ~80-fold)."""
    pt, lat, rows, days = _internals(300, seed=5)
    scans = generate_cohort(300, seed=5).scans
    known = np.isfinite(co._acute_known_tau(pt, lat.acute_tau, rows, days))
    onset = np.nonzero(known[1:] & ~known[:-1] & (rows[1:] == rows[:-1]))[0] + 1
    assert len(onset) > 3
    before = scans["true_risk_1y"].to_numpy()[onset - 1]
    at = scans["true_risk_1y"].to_numpy()[onset]
    assert np.all(at > before)


# --- the imaging-only oracle ---------------------------------------------------------------
def test_imaging_oracle_is_a_function_of_the_imaging_drivers_only(cohort0):
    s = cohort0.scans
    again = imaging_risks(s["true_ild_extent_pct"].to_numpy(), s["progressor"].to_numpy(),
                          s["emphysema_pct"].to_numpy(), P)
    stored = s[[f"imaging_risk_{h}y" for h in HORIZONS_YEARS]].to_numpy()
    np.testing.assert_array_equal(again, stored)
    assert IMAGING_DRIVERS == ("true_ild_extent_pct", "progressor", "emphysema_pct")
    # emphysema counts by presence only; other scans' covariates never enter
    one = imaging_risks(np.array([15.0, 15.0]), np.array([True, True]),
                        np.array([1.0, 7.5]), P)
    np.testing.assert_array_equal(one[0], one[1])
    assert np.all(np.diff(stored, axis=1) >= 0.0)  # monotone across horizons
    # more extent, more risk (the smoothed curve over the bulk of the cohort)
    grid = np.array([2.0, 10.0, 25.0, 40.0])
    curve = imaging_risks(grid, np.zeros(4, bool), np.zeros(4), P)[:, 1]
    assert np.all(np.diff(curve) > 0)


def test_imaging_oracle_averages_to_the_honest_oracle(cohort0):
    """E[E[risk | imaging]] = E[risk]: on this cohort (not the reference it was made from)
    the mean difference lies within 4 patient-clustered standard errors of 0."""
    s = cohort0.scans
    for h in HORIZONS_YEARS:
        diff = (s[f"imaging_risk_{h}y"] - s[f"true_risk_{h}y"]).groupby(s["patient_id"])
        sums, counts = diff.sum(), diff.count()
        mean = sums.sum() / counts.sum()
        resid = sums - mean * counts  # cluster sums of centred differences
        se = math.sqrt((resid ** 2).sum()) / counts.sum()
        assert abs(mean) < 4 * se, (h, mean, se)
