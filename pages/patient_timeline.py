"""Patient timeline: scans, lung function, QCT trend, outcome marker, a slice viewer, and the
chosen scan's results as DICOM SEG + SR."""

from __future__ import annotations

import streamlit as st

from pages._pacs import dicom_download
from pages._shared import app_link, load_volume_with_lungs, page_setup, store_path
from sscmort_core import store as st_store
from sscmort_core.errors import SscmortError
from sscmort_core.pipeline.export_dicom import results_for_scan
from sscmort_core.views import charts, palette, render
from sscmort_core.views import radiomics as explain_tabular
from sscmort_core.views import radiomics_charts as charts_radiomics
from sscmort_core.views.names import column_label, format_shape, format_spacing, format_volume_ml

store = page_setup("Patient timeline")

patients = st_store.patients_frame(store)
if patients.empty:
    st.info("The store holds no patients yet.")
    st.stop()
ids = patients["patient_id"].tolist()
wanted = st.query_params.get("patient")
pid = st.selectbox("Patient (pseudonymous id)", ids,
                   index=ids.index(wanted) if wanted in ids else 0)
st.query_params["patient"] = pid
p = patients.set_index("patient_id").loc[pid]
scans = st_store.scans_frame(store, pid)
clinical = st_store.clinical_frame(store, pid)

died = bool(p["died"])
end = p["death_date"] if died else p["last_followup_date"]


def _show(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "unknown"
    return str(int(value)) if isinstance(value, float) else str(value)


st.markdown(
    f"**Sex** {_show(p['sex'])} &nbsp;·&nbsp; **Born** {_show(p['birth_year'])} "
    f"&nbsp;·&nbsp; **Subtype** {_show(p['subtype'])} &nbsp;·&nbsp; **Antibody** "
    f"{_show(p['antibody'])} &nbsp;·&nbsp; **Scans** {len(scans)} &nbsp;·&nbsp; "
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
    c1, c2 = st.columns([4, 1])
    shown = c1.multiselect("Models", models, default=default, key="tl_models")
    full = c2.toggle("0-100% axis", value=False, help="Off: the axis spans the risks shown.")
    colours = palette.model_colours(risk["model_id"].unique(), oracle=["oracle"])
    if shown:
        st.altair_chart(charts_radiomics.risk_lines_chart(
            risk[risk["model"].isin(shown)], colours=colours, full_scale=full),
            width="stretch")
    st.caption("Out-of-fold predictions: each scan's risk comes from a model that never saw "
               "this patient. The oracle line is the synthetic generator's true risk.")

table = scans[["scan_id", "scan_date", "kernel", "ild_extent_pct", "lung_volume_ml"]].copy()
st.dataframe(table, hide_index=True, width="stretch", column_config={
    **{c: st.column_config.Column(column_label(c)) for c in table.columns},
    "ild_extent_pct": st.column_config.NumberColumn("ILD extent (%)", format="%.1f"),
    "lung_volume_ml": st.column_config.NumberColumn("Lung volume (mL)", format="%.0f")})
links = st.columns(min(len(table), 6) or 1)
for i, r in enumerate(table.itertuples()):  # in-app links: same session, the scan's tab
    app_link("pages/radiomics_shap.py", f"Explain {r.scan_date} (SHAP)",
             {"scan": r.scan_id, "tab": "scan"}, icon=":material/insights:",
             where=links[i % len(links)])


@st.fragment
def _slice_viewer() -> None:
    """Scan picker, slice viewer and the scan's DICOM results: their widgets rerun only this
    part of the page."""
    st.subheader("Slice viewer")
    labels = {f"{r.scan_date}  ({r.scan_id}, {r.kernel or 'kernel ?'})": r.scan_id
              for r in scans.itertuples()}
    choice = st.selectbox("Scan", list(labels), key="tl_scan")
    try:
        vol, lungs = load_volume_with_lungs(str(store_path()), labels[choice])
    except SscmortError as err:
        st.error(str(err))
        return
    nz = vol.hu.shape[0]
    v1, v2 = st.columns([3, 1])
    with v2:
        z = st.slider("Axial slice (0 = caudal)", 0, nz - 1, nz // 2)
        window = st.radio("Window", ["Lung (-600/1500)", "Mediastinal (40/400)"])
        show_mask = st.checkbox("Outline lungs", value=True)
        st.caption(f"{format_shape(vol.hu.shape)} voxels (x x y x z), spacing "
                   f"{format_spacing(vol.spacing_mm)} mm; segmented lung volume "
                   f"{format_volume_ml(lungs.volume_ml)}")
    level_width = render.LUNG_WINDOW if window.startswith("Lung") else render.MEDIASTINAL_WINDOW
    outlines = ((lungs.mask[z], (0, 200, 255)),) if show_mask else ()
    upscale = max(1, 512 // vol.hu.shape[1])
    with v1:
        st.image(render.render_slice(vol.hu[z], level_width, outlines, upscale=upscale),
                 caption=f"Slice {z}; blue = segmented lung outline", width="content")
    scan_id = labels[choice]
    st.subheader("Results as DICOM")
    dicom_download(("scan", scan_id), lambda: results_for_scan(store, scan_id).results,
                   f"{scan_id}-sscmort-dicom.zip")


_slice_viewer()
