"""Store: schema, migrations, one writer, transactions, per-thread cursors."""

import datetime as dt
import subprocess
import sys
import threading

import duckdb
import pandas as pd
import pytest

from sscmort_core import store as st
from sscmort_core.errors import SchemaTooNewError, StoreError

EXPECTED_TABLES = {"meta", "patients", "scans", "synthetic_truth", "clinical", "qct",
                   "radiomics_features", "radiomics_failures", "models", "predictions",
                   "metrics", "explanations", "explanation_arrays", "jobs", "schema_version",
                   "prediction_failures"}


def _patients(n=3):
    return pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)], "sex": "F", "birth_year": 1960,
        "subtype": "diffuse", "antibody": "scl70", "death_date": None,
        "last_followup_date": dt.date(2020, 1, 1), "source": "test", "synthetic": True})


def test_new_store_has_every_table_and_current_version(tmp_path):
    with st.open_store(tmp_path / "s.duckdb") as s:
        tables = {r[0] for r in s.con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        assert EXPECTED_TABLES <= tables
        assert st.schema_version(s.con) == st.SCHEMA_VERSION


def test_reopen_is_idempotent(tmp_path):
    p = tmp_path / "s.duckdb"
    with st.open_store(p) as s:
        with s.transaction() as cur:
            st.insert_frame(cur, "patients", _patients())
    with st.open_store(p) as s:
        assert st.table_counts(s)["patients"] == 3
        assert s.con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == \
            st.SCHEMA_VERSION


def test_store_of_the_first_schema_is_migrated(tmp_path):
    """A store written at schema version 1 (before metrics had a note) gains the column."""
    import duckdb

    p = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(p))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
    con.execute(st.MIGRATIONS[0])
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    con.close()
    with st.open_store(p) as s:
        assert st.schema_version(s.con) == st.SCHEMA_VERSION >= 2
        cols = {r[0] for r in s.con.execute("DESCRIBE metrics").fetchall()}
        assert set(st.METRIC_COLUMNS) <= cols


def test_newer_schema_is_refused(tmp_path):
    p = tmp_path / "s.duckdb"
    with st.open_store(p) as s:
        s.con.execute("INSERT INTO schema_version (version) VALUES (?)", [st.SCHEMA_VERSION + 5])
    with pytest.raises(SchemaTooNewError, match="never migrates a store down"):
        st.open_store(p)


def test_failed_transaction_leaves_nothing(tmp_path):
    with st.open_store(tmp_path / "s.duckdb") as s:
        bad = pd.concat([_patients(2), _patients(1)])  # duplicate primary key P0
        with pytest.raises(duckdb.ConstraintException):
            with s.transaction() as cur:
                st.insert_frame(cur, "patients", bad)
        assert st.table_counts(s)["patients"] == 0


