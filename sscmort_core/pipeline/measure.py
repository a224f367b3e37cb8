"""The lung-measure stage over stored scans: QCT, QCT by zone, pattern extents and mask QC
(:func:`sscmort_core.lungs.measure_lungs`) for every scan whose rows are missing or were made
by another method version (:func:`sscmort_core.store.scans_missing_qct`).

Workers regenerate or load each volume and segment its lungs (they never touch the store);
the calling process writes each batch of results in one transaction. The same row conversion
(:func:`measure_rows`) serves the demo's single pass and the ingest of one scan, so every
stored scan has the same four kinds of rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.errors import SscmortError
from sscmort_core.lungs import LungMask, LungMeasures, measure_lungs, qct_method_version
from sscmort_core.scans import scan_with_lungs_from_row
from sscmort_core.util.progress import ProgressFn, no_progress
from sscmort_core.util.workers import default_workers, map_in_workers

STAGE = "lungs: zones, patterns, QC"
BATCH = 64  # scans per write transaction


@dataclass(frozen=True)
class MeasureRows:
    """One scan's rows for the qct, qct_regions, qct_patterns and mask_qc tables (plain
    records, cheap to send back from a worker)."""

    scan_id: str
    qct: dict[str, Any]
    regions: list[dict[str, Any]]
    patterns: dict[str, Any]
    qc: list[dict[str, Any]]
    flagged: bool


def measure_rows(scan_id: str, measures: LungMeasures, lungs: LungMask) -> MeasureRows:
    """The store rows of ``measures`` (of ``lungs``) for ``scan_id``."""
    version = measures.method_version
    qct = {**measures.qct.to_dict(), "scan_id": scan_id,
           "left_volume_ml": float(lungs.left_volume_ml),
           "right_volume_ml": float(lungs.right_volume_ml), "method_version": version}
    regions = [{**r.to_dict(), "scan_id": scan_id, "method_version": version}
               for r in measures.regions.regions]
    patterns = {**measures.patterns.extents(), "scan_id": scan_id, "method_version": version}
    qc = [{"scan_id": scan_id, "check_name": c.name, "passed": bool(c.passed), "value": c.value,
           "expected": c.expected, "message": c.message or None, "method_version": version}
          for c in measures.qc.checks]
    return MeasureRows(scan_id, qct, regions, patterns, qc, measures.qc.flagged)


def write_measures(cur: Any, rows: Sequence[MeasureRows]) -> None:
    """Replace the measure rows of these scans (inside the caller's transaction)."""
    st_store.replace_lung_measures(
        cur, [r.scan_id for r in rows], pd.DataFrame([r.qct for r in rows]),
        pd.DataFrame([x for r in rows for x in r.regions]),
        pd.DataFrame([r.patterns for r in rows]), pd.DataFrame([x for r in rows for x in r.qc]))


@dataclass(frozen=True)
class _Job:
    row: dict[str, Any]
    data_dir: str


@dataclass(frozen=True)
class _Outcome:
    scan_id: str
    rows: MeasureRows | None
    reason: str | None


def _measure_job(job: _Job) -> _Outcome:
    """Worker: load or regenerate one scan, segment and measure it."""
    scan_id = str(job.row["scan_id"])
    try:
        scan = scan_with_lungs_from_row(job.row, Path(job.data_dir))
        m = measure_lungs(scan.volume.hu, scan.lungs, scan.volume.spacing_mm)
        return _Outcome(scan_id, measure_rows(scan_id, m, scan.lungs), None)
    except SscmortError as err:
        return _Outcome(scan_id, None, str(err))


def map_scans(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int,
              progress: ProgressFn, stage: str) -> Iterator[Any]:
    """Where this stage's per-scan work runs: the local worker pool (one place to swap in
    another executor)."""
    return map_in_workers(fn, jobs, workers, progress, stage)


@dataclass(frozen=True)
class MeasureSummary:
    measured: int
    flagged: int
    failed: tuple[tuple[str, str], ...]  # (scan_id, reason)
    method_version: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"measured": self.measured, "flagged": self.flagged,
                "failed": [{"scan_id": s, "reason": r} for s, r in self.failed],
                "method_version": self.method_version, "seconds": round(self.seconds, 1)}


def run_measure_stage(store: st_store.Store, *, workers: int | None = None,
                      progress: ProgressFn = no_progress,
                      scan_ids: Sequence[str] | None = None) -> MeasureSummary:
    """Measure every stored scan whose rows are missing or stale (or only ``scan_ids``
    among them); results are written in transactions of BATCH scans."""
    t0 = time.perf_counter()
    version = qct_method_version()
    todo = st_store.scans_missing_qct(store, version)
    if scan_ids is not None:
        wanted = set(scan_ids)
        todo = [s for s in todo if s in wanted]
    jobs = [_Job(r, str(store.data_dir)) for r in st_store.scan_rows(store, todo)] \
        if todo else []
    done: list[MeasureRows] = []
    failed: list[tuple[str, str]] = []
    n_written = n_flagged = 0
    for out in map_scans(_measure_job, jobs, workers or default_workers(), progress, STAGE):
        if out.rows is None:
            failed.append((out.scan_id, str(out.reason)))
            continue
        done.append(out.rows)
        if len(done) >= BATCH:
            n_written, n_flagged = _flush(store, done, n_written, n_flagged)
    n_written, n_flagged = _flush(store, done, n_written, n_flagged)
    return MeasureSummary(n_written, n_flagged, tuple(failed), version,
                          time.perf_counter() - t0)


def _flush(store: st_store.Store, done: list[MeasureRows], n_written: int,
           n_flagged: int) -> tuple[int, int]:
    if done:
        with store.transaction() as cur:
            write_measures(cur, done)
        n_written += len(done)
        n_flagged += sum(r.flagged for r in done)
        done.clear()
    return n_written, n_flagged


def accept_flagged_mask(store: st_store.Store, scan_id: str, who: str,
                        note: str | None = None) -> str:
    """Record (one transaction) that ``who`` accepts the flagged mask of ``scan_id``, which
    lets it into training; returns the method version accepted. DataError when the scan has
    no flagged mask."""
    with store.transaction() as cur:
        return st_store.accept_mask(cur, scan_id, accepted_by=who, note=note)
