"""Quality control of a lung mask: named checks, each with its measured value and the range
it must fall in. A scan with a failed check is "flagged": its mask needs a human look, and
it is left out of model training until someone accepts it (the store records who and when).

Checks (:data:`CHECKS`):

* ``lung_volume``: total lung volume within the adult range for the scan's coverage
  (1.5-9 L; the lower bound scales down when the scan covers less than 20 cm of z);
* ``left_right_ratio``: right / left lung volume within 0.5-2.0;
* ``missing_lung``: each lung holds at least 10 % of the total;
* ``border_contact``: under 0.5 % of the mask on the image border (first or last slice, or
  the in-plane edges): lungs cut off by the scan's coverage (a lung cut in-plane is read as
  outside air and lost, which ``missing_lung`` sees);
* ``airway_leak``: the airway was found and removed, and the mask holds no round tube of
  airway lumen (< -950 HU, 1-6 cm^2) near the trachea's column in 3 or more of its top
  quarter of slices;
* ``dense_pleura_outside``: under 50 mL of dense tissue (> -500 HU) between the mask and the
  pleura where the mask stops short of it (:func:`sscmort_core.lungs.costal.costal_gap`),
  below the top 15 % of the lungs (where the apex's dome is cut obliquely by thick slices).

Pure: arrays and the :class:`~sscmort_core.lungs.segmentation.LungMask` in, a frozen
:class:`MaskQC` out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from sscmort_core.lungs.costal import costal_gap
from sscmort_core.lungs.segmentation import (
    COSTAL_PAD_MM,
    LungMask,
    block_count,
    block_mean,
)

QC_VERSION = "maskqc-1"
CHECKS: tuple[str, ...] = ("lung_volume", "left_right_ratio", "missing_lung", "border_contact",
                           "airway_leak", "dense_pleura_outside")
VOLUME_ML = (1500.0, 9000.0)
FULL_COVERAGE_MM = 200.0
RATIO = (0.5, 2.0)
MIN_LUNG_SHARE = 0.10
MAX_BORDER_SHARE = 0.005
LUMEN_HU, LUMEN_MM2, MIDLINE_MM, LEAK_SLICES, TOP_SHARE = -950.0, 100.0, 15.0, 3, 0.25
MAX_DENSE_OUTSIDE_ML = 50.0  # the old threshold mask leaves 300 mL on dense phantoms; ours ~30
APEX_SHARE = 0.15  # the top of the lungs is left out of that check (dome in partial volume)
TARGET_INPLANE_MM = 3.0  # the dense_pleura_outside check's grid (a volume, not an outline)


@dataclass(frozen=True)
class QCCheck:
    """One named check: ``value`` measured (None when it cannot be), ``expected`` the range
    in words, ``message`` one readable sentence when it failed (empty when passed)."""

    name: str
    passed: bool
    value: float | None
    expected: str
    message: str = ""


@dataclass(frozen=True)
class MaskQC:
    """Every check of :data:`CHECKS`, in that order."""

    checks: tuple[QCCheck, ...]
    version: str = QC_VERSION

    @property
    def flagged(self) -> bool:
        return any(not c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[QCCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def summary(self) -> str:
        """"mask needs review: ..." naming every failed check, or "" when none failed."""
        if not self.flagged:
            return ""
        return "mask needs review: " + "; ".join(c.message for c in self.failed)


def _volume(lungs: LungMask, spacing: tuple[float, float, float], nz: int) -> QCCheck:
    coverage = nz * spacing[0]
    lo = VOLUME_ML[0] * min(1.0, coverage / FULL_COVERAGE_MM)
    v = float(lungs.volume_ml)
    ok = lo <= v <= VOLUME_ML[1]
    return QCCheck("lung_volume", ok, v, f"{lo:.0f}-{VOLUME_ML[1]:.0f} mL for {coverage:.0f} mm "
                   "of coverage", "" if ok else f"lung volume {v:,.0f} mL is outside the adult "
                   f"range {lo:,.0f}-{VOLUME_ML[1]:,.0f} mL")


def _ratio(lungs: LungMask) -> QCCheck:
    left, right = float(lungs.left_volume_ml), float(lungs.right_volume_ml)
    ratio = right / left if left > 0 else None
    ok = ratio is not None and RATIO[0] <= ratio <= RATIO[1]
    text = "no left lung" if ratio is None else f"right / left volume {ratio:.2f}"
    return QCCheck("left_right_ratio", ok, ratio, f"{RATIO[0]}-{RATIO[1]}",
                   "" if ok else f"{text} is implausible (expected {RATIO[0]}-{RATIO[1]})")


def _missing(lungs: LungMask) -> QCCheck:
    total = float(lungs.volume_ml)
    share = min(lungs.left_volume_ml, lungs.right_volume_ml) / total if total > 0 else 0.0
    ok = share >= MIN_LUNG_SHARE
    return QCCheck("missing_lung", ok, float(share), f">= {MIN_LUNG_SHARE:.0%} of the total in "
                   "each lung", "" if ok else f"one lung is missing or almost ({share:.0%} of "
                   "the lung volume)")


def _border(mask: np.ndarray) -> QCCheck:
    n = int(mask.sum())
    edge = np.zeros(mask.shape, dtype=bool)
    edge[0], edge[-1] = True, True
    edge[:, 0, :], edge[:, -1, :], edge[:, :, 0], edge[:, :, -1] = True, True, True, True
    share = float(np.count_nonzero(mask & edge)) / max(1, n)
    ok = share < MAX_BORDER_SHARE
    return QCCheck("border_contact", ok, share, f"< {MAX_BORDER_SHARE:.1%} of the mask",
                   "" if ok else f"the lungs touch the image border ({share:.1%} of the mask): "
                   "cut off by the field of view")


def _tube_slices(hu: np.ndarray, mask: np.ndarray, slices: np.ndarray, mid_x: float,
                 spacing: tuple[float, float, float]) -> int:
    """How many of ``slices`` hold, inside ``mask``, a round blob of airway lumen (< LUMEN_HU,
    LUMEN_MM2..6 cm^2, at least half the disc around its centroid) centred within MIDLINE_MM
    of column ``mid_x``: a trachea or main bronchus left in the lungs."""
    pixel_mm2 = spacing[1] * spacing[2]
    n = 0
    for z in slices:
        lab, k = ndi.label(mask[z] & (hu[z] < LUMEN_HU))
        if k == 0:
            continue
        areas = np.bincount(lab.ravel())[1:] * pixel_mm2
        for i in np.flatnonzero((areas >= LUMEN_MM2) & (areas <= 6.0 * LUMEN_MM2)) + 1:
            yy, xx = np.nonzero(lab == i)
            cy, cx = yy.mean(), xx.mean()
            r2 = float(np.max(((yy - cy) * spacing[1]) ** 2 + ((xx - cx) * spacing[2]) ** 2))
            round_ = yy.size * pixel_mm2 >= 0.5 * np.pi * max(r2, 1e-6)
            if round_ and abs(cx - mid_x) * spacing[2] <= MIDLINE_MM:
                n += 1
                break
    return n


def _airway(hu: np.ndarray, lungs: LungMask, spacing: tuple[float, float, float]) -> QCCheck:
    if lungs.airway is None or not lungs.airway.any():
        return QCCheck("airway_leak", False, None, "airway found and removed",
                       "the airway was not found, so it may be inside the lung mask")
    mask = lungs.mask
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    top = zs[zs >= zs[-1] - max(1, int(round(TOP_SHARE * (zs[-1] - zs[0] + 1)))) + 1]
    mid = float(np.nonzero(lungs.airway.any(axis=(0, 1)))[0].mean())  # the trachea's column
    n = _tube_slices(hu, mask, top, mid, spacing)
    ok = n < LEAK_SLICES
    return QCCheck("airway_leak", ok, float(n), f"< {LEAK_SLICES} top slices with a tube of "
                   "airway lumen in the mask", "" if ok else f"a tube of airway lumen near the "
                   f"midline is inside the mask in {n} of its top slices (an airway leak)")


def _dense_outside(hu: np.ndarray, lungs: LungMask,
                   spacing: tuple[float, float, float]) -> QCCheck:
    f = max(1, int(round(TARGET_INPLANE_MM / min(spacing[1], spacing[2]))))
    pad = int(np.ceil(COSTAL_PAD_MM / min(spacing[1], spacing[2])))
    ys = np.nonzero(lungs.mask.any(axis=(0, 2)))[0]
    xs = np.nonzero(lungs.mask.any(axis=(0, 1)))[0]
    box = (slice(None), slice(max(0, int(ys[0]) - pad), int(ys[-1]) + pad + 1),
           slice(max(0, int(xs[0]) - pad), int(xs[-1]) + pad + 1))  # the lungs and their ribs
    small = block_mean(hu[box], f)
    mask = block_count(lungs.mask[box], f) >= (f * f + 1) // 2  # block mean >= 0.5
    ys = np.nonzero(mask.any(axis=(0, 2)))[0]
    cols = np.nonzero(mask.any(axis=(0, 1)))[0]
    centre = (0.5 * (ys[0] + ys[-1]), 0.5 * (cols[0] + cols[-1]))
    work = (spacing[0], spacing[1] * f, spacing[2] * f)
    gap = costal_gap(small, mask, work, centre)
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    gap[zs[-1] - int(APEX_SHARE * (zs[-1] - zs[0] + 1)):] = False  # the apex's partial volume
    ml = float(gap.sum()) * float(np.prod(work)) / 1000.0
    ok = ml < MAX_DENSE_OUTSIDE_ML
    return QCCheck("dense_pleura_outside", ok, ml, f"< {MAX_DENSE_OUTSIDE_ML:.0f} mL",
                   "" if ok else f"{ml:.0f} mL of dense tissue against the pleura is outside "
                   "the mask")


def mask_qc(hu: np.ndarray, lungs: LungMask, spacing_mm: tuple[float, float, float]) -> MaskQC:
    """Every check of :data:`CHECKS` for ``lungs`` of ``hu`` (z, y, x) HU with spacing (z, y,
    x) mm. An empty mask fails the volume and lung checks (it never raises)."""
    spacing = tuple(float(s) for s in spacing_mm)
    if not lungs.mask.any():
        empty = [QCCheck(n, False, None, "a lung mask", "the lung mask is empty")
                 for n in CHECKS]
        return MaskQC(tuple(empty))
    return MaskQC((_volume(lungs, spacing, hu.shape[0]), _ratio(lungs), _missing(lungs),
                   _border(lungs.mask), _airway(hu, lungs, spacing),
                   _dense_outside(hu, lungs, spacing)))
