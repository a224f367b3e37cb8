"""A store file written by the locked DuckDB opens with the installed one, and its rows come back
through sscmort's store API as written (tests/data/make_locked_store.py holds both the rows and
the writer)."""

import datetime as dt
import shutil

import duckdb
import pandas as pd
import pytest

from sscmort_core import store as st
from tests.data.make_locked_store import CLINICAL, PATIENTS, SCANS, STORE_FILE, WRITER_KEY
from tests.lockfile import RUNTIME_LOCK, lock_pins


@pytest.fixture()
def locked_store(tmp_path):
    """A private copy of the committed file (opening for writing migrates it when migrations
    were appended after it was written; the committed file itself is never touched)."""
    dest = tmp_path / STORE_FILE.name
    shutil.copy(STORE_FILE, dest)
    return dest


def test_committed_store_reads_back_every_row(locked_store):
    with st.open_store(locked_store) as s:
        assert st.schema_version(s.con) == st.SCHEMA_VERSION
        assert st.table_counts(s)["patients"] == 2
        patients = st.patients_frame(s)
        assert list(patients["patient_id"]) == list(PATIENTS["patient_id"])
        assert list(patients["birth_year"]) == list(PATIENTS["birth_year"])
        assert list(patients["death_date"].map(lambda d: None if pd.isna(d) else d)) == \
            list(PATIENTS["death_date"])
        assert list(patients["n_scans"]) == [2, 1]
        # baseline FVC: the clinical row nearest each patient's first scan
        assert list(patients["baseline_fvc"]) == [71.5, 92.0]
        assert all(patients["synthetic"])

        scans = st.scans_frame(s).sort_values("scan_id")
        assert list(scans["scan_id"]) == list(SCANS["scan_id"])
        assert list(scans["scan_date"]) == list(SCANS["scan_date"])
        assert list(scans["kernel"]) == list(SCANS["kernel"])
        assert list(scans["shape_z"]) == list(SCANS["shape_z"])
        assert st.scan_row(s, "LOCK-S3")["slice_thickness_mm"] == 1.25

        clinical = st.clinical_frame(s, "LOCK-P2")
        assert list(clinical["fvc_pct_pred"]) == [92.0, 90.5]
        assert len(st.clinical_frame(s)) == len(CLINICAL)

        summary = st.cohort_summary(s)
        assert (summary.patients, summary.scans, summary.synthetic_patients) == (2, 3, 2)
        assert (summary.first_scan, summary.last_scan) == (dt.date(2018, 1, 15),
                                                          dt.date(2020, 5, 1))


def test_committed_store_was_written_by_the_locked_duckdb():
    con = duckdb.connect(str(STORE_FILE), read_only=True)
    try:
        writer = con.execute("SELECT value FROM meta WHERE key = ?", [WRITER_KEY]).fetchone()[0]
    finally:
        con.close()
    locked = lock_pins(RUNTIME_LOCK)["duckdb"]
    assert writer == locked, (
        f"{STORE_FILE.name} was written by duckdb {writer}, the lock pins {locked}: once the "
        "read-back test passes (old files still open), rerun tests/data/make_locked_store.py")
