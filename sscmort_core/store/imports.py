"""Queries of registry imports: the per-patient date-shift flag, the keys that let a re-run skip
what is in, failed scans, the outcome-change audit, and reading / writing table files (CSV and
Parquet manifests, exports) through DuckDB.

Nothing here ever sees a registry id or a real date of a shifted patient: callers pass
pseudonymous ids, keyed row hashes and the dates as they are stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import duckdb

from sscmort_core.store.db import Store, in_clause, insert_frame

if TYPE_CHECKING:
    import pandas as pd

TABLE_FORMATS: tuple[str, ...] = ("csv", "parquet")


# ---------------------------------------------------------------------------------------------
# reads
# ---------------------------------------------------------------------------------------------
def registry_flags(store: Store, patient_ids: Sequence[str]) -> dict[str, bool]:
    """{pseudonymous id: dates shifted} of the given patients that came from a registry."""
    if not patient_ids:
        return {}
    rows = store.cursor().execute(
        f"SELECT patient_id, dates_shifted FROM registry_patients "
        f"WHERE {in_clause('patient_id', patient_ids)}", list(patient_ids)).fetchall()
    return {str(p): bool(s) for p, s in rows}


def patient_dates_shifted(store: Store, patient_id: str) -> bool | None:
    """True / False for a registry patient (its dates were / were not shifted), None for a
    patient that never came from a registry."""
    return registry_flags(store, [patient_id]).get(patient_id)


def patients_by_ids(store: Store, patient_ids: Sequence[str]) -> pd.DataFrame:
    """Patients rows of the given ids (any source), indexed by patient_id."""
    if not patient_ids:
        return store.query_df("SELECT * FROM patients WHERE false").set_index("patient_id")
    return store.query_df(f"SELECT * FROM patients WHERE {in_clause('patient_id', patient_ids)}",
                          list(patient_ids)).set_index("patient_id")


def patient_scans(store: Store, patient_ids: Sequence[str]) -> pd.DataFrame:
    """Every stored scan of the given patients: scan_id, patient_id, scan_date, voxel_sha256,
    and the import row key that brought it in (None for uploads)."""
    import pandas as pd

    if not patient_ids:
        return pd.DataFrame(columns=["scan_id", "patient_id", "scan_date", "voxel_sha256",
                                     "row_key"])
    return store.query_df(
        f"""SELECT s.scan_id, s.patient_id, s.scan_date, s.voxel_sha256, k.row_key
            FROM scans s LEFT JOIN import_scan_keys k USING (scan_id)
            WHERE {in_clause('s.patient_id', patient_ids)}
            ORDER BY s.patient_id, s.scan_date, s.scan_id""", list(patient_ids))


def import_keys_frame(store: Store, row_keys: Sequence[str]) -> pd.DataFrame:
    """Import keys already in the store (of ``row_keys``) with their scan's stored date."""
    import pandas as pd

    if not row_keys:
        return pd.DataFrame(columns=["row_key", "patient_id", "scan_id", "scan_date"])
    return store.query_df(
        f"""SELECT k.row_key, k.patient_id, k.scan_id, s.scan_date
            FROM import_scan_keys k JOIN scans s USING (scan_id)
            WHERE {in_clause('k.row_key', row_keys)}""", list(row_keys))


def scans_with_voxels(store: Store, voxel_sha256: Sequence[str]) -> pd.DataFrame:
    """Stored scans whose voxels have one of these sha256: scan_id, patient_id, voxel_sha256."""
    import pandas as pd

    if not voxel_sha256:
        return pd.DataFrame(columns=["scan_id", "patient_id", "voxel_sha256", "scan_date"])
    return store.query_df(
        f"""SELECT scan_id, patient_id, voxel_sha256, scan_date FROM scans
            WHERE {in_clause('voxel_sha256', voxel_sha256)}""", list(voxel_sha256))


