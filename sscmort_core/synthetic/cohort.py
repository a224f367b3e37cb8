"""Synthetic SSc-ILD registry: patients, scans and lung-function tests, deterministic from a seed.

Generative story (../shared/DESIGN.md "Synthetic cohort"); time ``tau`` is in years since a
patient's first scan (their registry entry):

1. Patient covariates: sex, age, antibody, subtype (correlated with antibody), progressor
   status, a baseline ILD extent ``E0`` (% of lung) and, for progressors, a growth rate;
   ever-smoking, pulmonary hypertension (more often with extensive ILD) and primary cardiac
   involvement. The latent extent is ``E(tau) = min(E0 + growth * tau, extent_cap_pct)``.
2. Latent lung function follows extent: ``FVC(tau) = F_p - k_F * E(tau)``, likewise DLCO;
   measured values add visit-to-visit noise.
3. A proportional hazard, log-linear in the covariates *at time tau*::

       log h(tau) = log h0 + b_E (E(tau) - 10) / 5 + b_age (age(tau) - 56)
                    + b_DLCO (DLCO(tau) - 60) / 10 + b_prog progressor + b_male male
                    + b_diffuse diffuse + b_antibody + b_smoke smoker + b_PH PH
                    + b_cardiac cardiac + frailty

   with ``exp(b_E) = 1.2`` (HR 1.2 per +5% extent, ../shared/DESIGN.md); extent > 20% is extensive
   disease (:data:`EXTENSIVE_EXTENT_PCT`, Goh staging) and carries its risk through ``b_E``.
   Integrated on a fine grid into the cumulative hazard ``H``; death is at ``H^-1(Exp(1))``.
   The frailty, N(0, 0.35^2) on the log scale, stands for what no registry measures.
4. Acute deterioration: at rate ``k * h(tau)`` a patient may have one acute deterioration
   (an acute exacerbation). It triggers a scan that day, adds diffuse ground glass to the
   drawn extent and multiplies the hazard by ``1 + (HR_acute - 1) exp(-(tau - tau_a) / d)``.
   Clinically triggered scans of sick patients are what make 1-year deaths so common in
   registry CT cohorts (181 of 428 five-year deaths in the study died within a year).
5. Loss to follow-up (exponential) and administrative end of follow-up censor the outcome.
6. Routine scans are planned at gamma-distributed intervals that shorten as the *visible*
   hazard at the previous scan (everything but the frailty) grows; scans are kept while the
   patient is alive, followed up and the scan window is open, at most ``max_scans``.

Marginals and effect sizes, and where they come from:

* Antibodies (:data:`ANTIBODIES`): anti-Scl-70 55%, anti-centromere 15%, anti-RNA
  polymerase III 5%, other / none 25% of patients (SSc-ILD registries: anti-Scl-70 about
  53-56%, RNA polymerase III about 5%; anti-centromere is uncommon in SSc-ILD).
* Ever-smoker 35% (SSc cohorts: about 30-40%); HR 1.6 for death, our round value: ever-
  smoking is one of the three predictors of the SADL model (Morisset et al., *Chest*
  2017;152:999-1007), which reports no single HR we reuse. Emphysema is drawn on the CT of
  57% of ever-smokers (about 20% of patients) and never otherwise.
* Pulmonary hypertension, about 12% of patients, odds x1.8 per +10% baseline extent (PH
  complicating ILD); HR 2.0: EUSTAR (Tyndall et al., *Ann Rheum Dis* 2010;69:1809-15) found
  PAH on echocardiography an independent risk factor for death, HR 2.02.
* Primary cardiac involvement 12%; HR 1.8: in Tyndall et al. 26% of SSc-related deaths were
  cardiac, and Elhai et al. (EUSTAR, *Ann Rheum Dis* 2017;76:1897-1905, mapping and
  predicting mortality in SSc) count cardiac involvement among the independent predictors of
  death; 1.8 is our round value in the range reported there, not a quoted estimate.
* Age: HR 1.30 per 10 years (Tyndall et al.: age at onset, HR 1.30 per decade); DLCO: HR
  1.25 per 10% predicted lower (``exp(-b_DLCO)``; Tyndall et al.: HR 1.20 per 10% decrease);
  male 1.5, diffuse 1.3, progressor 2.2 (our values).

The outcome columns are the two oracles of :mod:`sscmort_core.synthetic.oracle`:
``true_risk_Hy`` is the honest oracle, the probability of death within ``H`` years of the
scan given everything knowable at it (integrating over the frailty and future acute
events); ``imaging_risk_Hy`` is the imaging-only oracle, the probability given only what the
CT draws (extent, dense fibrosis, emphysema). Both never decrease with the horizon.

Every number that shapes the cohort lives in :class:`CohortParameters`; the defaults are
calibrated (see the comments there) so that 600 patients give about 2,140 scans and
1/3/5-year positive counts near the study's 181/326/428 (../shared/DESIGN.md).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.synthetic.oracle import (
    Reference,
    expected_risks,
    imaging_risks,
    reference_cells,
)
from sscmort_core.synthetic.protocol import KERNELS, ScannerModel, scanners_in_service

DAYS_PER_YEAR = 365.25
EXTENSIVE_EXTENT_PCT = 20.0  # Goh staging: > 20% extent on CT = extensive disease
ANTIBODIES: tuple[str, ...] = ("scl70", "centromere", "rnapol3", "other")
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class CohortParameters:
    """All constants of the generator. Defaults are the calibrated ones; change with care.

    Calibration (fixed here as constants): ``baseline_hazard_per_year``,
    ``acute_rate_per_hazard`` and ``planned_scan_prob`` were set by hand against seeds 0-5 of
    600 patients with :func:`sscmort_core.labels.label_scans` (targets: 2,125 scans and the
    study's 181 / 326 / 428 positives): mean 2,140 scans and 180 / 316 / 434 positives at
    1 / 3 / 5 years. Seed 0 gives 2,169 scans and 188 / 308 / 437; seed 1 gives 2,157 and
    185 / 323 / 426. The effect sizes (module docstring) were fixed before that, from the
    literature where it gives one; what lets the CT carry the study's signal was also fixed
    before measuring: DLCO tied more closely to extent (0.9 % predicted per % extent), PH more
    likely with extensive ILD, progressors' HR 2.2 and faster growth (3 %/year), a smaller
    residual frailty (SD 0.35) now that PH and cardiac involvement are explicit.
    """

    # calendar
    entry_first: dt.date = dt.date(2005, 1, 1)
    entry_last: dt.date = dt.date(2021, 6, 30)
    scan_window_end: dt.date = dt.date(2022, 12, 31)
    admin_end: dt.date = dt.date(2024, 6, 30)  # administrative end of follow-up
    # demographics (registry-like: EUSTAR / SPAR shares)
    male_share: float = 0.18
    age_at_entry_mean_years: float = 54.0  # scans come later, so scan-level mean is ~56
    age_at_entry_sd_years: float = 13.5
    age_at_entry_min_years: float = 18.0
    age_at_entry_max_years: float = 88.0
    # SSc-ILD registries: anti-Scl-70 about 53-56%, RNA polymerase III about 5%
    antibody_shares: tuple[float, ...] = (0.55, 0.15, 0.05, 0.25)  # order of ANTIBODIES
    diffuse_share_by_antibody: tuple[float, ...] = (0.62, 0.15, 0.80, 0.40)  # -> ~50% diffuse
    progressor_base_prob: float = 0.20
    progressor_prob_diffuse: float = 0.12  # added for diffuse subtype
    progressor_prob_scl70: float = 0.08  # added for anti-Scl-70
    # history and organ involvement (patient level, known at every scan)
    ever_smoker_share: float = 0.35  # SSc cohorts: about 30-40% ever smoked
    ph_logit_intercept: float = -2.2  # pulmonary hypertension: ~15% of patients, ...
    ph_logit_per_10pct_extent: float = 0.6  # ... more often with extensive ILD (PH-ILD)
    cardiac_share: float = 0.12  # primary heart involvement
    # ILD extent (% of lung)
    extent_min_pct: float = 0.5
    extent_gamma_shape: float = 1.3
    extent_gamma_scale_by_antibody_pct: tuple[float, ...] = (10.0, 5.0, 8.0, 8.0)
    extent_baseline_max_pct: float = 60.0
    extent_growth_mean_pct_per_year: float = 3.0  # progressors only; gamma(shape 2)
    extent_cap_pct: float = 70.0
    # lung function, % predicted: patient level - slope * extent, plus visit noise
    fvc_patient_mean_pct: float = 95.0
    fvc_patient_sd_pct: float = 19.0
    fvc_drop_per_extent_pct: float = 0.60
    fvc_visit_noise_pct: float = 6.0
    dlco_patient_mean_pct: float = 70.0
    dlco_patient_sd_pct: float = 12.0
    dlco_drop_per_extent_pct: float = 0.90
    dlco_visit_noise_pct: float = 7.0
    # hazard: log hazard ratios (sources in the module docstring)
    baseline_hazard_per_year: float = 0.0032  # at extent 10%, age 56, DLCO 60, reference rest
    log_hr_per_5pct_extent: float = math.log(1.2)  # ../shared/DESIGN.md: HR ~1.2 per +5% extent
    log_hr_per_year_age: float = math.log(1.30) / 10.0  # EUSTAR: HR 1.30 per 10 years
    log_hr_per_10pct_dlco: float = math.log(0.80)  # HR 1.25 per 10% lower (EUSTAR 1.20)
    log_hr_progressor: float = math.log(2.2)
    log_hr_male: float = math.log(1.5)
    log_hr_diffuse: float = math.log(1.3)
    log_hr_by_antibody: tuple[float, ...] = (0.0, math.log(0.8), math.log(1.2), 0.0)
    log_hr_ever_smoker: float = math.log(1.6)
    log_hr_pulmonary_hypertension: float = math.log(2.0)  # EUSTAR: PAH HR 2.02
    log_hr_cardiac: float = math.log(1.8)
    log_frailty_sd: float = 0.35
    acute_rate_per_hazard: float = 6.0  # rate of acute deterioration = this * death hazard
    acute_log_hr: float = math.log(80.0)  # hazard ratio right at an acute deterioration ...
    acute_decay_years: float = 0.3  # ... decaying with this time constant
    acute_extent_pct: float = 12.0  # extra ground glass at onset, decays likewise
    hazard_grid_step_years: float = 0.01
    hazard_grid_span_years: float = 25.0  # covers entry..admin end plus the 5-year horizon
    # visits and censoring
    max_scans: int = 8
    planned_scan_prob: float = 0.385  # planned scans = 1 + Binomial(max_scans - 1, p)
    scan_interval_mean_years: float = 1.6
    scan_interval_min_years: float = 0.25
    scan_interval_gamma_shape: float = 3.0
    scan_interval_max_years: float = 3.0
    scan_interval_reference_hazard_per_year: float = 0.0036  # the mean gap applies here;
    scan_interval_hazard_power: float = 1.0  # mean gap ~ (visible hazard / reference) ** -power
    loss_to_followup_per_year: float = 0.04
    # emphysema: a patient-level share of the lung in every scan, only in ever-smokers (the
    # phantom draws it; no effect on outcomes beyond the smoking it goes with)
    emphysema_share_of_smokers: float = 0.57  # -> ~20% of patients
    emphysema_pct_range: tuple[float, float] = (1.0, 8.0)
    # the oracles (sscmort_core.synthetic.oracle)
    oracle_frailty_nodes: int = 12  # Gauss-Hermite nodes over the unmeasured frailty
    oracle_step_years: float = 0.02  # integration step over the horizon
    imaging_reference_patients: int = 3000  # reference cohort of the imaging-only oracle
    imaging_reference_seed: int = 20_161  # fixed; never a demo seed's cohort
    imaging_bandwidth_pct: float = 1.0  # kernel bandwidth in extent (widened where sparse)
    imaging_min_neighbours: int = 40


DEFAULT_PARAMETERS = CohortParameters()


@dataclass(frozen=True)
class SyntheticCohort:
    """The three tables of a synthetic registry (columns documented in :func:`generate_cohort`)."""

    patients: pd.DataFrame  # one row per patient
    scans: pd.DataFrame  # one row per scan, sorted by patient then date
    clinical: pd.DataFrame  # one row per lung-function visit
    seed: int


@dataclass(frozen=True)
class _Patients:
    """Patient-level draws, arrays of shape (n,)."""

    male: np.ndarray
    antibody: np.ndarray  # int index into ANTIBODIES
    diffuse: np.ndarray
    progressor: np.ndarray
    entry_day: np.ndarray  # int days since 1970-01-01
    birth_year: np.ndarray
    age_at_entry_years: np.ndarray
    extent0_pct: np.ndarray
    growth_pct_per_year: np.ndarray
    fvc_patient_pct: np.ndarray
    dlco_patient_pct: np.ndarray
    log_frailty: np.ndarray  # unmeasured disease (other organs, comorbidity), N(0, sd)
    ever_smoker: np.ndarray  # bool
    pulmonary_hypertension: np.ndarray  # bool
    cardiac: np.ndarray  # bool: primary heart involvement


def _day(d: dt.date) -> int:
    return (d - _EPOCH).days


def _date(day: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=int(day))


def _stratified(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) uniforms on (0, 1), one in each of n equal strata, in random order.

    Each is exactly Uniform(0, 1), so every patient is drawn from the intended model, but
    the cohort's marginals (sex share, deaths, ...) vary far less between seeds than with
    independent draws (Latin hypercube sampling); this keeps positive counts near target
    for every seed, not just on average.
    """
    return (rng.permutation(n) + rng.random(n)) / n


def _normal(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) standard normal draws by stratified inverse CDF."""
    return stats.norm.ppf(_stratified(rng, n))


def _draw_patients(rng: np.random.Generator, n: int, p: CohortParameters) -> _Patients:
    male = _stratified(rng, n) < p.male_share
    bounds = np.cumsum(p.antibody_shares)[:-1] / np.sum(p.antibody_shares)
    antibody = np.searchsorted(bounds, _stratified(rng, n), side="right")
    diffuse = rng.random(n) < np.asarray(p.diffuse_share_by_antibody)[antibody]
    p_prog = (p.progressor_base_prob + p.progressor_prob_diffuse * diffuse
              + p.progressor_prob_scl70 * (antibody == 0))
    progressor = _stratified(rng, n) < p_prog
    span_days = _day(p.entry_last) - _day(p.entry_first) + 1
    entry_day = _day(p.entry_first) + np.floor(_stratified(rng, n) * span_days).astype(np.int64)
    age = np.clip(p.age_at_entry_mean_years + p.age_at_entry_sd_years * _normal(rng, n),
                  p.age_at_entry_min_years, p.age_at_entry_max_years)
    # birth_year is what the registry keeps; ages are taken from 1 July of that year
    entry_year = 1970 + entry_day / DAYS_PER_YEAR
    birth_year = np.floor(entry_year - age).astype(int)
    age = (entry_day - _birth_mid_day(birth_year)) / DAYS_PER_YEAR
    scale = np.asarray(p.extent_gamma_scale_by_antibody_pct)[antibody]
    extent0 = np.minimum(p.extent_min_pct
                         + scale * stats.gamma.ppf(_stratified(rng, n), p.extent_gamma_shape),
                         p.extent_baseline_max_pct)
    growth = np.where(progressor,
                      rng.gamma(2.0, p.extent_growth_mean_pct_per_year / 2.0, n), 0.0)
    fvc = p.fvc_patient_mean_pct + p.fvc_patient_sd_pct * _normal(rng, n)
    dlco = p.dlco_patient_mean_pct + p.dlco_patient_sd_pct * _normal(rng, n)
    frailty = p.log_frailty_sd * _normal(rng, n)
    smoker = _stratified(rng, n) < p.ever_smoker_share
    ph_logit = p.ph_logit_intercept + p.ph_logit_per_10pct_extent * (extent0 - 10.0) / 10.0
    ph = _stratified(rng, n) < 1.0 / (1.0 + np.exp(-ph_logit))
    cardiac = _stratified(rng, n) < p.cardiac_share
    return _Patients(male, antibody, diffuse, progressor, entry_day, birth_year, age,
                     extent0, growth, fvc, dlco, frailty, smoker, ph, cardiac)


def _birth_mid_day(birth_year: np.ndarray) -> np.ndarray:
    """Days since epoch of 1 July of each birth year, (n,) int."""
    return np.array([_day(dt.date(int(y), 7, 1)) for y in birth_year], dtype=np.int64)


def _extent_pct(pt: _Patients, tau_years: np.ndarray, p: CohortParameters) -> np.ndarray:
    """Latent extent at times ``tau_years`` (broadcast against (n,) patients)."""
    grown = pt.extent0_pct[:, None] + pt.growth_pct_per_year[:, None] * tau_years
    return np.minimum(grown, p.extent_cap_pct)


def _base_log_hazard(pt: _Patients, p: CohortParameters) -> tuple[np.ndarray, np.ndarray]:
    """(grid_years (G,), log h (n, G)): the log hazard from entry without acute events."""
    step = p.hazard_grid_step_years
    grid = np.arange(0.0, p.hazard_grid_span_years + step / 2, step)  # (G,)
    extent = _extent_pct(pt, grid[None, :], p)  # (n, G)
    dlco = pt.dlco_patient_pct[:, None] - p.dlco_drop_per_extent_pct * extent  # (n, G)
    age = pt.age_at_entry_years[:, None] + grid[None, :]  # (n, G)
    fixed = (pt.log_frailty + p.log_hr_progressor * pt.progressor + p.log_hr_male * pt.male
             + p.log_hr_diffuse * pt.diffuse
             + np.asarray(p.log_hr_by_antibody)[pt.antibody]
             + p.log_hr_ever_smoker * pt.ever_smoker
             + p.log_hr_pulmonary_hypertension * pt.pulmonary_hypertension
             + p.log_hr_cardiac * pt.cardiac)  # (n,)
    log_h = (math.log(p.baseline_hazard_per_year) + fixed[:, None]
             + p.log_hr_per_5pct_extent * (extent - 10.0) / 5.0
             + p.log_hr_per_year_age * (age - 56.0)
             + p.log_hr_per_10pct_dlco * (dlco - 60.0) / 10.0)  # (n, G)
    return grid, log_h


def _cumulate(grid: np.ndarray, log_h: np.ndarray) -> np.ndarray:
    """Cumulative hazard H (n, G) from log h (n, G) by the trapezoid rule; H[:, 0] = 0."""
    h = np.exp(log_h)
    increments = 0.5 * (h[:, 1:] + h[:, :-1]) * (grid[1] - grid[0])  # (n, G-1)
    return np.concatenate([np.zeros((len(h), 1)), np.cumsum(increments, axis=1)], axis=1)


def _acute_weight(grid: np.ndarray, acute_tau: np.ndarray, decay_years: float) -> np.ndarray:
    """(n, G) ``exp(-(tau - tau_a) / d)`` after each patient's acute event, 0 before / never."""
    since = grid[None, :] - np.nan_to_num(acute_tau, posinf=1e9)[:, None]  # (n, G)
    return np.where(since >= 0.0, np.exp(-np.maximum(since, 0.0) / decay_years), 0.0)


@dataclass(frozen=True)
class _Latent:
    """The hazard course of each patient on a grid of years since entry."""

    grid_years: np.ndarray  # (G,)
    log_hazard: np.ndarray  # (n, G) log deaths per year, acute term included
    cum_hazard: np.ndarray  # (n, G)
    acute_tau: np.ndarray  # (n,) years from entry to the acute deterioration; inf = none
    base_log_hazard: np.ndarray  # (n, G) without the frailty and the acute term
    base_cum_hazard: np.ndarray  # (n, G) its cumulative hazard


def _latent_course(rng: np.random.Generator, pt: _Patients, p: CohortParameters) -> _Latent:
    """Draw acute deteriorations (rate ``k * h``), then the full hazard including them."""
    grid, log_h = _base_log_hazard(pt, p)
    base = log_h - pt.log_frailty[:, None]
    base_cum = _cumulate(grid, base)
    acute_tau = _event_tau(rng, grid, p.acute_rate_per_hazard * base_cum
                           * np.exp(pt.log_frailty)[:, None])
    weight = _acute_weight(grid, acute_tau, p.acute_decay_years)  # (n, G)
    log_h = log_h + np.log1p((math.exp(p.acute_log_hr) - 1.0) * weight)
    return _Latent(grid, log_h, _cumulate(grid, log_h), acute_tau, base, base_cum)


def _interp_rows(grid: np.ndarray, values: np.ndarray, rows: np.ndarray,
                 tau_years: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values[rows[i]]`` at ``tau_years[i]`` on a uniform grid."""
    step = grid[1] - grid[0]
    pos = np.clip(tau_years / step, 0.0, len(grid) - 1.000001)
    lo = np.floor(pos).astype(int)
    frac = pos - lo
    return values[rows, lo] * (1.0 - frac) + values[rows, lo + 1] * frac


def _event_tau(rng: np.random.Generator, grid: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Event time (years from entry) per patient by inverting H (n, G) at an Exp(1) draw;
    inf when the draw exceeds H at the end of the grid (no event on any date we look at)."""
    target = -np.log1p(-_stratified(rng, len(cum)))  # Exp(1)
    tau = np.full(len(cum), np.inf)
    for i, (row, u) in enumerate(zip(cum, target)):
        if u < row[-1]:
            tau[i] = float(np.interp(u, row, grid))
    return tau


def _planned_scan_tau(rng: np.random.Generator, pt: _Patients, grid: np.ndarray,
                      log_h: np.ndarray, p: CohortParameters) -> np.ndarray:
    """(n, max_scans) planned scan times in years from entry; NaN beyond the planned count.

    Each gap is gamma distributed with a mean that shrinks as the hazard *at the current
    scan* grows (sicker patients are scanned more often). The schedule depends only on the
    past, so the true risks stay honest probabilities given the covariates at each scan.
    """
    n = len(pt.entry_day)
    planned = 1 + rng.binomial(p.max_scans - 1, p.planned_scan_prob, n)
    shape = p.scan_interval_gamma_shape
    tau = np.zeros((n, p.max_scans))
    rows = np.arange(n)
    for k in range(1, p.max_scans):
        log_h_now = _interp_rows(grid, log_h, rows, tau[:, k - 1])  # (n,)
        mean = p.scan_interval_mean_years * np.exp(
            -p.scan_interval_hazard_power
            * (log_h_now - math.log(p.scan_interval_reference_hazard_per_year)))
        mean = np.clip(mean, p.scan_interval_min_years + 0.05, p.scan_interval_max_years)
        excess = mean - p.scan_interval_min_years
        tau[:, k] = tau[:, k - 1] + p.scan_interval_min_years + rng.gamma(shape, excess / shape)
    return np.where(np.arange(p.max_scans)[None, :] < planned[:, None], tau, np.nan)


@dataclass(frozen=True)
class _Outcomes:
    """Per patient (n,): death day (observed deaths only, else -1) and last follow-up day."""

    death_day: np.ndarray  # int, -1 when no death was observed
    last_followup_day: np.ndarray  # int; equals death_day for observed deaths
    stop_day: np.ndarray  # int: first day on which no scan can be taken any more


def _outcomes(rng: np.random.Generator, pt: _Patients, death_tau: np.ndarray,
              p: CohortParameters) -> _Outcomes:
    """Censor the latent death times by loss to follow-up and the administrative end."""
    n = len(pt.entry_day)
    far = 10_000_000  # "never", in days; beyond any date we use
    death = np.where(np.isfinite(death_tau),
                     pt.entry_day + np.maximum(1, np.round(np.nan_to_num(death_tau, posinf=0.0)
                                                            * DAYS_PER_YEAR)), far)
    lost_tau = rng.exponential(1.0 / p.loss_to_followup_per_year, n)
    lost = pt.entry_day + np.maximum(1, np.round(lost_tau * DAYS_PER_YEAR)).astype(np.int64)
    censor = np.minimum(lost, _day(p.admin_end))
    observed = death <= censor
    death_day = np.where(observed, death, -1).astype(np.int64)
    last_fu = np.where(observed, death, censor).astype(np.int64)
    stop = np.minimum(np.minimum(death, lost), _day(p.scan_window_end) + 1).astype(np.int64)
    return _Outcomes(death_day, last_fu, stop)


def _scan_index(planned_tau: np.ndarray, acute_tau: np.ndarray, pt: _Patients,
                out: _Outcomes, max_scans: int) -> tuple[np.ndarray, np.ndarray]:
    """(patient index (m,), scan day (m,)) of the scans actually taken, sorted by patient
    then date: planned and acute-deterioration scans before death, loss to follow-up and the
    scan window's end; one per day, the first ``max_scans`` per patient."""
    tau = np.concatenate([planned_tau, np.where(np.isfinite(acute_tau), acute_tau,
                                                np.nan)[:, None]], axis=1)  # (n, K+1)
    rounded = np.round(np.nan_to_num(tau, nan=-1.0) * DAYS_PER_YEAR).astype(np.int64)
    days = pt.entry_day[:, None] + rounded  # (n, K+1)
    taken = ~np.isnan(tau) & (days < out.stop_day[:, None])
    days = np.sort(np.where(taken, days, np.iinfo(np.int64).max), axis=1)  # untaken last
    taken = days < np.iinfo(np.int64).max
    taken[:, 1:] &= days[:, 1:] != days[:, :-1]  # one scan per day
    taken &= np.cumsum(taken, axis=1) <= max_scans
    rows, cols = np.nonzero(taken)  # row-major: by patient, then by date
    return rows, days[rows, cols]


def _scan_protocols(rng: np.random.Generator, scan_days: np.ndarray) -> pd.DataFrame:
    """Scanner, kernel, slice thickness and noise for each scan (m rows)."""
    records = []
    for day in scan_days:
        options: tuple[ScannerModel, ...] = scanners_in_service(_date(day))
        scanner = options[int(rng.integers(len(options)))]
        choices = scanner.slice_thicknesses_mm
        thickness = choices[int(rng.integers(len(choices)))]
        kernel = KERNELS[int(rng.integers(len(KERNELS)))]
        base = rng.uniform(26.0, 40.0) if kernel == "sharp" else rng.uniform(12.0, 22.0)
        records.append((scanner.name, kernel, float(thickness),
                        round(base + scanner.extra_noise_hu, 1)))
    return pd.DataFrame(records, columns=["scanner", "kernel", "slice_thickness_mm", "noise_hu"])


def _unique_seeds(rng: np.random.Generator, m: int) -> np.ndarray:
    """m distinct volume seeds in [0, 2**31 - 1)."""
    draws = rng.integers(0, 2**31 - 1, size=2 * m + 16)
    _, first = np.unique(draws, return_index=True)
    seeds = draws[np.sort(first)][:m]
    if len(seeds) < m:  # practically impossible: 2m draws from 2**31 values
        raise RuntimeError("could not draw distinct volume seeds")
    return seeds.astype(np.int64)


def _patients_frame(pt: _Patients, out: _Outcomes) -> pd.DataFrame:
    n = len(pt.entry_day)
    return pd.DataFrame({
        "patient_id": [f"SYN-P{i + 1:05d}" for i in range(n)],
        "sex": np.where(pt.male, "M", "F"),
        "birth_year": pt.birth_year.astype(int),
        "subtype": np.where(pt.diffuse, "diffuse", "limited"),
        "antibody": np.asarray(ANTIBODIES)[pt.antibody],
        "progressor": pt.progressor.astype(bool),
        "death_date": pd.Series([_date(d) if d >= 0 else None for d in out.death_day],
                                dtype=object),
        "last_followup_date": pd.Series([_date(d) for d in out.last_followup_day], dtype=object),
        "baseline_ild_extent_pct": np.round(pt.extent0_pct, 2),
        "ever_smoker": pt.ever_smoker.astype(bool),
        "pulmonary_hypertension": pt.pulmonary_hypertension.astype(bool),
        "cardiac_involvement": pt.cardiac.astype(bool),
    })


def _drawn_extent_pct(pt: _Patients, acute_tau: np.ndarray, rows: np.ndarray,
                      tau: np.ndarray, p: CohortParameters) -> np.ndarray:
    """(m,) extent the phantom draws: latent fibrotic extent plus acute ground glass."""
    fibrotic = pt.extent0_pct[rows] + pt.growth_pct_per_year[rows] * tau
    since = tau - np.nan_to_num(acute_tau[rows], posinf=1e9)
    acute = np.where(since >= 0.0, np.exp(-np.maximum(since, 0.0) / p.acute_decay_years), 0.0)
    return np.minimum(fibrotic + p.acute_extent_pct * acute, p.extent_cap_pct)


def _emphysema_pct(rng: np.random.Generator, smoker: np.ndarray,
                   p: CohortParameters) -> np.ndarray:
    """(n,) per patient: % of lung with emphysema (ever-smokers only, not all of them)."""
    n = len(smoker)
    has = smoker & (rng.random(n) < p.emphysema_share_of_smokers)
    return np.where(has, np.round(rng.uniform(*p.emphysema_pct_range, n), 2), 0.0)


def _scans_frame(rng: np.random.Generator, pt: _Patients, lat: _Latent, rows: np.ndarray,
                 scan_days: np.ndarray, patient_ids: pd.Series,
                 p: CohortParameters) -> pd.DataFrame:
    tau = (scan_days - pt.entry_day[rows]) / DAYS_PER_YEAR  # (m,) years since entry
    extent = _drawn_extent_pct(pt, lat.acute_tau, rows, tau, p)
    risk = expected_risks(lat.grid_years, lat.base_log_hazard, lat.base_cum_hazard,
                          lat.cum_hazard * np.exp(-pt.log_frailty)[:, None], rows, tau,
                          _acute_known_tau(pt, lat.acute_tau, rows, scan_days), p)
    risks = {f"true_risk_{h}y": risk[:, i] for i, h in enumerate(HORIZONS_YEARS)}
    protocols = _scan_protocols(rng, scan_days)
    frame = pd.DataFrame({
        "scan_id": [f"SYN-S{i + 1:06d}" for i in range(len(rows))],
        "patient_id": patient_ids.to_numpy()[rows],
        "scan_date": pd.Series([_date(d) for d in scan_days], dtype=object),
    })
    frame = pd.concat([frame, protocols], axis=1)
    # the phantom draws exactly this rounded extent (to within one voxel)
    frame["true_ild_extent_pct"] = np.round(extent, 2)
    for name, values in risks.items():
        frame[name] = values
    frame["volume_seed"] = _unique_seeds(rng, len(rows))
    frame["age_at_scan"] = np.round((scan_days - _birth_mid_day(pt.birth_year[rows]))
                                    / DAYS_PER_YEAR, 2)
    frame["progressor"] = pt.progressor[rows].astype(bool)  # the phantom draws dense fibrosis
    return frame


def _acute_known_tau(pt: _Patients, acute_tau: np.ndarray, rows: np.ndarray,
                     scan_days: np.ndarray) -> np.ndarray:
    """(m,) years from entry to the acute deterioration when it came on or before the scan
    day (it is then part of the history known at the scan), else inf."""
    a = acute_tau[rows]
    day = pt.entry_day[rows] + np.round(np.nan_to_num(a, posinf=1e6) * DAYS_PER_YEAR)
    return np.where(np.isfinite(a) & (day <= scan_days), a, np.inf)


def _visit_days(rows: np.ndarray, scan_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(patient index, day) of lung-function visits: every scan date plus the midpoint of each
    pair of consecutive scans more than 120 days apart; sorted by patient then day."""
    same = rows[1:] == rows[:-1]
    gap = scan_days[1:] - scan_days[:-1]
    between = same & (gap > 120)
    mid_rows = rows[1:][between]
    mid_days = scan_days[:-1][between] + gap[between] // 2
    all_rows = np.concatenate([rows, mid_rows])
    all_days = np.concatenate([scan_days, mid_days])
    order = np.lexsort((all_days, all_rows))
    return all_rows[order], all_days[order]


def _clinical_frame(rng: np.random.Generator, pt: _Patients, rows: np.ndarray,
                    scan_days: np.ndarray, patient_ids: pd.Series,
                    p: CohortParameters) -> pd.DataFrame:
    v_rows, v_days = _visit_days(rows, scan_days)
    tau = (v_days - pt.entry_day[v_rows]) / DAYS_PER_YEAR
    extent = np.minimum(pt.extent0_pct[v_rows] + pt.growth_pct_per_year[v_rows] * tau,
                        p.extent_cap_pct)
    fvc = (pt.fvc_patient_pct[v_rows] - p.fvc_drop_per_extent_pct * extent
           + rng.normal(0.0, p.fvc_visit_noise_pct, len(v_rows)))
    dlco = (pt.dlco_patient_pct[v_rows] - p.dlco_drop_per_extent_pct * extent
            + rng.normal(0.0, p.dlco_visit_noise_pct, len(v_rows)))
    return pd.DataFrame({
        "patient_id": patient_ids.to_numpy()[v_rows],
        "date": pd.Series([_date(d) for d in v_days], dtype=object),
        "fvc_pct_pred": np.round(np.clip(fvc, 20.0, 160.0), 1),
        "dlco_pct_pred": np.round(np.clip(dlco, 10.0, 150.0), 1),
    })


def generate_cohort(n_patients: int = 600, seed: int = 0,
                    params: CohortParameters = DEFAULT_PARAMETERS) -> SyntheticCohort:
    """A synthetic SSc-ILD registry, identical for identical ``(n_patients, seed, params)``.

    Tables (dates are ``datetime.date``; extents and lung function in percent):

    * ``patients``: patient_id ("SYN-P00001"), sex ("F"/"M"), birth_year, subtype
      ("diffuse"/"limited"), antibody (one of :data:`ANTIBODIES`), progressor (bool),
      death_date (date or None), last_followup_date (= death_date for the dead),
      baseline_ild_extent_pct (extent at the first scan), ever_smoker,
      pulmonary_hypertension, cardiac_involvement (bool).
    * ``scans``: scan_id ("SYN-S000001"), patient_id, scan_date, scanner, kernel
      ("sharp"/"smooth"), slice_thickness_mm, noise_hu, true_ild_extent_pct (what
      :func:`~sscmort_core.synthetic.phantom.phantom_for_scan` draws), true_risk_1y/3y/5y
      (the honest oracle), volume_seed, age_at_scan (years, from 1 July of the birth
      year), progressor and emphysema_pct (what the phantom needs: dense fibrosis, % of
      lung with emphysema), imaging_risk_1y/3y/5y (the imaging-only oracle).
    * ``clinical``: patient_id, date, fvc_pct_pred, dlco_pct_pred at every scan date and
      between scans.
    """
    if not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise ValueError(f"n_patients must be a positive integer, got {n_patients!r}")
    cohort = _simulate(int(n_patients), seed, params)
    scans = cohort.scans
    imaging = imaging_oracle_risks(scans["true_ild_extent_pct"].to_numpy(float),
                                   scans["progressor"].to_numpy(bool),
                                   scans["emphysema_pct"].to_numpy(float), params)
    for i, h in enumerate(HORIZONS_YEARS):
        scans[f"imaging_risk_{h}y"] = imaging[:, i]
    return cohort


def imaging_oracle_risks(extent_pct: np.ndarray, progressor: np.ndarray,
                         emphysema_pct: np.ndarray,
                         params: CohortParameters = DEFAULT_PARAMETERS) -> np.ndarray:
    """(m, len(HORIZONS_YEARS)) the imaging-only oracle's risks for these imaging drivers
    (:func:`sscmort_core.synthetic.oracle.imaging_risks` over this parameter set's fixed-seed
    reference cohort)."""
    return imaging_risks(extent_pct, progressor, emphysema_pct, _imaging_reference(params),
                         params)


@functools.lru_cache(maxsize=4)
def _imaging_reference(params: CohortParameters) -> Reference:
    """The honest risks of the reference cohort (``imaging_reference_patients``, seed
    ``imaging_reference_seed``), by imaging cell; made once per parameter set and process."""
    scans = _simulate(params.imaging_reference_patients, params.imaging_reference_seed,
                      params).scans
    risks = scans[[f"true_risk_{h}y" for h in HORIZONS_YEARS]].to_numpy(float)
    return reference_cells(scans["true_ild_extent_pct"].to_numpy(float),
                           scans["progressor"].to_numpy(bool),
                           scans["emphysema_pct"].to_numpy(float), risks)


def _simulate(n_patients: int, seed: int, params: CohortParameters) -> SyntheticCohort:
    streams = np.random.SeedSequence(seed).spawn(8)  # the 8th (emphysema) came last
    rng_pat, rng_acute, rng_death, rng_visit, rng_cens, rng_scan, rng_clin, rng_emph = (
        np.random.default_rng(s) for s in streams)
    pt = _draw_patients(rng_pat, n_patients, params)
    lat = _latent_course(rng_acute, pt, params)
    death_tau = _event_tau(rng_death, lat.grid_years, lat.cum_hazard)
    # scans are scheduled by the hazard a clinician can see (no frailty): the schedule then
    # tells nothing about the frailty beyond what the oracle conditions on
    visible = lat.log_hazard - pt.log_frailty[:, None]
    planned = _planned_scan_tau(rng_visit, pt, lat.grid_years, visible, params)
    out = _outcomes(rng_cens, pt, death_tau, params)
    rows, scan_days = _scan_index(planned, lat.acute_tau, pt, out, params.max_scans)
    patients = _patients_frame(pt, out)
    ids = patients["patient_id"]
    scans = _scans_frame(rng_scan, pt, lat, rows, scan_days, ids, params)
    scans["emphysema_pct"] = _emphysema_pct(rng_emph, pt.ever_smoker, params)[rows]
    clinical = _clinical_frame(rng_clin, pt, rows, scan_days, ids, params)
    return SyntheticCohort(patients=patients, scans=scans, clinical=clinical, seed=int(seed))
