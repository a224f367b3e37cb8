"""Regional quantitative CT: the lungs by zone.

Zones, per lung (``right``, ``left``) and for both (``both``):

* ``whole``;
* ``upper`` / ``middle`` / ``lower``: thirds of each lung's own height (z extent);
* ``ventral`` / ``dorsal``: each lung's front and back half, split slice by slice at the
  middle of that lung's front-to-back extent in the slice;
* ``rind`` / ``core``: within :data:`RIND_MM` of the lung mask's surface (3-D distance with
  the voxel spacing; the surface includes the mediastinal and diaphragmatic pleura) or deeper;
* ``upper rind`` ... ``lower core``: thirds crossed with rind / core (the zone map).

Per zone: volume (mL), mean lung density (HU), LAA-950 (% of voxels below -950 HU,
emphysema), HAA (% in -600..-250 HU, inclusive), 15th percentile density (HU, to 1 HU) and ILD
extent (% of voxels the pattern map calls ILD). An empty zone has volume 0 and None elsewhere.

Computed from 24 disjoint cells (lung x third x half x rind/core) with one pass over the
voxels (histograms of whole HU), so every zone is exact and the cost is one distance
transform on the mask's working grid plus a few bincounts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from sscmort_core.errors import EmptyMaskError
from sscmort_core.lungs.qct import HAA_RANGE_HU
from sscmort_core.lungs.segmentation import LungMask, block_count

RIND_MM = 10.0
LAA_HU = -950.0
PERCENTILE = 15.0
LUNGS: tuple[str, ...] = ("both", "right", "left")
THIRDS: tuple[str, ...] = ("upper", "middle", "lower")
ZONES: tuple[str, ...] = ("whole", *THIRDS, "ventral", "dorsal", "rind", "core",
                          *(f"{t} {r}" for t in THIRDS for r in ("rind", "core")))
HU_LO, HU_HI = -1024, 3071  # histogram range (12-bit CT); values outside are clipped
TARGET_INPLANE_MM = 1.5  # the rind's distance transform runs on this grid


@dataclass(frozen=True)
class RegionMetrics:
    """QCT of one zone of one lung (or both)."""

    lung: str
    zone: str
    volume_ml: float
    mean_lung_density_hu: float | None
    laa950_pct: float | None
    haa_pct: float | None
    p15_hu: float | None
    ild_extent_pct: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class RegionalQCT:
    """Every (lung, zone) of :data:`LUNGS` x :data:`ZONES`, in that order."""

    regions: tuple[RegionMetrics, ...]

    def get(self, lung: str, zone: str) -> RegionMetrics:
        for r in self.regions:
            if r.lung == lung and r.zone == zone:
                return r
        raise KeyError((lung, zone))

    def to_list(self) -> list[dict[str, object]]:
        return [r.to_dict() for r in self.regions]


def _bbox(mask: np.ndarray) -> tuple[slice, slice, slice]:
    idx = [np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)]
    return tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)  # type: ignore[return-value]


def _thirds(mask: np.ndarray) -> np.ndarray:
    """(z,) int8 third of each slice within ``mask``'s z extent: 0 upper, 1 middle, 2 lower,
    -1 outside. Slice 0 is caudal (canonical orientation), so the top third is upper."""
    out = np.full(mask.shape[0], -1, dtype=np.int8)
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    if zs.size == 0:
        return out
    lo, hi = int(zs[0]), int(zs[-1]) + 1
    rel = (np.arange(lo, hi) - lo + 0.5) / (hi - lo)  # 0 at the base, 1 at the apex
    out[lo:hi] = np.where(rel >= 2 / 3, 0, np.where(rel >= 1 / 3, 1, 2))
    return out


def _dorsal(mask: np.ndarray) -> np.ndarray:
    """(z, y, x) bool: voxels of ``mask`` behind the middle of its y extent in their slice
    (y grows towards the back)."""
    rows = mask.any(axis=2)  # (z, y)
    y = np.arange(mask.shape[1])
    has = rows.any(axis=1)
    first = np.where(has, np.argmax(rows, axis=1), 0)
    last = np.where(has, mask.shape[1] - 1 - np.argmax(rows[:, ::-1], axis=1), 0)
    mid = 0.5 * (first + last)  # (z,)
    return mask & (y[None, :, None] > mid[:, None, None])


def rind_mask(mask: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """(z, y, x) bool: voxels of ``mask`` within RIND_MM of its surface (3-D Euclidean
    distance to the nearest non-mask voxel, with the voxel spacing), computed on a grid of
    about TARGET_INPLANE_MM in-plane and returned on the input grid."""
    f = max(1, int(round(TARGET_INPLANE_MM / min(spacing_mm[1], spacing_mm[2]))))
    small = block_count(mask, f) >= (f * f + 1) // 2  # block mean >= 0.5: (z, Y, X)
    padded = np.pad(small, 1)  # outside the image counts as outside the lung
    dist = ndi.distance_transform_edt(padded, sampling=(spacing_mm[0], spacing_mm[1] * f,
                                                        spacing_mm[2] * f))[1:-1, 1:-1, 1:-1]
    near = np.repeat(np.repeat(dist <= RIND_MM, f, axis=1), f, axis=2)
    return mask & near[:, :mask.shape[1], :mask.shape[2]]


def _cells(lungs: LungMask, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """(z, y, x) int16 cell of each voxel, -1 outside the lungs: side (0 right, 1 left) * 12
    + third * 4 + dorsal * 2 + core."""
    cell = np.full(lungs.mask.shape, -1, dtype=np.int16)
    core = lungs.mask & ~rind_mask(lungs.mask, spacing_mm)
    for side, m in enumerate((lungs.right, lungs.left)):
        if not m.any():
            continue
        third = _thirds(m)[:, None, None]  # int8: every sum below stays int8 (at most 23)
        value = np.int8(side * 12) + third * np.int8(4) + _dorsal(m).view(np.int8) * np.int8(2)
        value += core.view(np.int8)
        cell[m] = value[m]
    return cell


def _zone_cells() -> dict[tuple[str, str], np.ndarray]:
    """For every (lung, zone): the boolean (24,) set of cells it is made of."""
    side = np.arange(24) // 12
    third, dorsal, core = (np.arange(24) // 4) % 3, (np.arange(24) // 2) % 2, np.arange(24) % 2
    out = {}
    for lung, in_lung in (("both", np.ones(24, bool)), ("right", side == 0),
                          ("left", side == 1)):
        sets = {"whole": in_lung, "ventral": in_lung & (dorsal == 0),
                "dorsal": in_lung & (dorsal == 1), "rind": in_lung & (core == 0),
                "core": in_lung & (core == 1)}
        for t, name in enumerate(THIRDS):
            sets[name] = in_lung & (third == t)
            sets[f"{name} rind"] = in_lung & (third == t) & (core == 0)
            sets[f"{name} core"] = in_lung & (third == t) & (core == 1)
        for zone in ZONES:
            out[(lung, zone)] = sets[zone]
    return out


def regional_qct(hu: np.ndarray, lungs: LungMask, spacing_mm: tuple[float, float, float],
                 ild: np.ndarray) -> RegionalQCT:
    """QCT of every zone (module docstring) of ``hu`` (z, y, x) HU over ``lungs``; ``ild``
    (z, y, x) bool: the voxels the pattern map calls ILD. Raises EmptyMaskError for an
    empty mask, ValueError for mismatched shapes."""
    if hu.shape != lungs.mask.shape or ild.shape != hu.shape:
        raise ValueError(f"hu {hu.shape}, lung mask {lungs.mask.shape} and ild {ild.shape} "
                         "must be the same (z, y, x) shape")
    if not lungs.mask.any():
        raise EmptyMaskError("the lung mask is empty, so no regional QCT can be measured")
    box = _bbox(lungs.mask)
    cell = _cells(LungMask(lungs.mask[box], lungs.left[box], lungs.right[box], lungs.volume_ml,
                           lungs.left_volume_ml, lungs.right_volume_ml), spacing_mm)
    inside = cell >= 0
    c = cell[inside].astype(np.int64)
    v = np.clip(hu[box][inside].astype(np.int64), HU_LO, HU_HI)
    ild = ild[box]
    n_bins = HU_HI - HU_LO + 1
    hist = np.bincount(c * n_bins + (v - HU_LO), minlength=24 * n_bins).reshape(24, n_bins)
    total = np.bincount(c, weights=v.astype(np.float64), minlength=24)
    n_ild = np.bincount(c, weights=ild[inside].astype(np.float64), minlength=24)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    grid = np.arange(HU_LO, HU_HI + 1)
    laa_bins = grid < LAA_HU
    haa_bins = (grid >= HAA_RANGE_HU[0]) & (grid <= HAA_RANGE_HU[1])
    rows = []
    for (lung, zone), members in _zone_cells().items():
        h = hist[members].sum(axis=0)
        n = int(h.sum())
        if n == 0:
            rows.append(RegionMetrics(lung, zone, 0.0, None, None, None, None, None))
            continue
        cum = np.cumsum(h)
        p15 = float(grid[int(np.searchsorted(cum, PERCENTILE / 100.0 * n))])
        rows.append(RegionMetrics(
            lung, zone, n * voxel_ml, float(total[members].sum() / n),
            100.0 * float(h[laa_bins].sum()) / n, 100.0 * float(h[haa_bins].sum()) / n, p15,
            100.0 * float(n_ild[members].sum()) / n))
    order = {(lung, zone): i for i, (lung, zone) in
             enumerate((lung, zone) for lung in LUNGS for zone in ZONES)}
    return RegionalQCT(tuple(sorted(rows, key=lambda r: order[(r.lung, r.zone)])))
