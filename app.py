"""sscmort: Streamlit entry point. Navigation, sidebar (store, synthetic flag) and banners."""

from __future__ import annotations

import streamlit as st

from pages._shared import RESEARCH_NOTICE, banners, get_store, store_path
from sscmort_core import store as st_store

st.set_page_config(page_title="sscmort: SSc-ILD mortality risk from CT", layout="wide",
                   page_icon=":material/pulmonology:")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/cohort_explorer.py", title="Cohort explorer", icon=":material/groups:",
            url_path="cohort_explorer"),
    st.Page("pages/patient_timeline.py", title="Patient timeline", icon=":material/timeline:",
            url_path="patient_timeline"),
    st.Page("pages/upload_predict.py", title="Upload & predict", icon=":material/upload:",
            url_path="upload_predict"),
]

nav = st.navigation(PAGES)

store = get_store()
with st.sidebar:
    st.caption("Cohort store")
    st.code(str(store_path()), language=None)
    summary = st_store.cohort_summary(store)
    if st_store.is_synthetic(store):
        st.markdown(":orange-badge[SYNTHETIC DATA]")
    st.caption(f"{summary.patients:,} patients, {summary.scans:,} scans")
    st.caption(RESEARCH_NOTICE)

banners(store)
nav.run()
