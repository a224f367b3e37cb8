"""Upload & predict: a scan from files or a PACS; validate, de-identify, outline the lungs,
measure QCT, predict; results as DICOM SEG + SR (download, or back to the PACS); save.

The analysis and the model run are kept in the session (coming back from another page shows
them again); the progress of each stage shows at the top, where the user is looking."""

from __future__ import annotations

import streamlit as st

from pages._lungs import mask_notice, slice_viewer, zones_and_patterns
from pages._pacs import choose_scan, results_section
from pages._shared import page_setup
from pages._upload import risk_section, run_models, saliency_section, save_form
from sscmort_core import store as st_store
from sscmort_core.views import charts
from sscmort_core.views import lungs as lv
from sscmort_core.views.names import (
    QCT_LABELS,
    format_shape,
    format_spacing,
    format_volume_ml,
    ingest_report_lines,
)

store = page_setup("Upload & predict")
st.caption("Upload one chest CT (a zip of a DICOM series, several .dcm files, or one NIfTI / "
           "NRRD / MHA file) or fetch one from a PACS. Identifying DICOM tags are dropped on "
           "reading and never stored or shown; the patient gets a pseudonymous id.")

chosen = choose_scan(store)  # the "Upload files" and "From PACS" tabs
if chosen is None:
    st.info("Waiting for a scan.")
    st.stop()
analysis, key, fetched = chosen
vol, rep = analysis.volume, analysis.report
report = run_models(store, analysis, key)  # its progress shows here, at the top

st.subheader("Mortality risk from every registered model")
risk_section(report)
saliency_section(vol, analysis.lungs.mask, report)

st.subheader("Validation and de-identification")
c1, c2, c3 = st.columns(3)
c1.metric("Format", rep.source_format)
c2.metric("Voxels (x x y x z)", format_shape(vol.hu.shape))
c3.metric("Spacing (x x y x z, mm)", format_spacing(vol.spacing_mm))
st.write(f"Series: **{rep.chosen_series.description or 'no description'}**, kernel "
         f"{vol.kernel or 'unknown'}, scanner {vol.manufacturer or '?'} {vol.model or ''}.")
for line in ingest_report_lines(rep):
    st.write(line)
for w in rep.warnings:
    st.warning(w)

st.subheader("Lungs")
m = analysis.measures
st.metric("Lung volume", format_volume_ml(analysis.lungs.volume_ml))
st.caption(f"Left {format_volume_ml(analysis.lungs.left_volume_ml)}, right "
           f"{format_volume_ml(analysis.lungs.right_volume_ml)}.")
mask_notice(m.qc.summary())
slice_viewer(vol.hu, analysis.lungs.mask, m.patterns.labels, vol.spacing_mm, "up")
zones_and_patterns(lv.regions_of(m), m.patterns.extents(), "up")

st.subheader("Quantitative CT against the cohort")
cohort_qct = st_store.qct_frame(store)
q = analysis.qct.to_dict()
cols = st.columns(3)
for i, (k, label) in enumerate(QCT_LABELS.items()):
    with cols[i % 3]:
        shown = f"{q[k]:,.0f}" if k == "lung_volume_ml" else f"{q[k]:,.1f}"  # mL: integer
        st.metric(label, shown)
        if not cohort_qct.empty:
            st.altair_chart(charts.distribution_with_marker(  # the metric names it above
                cohort_qct[k].to_numpy(), q[k], f"Cohort ({len(cohort_qct):,} scans)", label),
                width="stretch")

results_section(analysis, report.predictions, key, fetched)
save_form(store, analysis, fetched)
