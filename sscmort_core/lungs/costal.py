"""The costal surface of the lungs: dense lung between the aerated lung and the rib cage.

A threshold mask loses dense subpleural disease (consolidation, honeycombing, reticulation
against the chest wall): by density it is soft tissue like the chest wall. Geometry tells them
apart. Seen from the middle of the chest, every ray crosses the mediastinum (or the liver
dome), then the lung, then the chest wall; the lung's outer (costal) surface lies on the inner
surface of the ribs, a thin layer of soft tissue apart. So, slice by slice, on rays from the
chest's centre (angle bins about a pixel of arc wide at 7 cm, :func:`n_rays`):

1. ``r_lung``: the outermost pixel of the lung (opened in-plane, so cysts on thin stalks do
   not count) on each ray, and where the HU crosses the lung edge (-320 HU) there, to a
   fraction of a pixel (the median of the crossings within 3 mm of the outermost), with the
   HU 1.5 pixels inside it (normal lung, or disease); a ray whose outermost pixel has no
   such crossing (off the 4-connected rim, or beside the ray's centre line) takes the edge of
   a neighbouring ray whose lung ends in disease (:func:`borrowed_edge`), for the fill only;
2. ``r_bone``: the first crossing into bone (> :data:`BONE_HU`, inside the body) beyond the
   lung, to a fraction of a pixel; the rib surface ``r_rib`` is a low quantile of it over
   neighbouring slices and rays (ribs are oblique, so each slice cuts only some of them; the
   intercostal gaps and the scapulae behind them are skipped), then smoothed;
3. the scan's healthy lung-to-rib gap per angle: the median over slices of the rays whose
   lung is normal up to an edge that touches the chest wall (not a fat layer), the all-angle
   median where an angle has too few, smoothed over angles, at most :data:`MAX_GAP_MM`;
4. the pleura ``r_wall = r_rib - gap + WALL_SHIFT_MM``. A ray is filled where its lung ends
   in disease (:func:`diseased_rays`: denser than :data:`DISEASED_INSIDE_HU` just inside the
   edge, or too thin there to tell, or beside such a ray: a normal lung's edge that stops
   short of the ribs ends at the heart, the apex's fat or the diaphragm, not at dense lung)
   at least :data:`MIN_GAP_MM` short of the pleura, and where the run beyond
   is not mostly fat. Every pixel of the run (ray values interpolated between the two rays
   nearest the pixel's angle) is lung, except bone, voxels that are never lung (airway,
   bowel gas, outside the body), and from the first fat layer (-150..-50 HU after a 3 x 3
   mean, at least 3 pixels wide) outward.
5. the lung and its fill are closed in-plane by a disc (:func:`rind_closing`), each side of
   the midline on its own: the notches between filled rays within CLOSE_RIND_MM of the
   pleura, and, deeper, the walls between honeycomb cysts and reticulation strands (less
   dense than CLOSE_DEEP_HU, so not vessels or the heart), never past the pleura.

The same rays measure what any mask leaves out (:func:`costal_gap`, a QC check). Pure
functions of a (z, y, x) HU grid, masks and the spacing; deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from sscmort_core.lungs.morphology import dilate_square, erode_square, window_1d

RAY_ARC_MM = 70.0  # rays are about one pixel apart at this distance from the centre
BONE_HU = 200.0  # cortex and marrow of ribs, spine, scapulae (cartilage is left out)
LUNG_EDGE_HU = -320.0  # the aerated lung's edge (the threshold of the air mask)
FAT_HU = (-150.0, -50.0)  # extrapleural / mediastinal fat after a 3 x 3 mean
MAX_RUN_FAT_SHARE = 0.5  # a ray whose run beyond the lung is mostly fat-dense is not filled
MIN_GAP_MM = 3.0  # a ray's lung stopping this far short of the pleura is filled
RIB_WINDOW_MM = 25.0  # half-height of the slab of slices the rib surface is pooled over
RIB_WINDOW_RAYS = 1  # ... and half-width in rays
RIB_QUANTILE = 25.0  # percent: ribs are the innermost bone; scapulae lie further out
RIB_SMOOTH_RAYS = 2  # then averaged over +-2 rays and half the slab
FRONT_MM = 3.0  # a ray's surface: the median of its crossings within this of the extreme
WALL_SHIFT_MM = 1.2  # the pleura lies this much beyond the healthy gap's estimate (margin)
HEALTHY_INSIDE_HU = -700.0  # a ray is healthy where its lung is this airy just inside the edge
DISEASED_INSIDE_HU = -700.0  # a ray is filled only where its lung is denser inside the edge
CONTACT_HU = -30.0  # just beyond a healthy lung's edge: the chest wall, not a fat layer
MIN_HEALTHY_SLICES = 5  # an angle with fewer healthy slices takes the all-angle gap
MAX_GAP_MM = 4.0  # the healthy lung-to-rib gap is at most this
GAP_SMOOTH_MM = 40.0  # the gap is averaged over this much arc at RAY_ARC_MM
NOT_LUNG_INSIDE_HU = -1000.0  # lung_edge's marker (and below): the point inside is not lung
DISEASE_SPREAD_RAYS = 2  # a ray within this many rays of a diseased one (same slice) is too
EDGE_BORROW_RAYS = 2  # a ray with lung but no edge of its own takes the edge of a ray this close
DONOR_HU = -450.0  # ... whose lung just inside its edge is denser than this (half-way between
# aerated lung and soft tissue: dense lung, not ground glass)
CLOSE_PX = 3  # the lung and its fill are closed in-plane by a disc of this radius (pixels) ...
CLOSE_RIND_MM = 10.0  # ... adding only voxels this close inside the pleura (rind_closing)
CLOSE_DEEP_HU = -100.0  # ... or, deeper, voxels less dense than this (not vessel or heart)


def n_rays(pixel_mm: float) -> int:
    """Number of angle bins for in-plane pixels of ``pixel_mm``: each bin holds about one
    pixel per radius step from RAY_ARC_MM outward (fewer, and a ray misses pixels)."""
    return int(np.clip(round(2.0 * math.pi * RAY_ARC_MM / pixel_mm), 64, 720))


@dataclass(frozen=True)
class Rays:
    """Ray geometry of one in-plane grid, shared by every slice.

    Per pixel (y, x): ``bins`` its ray, ``pos`` its continuous angle position in rays (bin k
    is centred on k + 0.5), ``radius`` mm from the centre, ``unit`` (2, y, x) the outward
    direction in pixels per mm. ``order`` sorts the flattened pixels by ray, ``starts`` (n,)
    where each ray begins in that order, ``empty`` (n,) rays without pixels.
    """

    n: int
    centre_yx: tuple[float, float]  # pixels
    spacing_yx: tuple[float, float]  # mm
    bins: np.ndarray
    pos: np.ndarray
    radius: np.ndarray
    unit: np.ndarray
    order: np.ndarray
    starts: np.ndarray
    empty: np.ndarray

    @property
    def radius_sorted(self) -> np.ndarray:
        return self.radius.ravel()[self.order]

    @property
    def bin_sorted(self) -> np.ndarray:
        return self.bins.ravel()[self.order]


def make_rays(shape_yx: tuple[int, int], spacing_yx: tuple[float, float],
              centre_yx: tuple[float, float]) -> Rays:
    """Rays of every pixel of a (y, x) grid around ``centre_yx`` (pixels)."""
    n = n_rays(min(spacing_yx))
    yy, xx = np.indices(shape_yx, dtype=np.float32)
    dy = (yy - np.float32(centre_yx[0])) * np.float32(spacing_yx[0])
    dx = (xx - np.float32(centre_yx[1])) * np.float32(spacing_yx[1])
    pos = (np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * n  # (y, x) in [0, n]
    bins = np.floor(pos).astype(np.int64) % n
    radius = np.hypot(dy, dx)
    safe = np.maximum(radius, np.float32(1e-3))
    unit = np.stack([dy / safe / np.float32(spacing_yx[0]), dx / safe / np.float32(spacing_yx[1])])
    order = np.argsort(bins.ravel(), kind="stable")
    counts = np.bincount(bins.ravel(), minlength=n)
    starts = np.minimum(np.concatenate([[0], np.cumsum(counts)[:-1]]), max(0, bins.size - 1))
    return Rays(n, (float(centre_yx[0]), float(centre_yx[1])),
                (float(spacing_yx[0]), float(spacing_yx[1])), bins, pos.astype(np.float32),
                radius, unit, order, starts, counts == 0)


def hu_on_rays(small: np.ndarray, rays: Rays, radius_mm: np.ndarray) -> np.ndarray:
    """(Z, n) HU (bilinear) at ``radius_mm`` (Z, n) along each ray's centre line; NaN where
    the radius is NaN."""
    z = np.broadcast_to(np.arange(small.shape[0])[:, None], radius_mm.shape)
    angle = (np.arange(rays.n) + 0.5) / rays.n * 2 * np.pi - np.pi  # (n,)
    r = np.nan_to_num(radius_mm, nan=0.0)
    y = rays.centre_yx[0] + r * np.sin(angle)[None, :] / rays.spacing_yx[0]
    x = rays.centre_yx[1] + r * np.cos(angle)[None, :] / rays.spacing_yx[1]
    out = ndi.map_coordinates(small, [z.ravel(), y.ravel(), x.ravel()], order=1,
                              mode="nearest").reshape(radius_mm.shape)
    return np.where(np.isfinite(radius_mm), out, np.nan).astype(np.float32)


def outer_radius(mask: np.ndarray, rays: Rays) -> np.ndarray:
    """(Z, n) mm: the outermost pixel of ``mask`` (Z, y, x) on each ray; NaN where none."""
    flat = mask.reshape(mask.shape[0], -1)[:, rays.order]  # (Z, P) in ray order
    vals = np.where(flat, rays.radius_sorted[None, :], -np.inf).astype(np.float32)
    out = np.maximum.reduceat(vals, rays.starts, axis=1)  # (Z, n)
    out[:, rays.empty] = -np.inf
    return np.where(np.isfinite(out), out, np.nan)


def first_beyond(mask: np.ndarray, r_from: np.ndarray, rays: Rays) -> np.ndarray:
    """(Z, n) mm: the innermost pixel of ``mask`` (Z, y, x) beyond ``r_from`` (Z, n) on each
    ray; NaN where none (or where ``r_from`` is NaN)."""
    flat = mask.reshape(mask.shape[0], -1)[:, rays.order]  # (Z, P)
    start = r_from[:, rays.bin_sorted]  # (Z, P); NaN compares False
    radius = rays.radius_sorted[None, :]
    vals = np.where(flat & (radius > start), radius, np.inf).astype(np.float32)
    out = np.minimum.reduceat(vals, rays.starts, axis=1)
    out[:, rays.empty] = np.inf
    return np.where(np.isfinite(out), out, np.nan)


def _rim(mask: np.ndarray) -> np.ndarray:
    """(Z, y, x) bool: pixels of ``mask`` with a 4-neighbour outside it in their slice (the
    image border counts as inside)."""
    inner = mask.copy()
    inner[:, 1:, :] &= mask[:, :-1, :]
    inner[:, :-1, :] &= mask[:, 1:, :]
    inner[:, :, 1:] &= mask[:, :, :-1]
    inner[:, :, :-1] &= mask[:, :, 1:]
    return mask & ~inner


def _crossings(small: np.ndarray, z: np.ndarray, y: np.ndarray, x: np.ndarray, rays: Rays,
               threshold: float, sign: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-pixel radius (mm) where the HU crosses ``threshold`` between each pixel (z, y, x)
    and the point one pixel further out (``sign`` +1) or in (-1) along its ray (bilinear),
    the HU one and a half pixels the other way (what lies behind the edge), and whether the
    crossing is there at all (the pixel faces that way)."""
    uy, ux = rays.unit[0, y, x], rays.unit[1, y, x]
    step = 1.0 / np.maximum(np.hypot(uy, ux), 1e-6)  # mm along the ray per pixel
    here = small[z, y, x].astype(np.float32)
    there, behind = (ndi.map_coordinates(small, [z, y + f * uy * step, x + f * ux * step],
                                         order=1, mode="nearest")
                     for f in (sign, -1.5 * sign))
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.nan_to_num(np.clip((threshold - here) / (there - here), 0.0, 1.0))
    facing = (there > threshold) if sign > 0 else (there <= threshold)
    return (rays.radius[y, x] + sign * frac * step).astype(np.float32), behind, facing


