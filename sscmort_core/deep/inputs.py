"""Model inputs of every stored scan, computed once on an executor (worker processes or Ray)
and cached on disk.

Per scan: volume and lung mask (:func:`sscmort_core.scans.scan_with_lungs_from_row`) -> K
windowed slices (:func:`sscmort_core.deep.sampling.sample_model_input`), quantised to uint8
(value * 255, rounded; at most 0.002 from the float input). Workers never touch the store:
the calling process reads the scan rows first and writes nothing but the cache files.

Cache: ``<cache_dir>/<key>.npy`` (N, K, 3, S, S) uint8 and ``<key>.json`` (scan ids and the
volume sha256 of every row), keyed by (k, size, :func:`sampling_version`). Rows are reused when a
scan's id and volume sha256 match, so adding scans computes only the new ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sscmort_core import store as st_store
from sscmort_core.deep import sampling
from sscmort_core.errors import SscmortError
from sscmort_core.lungs import lung_mask_version
from sscmort_core.scans import scan_with_lungs_from_row
from sscmort_core.util.executors import Executor, LocalExecutor
from sscmort_core.util.progress import ProgressFn, no_progress

INPUT_VERSION = "sample-1"  # this module's recipe: uint8 quantisation of the sampled slices
STAGE = "model inputs"


@dataclass(frozen=True)
class ModelInputs:
    """Inputs of N scans: ``x`` (N, K, 3, S, S) uint8 (divide by 255 for [0, 1] floats)."""

    scan_ids: tuple[str, ...]
    x: np.ndarray
    failed: tuple[tuple[str, str], ...] = ()  # (scan_id, reason) of scans left out

    @property
    def k(self) -> int:
        return int(self.x.shape[1])

    @property
    def size(self) -> int:
        return int(self.x.shape[-1])


def sampling_version() -> str:
    """Version of everything the inputs are made with: this module's recipe
    (:data:`INPUT_VERSION`), the slice sampling (:data:`sscmort_core.deep.sampling.
    SAMPLING_VERSION`) and the lung mask (:func:`sscmort_core.lungs.lung_mask_version`).

    It keys the cache and is written into every model card, so a change of any of them
    computes the inputs again instead of reusing stale ones."""
    return f"{INPUT_VERSION}+{sampling.SAMPLING_VERSION}+{lung_mask_version()}"


def cache_key(k: int, size: int) -> str:
    return f"k{k}_s{size}_{sampling_version()}"


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 (value * 255, rounded)."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def input_for_volume(hu: np.ndarray, lung_mask: np.ndarray, *, k: int, size: int) -> np.ndarray:
    """(K, 3, S, S) uint8 model input of one volume and its lung mask (the one recipe)."""
    return to_uint8(sampling.sample_model_input(hu, lung_mask, k=k, size=size))


def _input_for_row(job: tuple[dict[str, Any], str, int, int]
                   ) -> tuple[str, np.ndarray | None, str | None]:
    """Worker: (scan_id, (K, 3, S, S) uint8 or None, reason when it failed)."""
    row, data_dir, k, size = job
    try:
        scan = scan_with_lungs_from_row(row, Path(data_dir))
        x = input_for_volume(scan.volume.hu, scan.lungs.mask, k=k, size=size)
        return scan.volume.scan_id, x, None
    except SscmortError as err:
        return str(row["scan_id"]), None, str(err)


def default_cache_dir(store: st_store.Store) -> Path:
    return store.data_dir / "model_inputs"


def _read_cache(base: Path) -> tuple[dict[tuple[str, str], int], np.ndarray | None]:
    index, arr = base.with_suffix(".json"), base.with_suffix(".npy")
    if not (index.is_file() and arr.is_file()):
        return {}, None
    try:
        meta = json.loads(index.read_text())
        x = np.load(arr, mmap_mode="r")
    except (OSError, ValueError):
        return {}, None
    keys = list(zip(meta["scan_ids"], meta["sha256"]))
    if len(keys) != x.shape[0]:
        return {}, None
    return {key: i for i, key in enumerate(keys)}, x


def _write_cache(base: Path, scan_ids: list[str], shas: list[str], x: np.ndarray) -> None:
    base.parent.mkdir(parents=True, exist_ok=True)
    tmp_npy = base.with_name(f".{base.name}.tmp-{os.getpid()}.npy")
    tmp_json = base.with_name(f".{base.name}.tmp-{os.getpid()}.json")
    np.save(tmp_npy, x)
    tmp_json.write_text(json.dumps({"scan_ids": scan_ids, "sha256": shas,
                                    "shape": list(x.shape), "key": base.name}))
    os.replace(tmp_npy, base.with_suffix(".npy"))
    os.replace(tmp_json, base.with_suffix(".json"))


def model_inputs(store: st_store.Store, *, k: int, size: int, workers: int = 1,
                 progress: ProgressFn = no_progress, scan_ids: Sequence[str] | None = None,
                 cache_dir: Path | None = None,
                 executor: Executor | None = None) -> ModelInputs:
    """Model inputs of the store's scans (all, or ``scan_ids``), sorted by scan id.

    Computed on ``executor`` (default: ``workers`` local processes; each task gets a scan row)
    and cached under ``cache_dir`` (default ``store.data_dir / "model_inputs"``); cached rows
    are reused. Scans whose volume or lung mask fails, or whose worker died more often than
    the executor retries, are left out and listed in ``failed``.
    """
    rows = st_store.scan_rows(store, scan_ids)
    base = Path(cache_dir or default_cache_dir(store)) / cache_key(k, size)
    cached, cx = _read_cache(base)
    wanted = [(str(r["scan_id"]), str(r.get("volume_sha256") or "")) for r in rows]
    todo = [r for r, key in zip(rows, wanted) if key not in cached]
    jobs = [(r, str(store.data_dir), k, size) for r in todo]
    fresh: dict[str, np.ndarray] = {}
    failed: list[tuple[str, str]] = []
    ex = executor or LocalExecutor(workers)
    results = ex.outcomes(_input_for_row, jobs, progress, STAGE) if jobs else ()
    for task in results:
        sid, arr, reason = task.value if task.ok else (str(todo[task.index]["scan_id"]), None,
                                                        task.error)
        if arr is None:
            failed.append((sid, str(reason)))
        else:
            fresh[sid] = arr
    order = {sid: i for i, (sid, _) in enumerate(wanted)}
    failed.sort(key=lambda f: order.get(f[0], len(order)))  # completion order varies
    out_ids, parts = [], []
    for sid, sha in wanted:
        if (sid, sha) in cached:
            parts.append(np.asarray(cx[cached[(sid, sha)]]))
        elif sid in fresh:
            parts.append(fresh[sid])
        else:
            continue
        out_ids.append(sid)
    x = np.stack(parts) if parts else np.zeros((0, k, 3, size, size), np.uint8)  # (N,K,3,S,S)
    if fresh:
        _merge_into_cache(base, cached, cx, dict(wanted), out_ids, x)
    return ModelInputs(tuple(out_ids), x, tuple(failed))


def _merge_into_cache(base: Path, cached: dict[tuple[str, str], int], cx: np.ndarray | None,
                      sha_of: dict[str, str], out_ids: list[str], x: np.ndarray) -> None:
    """Rewrite the cache with this call's rows plus earlier rows of other scans."""
    ids, shas, parts = list(out_ids), [sha_of[s] for s in out_ids], [x]
    keep = [(key, i) for key, i in cached.items() if key[0] not in sha_of]
    if keep and cx is not None:
        ids += [key[0] for key, _ in keep]
        shas += [key[1] for key, _ in keep]
        parts.append(np.asarray(cx[[i for _, i in keep]]))
    _write_cache(base, ids, shas, np.concatenate(parts))


def write_model_inputs(cache_dir: Path, *, scan_ids: Sequence[str],
                       volume_sha256: Sequence[str], x: np.ndarray) -> Path:
    """Seed the cache with inputs computed elsewhere (e.g. build_demo's lung workers, which
    already hold each volume and its mask: call :func:`input_for_volume` there).

    x: (N, K, 3, S, S) uint8, rows in the order of ``scan_ids``. Returns the cache's .npy path.
    """
    if (x.dtype != np.uint8 or x.ndim != 5 or x.shape[0] != len(scan_ids)
            or len(scan_ids) != len(volume_sha256)):
        raise ValueError(f"need (N, K, 3, S, S) uint8 for {len(scan_ids)} scans, got "
                         f"{x.dtype} {x.shape}")
    base = Path(cache_dir) / cache_key(int(x.shape[1]), int(x.shape[-1]))
    _write_cache(base, [str(s) for s in scan_ids], [str(s or "") for s in volume_sha256], x)
    return base.with_suffix(".npy")
