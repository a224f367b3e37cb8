"""Queries of the model registry rows and what models produce: predictions, metrics,
explanations (SHAP rows and saliency arrays)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb

from sscmort_core.store.db import Store, in_clause, one_row

if TYPE_CHECKING:
    import pandas as pd


def upsert_model(cur: duckdb.DuckDBPyConnection, *, model_id: str, kind: str,
                 backbone: str | None, version: str, config: dict[str, Any],
                 data_hash: str | None, weights_path: str | None,
                 weights_sha256: str | None, card: dict[str, Any], synthetic: bool) -> None:
    cur.execute(
        "INSERT OR REPLACE INTO models (model_id, kind, backbone, version, config, data_hash, "
        "weights_path, weights_sha256, card, synthetic) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [model_id, kind, backbone, version, json.dumps(config), data_hash, weights_path,
         weights_sha256, json.dumps(card, default=str), synthetic])


def delete_predictions(cur: duckdb.DuckDBPyConnection, model_id: str) -> None:
    cur.execute("DELETE FROM predictions WHERE model_id = ?", [model_id])


def delete_metrics(cur: duckdb.DuckDBPyConnection, model_id: str) -> None:
    cur.execute("DELETE FROM metrics WHERE model_id = ?", [model_id])


def delete_model_outputs(cur: duckdb.DuckDBPyConnection, model_id: str) -> None:
    """Remove a model's predictions (and batch-prediction failures), metrics and explanations
    (before re-registering it)."""
    for table in ("predictions", "metrics", "explanations", "explanation_arrays",
                  "prediction_failures"):
        cur.execute(f"DELETE FROM {table} WHERE model_id = ?", [model_id])


def models_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM models ORDER BY kind, model_id")


def deep_models_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM models WHERE kind = 'deep' ORDER BY backbone, "
                          "try_cast(version AS INTEGER), model_id")


def model_row(store: Store, model_id: str) -> dict[str, Any] | None:
    return one_row(store, "SELECT * FROM models WHERE model_id = ?", [model_id])


def predictions_frame(store: Store, model_ids: Sequence[str] | None = None,
                      split: str | None = "oof") -> pd.DataFrame:
    clauses, params = [], []
    if model_ids:
        clauses.append(in_clause("model_id", model_ids))
        params.extend(model_ids)
    if split:
        clauses.append("split = ?")
        params.append(split)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    return store.query_df(f"SELECT * FROM predictions {where} ORDER BY model_id, scan_id, "
                          "horizon_years", params)


def patient_predictions_frame(store: Store, patient_id: str, split: str = "oof",
                              kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """A patient's stored risks: scan_id, scan_date, model_id, kind, horizon_years, risk, fold
    (the models' names: :func:`sscmort_core.cards.model_labels`)."""
    where, params = "WHERE s.patient_id = ? AND pr.split = ?", [patient_id, split]
    if kinds:
        where += f" AND {in_clause('m.kind', kinds)}"
        params.extend(kinds)
    return store.query_df(
        f"""SELECT pr.scan_id, s.scan_date, pr.model_id, m.kind, pr.horizon_years, pr.risk,
                   pr.fold
            FROM predictions pr JOIN scans s USING (scan_id) JOIN models m USING (model_id)
            {where} ORDER BY pr.model_id, s.scan_date, pr.horizon_years""", params)


def oof_prediction_summary(store: Store, model_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Per model and horizon: count and risk sum of out-of-fold predictions.

    Columns model_id, horizon_years, n_predictions, risk_sum; cheap, so a page can tell which
    models have predictions and whether they changed since it last looked.
    """
    where, params = "", []
    if model_ids is not None:
        where, params = f"AND {in_clause('model_id', model_ids)}", list(model_ids)
    return store.query_df(
        f"""SELECT model_id, horizon_years, count(*) AS n_predictions, sum(risk) AS risk_sum
            FROM predictions WHERE split = 'oof' {where}
            GROUP BY model_id, horizon_years ORDER BY model_id, horizon_years""", params)


def delete_split_predictions(cur: duckdb.DuckDBPyConnection, model_id: str, split: str) -> None:
    """Remove one model's predictions of one split (e.g. a validation design's, before it is
    run again)."""
    cur.execute("DELETE FROM predictions WHERE model_id = ? AND split = ?", [model_id, split])


def prediction_splits(store: Store, model_ids: Sequence[str] | None = None,
                      prefix: str = "") -> pd.DataFrame:
    """Per model and split whose name starts with ``prefix``: predictions and scans
    (columns model_id, split, n_predictions, n_scans, risk_sum), ordered by split, model."""
    clauses, params = ["starts_with(split, ?)"], [prefix]
    if model_ids is not None:
        clauses.append(in_clause("model_id", model_ids))
        params.extend(model_ids)
    return store.query_df(
        f"""SELECT model_id, split, count(*) AS n_predictions,
                   count(DISTINCT scan_id) AS n_scans, sum(risk) AS risk_sum
            FROM predictions WHERE {' AND '.join(clauses)}
            GROUP BY model_id, split ORDER BY split, model_id""", params)


def metrics_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM metrics ORDER BY model_id, horizon_years, metric")


def metrics_for_models(store: Store, model_ids: Sequence[str]) -> pd.DataFrame:
    """Metric rows of the given models (all horizons), ordered by model, horizon, metric."""
    return store.query_df(
        f"""SELECT * FROM metrics WHERE {in_clause('model_id', model_ids)}
            ORDER BY model_id, horizon_years, metric""", list(model_ids))


def auc_rows_with_models(store: Store) -> pd.DataFrame:
    """Computed AUC rows (value not NULL) joined with their model's kind, version and card."""
    return store.query_df(
        """SELECT m.model_id, m.horizon_years, m.value, m.ci_low, m.ci_high, m.n_scans,
                  m.n_patients, m.n_events, d.kind, d.backbone, d.version, d.card
           FROM metrics m JOIN models d USING (model_id)
           WHERE m.metric = 'auc' AND m.value IS NOT NULL
           ORDER BY m.horizon_years, m.model_id""")


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


# --- batch predictions over the store (split 'inference') ------------------------------------
def predicted_scan_ids(store: Store, model_id: str, split: str) -> set[str]:
    """Scans that have every horizon's prediction from ``model_id`` in ``split``."""
    rows = store.cursor().execute(
        "SELECT scan_id FROM predictions WHERE model_id = ? AND split = ? GROUP BY scan_id "
        "HAVING count(*) >= 3", [model_id, split]).fetchall()
    return {r[0] for r in rows}


def record_prediction_failures(cur: duckdb.DuckDBPyConnection,
                               failures: Sequence[tuple[str, str, str]], split: str) -> None:
    """Record (model_id, scan_id, reason) triples, replacing an earlier reason."""
    if failures:
        cur.executemany(
            "INSERT OR REPLACE INTO prediction_failures (model_id, scan_id, split, reason) "
            "VALUES (?, ?, ?, ?)", [[m, s, split, r] for m, s, r in failures])


def clear_prediction_failures(cur: duckdb.DuckDBPyConnection,
                              pairs: Sequence[tuple[str, str]], split: str) -> None:
    """Forget earlier failures of these (model_id, scan_id) pairs (they are predicted now)."""
    if pairs:
        cur.executemany("DELETE FROM prediction_failures WHERE model_id = ? AND scan_id = ? "
                        "AND split = ?", [[m, s, split] for m, s in pairs])


def prediction_failures_frame(store: Store, split: str | None = None) -> pd.DataFrame:
    where, params = ("WHERE split = ?", [split]) if split else ("", [])
    return store.query_df(f"SELECT * FROM prediction_failures {where} "
                          "ORDER BY model_id, scan_id", params)


def oof_scan_ids(store: Store) -> dict[str, list[str]]:
    """Per model, the scans it has out-of-fold predictions for (its training scans)."""
    rows = store.cursor().execute(
        "SELECT DISTINCT model_id, scan_id FROM predictions WHERE split = 'oof' "
        "ORDER BY model_id, scan_id").fetchall()
    out: dict[str, list[str]] = {}
    for model_id, scan_id in rows:
        out.setdefault(str(model_id), []).append(str(scan_id))
    return out
