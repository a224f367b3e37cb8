"""Batch prediction over the store (``sscmort predict --all-scans``): the risks of every stored
scan from every registered model, written to ``predictions`` with split ``'inference'``.

These are the registered models' predictions (the fold ensemble for deep models, the model
fitted on every scan for radiomics / QCT models), so for scans a model was trained on they are
in-sample: metrics and every page use split ``'oof'`` only, never these. Their use is scoring
a registry (new scans, other sites) with the models as registered.

* Radiomics and QCT models score the features already in the store (radiomics features of the
  model's parameter hash; QCT metrics) in chunks in this process: a matrix product per chunk,
  no per-scan work to distribute.
* Deep models run on the executor: a per-scan prepare task (row -> model inputs) and batches
  of prepared scans scored by model holders (Ray actors, one per GPU, or this process on the
  local executor).

This process alone writes, one transaction per :data:`WRITE_BATCH_SCANS` scans as results
arrive; a scan a model could not score is recorded in ``prediction_failures`` with the reason
(cleared when a later run scores it). A rerun skips (model, scan) pairs that already have their
predictions, so an interrupted run resumes; re-registering a model clears its predictions.
The oracle (the generator's truth) and the deep ensemble mean are not models of the registry
and are not written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.cards import default_models_dir
from sscmort_core.deep.batch import (
    DeepBatchModels,
    ScanRisks,
    model_shapes,
    prepare_scan,
    scan_jobs,
)
from sscmort_core.errors import ModelError
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.tabular.io import load_model, tabular_model_ids
from sscmort_core.tabular.model import predict_matrix
from sscmort_core.util.executors import Executor, LocalExecutor
from sscmort_core.util.progress import ProgressFn, no_progress, offset_progress

SPLIT = "inference"
WRITE_BATCH_SCANS = 64
TABULAR_CHUNK_SCANS = 1000
ROW_CHUNK = 2000  # scan rows read (and handed to the executor) at a time
STAGE_TABULAR = "batch predict: radiomics / QCT models"
STAGE_DEEP = "batch predict: deep models"


@dataclass(frozen=True)
class PredictFailure:
    model_id: str
    scan_id: str
    reason: str


@dataclass(frozen=True)
class BatchPredictResult:
    """What one run of :func:`predict_all_scans` did (counts are (model, scan) pairs)."""

    split: str
    n_scans: int
    models: tuple[str, ...]
    n_written: int
    n_skipped: int  # already predicted by an earlier run
    failures: tuple[PredictFailure, ...]
    problems: tuple[tuple[str, str], ...]  # (model_id, reason): model not usable at all
    executor: Mapping[str, Any]
    devices: tuple[str, ...]  # where the deep models ran
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "scans": self.n_scans, "models": list(self.models),
                "written": self.n_written, "skipped": self.n_skipped,
                "failed": len(self.failures),
                "failures": [{"model_id": f.model_id, "scan_id": f.scan_id, "reason": f.reason}
                             for f in self.failures],
                "problems": [{"model_id": m, "reason": r} for m, r in self.problems],
                "executor": dict(self.executor), "devices": list(self.devices),
                "seconds": round(self.seconds, 2), "research_use_only": True}


class _Writer:
    """Buffers prediction rows and failures; one transaction per flush."""

    def __init__(self, store: st_store.Store) -> None:
        self.store = store
        self.rows: list[tuple[str, str, np.ndarray]] = []  # (model, scan, (3,) risks)
        self.failed: list[PredictFailure] = []
        self.all_failures: list[PredictFailure] = []
        self.n_written = 0
        self.scans = 0

    def add(self, model_id: str, scan_id: str, risks: Sequence[float]) -> None:
        self.rows.append((model_id, scan_id, np.asarray(risks, dtype=np.float64)))

    def fail(self, model_id: str, scan_id: str, reason: str) -> None:
        self.failed.append(PredictFailure(model_id, scan_id, reason))

    def scan_done(self) -> None:
        self.scans += 1
        if self.scans % WRITE_BATCH_SCANS == 0:
            self.flush()

    def flush(self) -> None:
        if not (self.rows or self.failed):
            return
        frame = pd.DataFrame({
            "model_id": [m for m, _, _ in self.rows for _ in HORIZONS_YEARS],
            "scan_id": [s for _, s, _ in self.rows for _ in HORIZONS_YEARS],
            "horizon_years": [h for _ in self.rows for h in HORIZONS_YEARS],
            "risk": np.concatenate([r for _, _, r in self.rows]) if self.rows else [],
            "fold": None, "split": SPLIT})
        with self.store.transaction() as cur:
            st_store.insert_frame(cur, "predictions", frame, replace=True)
            st_store.clear_prediction_failures(cur, [(m, s) for m, s, _ in self.rows], SPLIT)
            st_store.record_prediction_failures(
                cur, [(f.model_id, f.scan_id, f.reason) for f in self.failed], SPLIT)
        self.n_written += len(self.rows)
        self.all_failures.extend(self.failed)
        self.rows, self.failed = [], []


def predict_all_scans(store: st_store.Store, *, executor: Executor | None = None,
                      workers: int | None = None, models_dir: Path | None = None,
                      device: str = "auto", precision: str = "bf16", batch_size: int = 16,
                      progress: ProgressFn = no_progress,
                      scan_ids: Sequence[str] | None = None) -> BatchPredictResult:
    """Predictions of every stored scan (or ``scan_ids``) from every registered radiomics,
    QCT and deep model, into ``predictions`` with split :data:`SPLIT` (see the module
    docstring). Deep models run on ``executor`` (default: ``workers`` local processes for the
    inputs, this process for the models) in batches of ``batch_size`` scans."""
    t0 = time.perf_counter()
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    ex = executor or LocalExecutor(workers)
    ids = st_store.scan_id_list(store, scan_ids)
    writer = _Writer(store)
    problems: list[tuple[str, str]] = []
    chosen: list[str] = []
    skipped = 0
    try:
        n, used = _tabular(store, ids, models_dir, writer, problems, progress)
        skipped += n
        chosen += used
        n, used, devices = _deep(store, ids, ex, models_dir, device, precision, batch_size,
                                 writer, problems, progress)
        skipped += n
        chosen += used
    finally:
        writer.flush()
    return BatchPredictResult(
        split=SPLIT, n_scans=len(ids), models=tuple(chosen), n_written=writer.n_written,
        n_skipped=skipped, failures=tuple(writer.all_failures), problems=tuple(problems),
        executor=ex.describe(), devices=devices, seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# radiomics and QCT models: features from the store, in chunks
# ---------------------------------------------------------------------------------------------
def _tabular(store: st_store.Store, ids: Sequence[str], models_dir: Path,
             writer: _Writer, problems: list[tuple[str, str]], progress: ProgressFn
             ) -> tuple[int, list[str]]:
    skipped, used = 0, []
    qct = None
    for model_id in tabular_model_ids(store):
        try:
            model = load_model(store, model_id, models_dir=models_dir)
        except ModelError as err:
            problems.append((model_id, str(err)))
            continue
        used.append(model_id)
        done = st_store.predicted_scan_ids(store, model_id, SPLIT)
        todo = [s for s in ids if s not in done]
        skipped += len(ids) - len(todo)
        if model.kind == "qct" and qct is None:
            qct = st_store.qct_features_frame(store).set_index("scan_id")  # + patterns
        for start in range(0, len(todo), TABULAR_CHUNK_SCANS):
            chunk = todo[start:start + TABULAR_CHUNK_SCANS]
            progress(STAGE_TABULAR, start, len(todo))
            x = _features(store, model, chunk, qct)  # (n, p)
            batch = predict_matrix(model, x)
            for j, scan_id in enumerate(chunk):
                if batch.usable[j]:
                    writer.add(model_id, scan_id, batch.risks[j])
                else:
                    writer.fail(model_id, scan_id, _missing_reason(model, int(batch.n_missing[j])))
            writer.flush()
        progress(STAGE_TABULAR, len(todo), len(todo))
    return skipped, used


def _features(store: st_store.Store, model: Any, scan_ids: list[str],
              qct: pd.DataFrame | None) -> np.ndarray:
    """(n, p) features of ``scan_ids`` in the model's order, NaN where the store has none."""
    names = list(model.feature_names)
    if model.kind == "qct":
        wide = qct.reindex(index=scan_ids, columns=names)
    else:
        long = st_store.radiomics_long_frame(store, str(model.param_hash), names, scan_ids)
        wide = long.pivot(index="scan_id", columns="feature", values="value") if len(long) \
            else pd.DataFrame()
        wide = wide.reindex(index=scan_ids, columns=names)
    return wide.to_numpy(dtype=np.float64)


