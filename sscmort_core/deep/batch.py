"""Batch inference of the deep models over stored scans, in two pure parts an executor runs
(:meth:`sscmort_core.util.executors.Executor.batched`):

* :func:`prepare_scan`, one task per scan: a scan row (and, for scans already in the model-input
  cache, the cache file's path and row) -> the (K, 3, S, S) uint8 inputs of every input shape
  the models need (:func:`sscmort_core.deep.inputs.input_for_volume`, the one recipe; read from
  the cache when the worker can see it, computed from the volume otherwise: the same bytes);
* :class:`DeepBatchModels`, a picklable recipe whose call loads every chosen deep model once
  in its holder (a Ray actor on a GPU, or the calling process) and returns the function that
  scores a batch of prepared scans in one forward pass per model (bf16 autocast on CUDA, fp32
  on a CPU).

On a CPU the forward passes run on ``cpu_threads`` torch threads (default 1) whatever the
holder: float32 sums split over another number of threads round differently (about 1e-7),
and with the thread count fixed a Ray actor and the calling process give the same bits.
Parallelism on a CPU comes from more holders (actors), not more threads per holder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sscmort_core import store as st_store
from sscmort_core.deep.inputs import _read_cache, cache_key, default_cache_dir, input_for_volume
from sscmort_core.deep.registry import read_card
from sscmort_core.errors import ModelError, SscmortError
from sscmort_core.scans import scan_with_lungs_from_row

Shape = tuple[int, int]  # (K slices, S px)


@dataclass(frozen=True)
class ScanInputJob:
    """One scan's prepare task: its row, the store's data folder, the input shapes wanted and,
    per shape, (cache .npy path, row) when the model-input cache holds this scan's volume."""

    row: Mapping[str, Any]
    data_dir: str
    shapes: tuple[Shape, ...]
    cached: tuple[tuple[str, int] | None, ...]


@dataclass(frozen=True)
class PreparedScan:
    """``inputs``: one (K, 3, S, S) uint8 array per shape of the job, or None with the
    ``reason`` when the scan cannot be used (missing or changed volume, empty lungs...)."""

    scan_id: str
    inputs: tuple[np.ndarray, ...] | None
    reason: str | None = None


@dataclass(frozen=True)
class ScanRisks:
    """One scan's result: (model_id, (3,) risks 1/3/5 y) per scored model, (model_id, reason)
    per model that could not score it, and the device that ran the models."""

    scan_id: str
    risks: tuple[tuple[str, tuple[float, float, float]], ...]
    failures: tuple[tuple[str, str], ...]
    device: str


def model_shapes(models_dir: Path, model_ids: Sequence[str]) -> dict[str, Shape]:
    """model_id -> its input shape (K, S) from its card (ModelError if a card is missing)."""
    out = {}
    for mid in model_ids:
        cfg = read_card(models_dir, mid).config
        out[mid] = (int(cfg["n_slices"]), int(cfg["image_size"]))
    return out


def scan_jobs(store: st_store.Store, rows: Sequence[Mapping[str, Any]],
              shapes: Sequence[Shape], cache_dir: Path | None = None) -> list[ScanInputJob]:
    """The prepare job of each row; the cache is looked up here (index files only) so the
    workers get a path and a row number, never an array."""
    cache_dir = Path(cache_dir or default_cache_dir(store))
    indexes = []
    for k, size in shapes:
        base = cache_dir / cache_key(k, size)
        index, _ = _read_cache(base)
        indexes.append((str(base.with_suffix(".npy")), index))
    jobs = []
    for row in rows:
        key = (str(row["scan_id"]), str(row.get("volume_sha256") or ""))
        cached = tuple((path, index[key]) if key in index else None for path, index in indexes)
        jobs.append(ScanInputJob(dict(row), str(store.data_dir), tuple(shapes), cached))
    return jobs


