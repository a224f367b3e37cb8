"""First start (issue 13): the demo build as a background job. One build per store however
many sessions ask; a complete store starts nothing; an interrupted build continues from its
first step not done; the time left is measured, "estimating" until it can be."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from sscmort_core import store as st
from sscmort_core.pipeline import demo_job, jobs
from sscmort_core.pipeline.demo import demo_plan, demo_state, record_plan, run_demo_steps
from sscmort_core.pipeline.demo_job import CurrentStep, estimate, prior_seconds
from sscmort_core.util.executors import LocalExecutor

STAGES = ("tabular",)  # cohort, scans, then four tabular models: seconds, not minutes


@pytest.fixture(scope="module")
def after_scans(tmp_path_factory) -> Path:
    """A 5-patient demo store whose build stopped after its scans step (as an app that was
    stopped there leaves it)."""
    path = tmp_path_factory.mktemp("demo_job") / "after_scans.duckdb"
    with st.open_store(path) as store:
        record_plan(store, demo_plan(5, 3, STAGES))
        assert run_demo_steps(store, executor=LocalExecutor(1),
                              stop_after="scans") == ("cohort", "scans")
    return path


@pytest.fixture()
def store(after_scans, tmp_path):
    dest = tmp_path / "store.duckdb"
    shutil.copy(after_scans, dest)
    s = st.open_store(dest)
    yield s
    s.close()


def _demo_jobs(store: st.Store):
    frame = st.jobs_frame(store)
    return frame[frame["kind"] == demo_job.JOB_KIND]


# --- the estimate (made-up timings) -----------------------------------------------------------
def test_time_left_is_estimating_until_there_is_measured_work():
    plan = demo_plan(600, 0)
    p = estimate(plan, {}, CurrentStep("cohort", 0.2, None))
    assert p.seconds_left is None and p.step == "cohort" and p.step_number == 1
    assert [c.part for c in p.coming] == ["cohort", "scans", "radiomics", "models",
                                          "evaluation"]
    assert p.coming[0].sentence() == "cohort: generating, estimating"
    assert p.part("models").sentence() == "models: waiting, estimating"


def test_time_left_scales_the_steps_to_come_by_the_measured_pace():
    plan = demo_plan(600, 0)
    after = {"cohort": prior_seconds("cohort", 600), "scans": prior_seconds("scans", 600)}
    on_time = estimate(plan, after, None)
    slow = estimate(plan, {k: 2 * v for k, v in after.items()}, None)  # twice the prior
    assert on_time.seconds_left == pytest.approx(
        sum(prior_seconds(s, 600) for s in plan.steps[2:]))
    assert slow.seconds_left == pytest.approx(2 * on_time.seconds_left)
    models = slow.part("models")
    model_steps = [s for s in plan.steps if s.startswith(("tabular:", "deep:"))]
    assert models.seconds_left == pytest.approx(  # radiomics first, then every model step
        2 * sum(prior_seconds(s, 600) for s in ["radiomics", *model_steps]))
    assert slow.overall_fraction == pytest.approx(on_time.overall_fraction)


def test_the_current_step_is_timed_by_its_own_rate():
    plan = demo_plan(600, 0)
    p = estimate(plan, {"cohort": 1.0}, CurrentStep("scans", 120.0, 0.25))
    rest = sum(prior_seconds(s, 600) for s in plan.steps[2:])
    pace = (1.0 + 120.0) / (prior_seconds("cohort", 600) + 0.25 * prior_seconds("scans", 600))
    assert p.seconds_left == pytest.approx(360.0 + pace * rest)  # 120 s for 25%: 360 s to go
    assert p.part("scans").sentence() == "lung masks and QCT: measuring, about 6 min"
    assert p.step_fraction == 0.25 and 0 < p.overall_fraction < 0.5


def test_a_build_that_is_not_running_says_why_and_promises_no_time():
    p = estimate(demo_plan(600, 0), {"cohort": 1.0}, None, running=False,
                 problem="interrupted")
    assert not p.running and p.problem == "interrupted" and p.done_steps == 1
    assert p.part("models").sentence() == "models: not built yet"


# --- the job ----------------------------------------------------------------------------------
def test_many_sessions_start_one_build_and_a_complete_store_starts_nothing(store):
    ids: list[str | None] = []
    start = threading.Barrier(8)

    def session() -> None:
        start.wait()
        ids.append(demo_job.ensure_demo_build(store, workers=1))

    threads = [threading.Thread(target=session) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and ids[0] is not None
    progress = demo_job.build_progress(store)
    assert progress is not None and progress.running and progress.done_steps == 2
    assert jobs.wait(ids[0], timeout_s=300)
    assert len(_demo_jobs(store)) == 1
    assert jobs.job_info(store, ids[0]).status == "done", jobs.job_info(store, ids[0])
    assert demo_state(store).complete and demo_job.build_progress(store) is None
    audit = st.audit_frame(store)
    assert list(audit[audit["who"] == "app"]["action"]) == ["import"]  # the build's write
    # a second start on the complete store reuses it and starts nothing
    assert demo_job.ensure_demo_build(store, workers=1) is None
    assert len(_demo_jobs(store)) == 1


def test_an_interrupted_build_continues_from_its_first_step_not_done(store):
    before = demo_state(store)
    assert before.pending[0] == "tabular:qct" and set(before.done) == {"cohort", "scans"}
    patients_before = st.table_counts(store)["patients"]
    with store.transaction() as cur:  # what an app killed mid-build leaves: a 'running' row
        st.insert_job(cur, "demo-build-dead", demo_job.JOB_KIND, {})
    stopped = demo_job.build_progress(store)
    assert not stopped.running and "continues it" in stopped.problem  # that thread is gone
    job_id = demo_job.ensure_demo_build(store, workers=1)
    assert jobs.wait(job_id, timeout_s=300)
    info = jobs.job_info(store, job_id)
    n_models = len(before.pending)
    assert info.status == "done"
    assert info.message == f"demo built: {n_models} steps run, 2 kept from before"
    after = demo_state(store)
    assert after.complete and after.done["scans"] == before.done["scans"]  # not run again
    assert st.table_counts(store)["patients"] == patients_before
    assert jobs.job_info(store, "demo-build-dead").status == "interrupted"
    models = st.models_frame(store)
    assert {"qct", "goh", "clinical", "clinical_qct"} <= set(models["kind"])


def test_a_missing_store_gets_a_plan_and_an_existing_one_is_left_alone(tmp_path, after_scans):
    path = tmp_path / "new" / "sscmort.duckdb"
    assert demo_job.plan_missing_store(path, n_patients=7, seed=2)
    with st.open_store(path, read_only=True) as s:
        state = demo_state(s)
    assert state.plan == demo_plan(7, 2) and state.done == {} and not state.complete
    assert not demo_job.plan_missing_store(after_scans, n_patients=7, seed=2)
    with st.open_store(after_scans, read_only=True) as s:
        assert demo_state(s).plan.patients == 5
