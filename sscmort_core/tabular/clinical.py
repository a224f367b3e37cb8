"""Clinical reference models' features, per scan, from what the store knows at the scan date.

Kinds (trained like the imaging tabular models, by :func:`~sscmort_core.tabular.train.
train_tabular`, on the same scans, patient-grouped folds and evaluation):

* ``goh``: Goh staging (Goh et al., *Am J Respir Crit Care Med* 2008;177:1248-54) from the
  measured QCT ILD extent and FVC: extensive disease when extent > 20%, or extent 10-30%
  with FVC < 70% predicted (the staging's indeterminate band settled by FVC); limited
  otherwise. With no FVC near the scan, extent > 20% alone. One 0/1 feature ``goh_extensive``.
* ``clinical``: age at the scan, sex, diffuse subtype, antibody (anti-Scl-70, anti-
  centromere, anti-RNA polymerase III; other the reference), FVC and DLCO % predicted.
* ``sadl``: the SADL points score (Morisset et al., *Chest* 2017;152:999-1007: ever smoking,
  age, DLCO), fixed before looking: ever smoked 1 point; age < 55 years 0, 55-70 1, > 70 2;
  DLCO > 60% predicted 0, 40-60% 3, < 40% 4 (0-7; 0-3 low, 4-5 moderate, 6-7 high risk at
  3 years). The points are as summarised by medicalalgorithms.com from the paper's combined-
  cohort score, not checked against the paper's table here. One feature ``sadl_points``;
  like Goh, the score is fixed and only its mapping to 1/3/5-year risk (a discrete-time
  survival model on the points) is fitted, inside the training folds.
* ``clinical_qct``: ``clinical`` plus the QCT metrics (the clinical + imaging model).

FVC and DLCO are the patient's latest measurement on or before the scan date within
:data:`PFT_WINDOW_DAYS`, else missing (median-imputed by the model; a feature missing in more
than a fifth of the scans is dropped). Smoking comes from the patients table's
``ever_smoker`` (synthetic cohorts record it; a registry import may not, and then SADL has
no feature to train on).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sscmort_core import store as st

PFT_WINDOW_DAYS = 365
GOH_EXTENSIVE_PCT = 20.0
GOH_INDETERMINATE_PCT = (10.0, 30.0)
GOH_FVC_PCT = 70.0
SADL_AGE_YEARS = (55.0, 70.0)  # < 55: 0 points, 55-70: 1, > 70: 2
SADL_DLCO_PCT = (40.0, 60.0)  # > 60: 0 points, 40-60: 3, < 40: 4
CLINICAL_FEATURES: tuple[str, ...] = (
    "age_years", "male", "diffuse_subtype", "antibody_scl70", "antibody_centromere",
    "antibody_rnapol3", "fvc_pct_pred", "dlco_pct_pred")


def goh_extensive(extent_pct: np.ndarray, fvc_pct_pred: np.ndarray) -> np.ndarray:
    """(n,) 1.0 extensive / 0.0 limited by the Goh staging (module docstring); NaN where the
    extent is missing. Shapes (n,)."""
    extent = np.asarray(extent_pct, dtype=float)
    fvc = np.asarray(fvc_pct_pred, dtype=float)
    low, high = GOH_INDETERMINATE_PCT
    by_fvc = (extent >= low) & (extent <= high) & np.isfinite(fvc) & (fvc < GOH_FVC_PCT)
    out = ((extent > GOH_EXTENSIVE_PCT) | by_fvc).astype(float)
    return np.where(np.isfinite(extent), out, np.nan)


def sadl_points(ever_smoker: np.ndarray, age_years: np.ndarray,
                dlco_pct_pred: np.ndarray) -> np.ndarray:
    """(n,) SADL points 0-7 (module docstring); NaN where smoking, age or DLCO is missing.
    Inputs (n,): ever smoked (1/0, NaN unknown), age in years, DLCO % predicted."""
    smoke = np.asarray(ever_smoker, dtype=float)
    age = np.asarray(age_years, dtype=float)
    dlco = np.asarray(dlco_pct_pred, dtype=float)
    a_lo, a_hi = SADL_AGE_YEARS
    d_lo, d_hi = SADL_DLCO_PCT
    age_pts = np.where(age > a_hi, 2.0, np.where(age >= a_lo, 1.0, 0.0))
    dlco_pts = np.where(dlco < d_lo, 4.0, np.where(dlco <= d_hi, 3.0, 0.0))
    points = (smoke > 0).astype(float) + age_pts + dlco_pts
    known = np.isfinite(smoke) & np.isfinite(age) & np.isfinite(dlco)
    return np.where(known, points, np.nan)


def pft_at_scan(scans: pd.DataFrame, clinical: pd.DataFrame) -> pd.DataFrame:
    """FVC and DLCO % predicted per scan (index scan_id): the latest on or before the scan
    date within :data:`PFT_WINDOW_DAYS`, NaN otherwise."""
    left = scans[["scan_id", "patient_id", "scan_date"]].copy()
    left["scan_date"] = pd.to_datetime(left["scan_date"])
    right = clinical[["patient_id", "date", "fvc_pct_pred", "dlco_pct_pred"]].copy()
    right["date"] = pd.to_datetime(right["date"])
    out = pd.DataFrame(index=pd.Index(left["scan_id"], name="scan_id"),
                       columns=["fvc_pct_pred", "dlco_pct_pred"], dtype=float)
    if right.empty or left.empty:
        return out
    merged = pd.merge_asof(left.sort_values("scan_date"), right.sort_values("date"),
                           left_on="scan_date", right_on="date", by="patient_id",
                           direction="backward",
                           tolerance=pd.Timedelta(days=PFT_WINDOW_DAYS))
    return merged.set_index("scan_id")[["fvc_pct_pred", "dlco_pct_pred"]].reindex(out.index)


def reference_features(store: st.Store, kind: str, qct_features: tuple[str, ...]
                       ) -> pd.DataFrame:
    """Wide features of ``kind`` ("goh", "sadl", "clinical" or "clinical_qct"), index
    scan_id."""
    scans = st.scans_frame(store)
    patients = st.patients_frame(store).set_index("patient_id")
    pft = pft_at_scan(scans, st.clinical_frame(store))
    qct = st.qct_features_frame(store).set_index("scan_id").reindex(scans["scan_id"])
    if kind == "goh":
        stage = goh_extensive(qct["ild_extent_pct"].to_numpy(),
                              pft["fvc_pct_pred"].to_numpy())
        return pd.DataFrame({"goh_extensive": stage}, index=pd.Index(scans["scan_id"]))
    pt = patients.loc[scans["patient_id"]]
    scan_year = pd.to_datetime(scans["scan_date"]).dt.year.to_numpy()
    antibody = pt["antibody"].astype(str).to_numpy()
    wide = pd.DataFrame({
        "age_years": scan_year - pt["birth_year"].to_numpy(dtype=float),
        "male": (pt["sex"].to_numpy() == "M").astype(float),
        "diffuse_subtype": (pt["subtype"].to_numpy() == "diffuse").astype(float),
        "antibody_scl70": (antibody == "scl70").astype(float),
        "antibody_centromere": (antibody == "centromere").astype(float),
        "antibody_rnapol3": (antibody == "rnapol3").astype(float),
        "fvc_pct_pred": pft["fvc_pct_pred"].to_numpy(dtype=float),
        "dlco_pct_pred": pft["dlco_pct_pred"].to_numpy(dtype=float)},
        index=pd.Index(scans["scan_id"], name="scan_id"))
    if kind == "sadl":
        smoker = pt["ever_smoker"].astype("boolean").astype("Float64").to_numpy(
            dtype=float, na_value=np.nan)  # NULL (not recorded) -> NaN
        points = sadl_points(smoker, wide["age_years"].to_numpy(),
                             wide["dlco_pct_pred"].to_numpy())
        return pd.DataFrame({"sadl_points": points}, index=wide.index)
    if kind == "clinical_qct":
        wide = wide.join(qct[list(qct_features)])
    return wide