def _front_per_ray(values: np.ndarray, extra: np.ndarray, z: np.ndarray, bins: np.ndarray,
                   shape: tuple[int, int], largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """(Z, n) per (z, ray): the median of the ``values`` within FRONT_MM of the largest
    (smallest) one - the surface at the ray's centre angle, not at its most outlying pixel -
    and ``extra`` of that median element; NaN where a ray has none."""
    out, out_extra = np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32)
    if values.size == 0:
        return out, out_extra
    flat = z * shape[1] + bins
    order = np.lexsort((values, flat))  # by ray, then by value
    f, v, e = flat[order], values[order], extra[order]
    starts = np.flatnonzero(np.r_[True, f[1:] != f[:-1]])
    group = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, f.size]))
    if largest:
        keep = v >= np.maximum.reduceat(v, starts)[group] - FRONT_MM
    else:
        keep = v <= np.minimum.reduceat(v, starts)[group] + FRONT_MM
    f, v, e, group = f[keep], v[keep], e[keep], group[keep]
    counts = np.bincount(group, minlength=starts.size)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    mid = first + (counts - 1) // 2  # the lower median of each (sorted) group
    out.reshape(-1)[f[mid]] = v[mid]
    out_extra.reshape(-1)[f[mid]] = e[mid]
    return out, out_extra


