"""The executor interface every batch stage uses (see :mod:`sscmort_core.util.executors`,
which opens one): the spec, the outcome of a task, the base class, and the per-process set-up
of a worker (both executors' workers run it).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from sscmort_core.errors import ExecutorError, WorkerLostError
from sscmort_core.util.progress import ProgressFn, no_progress

EXECUTORS: tuple[str, ...] = ("local", "ray")
ENV_EXECUTOR = "SSCMORT_EXECUTOR"
ENV_RAY_ADDRESS = "RAY_ADDRESS"
DEFAULT_MAX_RETRIES = 2  # runs after a charged worker death, before a task is given up
RAY_MISSING = ("--executor ray needs Ray, which is not installed here: "
               "pip install 'sscmort[ray]' (or pip install 'ray>=2.9')")

BatchFn = Callable[[list[Any]], list[Any]]


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ExecutorSpec:
    """Which executor to open. ``workers``: processes of the local pool, or CPUs of the local
    Ray instance started without an address (None: all cores); with an address, a cap on the
    tasks run at once (None: the cluster's CPUs)."""

    kind: str = "local"
    workers: int | None = None
    address: str | None = None
    max_retries: int = DEFAULT_MAX_RETRIES

    def describe(self) -> str:
        if self.kind == "local":
            return f"local process pool ({self.workers or default_workers()} workers)"
        return f"Ray cluster at {self.address}" if self.address else \
            f"local Ray instance ({self.workers or default_workers()} CPUs)"


def executor_spec(kind: str | None = None, address: str | None = None,
                  workers: int | None = None, *, env: Mapping[str, str] | None = None,
                  max_retries: int = DEFAULT_MAX_RETRIES) -> ExecutorSpec:
    """The executor asked for: ``kind`` or $SSCMORT_EXECUTOR or local; for ray, ``address``
    or $RAY_ADDRESS (none: a local instance). A bad setting is an :class:`ExecutorError`."""
    env = os.environ if env is None else env
    chosen = kind or env.get(ENV_EXECUTOR, "").strip() or "local"
    if chosen not in EXECUTORS:
        source = "--executor" if kind else f"${ENV_EXECUTOR}"
        raise ExecutorError(f"{source} is {chosen!r}; choose one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ExecutorError(f"--workers must be at least 1, got {workers}")
    if chosen == "local":
        if address:
            raise ExecutorError("--ray-address needs --executor ray (or "
                                f"${ENV_EXECUTOR}=ray)")
        return ExecutorSpec("local", workers, None, max_retries)
    address = address or env.get(ENV_RAY_ADDRESS, "").strip() or None
    return ExecutorSpec("ray", workers, address, max_retries)


@dataclass(frozen=True)
class TaskOutcome:
    """What came back for ``items[index]``: its ``value``, or ``error`` (why its worker was
    lost, after the retries) and no value. ``attempts``: runs charged to this task."""

    index: int
    value: Any = None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


class Executor:
    """The interface every stage uses. Subclasses implement :meth:`outcomes` and
    :meth:`batched`; use as a context manager (or call :meth:`close`)."""

    kind = "base"
    workers = 1  # tasks run at once

    def outcomes(self, fn: Callable[[Any], Any], items: Sequence[Any],
                 progress: ProgressFn = no_progress, stage: str = "tasks") -> Iterator[TaskOutcome]:
        """``fn(item)`` for every item, each outcome as soon as it is back (any order)."""
        raise NotImplementedError

    def batched(self, prepare: Callable[[Any], Any], model: Callable[[], BatchFn],
                items: Sequence[Any], *, batch_size: int, progress: ProgressFn = no_progress,
                stage: str = "batches", gpus: bool = True) -> Iterator[TaskOutcome]:
        """``prepare(item)`` per item in workers, then ``model()(values)`` on consecutive runs
        of ``batch_size`` prepared items (in item order, lost items left out) in a stateful
        holder that builds ``model()`` once (Ray actors, on GPUs when ``gpus`` and the
        cluster has them; the calling process on the local executor). ``model()(values)``
        returns one result per value; an outcome's value is the item's result."""
        raise NotImplementedError

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any],
            progress: ProgressFn = no_progress, stage: str = "tasks") -> Iterator[Any]:
        """``fn(item)`` values in item order; a lost task raises :class:`WorkerLostError`."""
        buffered: dict[int, TaskOutcome] = {}
        head = 0
        for out in self.outcomes(fn, items, progress, stage):
            buffered[out.index] = out
            while head in buffered:
                got = buffered.pop(head)
                if not got.ok:
                    raise WorkerLostError(f"{stage}: item {head + 1} of {len(items)}: "
                                          f"{got.error}")
                yield got.value
                head += 1

    def describe(self) -> dict[str, Any]:
        return {"executor": self.kind, "workers": self.workers}

    def close(self) -> None:
        return None

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pool_context() -> Any:
    """forkserver where available: safe from a multi-threaded parent (the app's job threads,
    torch's thread pools); spawn elsewhere."""
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def worker_init() -> None:
    """Worker set-up: one SimpleITK thread per worker process (SimpleITK would otherwise
    start a thread per core in every worker, oversubscribing the cores the pool fills)."""
    try:
        import SimpleITK as sitk  # heavy: only in worker processes
    except ImportError:  # nothing to limit (an initialiser error would break the whole pool)
        return
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