def _missing_reason(model: Any, n_missing: int) -> str:
    what = "QCT metrics (measure QCT first)" if model.kind == "qct" else (
        f"radiomics features with parameter hash {model.param_hash} (run `sscmort radiomics`)")
    return (f"{n_missing} of the {len(model.feature_names)} features the model needs are "
            f"missing: no {what}")


# ---------------------------------------------------------------------------------------------
# deep models: prepare tasks, then batches in model holders
# ---------------------------------------------------------------------------------------------
def _deep(store: st_store.Store, ids: Sequence[str], ex: Executor, models_dir: Path,
          device: str, precision: str, batch_size: int, writer: _Writer,
          problems: list[tuple[str, str]], progress: ProgressFn
          ) -> tuple[int, list[str], tuple[str, ...]]:
    models = _deep_models(store, models_dir, problems)
    if not models:
        return 0, [], ()
    if device == "cuda" and ex.kind == "ray" and not ex.describe().get("cluster_gpus"):
        raise ModelError("--device cuda asked for, but the Ray cluster has no GPU")
    shapes_of = model_shapes(models_dir, list(models))
    shapes = tuple(sorted(set(shapes_of.values())))
    done = {m: st_store.predicted_scan_ids(store, m, SPLIT) for m in models}
    todo = [s for s in ids if any(s not in d for d in done.values())]
    skipped = (len(ids) - len(todo)) * len(models)
    recipe = DeepBatchModels(str(models_dir), tuple(models.items()), shapes,
                             tuple(shapes.index(shapes_of[m]) for m in models), device,
                             precision)
    devices: set[str] = set()
    for start in range(0, len(todo), ROW_CHUNK):  # rows read a chunk at a time
        jobs = scan_jobs(store, st_store.scan_rows(store, todo[start:start + ROW_CHUNK]),
                         shapes)
        results = ex.batched(prepare_scan, recipe, jobs, batch_size=batch_size,
                             progress=offset_progress(progress, start, len(todo)),
                             stage=STAGE_DEEP, gpus=device != "cpu")
        try:
            for out in results:
                scan_id = str(jobs[out.index].row["scan_id"])
                for mid, risks, reason in _scan_rows(out.value if out.ok else None, models,
                                                     str(out.error)):
                    if risks is None:
                        writer.fail(mid, scan_id, reason)
                    else:
                        writer.add(mid, scan_id, risks)
                if out.ok:
                    devices.add(out.value.device)
                writer.scan_done()
        finally:
            results.close()
    return skipped, list(models), tuple(sorted(devices))


def _scan_rows(res: ScanRisks | None, models: Mapping[str, Any], lost: str
               ) -> Iterator[tuple[str, tuple[float, ...] | None, str]]:
    if res is None:
        for mid in models:
            yield mid, None, lost
        return
    for mid, risks in res.risks:
        yield mid, risks, ""
    for mid, reason in res.failures:
        yield mid, None, reason


def _deep_models(store: st_store.Store, models_dir: Path,
                 problems: list[tuple[str, str]]) -> dict[str, str | None]:
    """Registered deep models (id -> sha256) whose card is in ``models_dir``; the others are
    named in ``problems``."""
    out: dict[str, str | None] = {}
    for r in st_store.deep_models_frame(store).itertuples():
        if (models_dir / f"{r.model_id}.json").is_file():
            out[str(r.model_id)] = r.weights_sha256
        else:
            problems.append((str(r.model_id), f"model card {r.model_id}.json is not in "
                                              f"{models_dir}"))
    return out
