"""Quantitative CT of the lungs: volume, density histogram moments, HAA and ILD extent.

All metrics are computed over the voxels of a lung mask (``(z, y, x)`` bool), in HU.
:func:`qct_metrics` is re-exported by :mod:`sscmort_core.lungs`. The ILD extent is the share
of the lung the pattern map (:mod:`.patterns`) calls ground glass, reticulation,
honeycombing or consolidation (qct-2; qct-1 used :func:`ild_mask`, which missed dense lung
and honeycombing and is kept as the benchmarks' baseline). Stored QCT, regional, pattern and
QC rows record :func:`qct_method_version` (these metrics and the zones, the pattern model,
the QC checks and the lung mask), so a change of any is seen as a stale row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from sscmort_core.errors import EmptyMaskError, ImplausibleHUError
from sscmort_core.lungs.patterns import (
    ILD_PATTERNS,
    PATTERNS,
    PatternMap,
    classify_patterns,
    pattern_model_version,
)
from sscmort_core.lungs.qc import QC_VERSION
from sscmort_core.lungs.segmentation import lung_mask_version

# Bump when a metric here or a zone of .regions changes (rows record it with the versions of
# the pattern model, the QC checks and the lung mask).
QCT_METHOD_VERSION = "qct-2"
# high-attenuation area, inclusive (Lederer et al. 2009; Podolanczuk et al. 2016, MESA)
HAA_RANGE_HU = (-600.0, -250.0)
# ILD estimate (see ild_mask): lung density after a grey opening, in this range
ILD_RANGE_HU = (-700.0, -150.0)
SMOOTH_MM = 8.0  # in-plane noise averaging before the opening
OPENING_MM = 13.5  # in-plane: bright structures thinner than this (vessels, rims) are not ILD
OPENING_Z_MM = 15.0  # the same along z (3 slices of 5-7.5 mm)


def qct_method_version() -> str:
    """What a stored QCT row (and its regional, pattern and QC rows) was measured with: these
    metrics and zones, this pattern model and these QC checks on this lung mask."""
    return f"{QCT_METHOD_VERSION}+{pattern_model_version()}+{QC_VERSION}+{lung_mask_version()}"


ILD_CODES = np.array([PATTERNS.index(p) + 1 for p in ILD_PATTERNS])  # pattern-map labels


def ild_voxels(patterns: PatternMap) -> np.ndarray:
    """(z, y, x) bool: the voxels the pattern map calls ILD."""
    is_ild = np.zeros(256, dtype=bool)  # one look-up per voxel (labels are uint8)
    is_ild[ILD_CODES] = True
    return is_ild[patterns.labels]


@dataclass(frozen=True)
class QCTMetrics:
    """Quantitative CT of one scan's lungs.

    lung_volume_ml: mask volume. mean_lung_density_hu: mean HU. skewness: Fisher-Pearson
    (biased, ``scipy.stats.skew`` default). kurtosis: *excess* (Fisher) kurtosis, 0 for a
    normal distribution (``scipy.stats.kurtosis`` default); the JSON key stays "kurtosis".
    haa_pct: % of lung voxels in [-600, -250] HU. ild_extent_pct: % of the lung the
    pattern map calls ILD (:attr:`PatternMap.ild_pct`).
    """

    lung_volume_ml: float
    mean_lung_density_hu: float
    skewness: float
    kurtosis: float
    haa_pct: float
    ild_extent_pct: float

    def to_dict(self) -> dict[str, float]:
        """Exactly the keys lung_volume_ml, mean_lung_density_hu, skewness, kurtosis, haa_pct,
        ild_extent_pct (the qct table's columns)."""
        return {"lung_volume_ml": self.lung_volume_ml,
                "mean_lung_density_hu": self.mean_lung_density_hu,
                "skewness": self.skewness, "kurtosis": self.kurtosis,
                "haa_pct": self.haa_pct, "ild_extent_pct": self.ild_extent_pct}


def _bbox(mask: np.ndarray) -> tuple[slice, slice, slice]:
    idx = [np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)]
    return tuple(slice(max(0, int(i[0]) - 1), int(i[-1]) + 2) for i in idx)  # type: ignore


def moments(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, skewness, excess kurtosis) of a 1-D sample, population (biased) moments.

    Raises ImplausibleHUError (an input error: one clear line on CLI and pages) for a
    sample with zero variance (both shape measures are undefined).
    """
    v = values.astype(np.float64)
    mean = float(v.mean())
    d = v - mean
    m2 = float(np.mean(d * d))
    if m2 <= 0:
        raise ImplausibleHUError("the lung density has zero variance, so skewness and kurtosis are "
                         "undefined (a constant image is not CT)")
    d2 = d * d
    m3 = float(np.mean(d2 * d))
    m4 = float(np.mean(d2 * d2))
    return mean, m3 / m2**1.5, m4 / (m2 * m2) - 3.0


def _odd(n: float) -> int:
    k = max(3, int(round(n)))
    return k if k % 2 else k + 1


def filter_sizes(spacing_mm: tuple[float, float, float]
                 ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(z, y, x) odd voxel counts of the smoothing box and the opening box (see ild_mask)."""
    smooth = (1, _odd(SMOOTH_MM / spacing_mm[1]), _odd(SMOOTH_MM / spacing_mm[2]))
    opening = (_odd(OPENING_Z_MM / spacing_mm[0]), _odd(OPENING_MM / spacing_mm[1]),
               _odd(OPENING_MM / spacing_mm[2]))
    return smooth, opening


