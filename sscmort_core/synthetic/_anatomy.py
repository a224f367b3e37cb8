"""Thorax anatomy of the phantom as a tissue-label volume (internal to :mod:`.phantom`).

Axes and coordinates (the phantom's convention, DICOM patient coordinates, LPS):

* array axes are ``(z, y, x)``;
* ``x`` (columns) increases towards the patient's **left**, ``y`` (rows) towards the
  patient's **back** (posterior, so the table is at the bottom of an axial image), and
  ``z`` (slices) towards the **head**: slice 0 is the most caudal (upper abdomen), the
  last slice the most cranial (lung apices).
* in-plane positions are in mm from the isocentre; ``t = (k + 0.5) / nz`` in [0, 1] is the
  normalised cranio-caudal position used to place organs, so any slice count gives a whole
  chest.

Every shape below is described in mm (in-plane) and in ``t`` (cranio-caudal); the numbers
are rough adult averages, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIELD_OF_VIEW_MM = 345.6  # 128 pixels x 2.7 mm

# tissue labels (uint8) and their HU before texture, blur and noise
AIR, TABLE, FOAM, SKIN, FAT, MUSCLE, MEDIASTINUM, BLOOD, LIVER, SPLEEN, BOWEL_GAS = range(11)
BONE, MARROW, CARTILAGE, CSF, DISC, AIRWAY, AIRWAY_WALL, LUNG, PULMONARY_VESSEL = range(11, 20)
TISSUE_HU = np.array([
    -1000.0, 180.0, -500.0, 30.0, -100.0, 45.0, -80.0, 40.0, 60.0, 45.0, -990.0,
    750.0, 280.0, 120.0, 15.0, 80.0, -1000.0, 20.0, -860.0, 40.0,
], dtype=np.float32)  # indexed by label


@dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates of a phantom grid."""

    x_mm: np.ndarray  # (nx,) + = patient left
    y_mm: np.ndarray  # (ny,) + = posterior
    z_mm: np.ndarray  # (nz,) + = cranial
    t: np.ndarray  # (nz,) normalised cranio-caudal position in [0, 1]
    spacing_mm: tuple[float, float, float]  # (z, y, x)
    origin_mm: tuple[float, float, float]  # (z, y, x) of voxel (0, 0, 0), exact

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.z_mm), len(self.y_mm), len(self.x_mm))


@dataclass(frozen=True)
class Habitus:
    """Per-patient body variation drawn from the volume seed."""

    body_scale: float  # body outline
    lung_scale: float  # lung size relative to the chest cavity
    heart_shift_mm: float  # left-right position of the heart
    diaphragm_shift_t: float  # higher or lower diaphragm


@dataclass(frozen=True)
class Anatomy:
    """The label volume plus what the ILD model needs from the geometry."""

    labels: np.ndarray  # (z, y, x) uint8, one of the labels above
    lung_radius2: np.ndarray  # (z, y, x) float32 squared normalised lung-ellipsoid radius
    body_radius: np.ndarray  # (y, x) normalised body radius
    grid: Grid

    def periphery_at(self, index: np.ndarray) -> np.ndarray:
        """(n,) nearness to the costal pleura in ~[0, 1] (1 at the ribs) of the voxels at
        flat ``index``: the larger of the lung-ellipsoid and the cavity radius."""
        _, ky, kx = np.unravel_index(index, self.labels.shape)
        return np.maximum(np.sqrt(self.lung_radius2.reshape(-1)[index]),
                          self.body_radius[ky, kx] / CAVITY_RADIUS)


