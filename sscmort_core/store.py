"""The DuckDB cohort store: schema, migrations and every SQL statement of sscmort.

One process owns the file for writing (DuckDB locks it); a second writer gets
:class:`StoreLockedError`. Every multi-row write runs in one transaction. All values are bound
parameters; table and column names come only from the constants in this module.

Threads: a DuckDB connection is not thread-safe. :meth:`Store.cursor` gives a thread its own
cursor over the same database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd

from sscmort_core.errors import SchemaTooNewError, StoreError, StoreLockedError

DEFAULT_STORE_PATH = Path("data/sscmort.duckdb")

# Ordered migrations: index i (1-based) brings the schema from version i-1 to version i.
# Never edit a released migration; append a new one.
MIGRATIONS: tuple[str, ...] = (
    # --- 1: the initial schema --------------------------------------------------------------
    """
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
    CREATE TABLE patients (
        patient_id VARCHAR PRIMARY KEY,
        sex VARCHAR, birth_year INTEGER, subtype VARCHAR, antibody VARCHAR,
        death_date DATE, last_followup_date DATE,
        source VARCHAR NOT NULL, synthetic BOOLEAN NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE scans (
        scan_id VARCHAR PRIMARY KEY,
        patient_id VARCHAR NOT NULL REFERENCES patients (patient_id),
        scan_date DATE NOT NULL,
        scanner VARCHAR, kernel VARCHAR, series_description VARCHAR,
        slice_thickness_mm DOUBLE,
        spacing_z_mm DOUBLE, spacing_y_mm DOUBLE, spacing_x_mm DOUBLE,
        shape_z INTEGER, shape_y INTEGER, shape_x INTEGER,
        volume_path VARCHAR, volume_sha256 VARCHAR, voxel_sha256 VARCHAR,
        volume_seed BIGINT, noise_hu DOUBLE,
        source VARCHAR NOT NULL, synthetic BOOLEAN NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE INDEX scans_patient ON scans (patient_id);
    CREATE TABLE synthetic_truth (
        scan_id VARCHAR PRIMARY KEY REFERENCES scans (scan_id),
        true_ild_extent_pct DOUBLE NOT NULL,
        true_risk_1y DOUBLE NOT NULL, true_risk_3y DOUBLE NOT NULL, true_risk_5y DOUBLE NOT NULL,
        progressor BOOLEAN
    );
    CREATE TABLE clinical (
        patient_id VARCHAR NOT NULL REFERENCES patients (patient_id),
        date DATE NOT NULL,
        fvc_pct_pred DOUBLE, dlco_pct_pred DOUBLE,
        source VARCHAR NOT NULL, synthetic BOOLEAN NOT NULL
    );
    CREATE INDEX clinical_patient ON clinical (patient_id);
    CREATE TABLE qct (
        scan_id VARCHAR PRIMARY KEY REFERENCES scans (scan_id),
        lung_volume_ml DOUBLE, mean_lung_density_hu DOUBLE, skewness DOUBLE, kurtosis DOUBLE,
        haa_pct DOUBLE, ild_extent_pct DOUBLE, left_volume_ml DOUBLE, right_volume_ml DOUBLE,
        method_version VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE radiomics_features (
        scan_id VARCHAR NOT NULL REFERENCES scans (scan_id),
        param_hash VARCHAR NOT NULL, feature VARCHAR NOT NULL, value DOUBLE,
        pyradiomics_version VARCHAR NOT NULL,
        PRIMARY KEY (scan_id, param_hash, feature)
    );
    CREATE TABLE radiomics_failures (
        scan_id VARCHAR NOT NULL, param_hash VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (scan_id, param_hash)
    );
    CREATE TABLE models (
        model_id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL, backbone VARCHAR, version VARCHAR NOT NULL,
        config JSON, data_hash VARCHAR, weights_path VARCHAR, weights_sha256 VARCHAR,
        card JSON, synthetic BOOLEAN NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE predictions (
        model_id VARCHAR NOT NULL, scan_id VARCHAR NOT NULL, horizon_years INTEGER NOT NULL,
        risk DOUBLE NOT NULL, fold INTEGER, split VARCHAR NOT NULL,
        PRIMARY KEY (model_id, scan_id, horizon_years, split)
    );
    CREATE TABLE metrics (
        model_id VARCHAR NOT NULL, horizon_years INTEGER NOT NULL, metric VARCHAR NOT NULL,
        value DOUBLE, ci_low DOUBLE, ci_high DOUBLE,
        n_scans INTEGER, n_patients INTEGER, n_events INTEGER,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (model_id, horizon_years, metric)
    );
    CREATE TABLE explanations (
        model_id VARCHAR NOT NULL, scan_id VARCHAR NOT NULL, horizon_years INTEGER NOT NULL,
        kind VARCHAR NOT NULL, feature VARCHAR NOT NULL, value DOUBLE, feature_value DOUBLE,
        base_value DOUBLE,
        PRIMARY KEY (model_id, scan_id, horizon_years, kind, feature)
    );
    CREATE TABLE explanation_arrays (
        model_id VARCHAR NOT NULL, scan_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,
        payload BLOB NOT NULL, meta JSON,
        PRIMARY KEY (model_id, scan_id, kind)
    );
    CREATE TABLE jobs (
        job_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, status VARCHAR NOT NULL,
        progress DOUBLE NOT NULL DEFAULT 0, message VARCHAR, params JSON, error VARCHAR,
        started_at TIMESTAMP NOT NULL DEFAULT current_timestamp, finished_at TIMESTAMP
    );
    """,
    # --- 2: why a metric could not be computed (e.g. too few events) -------------------------
    """
    ALTER TABLE metrics ADD COLUMN note VARCHAR;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class CohortSummary:
    """Headline counts of a store (Overview page, CLI JSON)."""

    patients: int
    scans: int
    synthetic_patients: int
    median_followup_years: float | None
    first_scan: dt.date | None
    last_scan: dt.date | None


class Store:
    """An open store. Use :func:`open_store`; close with :meth:`close` or as a context manager."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        self.path = path
        self.con = con
        self.read_only = read_only
        self._local = threading.local()
        self._main_thread = threading.get_ident()

    # -- connection handling -----------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's own cursor (the main thread uses the connection itself)."""
        if threading.get_ident() == self._main_thread:
            return self.con
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self.con.cursor()
            self._local.cursor = cur
        return cur

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on this thread's cursor: committed on success, rolled back on error."""
        cur = self.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def query_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a query; DATE columns come back as ``datetime.date`` objects (not Timestamps)."""
        cur = self.cursor().execute(sql, list(params or []))
        date_cols = [d[0] for d in cur.description if str(d[1]).upper() == "DATE"]
        df = cur.df()
        for col in date_cols:
            df[col] = [None if pd.isna(v) else pd.Timestamp(v).date() for v in df[col]]
        return df

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def data_dir(self) -> Path:
        """Folder beside the store file for de-identified volumes and other artefacts."""
        return self.path.parent / f"{self.path.stem}_files"


# ---------------------------------------------------------------------------------------------
# opening and migrating
# ---------------------------------------------------------------------------------------------
def _check_path(path: Path, read_only: bool) -> None:
    if path.exists() and path.is_dir():
        raise StoreError("is a directory, not a store file; give a file path such as "
                         "data/sscmort.duckdb", path)
    if read_only:
        if not path.exists():
            raise StoreError("no store at this path; build one with `sscmort demo`", path)
        return
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise StoreError(f"parent {parent} is not a directory", path)
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError("store file is not writable", path)
    if parent.exists() and not path.exists() and not os.access(parent, os.W_OK):
        raise StoreError(f"folder {parent} is not writable", path)


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as err:
        text = str(err)
        if "lock" in text.lower():
            raise StoreLockedError(
                "store is open for writing in another process (the app or a CLI command); "
                "stop that process or use another --store path", path) from None
        raise StoreError(f"cannot open store: {text.splitlines()[0]}", path) from None
    except duckdb.Error as err:
        raise StoreError(f"not a valid store file: {str(err).splitlines()[0]}", path) from None


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version recorded in the store, 0 for an empty database."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()[0]
    if not exists:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION` in one transaction; return the version."""
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"store has schema version {current} but this sscmort knows only up to "
            f"{SCHEMA_VERSION}; upgrade sscmort (it never migrates a store down)", path)
    if current == SCHEMA_VERSION:
        return current
    con.execute("BEGIN TRANSACTION")
    try:
        if current == 0:
            con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                        "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            con.execute(MIGRATIONS[version - 1])
            con.execute("INSERT INTO schema_version (version) VALUES (?)", [version])
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return SCHEMA_VERSION


def open_store(path: str | Path = DEFAULT_STORE_PATH, *, read_only: bool = False) -> Store:
    """Open (creating and migrating if needed) the store at ``path``.

    Raises StoreError (directory, unwritable, corrupt), StoreLockedError (another writer),
    SchemaTooNewError (store from a newer sscmort).
    """
    path = Path(path)
    _check_path(path, read_only)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, read_only)
    try:
        if read_only:
            version = schema_version(con)
            if version > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"store has schema version {version}; this sscmort knows up to "
                    f"{SCHEMA_VERSION}", path)
            if version < SCHEMA_VERSION:
                raise StoreError(f"store has schema version {version}; open it once for "
                                 "writing to migrate it", path)
        else:
            migrate(con, path)
    except BaseException:
        con.close()
        raise
    return Store(path, con, read_only)


# ---------------------------------------------------------------------------------------------
# meta
# ---------------------------------------------------------------------------------------------
def set_meta(cur: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    cur.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])