def clinical_of(store: Store, patient_ids: Sequence[str], source: str) -> pd.DataFrame:
    """Clinical rows of ``source`` for the given patients (patient_id, date, FVC, DLCO)."""
    import pandas as pd

    if not patient_ids:
        return pd.DataFrame(columns=["patient_id", "date", "fvc_pct_pred", "dlco_pct_pred"])
    return store.query_df(
        f"""SELECT patient_id, date, fvc_pct_pred, dlco_pct_pred FROM clinical
            WHERE source = ? AND {in_clause('patient_id', patient_ids)}
            ORDER BY patient_id, date""", [source, *patient_ids])


def import_failures_frame(store: Store) -> pd.DataFrame:
    """Scans that failed to import and are not in yet (a re-run retries them), newest first."""
    return store.query_df(
        """SELECT manifest_file, manifest_row, path, reason, attempts, failed_at, patient_id,
                  row_key
           FROM import_failures ORDER BY failed_at DESC, manifest_row""")


def failed_row_keys(store: Store) -> set[str]:
    rows = store.cursor().execute("SELECT row_key FROM import_failures").fetchall()
    return {str(r[0]) for r in rows}


def outcome_changes_frame(store: Store, patient_id: str | None = None) -> pd.DataFrame:
    """The audit of changed outcome fields: patient_id, field, change, source, changed_at."""
    where, params = ("WHERE patient_id = ?", [patient_id]) if patient_id else ("", [])
    return store.query_df(
        f"""SELECT patient_id, field, change, source, changed_at FROM outcome_changes {where}
            ORDER BY changed_at DESC, patient_id, field""", params)


def referenced_volume_paths(store: Store) -> set[str]:
    """volume_path of every stored scan (relative to the store's data folder)."""
    rows = store.cursor().execute(
        "SELECT volume_path FROM scans WHERE volume_path IS NOT NULL").fetchall()
    return {str(r[0]) for r in rows}


def source_counts(store: Store) -> pd.DataFrame:
    """Patients and scans per source: source, synthetic, patients, scans, date_shifted_patients
    (which rows of a store are which, e.g. a demo store with an imported registry)."""
    return store.query_df(
        """WITH s AS (SELECT source, synthetic, count(*) AS scans FROM scans
                      GROUP BY source, synthetic),
                p AS (SELECT p.source, p.synthetic, count(*) AS patients,
                             count(*) FILTER (WHERE r.dates_shifted) AS date_shifted_patients
                      FROM patients p LEFT JOIN registry_patients r USING (patient_id)
                      GROUP BY p.source, p.synthetic)
           SELECT coalesce(p.source, s.source) AS source,
                  coalesce(p.synthetic, s.synthetic) AS synthetic,
                  coalesce(p.patients, 0) AS patients, coalesce(s.scans, 0) AS scans,
                  coalesce(p.date_shifted_patients, 0) AS date_shifted_patients
           FROM p FULL JOIN s ON p.source = s.source AND p.synthetic = s.synthetic
           ORDER BY synthetic, source""")


def registry_patients_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM registry_patients ORDER BY patient_id")


