"""The executor interface: choosing one, the local pool and Ray giving the same outcomes, a
worker that dies retried and then recorded, a function's own exception raised as itself, and
the one-line error when Ray is not installed.

Ray tests share the session's local instance (``ray_local``: 2 CPUs). Tasks that kill their
own worker process (SIGKILL, as the OOM killer would) are module-level functions here, so
both the forkserver pool and Ray workers import them by name.
"""

from __future__ import annotations

import os
import signal
import sys
from functools import partial
from pathlib import Path

import pytest

from sscmort_core.errors import ExecutorError, WorkerLostError
from sscmort_core.util.executors import (
    RAY_MISSING,
    ExecutorSpec,
    LocalExecutor,
    executor_spec,
    open_executor,
)
from sscmort_core.util.workers import map_in_workers


# --- tasks the workers import by name --------------------------------------------------------
def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise KeyError(f"item {x}")
    return x


def die_sometimes(always: frozenset[int], once: frozenset[int], marker_dir: str, x: int) -> int:
    """Kill this worker process for items in ``always`` every time, for items in ``once`` the
    first time only (a marker file remembers), else return 10 x."""
    marker = Path(marker_dir) / f"ran-{x}"
    if x in always or (x in once and not marker.exists()):
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return 10 * x


class _Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, values: list[int]) -> list[tuple[int, int, int]]:
        self.calls += 1
        return [(v, self.calls, len(values)) for v in values]


class CountingRecipe:
    """A batch model recipe: the holder builds it once; each result says which call of that
    holder scored it and the batch's size, so a test sees the batch cut and that the model
    stayed loaded."""

    def __call__(self) -> _Counting:
        return _Counting()


# --- choosing an executor --------------------------------------------------------------------
def test_spec_comes_from_the_arguments_then_the_environment():
    assert executor_spec(env={}) == ExecutorSpec("local")
    assert executor_spec(env={"SSCMORT_EXECUTOR": "ray", "RAY_ADDRESS": "10.0.0.5:6379"}) == \
        ExecutorSpec("ray", None, "10.0.0.5:6379")
    assert executor_spec("ray", workers=3, env={}) == ExecutorSpec("ray", 3, None)
    # the argument wins over the environment, an explicit address over RAY_ADDRESS
    assert executor_spec("local", env={"SSCMORT_EXECUTOR": "ray"}).kind == "local"
    assert executor_spec("ray", "h:1", env={"RAY_ADDRESS": "h:2"}).address == "h:1"
    # RAY_ADDRESS alone does not switch the executor
    assert executor_spec(env={"RAY_ADDRESS": "h:2"}) == ExecutorSpec("local")


@pytest.mark.parametrize("kwargs, needle", [
    ({"env": {"SSCMORT_EXECUTOR": "dask"}}, "$SSCMORT_EXECUTOR is 'dask'"),
    ({"kind": "spark", "env": {}}, "--executor is 'spark'"),
    ({"address": "h:1", "env": {}}, "--ray-address needs --executor ray"),
    ({"workers": 0, "env": {}}, "--workers must be at least 1"),
])
def test_bad_settings_are_one_line_errors(kwargs, needle):
    with pytest.raises(ExecutorError) as err:
        executor_spec(**kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_without_ray_the_ray_executor_is_one_clear_line(monkeypatch):
    """``import ray`` failing (simulated: None in sys.modules makes the import raise
    ImportError, and the module that imports Ray at its top is dropped from the cache)."""
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "sscmort_core.util.ray_executor", raising=False)
    with pytest.raises(ExecutorError) as err:
        open_executor(ExecutorSpec("ray", 2))
    assert str(err.value) == RAY_MISSING
    # the default path never needs Ray
    with open_executor(executor_spec(env={})) as ex:
        assert list(ex.map(square, [1, 2, 3])) == [1, 4, 9]


# --- the local pool --------------------------------------------------------------------------
def test_map_in_workers_keeps_order_and_signature():
    calls = []
    items = list(range(40))
    out = list(map_in_workers(square, items, 2, lambda s, d, t: calls.append((s, d, t)), "sq"))
    assert out == [x * x for x in items]
    assert calls[0] == ("sq", 0, 40) and calls[-1] == ("sq", 40, 40)
    assert list(map_in_workers(square, [5], 1, lambda *a: None, "one")) == [25]


