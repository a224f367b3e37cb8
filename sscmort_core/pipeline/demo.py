"""The synthetic demo store: cohort -> volumes -> lungs -> QCT, zones, patterns and mask QC
(+ radiomics and model inputs in the same pass) -> radiomics / QCT models -> quick deep
backbones -> evaluation.

The build is a plan of steps (:class:`DemoPlan`: cohort, scans, radiomics, one per model,
evaluation) recorded in the store with the steps done, so an interrupted build continues from
its first step not done (:func:`run_demo_steps`). Heavy per-scan work runs in worker processes
that never touch the store; the calling process writes results in transactions. ``sscmort
demo`` builds into a temporary file moved into place only when every step succeeded; the app
builds into its own open store as a background job (:mod:`.demo_job`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.cards import ModelCard
from sscmort_core.deep.config import UI_BACKBONES, quick_input_shape
from sscmort_core.deep.inputs import input_for_volume, write_model_inputs
from sscmort_core.errors import DataError, SscmortError, StoreError
from sscmort_core.labels import HORIZONS_YEARS, label_scans
from sscmort_core.lungs import measure_lungs
from sscmort_core.pipeline import DEMO_STAGES
from sscmort_core.pipeline.evaluate import run_evaluation
from sscmort_core.pipeline.measure import MeasureRows, measure_rows, write_measures
from sscmort_core.radiomics.features import extract_outcome, load_params
from sscmort_core.radiomics.stage import run_radiomics_stage, write_outcomes
from sscmort_core.scans import scan_with_lungs_from_row
from sscmort_core.synthetic.cohort import generate_cohort
from sscmort_core.synthetic.oracle import (
    HONEST_CONDITIONS,
    HONEST_INTEGRATES,
    IMAGING_CONDITIONS,
    IMAGING_INTEGRATES,
    ORACLE_VERSION,
)
from sscmort_core.tabular.model import LONGITUDINAL_KINDS, REFERENCE_KINDS
from sscmort_core.tabular.train import train_tabular
from sscmort_core.util.executors import Executor, LocalExecutor
from sscmort_core.util.hashing import array_sha256
from sscmort_core.util.paths import default_models_dir
from sscmort_core.util.progress import ProgressFn, no_progress
from sscmort_core.util.workers import default_workers


# ---------------------------------------------------------------------------------------------
# the synthetic demo cohort
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoSummary:
    patients: int
    scans: int
    positives: dict[str, int]
    censored: dict[str, int]
    qct_scans: int
    synthetic: bool
    store: str
    seconds: float
    notes: tuple[str, ...] = ()  # stages skipped, and why

    def to_json(self) -> dict[str, Any]:
        return {"patients": self.patients, "scans": self.scans, "positives": self.positives,
                "censored": self.censored, "qct_scans": self.qct_scans,
                "synthetic": self.synthetic, "store": self.store,
                "seconds": round(self.seconds, 1), "notes": list(self.notes)}


DEMO_FOLDS = 5  # patient-grouped CV folds of the demo's models


def plan_stages(stages: Sequence[str], n_patients: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The stages a cohort of ``n_patients`` can run, in order, and a note per stage left out
    (checked before the long work: a model stage needs a patient for every CV fold)."""
    unknown = set(stages) - set(DEMO_STAGES)
    if unknown:
        raise ValueError(f"unknown demo stages {sorted(unknown)}; choose from {DEMO_STAGES}")
    keep, notes = [], []
    for stage in DEMO_STAGES:
        if stage not in stages:
            continue
        if stage in ("tabular", "deep") and n_patients < DEMO_FOLDS:
            notes.append(f"{stage} models skipped: {n_patients} patients cannot fill "
                         f"{DEMO_FOLDS} cross-validation folds (use --patients {DEMO_FOLDS} "
                         "or more)")
            continue
        keep.append(stage)
    return tuple(keep), tuple(notes)


