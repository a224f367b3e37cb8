"""The scans of a registry import, in bulk: the image check before anything is written, and
the import itself (read, validate, de-identify, segment, measure: QCT, zones, ILD patterns and
mask QC, as ``ingest`` does) in worker processes, with the parent alone writing whole scans, a
batch per transaction.

Workers never touch the store. An import worker writes the de-identified volume to a staging
file beside the store; the parent moves it into ``volumes/registry/`` and then commits the
scan's rows (scans, qct, qct_regions, qct_patterns, mask_qc, its import key) in the batch's
transaction, so after a kill at any moment the store holds only whole scans: a volume file
moved in but never committed is an orphan that the next run removes (:func:`remove_orphans`),
and the scan is imported again. Every batch of workers goes through :func:`_run`: an
:class:`~sscmort_core.util.executors.Executor` when one is given (``sscmort import --executor
local|ray``: a worker lost after the executor's retries makes its scan a failure with the
reason), else :func:`sscmort_core.util.workers.map_in_workers`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.errors import SscmortError
from sscmort_core.imaging import SeriesSelector, read_volume, save_stored_volume
from sscmort_core.imaging.volume import STORED_SUFFIX
from sscmort_core.pipeline.ingest import analyse_path
from sscmort_core.pipeline.measure import MeasureRows, measure_rows, write_measures
from sscmort_core.util.hashing import array_sha256, file_sha256
from sscmort_core.util.progress import ProgressFn
from sscmort_core.util.workers import map_in_workers

VOLUME_DIR = Path("volumes") / "registry"  # relative to the store's data folder
STAGING_DIR = "import-staging"
STAGE_CHECK = "check images"
STAGE_SCANS = "import scans"


def redact(text: str, needles: Sequence[tuple[str, str]]) -> str:
    """``text`` with every needle replaced (case-insensitive): a registry id by its pseudonym,
    a real date by ``<date>``. Paths and reasons pass through this before they are shown or
    stored."""
    for needle, replacement in needles:
        if needle:
            text = re.sub(re.escape(needle), replacement, text, flags=re.IGNORECASE)
    return text


# ---------------------------------------------------------------------------------------------
# the image check (before anything is written)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageJob:
    """One scan row's images: where they are, which series, what to redact from messages."""

    row_key: str
    path: str
    series_uid: str | None
    series_description: str | None
    redact: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ImageCheck:
    row_key: str
    voxel_sha256: str | None
    reason: str | None  # why the ingest checks refuse the images (redacted)


def _series(job: ImageJob) -> SeriesSelector | None:
    if not (job.series_uid or job.series_description):
        return None
    return SeriesSelector(job.series_uid, job.series_description)


def _reason(err: BaseException, job: ImageJob) -> str:
    if isinstance(err, SscmortError):
        return redact(err.reason, job.redact)
    return f"could not be read ({type(err).__name__})"


def check_image(job: ImageJob) -> ImageCheck:
    """Worker: read and validate one row's images as ``ingest`` does (no segmentation); the
    voxel hash lets the caller find the same images twice. Never raises for bad images."""
    try:
        result = read_volume(Path(job.path), secret=None, series=_series(job))
    except Exception as err:  # noqa: BLE001 - every failure becomes the row's problem
        return ImageCheck(job.row_key, None, _reason(err, job))
    return ImageCheck(job.row_key, array_sha256(result.volume.hu), None)


def _run(fn: Any, jobs: list[Any], workers: int, progress: ProgressFn, stage: str,
         executor: Any, lost: Any) -> Iterator[Any]:
    """``fn`` over ``jobs`` in workers, results as they come; with an executor, a task whose
    worker was lost becomes ``lost(job, reason)``."""
    if executor is None:
        yield from map_in_workers(fn, jobs, workers, progress, stage)
        return
    results = executor.outcomes(fn, jobs, progress, stage)
    try:
        for task in results:
            yield task.value if task.ok else lost(jobs[task.index], str(task.error))
    finally:
        results.close()


def check_images(jobs: Sequence[ImageJob], workers: int, progress: ProgressFn,
                 executor: Any = None) -> list[ImageCheck]:
    return list(_run(check_image, list(jobs), workers, progress, STAGE_CHECK, executor,
                     lambda job, why: ImageCheck(job.row_key, None, why)))


# ---------------------------------------------------------------------------------------------
# the import
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanJob:
    image: ImageJob
    scan_id: str
    staging_dir: str


