"""Synthetic chest CT volumes with a known lung mask and pattern of every lung voxel,
deterministic from a seed.

Axis order and orientation (same as DICOM patient coordinates, LPS, and as every array in
sscmort): arrays are ``(z, y, x)``; ``x`` increases to the patient's left, ``y`` to the back
(the table is at the bottom of an axial image), ``z`` to the head. **Slice 0 is the most
caudal** (upper abdomen, lung bases) and the last slice the most cranial (lung apices), so
"basal" means low z. ``spacing_mm`` and ``origin_mm`` are ``(z, y, x)`` too.

The picture: air outside the body, a patient table, skin, fat, muscle, ribs, scapulae,
spine and sternum, heart and great vessels, liver and spleen below the diaphragm, trachea
and main bronchi (air, outside the lung mask, opening into the lungs only at the hila),
two lungs at about -860 HU with branching vessels (+40 HU). ILD is drawn with basal,
posterior and subpleural predominance (:mod:`._disease`): in stable patients NSIP-like -
ground glass (-680..-420 HU) most, net-like reticulation (-250..-100 HU) next, honeycombing
only in extensive disease, the pleural surface spared; in progressors dense fibrosis that
reaches the costal pleura over a band several centimetres deep - honeycomb clusters (cysts
at about -950 HU, walls near 0 HU), subpleural consolidation (0..+50 HU), reticulation with
traction bronchiectasis, ground glass innermost. Optional emphysema (about -970 HU, upper
zones). The ground-truth lung mask includes all of it and ``pattern`` keeps each voxel's
true pattern. Scanner variation: ``noise_hu`` is the standard deviation of the added noise;
``"sharp"`` barely blurs and adds white noise, ``"smooth"`` blurs image and noise; slice
thickness sets the z spacing and the slice count (z coverage stays ~300 mm).

Size: by default 128 x 128 pixels of 2.7 mm in-plane and ``round(300 / thickness)`` slices
(60 at 5 mm, 40 at 7.5 mm): at most ~1M voxels, ~0.1 s per volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from sscmort_core.synthetic import _anatomy as anat
from sscmort_core.synthetic import _disease as disease
from sscmort_core.synthetic._disease import (  # noqa: F401  (the pattern codes)
    CONSOLIDATION,
    EMPHYSEMA,
    GGO,
    HONEYCOMBING,
    NORMAL,
    RETICULATION,
)
from sscmort_core.synthetic.protocol import KERNELS

Z_COVERAGE_MM = 300.0
IN_PLANE_PIXELS = 128
MAX_VOXELS = 1_000_000
MAX_EXTENT_PCT = 90.0
MAX_EMPHYSEMA_PCT = 30.0
HU_MIN, HU_MAX = -1024, 3071  # what 12-bit stored values with intercept -1024 can hold
PATTERN_NAMES = ("normal", "ground glass", "reticulation", "honeycombing", "consolidation",
                 "emphysema")  # by code: Phantom.pattern values
_BLUR_SIGMA_VOXELS = {"sharp": (0.3, 0.45, 0.45), "smooth": (0.4, 0.85, 0.85)}  # (z, y, x)


@dataclass(frozen=True)
class Phantom:
    """One synthetic CT volume and its ground truth. Arrays are read-only, ``(z, y, x)``.

    ``true_ild_extent_pct`` is ``100 * ild_mask.sum() / lung_mask.sum()`` exactly, likewise
    ``true_emphysema_pct`` with ``emphysema_mask``. :attr:`pattern` is each voxel's true
    pattern (codes of :data:`PATTERN_NAMES`).
    """

    hu: np.ndarray  # (z, y, x) int16 Hounsfield units
    spacing_mm: tuple[float, float, float]  # (z, y, x)
    origin_mm: tuple[float, float, float]  # (z, y, x) patient position (LPS) of voxel 0,0,0
    lung_mask: np.ndarray  # (z, y, x) bool: parenchyma incl. ILD and vessels, no airways
    ild_mask: np.ndarray  # (z, y, x) bool, a subset of lung_mask
    ild_pattern: np.ndarray  # (z, y, x) uint8: 0 none, 1 GGO, 2 reticulation, 3 honeycombing,
    #                          4 consolidation (ILD voxels only)
    true_ild_extent_pct: float
    kernel: str  # "sharp" or "smooth"
    noise_hu: float  # standard deviation of the added noise, HU
    slice_thickness_mm: float
    seed: int
    scanner: str | None = None  # "<manufacturer> <model>" of the scans table, if known
    progressor: bool = False  # dense fibrosis reaching the pleura (else NSIP-like)
    emphysema_mask: np.ndarray | None = None  # (z, y, x) bool, lung voxels with emphysema
    true_emphysema_pct: float = 0.0
    vessel_mask: np.ndarray | None = None  # (z, y, x) bool, the pulmonary vessels (normal)

    @property
    def pattern(self) -> np.ndarray:
        """(z, y, x) uint8 true pattern of every voxel (0 normal / outside the lung ...
        5 emphysema; :data:`PATTERN_NAMES`)."""
        if self.emphysema_mask is None:
            return self.ild_pattern
        return np.where(self.emphysema_mask, np.uint8(EMPHYSEMA), self.ild_pattern)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    @property
    def lung_volume_ml(self) -> float:
        return float(self.lung_mask.sum()) * self.voxel_volume_ml


def default_shape(slice_thickness_mm: float) -> tuple[int, int, int]:
    """(z, y, x): 128 x 128 in-plane and enough slices for ~300 mm of z coverage."""
    nz = max(8, int(round(Z_COVERAGE_MM / slice_thickness_mm)))
    nz = min(nz, MAX_VOXELS // (IN_PLANE_PIXELS * IN_PLANE_PIXELS))
    return (nz, IN_PLANE_PIXELS, IN_PLANE_PIXELS)


def _check_inputs(ild_extent_pct: float, kernel: str, noise_hu: float,
                  slice_thickness_mm: float, shape: tuple[int, int, int] | None,
                  emphysema_pct: float = 0.0) -> None:
    if not 0.0 <= ild_extent_pct <= MAX_EXTENT_PCT:
        raise ValueError(f"ild_extent_pct must be in [0, {MAX_EXTENT_PCT}], got {ild_extent_pct}")
    if not 0.0 <= emphysema_pct <= MAX_EMPHYSEMA_PCT:
        raise ValueError(f"emphysema_pct must be in [0, {MAX_EMPHYSEMA_PCT}], got "
                         f"{emphysema_pct}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if not 0.0 <= noise_hu <= 200.0:
        raise ValueError(f"noise_hu must be in [0, 200], got {noise_hu}")
    if not 0.5 <= slice_thickness_mm <= 20.0:
        raise ValueError(f"slice_thickness_mm must be in [0.5, 20], got {slice_thickness_mm}")
    if shape is not None:
        if len(shape) != 3 or min(shape) < 8 or shape[1] != shape[2]:
            raise ValueError(f"shape must be (z, n, n) with every size >= 8, got {shape}")
        if int(np.prod(shape)) > 4 * MAX_VOXELS:
            raise ValueError(f"shape {shape} has more than {4 * MAX_VOXELS} voxels")


def _noise_gain(sigma: tuple[float, ...]) -> float:
    """Factor by which scipy's gaussian_filter (truncate 4) scales white-noise std."""
    gain = 1.0
    for s in sigma:
        radius = int(4.0 * s + 0.5)
        w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / s) ** 2)
        gain *= float(np.sqrt(np.sum((w / w.sum()) ** 2)))
    return gain


