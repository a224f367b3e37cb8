"""App-side helpers for hospital integration (issue 15): the upload page's "From PACS" tab,
the analysis status box both upload tabs share, the DICOM SEG + SR download, and the send-back
to the PACS. Streamlit only; the work happens in ``sscmort_core.pipeline.pacs`` and
``sscmort_core.pipeline.export_dicom``. Every failure is one error box (``show_error``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Hashable, Sequence

import streamlit as st

from pages._shared import audit, deployment_settings, export_button, require, show_error
from sscmort_core import store as st_store
from sscmort_core.dicomout.results import DicomResults, results_zip
from sscmort_core.errors import SscmortError
from sscmort_core.pacs import connect, default_url, dicom_date_range
from sscmort_core.pipeline.analyse import analyse_streams
from sscmort_core.pipeline.export_dicom import results_for_analysis
from sscmort_core.pipeline.ingest import STAGES, ScanAnalysis, store_secret
from sscmort_core.pipeline.pacs import PacsAnalysis, fetch_and_analyse, query, send_back
from sscmort_core.predictions import RiskPrediction

MAX_ZIPS = 3  # prepared downloads kept per session


def analyse_with_status(run: Callable[[Callable[[str, int, int], None]], Any]) -> Any | None:
    """Run ``run(progress)`` inside a status box listing the stages; None when it raises a
    named error, which then shows open and red with its reason (never behind a click)."""
    with st.status("Analysing the scan...", expanded=True) as status:
        def progress(stage: str, done: int, total: int) -> None:
            name = stage.split(": ", 1)[-1]
            if name in STAGES:
                status.update(label=f"Analysing the scan: step {done + 1}/{total}, {name}")
                status.write(f"Step {done + 1}/{total}: {name}")
            elif stage == "retrieve" and done in (1, total):
                status.write(f"Retrieved {done} of {total} images from the PACS")

        try:
            result = run(progress)
        except SscmortError as err:
            status.update(label=f"The scan could not be used: {err}", state="error",
                          expanded=True)
            failure = err
        else:
            failure = None
            analysis = getattr(result, "analysis", result)
            status.update(label="Scan read and lungs measured (" + ", ".join(
                f"{name} {sec:.1f} s" for name, sec in analysis.stage_seconds)
                + "); the models run next", state="complete", expanded=False)
    if failure is not None:
        show_error(failure)  # outside the status box: open and red whatever its state
        return None
    return result


def pacs_tab(store: st_store.Store) -> PacsAnalysis | None:
    """Search a PACS, pick a CT series, analyse it. Returns the new analysis on the run that
    made it, else None (the page keeps it in session state)."""
    url = st.text_input("PACS DICOMweb address", value=default_url(), key="pacs_url",
                        placeholder="https://pacs.example.org/dicom-web",
                        help="Credentials come from SSCMORT_PACS_USERNAME / _PASSWORD / _TOKEN "
                             "or [pacs] in .streamlit/secrets.toml, never from this page.")
    c1, c2, c3 = st.columns(3)
    patient = c1.text_input("Patient id at the PACS", key="pacs_patient")
    accession = c2.text_input("Accession number", key="pacs_accession")
    dates = c3.text_input("Study date or range", key="pacs_dates",
                          placeholder="2020-01-01..2020-12-31")
    if st.button("Search", key="pacs_search", disabled=not url):
        try:
            st.session_state["pacs_rows"] = query(
                connect(url), patient_id=patient or None, accession=accession or None,
                study_date=dicom_date_range(dates) if dates.strip() else None)
        except SscmortError as err:
            st.session_state["pacs_rows"] = None
            show_error(err)
    rows = st.session_state.get("pacs_rows")
    if rows is not None and not rows:
        st.info("No CT series matches.")
    if not rows:
        return None
    pick = st.selectbox("CT series", range(len(rows)), key="pacs_pick",
                        format_func=lambda i: rows[i].label())
    keep = st.checkbox("I will send the results back to this PACS (keeps the series' UIDs in "
                       "this session's memory, never in the store)", key="pacs_keep")
    if not st.button("Analyse", key="pacs_analyse", type="primary") or not require("upload"):
        return None
    row = rows[pick]
    fetched = analyse_with_status(lambda progress: fetch_and_analyse(
        connect(url), row.study_uid, row.series_uid, secret=store_secret(store),
        keep_source=keep, progress=progress))
    if fetched is not None:
        st.session_state["pacs_fetched_url"] = url
    audit("upload", (upload_id(fetched.analysis),) if fetched else (),
          outcome="ok" if fetched else "error", detail="from a PACS")
    return fetched


def choose_scan(store: st_store.Store) -> tuple[Any, Hashable, PacsAnalysis | None] | None:
    """The "Upload files" and "From PACS" tabs. Returns (analysis, key, PACS fetch or None) of
    the scan shown, or None while there is none. A new upload or fetch replaces the last;
    removing the uploaded files clears an upload's analysis, while coming back from another
    page (which empties the uploader) keeps it (issue 14)."""
    state = st.session_state
    files_tab, from_pacs = st.tabs(["Upload files", "From PACS"])
    with files_tab:
        returning = "ct_upload" not in state  # Streamlit drops a widget's state off-page
        uploads = st.file_uploader("Chest CT", accept_multiple_files=True, key="ct_upload",
                                   help="Limit set in .streamlit/config.toml "
                                        "(server.maxUploadSize).")
        key = tuple((u.name, u.size, u.file_id) for u in uploads or ())
        if uploads and state.get("upload_key") != key and require("upload"):
            state["upload_key"] = key
            state["analysis"] = analyse_with_status(lambda progress: analyse_streams(
                [(u.name, u.size, u) for u in uploads], limits=deployment_settings().upload,
                secret=store_secret(store), progress=progress))  # streamed to disk
            state["analysis_key"], state["pacs_fetched"] = key, None
            done = state["analysis"]
            audit("upload", (upload_id(done),) if done else (), outcome="ok" if done else
                  "error", detail=f"{len(uploads)} file(s)")
            state["upload_names"] = [u.name for u in uploads]
        elif not uploads and state.get("pacs_fetched") is None:
            removed = state.get("upload_had_files") and not returning  # the user's click
            if removed or state.get("analysis") is None:
                state["upload_key"] = state["analysis"] = None
            else:
                names = state.get("upload_names") or []
                st.caption(f"Showing this session's last analysis ({len(names)} file(s): "
                           f"{', '.join(names[:3])}{'...' if len(names) > 3 else ''}). "
                           "Upload another scan to replace it.")
        state["upload_had_files"] = bool(uploads)
    with from_pacs:
        fetched = pacs_tab(store)
        if fetched is not None:
            state["analysis"], state["pacs_fetched"] = fetched.analysis, fetched
            state["analysis_key"] = ("pacs", fetched.series.series_uid, id(fetched))
    if state.get("analysis") is None:
        return None
    return state["analysis"], state["analysis_key"], state.get("pacs_fetched")


def results_section(analysis: ScanAnalysis, predictions: Sequence[RiskPrediction],
                    key: Hashable, fetched: PacsAnalysis | None) -> None:
    """Download of the analysis's SEG + SR (de-identified, pseudonymous id), and the send-back
    for a PACS fetch whose UIDs were kept."""
    st.subheader("Results as DICOM")
    patient = analysis.pseudonymous_patient_id or "P-unsaved"
    day = analysis.volume.study_date or dt.date.today()
    dicom_download(key, lambda: results_for_analysis(analysis, predictions, patient_id=patient,
                                                     scan_date=day),
                   "sscmort-results-dicom.zip", object_ids=(upload_id(analysis),))
    if fetched is not None and fetched.source is not None:
        send_back_button(fetched, predictions, patient_id=patient, scan_date=day)


def upload_id(analysis: ScanAnalysis) -> str:
    """The audit trail's id of an analysed, unsaved scan (its de-identified voxels' hash)."""
    return f"upload:{analysis.voxel_sha256[:12]}"


def dicom_download(key: Hashable, build: Callable[[], DicomResults], file_name: str, *,
                   object_ids: Sequence[str]) -> None:
    """A "prepare" button that builds the SEG + SR (+ CT) once, then a download of the zip
    (both need the export role; ``object_ids`` name what is exported in the audit trail)."""
    zips: dict[Hashable, tuple[bytes, str]] = st.session_state.setdefault("_dicom_zips", {})
    if key not in zips and st.button("Prepare DICOM SEG + SR", key=f"dicom-prepare-{key}",
                                     help="Lung (and ILD) mask as DICOM SEG, QCT and risks "
                                          "as a TID 1500 SR; research use only.") and \
            require("export", object_ids):
        try:
            with st.spinner("Writing DICOM SEG and SR..."):
                results = build()
        except SscmortError as err:
            show_error(err)
            return
        while len(zips) >= MAX_ZIPS:
            zips.pop(next(iter(zips)))
        zips[key] = (results_zip(results), results.note)
    if key in zips:
        data, note = zips[key]
        export_button("Download DICOM SEG + SR (zip)", data, file_name=file_name,
                      mime="application/zip", key=f"dicom-download-{key}",
                      object_ids=object_ids)
        st.caption(f"{note[0].upper()}{note[1:]}. Research use only.")


def send_back_button(fetched: PacsAnalysis, predictions: Sequence[RiskPrediction], *,
                     patient_id: str, scan_date: Any) -> None:
    """Store the SEG + SR of a scan fetched in this session back in its original study."""
    url = st.session_state.get("pacs_fetched_url", "")
    ids = (upload_id(fetched.analysis),)
    if st.button("Send SEG + SR back to the PACS", key="pacs_send_back",
                 help=f"STOW-RS to {url}, into the study the series came from") and \
            require("export", ids):
        try:
            with st.spinner("Storing on the PACS..."):
                _, sent = send_back(connect(url), fetched, predictions, patient_id=patient_id,
                                    scan_date=scan_date)
        except SscmortError as err:
            show_error(err)
        else:
            audit("export", ids, detail=f"SEG + SR sent back to the PACS ({sent.n_stored})")
            st.success(f"Stored {sent.n_stored} objects (SEG + SR, research use only) in the "
                       "original study.")