def get_meta(store: Store, key: str) -> str | None:
    row = store.cursor().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


def is_synthetic(store: Store) -> bool:
    """True when any patient in the store is synthetic (the UI then shows the banner)."""
    row = store.cursor().execute("SELECT count(*) FROM patients WHERE synthetic").fetchone()
    return bool(row[0])


# ---------------------------------------------------------------------------------------------
# bulk inserts from DataFrames (one transaction each, done by the caller)
# ---------------------------------------------------------------------------------------------
PATIENT_COLUMNS = ("patient_id", "sex", "birth_year", "subtype", "antibody", "death_date",
                   "last_followup_date", "source", "synthetic")
SCAN_COLUMNS = ("scan_id", "patient_id", "scan_date", "scanner", "kernel", "series_description",
                "slice_thickness_mm", "spacing_z_mm", "spacing_y_mm", "spacing_x_mm",
                "shape_z", "shape_y", "shape_x", "volume_path", "volume_sha256", "voxel_sha256",
                "volume_seed",
                "noise_hu", "source", "synthetic")
TRUTH_COLUMNS = ("scan_id", "true_ild_extent_pct", "true_risk_1y", "true_risk_3y",
                 "true_risk_5y", "progressor")
CLINICAL_COLUMNS = ("patient_id", "date", "fvc_pct_pred", "dlco_pct_pred", "source",
                    "synthetic")