def test_a_function_error_propagates_as_itself():
    with pytest.raises(KeyError, match="item 3"):
        list(LocalExecutor(2).map(fail_on_three, list(range(8))))


def test_local_pool_retries_a_killed_worker_then_records_the_task(tmp_path):
    fn = partial(die_sometimes, frozenset({3}), frozenset({5}), str(tmp_path))
    outs = sorted(LocalExecutor(2, max_retries=2).outcomes(fn, list(range(10))),
                  key=lambda o: o.index)
    assert [o.index for o in outs] == list(range(10))
    lost = [o for o in outs if not o.ok]
    assert [o.index for o in lost] == [3]
    assert lost[0].value is None and lost[0].attempts == 3  # 1 run + 2 retries, charged
    assert "died 3 time(s)" in lost[0].error
    # the item that died once was run again and came back; no other item was lost
    assert [o.value for o in outs if o.ok] == [10 * x for x in range(10) if x != 3]
    with pytest.raises(WorkerLostError, match="item 4 of 10"):
        list(LocalExecutor(2, max_retries=1).map(fn, list(range(10))))


def test_local_batched_cuts_batches_in_item_order():
    outs = list(LocalExecutor(2).batched(square, CountingRecipe(), list(range(7)),
                                         batch_size=3))
    assert [o.value for o in outs] == [(0, 1, 3), (1, 1, 3), (4, 1, 3), (9, 2, 3), (16, 2, 3),
                                       (25, 2, 3), (36, 3, 1)]


# --- Ray ---------------------------------------------------------------------------------------
def test_ray_gives_the_local_pools_outcomes(ray_local, tmp_path):
    items = list(range(30))
    with open_executor(ExecutorSpec("ray", 2)) as rx:
        assert rx.kind == "ray" and rx.workers == 2
        assert list(rx.map(square, items)) == list(LocalExecutor(2).map(square, items))
        got = sorted(rx.outcomes(square, items), key=lambda o: o.index)
        assert [o.value for o in got] == [x * x for x in items]
        with pytest.raises(KeyError, match="item 3"):  # the task's own error, as itself
            list(rx.map(fail_on_three, list(range(6))))
        rb = [o.value for o in rx.batched(square, CountingRecipe(), list(range(7)),
                                          batch_size=3)]
    lb = [o.value for o in LocalExecutor(1).batched(square, CountingRecipe(), list(range(7)),
                                                    batch_size=3)]
    assert rb == lb  # one CPU actor on 2 CPUs: same batches, same holder for all of them
    assert ray_local.is_initialized()  # an instance the executor did not start stays up


@pytest.mark.slow  # tests/pipeline/test_stages_on_ray.py kills a Ray worker in the default suite
def test_ray_retries_a_killed_worker_then_records_the_task(ray_local, tmp_path):
    fn = partial(die_sometimes, frozenset({2}), frozenset({4}), str(tmp_path))
    with open_executor(ExecutorSpec("ray", 2, max_retries=2)) as rx:
        outs = sorted(rx.outcomes(fn, list(range(6))), key=lambda o: o.index)
    lost = [o for o in outs if not o.ok]
    assert [o.index for o in lost] == [2] and lost[0].attempts == 3
    assert "lost after 2 retries" in lost[0].error and "WorkerCrashedError" in lost[0].error
    assert [o.value for o in outs if o.ok] == [0, 10, 30, 40, 50]  # 4 died once, then ran


def test_an_address_where_nothing_answers_is_one_line(tiny_store, capsys):
    """Checked before ``ray.init`` (which would retry for minutes): nothing listens on port 9
    here. The store is left unchanged."""
    from sscmort_core.cli import main
    from sscmort_core.util.ray_executor import check_address

    with pytest.raises(ExecutorError, match="no Ray cluster answers at 127.0.0.1:9"):
        check_address("127.0.0.1:9", timeout_s=2)
    with pytest.raises(ExecutorError, match="not HOST:PORT"):
        check_address("nonsense")
    before = tiny_store.read_bytes()
    rc = main(["radiomics", "--store", str(tiny_store), "--executor", "ray", "--ray-address",
               "ray://127.0.0.1:9", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: no Ray cluster answers")
    assert tiny_store.read_bytes() == before
