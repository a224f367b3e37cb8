"""Lung segmentation for chest CT (threshold + connectivity + morphology + the chest wall's
geometry; no learned model).

Input: HU ``(z, y, x)`` in canonical orientation (z inferior -> superior, x from the patient's
right to left: what :func:`sscmort_core.imaging.read_volume` returns and what the synthetic
phantoms use) and ``spacing_mm`` (z, y, x). Slices must run feet to head: the trachea is
looked for in the top slices, and "left" is the lung at larger x.

Steps, on a working grid block-averaged in-plane to about 1.5 mm (0.84 mm input -> 1.68 mm;
coarser input is used as is), which also lowers noise:

1. air = HU < -320; air connected (3-D) to the in-plane border of the volume is outside the
   body (room air, under and inside the table) and dropped.
2. trachea and main bronchi: a central air blob of 0.4-9 cm^2 in the top 40 mm, followed down
   slice by slice - its -320 HU blob while that stays under 2.5 x the trachea's area, then
   only the lumen (< -950 HU after 3 x 3 smoothing) plus a 3 mm wall - until it would leak
   into the lung; removed from the lungs and returned as ``airway``.
3. the two largest remaining components are the lungs (the second only if it holds >= 10 % of
   the first and overlaps it in z, so bowel gas is dropped); one component spanning both
   sides of the body is split by in-plane erosion (3 or 6 voxels) and geodesic regrowth, or
   else at the column of least lung near the midline.
4. each lung is filled: in-plane holes up to 2 cm^2 (vessels) whatever their density, larger
   enclosed regions when their mean is <= -100 HU (ground glass, fibrosis; the liver dome
   under the diaphragm is not); then dense lung below -200 HU (ILD; fat is about -100)
   connected to the lung is grown into up to 20 mm, keeping only regions thicker than a
   one-voxel partial-volume rim. Bowel gas, the airway and the other lung are never taken.
   With the costal step (the default) the growth also passes honeycomb cyst walls
   (:func:`cyst_walls`).
5. with the costal step, the edge beside normal lung moves to half-way between air and soft
   tissue (:func:`half_way_rim`: a smooth kernel spreads the lung's air into the first voxel
   of the mediastinum and chest wall, which the -320 HU threshold keeps); then dense lung
   against the chest wall (consolidation, honeycombing, reticulation reaching the
   pleura: as dense as the chest wall, so no threshold keeps it) is bounded by the ribs
   instead (:mod:`sscmort_core.lungs.costal`): on rays from the chest's centre, where a
   diseased lung stops short of the pleura (the rib surface less the scan's healthy
   lung-to-rib gap), what lies between is lung, except bone, fat and the body's outside;
   then the lung and that fill are closed in-plane by a 3-pixel disc near the pleura (and,
   deeper, where below -100 HU: walls between honeycomb cysts), never past the pleura.
6. labels return to the input grid by nearest-neighbour upsampling (each working voxel is
   an f x f block of input voxels, so volumes are unbiased; the outline is blocky at f).

Steps 2-5 run inside the box around the air inside the body. Deterministic (no random
state). ``segment_lungs(..., costal=False)`` is the threshold mask of lungmask-1 (steps
1-4 and 6), kept as the benchmarks' baseline. Timings: docs/BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from sscmort_core.errors import EmptyMaskError
from sscmort_core.lungs import morphology
from sscmort_core.lungs.costal import costal_fill, midline_sides

# Bump when the mask changes: QCT rows, radiomics features and model inputs are keyed on it.
LUNG_MASK_VERSION = "lungmask-5"  # 2: dense lung bounded by the ribs (costal step); 3: the
# half-way edge beside normal lung, thin and neighbouring diseased rays filled, pleura +0.5 mm;
# 4: rays without an edge of their own borrow a dense neighbour's, ribs pooled over +-25 mm,
# pleura margin 1.35 mm (was 1.5); 5: the lung and its fill closed in-plane by a 3-pixel disc
# (costal.rind_closing: within 10 mm of the pleura, or deeper where below -100 HU), pleura
# margin 1.2 mm
AIR_HU = -320.0  # lung / airway air vs soft tissue, on the block-averaged grid
AIRWAY_HU = -950.0  # airway lumen (lung parenchyma is about -850)
TARGET_INPLANE_MM = 1.5  # working grid; finer input is block-averaged to about this
MIN_LUNG_ML = 30.0  # smaller air components are never a lung
MIN_POCKET_ML = 5.0  # other air pockets this big (bowel gas) are never filled into a lung
SECOND_LUNG_FRACTION = 0.10  # the second lung holds at least this share of the first
SMALL_HOLE_MM2 = 200.0  # enclosed in-plane regions up to this area are always lung (vessels)
HOLE_MAX_MEAN_HU = -100.0  # larger enclosed regions are lung only when this dense at most
TRACHEA_AREA_MM2 = (40.0, 900.0)  # plausible cross-section of the trachea
TRACHEA_SEARCH_MM = 40.0  # look for the trachea this far below the top of the inner air
AIRWAY_GROWTH = 2.5  # stop following the airway when its area exceeds this x the trachea's
DENSE_HU = -200.0  # dense lung (ILD) is grown into up to this density (fat is about -100) ...
DENSE_REACH_MM = 20.0  # ... and this far from the aerated lung
CYST_AIR_HU, CYST_AIR_NEIGHBOURS = -700.0, 4  # see cyst_walls
DISEASED_LUNG_HU = (-600.0, -150.0)  # ground glass and reticulation (a normal lung's edge
# blurred by a smooth kernel stays below; vessels are above)
EDGE_HALF_HU = -450.0  # about half-way between aerated lung (-860) and soft tissue (-80..+40)
EDGE_NORMAL_HU = -600.0  # ... the edge is moved there only beside normal (aerated) lung
COSTAL_PAD_MM = 40.0  # the working box reaches this far beyond the air (ribs behind dense lung)

def lung_mask_version() -> str:
    """The mask's version, read when called (what every derived cache is keyed on)."""
    return LUNG_MASK_VERSION


