"""First start (issue 13): the demo build as a background job of the app, with its progress.

``sscmort app`` on a missing store creates it with a demo plan (:func:`plan_missing_store`)
and starts the app at once; the app (the store's only writer) runs the plan's steps as one
background job (:func:`ensure_demo_build`), in the store it has open, so every page shows
what is already in. Only one build job runs per store in a process, however many sessions ask
(a process-wide lock), and an interrupted build continues from its first step not done; a
complete store starts nothing.

:func:`build_progress` is what the app's panel draws: the step, its %, the time left and the
parts still coming ("models: training, about 6 min"). Time left is measured: the seconds the
steps done so far took against their expected share (:data:`PRIOR_S_PER_SCAN`, measured on
the reference two-core machine) scale the expected seconds of the steps still to come, and the
current step's own rate counts once it has reported progress; with no such data yet the time
left is None ("estimating").
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sscmort_core import store as st_store
from sscmort_core.pipeline import jobs
from sscmort_core.pipeline.demo import DemoPlan, demo_plan, demo_state, record_plan, run_demo_steps
from sscmort_core.util.executors import LocalExecutor
from sscmort_core.util.progress import ProgressFn
from sscmort_core.util.workers import default_workers

LOG = logging.getLogger("sscmort.pipeline.demo_job")
JOB_KIND = "demo-build"
SCANS_PER_PATIENT = 3.57  # the default cohort's 2,141 scans of 600 patients
# Expected wall seconds per scan of each step on two workers (docs/BENCHMARKS.md, the whole
# default demo) and fixed seconds per step (pools, imports): only their ratios matter, as the
# measured pace of the build rescales them.
PRIOR_S_PER_SCAN = {"cohort": 0.002, "scans": 0.19, "radiomics": 0.003, "tabular": 0.006,
                    "deep:resnet18": 0.06, "deep:densenet121": 0.07,
                    "deep:swin_tiny_patch4_window7_224": 0.065, "deep": 0.065,
                    "evaluate": 0.01}
PRIOR_FIXED_S = {"cohort": 0.5, "scans": 3.0, "radiomics": 1.0, "tabular": 1.0, "deep": 8.0,
                 "evaluate": 2.0}
NOT_BUILT = "not built yet"
MIN_MEASURED_S = 5.0  # seconds of measured work before a time left is given
# what a page may wait for, as the panel names it, and what the build is doing for it
PARTS = {"cohort": ("cohort", "generating"), "scans": ("lung masks and QCT", "measuring"),
         "radiomics": ("radiomics features", "extracting"), "models": ("models", "training"),
         "evaluation": ("model metrics", "computing")}
_STEP_NAMES = {"cohort": "cohort: patients, scans, clinical measurements",
               "scans": "volumes, lungs, QCT (with radiomics and the model inputs)",
               "radiomics": "radiomics features", "evaluate": "evaluation of every model"}


def part_of(step: str) -> str:
    """The part of the app a step fills: cohort, scans, radiomics, models or evaluation."""
    kind = step.partition(":")[0]
    return {"tabular": "models", "deep": "models", "evaluate": "evaluation"}.get(kind, kind)


def step_name(step: str) -> str:
    kind, _, name = step.partition(":")
    if kind == "tabular":
        return f"{name} model"
    if kind == "deep":
        return f"deep model {name} (quick profile)"
    return _STEP_NAMES.get(step, step)


def prior_seconds(step: str, patients: int) -> float:
    kind = step.partition(":")[0]
    per_scan = PRIOR_S_PER_SCAN.get(step, PRIOR_S_PER_SCAN.get(kind, 0.01))
    return PRIOR_FIXED_S.get(kind, 1.0) + per_scan * patients * SCANS_PER_PATIENT


# ---------------------------------------------------------------------------------------------
# the estimate (pure: tested on made-up timings)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurrentStep:
    step: str
    elapsed_s: float
    fraction: float | None  # done / total of its progress, when it reports one kind only


@dataclass(frozen=True)
class ComingPart:
    part: str  # a key of PARTS
    label: str  # "models"
    state: str  # "training", or "waiting" while an earlier part is being built
    seconds_left: float | None  # until the part is complete; None: estimating

    def sentence(self) -> str:
        if self.state == NOT_BUILT:
            return f"{self.label}: {self.state}"
        return f"{self.label}: {self.state}, {format_left(self.seconds_left)}"


@dataclass(frozen=True)
class BuildProgress:
    """What the panel shows while a store's demo build is incomplete."""

    running: bool
    step: str | None
    step_label: str
    step_number: int  # 1-based number of the current (or next) step
    steps: int
    step_fraction: float | None
    overall_fraction: float
    seconds_left: float | None  # None: estimating
    coming: tuple[ComingPart, ...]
    done_steps: int = 0
    problem: str | None = None  # why a build that is not running stopped
    notes: tuple[str, ...] = ()

    def part(self, key: str) -> ComingPart | None:
        return next((c for c in self.coming if c.part == key), None)