def lung_edge(small: np.ndarray, lung: np.ndarray, rays: Rays
              ) -> tuple[np.ndarray, np.ndarray]:
    """((Z, n) sub-pixel radius of the outer lung edge (the -320 HU crossings at the
    outward-facing rim pixels of ``lung``, the outermost front of each ray), (Z, n) HU 1.5
    pixels inside it, or -1000 where that point is not lung: a lung thinner than that there
    tells nothing); NaN where a ray has no lung."""
    z, y, x = np.nonzero(_rim(lung))
    r, inside, facing = _crossings(small, z, y, x, rays, LUNG_EDGE_HU, 1.0)
    uy, ux = rays.unit[0, y, x], rays.unit[1, y, x]
    step = 1.5 / np.maximum(np.hypot(uy, ux), 1e-6)
    iy = np.clip(np.rint(y - uy * step).astype(np.int64), 0, lung.shape[1] - 1)
    ix = np.clip(np.rint(x - ux * step).astype(np.int64), 0, lung.shape[2] - 1)
    inside = np.where(lung[z, iy, ix], inside, np.float32(-1000.0))
    return _front_per_ray(r[facing], inside[facing], z[facing], rays.bins[y, x][facing],
                          (small.shape[0], rays.n), True)


def bone_edge(bone: np.ndarray, small: np.ndarray, beyond: np.ndarray, rays: Rays
              ) -> np.ndarray:
    """(Z, n) sub-pixel radius where the HU crosses into ``bone`` (Z, y, x bool, > BONE_HU)
    at the innermost inward-facing bone surface beyond ``beyond`` (Z, n) on each ray; NaN
    where none."""
    z, y, x = np.nonzero(_rim(bone))
    keep = rays.radius[y, x] > np.nan_to_num(beyond[z, rays.bins[y, x]], nan=np.inf)
    z, y, x = z[keep], y[keep], x[keep]
    r, _, facing = _crossings(small, z, y, x, rays, BONE_HU, -1.0)
    return _front_per_ray(r[facing], r[facing], z[facing], rays.bins[y, x][facing],
                          (small.shape[0], rays.n), False)[0]


