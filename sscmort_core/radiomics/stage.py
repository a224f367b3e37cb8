"""The radiomics stage over the store: extract features for every stored scan not yet done
with the current parameters, on an executor (the local process pool by default, or Ray); the
calling process alone writes, in transactions, as results arrive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from sscmort_core import store as st
from sscmort_core.radiomics.features import (
    RadiomicsOutcome,
    RadiomicsParams,
    _reason,
    extract_outcome,
    load_params,
    pyradiomics_version,
)
from sscmort_core.scans import scan_with_lungs_from_row
from sscmort_core.util.executors import Executor, LocalExecutor
from sscmort_core.util.progress import ProgressFn, no_progress, offset_progress
from sscmort_core.util.workers import default_workers

WRITE_BATCH_SCANS = 64  # scans per store transaction during a batch
ROW_CHUNK = 2000  # scan rows read (and tasks handed to the executor) at a time: memory stays
# flat however large the registry
STAGE = "radiomics"


@dataclass(frozen=True)
class RadiomicsFailure:
    scan_id: str
    reason: str


@dataclass(frozen=True)
class RadiomicsStageResult:
    """What one run of :func:`run_radiomics_stage` did."""

    param_hash: str
    pyradiomics_version: str
    n_scans: int  # scans in the store
    n_extracted: int  # extracted by this run
    n_skipped: int  # already extracted with these parameters
    failures: tuple[RadiomicsFailure, ...]
    n_features: int  # features per scan
    workers: int
    seconds: float
    mean_scan_seconds: float | None  # worker time per scan (volume + lungs + pyradiomics)
    executor: str = "local"

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    def to_json(self) -> dict[str, Any]:
        return {"param_hash": self.param_hash, "pyradiomics_version": self.pyradiomics_version,
                "scans": self.n_scans, "extracted": self.n_extracted,
                "skipped": self.n_skipped, "failed": self.n_failed,
                "failures": [{"scan_id": f.scan_id, "reason": f.reason} for f in self.failures],
                "features_per_scan": self.n_features, "workers": self.workers,
                "executor": self.executor,
                "seconds": round(self.seconds, 1),
                "mean_scan_seconds": None if self.mean_scan_seconds is None
                else round(self.mean_scan_seconds, 3)}


@dataclass(frozen=True)
class _Job:
    row: Mapping[str, Any]
    data_dir: str
    params: RadiomicsParams


def extract_stored_scan(job: _Job) -> RadiomicsOutcome:
    """Worker: load or regenerate one scan, segment its lungs, extract. Never raises for a
    bad scan (the reason comes back instead) and never touches the store."""
    t0 = time.perf_counter()
    scan_id = str(job.row["scan_id"])
    try:
        scan = scan_with_lungs_from_row(job.row, Path(job.data_dir))
    except Exception as err:  # noqa: BLE001
        return RadiomicsOutcome(scan_id, None, _reason(err), time.perf_counter() - t0)
    vol = scan.volume
    out = extract_outcome(scan_id, vol.hu, scan.lungs.mask, vol.spacing_mm, job.params)
    return RadiomicsOutcome(scan_id, out.features, out.reason, time.perf_counter() - t0)


def run_radiomics_stage(store: st.Store, *, workers: int | None = None,
                        progress: ProgressFn = no_progress,
                        params: RadiomicsParams | None = None,
                        scan_ids: Sequence[str] | None = None,
                        extract_fn: Callable[[_Job], RadiomicsOutcome] | None = None,
                        executor: Executor | None = None) -> RadiomicsStageResult:
    """Extract features for every stored scan (or ``scan_ids``) that has none for ``params``.

    Work runs on ``executor`` (default: the local pool of ``workers`` processes, all cores
    when None); each task gets a scan row and the store's data folder, never voxels, and the
    rows are read :data:`ROW_CHUNK` at a time. This process alone writes, one transaction per
    :data:`WRITE_BATCH_SCANS` scans as results arrive, so an interruption keeps what was done
    and a re-run continues. A failed scan (bad volume, or a worker that died on it more often
    than the executor retries) is recorded in radiomics_failures with its reason (and retried
    by the next run); it never stops the batch. ``extract_fn`` replaces the worker function
    (tests).
    """
    params = params or load_params()
    t0 = time.perf_counter()
    ids = st.scan_id_list(store, scan_ids)
    done = st.radiomics_extracted_scan_ids(store, params.param_hash)
    todo = [s for s in ids if s not in done]
    ex = executor or LocalExecutor(max(1, workers or default_workers()))
    fn = extract_fn or extract_stored_scan
    failures: list[RadiomicsFailure] = []
    pending: list[RadiomicsOutcome] = []
    n_ok, n_features, worker_seconds = 0, 0, 0.0
    if not todo:
        progress(STAGE, 0, 0)
    try:
        for start in range(0, len(todo), ROW_CHUNK):
            jobs = [_Job(row=r, data_dir=str(store.data_dir), params=params)
                    for r in st.scan_rows(store, todo[start:start + ROW_CHUNK])]
            results = ex.outcomes(fn, jobs, offset_progress(progress, start, len(todo)), STAGE)
            try:
                for task in results:
                    out = task.value if task.ok else RadiomicsOutcome(
                        str(jobs[task.index].row["scan_id"]), None, str(task.error), 0.0)
                    pending.append(out)
                    worker_seconds += out.seconds
                    if out.features is None:
                        failures.append(RadiomicsFailure(out.scan_id,
                                                         out.reason or "unknown error"))
                    else:
                        n_ok += 1
                        n_features = max(n_features, len(out.features.names))
                    if len(pending) >= WRITE_BATCH_SCANS:
                        _write(store, pending, params)
                        pending = []
            finally:
                results.close()  # stop the workers first (an interruption), then keep the rest
    finally:
        if pending:
            _write(store, pending, params)
    if not n_features:
        n_features = st.radiomics_feature_count(store, params.param_hash)
    order = {sid: i for i, sid in enumerate(todo)}
    return RadiomicsStageResult(
        param_hash=params.param_hash, pyradiomics_version=pyradiomics_version(),
        n_scans=len(ids), n_extracted=n_ok, n_skipped=len(ids) - len(todo),
        failures=tuple(sorted(failures, key=lambda f: order[f.scan_id])), n_features=n_features,
        workers=ex.workers, seconds=time.perf_counter() - t0,
        mean_scan_seconds=worker_seconds / len(todo) if todo else None, executor=ex.kind)


def _write(store: st.Store, outcomes: list[RadiomicsOutcome], params: RadiomicsParams) -> None:
    with store.transaction() as cur:
        write_outcomes(cur, outcomes, params.param_hash)


def write_outcomes(cur: Any, outcomes: Sequence[RadiomicsOutcome], param_hash: str) -> None:
    """Write features of the extracted scans and reasons of the failed ones with ``cur``
    (inside the caller's transaction); a success clears an earlier failure of the scan."""
    frames, failed, ok_ids = [], [], []
    for out in outcomes:
        if out.features is None:
            failed.append((out.scan_id, out.reason or "unknown error"))
            continue
        if out.features.param_hash != param_hash:
            raise ValueError(f"features of {out.scan_id} have parameter hash "
                             f"{out.features.param_hash}, not {param_hash}")
        ok_ids.append(out.scan_id)
        frames.append(pd.DataFrame({
            "scan_id": out.scan_id, "param_hash": param_hash,
            "feature": list(out.features.names), "value": list(out.features.values),
            "pyradiomics_version": out.features.pyradiomics_version}))
    if frames:
        st.insert_frame(cur, "radiomics_features", pd.concat(frames, ignore_index=True),
                        replace=True)
        st.clear_radiomics_failures(cur, ok_ids, param_hash)
    if failed:
        st.record_radiomics_failures(cur, failed, param_hash)
