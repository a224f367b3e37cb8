"""The process pool every batch stage runs its per-scan work in.

Workers never touch the store: they take a job (a row, a path) and return a result; the
calling process writes what they return, in transactions.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterator, Sequence

from sscmort_core.util.progress import ProgressFn


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _pool_context() -> Any:
    """forkserver where available: safe from a multi-threaded parent (the app's job threads,
    torch's thread pools); spawn elsewhere."""
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _worker_init() -> None:
    """Pool initialiser: one SimpleITK thread per worker process (SimpleITK would otherwise
    start a thread per core in every worker, oversubscribing the cores the pool fills)."""
    try:
        import SimpleITK as sitk  # heavy: only in worker processes
    except ImportError:  # nothing to limit (an initialiser error would break the whole pool)
        return
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def map_in_workers(fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                   progress: ProgressFn, stage: str) -> Iterator[Any]:
    """``fn`` over ``items`` in order, in ``workers`` processes (in-process when workers <= 1);
    the workers never touch the store, the caller writes what they return."""
    total = len(items)
    progress(stage, 0, total)
    if workers <= 1 or total <= 1:
        for i, item in enumerate(items, 1):
            yield fn(item)
            progress(stage, i, total)
        return
    chunk = max(1, min(16, total // (workers * 8) or 1))
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                             initializer=_worker_init) as pool:
        for i, result in enumerate(pool.map(fn, items, chunksize=chunk), 1):
            yield result
            progress(stage, i, total)
