"""The one place that chains the stages (DESIGN.md): pages, CLI and jobs call only this.

read -> validate -> de-identify -> lungs -> QCT -> (later: radiomics -> predict -> explain)
-> store. Heavy per-scan work runs in worker processes that never touch the store; the
calling process writes results in transactions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.errors import DataError, SscmortError, StoreError
from sscmort_core.labels import HORIZONS_YEARS, label_scans
from sscmort_core.lungs import QCTMetrics, qct_metrics, segment_lungs
from sscmort_core.registry import file_sha256

QCT_METHOD_VERSION = "qct-1"
ProgressFn = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------
# volumes of stored scans
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanVolume:
    """A scan's voxels as the store knows them. hu: (z, y, x) HU; spacing_mm: (z, y, x)."""

    scan_id: str
    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    synthetic: bool
    true_lung_mask: np.ndarray | None = None  # generator truth (synthetic scans only)
    true_ild_mask: np.ndarray | None = None


def array_sha256(hu: np.ndarray) -> str:
    """sha256 of a volume's int16 voxels in C order (how regenerated volumes are checked)."""
    return hashlib.sha256(np.ascontiguousarray(hu, dtype=np.int16).tobytes()).hexdigest()


def _phantom_from_row(row: Mapping[str, Any]):
    from sscmort_core.synthetic.phantom import phantom_for_scan

    return phantom_for_scan(row)


def load_scan_volume(store: st_store.Store, scan_id: str) -> ScanVolume:
    """Load (stored file) or regenerate (synthetic, from its seed) a scan's volume.

    The sha256 recorded at ingest is checked; a mismatch is a StoreError, never silent.
    """
    row = st_store.scan_row(store, scan_id)
    if row is None:
        raise StoreError(f"no scan {scan_id!r} in the store", store.path)
    return volume_from_row(row, store.data_dir)


def volume_from_row(row: Mapping[str, Any], data_dir: Path) -> ScanVolume:
    """The volume of one scans-table row, without touching the store (safe in workers).

    ``row`` needs the scans columns (and, for synthetic scans, true_ild_extent_pct from
    synthetic_truth, as :func:`sscmort_core.store.scan_rows` returns); ``data_dir`` is
    ``Store.data_dir``.
    """
    scan_id = str(row["scan_id"])
    if row.get("volume_path"):
        from sscmort_core.imaging import load_stored_volume

        path = Path(data_dir) / str(row["volume_path"])
        if not path.exists():
            raise StoreError("stored volume file is missing", path)
        if row.get("volume_sha256") and file_sha256(path) != row["volume_sha256"]:
            raise StoreError("stored volume does not match its recorded sha256", path)
        hu, spacing = load_stored_volume(path)
        return ScanVolume(scan_id, hu, spacing, bool(row["synthetic"]))
    phantom = _phantom_from_row(row)
    if row.get("volume_sha256") and array_sha256(phantom.hu) != row["volume_sha256"]:
        raise StoreError(f"regenerated volume of {scan_id} does not match its recorded sha256 "
                         "(generator or numpy version changed); rebuild with `sscmort demo`",
                         data_dir)
    return ScanVolume(scan_id, phantom.hu, tuple(phantom.spacing_mm), True,
                      phantom.lung_mask, phantom.ild_mask)


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

    def to_json(self) -> dict[str, Any]:
        return {"patients": self.patients, "scans": self.scans, "positives": self.positives,
                "censored": self.censored, "qct_scans": self.qct_scans,
                "synthetic": self.synthetic, "store": self.store,
                "seconds": round(self.seconds, 1)}


@dataclass(frozen=True)
class _ScanMeasure:
    scan_id: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    sha256: str
    qct: QCTMetrics
    left_volume_ml: float
    right_volume_ml: float
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
    """Worker: regenerate one synthetic volume and segment its lungs once, then measure QCT
    and, when the job asks, extract radiomics and sample the model input from the same voxels
    and mask (the same results as the radiomics stage and ``dataset.model_inputs``, which would
    each regenerate and segment the volume again)."""
    row = job.row
    phantom = _phantom_from_row(row)
    spacing = tuple(float(s) for s in phantom.spacing_mm)
    lungs = segment_lungs(phantom.hu, spacing)
    q = qct_metrics(phantom.hu, lungs.mask, spacing)
    rad = x = None
    if job.radiomics_params is not None:
        from sscmort_core.radiomics import extract_outcome

        rad = extract_outcome(str(row["scan_id"]), phantom.hu, lungs.mask, spacing,
                              job.radiomics_params)
    if job.input_shape is not None:
        from sscmort_core.dataset import input_for_volume

        k, size = job.input_shape
        try:
            x = input_for_volume(phantom.hu, lungs.mask, k=k, size=size)
        except SscmortError:  # left out here; dataset.model_inputs retries and reports it
            x = None
    return _ScanMeasure(row["scan_id"], tuple(int(s) for s in phantom.hu.shape), spacing,
                        array_sha256(phantom.hu), q, float(lungs.left_volume_ml),
                        float(lungs.right_volume_ml), rad, x)


