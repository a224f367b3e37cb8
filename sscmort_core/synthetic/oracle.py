"""The synthetic cohort's two reference "models": honest expectations, not realised futures.

**Honest oracle** (:func:`expected_risks`): the probability of death within each horizon of
a scan given everything knowable at the scan under the generator's own model: the patient's
covariates and true disease state (sex, age, subtype, antibody, smoking, pulmonary
hypertension, cardiac involvement, true ILD extent and its growth, true lung function), that
the patient is alive at the scan, and whether (and when) an acute deterioration has happened.
It integrates over what is *not* knowable: the unmeasured frailty (by Gauss-Hermite
quadrature over its posterior given survival to the scan and the acute history) and the
timing of a future acute deterioration (numerically, on the generator's hazard grid). Scans
are scheduled by the visible hazard (no frailty) and censoring is independent, so a scan's
existence carries no further information and the expectation is exact up to the grid.

**Imaging-only oracle** (:func:`imaging_risks`): the probability given only what the CT
phantom draws (:func:`~sscmort_core.synthetic.phantom.phantom_for_scan`): the drawn ILD
extent (fibrosis plus any acute ground glass), dense fibrosis (progressor) and whether
emphysema is drawn. Everything else is integrated out by Monte Carlo with a fixed seed: the
honest risks of a large reference cohort (``imaging_reference_patients``, seed
``imaging_reference_seed``; never a demo cohort) are averaged by a Gaussian kernel in extent
within each (progressor, emphysema) cell, which estimates E[honest risk | imaging drivers] =
P(death | imaging drivers). No outcome of any cohort is used.

May import: numpy only (and the labels' horizons).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sscmort_core.labels import HORIZONS_YEARS

_CHUNK = 256  # scans per vectorised block
ORACLE_VERSION = "2"  # 1: the realised risk (knew the frailty and future acute events)

# What each oracle conditions on and integrates over (its model card says exactly this).
HONEST_CONDITIONS: tuple[str, ...] = (
    "sex", "age at the scan", "subtype", "antibody", "ever-smoker", "pulmonary hypertension",
    "cardiac involvement", "true ILD extent at the scan (fibrosis and acute ground glass)",
    "progressor status and extent growth rate", "true (noise-free) DLCO",
    "alive at the scan", "acute deterioration on or before the scan (and its date)")
HONEST_INTEGRATES: tuple[str, ...] = (
    "unmeasured frailty (posterior given survival and the acute history; Gauss-Hermite)",
    "timing of a future acute deterioration (numerical integral on the hazard grid)")
IMAGING_CONDITIONS: tuple[str, ...] = (
    "drawn ILD extent at the scan", "dense fibrosis drawn (progressor)", "emphysema drawn")
IMAGING_INTEGRATES: tuple[str, ...] = (
    ("everything else, by a kernel average of the honest risks of a fixed-seed reference "
     "cohort within each (dense fibrosis, emphysema) cell"),)


def _gather(values: np.ndarray, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values[rows[i]]`` at fractional grid positions ``pos[i, j]``
    (rows (m,), pos (m, J)) -> (m, J)."""
    pos = np.clip(pos, 0.0, values.shape[1] - 1.000001)
    lo = np.floor(pos).astype(int)
    frac = pos - lo
    r = rows[:, None]
    return values[r, lo] * (1.0 - frac) + values[r, lo + 1] * frac


def _trapezoid_cum(y: np.ndarray, step: float) -> np.ndarray:
    """(m, J) running trapezoid integral along axis 1, starting at 0."""
    inc = 0.5 * (y[:, 1:] + y[:, :-1]) * step
    return np.concatenate([np.zeros((len(y), 1)), np.cumsum(inc, axis=1)], axis=1)