RIGHT, LEFT, AIRWAY = 1, 2, 3  # label values on the working grid
_IN_PLANE_4 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_4[1] = ndi.generate_binary_structure(2, 1)  # 2-D 4-connectivity, slice by slice
_GROW_STEP = np.zeros((3, 3, 3), dtype=bool)
_GROW_STEP[1] = True  # 8 in-plane neighbours
_GROW_STEP[:, 1, 1] = True  # and the voxels above and below


@dataclass(frozen=True)
class LungMask:
    """Lung masks, all (z, y, x) bool and read-only, with volumes in millilitres.

    ``left`` / ``right`` are the patient's left and right lung (left = larger x in canonical
    orientation). ``airway`` is the removed trachea / main bronchi, or None if none was found.
    """

    mask: np.ndarray = field(repr=False)
    left: np.ndarray = field(repr=False)
    right: np.ndarray = field(repr=False)
    volume_ml: float
    left_volume_ml: float
    right_volume_ml: float
    airway: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for arr in (self.mask, self.left, self.right, self.airway):
            if arr is not None:
                arr.flags.writeable = False


# ---------------------------------------------------------------------------------------------
# grid helpers
# ---------------------------------------------------------------------------------------------
def _factor(spacing_mm: tuple[float, float, float]) -> int:
    return max(1, int(round(TARGET_INPLANE_MM / min(spacing_mm[1], spacing_mm[2]))))


