"""Disease drawn into the phantom's lungs (internal to :mod:`.phantom`): ILD and emphysema.

Two ILD pictures, both with basal, posterior and subpleural predominance and exactly the
requested extent (to one voxel):

* **NSIP-like** (:func:`draw_ild`, stable patients): ground glass most, net-like reticulation
  next, honeycombing only in extensive disease, and the outermost voxel layer of each lung
  slice spared (immediate subpleural sparing).
* **Dense fibrosis** (:func:`draw_dense_ild`, progressors): a band along the costal pleura
  (ribs), deepest at the posterior bases and several centimetres deep in extensive disease,
  that reaches the pleura. Its most severe part is dense: honeycomb clusters (Voronoi cysts of
  about 3-10 mm, lumens about -950 HU, walls about 0 HU) and subpleural consolidation (0 to
  +50 HU); inside it, reticulation with traction bronchiectasis (dilated air tubes with
  walls, labelled reticulation as CT fibrosis scores count them); ground glass innermost.

Emphysema (:func:`draw_emphysema`): clustered low-density lung (about -970 HU), upper-zone
predominant, in normal parenchyma only. It is not ILD.

Pattern codes (``Phantom.ild_pattern`` / ``Phantom.pattern``): 0 normal, 1 ground glass,
2 reticulation, 3 honeycombing, 4 consolidation, 5 emphysema.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from sscmort_core.synthetic import _anatomy as anat

NORMAL, GGO, RETICULATION, HONEYCOMBING, CONSOLIDATION, EMPHYSEMA = range(6)
BAND_DEPTH_MM = 30.0  # dense propensity falls to 1/e this far from the costal pleura
DENSE_BAND_MM = 30.0  # honeycombing and consolidation lie within this of the costal pleura
CONSOLIDATION_DEPTH_MM = 12.0  # consolidation lies within this distance of the costal pleura
CYST_SPACING_MM = 7.0  # mean distance between honeycomb cyst centres (cysts ~3-10 mm)
CYST_WALL_MM = 0.5  # honeycomb wall half-thickness (of the Voronoi cell borders)
TUBE_SPACING_MM = 16.0  # traction bronchiectasis: one dilated bronchus per ~16 mm square
TUBE_LUMEN_MM = (1.6, 3.2)  # lumen radius range; a wall of 1.5 mm around it


def smooth_weights(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) row-normalised Gaussian interpolation weights (upsampling a coarse
    random grid into a smooth field)."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)[:, None]
    w = np.exp(-0.5 * ((pos - np.arange(n_in)[None, :]) / 0.75) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def smooth_field_at(rng: np.random.Generator, shape: tuple[int, int, int],
                    coarse: tuple[int, int, int], index: np.ndarray) -> np.ndarray:
    """(n,) float32 values at flat ``index`` of a smooth random field over ``shape``
    (z, y, x), scaled to unit variance over ``index``; correlation length about
    shape / coarse voxels. Separable Gaussian upsampling of a coarse normal grid, finished
    only at the requested voxels (the lungs are ~15% of the volume)."""
    g = rng.standard_normal(coarse)  # (i, j, k)
    wz, wy, wx = (smooth_weights(n, c) for n, c in zip(shape, coarse))
    # einsum without BLAS: the same sums in the same order on every machine and thread count
    f = np.einsum("yj,ijx->iyx", wy, np.einsum("ijk,xk->ijx", g, wx))  # (i, y, x)
    kz, ky, kx = np.unravel_index(index, shape)
    values = np.zeros(index.size)
    for i in range(coarse[0]):  # z last, at the requested voxels only
        values += wz[kz, i] * f[i, ky, kx]
    values /= max(float(values.std()), 1e-6) if index.size else 1.0
    return values.astype(np.float32)


@dataclass(frozen=True)
class Lesions:
    """Diseased voxels as flat indices into the volume, with their pattern and clean HU."""

    index: np.ndarray  # (n,) int64
    pattern: np.ndarray  # (n,) uint8 pattern code
    hu: np.ndarray  # (n,) float32

    @staticmethod
    def empty() -> Lesions:
        none = np.zeros(0, dtype=np.int64)
        return Lesions(none, none.astype(np.uint8), none.astype(np.float32))


def in_plane_rim(mask: np.ndarray) -> np.ndarray:
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
         low: np.ndarray, width: float = 0.3) -> np.ndarray:
    """(n,) bool: which voxels at flat ``index`` (smooth field ``low`` (n,) there) lie on a
    warped net of two families of near-axial planes 8 mm apart (reticulation lines; in
    honeycombing, the cyst walls); ``width`` sets the lines' thickness (0.3: about 35% of
    the voxels on a line)."""
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
        on_line |= np.abs(np.sin(phase)) < width
    return on_line


def _pick(score: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the ``n`` highest scores, their severity: uniform ranks in (0, 1))."""
    pick = np.argpartition(score, score.size - n)[score.size - n:]
    severity = np.empty(n, dtype=np.float32)
    severity[np.argsort(score[pick])] = (np.arange(n) + 0.5) / n
    return pick, severity


