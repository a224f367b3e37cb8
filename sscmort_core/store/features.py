"""Queries of derived per-scan features: QCT metrics and radiomics features (and failures)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import duckdb

from sscmort_core.store.db import Store, in_clause

if TYPE_CHECKING:
    import pandas as pd


def qct_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM qct ORDER BY scan_id")


def scans_missing_qct(store: Store, method_version: str) -> list[str]:
    """Scans whose QCT, zone, pattern or mask-QC rows are missing or were measured by another
    version than ``method_version`` (an older lung mask, QCT method, pattern model or QC:
    :func:`sscmort_core.lungs.qct_method_version`)."""
    current = " AND ".join(
        f"scan_id IN (SELECT scan_id FROM {t} WHERE method_version = ?)"
        for t in ("qct", "qct_regions", "qct_patterns", "mask_qc"))
    rows = store.cursor().execute(
        f"SELECT scan_id FROM scans WHERE NOT ({current}) ORDER BY scan_id",
        [method_version] * 4).fetchall()
    return [r[0] for r in rows]


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


def radiomics_long_frame(store: Store, param_hash: str,
                         features: Sequence[str] | None = None,
                         scan_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """(scan_id, feature, value) rows for ``param_hash`` (optionally only ``features``, and
    only ``scan_ids``)."""
    where, params = "WHERE param_hash = ?", [param_hash]
    if features is not None:
        where += f" AND {in_clause('feature', features)}"
        params.extend(features)
    if scan_ids is not None:
        where += f" AND {in_clause('scan_id', scan_ids)}"
        params.extend(scan_ids)
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
