"""App-side parts of the Upload & predict page (issue 14): the model run with its progress at
the top, the risk table with the spread across models, the saliency picker (a fragment: its
widgets rerun only itself) and the save form. Logic lives in ``sscmort_core.views.upload``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Hashable

import streamlit as st

from pages._pacs import upload_id
from pages._shared import audit, require, show_error
from sscmort_core import store as st_store
from sscmort_core.errors import SscmortError
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline.ingest import save_analysis
from sscmort_core.pipeline.predict import RiskReport, predict_all
from sscmort_core.util.paths import default_models_dir
from sscmort_core.views.names import format_risk, horizon_label
from sscmort_core.views.render import colorbar_rgb, overlay_full_rgb
from sscmort_core.views.upload import risk_spread, risk_table, saliency_slices_shown


def run_models(store: st_store.Store, analysis: Any, key: Hashable) -> RiskReport:
    """Every registered model on the analysis, once per upload (kept in the session, so a
    slider or another page does not rerun them), with the stage shown where the user looks."""
    state = st.session_state
    if state.get("risk_key") != key:
        if not require("predict", (upload_id(analysis),)):
            st.stop()
        with st.status("Running the models...", expanded=True) as status:
            def progress(stage: str, done: int, total: int) -> None:
                status.update(label=f"Running the models: step {done + 1}/{total}, {stage}")
                status.write(f"Step {done + 1}/{total}: {stage}")

            report = predict_all(store, analysis, progress=progress)
            status.update(label=f"Models done: {len(report.predictions)} predictions in "
                          f"{report.seconds:.0f} s", state="complete", expanded=False)
        state["risk_report"], state["risk_key"], state["saliency"] = report, key, {}
        audit("predict", (upload_id(analysis),), detail=f"{len(report.predictions)} predictions")
    return state["risk_report"]


def risk_section(report: RiskReport) -> None:
    for who, problem in report.problems:
        st.error(f"{who}: {problem}")
    if not report.predictions:
        st.info("No model is registered yet: train them on the Models & jobs page or with "
                "`sscmort train`.")
        return
    spread = risk_spread(report.predictions)
    if spread:
        cols = st.columns(len(spread))
        for col, s in zip(cols, spread):
            col.metric(f"{horizon_label(s.horizon_years)} risk across {s.n_models} models",
                       f"{format_risk(s.low)} to {format_risk(s.high)}",
                       help=f"Median {format_risk(s.median)}; lowest and highest of the "
                            "models in the table below (the synthetic oracle left out).")
    st.table(risk_table(report.predictions).set_index("Model"))  # every column, notes whole
    st.caption(f"{len(report.predictions)} predictions in {report.seconds:.1f} s. Risks are "
               "whole percents and never fall with the horizon. Models trained on the "
               "synthetic cohort say nothing about real patients.")


@st.fragment
def saliency_section(vol: Any, lung_mask: Any, report: RiskReport) -> None:
    """Grad-CAM of a chosen deep model and horizon; reruns alone when its widgets change."""
    deep = [p for p in report.predictions if p.kind == "deep"]
    if not deep:
        return
    st.subheader("Where the deep models looked")
    s1, s2 = st.columns([1, 1])
    model_id = s1.selectbox("Saliency of model", [p.model_id for p in deep],
                            format_func=lambda m: next(p.label for p in deep
                                                       if p.model_id == m))
    horizon = s2.radio("Horizon", HORIZONS_YEARS, index=len(HORIZONS_YEARS) - 1,
                       horizontal=True, format_func=horizon_label)
    cached = st.session_state.setdefault("saliency", {})
    if (model_id, horizon) not in cached:
        # torch and timm load when a saliency is first asked for, not with the page
        from sscmort_core.deep.saliency import saliency_for_volume  # heavy: torch

        try:  # the model may have been retrained or removed since the prediction
            with st.spinner("Grad-CAM on the model's slices..."):
                cached[(model_id, horizon)] = saliency_for_volume(
                    vol.hu, lung_mask, model_id=model_id, models_dir=default_models_dir(),
                    horizon_years=horizon, top=8)
        except SscmortError as err:
            show_error(err)
            return
    sal = cached[(model_id, horizon)]
    shown = saliency_slices_shown(sal, lung_mask)
    if not shown:
        st.info("None of the model's highest-attention slices lies within the lungs.")
        return
    for col, i in zip(st.columns(len(shown)), shown):
        sl = sal.slices[i]
        col.image(overlay_full_rgb(sal, i, vol.hu), width="stretch",
                  caption=f"Slice {sl.z_index} (0 = caudal), attention {sl.attention:.2f}")
    st.image(colorbar_rgb(), width=256,
             caption="Uncoloured (left): little or no contribution; red: some; yellow "
                     "(right): strongest on the slices shown")
    st.caption(sal.legend)


def save_form(store: st_store.Store, analysis: Any, fetched: Any) -> None:
    """Save as a new patient, or as a scan of an existing one (the picker only then)."""
    st.subheader("Save to cohort")
    mode = st.radio("Patient", ["New patient", "Existing patient"], horizontal=True,
                    key="save_mode")
    with st.form("save"):
        existing = None
        if mode == "Existing patient":
            existing = st.selectbox("Existing patient (pseudonymous id)",
                                    st_store.patients_frame(store)["patient_id"])
        vol = analysis.volume
        scan_date = st.date_input("Scan date", value=vol.study_date or dt.date.today(),
                                  min_value=dt.date(1990, 1, 1), max_value=dt.date.today())
        if st.form_submit_button("Save to cohort", type="primary") and \
                require("save", (upload_id(analysis),)):
            try:
                res = save_analysis(store, analysis, scan_date=scan_date, patient_id=existing,
                                    source_name="pacs" if fetched is not None else "upload")
            except SscmortError as err:
                show_error(err)
            else:
                audit("save", (res.patient_id, res.scan_id))
                st.success(f"Saved as scan {res.scan_id} of patient {res.patient_id}."
                           + (f" {res.mask_review}: accept the mask on the patient timeline "
                              "to use it in training." if res.mask_review else ""))
