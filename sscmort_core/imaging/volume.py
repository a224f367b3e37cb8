"""The de-identified CT volume and the ingest report: small frozen types, plus geometry helpers.

Conventions (../shared/STYLE.md): NumPy arrays are ``(z, y, x)``; SimpleITK sizes, origins and
spacings are ``(x, y, z)``. :class:`Volume` keeps ``spacing_mm`` in array order ``(z, y, x)`` and ``origin_mm``
in patient order ``(x, y, z)`` (DICOM LPS, millimetres), as SimpleITK does.

Every volume leaving :mod:`sscmort_core.imaging` is in *canonical orientation*: array index
``z`` runs inferior -> superior, ``y`` anterior -> posterior and ``x`` from the patient's right to
the patient's left (LPS+), so ``direction`` is close to the identity. Downstream stages (lung
left/right labels, sampling) rely on this.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Volume:
    """A CT volume in Hounsfield units, with technical metadata only (no identifying values).

    hu: (z, y, x) int16 (lossless rescale) or float32, read-only.
    spacing_mm: (z, y, x) voxel spacing; z is the spacing between slice centres.
    origin_mm: (x, y, z) patient (LPS) coordinates of voxel [0, 0, 0].
    direction: 9 floats, SimpleITK order (row-major 3x3 whose columns are the x, y, z index axes).
    """

    hu: np.ndarray = field(repr=False)
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION
    modality: str = "CT"
    manufacturer: str | None = None
    model: str | None = None
    kernel: str | None = None
    series_description: str | None = None
    slice_thickness_mm: float | None = None
    study_date: dt.date | None = None

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"Volume.hu must be 3-D (z, y, x), got shape {self.hu.shape}")
        if len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0:
            raise ValueError(f"Volume.spacing_mm must be 3 positive numbers, got {self.spacing_mm}")
        if len(self.direction) != 9 or len(self.origin_mm) != 3:
            raise ValueError("Volume.direction needs 9 numbers and origin_mm 3")
        self.hu.flags.writeable = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) voxel counts."""
        z, y, x = self.hu.shape
        return int(z), int(y), int(x)

    def __repr__(self) -> str:  # the array itself is never printed
        return (f"Volume(shape={self.shape}, dtype={self.hu.dtype}, spacing_mm={self.spacing_mm}, "
                f"modality={self.modality!r}, manufacturer={self.manufacturer!r}, "
                f"model={self.model!r}, kernel={self.kernel!r}, "
                f"series_description={self.series_description!r}, "
                f"slice_thickness_mm={self.slice_thickness_mm}, study_date={self.study_date})")


@dataclass(frozen=True)
class SeriesSummary:
    """One DICOM series as the ingest saw it: never its UIDs, only what a reader needs.

    reason_ignored is None for the chosen series.
    """

    description: str | None
    modality: str | None
    n_files: int
    n_slices: int
    reason_ignored: str | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A file the reader did not use: ``name`` is relative to the input, ``reason`` says why."""

    name: str
    reason: str


@dataclass(frozen=True)
class IngestReport:
    """What reading one input did.

    source_format: "dicom-folder", "dicom-zip", "dicom-files", "nifti", "nrrd", "metaimage".
    removed_tags: keywords (never values) of identifying attributes (DICOM PS3.15 Annex E basic
        profile) that were present in the chosen series and were not kept, or the names of
        free-text header fields of NIfTI / NRRD / MetaImage files that were dropped.
    removed_private_tags: number of private (odd-group) DICOM elements present and dropped.
    """

    source_format: str
    n_files: int
    chosen_series: SeriesSummary
    ignored_series: tuple[SeriesSummary, ...] = ()
    skipped_files: tuple[SkippedFile, ...] = ()
    removed_tags: tuple[str, ...] = ()
    removed_private_tags: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReadResult:
    """The volume, the report, and the patient's pseudonymous id (None without a secret)."""

    volume: Volume
    report: IngestReport
    pseudonymous_patient_id: str | None = None


# ---------------------------------------------------------------------------------------------
# geometry helpers (pure)
# ---------------------------------------------------------------------------------------------
def direction_matrix(direction: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """(3, 3) matrix whose columns are the x, y, z index axes in patient coordinates."""
    return np.asarray(direction, dtype=np.float64).reshape(3, 3)


def axis_angles_deg(direction: np.ndarray) -> np.ndarray:
    """(3,) angle in degrees between each index axis and the patient axis nearest to it."""
    cols = np.abs(direction)  # (3, 3), columns = axes
    cos = np.clip(cols.max(axis=0) / np.linalg.norm(direction, axis=0), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def is_axis_aligned(direction: np.ndarray, tolerance_deg: float) -> bool:
    """True when each index axis is within ``tolerance_deg`` of a distinct patient axis."""
    nearest = np.argmax(np.abs(direction), axis=0)
    return len(set(nearest.tolist())) == 3 and bool(np.all(axis_angles_deg(direction) <= tolerance_deg))


def to_canonical(hu: np.ndarray, spacing_zyx: tuple[float, float, float],
                 origin_xyz: tuple[float, float, float], direction: np.ndarray,
                 ) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float],
                            np.ndarray]:
    """Permute and flip an axis-aligned volume into canonical LPS+ order (see module doc).

    hu: (z, y, x) along the image's own index axes; direction: (3, 3), columns = index axes.
    Returns (hu, spacing_mm (z, y, x), origin_mm (x, y, z), direction (3, 3)) with the
    direction's diagonal positive. Voxel values and physical positions are unchanged.
    """
    nearest = np.argmax(np.abs(direction), axis=0)  # patient axis of index axis c
    col_for = [int(np.nonzero(nearest == a)[0][0]) for a in range(3)]  # index axis per patient axis
    # numpy axis of index axis c is 2 - c; new numpy order is patient (z, y, x) = a = 2, 1, 0
    arr = np.transpose(hu, [2 - col_for[a] for a in (2, 1, 0)])
    spacing_xyz = np.asarray(spacing_zyx[::-1], dtype=np.float64)[col_for]
    new_dir = direction[:, col_for].copy()
    origin = np.asarray(origin_xyz, dtype=np.float64)
    for a in range(3):
        if new_dir[a, a] < 0:
            arr = np.flip(arr, axis=2 - a)
            origin = origin + (arr.shape[2 - a] - 1) * spacing_xyz[a] * new_dir[:, a]
            new_dir[:, a] = -new_dir[:, a]
    spacing = (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0]))
    return (np.ascontiguousarray(arr), spacing, (float(origin[0]), float(origin[1]),
                                                 float(origin[2])), new_dir)