@dataclass(frozen=True)
class ScanOutcome:
    """What a worker made of one scan: the staged volume and its rows' values, or a reason."""

    row_key: str
    scan_id: str
    reason: str | None
    staged: str | None = None
    volume_sha256: str | None = None
    voxel_sha256: str | None = None
    scan: dict[str, Any] | None = None  # scans-table values except ids, date, source
    measures: MeasureRows | None = None  # the qct, zone, pattern and mask QC rows
    seconds: float = 0.0


def import_scan(job: ScanJob) -> ScanOutcome:
    """Worker: analyse one scan (read, validate, de-identify, lungs, QCT, zones, patterns,
    mask QC) and stage its de-identified volume. Never raises for a bad scan (the reason
    comes back instead)."""
    t0 = time.perf_counter()
    image = job.image
    try:
        analysis = analyse_path(Path(image.path), secret=None, series=_series(image))
        staged = Path(job.staging_dir) / f"{job.scan_id}{STORED_SUFFIX}"
        tmp = staged.with_name(f".tmp-{os.getpid()}-{staged.name}")  # keeps the suffix
        sha = save_stored_volume(analysis.volume, tmp)
        os.replace(tmp, staged)
    except Exception as err:  # noqa: BLE001 - recorded as the scan's failure
        return ScanOutcome(image.row_key, job.scan_id, _reason(err, image),
                           seconds=time.perf_counter() - t0)
    vol = analysis.volume
    scan = {"scanner": " ".join(x for x in (vol.manufacturer, vol.model) if x) or None,
            "kernel": vol.kernel, "series_description": vol.series_description,
            "slice_thickness_mm": vol.slice_thickness_mm, "spacing_z_mm": vol.spacing_mm[0],
            "spacing_y_mm": vol.spacing_mm[1], "spacing_x_mm": vol.spacing_mm[2],
            "shape_z": vol.hu.shape[0], "shape_y": vol.hu.shape[1], "shape_x": vol.hu.shape[2]}
    measures = measure_rows(job.scan_id, analysis.measures, analysis.lungs)
    return ScanOutcome(image.row_key, job.scan_id, None, str(staged), sha,
                       analysis.voxel_sha256, scan, measures, time.perf_counter() - t0)


@dataclass(frozen=True)
class Target:
    """Where a committed scan goes: its plan's ids, date and the failure row's location."""

    row_key: str
    patient_id: str
    scan_id: str
    scan_date: Any
    manifest_file: str
    manifest_row: int
    shown_path: str


@dataclass(frozen=True)
class BatchResult:
    imported: tuple[str, ...]  # row keys
    linked: tuple[str, ...]  # same voxels already stored for the patient: key points there
    failed: tuple[tuple[str, str], ...]  # (row key, reason)


def commit_batch(store: st_store.Store, outcomes: Sequence[ScanOutcome],
                 targets: dict[str, Target], source: str, seen_voxels: dict[str, str]
                 ) -> BatchResult:
    """Move the batch's staged volumes into place, then write their rows in one transaction.

    ``seen_voxels`` (voxel sha256 -> patient) holds what this run already committed; a scan
    whose voxels are already stored for its patient only gets its key pointed there, for
    another patient it fails."""
    ok = [o for o in outcomes if o.reason is None]
    stored = st_store.scans_with_voxels(store, [str(o.voxel_sha256) for o in ok])
    stored_of = {r.voxel_sha256: (r.patient_id, r.scan_id) for r in stored.itertuples()}
    failed = [(o.row_key, str(o.reason)) for o in outcomes if o.reason is not None]
    new, linked = [], []
    for o in ok:
        t = targets[o.row_key]
        owner = stored_of.get(o.voxel_sha256) or (
            (seen_voxels[o.voxel_sha256], None) if o.voxel_sha256 in seen_voxels else None)
        if owner is None:
            new.append(o)
            seen_voxels[str(o.voxel_sha256)] = t.patient_id
        elif owner[0] == t.patient_id and owner[1] is not None:
            linked.append(dataclasses.replace(o, scan_id=owner[1]))
        else:
            failed.append((o.row_key, "the same images are already in the store for another "
                           "patient or another row"))
        if owner is not None and o.staged:
            Path(o.staged).unlink(missing_ok=True)
    moved = _move_into_place(store, new)
    try:
        with store.transaction() as cur:
            _write_rows(cur, new, linked, targets, source)
            st_store.clear_import_failures(cur, [o.row_key for o in (*new, *linked)])
            st_store.record_import_failures(cur, _failure_rows(failed, targets))
    except BaseException:
        for path in moved:
            path.unlink(missing_ok=True)
        raise
    return BatchResult(tuple(o.row_key for o in new), tuple(o.row_key for o in linked),
                       tuple(failed))