QCT_COLUMNS = ("scan_id", "lung_volume_ml", "mean_lung_density_hu", "skewness", "kurtosis",
               "haa_pct", "ild_extent_pct", "left_volume_ml", "right_volume_ml",
               "method_version")
PREDICTION_COLUMNS = ("model_id", "scan_id", "horizon_years", "risk", "fold", "split")
METRIC_COLUMNS = ("model_id", "horizon_years", "metric", "value", "ci_low", "ci_high",
                  "n_scans", "n_patients", "n_events", "note")
EXPLANATION_COLUMNS = ("model_id", "scan_id", "horizon_years", "kind", "feature", "value",
                       "feature_value", "base_value")
RADIOMICS_COLUMNS = ("scan_id", "param_hash", "feature", "value", "pyradiomics_version")

_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": PATIENT_COLUMNS, "scans": SCAN_COLUMNS, "synthetic_truth": TRUTH_COLUMNS,
    "clinical": CLINICAL_COLUMNS, "qct": QCT_COLUMNS, "predictions": PREDICTION_COLUMNS,
    "metrics": METRIC_COLUMNS, "explanations": EXPLANATION_COLUMNS,
    "radiomics_features": RADIOMICS_COLUMNS,
}


def insert_frame(cur: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame,
                 *, replace: bool = False) -> int:
    """Insert the rows of ``frame`` into ``table`` (columns as listed in this module).

    ``replace`` uses INSERT OR REPLACE (tables with a primary key). Returns rows written.
    Run it inside :meth:`Store.transaction` so a failure leaves nothing behind.
    """
    columns = _TABLE_COLUMNS[table]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}: missing columns {missing}")
    if frame.empty:
        return 0
    view = frame.loc[:, list(columns)].copy()
    name = f"_incoming_{table}"
    cur.register(name, view)
    try:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        cols = ", ".join(columns)
        cur.execute(f"{verb} INTO {table} ({cols}) SELECT {cols} FROM {name}")
    finally:
        try:
            cur.unregister(name)
        except duckdb.Error:  # the transaction already failed; the view goes with it
            pass
    return len(view)


