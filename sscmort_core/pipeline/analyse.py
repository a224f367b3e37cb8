"""Analyse one user-supplied CT without the store: read -> validate -> de-identify -> lungs ->
QCT, zones, patterns and mask QC. ``sscmort qct`` and the upload page's first step run only
this (no store, no pandas); :mod:`sscmort_core.pipeline.ingest` stores what it returns.

Identifying DICOM values never leave :mod:`sscmort_core.imaging`: this module sees the
de-identified :class:`Volume`, the report (tag names only) and a pseudonymous patient id.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Sequence

import numpy as np

from sscmort_core.errors import DataError, InputError, UnsupportedFormatError
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
    file, or several DICOM files. Works in a temporary folder that is always removed."""
    if not files:
        raise UnsupportedFormatError("no file was uploaded")
    with tempfile.TemporaryDirectory(prefix="sscmort-upload-") as tmp:
        paths = []
        for i, (name, data) in enumerate(files):
            safe = PurePath(name).name or f"file{i}"
            target = Path(tmp) / f"{i:05d}_{safe}" if len(files) > 1 else Path(tmp) / safe
            target.write_bytes(data)
            paths.append(target)
        if len(paths) == 1:
            return _analyse(lambda: _named(read_volume, paths[0], files[0][0], secret), progress)
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