@dataclass(frozen=True)
class _ScanMeasure:
    scan_id: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    sha256: str
    rows: MeasureRows  # QCT, zones, patterns, mask QC
    radiomics: Any = None  # RadiomicsOutcome when the job asked for radiomics
    model_input: np.ndarray | None = None  # (K, 3, S, S) uint8 when the job asked for it


@dataclass(frozen=True)
class _DemoJob:
    """One synthetic scan for the demo's single pass over the volumes: QCT always; radiomics
    (with these parameters) and the deep models' input (K slices, S px) when asked."""

    row: dict[str, Any]
    radiomics_params: Any = None  # RadiomicsParams
    input_shape: tuple[int, int] | None = None


def _measure_synthetic(job: _DemoJob) -> _ScanMeasure:
    """Worker: regenerate one synthetic volume and segment its lungs once, then measure QCT,
    zones, patterns and mask QC (as the measure stage does) and, when the job asks, extract
    radiomics and sample the model input from the same voxels and mask (the same results as
    the radiomics stage and ``deep.inputs.model_inputs``, which would each regenerate and
    segment the volume again)."""
    row = job.row
    scan = scan_with_lungs_from_row(row, Path("."))  # synthetic: regenerated, no file read
    hu, lungs, spacing = scan.volume.hu, scan.lungs, scan.volume.spacing_mm
    rows = measure_rows(str(row["scan_id"]), measure_lungs(hu, lungs, spacing), lungs)
    rad = x = None
    if job.radiomics_params is not None:
        rad = extract_outcome(str(row["scan_id"]), hu, lungs.mask, spacing,
                              job.radiomics_params)
    if job.input_shape is not None:
        k, size = job.input_shape
        try:
            x = input_for_volume(hu, lungs.mask, k=k, size=size)
        except SscmortError:  # left out here; deep.inputs.model_inputs retries and reports it
            x = None
    return _ScanMeasure(row["scan_id"], tuple(int(s) for s in hu.shape), spacing,
                        array_sha256(hu), rows, rad, x)


def check_demo_target(path: Path) -> None:
    """Refuse a target that is a directory, unwritable, locked, or holds non-synthetic data."""
    if path.exists() and path.is_dir():
        raise StoreError("is a directory, not a store file", path)
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise StoreError(f"folder {parent} is not writable", path)
    if path.exists():
        with st_store.open_store(path) as existing:  # raises StoreLockedError if held
            counts = st_store.cohort_summary(existing)
        n_real = counts.patients - counts.synthetic_patients
        if n_real:
            raise StoreError(f"holds {n_real} non-synthetic patients; `demo` will not "
                             "replace it. Choose another --store path", path)





# ---------------------------------------------------------------------------------------------
# the build as steps, each recorded in the store when done (so an interrupted build resumes)
# ---------------------------------------------------------------------------------------------
PLAN_KEY, DONE_KEY = "demo_plan", "demo_done"  # meta: the planned steps; {step: seconds}


@dataclass(frozen=True)
class DemoPlan:
    """What a demo build makes: ``steps`` in order ("cohort", "scans", then "radiomics",
    "tabular:KIND" per tabular model, "deep:BACKBONE" per quick backbone, "evaluate"), and a
    note per optional stage left out."""

    patients: int
    seed: int
    steps: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def stages(self) -> tuple[str, ...]:
        """The optional stages (DEMO_STAGES) the steps come from."""
        return tuple(s for s in DEMO_STAGES
                     if any(step == s or step.startswith(s + ":") for step in self.steps))

    def to_json(self) -> str:
        return json.dumps({"patients": self.patients, "seed": self.seed,
                           "steps": list(self.steps), "notes": list(self.notes)})

    @staticmethod
    def from_json(text: str) -> DemoPlan:
        d = json.loads(text)
        return DemoPlan(int(d["patients"]), int(d["seed"]), tuple(d["steps"]),
                        tuple(d.get("notes", ())))


