"""App-side helpers shared by the pages: the cached store handle, banners, error display.

This is the only place (besides the pages) that knows about Streamlit; the core never does.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from sscmort_core import store as st_store
from sscmort_core.errors import SscmortError
from sscmort_core.scans import load_scan_with_lungs
from sscmort_core.util.logs import configure_logging

RESEARCH_NOTICE = "Research use only: not for clinical decisions."
SYNTHETIC_NOTICE = "Synthetic cohort: simulated by sscmort, no real person."
MIXED_NOTICE = "also {real:,} real patients (source filter on Overview and Cohort explorer)."


def store_path() -> Path:
    return Path(os.environ.get("SSCMORT_STORE", str(st_store.DEFAULT_STORE_PATH)))


@st.cache_resource(show_spinner=False)
def _open(path: str) -> st_store.Store:
    configure_logging(Path(path))  # library warnings into the store's log file, not the page
    return st_store.open_store(path)


def get_store() -> st_store.Store:
    """The app's one read-write handle on the store (the app owns the file while it runs).

    Stops the page with one readable message when the store is missing, locked or too new.
    """
    path = store_path()
    if not path.exists():
        st.error(f"No store at {path}. Build the demo cohort with `make run` "
                 f"(or `sscmort demo --store {path}`).")
        st.stop()
    try:
        return _open(str(path))
    except SscmortError as err:
        st.error(str(err))
        st.stop()
        raise  # unreachable: st.stop() raises


def banners(synthetic: bool, real: int = 0) -> None:
    """One compact line on every page (issue 14): the research-use notice, and the synthetic
    notice where it applies (naming the real patients that share the store)."""
    parts = [f":orange-badge[:material/science: {RESEARCH_NOTICE}]"]
    if synthetic:
        parts.append(f":blue-badge[:material/smart_toy: {SYNTHETIC_NOTICE}]")
        if real:
            parts.append(f":gray-badge[{MIXED_NOTICE.format(real=real)}]")
    st.markdown(" ".join(parts))


def sidebar(summary: st_store.CohortSummary) -> None:
    """Store path, synthetic flag and counts in the sidebar."""
    with st.sidebar:
        st.caption("Cohort store")
        st.code(str(store_path()), language=None)
        if summary.synthetic_patients:
            st.markdown(":orange-badge[SYNTHETIC DATA]")
            if summary.patients > summary.synthetic_patients:
                st.caption(f"and {summary.patients - summary.synthetic_patients:,} real "
                           "patients")
        st.caption(f"{summary.patients:,} patients, {summary.scans:,} scans")
        st.caption(RESEARCH_NOTICE)


def page_setup(title: str) -> st_store.Store:
    """Every page starts here: the store, the sidebar, the banners and the title. The store's
    headline counts are read once per run; the page gets them from :func:`cohort_summary`."""
    store = get_store()
    summary = st_store.cohort_summary(store)
    st.session_state["_cohort_summary"] = summary  # this run's: page_setup runs first
    sidebar(summary)
    banners(summary.synthetic_patients > 0, summary.patients - summary.synthetic_patients)
    st.title(title)
    return store


def cohort_summary() -> st_store.CohortSummary:
    """The counts :func:`page_setup` read at the top of this run."""
    return st.session_state["_cohort_summary"]


def show_error(err: SscmortError) -> None:
    """One readable sentence for a named error; never a traceback."""
    st.error(str(err))


@st.cache_data(max_entries=6, show_spinner="Loading the scan...")
def load_volume_with_lungs(path: str, scan_id: str):
    """(ScanVolume, LungMask) of a stored scan, cached per store file and scan."""
    scan = load_scan_with_lungs(_open(path), scan_id)
    return scan.volume, scan.lungs


def app_link(page: str, label: str, query: dict[str, str], icon: str | None = None,
             where=None) -> None:
    """An in-app link (issue 14): same tab, same session, ``query`` read by the target page.
    Where the page is not in this run's navigation (a page run alone, or one the user's role
    hides) it falls back to a plain relative link."""
    where = where or st
    try:
        where.page_link(page, label=label, icon=icon, query_params=query)
    except StreamlitPageNotFoundError:
        url_path = Path(page).stem
        where.markdown(f"[{label}]({url_path}?{urlencode(query)})")