def to_sitk_image(volume: Volume) -> Any:
    """The volume as a SimpleITK image (size x, y, z) with its geometry; no metadata."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.hu))  # (z, y, x) -> size (x, y, z)
    img.SetSpacing(tuple(float(s) for s in volume.spacing_mm[::-1]))
    img.SetOrigin(tuple(float(o) for o in volume.origin_mm))
    img.SetDirection(tuple(float(d) for d in volume.direction))
    return img


# The store's de-identified copies: MetaImage, uncompressed (was zlib level 1 until issue 13:
# 0.25 s of CPU for the real 64 x 512 x 512 series, a third of it back in disk, 24 vs 34 MB).
# Written by :func:`save_stored_volume` byte for byte as SimpleITK writes an uncompressed .mha;
# read by :func:`load_stored_volume`, which reads the older compressed copies as well.
STORED_SUFFIX = ".mha"
STORED_COMPRESSION_LEVEL = 1  # user outputs (.nrrd / .nii.gz / .mha) of :func:`save_volume`
_MET_TYPES = {np.dtype("<i2"): "MET_SHORT", np.dtype("<f4"): "MET_FLOAT"}


def _g17(values: Sequence[float]) -> str:
    return " ".join(format(float(v), ".17g") for v in values)


def _metaimage_header(volume: Volume) -> bytes | None:
    """The header SimpleITK writes for an uncompressed .mha of ``volume``, or None where this
    module does not write it itself (another voxel type, or a direction that is not the
    canonical one's: each index axis nearest its own patient axis, positive)."""
    element = _MET_TYPES.get(volume.hu.dtype)
    d = np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)
    canonical = all(int(np.argmax(np.abs(d[:, c]))) == c and d[c, c] > 0 for c in range(3))
    if element is None or volume.hu.ndim != 3 or not canonical:
        return None
    z, y, x = volume.hu.shape
    lines = ["ObjectType = Image", "NDims = 3", "BinaryData = True",
             "BinaryDataByteOrderMSB = False", "CompressedData = False",
             f"TransformMatrix = {_g17(d.T.ravel())}", f"Offset = {_g17(volume.origin_mm)}",
             "CenterOfRotation = 0 0 0", "AnatomicalOrientation = RAI",
             f"ElementSpacing = {_g17(volume.spacing_mm[::-1])}", f"DimSize = {x} {y} {z}",
             f"ElementType = {element}", "ElementDataFile = LOCAL"]
    return ("\n".join(lines) + "\n").encode("ascii")


def save_stored_volume(volume: Volume, path: Path) -> str:
    """Write the store's copy of ``volume`` (uncompressed MetaImage, voxels and geometry only)
    and return the file's sha256 (hex), hashed from the bytes as written."""
    header = _metaimage_header(volume)
    if header is None:  # not a canonical int16 / float32 volume: SimpleITK writes it
        _write_with_sitk(volume, Path(path), compress=False)
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    data = np.ascontiguousarray(volume.hu).data
    digest = hashlib.sha256(header)
    digest.update(data)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(data)
    return digest.hexdigest()


def save_volume(volume: Volume, path: Path) -> Path:
    """Write the voxels and geometry (no metadata at all) to .mha / .nrrd / .nii(.gz): the
    files a user asks for (``qct --mask-out``); the store's own copies are
    :func:`save_stored_volume`'s.

    Compressed (.mha and .nrrd at zlib level :data:`STORED_COMPRESSION_LEVEL`: for the real
    64 x 512 x 512 series 0.36 s instead of 1.2 s for .nii.gz); int16 volumes stay int16.
    Returns ``path``.
    """
    _write_with_sitk(volume, Path(path), compress=True)
    return Path(path)


def _write_with_sitk(volume: Volume, path: Path, *, compress: bool) -> None:
    import SimpleITK as sitk

    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.SetUseCompression(compress)
    if compress:
        writer.SetCompressionLevel(STORED_COMPRESSION_LEVEL)
    writer.Execute(to_sitk_image(volume))


def load_stored_volume(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a volume written by :func:`save_volume`: (hu (z, y, x), spacing_mm (z, y, x))."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    hu = sitk.GetArrayFromImage(img)  # (z, y, x)
    sx, sy, sz = img.GetSpacing()
    return hu, (float(sz), float(sy), float(sx))