@dataclass(frozen=True)
class DemoState:
    """A store's demo build: its plan (None: no demo build was ever planned here; a store
    built before plans were recorded counts as complete) and the steps done, with seconds."""

    plan: DemoPlan | None
    done: dict[str, float]
    legacy_complete: bool = False

    @property
    def complete(self) -> bool:
        return self.legacy_complete or (self.plan is not None
                                        and all(s in self.done for s in self.plan.steps))

    @property
    def pending(self) -> tuple[str, ...]:
        if self.plan is None or self.complete:
            return ()
        return tuple(s for s in self.plan.steps if s not in self.done)


def demo_plan(n_patients: int = 600, seed: int = 0,
              stages: Sequence[str] = DEMO_STAGES) -> DemoPlan:
    """The steps of a demo build of ``n_patients`` (model stages the cohort cannot fill are
    left out with a note, before any long work)."""
    if n_patients < 1:
        raise DataError(f"--patients must be at least 1, got {n_patients}")
    kept, notes = plan_stages(stages, n_patients)
    steps = ["cohort", "scans"]
    if "radiomics" in kept:
        steps.append("radiomics")
    if "tabular" in kept:
        imaging = ("radiomics", "qct") if "radiomics" in kept else ("qct",)
        # clinical references and the longitudinal model on the same scans and folds
        steps += [f"tabular:{k}" for k in (*imaging, *REFERENCE_KINDS, *LONGITUDINAL_KINDS)]
    if "deep" in kept:
        steps += [f"deep:{b}" for b in UI_BACKBONES]
    if "evaluate" in kept:
        steps.append("evaluate")
    return DemoPlan(n_patients, seed, tuple(steps), notes)


def demo_state(store: st_store.Store) -> DemoState:
    plan_text = st_store.get_meta(store, PLAN_KEY)
    if plan_text is None:
        return DemoState(None, {}, legacy_complete=st_store.get_meta(store, "built_at")
                         is not None)
    done = json.loads(st_store.get_meta(store, DONE_KEY) or "{}")
    return DemoState(DemoPlan.from_json(plan_text), {k: float(v) for k, v in done.items()})


def record_plan(store: st_store.Store, plan: DemoPlan) -> None:
    """Start a demo build in an empty store: record its plan (no step done)."""
    counts = st_store.table_counts(store)
    if counts["patients"] or st_store.get_meta(store, PLAN_KEY) is not None:
        raise StoreError("already holds a cohort or a demo build; the demo starts only in an "
                         "empty store", store.path)
    with store.transaction() as cur:
        st_store.set_meta(cur, PLAN_KEY, plan.to_json())
        st_store.set_meta(cur, DONE_KEY, "{}")


StepFn = Callable[[str, str], None]  # (step, "start" | "done")


def run_demo_steps(store: st_store.Store, *, executor: Executor,
                   progress: ProgressFn = no_progress, models_dir: Path | None = None,
                   input_cache: Path | None = None, on_step: StepFn | None = None,
                   stop_after: str | None = None) -> tuple[str, ...]:
    """Run the steps of the store's demo plan that are not done yet, in order, recording each
    as done (with its seconds) when it is: the cohort and scans steps in the same transaction
    as their rows; the model steps after theirs (a step run again replaces its own rows).
    Returns the steps run. ``on_step(step, "start" | "done")`` follows them (the app's panel);
    ``stop_after`` ends the run after that step (a store built up to a step, for tests).
    """
    state = demo_state(store)
    if state.plan is None:
        raise StoreError("holds no demo plan", store.path)
    plan, ran, cohort = state.plan, [], None
    cache = input_cache or _input_cache(store.path)
    for step in state.pending:
        (on_step or _no_step)(step, "start")
        t0 = time.perf_counter()
        if step == "cohort":
            cohort = generate_cohort(n_patients=plan.patients, seed=plan.seed)
            progress("cohort", 0, 1)
            with store.transaction() as cur:
                _write_cohort(cur, cohort, plan.seed)
                _mark_done(store, cur, step, time.perf_counter() - t0)
            progress("cohort", 1, 1)
        elif step == "scans":
            cohort = cohort or generate_cohort(n_patients=plan.patients, seed=plan.seed)
            _scans_step(store, cohort, plan, executor, progress, cache, t0)
        else:
            _model_step(store, step, executor, plan.seed, models_dir, progress, cache)
            with store.transaction() as cur:
                _mark_done(store, cur, step, time.perf_counter() - t0)
        ran.append(step)
        (on_step or _no_step)(step, "done")
        if step == stop_after:
            break
    return tuple(ran)


