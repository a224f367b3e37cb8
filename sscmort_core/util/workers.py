"""The process pool every batch stage has always run its per-scan work in: now the local
executor of :mod:`sscmort_core.util.executors`.

Workers never touch the store: they take a job (a row, a path) and return a result; the
calling process writes what they return, in transactions.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from sscmort_core.util.executors import LocalExecutor, default_workers  # noqa: F401
from sscmort_core.util.progress import ProgressFn


def map_in_workers(fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                   progress: ProgressFn, stage: str) -> Iterator[Any]:
    """``fn`` over ``items`` in order, in ``workers`` processes (in-process when workers <= 1);
    the workers never touch the store, the caller writes what they return. The local
    executor's :meth:`~sscmort_core.util.executors.Executor.map`: a worker that dies is run
    again (bounded), then :class:`~sscmort_core.errors.WorkerLostError` is raised."""
    return LocalExecutor(workers).map(fn, items, progress, stage)
