"""Longitudinal features: each scan with its patient's earlier scans (pure core + store reader).

For a scan on date t the features use that scan and the same patient's scans dated strictly
before t, never a later one (no leakage from the future: changing a later scan leaves every
earlier row unchanged; the tests perturb one to check):

* the cross-sectional measures at the scan: ILD extent %, high-attenuation area (HAA) %, lung
  volume (mL), mean lung density (HU), FVC and DLCO % predicted (the latest PFT on or before
  the scan within a year, as the clinical models take them, :func:`.clinical.pft_at_scan`);
* their change per year: the least-squares slope of the measure against time (years of
  365.25 days) over the scan and its earlier scans that have it (with two scans, the
  difference over the interval); 0 when fewer than two of them have it;
* ``years_since_first_scan``: from the patient's first stored scan;
* ``has_prior``: 1 when an earlier scan at least :data:`MIN_PRIOR_YEARS` before exists.

A scan without such a prior (a patient's first scan, or repeats within
:data:`MIN_PRIOR_YEARS`) falls back to its cross-sectional measures: every change per year is
0, ``years_since_first_scan`` is its real value and ``has_prior`` is 0, so the model scores it
on the cross-sectional features and the flag says so (the Patient timeline shows it).
Same-day scans are not each other's prior.

The model (kind ``longitudinal``) is the discrete-time survival model of :mod:`.survival`,
trained by :func:`~sscmort_core.tabular.train.train_tabular` on the same scans and
patient-grouped folds as the QCT model and evaluated by the same pipeline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sscmort_core import store as st
from sscmort_core.tabular.clinical import pft_at_scan

LONGITUDINAL_VERSION = "1"  # bump when the features change (the model id hashes the values)
MIN_PRIOR_YEARS = 0.25  # an earlier scan closer than this (about 3 months) is not a prior
DAYS_PER_YEAR = 365.25
MEASURES: tuple[str, ...] = ("ild_extent_pct", "haa_pct", "lung_volume_ml",
                             "mean_lung_density_hu", "fvc_pct_pred", "dlco_pct_pred")
SLOPES: tuple[str, ...] = tuple(f"{m}_per_year" for m in MEASURES)
LONGITUDINAL_FEATURES: tuple[str, ...] = (*MEASURES, *SLOPES, "years_since_first_scan",
                                          "has_prior")


def _slope(t: np.ndarray, x: np.ndarray) -> float:
    """Least-squares slope of x on t over the finite points (0 with fewer than two)."""
    ok = np.isfinite(x)
    t, x = t[ok], x[ok]
    if len(t) < 2 or np.ptp(t) <= 0:
        return 0.0
    tc = t - t.mean()
    return float(tc @ (x - x.mean()) / (tc @ tc))


def _patient_rows(part: pd.DataFrame) -> list[dict[str, float]]:
    """Feature rows of one patient's scans (``part`` sorted by date)."""
    days = (part["scan_date"] - part["scan_date"].min()).dt.days.to_numpy(dtype=float)
    years = days / DAYS_PER_YEAR  # (k,) since the first scan
    values = part[list(MEASURES)].to_numpy(dtype=float)  # (k, 6)
    rows = []
    for i in range(len(part)):
        earlier = years < years[i]  # strictly earlier dates only: never a later scan
        has_prior = bool(np.any(earlier & (years <= years[i] - MIN_PRIOR_YEARS)))
        row = {m: values[i, j] for j, m in enumerate(MEASURES)}
        use = earlier.copy()
        use[i] = True
        for j, name in enumerate(SLOPES):
            row[name] = _slope(years[use], values[use, j]) if has_prior else 0.0
        row["years_since_first_scan"] = float(years[i])
        row["has_prior"] = float(has_prior)
        rows.append(row)
    return rows


def longitudinal_features(scans: pd.DataFrame) -> pd.DataFrame:
    """Features of every scan (index ``scan_id``, columns :data:`LONGITUDINAL_FEATURES`).

    ``scans``: one row per scan with ``scan_id``, ``patient_id``, ``scan_date`` and the
    :data:`MEASURES` at that scan (NaN where missing)."""
    frame = scans[["scan_id", "patient_id", "scan_date", *MEASURES]].copy()
    frame["scan_date"] = pd.to_datetime(frame["scan_date"])
    frame = frame.sort_values(["patient_id", "scan_date", "scan_id"], kind="mergesort")
    ids, rows = [], []
    for _, part in frame.groupby("patient_id", sort=False):
        ids += part["scan_id"].tolist()
        rows += _patient_rows(part)
    out = pd.DataFrame(rows, index=pd.Index(ids, name="scan_id"),
                       columns=list(LONGITUDINAL_FEATURES))
    return out.reindex(scans["scan_id"])


def store_longitudinal_features(store: st.Store,
                                scan_ids: set[str] | None = None) -> pd.DataFrame:
    """:func:`longitudinal_features` of the stored scans with QCT (``scan_ids``: only these
    scans serve as current or earlier scans, e.g. those whose lung mask passed QC)."""
    scans = st.scans_frame(store)
    qct = st.qct_features_frame(store).set_index("scan_id")
    scans = scans.loc[scans["scan_id"].isin(qct.index)]
    if scan_ids is not None:
        scans = scans.loc[scans["scan_id"].isin(scan_ids)]
    pft = pft_at_scan(scans, st.clinical_frame(store))
    measures = qct.reindex(scans["scan_id"])[list(MEASURES[:4])].join(pft)
    frame = scans[["scan_id", "patient_id", "scan_date"]].set_index("scan_id").join(measures)
    return longitudinal_features(frame.reset_index())


def fallback_scans(store: st.Store, patient_id: str | None = None) -> pd.DataFrame:
    """scan_id, has_prior (bool) of the stored scans (of one patient): which scans the
    longitudinal model scores on cross-sectional features alone."""
    scans = st.scans_frame(store, patient_id)["scan_id"]  # a patient's features need only
    kept = set(scans) - st.training_excluded_scan_ids(store)  # their own scans; kept as the
    features = store_longitudinal_features(store, kept)  # model's training saw them
    return pd.DataFrame({"scan_id": features.index.to_numpy(),
                         "has_prior": features["has_prior"].to_numpy() > 0})
