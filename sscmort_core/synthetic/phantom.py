"""Synthetic chest CT volumes with a known ILD mask, deterministic from a seed.

Axis order and orientation (same as DICOM patient coordinates, LPS, and as every array in
sscmort): arrays are ``(z, y, x)``; ``x`` increases to the patient's left, ``y`` to the back
(the table is at the bottom of an axial image), ``z`` to the head. **Slice 0 is the most
caudal** (upper abdomen, lung bases) and the last slice the most cranial (lung apices), so
"basal" means low z. ``spacing_mm`` and ``origin_mm`` are ``(z, y, x)`` too.

The picture: air outside the body, a patient table, skin, fat, muscle, ribs, scapulae,
spine and sternum, heart and great vessels, liver and spleen below the diaphragm, trachea
and main bronchi (air, outside the lung mask, opening into the lungs only at the hila),
two lungs at about -860 HU with branching vessels (+40 HU). ILD is drawn with basal,
posterior and subpleural predominance: ground glass (-680..-420 HU) most, net-like
reticulation (-250..-100 HU) next, honeycombing (air cysts with walls) only in extensive
disease. Scanner variation: ``noise_hu`` is the standard deviation of the added noise;
``"sharp"`` barely blurs and adds white noise, ``"smooth"`` blurs image and noise; slice
thickness sets the z spacing and the slice count (z coverage stays ~300 mm).

Size: by default 128 x 128 pixels of 2.7 mm in-plane and ``round(300 / thickness)`` slices
(60 at 5 mm, 40 at 7.5 mm): at most ~1M voxels, ~0.1 s per volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from sscmort_core.synthetic import _anatomy as anat
from sscmort_core.synthetic.protocol import KERNELS

Z_COVERAGE_MM = 300.0
IN_PLANE_PIXELS = 128
MAX_VOXELS = 1_000_000
MAX_EXTENT_PCT = 90.0
HU_MIN, HU_MAX = -1024, 3071  # what 12-bit stored values with intercept -1024 can hold
GGO, RETICULATION, HONEYCOMBING = 1, 2, 3  # values of Phantom.ild_pattern
_BLUR_SIGMA_VOXELS = {"sharp": (0.3, 0.45, 0.45), "smooth": (0.4, 0.85, 0.85)}  # (z, y, x)


@dataclass(frozen=True)
class Phantom:
    """One synthetic CT volume and its ground truth. Arrays are read-only, ``(z, y, x)``.

    ``true_ild_extent_pct`` is ``100 * ild_mask.sum() / lung_mask.sum()`` exactly.
    """

    hu: np.ndarray  # (z, y, x) int16 Hounsfield units
    spacing_mm: tuple[float, float, float]  # (z, y, x)
    origin_mm: tuple[float, float, float]  # (z, y, x) patient position (LPS) of voxel 0,0,0
    lung_mask: np.ndarray  # (z, y, x) bool: parenchyma incl. ILD and vessels, no airways
    ild_mask: np.ndarray  # (z, y, x) bool, a subset of lung_mask
    ild_pattern: np.ndarray  # (z, y, x) uint8: 0 none, 1 GGO, 2 reticulation, 3 honeycombing
    true_ild_extent_pct: float
    kernel: str  # "sharp" or "smooth"
    noise_hu: float  # standard deviation of the added noise, HU
    slice_thickness_mm: float
    seed: int
    scanner: str | None = None  # "<manufacturer> <model>" of the scans table, if known

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
                  slice_thickness_mm: float, shape: tuple[int, int, int] | None) -> None:
    if not 0.0 <= ild_extent_pct <= MAX_EXTENT_PCT:
        raise ValueError(f"ild_extent_pct must be in [0, {MAX_EXTENT_PCT}], got {ild_extent_pct}")
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


def _smooth_weights(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) row-normalised Gaussian interpolation weights (upsampling a coarse
    random grid into a smooth field)."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)[:, None]
    w = np.exp(-0.5 * ((pos - np.arange(n_in)[None, :]) / 0.75) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def _smooth_field_at(rng: np.random.Generator, shape: tuple[int, int, int],
                     coarse: tuple[int, int, int], index: np.ndarray) -> np.ndarray:
    """(n,) float32 values at flat ``index`` of a smooth random field over ``shape``
    (z, y, x), scaled to unit variance over ``index``; correlation length about
    shape / coarse voxels. Separable Gaussian upsampling of a coarse normal grid, finished
    only at the requested voxels (the lungs are ~15% of the volume)."""
    g = rng.standard_normal(coarse)  # (i, j, k)
    wz, wy, wx = (_smooth_weights(n, c) for n, c in zip(shape, coarse))
    # einsum without BLAS: the same sums in the same order on every machine and thread count
    f = np.einsum("yj,ijx->iyx", wy, np.einsum("ijk,xk->ijx", g, wx))  # (i, y, x)
    kz, ky, kx = np.unravel_index(index, shape)
    values = np.zeros(index.size)
    for i in range(coarse[0]):  # z last, at the requested voxels only
        values += wz[kz, i] * f[i, ky, kx]
    values /= max(float(values.std()), 1e-6) if index.size else 1.0
    return values.astype(np.float32)


@dataclass(frozen=True)
class _Ild:
    """ILD voxels as flat indices into the volume, with their pattern and clean HU."""

    index: np.ndarray  # (n,) int64
    pattern: np.ndarray  # (n,) uint8, GGO / RETICULATION / HONEYCOMBING
    hu: np.ndarray  # (n,) float32


def _in_plane_rim(mask: np.ndarray) -> np.ndarray:
    """(z, y, x) bool: voxels of ``mask`` with a 4-neighbour outside it in their own slice."""
    inner = mask.copy()
    inner[:, 1:, :] &= mask[:, :-1, :]
    inner[:, :-1, :] &= mask[:, 1:, :]
    inner[:, :, 1:] &= mask[:, :, :-1]
    inner[:, :, :-1] &= mask[:, :, 1:]
    return mask & ~inner


def _ild_propensity(an: anat.Anatomy, index: np.ndarray, rim: np.ndarray,
                    low: np.ndarray) -> np.ndarray:
    """(n,) how early each parenchyma voxel (flat ``index``, with the smooth field ``low``
    (n,) there) becomes ILD: subpleural (periphery), basal
    (low t), posterior, plus a smooth random field for patchiness. The outermost voxel
    layer of each lung slice comes last: the immediate subpleural sparing typical of NSIP,
    the commonest SSc-ILD pattern (it also keeps the pleural surface at lung density, so
    threshold lung segmentation still finds the whole lung)."""
    kz, ky, _ = np.unravel_index(index, an.labels.shape)
    basal = 1.0 - an.grid.t[kz] / 0.96
    posterior = np.clip((an.grid.y_mm[ky] + 80.0) / 170.0, 0.0, 1.0)
    periphery = an.periphery_at(index)
    score = 1.3 * periphery + 1.0 * basal + 0.35 * posterior + 0.45 * low
    return score - 10.0 * rim.reshape(-1)[index]


def _net(rng: np.random.Generator, an: anat.Anatomy, index: np.ndarray,
         low: np.ndarray) -> np.ndarray:
    """(n,) bool: which voxels at flat ``index`` (smooth field ``low`` (n,) there) lie on a
    warped net of two families of near-axial planes 8 mm apart (reticulation lines; in
    honeycombing, the cyst walls)."""
    kz, ky, kx = np.unravel_index(index, an.labels.shape)
    g = an.grid
    on_line = np.zeros(index.size, dtype=bool)
    angle = rng.uniform(0.0, math.pi)
    for turn in (0.0, math.pi / 2 + rng.uniform(-0.4, 0.4)):
        a = angle + turn
        tilt = rng.uniform(-0.3, 0.3)  # small z component: planes nearly along z
        proj = math.cos(a) * g.x_mm[kx] + math.sin(a) * g.y_mm[ky] + tilt * g.z_mm[kz]
        warp = 1.5 * low  # bends the planes into an irregular net
        phase = 2.0 * math.pi * proj / 8.0 + rng.uniform(0.0, 2 * math.pi) + warp
        on_line |= np.abs(np.sin(phase)) < 0.3
    return on_line


def _draw_ild(rng: np.random.Generator, an: anat.Anatomy, parenchyma: np.ndarray,
              lung_mask: np.ndarray, extent_pct: float, low: np.ndarray) -> _Ild:
    """Pick exactly ``round(extent_pct / 100 * n_lung)`` parenchyma voxels (the most
    ILD-prone) and give them patterns and HU by severity (their rank of propensity).
    ``parenchyma`` (p,) flat indices; ``low`` (p,) the smooth field there."""
    n_ild = int(round(extent_pct / 100.0 * int(lung_mask.sum())))
    if n_ild > parenchyma.size:
        raise ValueError(f"ILD extent {extent_pct}% does not fit in this lung")
    if n_ild == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _Ild(empty, empty.astype(np.uint8), empty.astype(np.float32))
    score = _ild_propensity(an, parenchyma, _in_plane_rim(lung_mask), low)
    pick = np.argpartition(score, parenchyma.size - n_ild)[parenchyma.size - n_ild:]
    index = parenchyma[pick]
    severity = np.empty(n_ild, dtype=np.float32)  # uniform ranks in (0, 1)
    severity[np.argsort(score[pick])] = (np.arange(n_ild) + 0.5) / n_ild
    low = low[pick]
    line = _net(rng, an, index, low)
    honeycomb_share = 0.10 * min(max((extent_pct - 15.0) / 35.0, 0.0), 1.0)
    retic = (severity > 0.4) & line
    honey = severity > 1.0 - honeycomb_share
    pattern = np.full(n_ild, GGO, dtype=np.uint8)
    pattern[retic] = RETICULATION
    pattern[honey] = HONEYCOMBING
    hu = np.clip(-640.0 + 200.0 * severity + 25.0 * low, -680.0, -420.0)
    hu[retic] = -250.0 + 150.0 * severity[retic]
    hu[honey] = np.where(line[honey], -60.0, -960.0)  # cyst walls and air-filled lumens
    return _Ild(index, pattern, hu.astype(np.float32))


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
                 scanner: str | None = None) -> Phantom:
    """A synthetic chest CT with exactly ``ild_extent_pct`` (to one voxel) of lung as ILD.

    ``shape`` (z, y, x), default :func:`default_shape`: the field of view is always
    345.6 mm and the organs are laid out over the whole z range, so a smaller shape gives a
    coarser picture of the same chest; the z spacing is always ``slice_thickness_mm``.
    Identical arguments give identical volumes. Raises ValueError on impossible input.
    """
    _check_inputs(ild_extent_pct, kernel, noise_hu, slice_thickness_mm, shape)
    shape = tuple(int(n) for n in shape) if shape is not None else default_shape(
        slice_thickness_mm)  # type: ignore[assignment]
    rng_anatomy, rng_ild, rng_noise = (np.random.default_rng(s)
                                       for s in np.random.SeedSequence(seed).spawn(3))
    an = anat.build_anatomy(shape, slice_thickness_mm, rng_anatomy)
    flat = an.labels.reshape(-1)
    parenchyma = np.flatnonzero(flat == anat.LUNG)  # (p,)
    lung_mask = (an.labels == anat.LUNG) | (an.labels == anat.PULMONARY_VESSEL)
    n_lung = int(lung_mask.sum())
    coarse = (max(3, shape[0] // 8), max(3, shape[1] // 18), max(3, shape[2] // 18))
    low = _smooth_field_at(rng_ild, shape, coarse, parenchyma)  # (p,)
    ild = _draw_ild(rng_ild, an, parenchyma, lung_mask, float(ild_extent_pct), low)
    clean = anat.TISSUE_HU[an.labels]  # (z, y, x) float32
    _, ky, _ = np.unravel_index(parenchyma, shape)
    clean.reshape(-1)[parenchyma] += (0.18 * (an.grid.y_mm[ky] + 80.0)  # gravity gradient
                                      + 8.0 * low)
    clean.reshape(-1)[ild.index] = ild.hu
    ild_mask = np.zeros(shape, dtype=bool)
    ild_mask.reshape(-1)[ild.index] = True
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
        seed=int(seed), scanner=scanner)


def phantom_for_scan(scan_row: Mapping[str, Any] | Any,
                     shape: tuple[int, int, int] | None = None) -> Phantom:
    """The volume of one row of ``generate_cohort(...).scans`` (a pandas row or a mapping
    with true_ild_extent_pct, kernel, noise_hu, slice_thickness_mm, volume_seed and,
    optionally, scanner). Deterministic: the same row always gives the same volume."""
    scanner = scan_row["scanner"] if "scanner" in scan_row else None
    scanner = scanner if isinstance(scanner, str) else None  # None / NaN: unknown
    return make_phantom(ild_extent_pct=float(scan_row["true_ild_extent_pct"]),
                        kernel=str(scan_row["kernel"]),
                        noise_hu=float(scan_row["noise_hu"]),
                        slice_thickness_mm=float(scan_row["slice_thickness_mm"]),
                        seed=int(scan_row["volume_seed"]), shape=shape, scanner=scanner)
