"""Queries of the cohort: patients, scans, clinical measurements, synthetic truth."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import duckdb

from sscmort_core.store.db import Store, in_clause, one_row, plain_row, to_python
from sscmort_core.store.schema import PATIENT_HISTORY_COLUMNS

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class CohortSummary:
    """Headline counts of a store (Overview page, CLI JSON)."""

    patients: int
    scans: int
    synthetic_patients: int
    median_followup_years: float | None
    first_scan: dt.date | None
    last_scan: dt.date | None


def set_patient_history(cur: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> int:
    """Write ever-smoker, pulmonary hypertension and cardiac involvement (bool or None) for the
    patients of ``frame`` (patient_id plus :data:`PATIENT_HISTORY_COLUMNS`), already in the
    patients table. Run inside a transaction. Returns rows given."""
    missing = [c for c in ("patient_id", *PATIENT_HISTORY_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"patient history: missing columns {missing}")
    view = frame.loc[:, ["patient_id", *PATIENT_HISTORY_COLUMNS]].copy()
    cur.register("_incoming_history", view)
    try:
        sets = ", ".join(f"{c} = h.{c}" for c in PATIENT_HISTORY_COLUMNS)
        cur.execute(f"""UPDATE patients SET {sets} FROM _incoming_history h
                        WHERE patients.patient_id = h.patient_id""")
    finally:
        try:
            cur.unregister("_incoming_history")
        except duckdb.Error:  # the transaction already failed; the view goes with it
            pass
    return len(view)


def is_synthetic(store: Store) -> bool:
    """True when any patient in the store is synthetic (the UI then shows the banner)."""
    row = store.cursor().execute("SELECT count(*) FROM patients WHERE synthetic").fetchone()
    return bool(row[0])


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
                  p.last_followup_date, p.source, p.synthetic, p.ever_smoker,
                  p.pulmonary_hypertension, p.cardiac_involvement, f.first_scan, f.n_scans,
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
    return one_row(store, """SELECT s.*, t.true_ild_extent_pct, t.progressor, t.emphysema_pct
                             FROM scans s LEFT JOIN synthetic_truth t USING (scan_id)
                             WHERE s.scan_id = ?""", [scan_id])


def scan_rows(store: Store, scan_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Scan rows with what :func:`sscmort_core.scans.volume_from_row` needs (plain dicts)."""
    where, params = "", []
    if scan_ids is not None:
        where = f"WHERE {in_clause('s.scan_id', scan_ids)}"
        params = list(scan_ids)
    df = store.query_df(
        f"""SELECT s.*, t.true_ild_extent_pct, t.progressor, t.emphysema_pct FROM scans s
            LEFT JOIN synthetic_truth t USING (scan_id) {where} ORDER BY s.scan_id""", params)
    return [{k: to_python(v) for k, v in r.items()} for r in df.to_dict(orient="records")]


def scan_id_list(store: Store, scan_ids: Sequence[str] | None = None) -> list[str]:
    """Stored scan ids, sorted (all, or those of ``scan_ids`` that are stored): what a batch
    stage holds for the whole registry, reading the rows chunk by chunk."""
    where, params = "", []
    if scan_ids is not None:
        where, params = f"WHERE {in_clause('scan_id', scan_ids)}", list(scan_ids)
    rows = store.cursor().execute(f"SELECT scan_id FROM scans {where} ORDER BY scan_id",
                                  params).fetchall()
    return [str(r[0]) for r in rows]


def scan_with_voxels(store: Store, voxel_sha256: str) -> str | None:
    """scan_id of a stored scan with exactly these voxels (duplicate upload check)."""
    row = store.cursor().execute("SELECT scan_id FROM scans WHERE voxel_sha256 = ? LIMIT 1",
                                 [voxel_sha256]).fetchone()
    return None if row is None else str(row[0])


def patient_row(store: Store, patient_id: str) -> dict[str, Any] | None:
    """The patients row of ``patient_id`` as plain Python values, or None."""
    return plain_row(store, "SELECT * FROM patients WHERE patient_id = ?", [patient_id])


def extend_followup(cur: duckdb.DuckDBPyConnection, patient_id: str, seen_alive: dt.date) -> None:
    """A scan on ``seen_alive`` proves the patient alive then: move last follow-up forward."""
    cur.execute("UPDATE patients SET last_followup_date = ? WHERE patient_id = ? AND "
                "death_date IS NULL AND (last_followup_date IS NULL OR last_followup_date < ?)",
                [seen_alive, patient_id, seen_alive])


GEOMETRY_COLUMNS = ("shape_z", "shape_y", "shape_x", "spacing_z_mm", "spacing_y_mm",
                    "spacing_x_mm", "volume_sha256", "voxel_sha256")


def set_scan_geometry(cur: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> int:
    """Set the grid and voxel hashes of stored scans (``frame``: scan_id and
    :data:`GEOMETRY_COLUMNS`; the demo measures them after writing the cohort). Returns rows."""
    if frame.empty:
        return 0
    view = frame.loc[:, ["scan_id", *GEOMETRY_COLUMNS]].copy()
    cur.register("_incoming_geometry", view)
    try:
        sets = ", ".join(f"{c} = g.{c}" for c in GEOMETRY_COLUMNS)
        cur.execute(f"UPDATE scans SET {sets} FROM _incoming_geometry g "
                    "WHERE scans.scan_id = g.scan_id")
    finally:
        try:
            cur.unregister("_incoming_geometry")
        except duckdb.Error:  # the transaction already failed; the view goes with it
            pass
    return len(view)


def clinical_frame(store: Store, patient_id: str | None = None) -> pd.DataFrame:
    where, params = ("WHERE patient_id = ?", [patient_id]) if patient_id else ("", [])
    return store.query_df(f"SELECT * FROM clinical {where} ORDER BY patient_id, date", params)


def truth_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM synthetic_truth ORDER BY scan_id")


def table_counts(store: Store) -> dict[str, int]:
    cur = store.cursor()
    out = {}
    for table in ("patients", "scans", "clinical", "qct", "radiomics_features", "models",
                  "predictions", "metrics", "explanations", "jobs"):
        out[table] = int(cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    return out


def outcome_fingerprint(store: Store) -> str:
    """A token that changes when any scan date, death date or follow-up date changes (with
    :func:`oof_prediction_summary`, what app-side caches of labelled metrics are keyed on)."""
    row = store.cursor().execute(
        """SELECT (SELECT count(*) FROM scans), (SELECT sum(hash(scan_id, scan_date)) FROM scans),
                  (SELECT sum(hash(patient_id, death_date, last_followup_date))
                   FROM patients)""").fetchone()
    return ":".join(str(v) for v in row)