def make_grid(shape: tuple[int, int, int], slice_thickness_mm: float) -> Grid:
    """Grid of ``shape`` (z, y, x) over the fixed field of view, z spacing = slice thickness."""
    nz, ny, nx = shape
    sy, sx = FIELD_OF_VIEW_MM / ny, FIELD_OF_VIEW_MM / nx
    x = ((np.arange(nx) + 0.5) * sx - FIELD_OF_VIEW_MM / 2).astype(np.float32)
    y = ((np.arange(ny) + 0.5) * sy - FIELD_OF_VIEW_MM / 2).astype(np.float32)
    z = ((np.arange(nz) - (nz - 1) / 2) * slice_thickness_mm).astype(np.float32)
    t = ((np.arange(nz) + 0.5) / nz).astype(np.float32)
    origin = (-(nz - 1) / 2 * slice_thickness_mm, 0.5 * sy - FIELD_OF_VIEW_MM / 2,
              0.5 * sx - FIELD_OF_VIEW_MM / 2)
    return Grid(x, y, z, t, (float(slice_thickness_mm), float(sy), float(sx)),
                tuple(round(float(o), 6) for o in origin))  # type: ignore[arg-type]


def draw_habitus(rng: np.random.Generator) -> Habitus:
    return Habitus(body_scale=float(rng.uniform(0.92, 1.05)),
                   lung_scale=float(rng.uniform(0.94, 1.04)),
                   heart_shift_mm=float(rng.uniform(-6.0, 6.0)),
                   diaphragm_shift_t=float(rng.uniform(-0.03, 0.03)))


# --- the body wall: 2-D outlines repeated along z -------------------------------------------
def _body_radius(grid: Grid, hab: Habitus) -> np.ndarray:
    """(y, x) normalised body radius, < 1 inside the skin: a superellipse (rounded-rectangle
    chest), deeper in front of y = 5 mm than behind."""
    ax = 150.0 * hab.body_scale
    ay = np.where(grid.y_mm < 5.0, 108.0, 98.0) * hab.body_scale  # (ny,)
    u = np.abs(grid.x_mm[None, :] / ax) ** 2.4
    v = np.abs((grid.y_mm[:, None] - 5.0) / ay[:, None]) ** 2.4
    return (u + v) ** (1.0 / 2.4)  # (y, x)


CAVITY_RADIUS = 0.78  # inside the ribs, as a fraction of the body radius


def _body_wall(labels: np.ndarray, grid: Grid, hab: Habitus, rb: np.ndarray) -> None:
    """Skin, fat, muscle, the table, and the cavity filled with mediastinal fat."""
    y, x = grid.y_mm[:, None], grid.x_mm[None, :]
    table_top = 5.0 + 98.0 * hab.body_scale + 4.0 + 0.0009 * x**2  # (1, nx), curved
    plane = np.full(rb.shape, AIR, dtype=np.uint8)  # (y, x)
    plane[(y >= table_top) & (y < table_top + 5.0)] = TABLE
    plane[(y >= table_top + 5.0) & (y < table_top + 16.0)] = FOAM
    plane[(y >= table_top + 16.0) & (y < table_top + 19.0)] = TABLE
    plane[:, np.abs(grid.x_mm) > 165.0] = AIR
    plane[rb < 1.0] = SKIN
    plane[rb < 0.985] = FAT
    plane[rb < 0.91] = MUSCLE
    plane[rb < CAVITY_RADIUS] = MEDIASTINUM
    labels[:] = plane[None]


def _assign_plane(labels: np.ndarray, slices: np.ndarray, plane_mask: np.ndarray,
                  label: int) -> None:
    """``labels[k][plane_mask] = label`` for every slice k where ``slices`` (z,) is True."""
    if not slices.any():
        return
    sub = labels[slices]  # (k, y, x) copy
    sub[:, plane_mask] = label
    labels[slices] = sub


def _angle_from_back(grid: Grid) -> np.ndarray:
    """(y, x) angle in [0, pi] between a pixel's direction from the centre and posterior."""
    dy = grid.y_mm[:, None] - 5.0
    return np.arccos(np.clip(dy / (np.hypot(grid.x_mm[None, :], dy) + 1e-3), -1.0, 1.0))