def block_mean(hu: np.ndarray, f: int) -> np.ndarray:
    """(z, ceil(y/f), ceil(x/f)) float32 mean over f x f in-plane blocks (edges replicated)."""
    if f == 1:
        return hu.astype(np.float32, copy=False)
    z, y, x = hu.shape
    py, px = (-y) % f, (-x) % f
    if py or px:
        hu = np.pad(hu, ((0, 0), (0, py), (0, px)), mode="edge")
    acc = np.zeros((z, hu.shape[1] // f, hu.shape[2] // f), dtype=np.float32)
    for i in range(f):
        for j in range(f):
            acc += hu[:, i::f, j::f]
    return acc / np.float32(f * f)


def block_count(mask: np.ndarray, f: int, pad: str = "edge") -> np.ndarray:
    """(z, ceil(y/f), ceil(x/f)) uint8 count of ``mask`` voxels in each f x f in-plane block.
    ``pad="edge"``: the last blocks' missing edge replicated, as :func:`block_mean`, so that
    ``block_mean(mask, f) > t`` is ``block_count(mask, f) > t * f * f`` without a float copy
    of the mask; ``pad="constant"``: it counts as outside (the input voxels a block stands
    for). Both are > 0 in the same blocks."""
    if f == 1:
        return mask.astype(np.uint8)
    if f * f > 255:
        raise ValueError(f"block factor {f} too large for uint8 counts")
    m = mask.view(np.uint8) if mask.dtype == bool else mask.astype(bool).view(np.uint8)
    z, y, x = m.shape
    py, px = (-y) % f, (-x) % f
    if py or px:
        m = np.pad(m, ((0, 0), (0, py), (0, px)), mode=pad)
    acc = m[:, 0::f, 0::f].copy()
    for i in range(f):
        for j in range(f):
            if i or j:
                acc += m[:, i::f, j::f]
    return acc


def _upsample(labels: np.ndarray, f: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a coarse (z, Y, X) label grid to ``shape``."""
    if f == 1:
        return labels
    up = np.repeat(np.repeat(labels, f, axis=1), f, axis=2)  # (z, Y*f, X*f)
    return up[:, : shape[1], : shape[2]]


def erode_square(mask: np.ndarray, r: int) -> np.ndarray:
    """In-plane binary erosion by a (2r+1) x (2r+1) square (outside counts as background)."""
    return morphology.erode_square(mask, r)


def dilate_square(mask: np.ndarray, r: int) -> np.ndarray:
    """In-plane binary dilation by a (2r+1) x (2r+1) square."""
    return morphology.dilate_square(mask, r)


def _border_labels(lab: np.ndarray) -> np.ndarray:
    """Labels that touch the in-plane border (y or x faces) of a (z, y, x) label image."""
    faces = np.concatenate([lab[:, 0, :].ravel(), lab[:, -1, :].ravel(),
                            lab[:, :, 0].ravel(), lab[:, :, -1].ravel()])
    return np.unique(faces[faces > 0])


def inner_air(air: np.ndarray) -> np.ndarray:
    """Air not connected (6-connectivity, 3-D) to the in-plane border: (z, y, x) bool."""
    lab, n = ndi.label(air)
    keep = np.ones(n + 1, dtype=bool)
    keep[0] = False
    keep[_border_labels(lab)] = False
    return keep[lab]


def holes_in_plane(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the in-plane holes of ``mask`` slice by slice (4-connected background)."""
    lab, n = ndi.label(~mask, structure=_IN_PLANE_4)
    border = _border_labels(lab)
    keep = np.ones(n + 1, dtype=bool)
    keep[0] = False
    keep[border] = False
    relabel = np.cumsum(keep) * keep  # hole labels 1..m, background 0
    return relabel[lab].astype(np.int32), int(keep.sum())


# ---------------------------------------------------------------------------------------------
# airway
# ---------------------------------------------------------------------------------------------
def _find_trachea(inner: np.ndarray, spacing: tuple[float, float, float]
                  ) -> tuple[int, np.ndarray] | None:
    """(z, blob mask) of the trachea in the top slices of the inner air, or None."""
    zs = np.nonzero(inner.any(axis=(1, 2)))[0]
    if zs.size == 0:
        return None
    pixel_mm2 = spacing[1] * spacing[2]
    xs = np.nonzero(inner.any(axis=(0, 1)))[0]
    centre_x, width = 0.5 * (xs[0] + xs[-1]), max(1, xs[-1] - xs[0])
    n_search = max(1, int(np.ceil(TRACHEA_SEARCH_MM / spacing[0])))
    for z in zs[::-1][:n_search]:
        lab, n = ndi.label(inner[z])
        if n == 0:
            continue
        areas = np.bincount(lab.ravel(), minlength=n + 1)[1:] * pixel_mm2
        cx = ndi.mean(np.indices(lab.shape)[1], lab, np.arange(1, n + 1))
        ok = ((areas >= TRACHEA_AREA_MM2[0]) & (areas <= TRACHEA_AREA_MM2[1])
              & (np.abs(np.asarray(cx) - centre_x) <= 0.15 * width))
        if ok.any():
            best = int(np.argmax(np.where(ok, areas, -1))) + 1
            return int(z), lab == best
    return None


def airway_mask(small: np.ndarray, inner: np.ndarray,
                spacing: tuple[float, float, float]) -> np.ndarray | None:
    """(z, y, x) bool trachea + main bronchi on the working grid, or None if not found."""
    found = _find_trachea(inner, spacing)
    if found is None:
        return None
    z0, seed = found
    airway = np.zeros_like(inner)
    airway[z0] = seed
    limit = AIRWAY_GROWTH * seed.sum()
    reach = max(1, int(round(6.0 / spacing[1])))  # bronchi shift sideways between slices
    wall = max(1, int(round(3.0 / spacing[1])))  # partial-volume rim around the lumen
    prev = seed
    for z in range(z0 - 1, -1, -1):
        near = _dilate2d(prev, reach)
        cand = _touching(inner[z], near)
        if not cand.any():
            break
        if cand.sum() > limit:  # merged with the lung: follow the lumen only
            lumen = _touching(ndi.uniform_filter(small[z], 3) < AIRWAY_HU, near)
            if not lumen.any() or lumen.sum() > limit:
                break
            cand = _dilate2d(lumen, wall) & inner[z]
        airway[z] = cand
        prev = cand
    for z in range(z0 + 1, inner.shape[0]):  # the trachea above the seed slice
        cand = _touching(inner[z], _dilate2d(airway[z - 1], reach))
        if not cand.any() or cand.sum() > limit:
            break
        airway[z] = cand
    return airway


def _dilate2d(mask2d: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation (cross, r iterations) computed on the bounding box only."""
    ys, xs = np.nonzero(mask2d.any(axis=1))[0], np.nonzero(mask2d.any(axis=0))[0]
    out = np.zeros_like(mask2d)
    if ys.size == 0:
        return out
    box = (slice(max(0, ys[0] - r), ys[-1] + r + 1), slice(max(0, xs[0] - r), xs[-1] + r + 1))
    out[box] = ndi.binary_dilation(mask2d[box], iterations=r)
    return out


def _touching(mask2d: np.ndarray, near: np.ndarray) -> np.ndarray:
    """The 2-D components of ``mask2d`` that overlap ``near``."""
    lab, n = ndi.label(mask2d)
    if n == 0:
        return np.zeros_like(mask2d)
    keep = np.zeros(n + 1, dtype=bool)
    keep[lab[near & mask2d]] = True
    keep[0] = False
    return keep[lab]


# ---------------------------------------------------------------------------------------------
# lung components
# ---------------------------------------------------------------------------------------------
def mean_x(mask: np.ndarray) -> float:
    """Mean x index of the voxels of a (z, y, x) mask (from column counts)."""
    counts = np.count_nonzero(mask, axis=(0, 1))  # (x,)
    return float(counts @ np.arange(mask.shape[2])) / max(1, int(counts.sum()))


def _z_overlap(a: slice, b: slice) -> float:
    inter = min(a.stop, b.stop) - max(a.start, b.start)
    return max(0, inter) / max(1, a.stop - a.start)


def lung_components(candidates: np.ndarray, voxel_ml: float, body_cx: float
                    ) -> tuple[list[np.ndarray], np.ndarray]:
    """The lungs among the candidate air components, and the other air pockets.

    Returns ([one or two (z, y, x) lung masks, joined lungs split], (z, y, x) mask of the
    other components of at least MIN_POCKET_ML, e.g. bowel gas). Raises EmptyMaskError.
    """
    lab, n = ndi.label(candidates)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    if n == 0 or sizes[order[0]] * voxel_ml < MIN_LUNG_ML:
        raise EmptyMaskError("no lung found: no air region inside the body is large enough "
                             f"(at least {MIN_LUNG_ML:.0f} mL)")
    pocket = sizes * voxel_ml >= MIN_POCKET_ML
    pocket[order[0]] = False
    first = lab == order[0]
    lungs = None
    if n > 1:
        second_label = order[1]
        big_enough = sizes[second_label] >= SECOND_LUNG_FRACTION * sizes[order[0]]
        if big_enough and sizes[second_label] * voxel_ml >= MIN_LUNG_ML:
            second = lab == second_label
            if _z_overlap(_z_range(second), _z_range(first)) >= 0.5:
                lungs = [first, second]
                pocket[second_label] = False
    return (lungs or split_joined(first, body_cx)), pocket[lab]


def _z_range(mask: np.ndarray) -> slice:
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    return slice(int(zs[0]), int(zs[-1]) + 1)


def split_joined(mask: np.ndarray, body_cx: float) -> list[np.ndarray]:
    """Split one component into two lungs if it spans both sides of the body; else [mask].

    Erodes in-plane (at most 6 times) until two large parts appear, then grows them back
    geodesically; voxels both reach, or neither, go by side of the midline ``body_cx``.
    """
    xs = np.nonzero(mask.any(axis=(0, 1)))[0]
    share = float(mask[:, :, : int(body_cx) + 1].sum()) / max(1, int(mask.sum()))
    if min(share, 1 - share) < 0.25 or xs.size == 0:
        return [mask]
    box = _bbox(mask, (0, 1, 1))
    m = mask[box]
    cx = body_cx - box[2].start
    for k in (3, 6):
        eroded = erode_square(m, k)
        lab, n = ndi.label(eroded)
        if n < 2:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        top = np.argsort(sizes)[::-1][:2] + 1
        if sizes[top[1] - 1] >= 0.2 * sizes[top[0] - 1]:
            parts = _grow_back(m, lab == top[0], lab == top[1], k + 1, cx)
            return [_unbox(p, box, mask.shape) for p in parts]
    cut = _midline_column(m, cx)
    right, left = m.copy(), m.copy()
    right[:, :, cut:] = False
    left[:, :, :cut] = False
    return [_unbox(right, box, mask.shape), _unbox(left, box, mask.shape)]


def _unbox(part: np.ndarray, box: tuple[slice, slice, slice], shape: tuple[int, ...]
           ) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    out[box] = part
    return out


def _grow_back(mask: np.ndarray, a: np.ndarray, b: np.ndarray, steps: int,
               cx: float) -> list[np.ndarray]:
    """Geodesic in-plane dilation of two seeds within ``mask``; [right part, left part]."""
    ga = ndi.binary_dilation(a, structure=_IN_PLANE_4, iterations=steps, mask=mask)
    gb = ndi.binary_dilation(b, structure=_IN_PLANE_4, iterations=steps, mask=mask)
    a_is_right = mean_x(a) < mean_x(b)
    right, left = (ga, gb) if a_is_right else (gb, ga)
    x = np.arange(mask.shape[2])[None, None, :]
    undecided = mask & (right == left)  # both or neither
    right = (right & ~left) | (undecided & (x <= cx))
    left = mask & ~right
    return [right, left]


def _midline_column(mask: np.ndarray, body_cx: float) -> int:
    counts = mask.sum(axis=(0, 1))  # (x,)
    lo = int(max(0, body_cx - 0.1 * mask.shape[2]))
    hi = int(min(mask.shape[2], body_cx + 0.1 * mask.shape[2]))
    return lo + int(np.argmin(counts[lo:hi])) if hi > lo else int(body_cx)


# ---------------------------------------------------------------------------------------------
# filling (vessels, ILD)
# ---------------------------------------------------------------------------------------------
def _bbox(mask: np.ndarray, pad: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    idx = [np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)]
    return tuple(slice(max(0, int(i[0]) - p), min(s, int(i[-1]) + p + 1))  # type: ignore
                 for i, p, s in zip(idx, pad, mask.shape))


def fill_lung(lung: np.ndarray, small: np.ndarray, forbidden: np.ndarray,
              spacing: tuple[float, float, float], walls: bool = False) -> np.ndarray:
    """One lung with vessels, nodules and dense (ILD) regions included: (z, y, x) bool.

    ``forbidden`` (z, y, x): voxels that are never lung (the airway, the other lung, bowel gas);
    an enclosed region touching them is not filled and dense growth never enters them.
    """
    reach = int(np.ceil(DENSE_REACH_MM / spacing[1]))
    box = _bbox(lung, (0, reach + 1, reach + 1))
    m, hu, bad = lung[box], small[box], forbidden[box]
    m = _fill_holes_selective(m, hu, bad, spacing)
    m = _grow_dense(m, hu, ~bad, reach, walls)
    m = _fill_holes_selective(m, hu, bad, spacing)
    out = np.zeros_like(lung)
    out[box] = m
    return out


def _fill_holes_selective(m: np.ndarray, hu: np.ndarray, bad: np.ndarray,
                          spacing: tuple[float, float, float]) -> np.ndarray:
    """Fill in-plane holes that are small (vessels) or lung-like (mean <= -100 HU), unless
    they hold forbidden voxels."""
    holes, n = holes_in_plane(m)
    if n == 0:
        return m
    inside = holes > 0
    ids = holes[inside]  # (h,) hole label of each hole voxel
    count = np.bincount(ids, minlength=n + 1)
    total = np.bincount(ids, weights=hu[inside], minlength=n + 1)
    n_bad = np.bincount(ids, weights=bad[inside], minlength=n + 1)
    mean = total / np.maximum(count, 1)
    fill = ((count * spacing[1] * spacing[2] <= SMALL_HOLE_MM2) | (mean <= HOLE_MAX_MEAN_HU))
    fill &= n_bad == 0
    fill[0] = False
    return m | fill[holes]


def cyst_walls(hu: np.ndarray) -> np.ndarray:
    """(z, y, x) bool: soft-tissue voxels (DENSE_HU..BONE) with at least CYST_AIR_NEIGHBOURS
    air voxels (< CYST_AIR_HU) among their 3 x 3 in-plane neighbours: the walls of honeycomb
    cysts and of traction bronchiectasis (a flat lung boundary has at most 3)."""
    air = ndi.uniform_filter((hu < CYST_AIR_HU).astype(np.float32), size=(1, 3, 3),
                             mode="nearest") * 9.0
    return (hu >= DENSE_HU) & (hu < 150.0) & (air >= CYST_AIR_NEIGHBOURS - 0.5)


def _grow_dense(m: np.ndarray, hu: np.ndarray, ok: np.ndarray, reach: int,
                walls: bool = False) -> np.ndarray:
    """Add dense lung (AIR_HU..DENSE_HU; with ``walls``, cyst walls too: :func:`cyst_walls`)
    connected to the lung within ``reach`` steps.

    Steps go to the 8 in-plane neighbours and the 2 along z (so a basal slice whose lung is
    all dense is reached from the slice above). Small air specks inside the dense region are
    passable, so noise does not stop the growth.
    """
    dense = (hu < DENSE_HU) | (cyst_walls(hu) if walls else False)
    dense &= ok & ~m
    if not dense.any():
        return m
    grown = ndi.binary_dilation(m, structure=_GROW_STEP, iterations=reach, mask=dense | m)
    added = grown & ~m
    # a partial-volume rim along every boundary is 1 voxel thick: keep only thicker regions
    # (with the cyst walls step, also a rim beside diseased lung: that rim is lung too)
    kept = dilate_square(erode_square(added, 1), 1)
    if walls:
        diseased = (hu > DISEASED_LUNG_HU[0]) & (hu < DISEASED_LUNG_HU[1])  # not vessels
        kept |= added & dilate_square(erode_square(m, 1) & diseased, 2)
    return m | kept


# ---------------------------------------------------------------------------------------------
# the public function
# ---------------------------------------------------------------------------------------------
def _check_input(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> None:
    if hu.ndim != 3 or min(hu.shape) < 2:
        raise ValueError(f"hu must be a 3-D (z, y, x) volume, got shape {hu.shape}")
    if len(spacing_mm) != 3 or min(spacing_mm) <= 0:
        raise ValueError(f"spacing_mm must be 3 positive numbers (z, y, x), got {spacing_mm}")


def _coarse_labels(small: np.ndarray, spacing: tuple[float, float, float], costal: bool = True
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """(z, Y, X) int8 labels 0 / 1 right / 2 left, and the airway mask, on the working grid."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    air = small < AIR_HU
    inner = inner_air(air)
    if not inner.any():
        raise EmptyMaskError("no lung found: there is no air inside the body")
    body_cx = mean_x(~air)  # the body's (and table's) mean x: about the midline
    # the rest works inside the box around the inner air (plus room for dense growth and for
    # the ribs beyond dense lung)
    pad = int(np.ceil((COSTAL_PAD_MM if costal else DENSE_REACH_MM) / spacing[1])) + 2
    box = _bbox(inner, (0, pad, pad))
    labels = np.zeros(small.shape, dtype=np.int8)
    airway_full = np.zeros(small.shape, dtype=bool)
    sub_labels, airway = _labels_in_box(small[box], inner[box], spacing, voxel_ml,
                                        body_cx - box[2].start, costal)
    labels[box] = sub_labels
    if airway is None:
        return labels, None
    airway_full[box] = airway
    return labels, airway_full


def _labels_in_box(small: np.ndarray, inner: np.ndarray, spacing: tuple[float, float, float],
                   voxel_ml: float, body_cx: float, costal: bool = True
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """_coarse_labels on the box around the inner air (arrays and body_cx in box coordinates)."""
    airway = airway_mask(small, inner, spacing)
    candidates = inner & ~airway if airway is not None else inner
    lungs, never = lung_components(candidates, voxel_ml, body_cx)  # never: bowel gas ...
    if airway is not None:
        never |= airway
    filled = []
    for i, lung in enumerate(lungs):
        other = lungs[1 - i] if len(lungs) == 2 else None
        filled.append(fill_lung(lung, small, never if other is None else never | other, spacing,
                                walls=costal))
    labels = np.zeros(small.shape, dtype=np.int8)
    centres = [mean_x(f) for f in filled]
    if len(filled) == 2:  # the one with smaller x is the patient's right lung
        sides = (RIGHT, LEFT) if centres[0] < centres[1] else (LEFT, RIGHT)
    else:
        sides = (RIGHT if centres[0] < body_cx else LEFT,)
    for lung, side in zip(filled, sides):
        labels[lung & (labels == 0)] = side
    if airway is not None:
        labels[airway] = 0
    if costal:
        labels[half_way_rim(labels > 0, small)] = 0
        _add_costal(labels, small, never | ~_body(small, inner), spacing, body_cx)
    return labels, airway


def half_way_rim(mask: np.ndarray, small: np.ndarray) -> np.ndarray:
    """(z, y, x) bool: rim voxels of ``mask`` that lie beyond the half-way edge of normal
    lung: denser than EDGE_HALF_HU but below AIR_HU (kept only by the air threshold), with
    a 4-neighbour in soft tissue outside the mask, and normal lung (the 3 x 3 in-plane mean
    of the mask's other voxels below EDGE_NORMAL_HU) beside them. A blurring (smooth)
    kernel spreads the lung's air into the first voxel of the mediastinum, heart or chest
    wall; the -320 HU threshold keeps that voxel, the half-way value does not."""
    soft_out = ~mask & (small >= AIR_HU)
    touches = np.zeros_like(mask)
    touches[:, 1:, :] |= soft_out[:, :-1, :]
    touches[:, :-1, :] |= soft_out[:, 1:, :]
    touches[:, :, 1:] |= soft_out[:, :, :-1]
    touches[:, :, :-1] |= soft_out[:, :, 1:]
    cand = mask & touches & (small > EDGE_HALF_HU) & (small < AIR_HU)
    if not cand.any():
        return cand
    inner = mask & ~cand
    weight = ndi.uniform_filter(inner.astype(np.float32), size=(1, 3, 3), mode="constant")
    total = ndi.uniform_filter(np.where(inner, small, 0.0).astype(np.float32), size=(1, 3, 3),
                               mode="constant")
    beside = total / np.maximum(weight, np.float32(1e-6))
    return cand & (weight > 0) & (beside < EDGE_NORMAL_HU)


def _body(small: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(z, y, x) bool: the largest component of what is not outside air (the patient, not
    the table or clothes beside it)."""
    lab, n = ndi.label(~((small < AIR_HU) & ~inner))
    if n <= 1:
        return lab > 0
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _add_costal(labels: np.ndarray, small: np.ndarray, never: np.ndarray,
                spacing: tuple[float, float, float], body_cx: float) -> None:
    """Step 5 (in place): dense lung between each lung and the pleura (:mod:`.costal`), on
    the side of the body's midline it lies (or the one lung's, when only one was found)."""
    lung = labels > 0
    ys = np.nonzero(lung.any(axis=(0, 2)))[0]
    centre = (0.5 * (ys[0] + ys[-1]), body_cx)
    add = costal_fill(small, lung, never, spacing, centre)
    if not add.any():
        return
    present = [side for side in (RIGHT, LEFT) if (labels == side).any()]
    halves = dict(zip((RIGHT, LEFT), midline_sides(labels.shape[2], body_cx)))
    zs = np.nonzero(add.any(axis=(1, 2)))[0]
    sl = slice(int(zs[0]), int(zs[-1]) + 1)  # holes closed only where lung was added
    lab, hu, bad_all, add = labels[sl], small[sl], never[sl], add[sl]
    for side in present:
        mine = add & halves[side] if len(present) == 2 else add
        grown = _fill_holes_selective((lab == side) | mine, hu, bad_all | (lab > 0)
                                      & (lab != side), spacing)
        lab[grown & (lab == 0) & ~bad_all] = side


def segment_lungs(hu: np.ndarray, spacing_mm: tuple[float, float, float], *,
                  costal: bool = True) -> LungMask:
    """Segment both lungs of a chest CT.

    hu: (z, y, x) Hounsfield units (int16 or float), canonical orientation (see module doc).
    spacing_mm: (z, y, x). Returns a :class:`LungMask` at the input's resolution.
    ``costal=False`` skips step 5 (the threshold mask of lungmask-1: the benchmarks' and the
    QC tests' baseline). Raises EmptyMaskError when no lung-sized air region is found.
    """
    _check_input(hu, spacing_mm)
    spacing = tuple(float(s) for s in spacing_mm)
    f = _factor(spacing)  # type: ignore[arg-type]
    small = block_mean(hu, f)  # (z, ceil(y/f), ceil(x/f))
    work_spacing = (spacing[0], spacing[1] * f, spacing[2] * f)
    labels, airway = _coarse_labels(small, work_spacing, costal)
    if airway is not None:
        labels[airway] = AIRWAY  # one upsampling for all masks
    full = _upsample(labels, f, hu.shape)  # (z, y, x)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    right, left = full == RIGHT, full == LEFT
    mask = right | left
    n_right, n_left = int(np.count_nonzero(right)), int(np.count_nonzero(left))
    return LungMask(mask=mask, left=left, right=right,
                    volume_ml=(n_right + n_left) * voxel_ml,
                    left_volume_ml=n_left * voxel_ml, right_volume_ml=n_right * voxel_ml,
                    airway=None if airway is None else full == AIRWAY)