def _pool_context() -> Any:
    """forkserver where available: safe from a multi-threaded parent (the app's job threads,
    torch's thread pools); spawn elsewhere."""
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _worker_init() -> None:
    """Pool initialiser: one SimpleITK thread per worker process (SimpleITK would otherwise
    start a thread per core in every worker, oversubscribing the cores the pool fills)."""
    try:
        import SimpleITK as sitk
    except ImportError:  # nothing to limit (an initialiser error would break the whole pool)
        return
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def map_in_workers(fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                   progress: ProgressFn, stage: str) -> Iterator[Any]:
    """``fn`` over ``items`` in order, in ``workers`` processes (in-process when workers <= 1);
    the workers never touch the store, the caller writes what they return."""
    total = len(items)
    progress(stage, 0, total)
    if workers <= 1 or total <= 1:
        for i, item in enumerate(items, 1):
            yield fn(item)
            progress(stage, i, total)
        return
    chunk = max(1, min(16, total // (workers * 8) or 1))
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                             initializer=_worker_init) as pool:
        for i, result in enumerate(pool.map(fn, items, chunksize=chunk), 1):
            yield result
            progress(stage, i, total)


def check_demo_target(path: Path) -> None:
    """Refuse a target that is a directory, unwritable, locked, or holds non-synthetic data."""
    if path.exists() and path.is_dir():
        raise StoreError("is a directory, not a store file", path)
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise StoreError(f"folder {parent} is not writable", path)
    if path.exists():
        with st_store.open_store(path) as existing:  # raises StoreLockedError if held
            n_real = existing.cursor().execute(
                "SELECT count(*) FROM patients WHERE NOT synthetic").fetchone()[0]
        if n_real:
            raise StoreError(f"holds {n_real} non-synthetic patients; `demo` will not "
                             "replace it. Choose another --store path", path)


DEMO_STAGES = ("radiomics", "tabular", "deep", "evaluate")


def build_demo(path: str | Path, *, n_patients: int = 600, seed: int = 0,
               workers: int | None = None, progress: ProgressFn = _no_progress,
               stages: Sequence[str] = DEMO_STAGES, models_dir: Path | None = None
               ) -> DemoSummary:
    """Build the synthetic demo store at ``path`` (replacing an earlier synthetic one).

    Always: cohort, volumes, lungs and QCT. Then the optional ``stages`` in order: radiomics
    extraction, radiomics and QCT models (with SHAP), the quick profile of the three deep
    backbones, and the evaluation of every model. Everything is written to a temporary file
    next to ``path`` and moved into place only when every stage succeeded, so a failure leaves
    no partial store behind.
    """
    import time

    from sscmort_core.synthetic.cohort import generate_cohort

    t0 = time.perf_counter()
    path = Path(path)
    if n_patients < 1:
        raise DataError(f"--patients must be at least 1, got {n_patients}")
    check_demo_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.building-{os.getpid()}")
    _remove_store_files(tmp)
    try:
        progress("cohort", 0, 1)
        cohort = generate_cohort(n_patients=n_patients, seed=seed)
        progress("cohort", 1, 1)
        input_cache = path.parent / f"{path.stem}_files" / "model_inputs"
        jobs, stage = _demo_jobs(cohort.scans.to_dict(orient="records"), stages)
        measures, inputs, ok = _measure_all(jobs, workers or default_workers(), progress,
                                            stage)
        with st_store.open_store(tmp) as store:
            progress("store", 0, 1)
            _write_demo(store, cohort, measures, seed)
            if jobs and jobs[0].radiomics_params is not None:
                from sscmort_core.radiomics import write_outcomes

                with store.transaction() as cur:
                    write_outcomes(cur, [m.radiomics for m in measures],
                                   jobs[0].radiomics_params.param_hash)
            if inputs is not None:
                from sscmort_core.dataset import write_model_inputs

                keep = [m for m, good in zip(measures, ok) if good]
                write_model_inputs(input_cache, scan_ids=[m.scan_id for m in keep],
                                   volume_sha256=[m.sha256 for m in keep], x=inputs[ok])
            progress("store", 1, 1)
            _model_stages(store, stages, workers or default_workers(), seed, models_dir,
                          progress, input_cache)
            summary = _demo_summary(store, path, time.perf_counter() - t0)
        _remove_store_files(path)
        os.replace(tmp, path)
    except BaseException:
        _remove_store_files(tmp)
        raise
    return summary


def _demo_jobs(rows: list[dict[str, Any]], stages: Sequence[str]
               ) -> tuple[list[_DemoJob], str]:
    """The single pass's jobs and its progress label: radiomics and the quick profile's model
    inputs ride along when their stages will run."""
    unknown = set(stages) - set(DEMO_STAGES)
    if unknown:
        raise ValueError(f"unknown demo stages {sorted(unknown)}; choose from {DEMO_STAGES}")
    params = shape = None
    label = "volumes + lungs + QCT"
    if "radiomics" in stages:
        from sscmort_core.radiomics import load_params

        params = load_params()
        label += " + radiomics"
    if "deep" in stages:
        from sscmort_core.train import quick_input_shape

        shape = quick_input_shape()
        label += " + model inputs"
    return [_DemoJob(r, params, shape) for r in rows], label


def _measure_all(jobs: list[_DemoJob], workers: int, progress: ProgressFn, stage: str
                 ) -> tuple[list[_ScanMeasure], np.ndarray | None, np.ndarray]:
    """Run the pass; model inputs are moved into one (N, K, 3, S, S) array as they arrive
    (``ok``: which rows hold one)."""
    measures: list[_ScanMeasure] = []
    inputs, ok = None, np.zeros(len(jobs), bool)
    for i, m in enumerate(map_in_workers(_measure_synthetic, jobs, workers, progress, stage)):
        if m.model_input is not None:
            if inputs is None:
                inputs = np.empty((len(jobs), *m.model_input.shape), np.uint8)
            inputs[i], ok[i] = m.model_input, True
            m = dataclasses.replace(m, model_input=None)
        measures.append(m)
    return measures, inputs, ok


def _model_stages(store: st_store.Store, stages: Sequence[str], workers: int, seed: int,
                  models_dir: Path | None, progress: ProgressFn, input_cache: Path) -> None:
    from sscmort_core.registry import default_models_dir

    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    if "radiomics" in stages:
        from sscmort_core.radiomics import run_radiomics_stage

        run_radiomics_stage(store, workers=workers, progress=progress)
    if "tabular" in stages:
        from sscmort_core.tabular import train_tabular

        for kind in (("radiomics", "qct") if "radiomics" in stages else ("qct",)):
            train_tabular(store, kind, models_dir=models_dir, seed=seed, progress=progress)
    if "deep" in stages:
        from sscmort_core.train import train_quick_backbones

        # the cache belongs to the final store's folder, not the temporary build file's
        train_quick_backbones(store, models_dir=models_dir, progress=progress, seed=seed,
                              workers=workers, cache_dir=input_cache)
    if "evaluate" in stages:
        from sscmort_core.evaluate_store import run_evaluation

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
    truth = scans.merge(pts[["patient_id", "progressor"]], on="patient_id")
    clinical = cohort.clinical.copy()
    clinical["source"], clinical["synthetic"] = "synthetic", True
    qct = pd.DataFrame([{**m.qct.to_dict(), "scan_id": m.scan_id,
                         "left_volume_ml": m.left_volume_ml,
                         "right_volume_ml": m.right_volume_ml,
                         "method_version": QCT_METHOD_VERSION} for m in measures])
    with store.transaction() as cur:
        st_store.insert_frame(cur, "patients", pts)
        st_store.insert_frame(cur, "scans", scans)
        st_store.insert_frame(cur, "synthetic_truth", truth)
        st_store.insert_frame(cur, "clinical", clinical)
        st_store.insert_frame(cur, "qct", qct)
        _register_oracle(cur, truth, seed)
        st_store.set_meta(cur, "demo_seed", str(seed))
        st_store.set_meta(cur, "built_at", dt.datetime.now().isoformat(timespec="seconds"))


ORACLE_MODEL_ID = "oracle"


def _register_oracle(cur: Any, truth: pd.DataFrame, seed: int) -> None:
    """The generator's true risks as a reference "model": the best AUC any model could reach
    on this synthetic cohort. Registered like any model so every page can compare with it."""
    st_store.upsert_model(
        cur, model_id=ORACLE_MODEL_ID, kind="oracle", backbone=None, version="1",
        config={"source": "synthetic generator hazard", "seed": seed}, data_hash=None,
        weights_path=None, weights_sha256=None,
        card={"kind": "oracle", "label": "Oracle (generator's true risk; achievable ceiling)",
              "description": "True 1/3/5-year risk of each synthetic scan under the generator's "
                             "own hazard. Not a model: the ceiling any model could reach.",
              "synthetic": True}, synthetic=True)
    rows = []
    for h in HORIZONS_YEARS:
        rows.append(pd.DataFrame({"model_id": ORACLE_MODEL_ID, "scan_id": truth["scan_id"],
                                  "horizon_years": h, "risk": truth[f"true_risk_{h}y"],
                                  "fold": None, "split": "oof"}))
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