def _ribs_and_scapulae(labels: np.ndarray, grid: Grid, rb: np.ndarray) -> None:
    """Ribs as oblique bands in a ring just outside the cavity (they slope down towards the
    front, so an axial slice cuts several short arcs), cartilage in front, scapulae behind."""
    ring = (rb >= CAVITY_RADIUS) & (rb < CAVITY_RADIUS + 0.05)  # (y, x)
    theta = _angle_from_back(grid)  # (y, x)
    iy, ix = np.nonzero(ring)
    front = (1.0 - np.cos(theta[iy, ix])) / 2.0  # (P,) 0 behind, 1 in front
    # each rib falls ~110 mm from the spine to the sternum; pitch 26 mm, 10 mm wide
    phase = (grid.z_mm[:, None] + 110.0 * front[None, :]) / 26.0  # (z, P)
    rib = (phase - np.floor(phase)) < 0.4
    rib &= ((grid.t > 0.05) & (grid.t < 0.97))[:, None]
    core = ((rb[iy, ix] > CAVITY_RADIUS + 0.012) & (rb[iy, ix] < CAVITY_RADIUS + 0.038))
    tissue = np.where(front > 0.88, CARTILAGE, np.where(core, MARROW, BONE)).astype(np.uint8)
    zz, pp = np.nonzero(rib)
    labels[zz, iy[pp], ix[pp]] = tissue[pp]
    scapula = (rb >= 0.86) & (rb < 0.89) & (theta > 0.55) & (theta < 1.25)
    _assign_plane(labels, grid.t > 0.58, scapula, BONE)


def _spine_and_sternum(labels: np.ndarray, grid: Grid, hab: Habitus) -> None:
    """Vertebral bodies (cortex, marrow, discs), canal, arch, spinous process; sternum."""
    x, y = grid.x_mm[None, :], grid.y_mm[:, None]
    back = 98.0 * hab.body_scale  # from y = 5 mm to the skin of the back
    y_body, y_canal = 5.0 + 0.6 * back, 5.0 + 0.86 * back
    body_r, canal_r = np.hypot(x, y - y_body), np.hypot(x, y - y_canal)
    arch = (canal_r < 12.5) | ((np.abs(x) < 3.5) & (y > y_canal) & (y < 5.0 + 0.96 * back))
    arch |= (np.abs(np.abs(x) - 17.0) < 4.0) & (np.abs(y - y_canal) < 4.0)  # transverse
    labels[:, arch] = BONE
    labels[:, canal_r < 7.5] = CSF
    labels[:, body_r < 17.0] = BONE
    labels[:, body_r < 14.5] = MARROW
    phase = grid.z_mm / 28.0
    _assign_plane(labels, (phase - np.floor(phase)) < 0.2, body_r < 17.0, DISC)
    y_sternum = 5.0 - 108.0 * hab.body_scale * (CAVITY_RADIUS + 0.025)
    sternum = (np.abs(x) < 14.0) & (np.abs(y - y_sternum) < 4.5)
    _assign_plane(labels, (grid.t > 0.38) & (grid.t < 0.9), sternum, BONE)


# --- lungs and mediastinum ---------------------------------------------------------------
def _diaphragm_t(grid: Grid, hab: Habitus) -> np.ndarray:
    """(y, x) height (in t) of the diaphragm domes; the right dome (x < 0) is higher."""
    x, y = grid.x_mm[None, :], grid.y_mm[:, None]
    dome = np.maximum(0.0, 1.0 - ((np.abs(x) - 55.0) / 90.0) ** 2 - ((y + 5.0) / 95.0) ** 2)
    base = np.where(x < 0.0, 0.17, 0.15) + hab.diaphragm_shift_t
    return (base + np.where(x < 0.0, 0.15, 0.12) * dome).astype(np.float32)


def _lung_radius2(grid: Grid, hab: Habitus) -> np.ndarray:
    """(z, y, x) squared normalised radius of the two lung ellipsoids (mirror images about
    x = 0), tapering to the apices above t = 0.6; 1 on the lung's outer surface."""
    scale = hab.body_scale * hab.lung_scale
    up = np.clip((grid.t - 0.6) / 0.36, 0.0, 1.0)
    taper = np.sqrt(np.maximum(1.0 - up**2, 1e-4)).astype(np.float32)  # (z,)
    dx2 = ((np.abs(grid.x_mm) - 62.0 * scale) / (62.0 * scale)) ** 2  # (x,)
    dy2 = ((grid.y_mm - 8.0) / (86.0 * scale)) ** 2  # (y,)
    inv = (1.0 / taper**2)[:, None, None]
    return (dx2[None, None, :] + dy2[None, :, None]) * inv  # (z, y, x) float32