# ---------------------------------------------------------------------------------------------
# writes (inside the caller's transaction)
# ---------------------------------------------------------------------------------------------
def upsert_registry_patients(cur: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
    """Insert or refresh (last_imported_at) the registry flag of each patient in ``frame``
    (columns patient_id, source, dates_shifted)."""
    if frame.empty:
        return
    name = "_incoming_registry_patients"
    cur.register(name, frame.loc[:, ["patient_id", "source", "dates_shifted"]])
    try:
        cur.execute(f"""INSERT INTO registry_patients (patient_id, source, dates_shifted)
                        SELECT patient_id, source, dates_shifted FROM {name}
                        ON CONFLICT (patient_id) DO UPDATE SET
                            last_imported_at = now()::TIMESTAMP, source = excluded.source""")
    finally:
        _unregister(cur, name)


_PATIENT_FIELDS = ("sex", "birth_year", "subtype", "antibody", "death_date",
                   "last_followup_date")


def update_patient(cur: duckdb.DuckDBPyConnection, patient_id: str,
                   fields: dict[str, Any]) -> None:
    """Set the given outcome / covariate fields of one patient (names from a fixed list)."""
    unknown = set(fields) - set(_PATIENT_FIELDS)
    if unknown:
        raise ValueError(f"not patient fields: {sorted(unknown)}")
    if not fields:
        return
    sets = ", ".join(f"{f} = ?" for f in fields)
    cur.execute(f"UPDATE patients SET {sets} WHERE patient_id = ?",
                [*fields.values(), patient_id])


def update_scan_date(cur: duckdb.DuckDBPyConnection, scan_id: str, scan_date: Any) -> None:
    cur.execute("UPDATE scans SET scan_date = ? WHERE scan_id = ?", [scan_date, scan_id])


def replace_clinical(cur: duckdb.DuckDBPyConnection, patient_ids: Sequence[str], source: str,
                     frame: pd.DataFrame) -> None:
    """Replace the clinical rows of ``source`` for these patients by ``frame``'s rows."""
    if patient_ids:
        cur.execute(f"DELETE FROM clinical WHERE source = ? AND "
                    f"{in_clause('patient_id', patient_ids)}", [source, *patient_ids])
    insert_frame(cur, "clinical", frame)


def record_outcome_changes(cur: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
    """One audit row per changed field (patient_id, field, change, source); never a value."""
    insert_frame(cur, "outcome_changes", frame)


def insert_import_keys(cur: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
    """Row keys (row_key, patient_id, scan_id) of scans now in the store; a key already there
    points at its new scan."""
    insert_frame(cur, "import_scan_keys", frame, replace=True)


def clear_import_failures(cur: duckdb.DuckDBPyConnection, row_keys: Sequence[str]) -> None:
    if row_keys:
        cur.execute(f"DELETE FROM import_failures WHERE {in_clause('row_key', row_keys)}",
                    list(row_keys))


def record_import_failures(cur: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
    """Record failed scans (row_key, patient_id, manifest_file, manifest_row, path, reason);
    a scan that failed before counts one more attempt."""
    if frame.empty:
        return
    name = "_incoming_import_failures"
    cols = ["row_key", "patient_id", "manifest_file", "manifest_row", "path", "reason"]
    cur.register(name, frame.loc[:, cols])
    try:
        cur.execute(f"""INSERT INTO import_failures ({', '.join(cols)})
                        SELECT {', '.join(cols)} FROM {name}
                        ON CONFLICT (row_key) DO UPDATE SET
                            manifest_file = excluded.manifest_file,
                            manifest_row = excluded.manifest_row, path = excluded.path,
                            reason = excluded.reason,
                            attempts = import_failures.attempts + 1,
                            failed_at = now()::TIMESTAMP""")
    finally:
        _unregister(cur, name)


def _unregister(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    try:
        cur.unregister(name)
    except duckdb.Error:  # the transaction already failed; the view goes with it
        pass


# ---------------------------------------------------------------------------------------------
# table files (manifests in, exports out)
# ---------------------------------------------------------------------------------------------
def read_table_file(path: Path) -> pd.DataFrame:
    """A Parquet file as text: every column cast to VARCHAR (dates as YYYY-MM-DD), NULL as "".

    Raises duckdb.Error when the file is not Parquet (the caller names the file).
    """
    con = duckdb.connect()
    try:
        frame = con.execute("SELECT COLUMNS(*)::VARCHAR FROM read_parquet(?)",
                            [str(path)]).df()
    finally:
        con.close()
    return frame.fillna("").astype(str)


def write_table_file(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write ``frame`` as CSV (header, ISO dates, empty for missing) or Parquet at ``path``."""
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"format must be one of {TABLE_FORMATS}, got {fmt!r}")
    con = duckdb.connect()
    try:
        con.register("_export", frame)
        option = "(FORMAT parquet)" if fmt == "parquet" else "(FORMAT csv, HEADER true)"
        target = str(path).replace("'", "''")
        con.execute(f"COPY (SELECT * FROM _export) TO '{target}' {option}")
    finally:
        con.close()