def _no_step(step: str, what: str) -> None:
    pass


def _mark_done(store: st_store.Store, cur: Any, step: str, seconds: float) -> None:
    done = json.loads(st_store.get_meta(store, DONE_KEY) or "{}")
    done[step] = round(seconds, 2)
    st_store.set_meta(cur, DONE_KEY, json.dumps(done))


def _input_cache(path: Path) -> Path:
    """The quick profile's model-input cache of the store at ``path`` (beside its file)."""
    return Path(path).parent / f"{Path(path).stem}_files" / "model_inputs"


def build_demo(path: str | Path, *, n_patients: int = 600, seed: int = 0,
               workers: int | None = None, progress: ProgressFn = no_progress,
               stages: Sequence[str] = DEMO_STAGES, models_dir: Path | None = None,
               executor: Executor | None = None) -> DemoSummary:
    """Build the synthetic demo store at ``path`` (replacing an earlier synthetic one).

    Always: cohort, volumes, lungs and QCT. Then the optional ``stages`` in order: radiomics
    extraction, radiomics and QCT models (with SHAP), the quick profile of the three deep
    backbones, and the evaluation of every model. Everything is written to a temporary file
    next to ``path`` and moved into place only when every stage succeeded, so a failure leaves
    no partial store behind (the app's background build, :mod:`.demo_job`, writes the same
    steps into its open store instead). Per-scan work runs on ``executor`` (default:
    ``workers`` local processes, all cores when None); a scan whose worker keeps dying fails
    the build.
    """
    t0 = time.perf_counter()
    path = Path(path)
    plan = demo_plan(n_patients, seed, stages)
    check_demo_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.building-{os.getpid()}")
    _remove_store_files(tmp)
    try:
        ex = executor or LocalExecutor(workers or default_workers())
        with st_store.open_store(tmp) as store:
            record_plan(store, plan)
            run_demo_steps(store, executor=ex, progress=progress, models_dir=models_dir,
                           input_cache=_input_cache(path))
            summary = dataclasses.replace(
                _demo_summary(store, path, time.perf_counter() - t0), notes=plan.notes)
        _remove_store_files(path)
        st_store.archive_journal(path)  # the old store's audit journal stays, beside the new
        os.replace(tmp, path)
    except BaseException:
        _remove_store_files(tmp)
        raise
    return summary


def _scans_step(store: st_store.Store, cohort: Any, plan: DemoPlan, ex: Executor,
                progress: ProgressFn, input_cache: Path, t0: float) -> None:
    """The single pass over the volumes (QCT, zones, patterns, mask QC; radiomics and the
    model inputs when their stages are planned), written in one transaction with the scans'
    grid and hashes."""
    jobs, label = _demo_jobs(cohort.scans.to_dict(orient="records"), plan.stages)
    measures, inputs, ok = _measure_all(jobs, ex, progress, label)
    if inputs is not None:
        keep = [m for m, good in zip(measures, ok) if good]
        write_model_inputs(input_cache, scan_ids=[m.scan_id for m in keep],
                           volume_sha256=[m.sha256 for m in keep], x=inputs[ok])
    progress("store", 0, 1)
    with store.transaction() as cur:
        st_store.set_scan_geometry(cur, _geometry(measures))
        write_measures(cur, [m.rows for m in measures])
        if jobs and jobs[0].radiomics_params is not None:
            write_outcomes(cur, [m.radiomics for m in measures],
                           jobs[0].radiomics_params.param_hash)
        _mark_done(store, cur, "scans", time.perf_counter() - t0)
    progress("store", 1, 1)


