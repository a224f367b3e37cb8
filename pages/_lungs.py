"""App-side drawing of a scan's lungs, shared by the upload page and the patient timeline:
the slice viewer (lung outline, ILD pattern overlay and its legend), the zone map, the
pattern extents and the mask QC notice. The data comes from sscmort_core.views.lungs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from sscmort_core.views import charts, render
from sscmort_core.views import lungs as lv
from sscmort_core.views.names import format_shape, format_spacing


@st.fragment
def slice_viewer(hu: np.ndarray, mask: np.ndarray, labels: np.ndarray | None,
                 spacing_mm: tuple[float, float, float], key: str, note: str = "") -> None:
    """Axial slice viewer: window, lung outline, pattern overlay with its legend; ``note``
    ends the caption of the controls. A fragment: its widgets rerun only the viewer."""
    nz = hu.shape[0]
    view, controls = st.columns([3, 1])
    with controls:
        z = st.slider("Axial slice (0 = caudal)", 0, nz - 1, nz // 2, key=f"{key}_z")
        window = st.radio("Window", ["Lung (-600/1500)", "Mediastinal (40/400)"],
                          key=f"{key}_window")
        show_mask = st.checkbox("Outline lungs", value=True, key=f"{key}_outline")
        show_patterns = labels is not None and st.checkbox(
            "ILD pattern overlay", value=True, key=f"{key}_patterns")
        st.caption(f"{format_shape(hu.shape)} voxels (x x y x z), spacing "
                   f"{format_spacing(spacing_mm)} mm" + (f"; {note}" if note else ""))
    level_width = render.LUNG_WINDOW if window.startswith("Lung") else render.MEDIASTINAL_WINDOW
    up = max(1, 512 // hu.shape[1])
    if show_patterns:
        image = lv.pattern_overlay_rgb(hu[z], labels[z], window=level_width)
        if show_mask:
            edge = render.outline(mask[z])
            image[edge] = (0, 200, 255)
        image = np.repeat(np.repeat(image, up, axis=0), up, axis=1)
    else:
        outlines = ((mask[z], (0, 200, 255)),) if show_mask else ()
        image = render.render_slice(hu[z], level_width, outlines, upscale=up)
    with view:
        st.image(image, caption=f"Slice {z}; blue = segmented lung outline", width="content")
        if show_patterns:
            st.markdown(f"<small>ILD patterns: {lv.pattern_legend_html()} (normal lung not "
                        "coloured)</small>", unsafe_allow_html=True)


def zones_and_patterns(regions: pd.DataFrame, extents: dict[str, float] | pd.Series,
                       key: str) -> None:
    """The zone map (metric chosen) beside the pattern extents table."""
    left, right = st.columns([3, 2])
    with left:
        metric = st.selectbox("Zone map shows", list(lv.ZONE_METRICS),
                              format_func=lv.ZONE_METRICS.get, key=f"{key}_metric")
        st.altair_chart(charts.zone_map_chart(lv.zone_map_frame(regions, metric),
                                              lv.ZONE_METRICS[metric]), width="stretch")
        ratio = lv.basal_subpleural_ratio(regions, metric)
        st.caption("Thirds of each lung's height; subpleural = within 10 mm of the lung's "
                   "surface." + ("" if ratio is None else f" Lower subpleural / upper core: "
                                                           f"{ratio:.1f}x."))
    with right:
        st.dataframe(lv.pattern_table(extents), hide_index=True, width="stretch",
                     column_config={"extent_pct": st.column_config.NumberColumn(
                         "Extent (% of lung)", format="%.1f")})
        st.caption("From the ILD pattern map (local density histograms; fitted on synthetic "
                   "phantoms). Extents under the map's detection floor read 0.")


def mask_notice(message: str, accepted_by: str | None = None, accepted_at: object = None) -> None:
    """The mask QC notice: a warning naming the failed checks, or that it was accepted."""
    if not message:
        return
    if accepted_by:
        st.info(f"{message} (accepted by {accepted_by} on {accepted_at}; used in training)")
    else:
        st.warning(f"{message}. Left out of model training until accepted.")
