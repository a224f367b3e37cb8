"""The synthetic demo store: cohort -> volumes -> lungs -> QCT, zones, patterns and mask QC
(+ radiomics and model inputs in the same pass) -> radiomics / QCT models -> quick deep
backbones -> evaluation.

Heavy per-scan work runs in worker processes that never touch the store; the calling process
writes results in transactions, to a temporary file moved into place only when every stage
succeeded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.cards import ModelCard
from sscmort_core.deep.config import quick_input_shape
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
from sscmort_core.tabular.model import REFERENCE_KINDS
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





def build_demo(path: str | Path, *, n_patients: int = 600, seed: int = 0,
               workers: int | None = None, progress: ProgressFn = no_progress,
               stages: Sequence[str] = DEMO_STAGES, models_dir: Path | None = None,
               executor: Executor | None = None) -> DemoSummary:
    """Build the synthetic demo store at ``path`` (replacing an earlier synthetic one).

    Always: cohort, volumes, lungs and QCT. Then the optional ``stages`` in order: radiomics
    extraction, radiomics and QCT models (with SHAP), the quick profile of the three deep
    backbones, and the evaluation of every model. Everything is written to a temporary file
    next to ``path`` and moved into place only when every stage succeeded, so a failure leaves
    no partial store behind. Per-scan work runs on ``executor`` (default: ``workers`` local
    processes, all cores when None); a scan whose worker keeps dying fails the build.
    """
    t0 = time.perf_counter()
    path = Path(path)
    if n_patients < 1:
        raise DataError(f"--patients must be at least 1, got {n_patients}")
    check_demo_target(path)
    stages, notes = plan_stages(stages, n_patients)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.building-{os.getpid()}")
    _remove_store_files(tmp)
    try:
        progress("cohort", 0, 1)
        cohort = generate_cohort(n_patients=n_patients, seed=seed)
        progress("cohort", 1, 1)
        input_cache = path.parent / f"{path.stem}_files" / "model_inputs"
        jobs, stage = _demo_jobs(cohort.scans.to_dict(orient="records"), stages)
        ex = executor or LocalExecutor(workers or default_workers())
        measures, inputs, ok = _measure_all(jobs, ex, progress, stage)
        with st_store.open_store(tmp) as store:
            progress("store", 0, 1)
            _write_demo(store, cohort, measures, seed)
            if jobs and jobs[0].radiomics_params is not None:
                with store.transaction() as cur:
                    write_outcomes(cur, [m.radiomics for m in measures],
                                   jobs[0].radiomics_params.param_hash)
            if inputs is not None:
                keep = [m for m, good in zip(measures, ok) if good]
                write_model_inputs(input_cache, scan_ids=[m.scan_id for m in keep],
                                   volume_sha256=[m.sha256 for m in keep], x=inputs[ok])
            progress("store", 1, 1)
            _model_stages(store, stages, ex, seed, models_dir, progress, input_cache)
            summary = dataclasses.replace(
                _demo_summary(store, path, time.perf_counter() - t0), notes=notes)
        _remove_store_files(path)
        st_store.archive_journal(path)  # the old store's audit journal stays, beside the new
        os.replace(tmp, path)
    except BaseException:
        _remove_store_files(tmp)
        raise
    return summary


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


def _model_stages(store: st_store.Store, stages: Sequence[str], ex: Executor, seed: int,
                  models_dir: Path | None, progress: ProgressFn, input_cache: Path) -> None:
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    if "radiomics" in stages:
        run_radiomics_stage(store, progress=progress, executor=ex)
    if "tabular" in stages:
        imaging = ("radiomics", "qct") if "radiomics" in stages else ("qct",)
        for kind in (*imaging, *REFERENCE_KINDS):  # clinical references on the same scans
            train_tabular(store, kind, models_dir=models_dir, seed=seed, progress=progress)
    if "deep" in stages:
        from sscmort_core.deep.train import train_quick_backbones  # heavy: torch

        # the cache belongs to the final store's folder, not the temporary build file's
        train_quick_backbones(store, models_dir=models_dir, progress=progress, seed=seed,
                              workers=ex.workers, cache_dir=input_cache, executor=ex)
    if "evaluate" in stages:
        run_evaluation(store, seed=seed, progress=progress)


def _remove_store_files(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            p.unlink()


def _write_demo(store: st_store.Store, cohort: Any, measures: list[_ScanMeasure],
                seed: int) -> None:
    pts = cohort.patients.copy()
    pts["source"], pts["synthetic"] = "synthetic", True
    scans = cohort.scans.copy()
    geo = pd.DataFrame([{
        "scan_id": m.scan_id, "shape_z": m.shape[0], "shape_y": m.shape[1],
        "shape_x": m.shape[2], "spacing_z_mm": m.spacing_mm[0],
        "spacing_y_mm": m.spacing_mm[1], "spacing_x_mm": m.spacing_mm[2],
        "volume_sha256": m.sha256, "voxel_sha256": m.sha256} for m in measures])
    scans = scans.merge(geo, on="scan_id", how="left", validate="one_to_one")
    scans["series_description"] = "SYNTHETIC CHEST CT"
    scans["volume_path"] = None
    scans["source"], scans["synthetic"] = "synthetic", True
    truth = scans  # progressor and emphysema_pct come with the cohort's scan rows
    clinical = cohort.clinical.copy()
    clinical["source"], clinical["synthetic"] = "synthetic", True
    with store.transaction() as cur:
        st_store.insert_frame(cur, "patients", pts)
        st_store.set_patient_history(cur, pts)
        st_store.insert_frame(cur, "scans", scans)
        st_store.insert_frame(cur, "synthetic_truth", truth)
        st_store.insert_frame(cur, "clinical", clinical)
        write_measures(cur, [m.rows for m in measures])
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
        extra={"conditions_on": list(conditions), "integrates_over": list(integrates)})


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