def _demo_jobs(rows: list[dict[str, Any]], stages: Sequence[str]
               ) -> tuple[list[_DemoJob], str]:
    """The single pass's jobs and its progress label: radiomics and the quick profile's model
    inputs ride along when their stages will run."""
    params = shape = None
    label = "volumes + lungs + QCT"  # QCT here: whole lung, zones, patterns and mask QC
    if "radiomics" in stages:
        params = load_params()
        label += " + radiomics"
    if "deep" in stages:
        shape = quick_input_shape()
        label += " + model inputs"
    return [_DemoJob(r, params, shape) for r in rows], label


def _measure_all(jobs: list[_DemoJob], ex: Executor, progress: ProgressFn, stage: str
                 ) -> tuple[list[_ScanMeasure], np.ndarray | None, np.ndarray]:
    """Run the pass; model inputs are moved into one (N, K, 3, S, S) array as they arrive
    (``ok``: which rows hold one)."""
    measures: list[_ScanMeasure] = []
    inputs, ok = None, np.zeros(len(jobs), bool)
    for i, m in enumerate(ex.map(_measure_synthetic, jobs, progress, stage)):
        if m.model_input is not None:
            if inputs is None:
                inputs = np.empty((len(jobs), *m.model_input.shape), np.uint8)
            inputs[i], ok[i] = m.model_input, True
            m = dataclasses.replace(m, model_input=None)
        measures.append(m)
    return measures, inputs, ok


