"""Queries of the per-scan lung measures beyond the whole-lung QCT row: QCT by zone
(``qct_regions``), pattern extents (``qct_patterns``), mask QC checks (``mask_qc``) and the
reviews that accept a flagged mask (``mask_qc_reviews``). Every row records the method
version it was measured with; a flagged scan is left out of training until it is accepted for
that version."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Sequence

import duckdb

from sscmort_core.errors import DataError
from sscmort_core.store.db import Store, in_clause, insert_frame, insert_rows, to_python

if TYPE_CHECKING:
    import pandas as pd

MEASURE_TABLES: tuple[str, ...] = ("qct", "qct_regions", "qct_patterns", "mask_qc")


def replace_lung_measures(cur: duckdb.DuckDBPyConnection, scan_ids: Sequence[str],
                          qct: Sequence[dict], regions: Sequence[dict],
                          patterns: Sequence[dict], qc: Sequence[dict]) -> None:
    """Replace every measure row of ``scan_ids`` with the given rows (dicts with the columns
    of :mod:`sscmort_core.store.schema`). Run inside a transaction."""
    if not scan_ids:
        return
    ids = list(scan_ids)
    for table in MEASURE_TABLES:
        cur.execute(f"DELETE FROM {table} WHERE {in_clause('scan_id', ids)}", ids)
    insert_rows(cur, "qct", qct)
    insert_rows(cur, "qct_regions", regions)
    insert_rows(cur, "qct_patterns", patterns)
    insert_rows(cur, "mask_qc", qc)


def regions_frame(store: Store, scan_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Zone rows (scan_id, lung, zone, volume_ml, ...), of ``scan_ids`` or every scan."""
    where, params = "", []
    if scan_ids is not None:
        where, params = f"WHERE {in_clause('scan_id', scan_ids)}", list(scan_ids)
    return store.query_df(f"SELECT * FROM qct_regions {where} ORDER BY scan_id, lung, zone",
                          params)


def patterns_frame(store: Store) -> pd.DataFrame:
    """One row of pattern extents (% of lung) per measured scan."""
    return store.query_df("SELECT * FROM qct_patterns ORDER BY scan_id")


def mask_qc_frame(store: Store, scan_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Every QC check row, of ``scan_ids`` or every scan."""
    where, params = "", []
    if scan_ids is not None:
        where, params = f"WHERE {in_clause('scan_id', scan_ids)}", list(scan_ids)
    return store.query_df(f"SELECT * FROM mask_qc {where} ORDER BY scan_id, check_name", params)


def flagged_scans_frame(store: Store) -> pd.DataFrame:
    """Scans with at least one failed check: scan_id, patient_id, scan_date, the failed
    checks' messages joined by "; " (``problems``), method_version, and accepted_by /
    accepted_at (NULL while unreviewed), newest scan first."""
    return store.query_df(
        """SELECT q.scan_id, s.patient_id, s.scan_date, q.method_version,
                  string_agg(q.message, '; ' ORDER BY q.check_name) AS problems,
                  count(*) AS n_failed, r.accepted_by, r.accepted_at
           FROM mask_qc q JOIN scans s USING (scan_id)
           LEFT JOIN mask_qc_reviews r
                  ON r.scan_id = q.scan_id AND r.method_version = q.method_version
           WHERE NOT q.passed
           GROUP BY q.scan_id, s.patient_id, s.scan_date, q.method_version, r.accepted_by,
                    r.accepted_at
           ORDER BY s.scan_date DESC, q.scan_id""")


def training_excluded_scan_ids(store: Store) -> set[str]:
    """Scans left out of training: a failed QC check and no review accepting that mask."""
    rows = store.cursor().execute(
        """SELECT DISTINCT q.scan_id FROM mask_qc q
           LEFT JOIN mask_qc_reviews r
                  ON r.scan_id = q.scan_id AND r.method_version = q.method_version
           WHERE NOT q.passed AND r.scan_id IS NULL""").fetchall()
    return {r[0] for r in rows}


def accept_mask(cur: duckdb.DuckDBPyConnection, scan_id: str, *, accepted_by: str,
                note: str | None = None, at: dt.datetime | None = None) -> str:
    """Record that ``accepted_by`` reviewed and accepted the flagged mask of ``scan_id`` (for
    its current method version); returns that version. DataError when the scan has no
    failed check."""
    row = cur.execute("SELECT method_version FROM mask_qc WHERE scan_id = ? AND NOT passed "
                      "LIMIT 1", [scan_id]).fetchone()
    if row is None:
        raise DataError(f"scan {scan_id} has no flagged lung mask to accept")
    if not accepted_by or not accepted_by.strip():
        raise DataError("say who accepts the mask")
    cur.execute("INSERT OR REPLACE INTO mask_qc_reviews (scan_id, method_version, accepted_by, "
                "accepted_at, note) VALUES (?, ?, ?, ?, ?)",
                [scan_id, row[0], accepted_by.strip(), at or dt.datetime.now(), note])
    return str(row[0])


def qct_features_frame(store: Store) -> pd.DataFrame:
    """Per scan: the qct row joined with its pattern extents (what the QCT model sees)."""
    return store.query_df(
        """SELECT q.*, p.normal_pct, p.emphysema_pct, p.ground_glass_pct, p.reticulation_pct,
                  p.honeycombing_pct, p.consolidation_pct
           FROM qct q LEFT JOIN qct_patterns p USING (scan_id) ORDER BY q.scan_id""")


def qct_features_row(store: Store, scan_id: str) -> dict | None:
    """One scan's row of :func:`qct_features_frame` (qct columns with ``method_version``, then
    the pattern extents) as a dict of plain Python values (missing ones None), or None when
    the scan has no QCT row."""
    import pandas as pd

    frame = store.query_df(
        """SELECT q.*, p.normal_pct, p.emphysema_pct, p.ground_glass_pct, p.reticulation_pct,
                  p.honeycombing_pct, p.consolidation_pct
           FROM qct q LEFT JOIN qct_patterns p USING (scan_id) WHERE q.scan_id = ?""",
        [scan_id])
    if frame.empty:
        return None
    return {k: None if pd.isna(v) else to_python(v) for k, v in frame.iloc[0].items()}


def qct_long_frame(store: Store, features: Sequence[str]) -> pd.DataFrame:
    """(scan_id, feature, value) of the named columns of the qct and qct_patterns tables
    (whole-lung QCT and pattern extents); DataError for a name that is neither."""
    wide = qct_features_frame(store)
    unknown = [f for f in features if f not in wide.columns or f == "scan_id"]
    if unknown:
        raise DataError(f"no QCT feature {unknown[0]!r}")
    return wide.melt(id_vars=["scan_id"], value_vars=list(features), var_name="feature",
                     value_name="value").sort_values(["scan_id", "feature"], ignore_index=True)


def scan_outcome_columns(store: Store) -> pd.DataFrame:
    """What the feature browser groups by, per scan: scan_id, patient_id, scan_date, scanner,
    kernel, slice_thickness_mm, death_date, last_followup_date."""
    return store.query_df(
        """SELECT s.scan_id, s.patient_id, s.scan_date, s.scanner, s.kernel,
                  s.slice_thickness_mm, p.death_date, p.last_followup_date
           FROM scans s JOIN patients p USING (patient_id) ORDER BY s.scan_id""")