def delete_predictions(cur: duckdb.DuckDBPyConnection, model_id: str) -> None:
    cur.execute("DELETE FROM predictions WHERE model_id = ?", [model_id])


def delete_metrics(cur: duckdb.DuckDBPyConnection, model_id: str) -> None:
    cur.execute("DELETE FROM metrics WHERE model_id = ?", [model_id])


def upsert_model(cur: duckdb.DuckDBPyConnection, *, model_id: str, kind: str,
                 backbone: str | None, version: str, config: dict[str, Any],
                 data_hash: str | None, weights_path: str | None,
                 weights_sha256: str | None, card: dict[str, Any], synthetic: bool) -> None:
    cur.execute(
        "INSERT OR REPLACE INTO models (model_id, kind, backbone, version, config, data_hash, "
        "weights_path, weights_sha256, card, synthetic) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [model_id, kind, backbone, version, json.dumps(config), data_hash, weights_path,
         weights_sha256, json.dumps(card, default=str), synthetic])


# ---------------------------------------------------------------------------------------------
# reads
# ---------------------------------------------------------------------------------------------
def cohort_summary(store: Store) -> CohortSummary:
    cur = store.cursor()
    n_pat, n_syn = cur.execute(
        "SELECT count(*), count(*) FILTER (WHERE synthetic) FROM patients").fetchone()
    n_scans, first, last = cur.execute(
        "SELECT count(*), min(scan_date), max(scan_date) FROM scans").fetchone()
    med = cur.execute(
        """SELECT median(date_diff('day', s.first_scan, coalesce(p.death_date,
                  p.last_followup_date)) / 365.25)
           FROM patients p JOIN (SELECT patient_id, min(scan_date) AS first_scan
                                 FROM scans GROUP BY patient_id) s USING (patient_id)"""
    ).fetchone()[0]
    return CohortSummary(patients=int(n_pat), scans=int(n_scans),
                         synthetic_patients=int(n_syn or 0),
                         median_followup_years=None if med is None else float(med),
                         first_scan=first, last_scan=last)


def patients_frame(store: Store) -> pd.DataFrame:
    """Patients with their first-scan age and baseline FVC/DLCO (nearest to the first scan)."""
    return store.query_df(
        """WITH first AS (SELECT patient_id, min(scan_date) AS first_scan, count(*) AS n_scans
                          FROM scans GROUP BY patient_id),
               base AS (SELECT c.patient_id, arg_min(c.fvc_pct_pred,
                               abs(date_diff('day', f.first_scan, c.date))) AS baseline_fvc,
                               arg_min(c.dlco_pct_pred,
                               abs(date_diff('day', f.first_scan, c.date))) AS baseline_dlco
                        FROM clinical c JOIN first f USING (patient_id) GROUP BY c.patient_id)
           SELECT p.patient_id, p.sex, p.birth_year, p.subtype, p.antibody, p.death_date,
                  p.last_followup_date, p.source, p.synthetic, f.first_scan, f.n_scans,
                  year(f.first_scan) - p.birth_year AS age_at_first_scan,
                  b.baseline_fvc, b.baseline_dlco,
                  p.death_date IS NOT NULL AS died,
                  date_diff('day', f.first_scan, coalesce(p.death_date, p.last_followup_date))
                      / 365.25 AS followup_years
           FROM patients p LEFT JOIN first f USING (patient_id)
           LEFT JOIN base b USING (patient_id)
           ORDER BY p.patient_id""")


