"""Load a stored or synthetic scan: its voxels, and its lungs (one helper for every stage).

A stored scan is a de-identified NIfTI file beside the store (checked against its recorded
sha256); a synthetic scan is regenerated from its seed (checked against the sha256 of its
voxels). Workers call :func:`scan_with_lungs_from_row` with a row read by the calling process,
so they never touch the store.

May import: the ground floor, util, store, imaging, synthetic, lungs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sscmort_core import store as st_store
from sscmort_core.errors import StoreError
from sscmort_core.imaging import load_stored_volume
from sscmort_core.lungs import LungMask, segment_lungs
from sscmort_core.util.hashing import array_sha256, file_sha256


@dataclass(frozen=True)
class ScanVolume:
    """A scan's voxels as the store knows them. hu: (z, y, x) HU; spacing_mm: (z, y, x)."""

    scan_id: str
    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    synthetic: bool
    true_lung_mask: np.ndarray | None = None  # generator truth (synthetic scans only)
    true_ild_mask: np.ndarray | None = None


@dataclass(frozen=True)
class ScanWithLungs:
    """A scan's volume and its segmented lungs (the input of QCT, radiomics, model inputs)."""

    volume: ScanVolume
    lungs: LungMask


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
    ``Store.data_dir``. A row without a recorded sha256 (the demo's first pass) is not checked.
    """
    scan_id = str(row["scan_id"])
    if row.get("volume_path"):
        path = Path(data_dir) / str(row["volume_path"])
        if not path.exists():
            raise StoreError("stored volume file is missing", path)
        if row.get("volume_sha256") and file_sha256(path) != row["volume_sha256"]:
            raise StoreError("stored volume does not match its recorded sha256", path)
        hu, spacing = load_stored_volume(path)
        return ScanVolume(scan_id, hu, spacing, bool(row["synthetic"]))
    from sscmort_core.synthetic.phantom import phantom_for_scan  # heavy: scipy (stats)

    phantom = phantom_for_scan(row)
    if row.get("volume_sha256") and array_sha256(phantom.hu) != row["volume_sha256"]:
        raise StoreError(f"regenerated volume of {scan_id} does not match its recorded sha256 "
                         "(generator or numpy version changed); rebuild with `sscmort demo`",
                         data_dir)
    return ScanVolume(scan_id, phantom.hu, tuple(float(s) for s in phantom.spacing_mm), True,
                      phantom.lung_mask, phantom.ild_mask)


def scan_with_lungs_from_row(row: Mapping[str, Any], data_dir: Path) -> ScanWithLungs:
    """:func:`volume_from_row`, then the lungs segmented (workers of every batch stage)."""
    vol = volume_from_row(row, data_dir)
    return ScanWithLungs(vol, segment_lungs(vol.hu, vol.spacing_mm))


def load_scan_with_lungs(store: st_store.Store, scan_id: str) -> ScanWithLungs:
    """:func:`load_scan_volume`, then the lungs segmented (pages, saliency)."""
    vol = load_scan_volume(store, scan_id)
    return ScanWithLungs(vol, segment_lungs(vol.hu, vol.spacing_mm))