def nan_quantile(values: np.ndarray, q: float, axis: int = 0) -> np.ndarray:
    """The ``q``-th percentile (lower order statistic) along ``axis`` ignoring NaN; NaN
    where every value is NaN (``np.nanpercentile(..., method="lower")``, by one sort)."""
    arr = np.sort(np.moveaxis(values, axis, 0), axis=0)  # NaN sorts last
    n = np.isfinite(arr).sum(axis=0)
    idx = np.floor(q / 100.0 * np.maximum(n - 1, 0)).astype(np.int64)
    out = np.take_along_axis(arr, idx[None], axis=0)[0]
    return np.where(n > 0, out, np.nan)


def _pool(values: np.ndarray, dz: int, dk: int, q: float) -> np.ndarray:
    """(Z, n) NaN-ignoring ``q``-th percentile over slices z +- dz and rays k +- dk."""
    z = values.shape[0]
    padded = np.pad(values, ((dz, dz), (0, 0)), constant_values=np.nan)
    stack = [np.roll(padded[i:i + z], s, axis=1)
             for i in range(2 * dz + 1) for s in range(-dk, dk + 1)]
    return nan_quantile(np.stack(stack), q).astype(np.float32)  # over (W, Z, n)


def _smooth2d(values: np.ndarray, dz: int, dk: int) -> np.ndarray:
    """(Z, n) NaN-ignoring moving average over slices z +- dz and rays k +- dk (circular);
    NaN stays NaN."""
    z = values.shape[0]
    ok = np.isfinite(values)
    v = np.pad(np.where(ok, values, 0.0), ((dz, dz), (0, 0)))
    c = np.pad(ok.astype(np.float32), ((dz, dz), (0, 0)))
    total, count = np.zeros(values.shape), np.zeros(values.shape)
    for i in range(2 * dz + 1):
        for s in range(-dk, dk + 1):
            total += np.roll(v[i:i + z], s, axis=1)
            count += np.roll(c[i:i + z], s, axis=1)
    return np.where(ok, total / np.maximum(count, 1.0), np.nan).astype(np.float32)


