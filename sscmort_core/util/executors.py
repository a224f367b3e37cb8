"""Where batch stages run their per-scan work: one interface, two executors.

* ``local`` (the default): a forkserver process pool on this machine (in-process for one
  worker), as every stage has always run.
* ``ray``: tasks and actors on a Ray cluster (:mod:`sscmort_core.util.ray_executor`; Ray is an
  optional extra, ``pip install 'sscmort[ray]'``, imported only when this executor is opened).
  Without an address Ray starts a local instance with ``workers`` CPUs.

The choice comes from ``--executor`` / ``--ray-address`` or the environment
(:data:`ENV_EXECUTOR`, :data:`ENV_RAY_ADDRESS`): :func:`executor_spec`, then
:func:`open_executor`.

A stage hands an executor a pure function and small items (scan rows, paths): never large
arrays from the calling process. Results stream back while the calling process, alone, writes
the store in transactions; at most a bounded window of tasks is in flight, so the caller's
memory does not grow with the number of scans. A task whose worker process dies (killed, out
of memory, segfault) is run again, at most ``max_retries`` times once the death is charged to
it, and then comes back as a :class:`TaskOutcome` with the reason instead of a value. An
exception raised by the function itself is not retried: it propagates to the caller (stages
return a bad scan's reason as a value instead of raising).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Sequence

from sscmort_core.errors import ExecutorError, WorkerLostError
from sscmort_core.util.executor_api import (  # noqa: F401
    DEFAULT_MAX_RETRIES,
    ENV_EXECUTOR,
    ENV_RAY_ADDRESS,
    EXECUTORS,
    RAY_MISSING,
    BatchFn,
    Executor,
    ExecutorSpec,
    TaskOutcome,
    default_workers,
    executor_spec,
    pool_context,
    worker_init,
)
from sscmort_core.util.progress import ProgressFn, no_progress


def open_executor(spec: ExecutorSpec | None = None) -> Executor:
    """The executor ``spec`` names (default: the local pool on every core). Opening ``ray``
    without Ray installed, or at an address nothing answers, is an :class:`ExecutorError`."""
    spec = spec or ExecutorSpec()
    if spec.kind == "local":
        return LocalExecutor(spec.workers or default_workers(), spec.max_retries)
    if spec.kind != "ray":
        raise ExecutorError(f"unknown executor {spec.kind!r}; choose one of "
                            f"{', '.join(EXECUTORS)}")
    try:
        from sscmort_core.util.ray_executor import RayExecutor  # heavy: ray
    except ImportError as err:
        if (err.name or "").split(".")[0] == "ray":
            raise ExecutorError(RAY_MISSING) from None
        raise
    return RayExecutor(spec)


# ---------------------------------------------------------------------------------------------
# the local process pool
# ---------------------------------------------------------------------------------------------
def _run_chunk(fn: Callable[[Any], Any], chunk: list[Any]) -> list[Any]:
    return [fn(item) for item in chunk]


def lost_reason(deaths: int) -> str:
    return (f"its worker process died {deaths} time(s) (killed, out of memory or crashed); "
            "given up after the retries")


class LocalExecutor(Executor):
    """A forkserver process pool of ``workers`` processes (in-process when 1), created for
    each call and shut down at its end, as :func:`sscmort_core.util.workers.map_in_workers`
    always did.

    Worker deaths: a death while several tasks run breaks the whole pool and is charged to no
    task; the tasks that were running are then run again one at a time in a fresh pool, and a
    death there is charged to the one task running."""

    kind = "local"

    def __init__(self, workers: int | None = None,
                 max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        self.workers = default_workers() if workers is None else max(1, workers)
        self.max_retries = max_retries

    def outcomes(self, fn: Callable[[Any], Any], items: Sequence[Any],
                 progress: ProgressFn = no_progress, stage: str = "tasks") -> Iterator[TaskOutcome]:
        return self._outcomes(fn, items, progress, stage, ordered=False)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any],
            progress: ProgressFn = no_progress, stage: str = "tasks") -> Iterator[Any]:
        for out in self._outcomes(fn, items, progress, stage, ordered=True):
            if not out.ok:
                raise WorkerLostError(f"{stage}: item {out.index + 1} of {len(items)}: "
                                      f"{out.error}")
            yield out.value

    def batched(self, prepare: Callable[[Any], Any], model: Callable[[], BatchFn],
                items: Sequence[Any], *, batch_size: int, progress: ProgressFn = no_progress,
                stage: str = "batches", gpus: bool = True) -> Iterator[TaskOutcome]:
        run = model()  # the calling process holds the model (and this machine's GPU)
        total, done = len(items), 0
        progress(stage, 0, total)
        batch: list[TaskOutcome] = []
        for out in self._outcomes(prepare, items, no_progress, stage, ordered=True):
            ready = [out] if not out.ok else []
            if out.ok:
                batch.append(out)
            last = out.index == total - 1
            if batch and (len(batch) >= batch_size or last):
                ready += list(_run_batch(run, batch))
                batch = []
            for r in ready:
                done += 1
                yield r
                progress(stage, done, total)

    def _outcomes(self, fn: Callable[[Any], Any], items: Sequence[Any], progress: ProgressFn,
                  stage: str, *, ordered: bool) -> Iterator[TaskOutcome]:
        total = len(items)
        progress(stage, 0, total)
        if self.workers <= 1 or total <= 1:
            for i, item in enumerate(items):
                yield TaskOutcome(i, fn(item))
                progress(stage, i + 1, total)
            return
        done = 0
        for out in _PoolRun(fn, items, self.workers, self.max_retries, ordered).run():
            done += 1
            yield out
            progress(stage, done, total)


def _run_batch(run: BatchFn, batch: list[TaskOutcome]) -> Iterator[TaskOutcome]:
    results = run([o.value for o in batch])
    if len(results) != len(batch):
        raise ValueError(f"a batch of {len(batch)} gave {len(results)} results")
    for o, r in zip(batch, results):
        yield TaskOutcome(o.index, r, attempts=o.attempts)


class _PoolRun:
    """One pass of a function over items in a process pool, with the death handling of
    :class:`LocalExecutor` and at most ``8 * workers`` chunks submitted and not yet yielded."""

    def __init__(self, fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                 max_retries: int, ordered: bool) -> None:
        self.fn, self.items, self.workers = fn, items, workers
        self.max_retries, self.ordered = max_retries, ordered
        n = len(items)
        self.chunk = max(1, min(16, n // (workers * 8) or 1))
        self.todo: deque[tuple[int, ...]] = deque(
            tuple(range(s, min(n, s + self.chunk))) for s in range(0, n, self.chunk))
        self.alone: deque[int] = deque()  # suspects of a pool break: run one at a time
        self.deaths = [0] * n
        self.running: dict[Future, tuple[int, ...]] = {}
        self.ready: dict[int, TaskOutcome] = {}  # ordered: back but not yet yielded
        self.head = 0  # ordered: next index to yield
        self.unyielded = 0  # items submitted and not yet yielded

    def run(self) -> Iterator[TaskOutcome]:
        pool = self._new_pool()
        try:
            while self.todo or self.alone or self.running:
                isolated = self._submit(pool)
                finished, _ = wait(self.running, return_when=FIRST_COMPLETED)
                lost: list[int] = []
                for fut in finished:
                    idxs = self.running.pop(fut)
                    try:
                        values = fut.result()
                    except BrokenProcessPool:
                        lost.extend(idxs)
                        continue
                    for i, v in zip(idxs, values):
                        yield from self._emit(TaskOutcome(i, v, attempts=self.deaths[i] + 1))
                if lost:  # the pool is dead: whatever else ran is lost with it
                    for idxs in self.running.values():
                        lost.extend(idxs)
                    self.running.clear()
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = self._new_pool()
                    yield from self._after_break(sorted(lost), isolated)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=pool_context(),
                                   initializer=worker_init)

    def _submit(self, pool: ProcessPoolExecutor) -> bool:
        """Top up the pool; True when what runs is one suspect alone."""
        if self.alone:
            if not self.running:
                i = self.alone.popleft()
                self.running[pool.submit(_run_chunk, self.fn, [self.items[i]])] = (i,)
            return True
        limit = max(8 * self.workers * self.chunk, self.chunk)
        while self.todo and self.unyielded + len(self.todo[0]) <= limit:
            idxs = self.todo.popleft()
            self.running[pool.submit(_run_chunk, self.fn, [self.items[i] for i in idxs])] = idxs
            self.unyielded += len(idxs)
        return False

    def _after_break(self, lost: list[int], alone: bool) -> Iterator[TaskOutcome]:
        if not alone:  # who killed the pool is unknown: each suspect runs alone next
            self.alone.extend(lost)
            return
        i = lost[0]
        self.deaths[i] += 1
        if self.deaths[i] > self.max_retries:
            yield from self._emit(TaskOutcome(i, None, lost_reason(self.deaths[i]),
                                              self.deaths[i]))
        else:
            self.alone.appendleft(i)

    def _emit(self, out: TaskOutcome) -> Iterator[TaskOutcome]:
        if not self.ordered:
            self.unyielded -= 1
            yield out
            return
        self.ready[out.index] = out
        while self.head in self.ready:
            got = self.ready.pop(self.head)
            self.head += 1
            self.unyielded -= 1
            yield got
