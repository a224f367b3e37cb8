"""Queries of background jobs (the app's training and import runs)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import duckdb

from sscmort_core.store.db import Store, one_row

if TYPE_CHECKING:
    import pandas as pd


def jobs_frame(store: Store) -> pd.DataFrame:
    return store.query_df("SELECT * FROM jobs ORDER BY started_at DESC")


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
    return one_row(store, "SELECT * FROM jobs WHERE job_id = ?", [job_id])


def running_job_ids(store: Store) -> list[str]:
    rows = store.cursor().execute(
        "SELECT job_id FROM jobs WHERE status = 'running' ORDER BY started_at").fetchall()
    return [r[0] for r in rows]