def scans_frame(store: Store, patient_id: str | None = None) -> pd.DataFrame:
    """Scans joined with patient outcome dates (and QCT where measured)."""
    where, params = ("WHERE s.patient_id = ?", [patient_id]) if patient_id else ("", [])
    return store.query_df(
        f"""SELECT s.*, p.death_date, p.last_followup_date, p.birth_year,
                   q.lung_volume_ml, q.mean_lung_density_hu, q.skewness, q.kurtosis,
                   q.haa_pct, q.ild_extent_pct
            FROM scans s JOIN patients p USING (patient_id)
            LEFT JOIN qct q USING (scan_id) {where}
            ORDER BY s.patient_id, s.scan_date, s.scan_id""", params)


def scan_row(store: Store, scan_id: str) -> dict[str, Any] | None:
    df = store.query_df(
        """SELECT s.*, t.true_ild_extent_pct FROM scans s
           LEFT JOIN synthetic_truth t USING (scan_id) WHERE s.scan_id = ?""", [scan_id])
    return None if df.empty else df.iloc[0].to_dict()


def scan_rows(store: Store, scan_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Scan rows with what :func:`sscmort_core.pipeline.volume_from_row` needs (plain dicts)."""
    where, params = "", []
    if scan_ids is not None:
        where = f"WHERE s.scan_id IN ({', '.join('?' for _ in scan_ids)})" if scan_ids else \
            "WHERE false"
        params = list(scan_ids)
    df = store.query_df(
        f"""SELECT s.*, t.true_ild_extent_pct FROM scans s
            LEFT JOIN synthetic_truth t USING (scan_id) {where} ORDER BY s.scan_id""", params)
    return [{k: to_python(v) for k, v in r.items()} for r in df.to_dict(orient="records")]


def scan_with_voxels(store: Store, voxel_sha256: str) -> str | None:
    """scan_id of a stored scan with exactly these voxels (duplicate upload check)."""
    row = store.cursor().execute("SELECT scan_id FROM scans WHERE voxel_sha256 = ? LIMIT 1",
                                 [voxel_sha256]).fetchone()
    return None if row is None else str(row[0])


def patient_row(store: Store, patient_id: str) -> dict[str, Any] | None:
    df = store.query_df("SELECT * FROM patients WHERE patient_id = ?", [patient_id])
    return None if df.empty else {k: to_python(v) for k, v in df.iloc[0].to_dict().items()}


def extend_followup(cur: duckdb.DuckDBPyConnection, patient_id: str, seen_alive: dt.date) -> None:
    """A scan on ``seen_alive`` proves the patient alive then: move last follow-up forward."""
    cur.execute("UPDATE patients SET last_followup_date = ? WHERE patient_id = ? AND "
                "death_date IS NULL AND (last_followup_date IS NULL OR last_followup_date < ?)",
                [seen_alive, patient_id, seen_alive])


def clinical_frame(store: Store, patient_id: str | None = None) -> pd.DataFrame:
    where, params = ("WHERE patient_id = ?", [patient_id]) if patient_id else ("", [])
    return store.query_df(f"SELECT * FROM clinical {where} ORDER BY patient_id, date", params)


def truth_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM synthetic_truth ORDER BY scan_id")


def qct_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM qct ORDER BY scan_id")


def scans_missing_qct(store: Store) -> list[str]:
    rows = store.cursor().execute(
        "SELECT scan_id FROM scans WHERE scan_id NOT IN (SELECT scan_id FROM qct) "
        "ORDER BY scan_id").fetchall()
    return [r[0] for r in rows]


def models_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM models ORDER BY kind, model_id")


def predictions_frame(store: Store, model_ids: Sequence[str] | None = None,
                      split: str | None = "oof") -> pd.DataFrame:
    clauses, params = [], []
    if model_ids:
        clauses.append(f"model_id IN ({', '.join('?' for _ in model_ids)})")
        params.extend(model_ids)
    if split:
        clauses.append("split = ?")
        params.append(split)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    return store.query_df(f"SELECT * FROM predictions {where} ORDER BY model_id, scan_id, "
                          "horizon_years", params)


def metrics_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM metrics ORDER BY model_id, horizon_years, metric")


def table_counts(store: Store) -> dict[str, int]:
    cur = store.cursor()
    out = {}
    for table in ("patients", "scans", "clinical", "qct", "radiomics_features", "models",
                  "predictions", "metrics", "explanations", "jobs"):
        out[table] = int(cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    return out


def jobs_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM jobs ORDER BY started_at DESC")


def to_python(value: Any) -> Any:
    """numpy/pandas scalars -> plain Python (for JSON and bound parameters)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, pd.Timestamp):
        return value.date()
    if value is pd.NaT:
        return None
    return value