def format_left(seconds: float | None) -> str:
    if seconds is None:
        return "estimating"
    if seconds < 60:
        return "under a minute"
    return f"about {round(seconds / 60)} min"


def estimate(plan: DemoPlan, done: dict[str, float], current: CurrentStep | None,
             *, running: bool = True, problem: str | None = None) -> BuildProgress:
    """Progress and time left of ``plan``: ``done`` steps with their measured seconds, the
    ``current`` one (None: between steps or not running)."""
    priors = {s: prior_seconds(s, plan.patients) for s in plan.steps}
    pending = [s for s in plan.steps if s not in done]
    measured = sum(done.values())
    expected = sum(priors[s] for s in done)
    cur_left = None
    if current is not None and current.fraction and current.fraction >= 0.02:
        f = current.fraction
        measured += current.elapsed_s
        expected += priors[current.step] * f
        cur_left = current.elapsed_s * (1 - f) / f
    pace = measured / expected if measured >= MIN_MEASURED_S and expected > 0 else None
    left: dict[str, float | None] = {}
    for s in pending:
        if pace is None:
            left[s] = None
        elif current is not None and s == current.step:
            left[s] = cur_left if cur_left is not None else max(
                priors[s] * pace - current.elapsed_s, 0.05 * priors[s] * pace)
        else:
            left[s] = priors[s] * pace
    total_prior = sum(priors.values())
    in_cur = 0.0
    if current is not None:
        in_cur = priors[current.step] * (current.fraction if current.fraction is not None
                                         else min(current.elapsed_s / (priors[current.step]
                                                                       * (pace or 1)), 0.95))
    overall = (sum(priors[s] for s in done) + in_cur) / total_prior if total_prior else 1.0
    coming = _coming(pending, left, current.step if running and current else None, running)
    unknown = any(v is None for v in left.values())
    running_total = sum(v or 0.0 for v in left.values())
    step = current.step if current is not None else (pending[0] if pending else None)
    return BuildProgress(
        running=running, step=step, step_label=step_name(step) if step else "",
        step_number=plan.steps.index(step) + 1 if step else len(plan.steps),
        steps=len(plan.steps), step_fraction=current.fraction if current else None,
        overall_fraction=min(max(overall, 0.0), 1.0),
        seconds_left=None if unknown else running_total, coming=coming,
        done_steps=len(done), problem=problem, notes=plan.notes)


def _coming(pending: list[str], left: dict[str, float | None], current: str | None,
            running: bool) -> tuple[ComingPart, ...]:
    """One entry per part still to come, timed to the end of its last step."""
    coming, total, unknown = [], 0.0, False
    for i, s in enumerate(pending):
        unknown = unknown or left[s] is None
        total += left[s] or 0.0
        part = part_of(s)
        if i + 1 < len(pending) and part_of(pending[i + 1]) == part:
            continue  # the part is complete when its last step is
        active = current is not None and part_of(current) == part
        state = PARTS[part][1] if active else ("waiting" if running else NOT_BUILT)
        coming.append(ComingPart(part, PARTS[part][0], state, None if unknown else total))
    return tuple(coming)


