"""App-side helpers shared by the pages: the cached store handle, banners, error display.

This is the only place (besides the pages) that knows about Streamlit; the core never does.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from sscmort_core import store as st_store
from sscmort_core.errors import SscmortError

RESEARCH_NOTICE = "Research use only: not for clinical decisions."
SYNTHETIC_NOTICE = ("Synthetic cohort: every patient, scan and outcome shown here was generated "
                    "by sscmort's simulator. None of it describes a real person.")


def store_path() -> Path:
    return Path(os.environ.get("SSCMORT_STORE", str(st_store.DEFAULT_STORE_PATH)))


@st.cache_resource(show_spinner=False)
def _open(path: str) -> st_store.Store:
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


def banners(store: st_store.Store | None) -> None:  # noqa: D401
    """The research-use notice on every page, and the synthetic banner where it applies."""
    st.warning(RESEARCH_NOTICE, icon=":material/science:")
    if store is not None and st_store.is_synthetic(store):
        st.info(SYNTHETIC_NOTICE, icon=":material/smart_toy:")


def sidebar(store: st_store.Store) -> None:
    """Store path, synthetic flag and counts in the sidebar."""
    with st.sidebar:
        st.caption("Cohort store")
        st.code(str(store_path()), language=None)
        summary = st_store.cohort_summary(store)
        if st_store.is_synthetic(store):
            st.markdown(":orange-badge[SYNTHETIC DATA]")
        st.caption(f"{summary.patients:,} patients, {summary.scans:,} scans")
        st.caption(RESEARCH_NOTICE)


def page_setup(title: str) -> st_store.Store:
    """Every page starts here: the store, the sidebar, the banners and the title."""
    store = get_store()
    sidebar(store)
    banners(store)
    st.title(title)
    return store


def show_error(err: SscmortError) -> None:
    """One readable sentence for a named error; never a traceback."""
    st.error(str(err))


@st.cache_data(max_entries=6, show_spinner="Loading the scan...")
def load_volume_with_lungs(path: str, scan_id: str):
    """(ScanVolume, LungMask) of a stored scan, cached per store file and scan."""
    from sscmort_core.lungs import segment_lungs
    from sscmort_core.pipeline import load_scan_volume

    vol = load_scan_volume(_open(path), scan_id)
    return vol, segment_lungs(vol.hu, vol.spacing_mm)
