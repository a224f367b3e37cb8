"""Cohort explorer: filters, Kaplan-Meier curves by a grouping, patient table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pages._shared import arrow_spec, page_setup, still_coming
from sscmort_core import store as st_store
from sscmort_core.views import charts, cohort
from sscmort_core.views.eval_charts import chart_spec
from sscmort_core.views.names import column_label, sentence

store = page_setup("Cohort explorer")

patients = st_store.patients_frame(store)
if patients.empty:
    if not still_coming("cohort"):
        st.info("The store holds no patients yet.")
    st.stop()
qct = st_store.scans_frame(store)
first = qct.sort_values("scan_date").groupby("patient_id").first()
baseline_extent = first["ild_extent_pct"] if first["ild_extent_pct"].notna().any() else None


def _range(label: str, column: str) -> tuple[float, float] | None:
    values = patients[column].dropna()
    if values.empty:
        return None
    lo, hi = float(np.floor(values.min())), float(np.ceil(values.max()))  # whole units
    picked = st.slider(label, lo, hi, (lo, hi), step=1.0, format="%.0f", key=f"rng_{column}")
    return None if picked == (lo, hi) else picked


with st.expander("Filters", expanded=True):
    f1, f2, f3, f4 = st.columns(4)
    sexes = f1.multiselect("Sex", sorted(patients["sex"].dropna().unique()))
    subtypes = f2.multiselect("Subtype", sorted(patients["subtype"].dropna().unique()))
    antibodies = f3.multiselect("Antibody", sorted(patients["antibody"].dropna().unique()))
    source_choice = f4.multiselect("Source", cohort.sources(patients),
                                   help="synthetic rows are simulated; other sources are "
                                        "real (uploaded or imported)")
    r1, r2, r3 = st.columns(3)
    with r1:
        age = _range("Age at first scan (years)", "age_at_first_scan")
    with r2:
        fvc = _range("Baseline FVC (% predicted)", "baseline_fvc")
    with r3:
        dlco = _range("Baseline DLCO (% predicted)", "baseline_dlco")

flt = cohort.PatientFilter(tuple(sexes), tuple(subtypes), tuple(antibodies), age, fvc, dlco,
                          tuple(source_choice))
chosen = cohort.add_groupings(cohort.filter_patients(patients, flt), baseline_extent)
st.caption(f"{len(chosen):,} of {len(patients):,} patients match the filters.")
if chosen.empty:
    st.warning("No patient matches these filters.")
    st.stop()

def _km_inputs(pts: pd.DataFrame, grouping: str) -> pd.DataFrame:
    """Follow-up, death and group of each patient: a frame, so the caches below hash its
    values (an object array would hash its pointers, and never hit)."""
    return pd.DataFrame({"followup": pts["followup_years"].to_numpy(),
                         "died": pts["died"].to_numpy(),
                         "group": pts[cohort.GROUPINGS[grouping]].to_numpy()})


@st.cache_data(show_spinner=False, max_entries=64)
def _km(inputs: pd.DataFrame) -> cohort.KaplanMeierResult:
    """Kaplan-Meier curves of one patient set and grouping (keyed on their values: a filter
    or grouping seen before is one look-up, issue 13)."""
    return cohort.kaplan_meier(inputs["followup"].to_numpy(), inputs["died"].to_numpy(),
                               inputs["group"].to_numpy())


@st.cache_data(show_spinner=False, max_entries=64)
def _km_spec(inputs: pd.DataFrame, title: str, bands: bool) -> dict:
    """The Kaplan-Meier chart's spec, data as Arrow bytes, built once per curves and look."""
    return arrow_spec(chart_spec(charts.kaplan_meier_chart(_km(inputs), title, bands=bands)))


@st.fragment  # grouping and bands rerun the survival curves only
def _survival(pts: pd.DataFrame) -> None:
    grouping = st.selectbox("Group Kaplan-Meier curves by", list(cohort.GROUPINGS))
    inputs = _km_inputs(pts, grouping)
    km = _km(inputs)
    p_text = ("log-rank p = n/a (one group)" if km.logrank_p is None
              else f"log-rank p = {km.logrank_p:.3g}")
    bands = st.toggle("95% CI bands", value=km.groups is not None and len(km.groups) <= 2,
                      help="Pale bands overlap when there are many groups.")
    st.vega_lite_chart(_km_spec(inputs, f"Survival from first scan by {sentence(grouping)} "
                                f"({p_text})", bands), width="stretch")
    st.caption("Number at risk")
    st.dataframe(charts.at_risk_table(km), width="stretch")


_survival(chosen)

st.subheader("Patients")


TABLE_W = {"patient_id": 100, "source": 70, "sex": 40, "subtype": 64, "antibody": 86,
           "history": 110, "age_at_first_scan": 56, "n_scans": 48, "baseline_fvc": 64,
           "baseline_dlco": 64, "died": 44, "followup_years": 68}


def _num(label: str, fmt: str, column: str):
    return st.column_config.NumberColumn(label, format=fmt, width=TABLE_W[column])


table = chosen[["patient_id", "source", "sex", "subtype", "antibody", "age_at_first_scan",
                "n_scans", "baseline_fvc", "baseline_dlco", "died", "followup_years"]].copy()
table.insert(5, "history", cohort.history_text(chosen))  # smoking, PH, cardiac in one cell
table["patient_id"] = "patient_timeline?patient=" + table["patient_id"]  # id as its link
if patients["source"].nunique() <= 1:  # one source in the store: the column says nothing
    table = table.drop(columns=["source"])
st.dataframe(
    table, hide_index=True, width="stretch",
    column_config={  # widths in px: the table fits 1280 px without sideways scrolling
        **{c: st.column_config.Column(column_label(c), width=TABLE_W.get(c, 60))
           for c in table.columns},
        "patient_id": st.column_config.LinkColumn("Patient (timeline)", width=TABLE_W[
            "patient_id"], display_text=r"patient=(.*)$"),
        "age_at_first_scan": _num("Age (y)", "%d", "age_at_first_scan"),
        "baseline_fvc": _num("FVC (% pred.)", "%.0f", "baseline_fvc"),
        "baseline_dlco": _num("DLCO (% pred.)", "%.0f", "baseline_dlco"),
        "followup_years": _num("Follow-up (y)", "%.1f", "followup_years"),
    })