# --- radiomics / tabular models ---
def radiomics_extracted_scan_ids(store: Store, param_hash: str) -> set[str]:
    """Scans that already have features for ``param_hash``."""
    rows = store.cursor().execute(
        "SELECT DISTINCT scan_id FROM radiomics_features WHERE param_hash = ?",
        [param_hash]).fetchall()
    return {r[0] for r in rows}


def radiomics_feature_count(store: Store, param_hash: str) -> int:
    row = store.cursor().execute(
        "SELECT count(DISTINCT feature) FROM radiomics_features WHERE param_hash = ?",
        [param_hash]).fetchone()
    return int(row[0] or 0)


def clear_radiomics_failures(cur: duckdb.DuckDBPyConnection, scan_ids: Sequence[str],
                             param_hash: str) -> None:
    if not scan_ids:
        return
    marks = ", ".join("?" for _ in scan_ids)
    cur.execute(f"DELETE FROM radiomics_failures WHERE param_hash = ? AND scan_id IN ({marks})",
                [param_hash, *scan_ids])


def record_radiomics_failures(cur: duckdb.DuckDBPyConnection,
                              failures: Sequence[tuple[str, str]], param_hash: str) -> None:
    """Record (scan_id, reason) pairs, replacing an earlier reason for the same scan."""
    cur.executemany(
        "INSERT OR REPLACE INTO radiomics_failures (scan_id, param_hash, reason) VALUES (?, ?, ?)",
        [[scan_id, param_hash, reason] for scan_id, reason in failures])


def radiomics_failures_frame(store: Store, param_hash: str | None = None) -> pd.DataFrame:
    where, params = ("WHERE param_hash = ?", [param_hash]) if param_hash else ("", [])
    return store.query_df(f"SELECT * FROM radiomics_failures {where} ORDER BY scan_id", params)


def radiomics_param_sets(store: Store) -> pd.DataFrame:
    """One row per parameter hash: pyradiomics version(s), scans, features, most recent first
    by scan count."""
    return store.query_df(
        """SELECT param_hash, string_agg(DISTINCT pyradiomics_version, ', ') AS pyradiomics_version,
                  count(DISTINCT scan_id) AS n_scans, count(DISTINCT feature) AS n_features
           FROM radiomics_features GROUP BY param_hash ORDER BY n_scans DESC, param_hash""")


def radiomics_feature_names(store: Store, param_hash: str) -> list[str]:
    rows = store.cursor().execute(
        "SELECT DISTINCT feature FROM radiomics_features WHERE param_hash = ? ORDER BY feature",
        [param_hash]).fetchall()
    return [r[0] for r in rows]


def radiomics_long_frame(store: Store, param_hash: str,
                         features: Sequence[str] | None = None) -> pd.DataFrame:
    """(scan_id, feature, value) rows for ``param_hash`` (optionally only ``features``)."""
    where, params = "WHERE param_hash = ?", [param_hash]
    if features is not None:
        where += f" AND feature IN ({', '.join('?' for _ in features) or 'NULL'})"
        params.extend(features)
    return store.query_df(f"SELECT scan_id, feature, value FROM radiomics_features {where} "
                          "ORDER BY scan_id, feature", params)


