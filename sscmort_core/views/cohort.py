"""Cohort-level facts computed from store frames: per-horizon label counts, filters, survival.

Pure functions over DataFrames (from :mod:`sscmort_core.store`); the pages only draw them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from sscmort_core.labels import HORIZONS_YEARS, label_scans


@dataclass(frozen=True)
class HorizonCount:
    horizon_years: int
    positive: int
    negative: int
    censored: int


def horizon_counts(scans: pd.DataFrame,
                   horizons: Sequence[int] = HORIZONS_YEARS) -> list[HorizonCount]:
    """Scans that are positive / negative / censored at each horizon (the one label rule)."""
    out = []
    for h in horizons:
        lab = label_scans(scans["scan_date"], scans["death_date"], scans["last_followup_date"], h)
        n_pos = lab.n_positive
        n_known = int(lab.known.sum())
        out.append(HorizonCount(h, n_pos, n_known - n_pos, lab.n_censored))
    return out


def horizon_counts_frame(counts: Sequence[HorizonCount]) -> pd.DataFrame:
    return pd.DataFrame([{"horizon (years)": c.horizon_years, "died within horizon": c.positive,
                          "known alive": c.negative, "censored": c.censored} for c in counts])


@dataclass(frozen=True)
class PatientFilter:
    """Cohort explorer filters. ``None`` or empty means "no restriction"."""

    sexes: tuple[str, ...] = ()
    subtypes: tuple[str, ...] = ()
    antibodies: tuple[str, ...] = ()
    age_range: tuple[float, float] | None = None
    fvc_range: tuple[float, float] | None = None
    dlco_range: tuple[float, float] | None = None
    sources: tuple[str, ...] = ()  # e.g. ("registry",): imported rows only


def filter_patients(patients: pd.DataFrame, flt: PatientFilter) -> pd.DataFrame:
    """Rows of ``patients`` (store.patients_frame) that pass every filter."""
    keep = pd.Series(True, index=patients.index)
    for column, allowed in (("sex", flt.sexes), ("subtype", flt.subtypes),
                            ("antibody", flt.antibodies), ("source", flt.sources)):
        if allowed:
            keep &= patients[column].isin(allowed)
    for column, rng in (("age_at_first_scan", flt.age_range), ("baseline_fvc", flt.fvc_range),
                        ("baseline_dlco", flt.dlco_range)):
        if rng is not None:
            values = patients[column]
            keep &= values.between(rng[0], rng[1]) | values.isna()
    return patients.loc[keep]


@dataclass(frozen=True)
class CohortKpis:
    """Overview headline numbers of (a source-filtered part of) the cohort."""

    patients: int
    scans: int
    deaths: int
    median_followup_years: float | None  # first scan to death or last follow-up


def sources(patients: pd.DataFrame) -> list[str]:
    """The sources present (synthetic, upload, a registry's label), synthetic last."""
    return sorted(patients["source"].dropna().unique(), key=lambda s: (s == "synthetic", s))


def by_source(patients: pd.DataFrame, scans: pd.DataFrame, chosen: Sequence[str]
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patients of the chosen sources and their scans (everything when none is chosen)."""
    if not chosen:
        return patients, scans
    keep = patients.loc[patients["source"].isin(list(chosen))]
    return keep, scans.loc[scans["patient_id"].isin(keep["patient_id"])]


def cohort_kpis(patients: pd.DataFrame, scans: pd.DataFrame) -> CohortKpis:
    """Counts and median follow-up (per patient with scans) of store frames."""
    fu = patients["followup_years"].dropna()
    return CohortKpis(int(len(patients)), int(len(scans)), int(patients["died"].sum()),
                      float(fu.median()) if len(fu) else None)


GROUPINGS: dict[str, str] = {
    "Sex": "sex",
    "Subtype": "subtype",
    "Antibody": "antibody",
    "Baseline ILD extent (QCT, >20% = extensive)": "extent_group",
    "Baseline FVC (< 70% predicted)": "fvc_group",
    "Baseline DLCO (< 50% predicted)": "dlco_group",
    "Age at first scan (< 60 vs >= 60)": "age_group",
}


def add_groupings(patients: pd.DataFrame, baseline_extent: pd.Series | None) -> pd.DataFrame:
    """Derived grouping columns for Kaplan-Meier curves.

    ``baseline_extent``: ILD extent % of each patient's first scan, indexed by patient_id
    (None when QCT has not been measured).
    """
    out = patients.copy()
    out["age_group"] = np.where(out["age_at_first_scan"] < 60, "< 60 years", ">= 60 years")
    out["fvc_group"] = np.select(
        [out["baseline_fvc"].isna(), out["baseline_fvc"] < 70],
        ["unknown", "FVC < 70%"], "FVC >= 70%")
    out["dlco_group"] = np.select(
        [out["baseline_dlco"].isna(), out["baseline_dlco"] < 50],
        ["unknown", "DLCO < 50%"], "DLCO >= 50%")
    if baseline_extent is not None:
        ext = out["patient_id"].map(baseline_extent)
        out["extent_group"] = np.select([ext.isna(), ext > 20],
                                        ["not measured", "extensive (> 20%)"],
                                        "limited (<= 20%)")
    else:
        out["extent_group"] = "not measured"
    return out


@dataclass(frozen=True)
class KaplanMeierGroup:
    name: str
    n: int
    events: int
    curve: pd.DataFrame  # columns: time_years, survival, ci_low, ci_high
    at_risk: pd.DataFrame  # columns: time_years, at_risk


@dataclass(frozen=True)
class KaplanMeierResult:
    groups: tuple[KaplanMeierGroup, ...]
    logrank_p: float | None  # None with fewer than two non-empty groups
    at_risk_times: tuple[float, ...] = field(default=(0.0, 1.0, 3.0, 5.0, 10.0))


def kaplan_meier(durations_years: np.ndarray, died: np.ndarray, groups: np.ndarray,
                 at_risk_times: Sequence[float] = (0.0, 1.0, 3.0, 5.0, 10.0)
                 ) -> KaplanMeierResult:
    """Kaplan-Meier curve (lifelines) per group, at-risk counts and a log-rank p-value."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    durations_years = np.asarray(durations_years, dtype=float)
    died = np.asarray(died, dtype=bool)
    groups = np.asarray(groups).astype(str)
    if not (len(durations_years) == len(died) == len(groups)):
        raise ValueError("durations, events and groups differ in length")
    results = []
    for name in sorted(set(groups)):
        sel = groups == name
        kmf = KaplanMeierFitter().fit(durations_years[sel], died[sel], label=name)
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_survival_function_
        curve = pd.DataFrame({"time_years": sf.index.to_numpy(), "survival": sf.to_numpy(),
                              "ci_low": ci.iloc[:, 0].to_numpy(),
                              "ci_high": ci.iloc[:, 1].to_numpy()})
        at_risk = pd.DataFrame({
            "time_years": list(at_risk_times),
            "at_risk": [int((durations_years[sel] >= t).sum()) for t in at_risk_times]})
        results.append(KaplanMeierGroup(name, int(sel.sum()), int(died[sel].sum()), curve,
                                        at_risk))
    p = None
    if len(results) >= 2:
        p = float(multivariate_logrank_test(durations_years, groups, died).p_value)
    return KaplanMeierResult(tuple(results), p, tuple(float(t) for t in at_risk_times))


HISTORY_FLAGS: dict[str, str] = {"ever_smoker": "ever smoker",
                                 "pulmonary_hypertension": "PH",
                                 "cardiac_involvement": "cardiac"}


def history_text(patients: pd.DataFrame) -> pd.Series:
    """Per patient one short cell of the history flags that are true ("ever smoker, PH"),
    "none" when all are known false, "unknown" when none is recorded (a registry without
    them): one column instead of three on a table that must fit the page."""
    def one(row: pd.Series) -> str:
        known = {k: row[k] for k in HISTORY_FLAGS if k in row and pd.notna(row[k])}
        if not known:
            return "unknown"
        true = [label for k, label in HISTORY_FLAGS.items() if known.get(k)]
        return ", ".join(true) or "none"
    if patients.empty:
        return pd.Series([], dtype=object, index=patients.index)
    return patients.apply(one, axis=1)


def scans_per_patient(scans: pd.DataFrame) -> pd.DataFrame:
    counts = scans.groupby("patient_id").size().value_counts().sort_index()
    return pd.DataFrame({"scans per patient": counts.index.astype(int),
                         "patients": counts.to_numpy()})


def scans_by_year(scans: pd.DataFrame) -> pd.DataFrame:
    years = pd.to_datetime(scans["scan_date"]).dt.year
    out = years.value_counts().sort_index()
    return pd.DataFrame({"year": out.index.astype(int), "scans": out.to_numpy()})
