"""The ``ray`` executor: the batch stages' tasks on a Ray cluster (imported only when opened).

* Connects to the cluster at ``ExecutorSpec.address`` (``ray start --head`` on a node, then
  ``--ray-address HOST:6379``, or ``ray://HOST:10001`` through Ray Client), shipping this
  sscmort_core package to the workers (``runtime_env.py_modules``) so they run the driver's
  code; the nodes need sscmort's dependencies (requirements.txt) installed. Without an
  address it starts a private local instance with ``workers`` CPUs and shuts it down on
  :meth:`RayExecutor.close`. A Ray already initialised in this process (an app, a test
  session) is used as it is and left running.
* Per-item tasks take one CPU each, are retried by Ray when their worker dies
  (``max_retries``; an exception of the function is never retried) and come back in
  completion order; at most max(2 per CPU, 32) tasks are in flight (exactly ``workers`` when
  ``workers`` caps a bigger cluster).
* :meth:`RayExecutor.batched` prepares items in CPU tasks whose results stay in Ray's object
  store; the driver passes only their references on to model actors (one per GPU, or on a
  CPU-only cluster about one per four CPUs), so prepared arrays move from worker to actor
  without passing through the driver. Actors are restarted (bounded) when they die.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import ray
from ray.exceptions import ActorDiedError, RayError, RayTaskError

from sscmort_core.errors import ExecutorError, WorkerLostError
from sscmort_core.util.executor_api import (
    BatchFn,
    Executor,
    ExecutorSpec,
    TaskOutcome,
    default_workers,
    worker_init,
)
from sscmort_core.util.progress import ProgressFn, no_progress

CPUS_PER_CPU_ACTOR = 4  # on a CPU-only cluster: one model actor per this many CPUs
MIN_WINDOW = 32  # per-item tasks in flight at least (when not capped by --workers)
_initialised = False


def package_dir() -> Path:
    """The sscmort_core folder this driver runs."""
    return Path(__file__).resolve().parents[1]


def init_kwargs(spec: ExecutorSpec) -> dict[str, Any]:
    """``ray.init`` keywords for ``spec``: quiet (errors only, no worker output on the
    driver's terminal); the driver's own sscmort_core on the workers' path."""
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if spec.address:
        return {**quiet, "address": spec.address,
                "runtime_env": {"py_modules": [str(package_dir())],
                                "excludes": ["__pycache__", "*.pyc"]}}
    path = os.pathsep.join(p for p in (str(package_dir().parent),
                                       os.environ.get("PYTHONPATH", "")) if p)
    return {**quiet, "address": "local", "num_cpus": spec.workers or default_workers(),
            "include_dashboard": False, "runtime_env": {"env_vars": {"PYTHONPATH": path}}}


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing answers at a ``HOST:PORT`` or ``ray://HOST:PORT`` address
    (``ray.init`` itself retries for minutes, logging from C++ as it goes). ``auto`` and
    ``local`` are left to Ray."""
    if address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--ray-address {address!r} is not HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ExecutorError(f"no Ray cluster answers at {address} ({err.strerror or err}); "
                            "start one with `ray start --head` or check the address") from None


def start_local_ray(num_cpus: int) -> None:
    """Start a local Ray instance as :class:`RayExecutor` would (tests share one)."""
    ray.init(**init_kwargs(ExecutorSpec("ray", num_cpus)))
    _quiet_driver()


_log = logging.getLogger("sscmort_core.ray")


def _log_ray_message(data: dict[str, Any], ignore_prefix: bool = False) -> None:
    for line in data.get("lines", ()):
        _log.debug("%s: %s", data.get("pid", "ray"), line)


def _log_unhandled(err: Exception) -> None:
    _log.debug("unretrieved task error: %s", _first_line(err))


def _quiet_driver() -> None:
    """Ray's driver prints the raylet's error messages (a worker died, a task is retried) on
    stdout from a background thread, whatever ``log_to_driver`` says, and logs an error for
    every failed task whose result nobody fetched (those left when a stage stops early).
    sscmort reports lost tasks itself, and stdout carries ``--json``: both go to this module's
    logger at debug level instead."""
    from ray._private import worker as ray_worker

    if hasattr(ray_worker, "print_to_stdstream"):
        ray_worker.print_to_stdstream = _log_ray_message
    if hasattr(ray_worker, "_unhandled_error_handler"):
        ray_worker._unhandled_error_handler = _log_unhandled


def _ensure_worker_init() -> None:
    global _initialised
    if not _initialised:
        worker_init()
        _initialised = True


def _run_task(fn: Callable[[Any], Any], item: Any) -> Any:
    _ensure_worker_init()
    return fn(item)


def _prepare_task(fn: Callable[[Any], Any], item: Any) -> tuple[bool, Any]:
    """Two returns: a small "done" flag the driver reads, the value it only passes on."""
    _ensure_worker_init()
    return True, fn(item)


class _ModelHolder:
    def __init__(self, model: Callable[[], BatchFn]) -> None:
        _ensure_worker_init()
        self._run = model()

    def run(self, *values: Any) -> list[Any]:
        return self._run(list(values))


_TASK = ray.remote(_run_task)
_PREPARE = ray.remote(_prepare_task)
_ACTOR = ray.remote(_ModelHolder)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else "")[:300]


class RayExecutor(Executor):
    """Tasks and actors on a Ray cluster (see the module docstring)."""

    kind = "ray"

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self._owns = False
        if spec.address:
            check_address(spec.address)
        if not ray.is_initialized():
            try:
                ray.init(**init_kwargs(spec))
            except (ConnectionError, ValueError, RuntimeError) as err:
                where = f"at {spec.address}" if spec.address else "(local instance)"
                hint = ("; if the cluster uses token authentication (recent Ray versions "
                        "turn it on by default), set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN"
                        if spec.address else "")
                raise ExecutorError(f"cannot start or reach the Ray cluster {where}: "
                                    f"{_first_line(err)}{hint}") from None
            self._owns = True
            _quiet_driver()
        res = ray.cluster_resources()
        self.cpus = max(1, int(res.get("CPU", 1)))
        self.gpus = int(res.get("GPU", 0))
        self.workers = min(spec.workers or self.cpus, self.cpus)
        # tasks in flight: exactly ``workers`` when they cap a bigger cluster; else enough to
        # keep every CPU fed while results travel back (small items, so cheap to queue)
        self.window = self.workers if self.workers < self.cpus else max(2 * self.cpus,
                                                                         MIN_WINDOW)

    def describe(self) -> dict[str, Any]:
        return {"executor": "ray", "workers": self.workers, "cluster_cpus": self.cpus,
                "cluster_gpus": self.gpus, "address": self.spec.address or "local instance"}

    def close(self) -> None:
        if self._owns and ray.is_initialized():
            ray.shutdown()
        self._owns = False

    # -- errors ------------------------------------------------------------------------------
    def _lost(self, err: RayError) -> str:
        """Why a task came back without a value; an exception of the function itself is
        raised here instead (it is the stage's to handle, as on the local executor)."""
        if isinstance(err, RayTaskError):
            cause = getattr(err, "cause", None)
            if isinstance(cause, ImportError):
                raise ExecutorError(f"a Ray worker cannot import {cause.name or 'a module'}: "
                                    "install sscmort's requirements on every node") from None
            if isinstance(cause, BaseException):
                raise cause from None
            raise err
        return (f"its Ray worker was lost after {self.spec.max_retries} retries "
                f"({type(err).__name__}: {_first_line(err)})")

    # -- per-item tasks ----------------------------------------------------------------------
    def outcomes(self, fn: Callable[[Any], Any], items: Sequence[Any],
                 progress: ProgressFn = no_progress, stage: str = "tasks") -> Iterator[TaskOutcome]:
        total = len(items)
        progress(stage, 0, total)
        task = _TASK.options(num_cpus=1, max_retries=self.spec.max_retries,
                             retry_exceptions=False)
        fn_ref = ray.put(fn)
        pending: dict[Any, int] = {}
        nxt = done = 0
        try:
            while nxt < total or pending:
                while nxt < total and len(pending) < self.window:
                    pending[task.remote(fn_ref, items[nxt])] = nxt
                    nxt += 1
                refs = list(pending)
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)  # all that are in
                if not ready:
                    ready, _ = ray.wait(refs, num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        out = TaskOutcome(i, ray.get(ref))
                    except RayError as err:
                        out = TaskOutcome(i, None, self._lost(err), self.spec.max_retries + 1)
                    done += 1
                    yield out
                    progress(stage, done, total)
        finally:
            for ref in pending:
                ray.cancel(ref)

    # -- prepare in tasks, model in actors ---------------------------------------------------
    def _actors(self, model: Callable[[], BatchFn], gpus: bool) -> list[Any]:
        retries = {"max_restarts": self.spec.max_retries,
                   "max_task_retries": self.spec.max_retries}
        if gpus and self.gpus:
            opts = {"num_gpus": 1, "num_cpus": 0}
            n = self.gpus
        else:
            n = max(1, self.workers // CPUS_PER_CPU_ACTOR)
            opts = {"num_cpus": 1 if self.cpus > n else 0}
        return [_ACTOR.options(**opts, **retries).remote(model) for _ in range(n)]

    def batched(self, prepare: Callable[[Any], Any], model: Callable[[], BatchFn],
                items: Sequence[Any], *, batch_size: int, progress: ProgressFn = no_progress,
                stage: str = "batches", gpus: bool = True) -> Iterator[TaskOutcome]:
        run = _BatchRun(self, prepare, model, items, batch_size, gpus)
        done = 0
        progress(stage, 0, len(items))
        try:
            for out in run.run():
                done += 1
                yield out
                progress(stage, done, len(items))
        finally:
            run.cancel()


class _BatchRun:
    """One :meth:`RayExecutor.batched` pass: prepares run ahead (about two per CPU, at least
    two batches per actor), batches are cut in item order from the prepared items and sent
    round-robin to the live actors, at most two batches per actor in flight."""

    def __init__(self, ex: RayExecutor, prepare: Callable[[Any], Any],
                 model: Callable[[], BatchFn], items: Sequence[Any], batch_size: int,
                 gpus: bool) -> None:
        self.ex, self.items, self.batch_size = ex, items, max(1, batch_size)
        self.actors = ex._actors(model, gpus)
        self.live = list(range(len(self.actors)))
        self.prep = _PREPARE.options(num_cpus=1, num_returns=2,
                                     max_retries=ex.spec.max_retries, retry_exceptions=False)
        self.fn_ref = ray.put(prepare)
        self.ahead = max(2 * ex.workers, 2 * self.batch_size * len(self.actors))
        self.submitted: deque[tuple[int, Any, Any]] = deque()
        self.flying: deque[tuple[list[int], Any, int]] = deque()
        self.nxt = 0
        self.turn = 0

    def run(self) -> Iterator[TaskOutcome]:
        batch: list[tuple[int, Any]] = []
        total = len(self.items)
        while self.nxt < total or self.submitted or batch or self.flying:
            while self.nxt < total and len(self.submitted) < self.ahead:
                status, value = self.prep.remote(self.fn_ref, self.items[self.nxt])
                self.submitted.append((self.nxt, status, value))
                self.nxt += 1
            if self.submitted:
                i, status, value = self.submitted.popleft()
                try:
                    ray.get(status)
                    batch.append((i, value))
                except RayError as err:
                    yield TaskOutcome(i, None, self.ex._lost(err), self.ex.spec.max_retries + 1)
            last = not self.submitted and self.nxt >= total
            if batch and (len(batch) >= self.batch_size or last):
                while len(self.flying) >= 2 * len(self.live):
                    yield from self._drain_one()
                self._send(batch)
                batch = []
            elif last and self.flying:
                yield from self._drain_one()

    def _send(self, batch: list[tuple[int, Any]]) -> None:
        if not self.live:
            raise WorkerLostError("every model actor died; nothing is left to run the batches")
        a = self.live[self.turn % len(self.live)]
        self.turn += 1
        ref = self.actors[a].run.remote(*[v for _, v in batch])
        self.flying.append(([i for i, _ in batch], ref, a))

    def _drain_one(self) -> Iterator[TaskOutcome]:
        idxs, ref, a = self.flying.popleft()
        try:
            results = ray.get(ref)
        except RayError as err:
            reason = self.ex._lost(err)
            if isinstance(err, ActorDiedError) and a in self.live:
                self.live.remove(a)
            for i in idxs:
                yield TaskOutcome(i, None, reason, self.ex.spec.max_retries + 1)
            return
        if len(results) != len(idxs):
            raise ValueError(f"a batch of {len(idxs)} gave {len(results)} results")
        for i, r in zip(idxs, results):
            yield TaskOutcome(i, r)

    def cancel(self) -> None:
        for _, status, value in self.submitted:
            ray.cancel(status)
        for actor in self.actors:
            ray.kill(actor)
