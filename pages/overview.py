"""Overview: cohort KPIs, follow-up, events per horizon, scans per patient, scan dates."""

from __future__ import annotations

import streamlit as st

from pages._shared import cohort_summary, page_setup
from sscmort_core import store as st_store
from sscmort_core.views import charts, cohort
from sscmort_core.views import lungs as lv

store = page_setup("Overview")

summary = cohort_summary()
if summary.scans == 0:
    st.info("The store holds no scans yet. Build the demo cohort with `sscmort demo`.")
    st.stop()

scans = st_store.scans_frame(store)
patients = st_store.patients_frame(store)
counts = cohort.horizon_counts(scans)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Patients", f"{summary.patients:,}")
c2.metric("Scans", f"{summary.scans:,}")
c3.metric("Median follow-up", f"{summary.median_followup_years:.1f} y"
          if summary.median_followup_years is not None else "n/a",
          help="From each patient's first scan to death or last follow-up.")
c4.metric("Deaths", f"{int(patients['died'].sum()):,}")

left, right = st.columns(2)
with left:
    st.altair_chart(charts.horizon_counts_chart(counts), width="stretch")
    st.dataframe(cohort.horizon_counts_frame(counts), hide_index=True,
                 width="stretch")
    st.caption("A scan is positive at horizon h if the patient died within h years of it, "
               "negative if known alive at h years, otherwise censored and left out of that "
               "horizon's binary metrics.")
with right:
    st.altair_chart(charts.simple_bar(cohort.scans_per_patient(scans), "scans per patient",
                                      "patients", "Scans per patient"),
                    width="stretch")
    st.altair_chart(charts.simple_bar(cohort.scans_by_year(scans), "year", "scans",
                                      "Scan dates over time"), width="stretch")

st.subheader("Best model per horizon")
from sscmort_core.views.comparison import best_models

best = best_models(store)
if not best:
    st.caption("No model has been evaluated yet: see the Model comparison page.")
for col, b in zip(st.columns(max(len(best), 1)), best):
    ci = "" if b.ci_low is None else f" [95% CI {b.ci_low:.3f}-{b.ci_high:.3f}]"
    col.metric(f"{b.horizon_years}-year AUC", f"{b.auc:.3f}",
               help=f"{b.n_scans} scans, {b.n_events} deaths within {b.horizon_years} y; "
                    "the synthetic oracle is left out.")
    col.caption(f"{b.label}{ci}")

st.subheader("Lung masks needing review")
flagged = lv.flagged_table(store)
if flagged.empty:
    st.caption("Every stored scan's lung mask passed its QC checks.")
else:
    st.dataframe(flagged, hide_index=True, width="stretch", column_config={
        "timeline": st.column_config.LinkColumn("Review", display_text="open timeline")})
    st.caption(f"{int(flagged['accepted_by'].isna().sum())} of {len(flagged)} flagged masks are "
               "left out of model training until accepted on the patient timeline.")