def frailty_posterior(log_frailty_sd: float, nodes: int, exposure: np.ndarray,
                      acute_known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z (Q,), weights (m, Q)): the frailty's quadrature nodes and, per scan, posterior
    weights given survival to the scan and the acute history.

    ``exposure`` (m,) is the frailty-free cumulative death hazard to the scan plus ``k`` times
    the frailty-free cumulative acute exposure (to the acute event, or to the scan when none
    happened); an acute event at a known time adds a factor ``e^z`` (its density).
    """
    x, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-x^2 / 2)
    z = log_frailty_sd * x
    logw = (np.log(w)[None, :] - np.exp(z)[None, :] * exposure[:, None]
            + z[None, :] * acute_known[:, None])
    logw -= logw.max(axis=1, keepdims=True)
    weights = np.exp(logw)
    return z, weights / weights.sum(axis=1, keepdims=True)


def expected_risks(grid: np.ndarray, base_log_hazard: np.ndarray, base_cum_hazard: np.ndarray,
                   path_cum_hazard: np.ndarray, rows: np.ndarray, tau: np.ndarray,
                   acute_tau: np.ndarray, p: Any) -> np.ndarray:
    """(m, len(HORIZONS_YEARS)) honest risks of scans (module docstring).

    ``grid`` (G,) years since entry; per patient (n, G): ``base_log_hazard`` and
    ``base_cum_hazard`` (no frailty, no acute term) and ``path_cum_hazard`` (no frailty, the
    realised acute term included: known at the scan when the acute event came before it).
    Per scan (m,): patient row, years since entry, acute time if it happened on or before
    the scan date (else inf). ``p``: the cohort's parameters.
    """
    grid_step = float(grid[1] - grid[0])
    stride = max(1, round(p.oracle_step_years / grid_step))
    step = grid_step * stride  # the oracle's integration step
    k = p.acute_rate_per_hazard
    extra = math.exp(p.acute_log_hr) - 1.0
    known = np.isfinite(acute_tau)
    pos_t = tau / grid_step
    h_path_t = _gather(path_cum_hazard, rows, pos_t[:, None])[:, 0]
    acute_exposure = _gather(base_cum_hazard, rows,
                             np.where(known, acute_tau, tau)[:, None] / grid_step)[:, 0]
    z, post = frailty_posterior(p.log_frailty_sd, p.oracle_frailty_nodes,
                                h_path_t + k * acute_exposure, known.astype(float))
    u = np.exp(z)  # (Q,)
    h_idx = [round(h / step) for h in HORIZONS_YEARS]
    offsets = np.arange(h_idx[-1] + 1, dtype=float)  # (J,) integration steps from the scan
    decay = np.exp(-offsets * step / p.acute_decay_years)  # (J,)
    out = np.empty((len(rows), len(HORIZONS_YEARS)))
    # known acute history: the future hazard is fixed up to the frailty
    d_path = (_gather(path_cum_hazard, rows, pos_t[:, None] + np.asarray(h_idx)[None, :]
                      * stride) - h_path_t[:, None])  # (m, H)
    surv_known = np.exp(-u[None, :, None] * d_path[:, None, :])  # (m, Q, H)
    out[:] = 1.0 - np.einsum("mq,mqh->mh", post, surv_known)
    todo = np.nonzero(~known)[0]
    for lo in range(0, len(todo), _CHUNK):
        idx = todo[lo:lo + _CHUNK]
        pos = pos_t[idx, None] + offsets[None, :] * stride  # (c, J)
        h0 = np.exp(_gather(base_log_hazard, rows[idx], pos))  # (c, J)
        d_base = _trapezoid_cum(h0, step)  # (c, J) frailty-free hazard from the scan
        conv = _trapezoid_cum(h0 * decay[None, :], step)  # for the acute excess J(a, T)
        # J(a, T): the acute term's hazard (per unit of its peak excess) from onset a to T
        excess = [(conv[:, t:t + 1] - conv[:, :t + 1]) / decay[None, :t + 1] for t in h_idx]
        surv = np.empty((len(idx), len(z), len(h_idx)))
        for q, uq in enumerate(u):
            density = k * uq * h0 * np.exp(-k * uq * d_base)  # (c, J) first acute at a
            for col, t_end in enumerate(h_idx):
                after = density[:, :t_end + 1] * np.exp(-uq * extra * excess[col])
                integral = 0.5 * (after[:, 1:] + after[:, :-1]).sum(axis=1) * step
                surv[:, q, col] = np.exp(-uq * d_base[:, t_end]) * (
                    np.exp(-k * uq * d_base[:, t_end]) + integral)
        out[idx] = 1.0 - np.einsum("cq,cqh->ch", post[idx], surv)
    return np.clip(out, 0.0, 1.0)


IMAGING_DRIVERS: tuple[str, ...] = ("true_ild_extent_pct", "progressor", "emphysema_pct")


def _cells(progressor: np.ndarray, emphysema_pct: np.ndarray) -> np.ndarray:
    return 2 * np.asarray(progressor, bool).astype(int) + (np.asarray(emphysema_pct) > 0)


def kernel_average(ref_extent: np.ndarray, ref_risk: np.ndarray, extent: np.ndarray,
                   bandwidth: float, min_neighbours: int) -> np.ndarray:
    """(m, H) Gaussian-kernel average of ``ref_risk`` (r, H) at ``extent`` (m,), with the
    bandwidth widened to the distance of the ``min_neighbours``-th nearest reference point
    where the reference is sparse."""
    out = np.empty((len(extent), ref_risk.shape[1]))
    kth = min(min_neighbours, len(ref_extent)) - 1
    for lo in range(0, len(extent), 512):
        d = extent[lo:lo + 512, None] - ref_extent[None, :]  # (c, r)
        width = np.maximum(bandwidth, np.partition(np.abs(d), kth, axis=1)[:, kth])
        w = np.exp(-0.5 * (d / width[:, None]) ** 2)
        out[lo:lo + 512] = (w @ ref_risk) / w.sum(axis=1, keepdims=True)
    return out


Reference = tuple[tuple[np.ndarray, np.ndarray], ...]


def reference_cells(extent_pct: np.ndarray, progressor: np.ndarray, emphysema_pct: np.ndarray,
                    risks: np.ndarray) -> Reference:
    """Per imaging cell (dense fibrosis x emphysema): (extents (r,), honest risks (r, H)) of
    a reference cohort's scans."""
    cells = _cells(progressor, emphysema_pct)
    extent = np.asarray(extent_pct, float)
    return tuple((extent[cells == c], risks[cells == c]) for c in range(4))


def imaging_risks(extent_pct: np.ndarray, progressor: np.ndarray, emphysema_pct: np.ndarray,
                  reference: Reference, p: Any) -> np.ndarray:
    """(m, len(HORIZONS_YEARS)) imaging-only oracle risks from the imaging drivers alone
    (module docstring), averaging ``reference`` (:func:`reference_cells`); non-decreasing in
    the horizon like the honest risks it averages."""
    extent = np.asarray(extent_pct, float)
    cells = _cells(progressor, emphysema_pct)
    out = np.empty((len(extent), len(HORIZONS_YEARS)))
    for c in range(4):
        at = cells == c
        if at.any():
            ref_extent, ref_risk = reference[c]
            out[at] = kernel_average(ref_extent, ref_risk, extent[at], p.imaging_bandwidth_pct,
                                     p.imaging_min_neighbours)
    return out
