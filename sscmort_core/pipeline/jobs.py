"""Long work with progress: a thread in the process that owns the store, rows in ``jobs``.

:func:`start_job` inserts a 'running' row, runs ``fn(progress)`` in a daemon thread and marks
the row 'done' or 'failed' (with the error's one-line message). ``progress(stage, done,
total)`` updates the row's progress (0..1) and message, at most every ``min_interval_s``
seconds and always when a stage completes. The heavy compute inside ``fn`` may use worker
processes, but only this thread (in the owning process) writes the store.

When the owning process restarts, rows still marked 'running' belong to threads that no
longer exist; :func:`mark_interrupted` turns them into 'interrupted'.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sscmort_core import store as st_store
from sscmort_core.errors import SscmortError
from sscmort_core.util.progress import ProgressFn

_THREADS: dict[str, threading.Thread] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    kind: str
    status: str  # running, done, failed, interrupted
    progress: float  # 0..1 of the current stage
    message: str | None
    error: str | None

    @property
    def finished(self) -> bool:
        return self.status != "running"


class _JobProgress:
    """A ProgressFn that writes the job row (throttled)."""

    def __init__(self, store: st_store.Store, job_id: str, min_interval_s: float) -> None:
        self.store, self.job_id, self.min_interval_s = store, job_id, min_interval_s
        self._last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < self.min_interval_s:
            return
        self._last = now
        frac = done / total if total else 1.0
        with self.store.transaction() as cur:
            st_store.update_job_progress(cur, self.job_id, frac, f"{stage}: {done}/{total}")


def start_job(store: st_store.Store, kind: str, params: dict[str, Any],
              fn: Callable[[ProgressFn], Any], *, min_interval_s: float = 1.0,
              describe: Callable[[Any], str] | None = None) -> str:
    """Run ``fn(progress)`` in a background thread; returns the job id at once.

    ``describe(result)`` makes the final message (default: ``str(result)``).
    """
    job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"

    def run() -> None:
        try:
            result = fn(_JobProgress(store, job_id, min_interval_s))
            msg = describe(result) if describe else f"finished: {result}"
            with store.transaction() as cur:
                st_store.finish_job(cur, job_id, "done", msg)
        except SscmortError as err:
            _fail(store, job_id, str(err))
        except Exception as err:  # a bug: keep the last frame for the job history
            frames = traceback.extract_tb(err.__traceback__)
            where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
            _fail(store, job_id, f"{type(err).__name__}: {err}{where}")
        finally:
            with _LOCK:
                _THREADS.pop(job_id, None)

    thread = threading.Thread(target=run, name=f"sscmort-job-{job_id}", daemon=True)
    with _LOCK:  # registered before its row exists, so mark_interrupted never sees it stale
        _THREADS[job_id] = thread
    try:
        with store.transaction() as cur:
            st_store.insert_job(cur, job_id, kind, params)
    except BaseException:
        with _LOCK:
            _THREADS.pop(job_id, None)
        raise
    thread.start()
    return job_id


def _fail(store: st_store.Store, job_id: str, error: str) -> None:
    with store.transaction() as cur:
        st_store.finish_job(cur, job_id, "failed", "failed", error)


def is_alive(job_id: str) -> bool:
    """True while the job's thread is registered in this process (starting or running)."""
    with _LOCK:
        return job_id in _THREADS


def wait(job_id: str, timeout_s: float | None = None) -> bool:
    """Block until the job's thread ends (tests, CLI); True when it ended."""
    with _LOCK:
        t = _THREADS.get(job_id)
    if t is not None:
        t.join(timeout_s)
        return not t.is_alive()
    return True


def job_info(store: st_store.Store, job_id: str) -> JobInfo | None:
    row = st_store.job_row(store, job_id)
    if row is None:
        return None
    return JobInfo(row["job_id"], row["kind"], row["status"], float(row["progress"]),
                   row.get("message"), row.get("error"))


def mark_interrupted(store: st_store.Store) -> list[str]:
    """'running' rows with no live thread in this process -> 'interrupted'; returns their ids."""
    stale = [j for j in st_store.running_job_ids(store) if not is_alive(j)]
    if stale:
        with store.transaction() as cur:
            for j in stale:
                st_store.finish_job(cur, j, "interrupted",
                                    "interrupted: the app stopped before the job finished")
    return stale


def start_deep_training(store: st_store.Store, backbone: str, *, profile: str = "quick",
                        models_dir: Any = None, folds: int = 5, seed: int = 0,
                        device: str = "auto") -> str:
    """A background job training one deep backbone (the Models & jobs page's button)."""
    from sscmort_core.deep import train  # heavy: torch

    params = {"backbone": backbone, "profile": profile, "folds": folds, "seed": seed,
              "device": device, "models_dir": None if models_dir is None else str(models_dir)}

    def work(progress: ProgressFn) -> str:
        return train.train_backbone(store, backbone, profile=profile, models_dir=models_dir,
                                    folds=folds, seed=seed, device=device, progress=progress)

    return start_job(store, "train-deep", params, work,
                     describe=lambda model_id: f"registered {model_id}")


def training_running(store: st_store.Store) -> bool:
    """True while a deep-training job of this process is running."""
    return any(is_alive(j) and j.startswith("train-deep")
               for j in st_store.running_job_ids(store))