def _mediastinum_half_width(grid: Grid) -> np.ndarray:
    """(z, y) half-width in mm of the midline tissue between the lungs."""
    y = grid.y_mm[None, :]
    back = 27.0 / (1.0 + np.exp(-(y - 30.0) / 5.0))  # spine, aorta, oesophagus
    low = np.maximum(6.0 + 10.0 / (1.0 + np.exp(-(y + 45.0) / 6.0)), back)  # heart apart
    high = np.maximum(8.0 + 22.0 * np.exp(-np.abs((y + 8.0) / 48.0) ** 3), back)
    return np.where((grid.t > 0.52)[:, None], high, low).astype(np.float32)


def _heart(grid: Grid, hab: Habitus) -> np.ndarray:
    """(z, y, x) bool ellipsoid of the heart, anterior and to the left, on the diaphragm."""
    ex = ((grid.x_mm - 20.0 - hab.heart_shift_mm) / 62.0) ** 2
    ey = ((grid.y_mm + 24.0) / 52.0) ** 2
    et = ((grid.t - 0.36 - hab.diaphragm_shift_t) / 0.16) ** 2
    return (et[:, None, None] + ey[None, :, None] + ex[None, None, :]) < 1.0


def _lungs(grid: Grid, hab: Habitus, rb: np.ndarray, diaphragm: np.ndarray,
           heart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lung region (z, y, x) bool, squared lung radius (z, y, x)) before organs carve it."""
    r2 = _lung_radius2(grid, hab)
    half_width = _mediastinum_half_width(grid)  # (z, y)
    lung = r2 < 1.0
    lung &= (rb < CAVITY_RADIUS - 0.01)[None]
    lung &= np.abs(grid.x_mm)[None, None, :] >= half_width[:, :, None]
    lung &= grid.t[:, None, None] > diaphragm[None]
    lung &= ~heart
    return lung, r2


def _tube(grid: Grid, x_mm: float, y_mm: float, radius_mm: float) -> np.ndarray:
    """(y, x) disc of a tube running along z."""
    return np.hypot(grid.x_mm[None, :] - x_mm, grid.y_mm[:, None] - y_mm) < radius_mm


def _segment_2d(grid: Grid, a: tuple[float, float], b: tuple[float, float],
                radius_mm: float) -> np.ndarray:
    """(y, x) in-plane capsule from a to b (x, y in mm)."""
    px, py = grid.x_mm[None, :] - a[0], grid.y_mm[:, None] - a[1]
    vx, vy = b[0] - a[0], b[1] - a[1]
    u = np.clip((px * vx + py * vy) / (vx * vx + vy * vy), 0.0, 1.0)
    return np.hypot(px - u * vx, py - u * vy) < radius_mm


def _abdomen(labels: np.ndarray, grid: Grid, rb: np.ndarray, diaphragm: np.ndarray) -> None:
    """Liver (right), spleen and stomach (left) below the domes, a gas bubble in the fundus."""
    below = (grid.t[:, None, None] <= diaphragm[None]) & (rb < CAVITY_RADIUS)[None]
    organ = np.where(grid.x_mm < 15.0, LIVER, SPLEEN).astype(np.uint8)  # (x,)
    labels[below] = np.broadcast_to(organ, labels.shape)[below]
    gas = ((grid.x_mm[None, :] - 50.0) / 24.0) ** 2 + ((grid.y_mm[:, None] + 25.0) / 16.0) ** 2
    top = diaphragm[None] - 0.02 - 0.05 * (1.0 - np.minimum(gas, 1.0))[None]  # a dome
    bubble = (gas < 1.0)[None] & (grid.t[:, None, None] > top) & below
    labels[bubble] = BOWEL_GAS


def _mediastinal_organs(labels: np.ndarray, grid: Grid, heart: np.ndarray) -> None:
    """Heart, aorta, superior vena cava, pulmonary arteries and oesophagus."""
    t = grid.t
    labels[heart] = BLOOD
    _assign_plane(labels, (t > 0.44) & (t < 0.76), _tube(grid, 6.0, -14.0, 14.0), BLOOD)
    _assign_plane(labels, (t >= 0.74) & (t < 0.81),
                  _segment_2d(grid, (6.0, -14.0), (22.0, 42.0), 13.0), BLOOD)  # arch
    _assign_plane(labels, t < 0.78, _tube(grid, 22.0, 42.0, 12.0), BLOOD)  # descending
    _assign_plane(labels, (t > 0.45) & (t < 0.86), _tube(grid, -22.0, -12.0, 9.0), BLOOD)
    trunk = (t > 0.53) & (t < 0.6)
    _assign_plane(labels, trunk, _segment_2d(grid, (12.0, -26.0), (33.0, 0.0), 10.0), BLOOD)
    _assign_plane(labels, trunk, _segment_2d(grid, (12.0, -26.0), (-33.0, 2.0), 9.0), BLOOD)
    _assign_plane(labels, t > 0.12, _tube(grid, -4.0, 36.0, 7.0), MUSCLE)  # oesophagus


CARINA_T = 0.62


def _capsule_3d(grid: Grid, a_mm: np.ndarray, b_mm: np.ndarray,
                box: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """(k, j, i) distance in mm to the segment a-b (points as (z, y, x) mm) over the box of
    voxels selected by ``box`` = (z, y, x) boolean masks of each axis."""
    pz = grid.z_mm[box[0]][:, None, None] - a_mm[0]
    py = grid.y_mm[box[1]][None, :, None] - a_mm[1]
    px = grid.x_mm[box[2]][None, None, :] - a_mm[2]
    v = b_mm - a_mm
    u = np.clip((pz * v[0] + py * v[1] + px * v[2]) / float(v @ v), 0.0, 1.0)
    return np.sqrt((pz - u * v[0]) ** 2 + (py - u * v[1]) ** 2 + (px - u * v[2]) ** 2)


def _airways(labels: np.ndarray, grid: Grid) -> None:
    """Trachea down to the carina, then the two main bronchi to the hila. Drawn only outside
    the lungs, so the airway opens into each lung at its hilum and nowhere else."""
    above = grid.t > CARINA_T
    _assign_plane(labels, above, _tube(grid, 0.0, 18.0, 10.5), AIRWAY_WALL)
    _assign_plane(labels, above, _tube(grid, 0.0, 18.0, 8.5), AIRWAY)
    z_carina = float(np.interp(CARINA_T, grid.t, grid.z_mm))
    carina = np.array([z_carina, 18.0, 0.0])
    box = ((grid.z_mm > z_carina - 40.0) & (grid.z_mm < z_carina + 12.0),
           np.abs(grid.y_mm - 15.0) < 20.0, np.abs(grid.x_mm) < 56.0)
    if not all(axis.any() for axis in box):
        return
    where = np.ix_(*(np.nonzero(axis)[0] for axis in box))
    sub = labels[where]  # (k, j, i) copy of the box
    outside_lung = sub != LUNG
    for side in (-1.0, 1.0):
        hilum = np.array([z_carina - 24.0, 12.0, side * 44.0])
        dist = _capsule_3d(grid, carina, hilum, box)
        sub[(dist < 7.5) & outside_lung & (sub != AIRWAY)] = AIRWAY_WALL
        sub[(dist < 5.5) & outside_lung] = AIRWAY
    labels[where] = sub


def _vessel_points(rng: np.random.Generator, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Centre-line points (N, 3) as (z, y, x) mm and radii (N,) mm of two branching
    pulmonary vessel trees growing out of the hila: 5 roots per side, 7 generations,
    segments shortening and thinning by a fixed ratio, directions jittered at each split."""
    z_hilum = float(np.interp(0.55, grid.t, grid.z_mm))
    roots = []
    for side in (-1.0, 1.0):
        for direction in ((0.8, 0.1, 0.6), (0.3, -0.6, 0.8), (-0.1, 0.5, 1.0),
                          (-0.85, -0.2, 0.5), (-0.7, 0.7, 0.4)):  # (z, y, |x|)
            roots.append((np.array([z_hilum, 4.0, side * 30.0]),
                          np.array([direction[0], direction[1], side * direction[2]])))
    start = np.array([r[0] for r in roots])  # (S, 3)
    direc = np.array([r[1] for r in roots])
    direc /= np.linalg.norm(direc, axis=1, keepdims=True)
    points, radii = [], []
    length, radius = 34.0, 5.0
    for _ in range(7):
        steps = np.arange(0.0, length, 1.5)  # (P,)
        pts = start[:, None, :] + direc[:, None, :] * steps[None, :, None]  # (S, P, 3)
        points.append(pts.reshape(-1, 3))
        radii.append(np.full(pts.shape[0] * pts.shape[1], radius))
        start = np.repeat(start + direc * length, 2, axis=0)  # (2S, 3)
        direc = np.repeat(direc, 2, axis=0) + rng.normal(0.0, 0.5, (len(start), 3))
        direc /= np.linalg.norm(direc, axis=1, keepdims=True)
        length, radius = length * 0.82, max(radius * 0.75, 0.8)
    return np.concatenate(points), np.concatenate(radii)


