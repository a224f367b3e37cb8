"""Input checks on a CT volume: pure functions that raise a named error or return None.

Each error carries the file or folder and one readable sentence. Thresholds are module
constants so the report, the tests and the docs quote the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sscmort_core.errors import (
    DuplicateSliceError,
    ImplausibleHUError,
    NonFiniteHUError,
    NotAxialError,
    TooFewSlicesError,
    UnevenSpacingError,
)
from sscmort_core.imaging.volume import axis_angles_deg, is_axis_aligned

MIN_SLICES = 10
AXIAL_TOLERANCE_DEG = 5.0  # each image axis within this angle of the patient x / y axis
DUPLICATE_TOLERANCE_MM = 0.01  # two slices closer than this along the normal are duplicates
GAP_FACTOR = 1.5  # a step > 1.5x the median step means a missing slice
SPACING_REL_TOLERANCE = 0.10  # otherwise steps may differ from the median by 10 %
# HU plausibility (chest CT): air must be near -1000 HU somewhere, bulk values in a sane range.
HU_P1_MAX = -800.0  # the 1st percentile must be at or below this (air outside / in the lungs)
HU_MEDIAN_RANGE = (-1100.0, 500.0)
HU_P999_MAX = 4000.0  # 99.9th percentile above this means a wrong slope (metal stays below)
HU_SAMPLE_MAX = 2_000_000  # voxels looked at for the percentiles (strided subsample)


def plane_name(direction: np.ndarray) -> str:
    """'axial', 'coronal', 'sagittal' or 'oblique' from the slice normal (3rd column)."""
    normal = direction[:, 2] / np.linalg.norm(direction[:, 2])
    axis = int(np.argmax(np.abs(normal)))
    if np.degrees(np.arccos(min(1.0, abs(normal[axis])))) > AXIAL_TOLERANCE_DEG:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def check_axial(direction: np.ndarray, path: str | Path | None) -> None:
    """Raise NotAxialError unless the slices are axial (in-plane axes ~ patient x and y).

    direction: (3, 3), columns = the image's row, column and slice-normal directions.
    """
    plane = plane_name(direction)
    in_plane = set(np.argmax(np.abs(direction[:, :2]), axis=0).tolist())
    if plane == "axial" and in_plane == {0, 1} and is_axis_aligned(direction, AXIAL_TOLERANCE_DEG):
        return
    if plane == "axial":
        worst = float(axis_angles_deg(direction).max())
        raise NotAxialError(f"the axial slices are rotated by about {worst:.0f} degrees in plane "
                            f"(at most {AXIAL_TOLERANCE_DEG:.0f} is accepted)", path)
    raise NotAxialError(f"the series is {plane}, not axial; upload the axial reconstruction", path)


def check_slice_count(n_slices: int, path: str | Path | None) -> None:
    if n_slices < MIN_SLICES:
        what = "a single 2D image" if n_slices == 1 else f"only {n_slices} slices"
        raise TooFewSlicesError(f"{what}; a chest CT volume needs at least {MIN_SLICES} slices",
                                path)


def check_slice_positions(positions_mm: np.ndarray, names: list[str],
                          path: str | Path | None) -> float:
    """Check sorted slice positions along the normal; return the median step in mm.

    positions_mm: (n,) ascending. names: (n,) file names, used to name the culprit.
    Raises DuplicateSliceError, UnevenSpacingError (missing slice or irregular steps).
    """
    steps = np.diff(positions_mm)  # (n - 1,)
    dup = np.nonzero(steps < DUPLICATE_TOLERANCE_MM)[0]
    if dup.size:
        i = int(dup[0])
        raise DuplicateSliceError(
            f"{dup.size} duplicated slice position(s): files {names[i]} and {names[i + 1]} are both "
            f"at {positions_mm[i]:.2f} mm along the slice normal", path)
    median = float(np.median(steps))
    gaps = np.nonzero(steps > GAP_FACTOR * median)[0]
    if gaps.size:
        i = int(gaps[0])
        raise UnevenSpacingError(
            f"a slice is missing between {names[i]} and {names[i + 1]} (step {steps[i]:.2f} mm, "
            f"the other slices are {median:.2f} mm apart)", path)
    spread = float(np.max(np.abs(steps - median)))
    if spread > SPACING_REL_TOLERANCE * median:
        raise UnevenSpacingError(
            f"uneven slice spacing: steps range from {steps.min():.2f} to {steps.max():.2f} mm "
            f"(median {median:.2f} mm)", path)
    return median


def check_finite(hu: np.ndarray, path: str | Path | None) -> None:
    if np.issubdtype(hu.dtype, np.floating) and not np.isfinite(hu).all():
        n_bad = int(np.size(hu) - np.count_nonzero(np.isfinite(hu)))
        raise NonFiniteHUError(f"{n_bad} voxels are NaN or infinite; a CT holds finite HU", path)


def _subsample(hu: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil((hu.size / HU_SAMPLE_MAX) ** (1 / 3))))
    return hu[::step, ::step, ::step].ravel()


def check_hu_plausible(hu: np.ndarray, path: str | Path | None) -> None:
    """Raise ImplausibleHUError when the values cannot be chest CT Hounsfield units.

    Catches a missing or wrong RescaleIntercept / RescaleSlope and non-CT intensities: air
    (outside the body, in the lungs) must reach about -1000 HU, the median must lie in
    [-1100, 500] HU and the 99.9th percentile below 4000 HU.
    """
    sample = _subsample(hu).astype(np.float32)
    p1, median, p999 = (float(v) for v in np.percentile(sample, [1.0, 50.0, 99.9]))
    if p1 > HU_P1_MAX:
        raise ImplausibleHUError(
            f"no air in the image: the 1st percentile is {p1:.0f} HU but air should be near "
            f"-1000 HU (is the rescale intercept missing, or is this not CT?)", path)
    if not HU_MEDIAN_RANGE[0] <= median <= HU_MEDIAN_RANGE[1]:
        raise ImplausibleHUError(
            f"the median value is {median:.0f} HU, outside the plausible range "
            f"[{HU_MEDIAN_RANGE[0]:.0f}, {HU_MEDIAN_RANGE[1]:.0f}] HU for a chest CT", path)
    if p999 > HU_P999_MAX:
        raise ImplausibleHUError(
            f"the 99.9th percentile is {p999:.0f} HU, far above bone (wrong rescale slope?)", path)


AIR_FLOOR_HU = -1024.0  # values below (padding outside the reconstruction circle) become air


def normalize_hu(hu: np.ndarray, *, integral: bool) -> tuple[np.ndarray, str | None]:
    """Clip values below -1024 HU to -1024 and choose the storage type.

    hu: (z, y, x). Returns (int16 array when ``integral`` and the range fits, else float32;
    a warning when more than 0.1 % of voxels lay below -1100 HU, e.g. padding).
    """
    warning = None
    per_slice = hu[0].size if hu.ndim and len(hu) else 1
    step = max(1, (1 << 22) // max(1, per_slice))  # slices at a time: no volume-sized mask
    n_low = sum(int(np.count_nonzero(hu[i:i + step] < -1100)) for i in range(0, len(hu), step))
    if n_low > 0.001 * hu.size:
        warning = (f"{100.0 * n_low / hu.size:.1f}% of voxels lay below -1100 HU (padding outside "
                   "the reconstruction circle?) and were set to -1024 HU")
    if np.issubdtype(hu.dtype, np.integer):
        floor = np.asarray(int(AIR_FLOOR_HU), dtype=hu.dtype)
        if integral and max(int(hu.max()), int(AIR_FLOOR_HU)) <= np.iinfo(np.int16).max:
            # clipped straight into int16 (every value fits): no volume-sized int32 copy
            out16 = np.empty(hu.shape, dtype=np.int16)
            np.maximum(hu, floor, out=out16, casting="unsafe")
            return out16, warning
        return np.maximum(hu, floor).astype(np.float32), warning
    out = np.maximum(hu, np.asarray(AIR_FLOOR_HU, dtype=hu.dtype))
    if integral and float(out.max()) <= np.iinfo(np.int16).max:
        return np.rint(out).astype(np.int16), warning
    return out.astype(np.float32, copy=False), warning