def _circular_mean(values: np.ndarray, half: int) -> np.ndarray:
    """(n,) moving average over +-half rays, wrapping around, ignoring NaN."""
    if half < 1:
        return values
    ok = np.isfinite(values)
    v = np.where(ok, values, 0.0)
    kernel = np.ones(2 * half + 1)
    s = np.convolve(np.concatenate([v[-half:], v, v[:half]]), kernel, mode="valid")
    c = np.convolve(np.concatenate([ok[-half:], ok, ok[:half]]).astype(float), kernel,
                    mode="valid")
    return np.where(c > 0, s / np.maximum(c, 1), np.nan)


@dataclass(frozen=True)
class CostalSurface:
    """The lung's costal surface on one grid: (Z, n) mm from the centre, NaN where unknown -
    ``r_lung`` (outermost lung pixel), ``edge`` (its sub-pixel lung edge), ``r_wall``
    (estimated pleura); ``gap_mm`` (n,) the healthy lung-to-rib gap per angle."""

    rays: Rays
    r_lung: np.ndarray
    edge: np.ndarray
    inside_hu: np.ndarray
    r_wall: np.ndarray
    gap_mm: np.ndarray


def healthy_gap(gap: np.ndarray, inside_hu: np.ndarray, outside_hu: np.ndarray,
                n_rays_: int) -> np.ndarray:
    """(n,) mm: the healthy lung-to-rib gap per angle: the median over slices of the gaps
    (Z, n) of rays whose lung is normal just inside its edge (``inside_hu`` below
    HEALTHY_INSIDE_HU) and touches the chest wall (``outside_hu``, just beyond the edge,
    denser than fat: CONTACT_HU), or the median over every angle where an angle has fewer
    than MIN_HEALTHY_SLICES such slices; smoothed over angles, clipped to [0, MAX_GAP_MM]."""
    with np.errstate(invalid="ignore"):
        ok = ((inside_hu < HEALTHY_INSIDE_HU) & (outside_hu > CONTACT_HU)
              & (np.abs(gap) <= MAX_GAP_MM + 2.0))
    g = np.where(ok, gap, np.nan)
    if not ok.any():
        return np.zeros(n_rays_)
    overall = float(np.median(gap[ok]))
    per_angle = nan_quantile(g, 50.0, axis=0)
    per_angle = np.where(ok.sum(axis=0) >= MIN_HEALTHY_SLICES, per_angle, overall)
    half = int(round(GAP_SMOOTH_MM / 2.0 / (2 * math.pi * RAY_ARC_MM) * n_rays_))
    return np.clip(_circular_mean(per_angle, half), 0.0, MAX_GAP_MM)


