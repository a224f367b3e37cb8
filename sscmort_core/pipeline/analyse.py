"""Analyse one user-supplied CT without the store: read -> validate -> de-identify -> lungs ->
QCT, zones, patterns and mask QC. ``sscmort qct`` and the upload page's first step run only
this (no store, no pandas); :mod:`sscmort_core.pipeline.ingest` stores what it returns.

Identifying DICOM values never leave :mod:`sscmort_core.imaging`: this module sees the
de-identified :class:`Volume`, the report (tag names only) and a pseudonymous patient id.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, BinaryIO, Sequence

import numpy as np

from sscmort_core.access.settings import UploadLimits, check_upload_sizes
from sscmort_core.errors import DataError, FileTooLargeError, InputError, UnsupportedFormatError
from sscmort_core.imaging import (
    ReadResult,
    SeriesSelector,
    read_dicom_files,
    read_volume,
    save_volume,
)
from sscmort_core.imaging.volume import IngestReport, Volume
from sscmort_core.lungs import LungMask, LungMeasures, QCTMetrics, measure_lungs, segment_lungs
from sscmort_core.util.hashing import array_sha256
from sscmort_core.util.progress import ProgressFn, no_progress

STAGES = ("read and validate", "de-identify", "segment lungs",
          "quantitative CT, zones, patterns, QC")
CHUNK_BYTES = 1 << 20  # uploads are copied to disk this much at a time


@dataclass(frozen=True)
class ScanAnalysis:
    """An analysed, de-identified scan not yet stored."""

    volume: Volume
    report: IngestReport
    pseudonymous_patient_id: str | None
    lungs: LungMask
    measures: LungMeasures
    voxel_sha256: str
    stage_seconds: tuple[tuple[str, float], ...]

    @property
    def qct(self) -> QCTMetrics:
        return self.measures.qct


def analyse_path(path: Path, *, secret: bytes | None,
                 progress: ProgressFn = no_progress,
                 series: SeriesSelector | None = None) -> ScanAnalysis:
    """Read, validate, de-identify, segment and measure one input (folder, zip or file);
    ``series`` picks one series of a DICOM study holding several."""
    return _analyse(lambda: read_volume(Path(path), secret=secret, series=series), progress)


def analyse_upload(files: Sequence[tuple[str, bytes]], *, secret: bytes | None,
                   progress: ProgressFn = no_progress) -> ScanAnalysis:
    """Like :func:`analyse_path` for uploaded (name, bytes) pairs: one zip / NIfTI / NRRD / MHA
    file, or several DICOM files. Works in a temporary folder that is always removed. For
    uploads that must not be held in memory, see :func:`analyse_streams`."""
    return analyse_streams([(name, len(data), io.BytesIO(data)) for name, data in files],
                           limits=None, secret=secret, progress=progress)


def analyse_streams(files: Sequence[tuple[str, int, BinaryIO]], *, limits: UploadLimits | None,
                    secret: bytes | None, progress: ProgressFn = no_progress) -> ScanAnalysis:
    """Analyse uploaded files given as (name, declared size in bytes, readable binary stream):
    the sizes are checked against ``limits`` before a byte is read, each stream is copied to
    a temporary folder in 1 MiB chunks (never held whole in memory), the scan is read from
    disk (:func:`analyse_files`), and the folder is removed whatever happens."""
    if not files:
        raise UnsupportedFormatError("no file was uploaded")
    if limits is not None:
        check_upload_sizes([(name, size) for name, size, _ in files], limits)
    with tempfile.TemporaryDirectory(prefix="sscmort-upload-") as tmp:
        paths = []
        for i, (name, size, stream) in enumerate(files):
            safe = PurePath(name).name or f"file{i}"
            target = Path(tmp) / f"{i:05d}_{safe}" if len(files) > 1 else Path(tmp) / safe
            _copy_stream(stream, target, name, limit=None if limits is None else size)
            paths.append(target)
        return analyse_files(paths, names=[name for name, _, _ in files], secret=secret,
                             progress=progress)


def _copy_stream(stream: BinaryIO, target: Path, name: str, *, limit: int | None) -> None:
    """Copy ``stream`` from its start to ``target`` in chunks; a stream longer than its
    declared size (``limit``) is refused rather than trusted."""
    if hasattr(stream, "seek"):
        stream.seek(0)
    written = 0
    with open(target, "wb") as out:
        while chunk := stream.read(CHUNK_BYTES):
            written += len(chunk)
            if limit is not None and written > limit:
                raise FileTooLargeError(f"holds more than the {limit:,} bytes it declared",
                                        PurePath(name).name)
            out.write(chunk)


def analyse_files(paths: Sequence[Path], *, names: Sequence[str] | None = None,
                  secret: bytes | None, progress: ProgressFn = no_progress) -> ScanAnalysis:
    """The path-based entry point of uploads: one zip / NIfTI / NRRD / MHA file, or several
    DICOM files, on disk. ``names`` (what the user called the files) label errors instead of
    the temporary paths."""
    if not paths:
        raise UnsupportedFormatError("no file was uploaded")
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        shown = names[0] if names else paths[0].name
        return _analyse(lambda: _named(read_volume, paths[0], shown, secret), progress)
    return _analyse(lambda: read_dicom_files(paths, secret=secret,
                                             source=Path(f"upload of {len(paths)} files")),
                    progress)


def _named(reader: Any, path: Path, shown: str, secret: bytes | None) -> ReadResult:
    """Run ``reader`` and re-label errors with the uploaded name instead of the temp path."""
    try:
        return reader(path, secret=secret)
    except InputError as err:
        raise type(err)(err.reason, PurePath(shown).name) from None


def _analyse(read: Any, progress: ProgressFn) -> ScanAnalysis:
    times = []
    total = len(STAGES)

    def report(stage: str, done: int) -> None:
        progress(f"ingest: {stage}", done, total)

    report(STAGES[0], 0)
    t = time.perf_counter()
    result: ReadResult = read()
    times.append((STAGES[0], time.perf_counter() - t))
    report(STAGES[1], 1)  # de-identification happened inside the reader
    times.append((STAGES[1], 0.0))
    vol = result.volume
    t = time.perf_counter()
    report(STAGES[2], 2)
    lungs = segment_lungs(vol.hu, vol.spacing_mm)
    times.append((STAGES[2], time.perf_counter() - t))
    t = time.perf_counter()
    report(STAGES[3], 3)
    measures = measure_lungs(vol.hu, lungs, vol.spacing_mm)
    times.append((STAGES[3], time.perf_counter() - t))
    report("done", total)
    return ScanAnalysis(vol, result.report, result.pseudonymous_patient_id, lungs, measures,
                        array_sha256(vol.hu), tuple(times))


LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def write_label_volume(analysis: ScanAnalysis, labels: Any, path: Path) -> Path:
    """Write ``labels`` ((z, y, x) on the analysed volume's grid: the lung mask, or the
    pattern map's labels) as uint8 with the input's spacing, origin and direction, so it
    overlays the input in any viewer. DataError for an unknown suffix or a missing folder."""
    path = Path(path)
    if not str(path).lower().endswith(LABEL_SUFFIXES):
        raise DataError(f"output must end in one of {', '.join(LABEL_SUFFIXES)}", path)
    if not path.parent.is_dir():
        raise DataError("the output's folder does not exist", path)
    vol = analysis.volume
    out = dataclasses.replace(vol, hu=np.ascontiguousarray(labels, dtype=np.uint8))
    return save_volume(out, path)