def _rasterize(points_mm: np.ndarray, radii_mm: np.ndarray, grid: Grid) -> np.ndarray:
    """(z, y, x) bool: voxels within each point's radius (anisotropic voxel stencils).

    Slice partial volume: a point further than ``max(r, 1.5 mm)`` from the centre plane
    of its slice is not drawn, as a vessel that only grazes a thick slice is averaged away;
    this keeps the vessel share of the lung about the same at every slice thickness.
    """
    spacing = np.array(grid.spacing_mm)
    origin = np.array([grid.z_mm[0], grid.y_mm[0], grid.x_mm[0]])
    pos = (points_mm - origin) / spacing  # (N, 3) in voxels
    centre = np.rint(pos).astype(np.int64)
    off_plane_mm = np.abs(pos[:, 0] - centre[:, 0]) * spacing[0]
    keep = off_plane_mm <= np.maximum(radii_mm, 1.5)
    centre, radii_mm = centre[keep], radii_mm[keep]
    mask = np.zeros(grid.shape, dtype=bool)
    for r in np.unique(radii_mm):
        reach = np.floor(r / spacing).astype(int)  # voxels each way per axis
        offs = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in reach], indexing="ij"),
                        axis=-1).reshape(-1, 3)
        offs = offs[((offs * spacing) ** 2).sum(1) <= r * r + 1e-6]  # (O, 3)
        idx = (centre[radii_mm == r][:, None, :] + offs[None]).reshape(-1, 3)
        idx = idx[np.all((idx >= 0) & (idx < np.array(grid.shape)), axis=1)]
        mask[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return mask


def build_anatomy(shape: tuple[int, int, int], slice_thickness_mm: float,
                  rng: np.random.Generator) -> Anatomy:
    """Label volume of a thorax on a ``shape`` (z, y, x) grid; see the module docstring."""
    grid = make_grid(shape, slice_thickness_mm)
    hab = draw_habitus(rng)
    rb = _body_radius(grid, hab)  # (y, x)
    labels = np.empty(shape, dtype=np.uint8)
    _body_wall(labels, grid, hab, rb)
    diaphragm = _diaphragm_t(grid, hab)  # (y, x)
    _abdomen(labels, grid, rb, diaphragm)
    heart = _heart(grid, hab)  # (z, y, x)
    lung, r2 = _lungs(grid, hab, rb, diaphragm, heart)
    labels[lung] = LUNG
    _mediastinal_organs(labels, grid, heart)
    _airways(labels, grid)
    _spine_and_sternum(labels, grid, hab)
    _ribs_and_scapulae(labels, grid, rb)
    points, radii = _vessel_points(rng, grid)
    vessels = _rasterize(points, radii, grid) & (labels == LUNG)
    labels[vessels] = PULMONARY_VESSEL
    return Anatomy(labels=labels, lung_radius2=r2, body_radius=rb, grid=grid)