def test_directory_path_is_refused(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        st.open_store(tmp_path)


def test_path_below_a_file_is_refused(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        st.open_store(blocker / "s.duckdb")


def test_second_writer_process_gets_store_locked_error_and_file_stays_intact(tmp_path):
    p = tmp_path / "s.duckdb"
    with st.open_store(p) as s:
        with s.transaction() as cur:
            st.insert_frame(cur, "patients", _patients())
        code = ("import sys\nfrom sscmort_core.store import open_store\n"
                "from sscmort_core.errors import StoreLockedError\n"
                f"try:\n    open_store({str(p)!r})\nexcept StoreLockedError as e:\n"
                "    print(e); sys.exit(3)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 3, out.stderr
        assert str(p) in out.stdout and "another process" in out.stdout
    with st.open_store(p) as s:
        assert st.table_counts(s)["patients"] == 3


def test_each_thread_gets_its_own_cursor(tmp_path):
    with st.open_store(tmp_path / "s.duckdb") as s:
        with s.transaction() as cur:
            st.insert_frame(cur, "patients", _patients(50))
        seen, errors = [], []

        def work():
            try:
                for _ in range(20):
                    seen.append(s.cursor().execute("SELECT count(*) FROM patients").fetchone()[0])
                seen.append(id(s.cursor()))
            except Exception as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        counts = [x for x in seen if x == 50]
        assert len(counts) == 80
        cursor_ids = {x for x in seen if x != 50}
        assert len(cursor_ids) == 4 and id(s.con) not in cursor_ids


def test_insert_frame_names_missing_columns(tmp_path):
    with st.open_store(tmp_path / "s.duckdb") as s:
        with pytest.raises(ValueError, match="missing columns"):
            with s.transaction() as cur:
                st.insert_frame(cur, "patients", _patients().drop(columns=["sex"]))


def test_a_store_from_before_registry_imports_gains_their_tables(tmp_path):
    """A store built by the migrations before the registry-import one (a demo store of round 1)
    is migrated: the import tables appear empty, the rows already there stay, and the import
    queries answer on it."""
    import duckdb

    n_before = next(i for i, m in enumerate(st.MIGRATIONS) if "registry_patients" in m)
    p = tmp_path / "old.duckdb"
    con = duckdb.connect(str(p))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
    for version in range(1, n_before + 1):
        con.execute(st.MIGRATIONS[version - 1])
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [version])
    con.register("pts", _patients())
    con.execute(f"INSERT INTO patients ({', '.join(st.PATIENT_COLUMNS)}) "
                f"SELECT {', '.join(st.PATIENT_COLUMNS)} FROM pts")
    con.close()
    with st.open_store(p) as s:
        assert st.schema_version(s.con) == st.SCHEMA_VERSION
        for table, columns in (("registry_patients", st.REGISTRY_PATIENT_COLUMNS),
                               ("import_scan_keys", st.IMPORT_KEY_COLUMNS),
                               ("import_failures", st.IMPORT_FAILURE_COLUMNS),
                               ("outcome_changes", st.OUTCOME_CHANGE_COLUMNS)):
            cols = {r[0] for r in s.con.execute(f"DESCRIBE {table}").fetchall()}
            assert set(columns) <= cols, table
        assert st.table_counts(s)["patients"] == 3
        assert st.import_failures_frame(s).empty and st.registry_flags(s, ["P0"]) == {}
        counts = st.source_counts(s)
        assert counts[["source", "patients", "scans"]].values.tolist() == [["test", 3, 0]]
        with s.transaction() as cur:  # a failure recorded twice counts two attempts
            frame = pd.DataFrame([{"row_key": "k", "patient_id": "P0", "manifest_file":
                                   "scans.csv", "manifest_row": 2, "path": "x", "reason": "r"}])
            st.record_import_failures(cur, frame)
            st.record_import_failures(cur, frame.assign(reason="r2"))
        assert st.import_failures_frame(s)[["attempts", "reason"]].values.tolist() == [[2, "r2"]]


def _qc_and_patient_rows():
    import numpy as np

    qc = [{"scan_id": "S1", "check_name": f"c{i}", "passed": bool(i % 2) if i else np.bool_(True),
           "value": [np.float32(0.25), float("nan"), None, np.float64(1e-300), 3][i % 5],
           "expected": None if i % 3 else ">= 1", "message": "m" if i else None,
           "method_version": "v"} for i in range(7)]
    patient = {"patient_id": "P1", "sex": None, "birth_year": np.int64(1950), "subtype": None,
               "antibody": None, "death_date": dt.date(2024, 2, 29),
               "last_followup_date": dt.date(2023, 1, 1), "source": "upload", "synthetic": False}
    scan = {c: None for c in st.schema._TABLE_COLUMNS["scans"]}
    scan.update(scan_id="S1", patient_id="P1", scan_date=dt.date(2020, 1, 1), shape_z=np.int64(3),
                spacing_z_mm=2.5, source="upload", synthetic=False)
    return qc, patient, scan


def _table(store, table):
    return store.con.execute(f"SELECT * EXCLUDE (created_at) FROM {table} ORDER BY ALL"
                             if table != "mask_qc" else
                             f"SELECT * FROM {table} ORDER BY ALL").fetchall()


@pytest.mark.parametrize("big", [False, True])
def test_insert_rows_stores_what_insert_frame_stores(tmp_path, big, monkeypatch):
    """The ingest writes its few rows without pandas (one INSERT ... VALUES); the values must
    be those a DataFrame gives: numpy scalars as numbers, NaN as NULL, dates, booleans. Over
    VALUES_MAX_ROWS rows it goes through a DataFrame itself (``big``)."""
    from sscmort_core.store import db

    if big:
        monkeypatch.setattr(db, "VALUES_MAX_ROWS", 2)
    qc, patient, scan = _qc_and_patient_rows()
    stored = []
    for how in ("frame", "rows"):
        with st.open_store(tmp_path / f"{how}.duckdb") as s, s.transaction() as cur:
            for table, rows in (("patients", [patient]), ("scans", [scan]), ("mask_qc", qc)):
                if how == "frame":
                    assert st.insert_frame(cur, table, pd.DataFrame(rows)) == len(rows)
                else:
                    assert st.insert_rows(cur, table, rows) == len(rows)
        with st.open_store(tmp_path / f"{how}.duckdb", read_only=True) as s:
            stored.append([_table(s, t) for t in ("patients", "scans", "mask_qc")])
    assert stored[0] == stored[1]
    values = [r[3] for r in stored[1][2]]
    assert values.count(None) == 3 and 0.25 in values  # NaN and None both NULL
    with st.open_store(tmp_path / "x.duckdb") as s, s.transaction() as cur:
        with pytest.raises(ValueError, match="missing columns"):
            st.insert_rows(cur, "mask_qc", [{"scan_id": "S1"}])


def test_plain_row_gives_what_one_row_gives(tmp_path):
    _, patient, _ = _qc_and_patient_rows()
    with st.open_store(tmp_path / "s.duckdb") as s:
        with s.transaction() as cur:
            st.insert_rows(cur, "patients", [patient])
        sql = "SELECT * FROM patients WHERE patient_id = ?"
        old, new = st.one_row(s, sql, ["P1"]), st.plain_row(s, sql, ["P1"])
        assert old == new and new["death_date"] == dt.date(2024, 2, 29)
        assert isinstance(new["created_at"], dt.date) and new["birth_year"] == 1950
        assert st.plain_row(s, sql, ["nobody"]) is None and st.patient_row(s, "P1") == new
