"""The per-scan chain for user-supplied CT: read -> validate -> de-identify -> lungs -> QCT,
zones, patterns and mask QC -> store (risks: :mod:`sscmort_core.pipeline.predict`). The CLI
and the upload page call only this.

Identifying DICOM values never leave :mod:`sscmort_core.imaging`: this module sees the
de-identified :class:`Volume`, the report (tag names only) and a pseudonymous patient id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.errors import DataError, InputError, UnsupportedFormatError
from sscmort_core.imaging import ReadResult, read_dicom_files, read_volume, save_volume
from sscmort_core.imaging.volume import IngestReport, Volume
from sscmort_core.lungs import LungMask, LungMeasures, QCTMetrics, measure_lungs, segment_lungs
from sscmort_core.pipeline.measure import measure_rows, write_measures
from sscmort_core.util.hashing import array_sha256, file_sha256
from sscmort_core.util.progress import ProgressFn, no_progress

log = logging.getLogger("sscmort")

SECRET_FILE = "pseudonym.secret"
PATIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
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


@dataclass(frozen=True)
class IngestResult:
    scan_id: str
    patient_id: str
    new_patient: bool
    scan_date: dt.date
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    qct: QCTMetrics
    mask_review: str = ""  # "mask needs review: ..." when a QC check failed

    def to_json(self) -> dict[str, Any]:
        return {"scan_id": self.scan_id, "patient_id": self.patient_id,
                "new_patient": self.new_patient, "scan_date": self.scan_date.isoformat(),
                "shape": list(self.shape), "spacing_mm": [round(s, 4) for s in self.spacing_mm],
                "qct": self.qct.to_dict(), "mask_review": self.mask_review or None}


def store_secret(store: st_store.Store) -> bytes:
    """The store's pseudonymisation key, created on first use (file mode 0600, git-ignored)."""
    path = store.data_dir / SECRET_FILE
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    store.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


def analyse_path(path: Path, *, secret: bytes | None,
                 progress: ProgressFn = no_progress) -> ScanAnalysis:
    """Read, validate, de-identify, segment and measure one input (folder, zip or file)."""
    return _analyse(lambda: read_volume(Path(path), secret=secret), progress)


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


def _resolve_patient(store: st_store.Store, analysis: ScanAnalysis, patient_id: str | None
                     ) -> tuple[str, dict[str, Any] | None]:
    if patient_id is not None:
        if not PATIENT_ID_PATTERN.match(patient_id):
            raise DataError(f"patient id {patient_id!r} must be 1-40 letters, digits, '.', '_' "
                            "or '-' (a pseudonym, never a real identifier)")
        return patient_id, st_store.patient_row(store, patient_id)
    pid = analysis.pseudonymous_patient_id or f"P-{uuid.uuid4().hex[:12]}"
    return pid, st_store.patient_row(store, pid)


def save_analysis(store: st_store.Store, analysis: ScanAnalysis, *,
                  patient_id: str | None = None, scan_date: dt.date | None = None,
                  source_name: str = "upload") -> IngestResult:
    """Store an analysed scan: volume file, patient (new or existing), scan and QCT rows in one
    transaction. On any failure nothing stays behind (the volume file is removed too)."""
    vol = analysis.volume
    scan_date = scan_date or vol.study_date
    if scan_date is None:
        raise DataError("the scan carries no date; give the scan date (--scan-date YYYY-MM-DD)")
    dup = st_store.scan_with_voxels(store, analysis.voxel_sha256)
    if dup is not None:
        raise DataError(f"this scan is already in the store as {dup}")
    pid, existing = _resolve_patient(store, analysis, patient_id)
    if existing and existing.get("death_date") and existing["death_date"] <= scan_date:
        raise DataError(f"scan date {scan_date} is not before patient {pid}'s recorded death "
                        f"({existing['death_date']})")
    scan_id = f"S-{uuid.uuid4().hex[:12]}"
    rel = Path("volumes") / f"{scan_id}.nii.gz"
    target = store.data_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    save_volume(vol, target)
    try:
        _write_scan(store, analysis, pid, existing, scan_id, scan_date, rel,
                    file_sha256(target), source_name)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    log.info("stored scan %s for patient %s", scan_id, pid)
    return IngestResult(scan_id, pid, existing is None, scan_date, tuple(vol.hu.shape),
                        tuple(vol.spacing_mm), analysis.qct, analysis.measures.qc.summary())


def _write_scan(store: st_store.Store, analysis: ScanAnalysis, pid: str,
                existing: dict[str, Any] | None, scan_id: str, scan_date: dt.date, rel: Path,
                sha: str, source: str) -> None:
    vol = analysis.volume
    scanner = " ".join(x for x in (vol.manufacturer, vol.model) if x) or None
    scan = pd.DataFrame([{
        "scan_id": scan_id, "patient_id": pid, "scan_date": scan_date, "scanner": scanner,
        "kernel": vol.kernel, "series_description": vol.series_description,
        "slice_thickness_mm": vol.slice_thickness_mm, "spacing_z_mm": vol.spacing_mm[0],
        "spacing_y_mm": vol.spacing_mm[1], "spacing_x_mm": vol.spacing_mm[2],
        "shape_z": vol.hu.shape[0], "shape_y": vol.hu.shape[1], "shape_x": vol.hu.shape[2],
        "volume_path": str(rel), "volume_sha256": sha, "voxel_sha256": analysis.voxel_sha256,
        "volume_seed": None, "noise_hu": None, "source": source, "synthetic": False}])
    with store.transaction() as cur:
        if existing is None:
            st_store.insert_frame(cur, "patients", pd.DataFrame([{
                "patient_id": pid, "sex": None, "birth_year": None, "subtype": None,
                "antibody": None, "death_date": None, "last_followup_date": scan_date,
                "source": source, "synthetic": False}]))
        else:
            st_store.extend_followup(cur, pid, scan_date)
        st_store.insert_frame(cur, "scans", scan)
        write_measures(cur, [measure_rows(scan_id, analysis.measures, analysis.lungs)])


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


def ingest_path(store: st_store.Store, path: Path, *, patient_id: str | None = None,
                scan_date: dt.date | None = None,
                progress: ProgressFn = no_progress) -> IngestResult:
    """CLI `ingest`: analyse ``path`` and store it."""
    analysis = analyse_path(path, secret=store_secret(store), progress=progress)
    return save_analysis(store, analysis, patient_id=patient_id, scan_date=scan_date)