# ---------------------------------------------------------------------------------------------
# the job, one per store in this process
# ---------------------------------------------------------------------------------------------
class _Tracker:
    """The running build's live state (written by the job thread, read by the pages)."""

    def __init__(self, plan: DemoPlan, done: dict[str, float]) -> None:
        self.plan, self.done = plan, dict(done)
        self._lock = threading.Lock()
        self._step: str | None = None
        self._t0 = 0.0
        self._kinds: set[str] = set()
        self._fraction: float | None = None

    def on_step(self, step: str, what: str) -> None:
        with self._lock:
            now = time.monotonic()
            if what == "start":
                self._step, self._t0, self._kinds, self._fraction = step, now, set(), None
            else:
                self.done[step] = now - self._t0
                self._step = None
        if what == "done":
            snap = self.snapshot()
            LOG.info("demo build: step %s done in %.1f s; %s left (%d of %d steps done)",
                     step, self.done[step], format_left(snap.seconds_left), len(self.done),
                     len(self.plan.steps))
        else:
            LOG.info("demo build: step %s started", step)

    def progress(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._kinds.add(stage)
            self._fraction = (done / total if total else 1.0) if len(self._kinds) == 1 else None

    def snapshot(self) -> BuildProgress:
        with self._lock:
            current = None if self._step is None else CurrentStep(
                self._step, time.monotonic() - self._t0, self._fraction)
            return estimate(self.plan, dict(self.done), current)


_GUARD = threading.Lock()
_ACTIVE: dict[str, str] = {}  # store file -> job id of its build in this process
_TRACKERS: dict[str, _Tracker] = {}


def _key(store: st_store.Store) -> str:
    return str(Path(store.path).resolve())


def plan_missing_store(path: Path, *, n_patients: int = 600, seed: int = 0) -> bool:
    """Create the store at ``path`` with a demo plan when no file is there (``sscmort app``
    before it starts the app); False when a store exists (it is used as it is)."""
    path = Path(path)
    if path.exists():
        return False
    plan = demo_plan(n_patients, seed)
    with st_store.open_store(path) as store:
        record_plan(store, plan)
    return True


def ensure_demo_build(store: st_store.Store, *, workers: int | None = None,
                      models_dir: Path | None = None) -> str | None:
    """Start the store's demo build as a background job unless it is complete, has no plan,
    or its build already runs in this process; returns the running job's id (or None)."""
    key = _key(store)
    with _GUARD:
        job_id = _ACTIVE.get(key)
        if job_id is not None and jobs.is_alive(job_id):
            return job_id
        state = demo_state(store)
        if state.plan is None or state.complete:
            return None
        jobs.mark_interrupted(store)  # an earlier process's build row
        tracker = _Tracker(state.plan, state.done)
        ex = LocalExecutor(workers or default_workers())

        def work(progress: ProgressFn) -> tuple[str, ...]:
            def both(stage: str, done: int, total: int) -> None:
                tracker.progress(stage, done, total)
                progress(stage, done, total)

            ran = run_demo_steps(store, executor=ex, progress=both, models_dir=models_dir,
                                 on_step=tracker.on_step)
            counts = st_store.table_counts(store)
            st_store.record_audit(store, st_store.AuditEvent(
                "app", "admin", "import", detail=f"demo build in the app: synthetic cohort of "
                f"{counts['patients']} patients, {counts['scans']} scans"))
            return ran

        params = {"patients": state.plan.patients, "seed": state.plan.seed,
                  "resumed_after": sorted(state.done)}
        job_id = jobs.start_job(store, JOB_KIND, params, work, describe=lambda ran: (
            f"demo built: {len(ran)} steps run, {len(state.done)} kept from before"))
        _ACTIVE[key], _TRACKERS[key] = job_id, tracker
        LOG.info("demo build started (%s): %d of %d steps to run", job_id,
                 len(state.pending), len(state.plan.steps))
        return job_id


def build_progress(store: st_store.Store) -> BuildProgress | None:
    """The store's demo build while it is incomplete (None when complete or not a demo)."""
    state = demo_state(store)
    if state.plan is None or state.complete:
        return None
    key = _key(store)
    with _GUARD:
        job_id, tracker = _ACTIVE.get(key), _TRACKERS.get(key)
    if job_id is not None and tracker is not None and jobs.is_alive(job_id):
        return tracker.snapshot()
    return estimate(state.plan, state.done, None, running=False, problem=_why_stopped(store))


def _why_stopped(store: st_store.Store) -> str:
    frame = st_store.jobs_frame(store)
    last = frame[frame["kind"] == JOB_KIND].head(1)
    if last.empty:
        return "not started: `make run` (or `sscmort app`) builds it"
    row = last.iloc[0]
    if row["status"] == "failed":
        return f"failed: {row['error']}"
    return "interrupted; `make run` (or `sscmort app`) continues it"