def ild_voxel_count(extent_pct: float, n_lung: int, n_parenchyma: int) -> int:
    n_ild = int(round(extent_pct / 100.0 * n_lung))
    if n_ild > n_parenchyma:
        raise ValueError(f"ILD extent {extent_pct}% does not fit in this lung")
    return n_ild


def draw_ild(rng: np.random.Generator, an: anat.Anatomy, parenchyma: np.ndarray,
             lung_mask: np.ndarray, extent_pct: float, low: np.ndarray) -> Lesions:
    """NSIP-like ILD: exactly ``round(extent_pct / 100 * n_lung)`` parenchyma voxels (the most
    ILD-prone) with patterns and HU by severity (their rank of propensity).
    ``parenchyma`` (p,) flat indices; ``low`` (p,) the smooth field there."""
    n_ild = ild_voxel_count(extent_pct, int(lung_mask.sum()), parenchyma.size)
    if n_ild == 0:
        return Lesions.empty()
    score = _ild_propensity(an, parenchyma, in_plane_rim(lung_mask), low)
    pick, severity = _pick(score, n_ild)
    index = parenchyma[pick]
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
    return Lesions(index, pattern, hu.astype(np.float32))


# --- dense fibrosis (progressors) ------------------------------------------------------------
def costal_depth_mm(an: anat.Anatomy, index: np.ndarray) -> np.ndarray:
    """(n,) distance in mm from each voxel (flat ``index``) to the inner surface of the rib
    cage, along the ray from the chest's centre (the cavity is a scaled body outline)."""
    _, ky, kx = np.unravel_index(index, an.labels.shape)
    dx, dy = an.grid.x_mm[kx], an.grid.y_mm[ky] - 5.0
    rb = np.maximum(an.body_radius[ky, kx], 1e-3)
    return np.maximum(np.hypot(dx, dy) * (anat.CAVITY_RADIUS / rb - 1.0), 0.0)


def dense_share(extent_pct: float) -> float:
    """Share of a progressor's ILD that is dense (honeycombing + consolidation)."""
    return float(np.clip(0.15 + 0.35 * extent_pct / 40.0, 0.15, 0.5))


def draw_dense_ild(rng: np.random.Generator, an: anat.Anatomy, parenchyma: np.ndarray,
                   lung_mask: np.ndarray, extent_pct: float, low: np.ndarray) -> Lesions:
    """Dense fibrosis of a progressor (module docstring): exactly as many voxels as
    :func:`draw_ild`, chosen by closeness to the costal pleura, basal and posterior position
    and a smooth random field, with no subpleural sparing."""
    n_ild = ild_voxel_count(extent_pct, int(lung_mask.sum()), parenchyma.size)
    if n_ild == 0:
        return Lesions.empty()
    kz, ky, _ = np.unravel_index(parenchyma, an.labels.shape)
    basal = 1.0 - an.grid.t[kz] / 0.96
    posterior = np.clip((an.grid.y_mm[ky] + 80.0) / 170.0, 0.0, 1.0)
    depth = costal_depth_mm(an, parenchyma)
    score = 1.4 * np.exp(-depth / BAND_DEPTH_MM) + 2.0 * basal + 0.9 * posterior + 0.5 * low
    pick, severity = _pick(score, n_ild)
    index, low, depth = parenchyma[pick], low[pick], depth[pick]
    # dense fibrosis is the band against the chest wall; the most severe lung deeper in
    # (along the diaphragm and mediastinum) is reticular
    dense = (severity > 1.0 - dense_share(extent_pct)) & (depth <= DENSE_BAND_MM)
    # consolidation: patches (high field) of the subpleural rind; honeycomb clusters elsewhere
    cons = dense & (depth <= CONSOLIDATION_DEPTH_MM) & (low > 0.0)
    honey = dense & ~cons
    retic_zone = (severity > 0.25) & ~dense
    pattern = np.full(n_ild, GGO, dtype=np.uint8)
    hu = np.clip(-640.0 + 200.0 * severity + 25.0 * low, -680.0, -420.0)
    line = _net(rng, an, index, low, width=0.45)  # coarser, denser net than in NSIP
    pattern[retic_zone & line] = RETICULATION  # lines partial-volumed with the ground glass
    hu[retic_zone & line] = -380.0 + 150.0 * severity[retic_zone & line]
    lumen, wall = _traction_tubes(rng, an, index, retic_zone & (severity > 0.5))
    pattern[lumen | wall] = RETICULATION
    hu[wall], hu[lumen] = -250.0, -960.0
    pattern[cons] = CONSOLIDATION
    hu[cons] = np.clip(25.0 + 15.0 * low[cons], 0.0, 50.0)
    pattern[honey] = HONEYCOMBING
    hu[honey] = _honeycomb_hu(rng, an, index[honey], low[honey])
    return Lesions(index, pattern, hu.astype(np.float32))


