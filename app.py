"""sscmort: Streamlit entry point. Page configuration and navigation over pages/.

Each page starts with ``pages._shared.page_setup`` (store, sidebar, research-use and synthetic
banners), so every page carries them however it is reached.
"""

from __future__ import annotations

import streamlit as st

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
    st.Page("pages/radiomics_shap.py", title="Radiomics & SHAP", icon=":material/insights:",
            url_path="radiomics_shap"),
    st.Page("pages/model_comparison.py", title="Model comparison", icon=":material/compare:",
            url_path="model_comparison"),
    st.Page("pages/models_jobs.py", title="Models & jobs", icon=":material/model_training:",
            url_path="models_jobs"),
    st.Page("pages/import_cohort.py", title="Import cohort",
            icon=":material/drive_folder_upload:", url_path="import_cohort"),
]

# Worker processes of the app's jobs (spawn / forkserver pools) re-import this main script as
# "__mp_main__"; they need nothing from it, so they draw nothing and load no page.
if __name__ != "__mp_main__":
    st.navigation(PAGES).run()
