"""Patient timeline: scans, lung function, QCT trend, outcome marker, a slice viewer, and the
chosen scan's results as DICOM SEG + SR."""

from __future__ import annotations

import streamlit as st

from pages._lungs import mask_notice, slice_viewer, zones_and_patterns
from pages._pacs import dicom_download
from pages._shared import (
    allowed,
    app_link,
    audit,
    audit_view,
    load_pattern_labels,
    load_volume_with_lungs,
    page_setup,
    refuse_unknown,
    require,
    still_coming,
    store_path,
)
from sscmort_core import store as st_store
from sscmort_core.errors import SscmortError
from sscmort_core.pipeline.export_dicom import results_for_scan
from sscmort_core.views import charts, palette
from sscmort_core.views import lungs as lv
from sscmort_core.views import radiomics as explain_tabular
from sscmort_core.views import radiomics_charts as charts_radiomics
from sscmort_core.views.names import column_label, format_volume_ml

store = page_setup("Patient timeline")

patients = st_store.patients_frame(store)
if patients.empty:
    if not still_coming("cohort"):
        st.info("The store holds no patients yet.")
    st.stop()
ids = patients["patient_id"].tolist()
wanted = st.query_params.get("patient")
if wanted is not None and wanted not in ids:
    refuse_unknown("view patient", wanted, "The patient named in the link is not in this store.")
pid = st.selectbox("Patient (pseudonymous id)", ids,
                   index=ids.index(wanted) if wanted in ids else 0)
st.query_params["patient"] = pid
audit_view("view patient", (pid,))
p = patients.set_index("patient_id").loc[pid]
scans = st_store.scans_frame(store, pid)
clinical = st_store.clinical_frame(store, pid)

died = bool(p["died"])
end = p["death_date"] if died else p["last_followup_date"]