def costal_surface(small: np.ndarray, lung: np.ndarray, spacing: tuple[float, float, float],
                   centre_yx: tuple[float, float], never: np.ndarray | None = None
                   ) -> CostalSurface:
    """The rays, the lung's outer radius and the pleura (module docstring, steps 1-3).

    small: (Z, y, x) HU; lung: (Z, y, x) bool; spacing (z, y, x) mm; centre in pixels;
    ``never`` (Z, y, x) bool: voxels that are not the chest wall either (outside the body:
    the table is no rib).
    """
    rays = make_rays(small.shape[1:], (spacing[1], spacing[2]), centre_yx)
    body = _in_plane_opening(lung)  # cysts on thin stalks are not the lung's edge ...
    r_lung = outer_radius(body, rays)
    edge, inside = lung_edge(small, body, rays)
    # ... but where only thin lung reaches a ray, its edge is the ray's edge
    thin = np.isnan(r_lung)
    in_thin = lung & thin[:, rays.bins]  # (Z, y, x) lung pixels of those rays
    raw_edge, raw_inside = lung_edge(small, in_thin, rays)
    r_lung = np.where(thin, outer_radius(in_thin, rays), r_lung)
    edge, inside = np.where(thin, raw_edge, edge), np.where(thin, raw_inside, inside)
    dz = max(1, int(round(RIB_WINDOW_MM / spacing[0])))
    bone = small > BONE_HU if never is None else (small > BONE_HU) & ~never
    r_rib = _smooth2d(_pool(bone_edge(bone, small, r_lung, rays), dz, RIB_WINDOW_RAYS,
                            RIB_QUANTILE), max(1, dz // 2), RIB_SMOOTH_RAYS)
    pixel = min(spacing[1], spacing[2])
    outside = hu_on_rays(small, rays, edge + pixel)
    gap = healthy_gap(r_rib - edge, inside, outside, rays.n)
    return CostalSurface(rays, r_lung, borrowed_edge(r_lung, edge, inside), inside,
                         (r_rib - gap[None, :] + WALL_SHIFT_MM).astype(np.float32), gap)


def borrowed_edge(r_lung: np.ndarray, edge: np.ndarray, inside_hu: np.ndarray) -> np.ndarray:
    """(Z, n) ``edge`` completed for rays that have lung but no edge of their own (their
    outermost lung pixel has no outward-facing -320 HU crossing: it is not on the 4-connected
    rim, or the ray's centre line passes beside it; roughly one ray with lung in six on the
    2.7 mm development phantoms): such a ray takes the edge of the nearest ray within
    EDGE_BORROW_RAYS (same slice, nearer first) whose lung ends in dense disease
    (``inside_hu`` above DONOR_HU: not ground glass, and not merely too thin to sample).
    Without an edge a ray is never filled, so dense lung against the chest wall stayed out in
    notches between filled rays. Only the fill uses it; the healthy gap is measured on the
    rays' own edges."""
    out = edge.copy()
    with np.errstate(invalid="ignore"):
        donor = np.isfinite(edge) & (inside_hu > DONOR_HU)
    for step in range(1, EDGE_BORROW_RAYS + 1):
        for shift in (step, -step):
            todo = np.isfinite(r_lung) & ~np.isfinite(out)
            take = todo & np.roll(donor, shift, axis=1)
            out[take] = np.roll(edge, shift, axis=1)[take]
    return out


def at_pixels(per_ray: np.ndarray, rays: Rays) -> np.ndarray:
    """(Z, y, x): per-ray values (Z, n) linearly interpolated between the two rays nearest
    each pixel's angle; where one of the two is not finite, the other one's value."""
    return between_rays(per_ray, rays, slice(None), rays.pos)


def between_rays(per_ray: np.ndarray, rays: Rays, z: np.ndarray | slice,
                 pos: np.ndarray) -> np.ndarray:
    """Per-ray values (Z, n) at voxels of slices ``z`` and angle positions ``pos`` (rays;
    :attr:`Rays.pos` of their pixels), linearly interpolated between the two rays whose
    centres are nearest; where one of the two is not finite, the other one's value. With
    ``z`` an index array, ``pos`` holds one position per voxel (the result has its shape);
    with ``slice(None)`` and ``pos`` (y, x), the result is (Z, y, x)."""
    a = pos - 0.5  # in ray-centre units
    k0 = np.floor(a).astype(np.int64)
    w = (a - k0).astype(np.float32)
    k0 %= rays.n
    v0, v1 = per_ray[z, k0], per_ray[z, (k0 + 1) % rays.n]
    ok0, ok1 = np.isfinite(v0), np.isfinite(v1)
    with np.errstate(invalid="ignore"):
        both = (1 - w) * v0 + w * v1
    return np.where(ok0 & ok1, both, np.where(ok0, v0, v1))


def midline_sides(width: int, centre_x: float) -> tuple[np.ndarray, np.ndarray]:
    """(1, 1, width) bool each: the columns on the low-x side of the midline ``centre_x``
    (x <= centre_x, the right lung's in the canonical orientation) and the rest (the left
    lung's). The costal closing and the assignment of the fill to a lung split alike."""
    x = np.arange(width)[None, None, :]
    return x <= centre_x, x > centre_x


def costal_fill(small: np.ndarray, lung: np.ndarray, never: np.ndarray,
                spacing: tuple[float, float, float], centre_yx: tuple[float, float],
                close: bool = True) -> np.ndarray:
    """(Z, y, x) bool: voxels between the lung (Z, y, x bool) and the pleura that are lung
    (module docstring, step 4), and with ``close`` the notches :func:`rind_closing` closes;
    ``never`` (Z, y, x) bool are never taken."""
    surf = costal_surface(small, lung, spacing, centre_yx, never)
    mean3 = ndi.uniform_filter(small, size=(1, 3, 3), mode="nearest")
    fat = _in_plane_opening((mean3 >= FAT_HU[0]) & (mean3 <= FAT_HU[1]))
    fill = _fill_runs(small, lung, never, spacing, surf, fat)
    if not close or CLOSE_PX < 1:
        return fill
    may = ~fat & ~never & (small <= BONE_HU) & ~lung
    return fill | rind_closing(lung | fill, may, surf, centre_yx[1], small)


def _fill_runs(small: np.ndarray, lung: np.ndarray, never: np.ndarray,
               spacing: tuple[float, float, float], surf: CostalSurface, fat: np.ndarray
               ) -> np.ndarray:
    """costal_fill's rays: the runs between a diseased lung's edge and the pleura."""
    half_pixel = 0.5 * min(spacing[1], spacing[2])  # radii are of pixel centres
    stop = first_beyond(fat | never, surf.r_lung, surf.rays) - half_pixel
    end = np.where(np.isnan(stop), surf.r_wall, np.minimum(surf.r_wall, stop))  # NaN: no rib
    # rays whose lung ends in disease (denser than normal lung just inside the edge) and
    # stops short of the pleura; a normal lung's edge ends at the chest wall, heart or fat
    with np.errstate(invalid="ignore"):
        diseased = diseased_rays(surf.inside_hu)
        short = ((end - surf.edge) >= MIN_GAP_MM) & diseased
    # a lung stopping at a fat layer (apex, pericardial fat) leaves fat, not dense lung, there
    short &= run_fat_share(small, surf, end) < MAX_RUN_FAT_SHARE
    if not short.any():
        return np.zeros(lung.shape, dtype=bool)
    r_from = at_pixels(np.where(short, surf.r_lung, np.nan), surf.rays)
    r_to = at_pixels(np.where(short, end, np.nan), surf.rays)
    radius = surf.rays.radius[None]  # (1, y, x)
    with np.errstate(invalid="ignore"):
        between = (radius > r_from) & (radius <= r_to)
    return between & ~fat & ~never & (small <= BONE_HU) & ~lung


def diseased_rays(inside_hu: np.ndarray) -> np.ndarray:
    """(Z, n) bool: rays whose lung ends in disease - denser than DISEASED_INSIDE_HU just
    inside the edge, or thinner there than 1.5 pixels (lung_edge's NOT_LUNG_INSIDE_HU: a
    strand between cysts or dense lung), or within DISEASE_SPREAD_RAYS of such a ray in the
    same slice (one noisy sample inside the edge does not decide a ray alone)."""
    with np.errstate(invalid="ignore"):
        diseased = (inside_hu > DISEASED_INSIDE_HU) | (inside_hu <= NOT_LUNG_INSIDE_HU)
    size = (1, 2 * DISEASE_SPREAD_RAYS + 1)
    return ndi.maximum_filter(diseased.view(np.uint8), size=size, mode="wrap").view(bool)


def run_fat_share(small: np.ndarray, surf: CostalSurface, end: np.ndarray) -> np.ndarray:
    """(Z, n) share of the pixels of each ray between its lung edge and ``end`` (Z, n) whose
    own HU is fat (FAT_HU); NaN where the run holds no pixel."""
    rays = surf.rays
    flat = small.reshape(small.shape[0], -1)[:, rays.order]  # (Z, P) in ray order
    radius = rays.radius_sorted[None, :]
    with np.errstate(invalid="ignore"):
        run = (radius > surf.edge[:, rays.bin_sorted]) & (radius <= end[:, rays.bin_sorted])
    fat = run & (flat >= FAT_HU[0]) & (flat <= FAT_HU[1])
    n_run = np.add.reduceat(run.astype(np.int32), rays.starts, axis=1).astype(np.float32)
    n_fat = np.add.reduceat(fat.astype(np.int32), rays.starts, axis=1)
    n_run[:, rays.empty] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_run > 0, n_fat / n_run, np.nan)


def _in_plane_opening(mask: np.ndarray) -> np.ndarray:
    """(Z, y, x) bool in-plane opening by a 3 x 3 square (drops 1-2 pixel wide parts)."""
    return dilate_square(erode_square(mask, 1, outside="edge"), 1)


def costal_gap(small: np.ndarray, lung: np.ndarray, spacing: tuple[float, float, float],
               centre_yx: tuple[float, float], min_hu: float = -500.0) -> np.ndarray:
    """(Z, y, x) bool: tissue denser than ``min_hu`` (not bone, not fat) between a mask's
    lung and the pleura where the mask stops MIN_GAP_MM or more short of it: dense lung a
    mask left out (the QC check). Same rays and pleura as :func:`costal_fill`."""
    left_out = costal_fill(small, lung, np.zeros(lung.shape, bool), spacing, centre_yx,
                           close=False)
    return left_out & (small > min_hu)


def _disc_rectangles(r: int) -> list[tuple[int, int]]:
    """(half-height, half-width) of the rectangles whose union is the pixel disc of radius
    ``r`` (the pixels with dy^2 + dx^2 <= r^2), only those not inside another one."""
    rects = [(dy, int(math.isqrt(r * r - dy * dy))) for dy in range(r + 1)]
    return [(dy, dx) for dy, dx in rects
            if not any(o != (dy, dx) and o[0] >= dy and o[1] >= dx for o in rects)]


def _dilate_disc(mask: np.ndarray, r: int) -> np.ndarray:
    """(Z, y, x) bool in-plane dilation by the pixel disc of radius ``r`` (a union of
    rectangles, each separable: the same as scipy's binary_dilation by the disc)."""
    out = np.zeros_like(mask)
    for dy, dx in _disc_rectangles(r):
        out |= window_1d(window_1d(mask, dy, 1, False, False), dx, 2, False, False)
    return out


def _erode_disc(mask: np.ndarray, r: int) -> np.ndarray:
    """(Z, y, x) bool in-plane erosion by the pixel disc of radius ``r`` (the intersection
    of the erosions by its rectangles; beyond the image the edge pixel is repeated)."""
    out = mask.copy()
    for dy, dx in _disc_rectangles(r):
        out &= window_1d(window_1d(mask, dy, 1, True, "edge"), dx, 2, True, "edge")
    return out


def rind_closing(lung: np.ndarray, may: np.ndarray, surf: CostalSurface, centre_x: float,
                 small: np.ndarray) -> np.ndarray:
    """(Z, y, x) bool: voxels an in-plane closing by a disc of CLOSE_PX pixels adds to
    ``lung`` (the lung and its costal fill), each side of the midline ``centre_x`` on its
    own, kept where the fill ``may`` take them and within CLOSE_RIND_MM inside the pleura
    ``r_wall`` (interpolated between the two nearest rays; not where it is unknown). The
    rays fill dense lung against the chest wall ray by ray; between filled rays (a ray
    whose lung stops just short of the gap threshold, or is read as fat or healthy) notches
    a pixel or two wide stay out, and the closing fills them without reaching past the
    pleura or into the mediastinum. Deeper than CLOSE_RIND_MM only voxels less dense than
    CLOSE_DEEP_HU (``small``, the HU) are kept: the dense walls between honeycomb cysts and
    reticulation strands, which the air threshold and the dense growth (below -200 HU on a
    noisy sharp kernel) leave out."""
    add = np.zeros_like(lung)
    for side in midline_sides(lung.shape[2], centre_x):
        m = lung & side
        if m.any():
            add |= _erode_disc(_dilate_disc(m, CLOSE_PX), CLOSE_PX) & side
    add &= may & ~lung
    z, y, xx = np.nonzero(add)
    if z.size == 0:
        return add
    wall = between_rays(surf.r_wall, surf.rays, z, surf.rays.pos[y, xx])
    r = surf.rays.radius[y, xx]
    with np.errstate(invalid="ignore"):
        keep = (r <= wall) & ((r > wall - CLOSE_RIND_MM) | (small[z, y, xx] < CLOSE_DEEP_HU))
    out = np.zeros_like(lung)
    out[z[keep], y[keep], xx[keep]] = True
    return out