def radiomics_feature_by_scan(store: Store, param_hash: str, feature: str) -> pd.DataFrame:
    """One feature for every extracted scan, with what the feature browser groups by."""
    return store.query_df(
        """SELECT r.scan_id, r.value, s.patient_id, s.scan_date, s.scanner, s.kernel,
                  s.slice_thickness_mm, p.death_date, p.last_followup_date
           FROM radiomics_features r JOIN scans s USING (scan_id)
           JOIN patients p USING (patient_id)
           WHERE r.param_hash = ? AND r.feature = ? ORDER BY r.scan_id""", [param_hash, feature])


def model_row(store: Store, model_id: str) -> dict[str, Any] | None:
    df = store.query_df("SELECT * FROM models WHERE model_id = ?", [model_id])
    return None if df.empty else {k: to_python(v) for k, v in df.iloc[0].to_dict().items()}


def delete_model_outputs(cur: duckdb.DuckDBPyConnection, model_id: str) -> None:
    """Remove a model's predictions, metrics and explanations (before re-registering it)."""
    for table in ("predictions", "metrics", "explanations", "explanation_arrays"):
        cur.execute(f"DELETE FROM {table} WHERE model_id = ?", [model_id])


def explanations_frame(store: Store, model_id: str, *, horizon_years: int | None = None,
                       scan_id: str | None = None, kind: str = "shap") -> pd.DataFrame:
    clauses, params = ["model_id = ?", "kind = ?"], [model_id, kind]
    if horizon_years is not None:
        clauses.append("horizon_years = ?")
        params.append(horizon_years)
    if scan_id is not None:
        clauses.append("scan_id = ?")
        params.append(scan_id)
    return store.query_df(
        f"SELECT * FROM explanations WHERE {' AND '.join(clauses)} "
        "ORDER BY scan_id, horizon_years, feature", params)


def explained_scan_ids(store: Store, model_id: str, kind: str = "shap") -> list[str]:
    rows = store.cursor().execute(
        "SELECT DISTINCT scan_id FROM explanations WHERE model_id = ? AND kind = ? "
        "ORDER BY scan_id", [model_id, kind]).fetchall()
    return [r[0] for r in rows]


def patient_predictions_frame(store: Store, patient_id: str, split: str = "oof",
                              kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """A patient's stored risks: scan_id, scan_date, model_id, kind, horizon_years, risk."""
    where, params = "WHERE s.patient_id = ? AND pr.split = ?", [patient_id, split]
    if kinds:
        where += f" AND m.kind IN ({', '.join('?' for _ in kinds)})"
        params.extend(kinds)
    return store.query_df(
        f"""SELECT pr.scan_id, s.scan_date, pr.model_id, m.kind, m.card ->> 'label' AS label,
                   pr.horizon_years, pr.risk, pr.fold
            FROM predictions pr JOIN scans s USING (scan_id) JOIN models m USING (model_id)
            {where} ORDER BY pr.model_id, s.scan_date, pr.horizon_years""", params)


# --- evaluation ---
def _in_clause(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join('?' for _ in values)})" if values else "false"


def outcome_fingerprint(store: Store) -> str:
    """A token that changes when any scan date, death date or follow-up date changes (with
    :func:`oof_prediction_summary`, what app-side caches of labelled metrics are keyed on)."""
    row = store.cursor().execute(
        """SELECT (SELECT count(*) FROM scans), (SELECT sum(hash(scan_id, scan_date)) FROM scans),
                  (SELECT sum(hash(patient_id, death_date, last_followup_date))
                   FROM patients)""").fetchone()
    return ":".join(str(v) for v in row)


