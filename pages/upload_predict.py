"""Upload & predict: a scan from files or a PACS; validate, de-identify, outline the lungs,
measure QCT, predict; results as DICOM SEG + SR (download, or back to the PACS); save."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from pages._lungs import mask_notice, slice_viewer, zones_and_patterns
from pages._pacs import choose_scan, results_section, upload_id
from pages._shared import audit, page_setup, require, show_error
from sscmort_core import store as st_store
from sscmort_core.deep.saliency import saliency_for_volume
from sscmort_core.errors import SscmortError
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline.ingest import save_analysis
from sscmort_core.pipeline.predict import predict_all
from sscmort_core.util.paths import default_models_dir
from sscmort_core.views import charts
from sscmort_core.views import lungs as lv
from sscmort_core.views.names import QCT_LABELS, ingest_report_lines
from sscmort_core.views.render import colorbar_rgb, overlay_rgb

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

st.subheader("Validation and de-identification")
c1, c2, c3 = st.columns(3)
c1.metric("Format", rep.source_format)
c2.metric("Slices", f"{vol.hu.shape[0]} x {vol.hu.shape[1]} x {vol.hu.shape[2]}")
c3.metric("Spacing (mm)", " x ".join(f"{s:.2f}" for s in vol.spacing_mm[::-1]))
st.write(f"Series: **{rep.chosen_series.description or 'no description'}**, kernel "
         f"{vol.kernel or 'unknown'}, scanner {vol.manufacturer or '?'} {vol.model or ''}.")
for line in ingest_report_lines(rep):
    st.write(line)
for w in rep.warnings:
    st.warning(w)

st.subheader("Lungs")
m = analysis.measures
st.metric("Lung volume", f"{analysis.lungs.volume_ml:,.0f} mL")
st.caption(f"Left {analysis.lungs.left_volume_ml:,.0f} mL, right "
           f"{analysis.lungs.right_volume_ml:,.0f} mL.")
mask_notice(m.qc.summary())
slice_viewer(vol.hu, analysis.lungs.mask, m.patterns.labels, vol.spacing_mm, "up")
zones_and_patterns(lv.regions_of(m), m.patterns.extents(), "up")

st.subheader("Quantitative CT against the cohort")
cohort_qct = st_store.qct_frame(store)
q = analysis.qct.to_dict()
cols = st.columns(3)
for i, (k, label) in enumerate(QCT_LABELS.items()):
    with cols[i % 3]:
        st.metric(label, f"{q[k]:,.1f}")
        if not cohort_qct.empty:
            st.altair_chart(charts.distribution_with_marker(cohort_qct[k].to_numpy(), q[k],
                                                            f"{label}: cohort", label),
                            width="stretch")

st.subheader("Mortality risk from every registered model")
# Model runs and saliency are kept per upload: moving a slider must not rerun them.
if st.session_state.get("risk_key") != key:
    if not require("predict", (upload_id(analysis),)):
        st.stop()
    with st.spinner("Running the models..."):
        st.session_state["risk_report"] = predict_all(store, analysis)
    st.session_state["risk_key"], st.session_state["saliency"] = key, {}
    audit("predict", (upload_id(analysis),),
          detail=f"{len(st.session_state['risk_report'].predictions)} predictions")
report = st.session_state["risk_report"]
for who, problem in report.problems:
    st.error(f"{who}: {problem}")
if report.predictions:
    table = pd.DataFrame([p.as_row() for p in report.predictions])
    st.dataframe(table.drop(columns=["model_id"]), hide_index=True, width="stretch",
                 column_config={f"{h}-year risk": st.column_config.ProgressColumn(
                     f"{h}-year risk", format="percent", min_value=0.0, max_value=1.0)
                     for h in HORIZONS_YEARS})
    st.caption(f"{len(report.predictions)} predictions in {report.seconds:.1f} s. Risks never "
               "fall with the horizon. Models trained on the synthetic cohort say nothing "
               "about real patients.")
    deep = [p for p in report.predictions if p.kind == "deep"]
    if deep:
        s1, s2 = st.columns([1, 1])
        model_id = s1.selectbox("Saliency of model", [p.model_id for p in deep],
                                format_func=lambda m: next(p.label for p in deep
                                                           if p.model_id == m))
        horizon = s2.radio("Horizon", HORIZONS_YEARS, index=len(HORIZONS_YEARS) - 1,
                           horizontal=True, format_func=lambda h: f"{h} year" + "s" * (h > 1))
        cached = st.session_state["saliency"]
        if (model_id, horizon) not in cached:
            try:  # the model may have been retrained or removed since the prediction
                cached[(model_id, horizon)] = saliency_for_volume(
                    vol.hu, analysis.lungs.mask, model_id=model_id,
                    models_dir=default_models_dir(), horizon_years=horizon)
            except SscmortError as err:
                show_error(err)
                st.stop()
        sal = cached[(model_id, horizon)]
        cols = st.columns(len(sal.slices))
        for i, (col, sl) in enumerate(zip(cols, sal.slices)):
            col.image(overlay_rgb(sal, i, upscale=3), width="stretch",
                      caption=f"slice {sl.z_index}, attention {sl.attention:.2f}")
        st.image(colorbar_rgb(), caption="saliency: none (left) to strongest (right)",
                 width=256)
        st.caption(sal.legend)
else:
    st.info("No model is registered yet: train them on the Models & jobs page or with "
            "`sscmort train`.")

results_section(analysis, report.predictions, key, fetched)

st.subheader("Save to cohort")
patients = st_store.patients_frame(store)
with st.form("save"):
    mode = st.radio("Patient", ["New patient", "Existing patient"], horizontal=True)
    existing = st.selectbox("Existing patient (pseudonymous id)", patients["patient_id"])
    scan_date = st.date_input("Scan date", value=vol.study_date or dt.date.today(),
                              min_value=dt.date(1990, 1, 1), max_value=dt.date.today())
    if st.form_submit_button("Save to cohort", type="primary") and \
            require("save", (upload_id(analysis),)):
        try:
            res = save_analysis(store, analysis, scan_date=scan_date,
                                patient_id=existing if mode == "Existing patient" else None,
                                source_name="pacs" if fetched is not None else "upload")
        except SscmortError as err:
            show_error(err)
        else:
            audit("save", (res.patient_id, res.scan_id))
            st.success(f"Saved as scan {res.scan_id} of patient {res.patient_id}."
                       + (f" {res.mask_review}: accept the mask on the patient timeline to "
                          "use it in training." if res.mask_review else ""))
