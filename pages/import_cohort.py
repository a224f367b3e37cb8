"""Import cohort: a registry's manifest folder on the server -> check (dry run) -> import job
with progress -> failures and the outcome-change audit."""

from __future__ import annotations

import streamlit as st

from pages._shared import audit, page_setup, require, show_error, typed_path
from sscmort_core.errors import SscmortError
from sscmort_core.pipeline.cohort_import import ImportOptions
from sscmort_core.store import outcome_changes_frame
from sscmort_core.views import imports

store = page_setup("Import cohort")
st.caption("Bring in a registry: a folder **on the server** holding patients.csv, scans.csv "
           "and clinical.csv (or .parquet) and the CT series they name (see README, \"Use "
           "your own registry\"). Registry ids become pseudonyms, identifying DICOM tags are "
           "dropped, and with date shifting no real date is stored. The app stays the only "
           "writer: the import runs as a job inside it.")

with st.form("manifest"):
    folder = st.text_input("Manifest folder (a path on the server)", key="folder",
                           placeholder="/data/registry/export-2025")
    c1, c2, c3 = st.columns(3)
    shift = c1.checkbox("Shift dates", help="Move all dates of each patient by one keyed "
                        "offset (within +-365 days): intervals and labels stay exact, no real "
                        "date is stored. Use the same setting on every import of a registry.")
    source = c2.text_input("Source label", value="registry")
    workers = c3.number_input("Worker processes", 1, 64, 2)
    mapping = st.text_input("Column mapping file (optional; default MANIFEST/mapping.yaml)")
    renames = st.text_area("Column renames, one per line (optional)",
                           placeholder="patients.patient_id=MRN")
    read_images = st.checkbox("Also read every image now (slow for large registries; the "
                              "import always reads them before writing)")
    checked = st.form_submit_button("Check manifest", type="primary")


def _options(check_images: bool) -> tuple[str, ImportOptions] | None:
    """The allowed manifest folder and the form's options, or None when the role may not
    import or a typed path is refused (each refusal shown and audited)."""
    if not require("import"):
        return None
    if (where := typed_path(folder, "import")) is None:
        return None
    mapping_file = typed_path(mapping, "import") if mapping.strip() else None
    if mapping.strip() and mapping_file is None:
        return None
    return str(where), ImportOptions(
        shift_dates=shift, workers=int(workers), source=source.strip(),
        mapping_file=mapping_file,
        columns=tuple(x.strip() for x in renames.splitlines() if x.strip()),
        check_images=check_images)


if checked and (opts := _options(read_images)) is not None:
    bar = st.progress(0.0, text="Checking the manifest...")
    try:
        st.session_state["import_check"] = imports.check_manifest(
            store, *opts,
            progress=lambda stage, d, t: bar.progress(d / max(t, 1), text=f"{stage}: {d}/{t}"))
        st.session_state["import_checked_folder"] = folder
    except SscmortError as err:
        st.session_state.pop("import_check", None)
        show_error(err)
    bar.empty()

check = st.session_state.get("import_check")
if check is not None and st.session_state.get("import_checked_folder") == folder:
    st.subheader("Check")
    if check.ok:
        st.success("The manifest passed every check" + ("" if check.images_checked else
                   " (images not read yet: the import reads them before writing anything)")
                   + ".")
    else:
        st.error(f"{len(check.problems)} problem(s): the import would be refused and nothing "
                 "written. Cell values are never shown; fix the rows named below.")
        st.dataframe(check.problems, hide_index=True, width="stretch")
    left, right = st.columns(2)
    left.dataframe(check.summary, hide_index=True, width="stretch")
    if not check.horizons.empty:
        right.dataframe(check.horizons, hide_index=True, width="stretch")
        right.caption("Label rule on the manifest's dates: positive if the patient died "
                      "within h years of the scan, negative if known alive at h years, else "
                      "censored.")

running = imports.import_running(store)
start = st.button("Start import", type="primary", disabled=running or check is None
                  or not check.ok or st.session_state.get("import_checked_folder") != folder,
                  help="Check the manifest first; one import at a time.")
if start and (opts := _options(True)) is not None:
    try:
        job_id = imports.start_import(store, *opts)
    except SscmortError as err:
        show_error(err)
    else:
        audit("import", (job_id,), detail="import job started from the Import cohort page")
        running = True
        st.success(f"Started job {job_id}. It checks every image, then imports; progress "
                   "appears below.")


@st.fragment(run_every=2.0 if running else None)
def job_panel() -> None:
    if running and not imports.import_running(store):
        st.rerun()  # finished: redraw the failures and the audit
    history = imports.import_jobs(store)
    for r in history[history["status"] == "running"].itertuples():
        st.progress(float(r.progress), text=f"{r.job_id}: {r.message or 'starting'}")
    if history.empty:
        st.caption("No import has run in this store yet.")
        return
    last = history.iloc[0]
    if last["status"] == "failed" and last["error"]:
        lines = str(last["error"]).splitlines()
        st.error(lines[0])
        if len(lines) > 1:
            st.dataframe(imports.problems_frame(lines[1:]), hide_index=True, width="stretch")
    elif last["status"] == "done":
        st.info(f"Last import: {last['message']}")
    st.dataframe(history[["job_id", "status", "progress", "message", "started_at",
                          "finished_at"]], hide_index=True, width="stretch",
                 column_config={"progress": st.column_config.ProgressColumn(
                     "progress", min_value=0.0, max_value=1.0)})


st.subheader("Import jobs")
job_panel()

st.subheader("Failed scans")
failures = imports.failures_frame(store)
if failures.empty:
    st.caption("No scan is waiting after a failure.")
else:
    st.caption("These scans were not imported; the next import of the manifest retries them. "
               "Paths are relative to the manifest folder, with the registry id replaced by "
               "the pseudonym.")
    st.dataframe(failures, hide_index=True, width="stretch")

st.subheader("Outcome changes")
audit = outcome_changes_frame(store)
if audit.empty:
    st.caption("No re-import has changed a patient's fields yet.")
else:
    st.caption("One row per changed field (never the old value). Labels are recomputed from "
               "the new dates wherever they are used; models trained before are marked stale "
               "on Models & jobs and Model comparison.")
    st.dataframe(audit, hide_index=True, width="stretch")