def oof_prediction_summary(store: Store, model_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Per model and horizon: count and risk sum of out-of-fold predictions.

    Columns model_id, horizon_years, n_predictions, risk_sum; cheap, so a page can tell which
    models have predictions and whether they changed since it last looked.
    """
    where, params = "", []
    if model_ids is not None:
        where, params = f"AND {_in_clause('model_id', model_ids)}", list(model_ids)
    return store.query_df(
        f"""SELECT model_id, horizon_years, count(*) AS n_predictions, sum(risk) AS risk_sum
            FROM predictions WHERE split = 'oof' {where}
            GROUP BY model_id, horizon_years ORDER BY model_id, horizon_years""", params)


def metrics_for_models(store: Store, model_ids: Sequence[str]) -> pd.DataFrame:
    """Metric rows of the given models (all horizons), ordered by model, horizon, metric."""
    return store.query_df(
        f"""SELECT * FROM metrics WHERE {_in_clause('model_id', model_ids)}
            ORDER BY model_id, horizon_years, metric""", list(model_ids))


def auc_rows_with_models(store: Store) -> pd.DataFrame:
    """Computed AUC rows (value not NULL) joined with their model's kind, version and card."""
    return store.query_df(
        """SELECT m.model_id, m.horizon_years, m.value, m.ci_low, m.ci_high, m.n_scans,
                  m.n_patients, m.n_events, d.kind, d.backbone, d.version, d.card
           FROM metrics m JOIN models d USING (model_id)
           WHERE m.metric = 'auc' AND m.value IS NOT NULL
           ORDER BY m.horizon_years, m.model_id""")


# --- deep models / jobs ---
def insert_job(cur: duckdb.DuckDBPyConnection, job_id: str, kind: str,
               params: dict[str, Any], message: str = "queued") -> None:
    cur.execute("INSERT INTO jobs (job_id, kind, status, progress, message, params) "
                "VALUES (?, ?, 'running', 0, ?, ?)",
                [job_id, kind, message, json.dumps(params, default=str)])


def update_job_progress(cur: duckdb.DuckDBPyConnection, job_id: str, progress: float,
                        message: str) -> None:
    cur.execute("UPDATE jobs SET progress = ?, message = ? WHERE job_id = ?",
                [float(min(1.0, max(0.0, progress))), message, job_id])


def finish_job(cur: duckdb.DuckDBPyConnection, job_id: str, status: str, message: str,
               error: str | None = None) -> None:
    """status: 'done', 'failed' or 'interrupted'."""
    cur.execute("UPDATE jobs SET status = ?, message = ?, error = ?, finished_at = "
                "current_timestamp, progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END "
                "WHERE job_id = ?", [status, message, error, status, job_id])


def job_row(store: Store, job_id: str) -> dict[str, Any] | None:
    df = store.query_df("SELECT * FROM jobs WHERE job_id = ?", [job_id])
    return None if df.empty else {k: to_python(v) for k, v in df.iloc[0].to_dict().items()}


def running_job_ids(store: Store) -> list[str]:
    rows = store.cursor().execute(
        "SELECT job_id FROM jobs WHERE status = 'running' ORDER BY started_at").fetchall()
    return [r[0] for r in rows]


def deep_models_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM models WHERE kind = 'deep' ORDER BY backbone, "
                          "try_cast(version AS INTEGER), model_id")


def put_explanation_array(cur: duckdb.DuckDBPyConnection, model_id: str, scan_id: str,
                          kind: str, payload: bytes, meta: dict[str, Any]) -> None:
    cur.execute("INSERT OR REPLACE INTO explanation_arrays (model_id, scan_id, kind, payload, "
                "meta) VALUES (?, ?, ?, ?, ?)",
                [model_id, scan_id, kind, payload, json.dumps(meta, default=str)])


def explanation_array(store: Store, model_id: str, scan_id: str,
                      kind: str) -> tuple[bytes, dict[str, Any]] | None:
    row = store.cursor().execute(
        "SELECT payload, meta FROM explanation_arrays WHERE model_id = ? AND scan_id = ? "
        "AND kind = ?", [model_id, scan_id, kind]).fetchone()
    if row is None:
        return None
    return bytes(row[0]), json.loads(row[1]) if row[1] else {}