def _acquire(clean: np.ndarray, kernel: str, noise_hu: float,
             rng: np.random.Generator) -> np.ndarray:
    """(z, y, x) int16 HU: the reconstruction kernel's blur plus noise of std ``noise_hu``.

    ``sharp`` barely blurs the image and adds white noise (most energy at high spatial
    frequencies); ``smooth`` blurs image and noise together, so its noise is correlated
    over ~2 voxels; its pre-blur noise is scaled so the final std is still ``noise_hu``.
    """
    sigma = _BLUR_SIGMA_VOXELS[kernel]
    noise = rng.standard_normal(clean.shape, dtype=np.float32)
    if kernel == "smooth":
        noise *= np.float32(noise_hu / _noise_gain(sigma))
        noise += clean
        out = ndimage.gaussian_filter(noise, sigma, mode="nearest")
    else:
        out = ndimage.gaussian_filter(clean, sigma, mode="nearest")
        noise *= np.float32(noise_hu)
        out += noise
    np.clip(out, HU_MIN, HU_MAX, out=out)
    return np.rint(out).astype(np.int16)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def make_phantom(*, ild_extent_pct: float, kernel: str, noise_hu: float,
                 slice_thickness_mm: float, seed: int,
                 shape: tuple[int, int, int] | None = None,
                 scanner: str | None = None, progressor: bool = False,
                 emphysema_pct: float = 0.0) -> Phantom:
    """A synthetic chest CT with exactly ``ild_extent_pct`` (to one voxel) of lung as ILD:
    NSIP-like, or dense fibrosis reaching the pleura when ``progressor``; and
    ``emphysema_pct`` of lung as emphysema.

    ``shape`` (z, y, x), default :func:`default_shape`: the field of view is always
    345.6 mm and the organs are laid out over the whole z range, so a smaller shape gives a
    coarser picture of the same chest; the z spacing is always ``slice_thickness_mm``.
    Identical arguments give identical volumes (a stable patient without emphysema gets the
    same volume as before dense fibrosis and emphysema existed). Raises ValueError on
    impossible input.
    """
    _check_inputs(ild_extent_pct, kernel, noise_hu, slice_thickness_mm, shape,
                  float(emphysema_pct))
    shape = tuple(int(n) for n in shape) if shape is not None else default_shape(
        slice_thickness_mm)  # type: ignore[assignment]
    rng_anatomy, rng_ild, rng_noise, rng_emph = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    an = anat.build_anatomy(shape, slice_thickness_mm, rng_anatomy)
    flat = an.labels.reshape(-1)
    parenchyma = np.flatnonzero(flat == anat.LUNG)  # (p,)
    lung_mask = (an.labels == anat.LUNG) | (an.labels == anat.PULMONARY_VESSEL)
    n_lung = int(lung_mask.sum())
    coarse = (max(3, shape[0] // 8), max(3, shape[1] // 18), max(3, shape[2] // 18))
    low = disease.smooth_field_at(rng_ild, shape, coarse, parenchyma)  # (p,)
    draw = disease.draw_dense_ild if progressor else disease.draw_ild
    ild = draw(rng_ild, an, parenchyma, lung_mask, float(ild_extent_pct), low)
    emph = disease.draw_emphysema(rng_emph, an, np.setdiff1d(parenchyma, ild.index,
                                                             assume_unique=True),
                                  n_lung, float(emphysema_pct))
    clean = anat.TISSUE_HU[an.labels]  # (z, y, x) float32
    _, ky, _ = np.unravel_index(parenchyma, shape)
    clean.reshape(-1)[parenchyma] += (0.18 * (an.grid.y_mm[ky] + 80.0)  # gravity gradient
                                      + 8.0 * low)
    clean.reshape(-1)[ild.index] = ild.hu
    clean.reshape(-1)[emph.index] = emph.hu
    ild_mask, emph_mask = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    ild_mask.reshape(-1)[ild.index] = True
    emph_mask.reshape(-1)[emph.index] = True
    pattern = np.zeros(shape, dtype=np.uint8)
    pattern.reshape(-1)[ild.index] = ild.pattern
    g = an.grid
    return Phantom(
        hu=_frozen(_acquire(clean, kernel, float(noise_hu), rng_noise)),
        spacing_mm=g.spacing_mm,
        origin_mm=g.origin_mm,
        lung_mask=_frozen(lung_mask), ild_mask=_frozen(ild_mask), ild_pattern=_frozen(pattern),
        true_ild_extent_pct=100.0 * ild.index.size / n_lung,
        kernel=kernel, noise_hu=float(noise_hu), slice_thickness_mm=float(slice_thickness_mm),
        seed=int(seed), scanner=scanner, progressor=bool(progressor),
        emphysema_mask=_frozen(emph_mask), true_emphysema_pct=100.0 * emph.index.size / n_lung,
        vessel_mask=_frozen(an.labels == anat.PULMONARY_VESSEL))


def _row_value(scan_row: Mapping[str, Any] | Any, key: str, default: Any) -> Any:
    """``scan_row[key]``, or ``default`` when absent, None or NaN (older rows lack it)."""
    value = scan_row[key] if key in scan_row else None
    if value is None or (isinstance(value, float) and value != value):
        return default
    return value


def phantom_for_scan(scan_row: Mapping[str, Any] | Any,
                     shape: tuple[int, int, int] | None = None) -> Phantom:
    """The volume of one row of ``generate_cohort(...).scans`` (a pandas row or a mapping
    with true_ild_extent_pct, kernel, noise_hu, slice_thickness_mm, volume_seed and,
    optionally, scanner, progressor and emphysema_pct). Deterministic: the same row always
    gives the same volume."""
    scanner = scan_row["scanner"] if "scanner" in scan_row else None
    scanner = scanner if isinstance(scanner, str) else None  # None / NaN: unknown
    return make_phantom(ild_extent_pct=float(scan_row["true_ild_extent_pct"]),
                        kernel=str(scan_row["kernel"]),
                        noise_hu=float(scan_row["noise_hu"]),
                        slice_thickness_mm=float(scan_row["slice_thickness_mm"]),
                        seed=int(scan_row["volume_seed"]), shape=shape, scanner=scanner,
                        progressor=bool(_row_value(scan_row, "progressor", False)),
                        emphysema_pct=float(_row_value(scan_row, "emphysema_pct", 0.0)))


@dataclass(frozen=True)
class DenseCase:
    """The arguments of one dense-fibrosis phantom (a progressor's volume) for accuracy tests
    and benchmarks: ``make_phantom(**case.kwargs())``."""

    seed: int
    ild_extent_pct: float
    kernel: str
    slice_thickness_mm: float
    noise_hu: float
    emphysema_pct: float = 0.0

    def kwargs(self) -> dict[str, Any]:
        return {"ild_extent_pct": self.ild_extent_pct, "kernel": self.kernel,
                "noise_hu": self.noise_hu, "slice_thickness_mm": self.slice_thickness_mm,
                "seed": self.seed, "progressor": True, "emphysema_pct": self.emphysema_pct}


def dense_cases(n: int, seed: int, extent_range: tuple[float, float] = (5.0, 40.0)
                ) -> tuple[DenseCase, ...]:
    """``n`` dense-fibrosis phantoms with ILD extents spread evenly over ``extent_range`` and
    kernel, slice thickness, noise and emphysema drawn from ``seed`` (volume seeds
    seed * 1000 + i)."""
    rng = np.random.default_rng(seed)
    extents = np.linspace(*extent_range, n) if n > 1 else np.array([extent_range[0]])
    out = []
    for i, extent in enumerate(extents):
        kernel = KERNELS[int(rng.integers(len(KERNELS)))]
        noise = rng.uniform(26.0, 46.0) if kernel == "sharp" else rng.uniform(12.0, 26.0)
        out.append(DenseCase(seed * 1000 + i, round(float(extent), 2), kernel,
                             float(rng.choice((5.0, 6.0, 7.5))), round(float(noise), 1),
                             round(float(rng.uniform(1.0, 6.0)), 2) if rng.random() < 0.2
                             else 0.0))
    return tuple(out)
