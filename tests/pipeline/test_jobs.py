"""Job runner: a thread writes progress, success and failure rows; stale rows are marked."""

from __future__ import annotations

import re
import threading

import pytest

from sscmort_core import store as st_store
from sscmort_core.errors import DataError
from sscmort_core.pipeline import jobs


@pytest.fixture()
def store(tiny_store):
    s = st_store.open_store(tiny_store)
    yield s
    s.close()


def test_job_success_writes_progress_and_done(store):
    seen = threading.Event()

    def work(progress):
        progress("stage a", 1, 4)
        progress("stage a", 4, 4)  # a finished stage is always written
        seen.set()
        return "model-x"

    job_id = jobs.start_job(store, "test", {"n": 4}, work, min_interval_s=0.0,
                            describe=lambda r: f"registered {r}")
    assert jobs.wait(job_id, 30)
    assert seen.is_set()
    info = jobs.job_info(store, job_id)
    assert info.status == "done" and info.finished and info.progress == 1.0
    assert info.message == "registered model-x" and info.error is None
    row = st_store.jobs_frame(store).set_index("job_id").loc[job_id]
    assert '"n": 4' in row["params"] and row["finished_at"] is not None


def test_progress_is_throttled_but_stage_ends_are_written(store):
    release = threading.Event()
    written = threading.Event()

    def work(progress):
        progress("embed", 1, 10)  # first call is written
        progress("embed", 2, 10)  # within min_interval_s: skipped
        written.set()
        release.wait(10)
        return None

    job_id = jobs.start_job(store, "test", {}, work, min_interval_s=60.0)
    assert written.wait(10)
    info = jobs.job_info(store, job_id)
    assert info.status == "running" and info.message == "embed: 1/10"
    assert jobs.is_alive(job_id)
    assert jobs.mark_interrupted(store) == []  # a live job is never marked stale
    release.set()
    jobs.wait(job_id, 30)


def test_named_error_fails_the_job_with_its_sentence(store):
    def work(progress):
        raise DataError("2 patients cannot fill 5 folds", "cohort.duckdb")

    job_id = jobs.start_job(store, "test", {}, work)
    jobs.wait(job_id, 30)
    info = jobs.job_info(store, job_id)
    assert info.status == "failed"
    assert info.error == "cohort.duckdb: 2 patients cannot fill 5 folds"


def test_bug_fails_the_job_with_type_and_message(store):
    def work(progress):
        return 1 / 0

    job_id = jobs.start_job(store, "test", {}, work)
    jobs.wait(job_id, 30)
    info = jobs.job_info(store, job_id)
    assert info.status == "failed"
    # type, message and where it was raised (this file's line), said once
    assert re.fullmatch(r"ZeroDivisionError: division by zero \(at test_jobs\.py:\d+\)",
                        info.error), info.error


def test_stale_running_rows_are_marked_interrupted(store):
    with store.transaction() as cur:
        st_store.insert_job(cur, "ghost-1", "train-deep", {})  # e.g. the app was killed
    assert jobs.mark_interrupted(store) == ["ghost-1"]
    info = jobs.job_info(store, "ghost-1")
    assert info.status == "interrupted" and "interrupted" in info.message