def lung_mean(hu: np.ndarray, m: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """Box mean of HU over lung voxels only (outside voxels never leak in). (z, y, x) float32."""
    values = np.where(m, hu.astype(np.float32), np.float32(0.0))
    weight = ndi.uniform_filter(m.astype(np.float32), size=size, mode="constant")
    total = ndi.uniform_filter(values, size=size, mode="constant")
    return np.where(m, total / np.maximum(weight, np.float32(1e-6)), np.float32(0.0))


def lung_opening(values: np.ndarray, m: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """Grey opening (minimum then maximum filter over a box) using lung voxels only.

    values, m: (z, y, x). Voxels outside the lung never enter either filter, so the chest
    wall, mediastinum and diaphragm cannot raise or lower the result. float32 (z, y, x).
    """
    big = np.float32(1e4)
    eroded = ndi.minimum_filter(np.where(m, values, big), size=size, mode="nearest")
    return ndi.maximum_filter(np.where(m, eroded, -big), size=size, mode="nearest")


def ild_mask(hu: np.ndarray, lung_mask: np.ndarray,
             spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """(z, y, x) bool voxels estimated as ILD by density alone (qct-1's estimate, now the
    benchmarks' baseline for the pattern map).

    1. mean HU over an in-plane box of about 8 mm, lung voxels only: noise down about 3-fold,
       nothing outside the lung leaks in;
    2. grey opening over the lung with a box of about 13.5 mm in-plane and 15 mm in z (at
       least 3 voxels each): the result is the density of the least dense lung within reach,
       so what is smaller than the box and brighter than its surroundings drops out - vessels
       and their partial-volume halos, the partial-volume rim along the pleura and the
       diaphragm, reticular lines - while broader regions keep their density (ground glass,
       the background of reticulation);
    3. ILD: opened density in [-700, -150] HU (above -150 is solid: large vessels, nodules).

    Tuned on the synthetic phantoms of :mod:`sscmort_core.synthetic` (sharp and smooth
    kernels, 5-7.5 mm slices): Spearman rho about 0.99 against the true extent, mean absolute
    error about 2 percentage points. Disease thinner than the box (a fine subpleural line)
    is not counted, and honeycomb cysts read at the density of air.
    """
    box = _bbox(lung_mask)
    m = lung_mask[box]
    smooth, opening = filter_sizes(spacing_mm)
    opened = lung_opening(lung_mean(hu[box], m, smooth), m, opening)
    out = np.zeros(lung_mask.shape, dtype=bool)
    out[box] = m & (opened >= ILD_RANGE_HU[0]) & (opened <= ILD_RANGE_HU[1])
    return out


def qct_metrics(hu: np.ndarray, lung_mask: np.ndarray,
                spacing_mm: tuple[float, float, float],
                patterns: PatternMap | None = None) -> QCTMetrics:
    """QCT metrics of ``hu`` (z, y, x) HU over ``lung_mask`` (z, y, x) bool.

    spacing_mm (z, y, x) gives the voxel volume; ``patterns``: the mask's pattern map when
    the caller has it (else made here). Raises EmptyMaskError for an empty mask and
    ValueError for mismatched shapes.
    """
    if hu.shape != lung_mask.shape or hu.ndim != 3:
        raise ValueError(f"hu {hu.shape} and lung_mask {lung_mask.shape} must be the same "
                         "(z, y, x) shape")
    mask = lung_mask.astype(bool, copy=False)
    n = int(np.count_nonzero(mask))
    if n == 0:
        raise EmptyMaskError("the lung mask is empty, so no QCT metrics can be measured")
    values = hu[mask]
    mean, skew, kurt = moments(values)
    lo, hi = HAA_RANGE_HU
    haa = float(np.count_nonzero((values >= lo) & (values <= hi))) / n
    if patterns is None:
        patterns = classify_patterns(hu, mask, spacing_mm)
    ild = patterns.ild_pct / 100.0
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    return QCTMetrics(lung_volume_ml=n * voxel_ml, mean_lung_density_hu=mean, skewness=skew,
                      kurtosis=kurt, haa_pct=100.0 * haa, ild_extent_pct=100.0 * ild)