def _cached_input(hit: tuple[str, int] | None, shape: Shape) -> np.ndarray | None:
    if hit is None:
        return None
    try:
        arr = np.array(np.load(hit[0], mmap_mode="r")[hit[1]])
    except (OSError, ValueError, IndexError):  # not on this node, or rewritten meanwhile
        return None
    return arr if arr.dtype == np.uint8 and arr.shape[0] == shape[0] \
        and arr.shape[-1] == shape[1] else None


def prepare_scan(job: ScanInputJob) -> PreparedScan:
    """Worker: the scan's model inputs for every shape (never raises for a bad scan)."""
    scan_id = str(job.row["scan_id"])
    scan = None
    arrays = []
    try:
        for shape, hit in zip(job.shapes, job.cached):
            arr = _cached_input(hit, shape)
            if arr is None:
                scan = scan or scan_with_lungs_from_row(job.row, Path(job.data_dir))
                arr = input_for_volume(scan.volume.hu, scan.lungs.mask, k=shape[0],
                                       size=shape[1])
            arrays.append(arr)  # (K, 3, S, S) uint8
    except SscmortError as err:
        return PreparedScan(scan_id, None, str(err))
    return PreparedScan(scan_id, tuple(arrays))


@dataclass(frozen=True)
class DeepBatchModels:
    """Recipe for a batch scorer: the chosen deep models (id, registered sha256), their input
    shapes in the order of the jobs' ``shapes``, the device ("auto": CUDA when the holder has
    a GPU) and the precision on CUDA. Calling it loads the models (in the holder)."""

    models_dir: str
    models: tuple[tuple[str, str | None], ...]
    shapes: tuple[Shape, ...]
    model_shape: tuple[int, ...]  # per model: index into ``shapes``
    device: str = "auto"
    precision: str = "bf16"
    cpu_threads: int = 1

    def __call__(self) -> "_LoadedBatchModels":
        return _LoadedBatchModels(self)


class _LoadedBatchModels:
    def __init__(self, spec: DeepBatchModels) -> None:
        from sscmort_core.deep.infer import load_deep_model, select_device  # heavy: torch

        self.spec = spec
        self.device = select_device(spec.device)
        self.loaded: dict[str, Any] = {}
        self.problems: dict[str, str] = {}
        for mid, sha in spec.models:
            try:
                self.loaded[mid] = load_deep_model(Path(spec.models_dir), mid, self.device, sha)
            except ModelError as err:
                self.problems[mid] = str(err)

    def __call__(self, batch: list[PreparedScan]) -> list[ScanRisks]:
        import torch

        before = torch.get_num_threads()
        if self.device.name == "cpu":
            torch.set_num_threads(self.spec.cpu_threads)
        try:
            return self._score(batch)
        finally:
            torch.set_num_threads(before)

    def _score(self, batch: list[PreparedScan]) -> list[ScanRisks]:
        from sscmort_core.deep.infer import predict_batch  # heavy: torch

        good = [j for j, p in enumerate(batch) if p.inputs is not None]
        risks: dict[int, list[tuple[str, tuple[float, float, float]]]] = {j: [] for j in good}
        for (mid, _), si in zip(self.spec.models, self.spec.model_shape):
            if mid not in self.loaded or not good:
                continue
            x = np.stack([batch[j].inputs[si] for j in good])  # (B, K, 3, S, S) uint8
            out = np.clip(predict_batch(self.loaded[mid], x, self.spec.precision).risk,
                          0.0, 1.0)  # (B, 3), monotone by construction
            for j, r in zip(good, out):
                risks[j].append((mid, (float(r[0]), float(r[1]), float(r[2]))))
        results = []
        for j, p in enumerate(batch):
            if p.inputs is None:
                fails = tuple((mid, str(p.reason)) for mid, _ in self.spec.models)
            else:
                fails = tuple((mid, self.problems[mid]) for mid, _ in self.spec.models
                              if mid in self.problems)
            results.append(ScanRisks(p.scan_id, tuple(risks.get(j, ())), fails,
                                     self.device.name))
        return results