def _model_step(store: st_store.Store, step: str, ex: Executor, seed: int,
                models_dir: Path | None, progress: ProgressFn, input_cache: Path) -> None:
    """One model step of the plan: "radiomics" (features the pass did not extract),
    "tabular:KIND", "deep:BACKBONE" (quick profile) or "evaluate" (every model)."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    kind, _, name = step.partition(":")
    if kind == "radiomics":
        run_radiomics_stage(store, progress=progress, executor=ex)
    elif kind == "tabular":
        train_tabular(store, name, models_dir=models_dir, seed=seed, progress=progress)
    elif kind == "deep":
        from sscmort_core.deep.train import train_quick_backbones  # heavy: torch

        # the cache belongs to the final store's folder, not the temporary build file's
        train_quick_backbones(store, models_dir=models_dir, progress=progress, seed=seed,
                              workers=ex.workers, cache_dir=input_cache, executor=ex,
                              backbones=(name,))
    elif kind == "evaluate":
        run_evaluation(store, seed=seed, progress=progress)
    else:
        raise ValueError(f"unknown demo step {step!r}")


def _remove_store_files(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            p.unlink()


def _geometry(measures: list[_ScanMeasure]) -> pd.DataFrame:
    return pd.DataFrame([{
        "scan_id": m.scan_id, "shape_z": m.shape[0], "shape_y": m.shape[1],
        "shape_x": m.shape[2], "spacing_z_mm": m.spacing_mm[0],
        "spacing_y_mm": m.spacing_mm[1], "spacing_x_mm": m.spacing_mm[2],
        "volume_sha256": m.sha256, "voxel_sha256": m.sha256} for m in measures])


def _write_cohort(cur: Any, cohort: Any, seed: int) -> None:
    """Patients, scans (their grid and hashes come with the scans step), synthetic truth,
    clinical measurements and the oracle, with ``cur`` (the caller's transaction)."""
    pts = cohort.patients.copy()
    pts["source"], pts["synthetic"] = "synthetic", True
    scans = cohort.scans.copy()
    for col in st_store.GEOMETRY_COLUMNS:
        scans[col] = None
    scans["series_description"] = "SYNTHETIC CHEST CT"
    scans["volume_path"] = None
    scans["source"], scans["synthetic"] = "synthetic", True
    truth = scans  # progressor and emphysema_pct come with the cohort's scan rows
    clinical = cohort.clinical.copy()
    clinical["source"], clinical["synthetic"] = "synthetic", True
    st_store.insert_frame(cur, "patients", pts)
    st_store.set_patient_history(cur, pts)
    st_store.insert_frame(cur, "scans", scans)
    st_store.insert_frame(cur, "synthetic_truth", truth)
    st_store.insert_frame(cur, "clinical", clinical)
    _register_oracle(cur, truth, seed)
    st_store.set_meta(cur, "demo_seed", str(seed))
    st_store.set_meta(cur, "built_at", dt.datetime.now().isoformat(timespec="seconds"))


ORACLE_MODEL_ID = "oracle"
IMAGING_ORACLE_MODEL_ID = "oracle_imaging"


def _oracle_card(model_id: str, label: str, conditions: tuple[str, ...],
                 integrates: tuple[str, ...], description: str) -> ModelCard:
    return ModelCard(
        model_id=model_id, kind="oracle", version=ORACLE_VERSION, synthetic=True, label=label,
        description=description, features=conditions,
        notes=(("Not a model: the generator's own probability; needs no training and is "
                "scored on every labelled scan (no folds)."),),
        extra={"conditions_on": list(conditions), "integrates_over": list(integrates),
               "settings": {"risk": "nothing fitted or chosen: the generator's own "
                                    "probability (fixed before looking)"}})


def _register_oracle(cur: Any, truth: pd.DataFrame, seed: int) -> None:
    """The generator's two oracles as reference "models" (kind "oracle"), registered like any
    model so every page can compare with them: the honest oracle (risk given everything
    knowable at the scan) and the imaging-only oracle (risk given what the CT draws)."""
    cards = (
        (ORACLE_MODEL_ID, "true_risk", _oracle_card(
            ORACLE_MODEL_ID, "Oracle (risk given what is knowable at the scan; ceiling)",
            HONEST_CONDITIONS, HONEST_INTEGRATES,
            "Probability of death within 1/3/5 years of each synthetic scan under the "
            "generator's hazard, given everything knowable at the scan and integrated over "
            "the unmeasured frailty and future acute deteriorations. The ceiling any model "
            "of this cohort could reach.")),
        (IMAGING_ORACLE_MODEL_ID, "imaging_risk", _oracle_card(
            IMAGING_ORACLE_MODEL_ID, "Imaging-only oracle (risk given the CT's drivers; "
            "imaging ceiling)", IMAGING_CONDITIONS, IMAGING_INTEGRATES,
            "Probability of death within 1/3/5 years given only what the synthetic CT "
            "draws (ILD extent, dense fibrosis, emphysema), everything else integrated out. "
            "The ceiling any imaging-only model of this cohort could reach.")))
    for model_id, column, card in cards:
        st_store.upsert_model(
            cur, model_id=model_id, kind="oracle", backbone=None, version=ORACLE_VERSION,
            config={"source": "synthetic generator hazard", "seed": seed, "column": column},
            data_hash=None, weights_path=None, weights_sha256=None, card=card.to_json(),
            synthetic=True)
        rows = [pd.DataFrame({"model_id": model_id, "scan_id": truth["scan_id"],
                              "horizon_years": h, "risk": truth[f"{column}_{h}y"],
                              "fold": None, "split": "oof"}) for h in HORIZONS_YEARS]
        st_store.insert_frame(cur, "predictions", pd.concat(rows, ignore_index=True))


def _demo_summary(store: st_store.Store, path: Path, seconds: float) -> DemoSummary:
    scans = st_store.scans_frame(store)
    positives, censored = {}, {}
    for h in HORIZONS_YEARS:
        lab = label_scans(scans["scan_date"], scans["death_date"], scans["last_followup_date"], h)
        positives[str(h)] = lab.n_positive
        censored[str(h)] = lab.n_censored
    counts = st_store.table_counts(store)
    return DemoSummary(patients=counts["patients"], scans=counts["scans"], positives=positives,
                       censored=censored, qct_scans=counts["qct"],
                       synthetic=st_store.is_synthetic(store), store=str(path), seconds=seconds)