def _show(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "unknown"
    if str(value) in ("True", "False"):  # bool or numpy bool: a recorded yes / no
        return "yes" if str(value) == "True" else "no"
    return str(int(value)) if isinstance(value, float) else str(value)


st.markdown(
    f"**Sex** {_show(p['sex'])} &nbsp;·&nbsp; **Born** {_show(p['birth_year'])} "
    f"&nbsp;·&nbsp; **Subtype** {_show(p['subtype'])} &nbsp;·&nbsp; **Antibody** "
    f"{_show(p['antibody'])} &nbsp;·&nbsp; **Ever smoker** {_show(p['ever_smoker'])} "
    f"&nbsp;·&nbsp; **Pulmonary hypertension** {_show(p['pulmonary_hypertension'])} "
    f"&nbsp;·&nbsp; **Cardiac involvement** {_show(p['cardiac_involvement'])} &nbsp;·&nbsp; "
    f"**Scans** {len(scans)} &nbsp;·&nbsp; "
    + (f":red[**Died {end}**]" if died else f"**Alive at last follow-up** {end}"))

st.altair_chart(charts.patient_timeline_chart(clinical, scans, end, died), width="stretch")
if scans["ild_extent_pct"].notna().any():
    left, right = st.columns(2)
    left.altair_chart(charts.trend_chart(
        scans, "scan_date", {"ild_extent_pct": "ILD extent %", "haa_pct": "HAA %"},
        "Quantitative CT: disease extent", "% of lung"), width="stretch")
    right.altair_chart(charts.trend_chart(
        scans, "scan_date", {"lung_volume_ml": "Lung volume (mL)"},
        "Quantitative CT: lung volume", "mL"), width="stretch")

risk = explain_tabular.risk_lines_frame(store, pid)
if not risk.empty:
    st.subheader("Predicted risk over the patient's scans")
    models = sorted(risk["model"].unique())
    default = [m for m in models if m.startswith("Oracle")] + \
        [m for m in models if not m.startswith("Oracle")][:2]
    default += [m for m in risk.loc[risk["kind"] == "longitudinal", "model"].unique()
                if m not in default]  # its history-based risk is drawn by default
    c1, c2 = st.columns([4, 1])
    shown = c1.multiselect("Models", models, default=default, key="tl_models")
    full = c2.toggle("0-100% axis", value=False, help="Off: the axis spans the risks shown.")
    colours = palette.model_colours(risk["model_id"].unique(),
                                    oracle=[m for m in risk["model_id"].unique()
                                            if str(m).startswith("oracle")])
    if shown:
        st.altair_chart(charts_radiomics.risk_lines_chart(
            risk[risk["model"].isin(shown)], colours=colours, full_scale=full),
            width="stretch")
    st.caption("Out-of-fold predictions: each scan's risk comes from a model that never saw "
               "this patient. The oracle line is the synthetic generator's true risk.")
    if risk.loc[risk["model"].isin(shown), "fallback"].any():
        st.caption("Ringed points: the longitudinal model had no earlier scan of this patient "
                   "there, so it scored the scan on its cross-sectional features alone "
                   "(fallback, flagged).")

table = scans[["scan_id", "scan_date", "kernel", "ild_extent_pct", "lung_volume_ml"]].copy()
table["lung mask"] = lv.mask_status(store, table["scan_id"].tolist())
st.dataframe(table, hide_index=True, width="stretch", column_config={
    **{c: st.column_config.Column(column_label(c)) for c in table.columns},
    "ild_extent_pct": st.column_config.NumberColumn("ILD extent (%)", format="%.1f"),
    "lung_volume_ml": st.column_config.NumberColumn("Lung volume (mL)", format="%.0f")})
links = st.columns(min(len(table), 6) or 1)
for i, r in enumerate(table.itertuples()):  # in-app links: same session, the scan's tab
    app_link("pages/radiomics_shap.py", f"Explain {r.scan_date} (SHAP)",
             {"scan": r.scan_id, "tab": "scan"}, icon=":material/insights:",
             where=links[i % len(links)])

st.subheader("Lungs of one scan")
labels = {f"{r.scan_date}  ({r.scan_id}, {r.kernel or 'kernel ?'})": r.scan_id
          for r in scans.itertuples()}
wanted_scan = st.query_params.get("scan")
names = list(labels)
choice = st.selectbox("Scan", names, index=[labels[n] for n in names].index(wanted_scan)
                      if wanted_scan in labels.values() else 0)
scan_id = labels[choice]
audit_view("view scan", (scan_id,))
try:
    vol, lungs = load_volume_with_lungs(str(store_path()), scan_id)
    pattern_labels = load_pattern_labels(str(store_path()), scan_id)
except SscmortError as err:
    st.error(str(err))
    st.stop()
review = lv.mask_review(store, scan_id)
mask_notice(review.message, review.accepted_by, review.accepted_at)
if review.excluded_from_training and allowed("accept mask") \
        and st.button("Accept this lung mask (reviewed)") and require("accept mask", (scan_id,)):
    review = lv.accept_mask(store, scan_id, who=st.session_state["_access"].who)
    audit("accept mask", (scan_id,), detail=review.message)
    st.success(f"Mask accepted by {review.accepted_by} on {review.accepted_at}.")
slice_viewer(vol.hu, lungs.mask, pattern_labels, vol.spacing_mm, "tl",
             note=f"segmented lung volume {format_volume_ml(lungs.volume_ml)}")
regions = st_store.regions_frame(store, [scan_id])
extents = st_store.patterns_frame(store).set_index("scan_id")
if len(regions) and scan_id in extents.index:
    zones_and_patterns(regions, extents.loc[scan_id], "tl")
elif not still_coming("scans"):
    st.info("This scan's zones and patterns are not measured yet (`sscmort demo` or ingest "
            "measure them).")

st.subheader("Results as DICOM")
dicom_download(("scan", labels[choice]), lambda: results_for_scan(store, labels[choice]).results,
               f"{labels[choice]}-sscmort-dicom.zip", object_ids=(labels[choice],))
