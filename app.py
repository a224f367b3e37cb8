"""sscmort: Streamlit entry point. Page configuration, the login gate and navigation over
pages/, filtered by role.

The gate (``pages._shared.current_access``) resolves who is acting and with which role, or
shows the login box / one refusal and stops. A page the role may not open is hidden from the
navigation; reached by its URL anyway, its ``page_setup`` refuses it (and audits that). Each
page starts with ``pages._shared.page_setup`` (store, page guard, sidebar, research-use and
synthetic banners), so every page carries them however it is reached. ``run_page`` logs each
page's script time.
"""

from __future__ import annotations

import streamlit as st

from pages._shared import current_access, run_page

st.set_page_config(page_title="sscmort: SSc-ILD mortality risk from CT", layout="wide",
                   page_icon=":material/pulmonology:")


def pages(access) -> list[st.Page]:
    """Every page; one the role may not open is hidden (its guard refuses it by URL too)."""
    def page(key: str, title: str, icon: str, **kwargs) -> st.Page:
        return st.Page(f"pages/{key}.py", title=title, icon=icon, **kwargs,
                       visibility="visible" if access.can_open(key) else "hidden")

    return [
        page("overview", "Overview", ":material/dashboard:", default=True),
        page("cohort_explorer", "Cohort explorer", ":material/groups:",
             url_path="cohort_explorer"),
        page("patient_timeline", "Patient timeline", ":material/timeline:",
             url_path="patient_timeline"),
        page("upload_predict", "Upload & predict", ":material/upload:",
             url_path="upload_predict"),
        page("radiomics_shap", "Radiomics & SHAP", ":material/insights:",
             url_path="radiomics_shap"),
        page("model_comparison", "Model comparison", ":material/compare:",
             url_path="model_comparison"),
        page("models_jobs", "Models & jobs", ":material/model_training:",
             url_path="models_jobs"),
        page("import_cohort", "Import cohort", ":material/drive_folder_upload:",
             url_path="import_cohort"),
        page("audit", "Audit", ":material/policy:", url_path="audit"),
    ]


# Worker processes of the app's jobs (spawn / forkserver pools) re-import this main script as
# "__mp_main__"; they need nothing from it, so they draw nothing, log no one in, load no page.
if __name__ != "__mp_main__":
    run_page(st.navigation(pages(current_access())))
