"""The lung-measure stage over stored scans: QCT, QCT by zone, pattern extents and mask QC
(:func:`sscmort_core.lungs.measure_lungs`) for every scan whose rows are missing or were made
by another method version (:func:`sscmort_core.store.scans_missing_qct`).

The per-scan work runs on an executor (:mod:`sscmort_core.util.executors`: the local process
pool by default, or Ray), as the radiomics stage does: each task gets a scan row and the
store's data folder, never voxels; workers regenerate or load the volume and segment its lungs
(they never touch the store), and the calling process writes each batch of results in one
transaction as they arrive. A scan whose worker fails or is lost is reported, never stops
the batch, and is measured again by the next run (its rows are still missing or stale).

The same row conversion (:func:`measure_rows`) serves the demo's single pass, the ingest of
one scan and the registry import, so every stored scan has the same four kinds of rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sscmort_core import store as st_store
from sscmort_core.errors import SscmortError
from sscmort_core.lungs import LungMask, LungMeasures, measure_lungs, qct_method_version
from sscmort_core.scans import scan_with_lungs_from_row
from sscmort_core.util.executors import Executor, LocalExecutor
from sscmort_core.util.progress import ProgressFn, no_progress, offset_progress
from sscmort_core.util.workers import default_workers

STAGE = "lungs: zones, patterns, QC"
BATCH = 64  # scans per write transaction
ROW_CHUNK = 2000  # scan rows read (and tasks handed to the executor) at a time


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
        cur, [r.scan_id for r in rows], [r.qct for r in rows],
        [x for r in rows for x in r.regions], [r.patterns for r in rows],
        [x for r in rows for x in r.qc])


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
    """Worker: load or regenerate one scan, segment and measure it. Never raises for a bad
    scan (the reason comes back instead) and never touches the store."""
    scan_id = str(job.row["scan_id"])
    try:
        scan = scan_with_lungs_from_row(job.row, Path(job.data_dir))
        m = measure_lungs(scan.volume.hu, scan.lungs, scan.volume.spacing_mm)
        return _Outcome(scan_id, measure_rows(scan_id, m, scan.lungs), None)
    except SscmortError as err:
        return _Outcome(scan_id, None, str(err))
    except Exception as err:  # noqa: BLE001 - one bad scan never stops the batch
        return _Outcome(scan_id, None, f"could not be measured ({type(err).__name__})")


@dataclass(frozen=True)
class MeasureSummary:
    measured: int
    flagged: int
    failed: tuple[tuple[str, str], ...]  # (scan_id, reason)
    method_version: str
    seconds: float
    workers: int = 1
    executor: str = "local"

    def to_json(self) -> dict[str, Any]:
        return {"measured": self.measured, "flagged": self.flagged,
                "failed": [{"scan_id": s, "reason": r} for s, r in self.failed],
                "method_version": self.method_version, "seconds": round(self.seconds, 1),
                "workers": self.workers, "executor": self.executor}


def run_measure_stage(store: st_store.Store, *, workers: int | None = None,
                      progress: ProgressFn = no_progress,
                      scan_ids: Sequence[str] | None = None,
                      executor: Executor | None = None) -> MeasureSummary:
    """Measure every stored scan whose rows are missing or stale (or only ``scan_ids``
    among them) on ``executor`` (default: the local pool of ``workers`` processes, all cores
    when None), reading scan rows :data:`ROW_CHUNK` at a time; results are written in
    transactions of :data:`BATCH` scans as they arrive, so an interruption keeps what was done."""
    t0 = time.perf_counter()
    version = qct_method_version()
    todo = st_store.scans_missing_qct(store, version)
    if scan_ids is not None:
        wanted = set(scan_ids)
        todo = [s for s in todo if s in wanted]
    ex = executor or LocalExecutor(max(1, workers or default_workers()))
    done: list[MeasureRows] = []
    failed: list[tuple[str, str]] = []
    n_written = n_flagged = 0
    if not todo:
        progress(STAGE, 0, 0)
    try:
        for start in range(0, len(todo), ROW_CHUNK):
            jobs = [_Job(r, str(store.data_dir))
                    for r in st_store.scan_rows(store, todo[start:start + ROW_CHUNK])]
            results = ex.outcomes(_measure_job, jobs,
                                  offset_progress(progress, start, len(todo)), STAGE)
            try:
                for task in results:
                    out = task.value if task.ok else _Outcome(
                        str(jobs[task.index].row["scan_id"]), None, str(task.error))
                    if out.rows is None:
                        failed.append((out.scan_id, str(out.reason)))
                        continue
                    done.append(out.rows)
                    if len(done) >= BATCH:
                        n_written, n_flagged = _flush(store, done, n_written, n_flagged)
            finally:
                results.close()  # stop the workers first (an interruption), then keep the rest
    finally:
        n_written, n_flagged = _flush(store, done, n_written, n_flagged)
    order = {sid: i for i, sid in enumerate(todo)}
    return MeasureSummary(n_written, n_flagged,
                          tuple(sorted(failed, key=lambda f: order.get(f[0], 0))), version,
                          time.perf_counter() - t0, ex.workers, ex.kind)


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