def _mm(an: anat.Anatomy, index: np.ndarray) -> np.ndarray:
    """(n, 3) (z, y, x) positions in mm of the voxels at flat ``index``."""
    kz, ky, kx = np.unravel_index(index, an.labels.shape)
    return np.stack([an.grid.z_mm[kz], an.grid.y_mm[ky], an.grid.x_mm[kx]], axis=1)


def _honeycomb_hu(rng: np.random.Generator, an: anat.Anatomy, index: np.ndarray,
                  low: np.ndarray) -> np.ndarray:
    """(n,) HU of honeycomb voxels: Voronoi cells around random centres (cysts) filled with
    air (-950 HU), their borders (walls: within CYST_WALL_MM of a border) at about 0 HU."""
    if index.size == 0:
        return np.zeros(0, np.float32)
    pos = _mm(an, index)
    voxel_mm3 = float(np.prod(an.grid.spacing_mm))
    n_cysts = max(2, int(round(index.size * voxel_mm3 / CYST_SPACING_MM**3)))
    seeds = pos[rng.choice(index.size, size=min(n_cysts, index.size), replace=False)]
    seeds = seeds + rng.uniform(-0.5, 0.5, seeds.shape) * np.asarray(an.grid.spacing_mm)
    if len(seeds) < 2:
        return np.full(index.size, -950.0, np.float32)
    d, _ = cKDTree(seeds).query(pos, k=2)  # (n, 2) nearest and second-nearest centre
    on_wall = (d[:, 1] - d[:, 0]) < CYST_WALL_MM * 2.0  # |d2 - d1| = 2 x distance to border
    return np.where(on_wall, np.clip(20.0 * low, -30.0, 30.0), -950.0).astype(np.float32)


def _traction_tubes(rng: np.random.Generator, an: anat.Anatomy, index: np.ndarray,
                    zone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lumen, wall) (n,) bool: dilated bronchi running cranio-caudally through ``zone``
    (n,) bool of the voxels at flat ``index``: one tube per TUBE_SPACING_MM square in-plane,
    lumen radius in TUBE_LUMEN_MM, a 1.5 mm wall."""
    lumen = np.zeros(index.size, dtype=bool)
    wall = np.zeros(index.size, dtype=bool)
    if not zone.any():
        return lumen, wall
    g = an.grid
    n_side = int(np.ceil(anat.FIELD_OF_VIEW_MM / TUBE_SPACING_MM))
    cells = (np.arange(n_side) + 0.5) * TUBE_SPACING_MM - anat.FIELD_OF_VIEW_MM / 2
    cy, cx = np.meshgrid(cells, cells, indexing="ij")
    centres = np.stack([cy.ravel(), cx.ravel()], axis=1)  # (m, 2) y, x in mm
    centres += rng.uniform(-0.35, 0.35, centres.shape) * TUBE_SPACING_MM
    radius = rng.uniform(*TUBE_LUMEN_MM, len(centres))
    _, ky, kx = np.unravel_index(index[zone], an.labels.shape)
    dist, nearest = cKDTree(centres).query(np.stack([g.y_mm[ky], g.x_mm[kx]], axis=1))
    lumen[zone] = dist < radius[nearest]
    wall[zone] = (dist >= radius[nearest]) & (dist < radius[nearest] + 1.5)
    return lumen, wall


# --- emphysema --------------------------------------------------------------------------------
def draw_emphysema(rng: np.random.Generator, an: anat.Anatomy, candidates: np.ndarray,
                   n_lung: int, emphysema_pct: float) -> Lesions:
    """Exactly ``round(emphysema_pct / 100 * n_lung)`` of the ``candidates`` (flat indices of
    normal parenchyma): clusters of a fine smooth field, upper zones first, at about -970 HU."""
    n = int(round(emphysema_pct / 100.0 * n_lung))
    if n == 0:
        return Lesions.empty()
    if n > candidates.size:
        raise ValueError(f"emphysema {emphysema_pct}% does not fit beside the ILD")
    shape = an.labels.shape
    coarse = (max(3, shape[0] // 2), max(3, shape[1] // 4), max(3, shape[2] // 4))
    field = smooth_field_at(rng, shape, coarse, candidates)
    kz = np.unravel_index(candidates, shape)[0]
    pick, _ = _pick(1.2 * field + 1.5 * an.grid.t[kz], n)
    hu = -970.0 + 8.0 * field[pick]
    return Lesions(candidates[pick], np.full(n, EMPHYSEMA, np.uint8), hu.astype(np.float32))
