"""Store an analysed scan (:mod:`sscmort_core.pipeline.analyse`): de-identified volume file,
patient (new or existing, pseudonymous), scan, QCT, zone, pattern and mask QC rows in one
transaction. The CLI's
``ingest`` and the upload page's "save to cohort" call only this; risks are
:mod:`sscmort_core.pipeline.predict`'s.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sscmort_core import store as st_store
from sscmort_core.errors import DataError
from sscmort_core.imaging import save_stored_volume
from sscmort_core.imaging.volume import STORED_SUFFIX
from sscmort_core.lungs import QCTMetrics
from sscmort_core.pipeline.analyse import (  # noqa: F401  (re-exported for callers)
    LABEL_SUFFIXES,
    STAGES,
    ScanAnalysis,
    analyse_path,
    analyse_upload,
    write_label_volume,
)
from sscmort_core.pipeline.measure import measure_rows, write_measures
from sscmort_core.util.progress import ProgressFn, no_progress

log = logging.getLogger("sscmort")


SECRET_FILE = "pseudonym.secret"
PATIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,40}$")


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
    key = read_secret(store)
    if key is not None:
        return key
    return persist_secret(store, secrets.token_bytes(32))


def read_secret(store: st_store.Store | None) -> bytes | None:
    """The store's pseudonymisation key, or None when it has none yet (nothing is created)."""
    if store is None:
        return None
    path = store.data_dir / SECRET_FILE
    return bytes.fromhex(path.read_text().strip()) if path.exists() else None


def persist_secret(store: st_store.Store, key: bytes) -> bytes:
    """Write ``key`` as the store's pseudonymisation key unless it has one; return the key in
    force (a registry import makes its pseudonyms with a key it writes only once the manifest
    passed every check)."""
    existing = read_secret(store)
    if existing is not None:
        return existing
    store.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(store.data_dir / SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


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
    if existing and st_store.patient_dates_shifted(store, pid):
        raise DataError(f"patient {pid}'s dates were shifted by a registry import; add this scan "
                        "as a row of the registry's manifest (`sscmort import`) so that its date "
                        "gets the same shift")
    if existing and existing.get("death_date") and existing["death_date"] <= scan_date:
        raise DataError(f"scan date {scan_date} is not before patient {pid}'s recorded death "
                        f"({existing['death_date']})")
    scan_id = f"S-{uuid.uuid4().hex[:12]}"
    rel = Path("volumes") / f"{scan_id}{STORED_SUFFIX}"
    target = store.data_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        sha = save_stored_volume(vol, target)
        _write_scan(store, analysis, pid, existing, scan_id, scan_date, rel, sha, source_name)
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
    scan = {
        "scan_id": scan_id, "patient_id": pid, "scan_date": scan_date, "scanner": scanner,
        "kernel": vol.kernel, "series_description": vol.series_description,
        "slice_thickness_mm": vol.slice_thickness_mm, "spacing_z_mm": vol.spacing_mm[0],
        "spacing_y_mm": vol.spacing_mm[1], "spacing_x_mm": vol.spacing_mm[2],
        "shape_z": vol.hu.shape[0], "shape_y": vol.hu.shape[1], "shape_x": vol.hu.shape[2],
        "volume_path": str(rel), "volume_sha256": sha, "voxel_sha256": analysis.voxel_sha256,
        "volume_seed": None, "noise_hu": None, "source": source, "synthetic": False}
    with store.transaction() as cur:
        if existing is None:
            st_store.insert_rows(cur, "patients", [{
                "patient_id": pid, "sex": None, "birth_year": None, "subtype": None,
                "antibody": None, "death_date": None, "last_followup_date": scan_date,
                "source": source, "synthetic": False}])
        else:
            st_store.extend_followup(cur, pid, scan_date)
        st_store.insert_rows(cur, "scans", [scan])
        write_measures(cur, [measure_rows(scan_id, analysis.measures, analysis.lungs)])



def ingest_path(store: st_store.Store, path: Path, *, patient_id: str | None = None,
                scan_date: dt.date | None = None,
                progress: ProgressFn = no_progress) -> IngestResult:
    """CLI `ingest`: analyse ``path`` and store it."""
    analysis = analyse_path(path, secret=store_secret(store), progress=progress)
    return save_analysis(store, analysis, patient_id=patient_id, scan_date=scan_date)