def _move_into_place(store: st_store.Store, outcomes: Sequence[ScanOutcome]) -> list[Path]:
    folder = store.data_dir / VOLUME_DIR
    folder.mkdir(parents=True, exist_ok=True)
    moved = []
    for o in outcomes:
        target = folder / f"{o.scan_id}{STORED_SUFFIX}"
        os.replace(str(o.staged), target)
        moved.append(target)
    return moved


def _write_rows(cur: Any, new: Sequence[ScanOutcome], linked: Sequence[ScanOutcome],
                targets: dict[str, Target], source: str) -> None:
    scans = pd.DataFrame([{
        **(o.scan or {}), "scan_id": o.scan_id, "patient_id": targets[o.row_key].patient_id,
        "scan_date": targets[o.row_key].scan_date,
        "volume_path": (VOLUME_DIR / f"{o.scan_id}{STORED_SUFFIX}").as_posix(),
        "volume_sha256": o.volume_sha256, "voxel_sha256": o.voxel_sha256,
        "volume_seed": None, "noise_hu": None, "source": source, "synthetic": False}
        for o in new], columns=list(st_store.SCAN_COLUMNS))
    keys = pd.DataFrame([{"row_key": o.row_key, "patient_id": targets[o.row_key].patient_id,
                          "scan_id": o.scan_id} for o in (*new, *linked)],
                        columns=list(st_store.IMPORT_KEY_COLUMNS))
    st_store.insert_frame(cur, "scans", scans)
    measured = [o.measures for o in new if o.measures is not None]
    if measured:  # qct, qct_regions, qct_patterns and mask_qc, as ingest writes them
        write_measures(cur, measured)
    st_store.insert_import_keys(cur, keys)


def _failure_rows(failed: Sequence[tuple[str, str]], targets: dict[str, Target]
                  ) -> pd.DataFrame:
    return pd.DataFrame([{
        "row_key": k, "patient_id": targets[k].patient_id,
        "manifest_file": targets[k].manifest_file, "manifest_row": targets[k].manifest_row,
        "path": targets[k].shown_path, "reason": reason} for k, reason in failed],
        columns=list(st_store.IMPORT_FAILURE_COLUMNS))


def import_scans(store: st_store.Store, jobs: Sequence[ScanJob], targets: dict[str, Target],
                 *, source: str, workers: int, batch_scans: int, progress: ProgressFn,
                 executor: Any = None) -> list[BatchResult]:
    """Run the import workers over ``jobs`` (on ``executor`` when given) and commit their
    results, ``batch_scans`` scans per transaction, as they arrive."""
    results, pending, seen = [], [], {}
    lost = lambda job, why: ScanOutcome(job.image.row_key, job.scan_id, why)  # noqa: E731
    for outcome in _run(import_scan, list(jobs), workers, progress, STAGE_SCANS, executor,
                        lost):
        pending.append(outcome)
        if len(pending) >= batch_scans:
            results.append(commit_batch(store, pending, targets, source, seen))
            pending = []
    if pending:
        results.append(commit_batch(store, pending, targets, source, seen))
    return results


def staging_dir(store: st_store.Store) -> Path:
    return store.data_dir / STAGING_DIR


def remove_orphans(store: st_store.Store) -> int:
    """Remove what an interrupted import left behind: the staging folder, and volume files in
    ``volumes/registry/`` that no scan row references. Only the store's writer calls this
    (the CLI holding the lock, or the app's import job). Returns files removed."""
    removed = 0
    staging = staging_dir(store)
    if staging.exists():
        removed += sum(1 for p in staging.rglob("*") if p.is_file())
        shutil.rmtree(staging)
    folder = store.data_dir / VOLUME_DIR
    if folder.is_dir():
        referenced = st_store.referenced_volume_paths(store)
        for path in folder.iterdir():
            rel = path.relative_to(store.data_dir).as_posix()
            if path.is_file() and rel not in referenced:
                path.unlink()
                removed += 1
    return removed
