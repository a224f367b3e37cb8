"""Model input: K axial slices across the lungs, cropped to the lungs, three HU windows.

``sample_model_input`` is pure and deterministic: the same volume and mask always give the same
array, so training, cross-validation and inference see identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sscmort_core.errors import EmptyMaskError


@dataclass(frozen=True)
class HUWindow:
    """A display window: HU in [level - width/2, level + width/2] maps linearly onto [0, 1]."""

    name: str
    level_hu: float
    width_hu: float

    @property
    def low_hu(self) -> float:
        return self.level_hu - self.width_hu / 2.0

    @property
    def high_hu(self) -> float:
        return self.level_hu + self.width_hu / 2.0


LUNG_WINDOW = HUWindow("lung", -600.0, 1500.0)  # [-1350, 150]: parenchyma, airways, fibrosis
MEDIASTINAL_WINDOW = HUWindow("mediastinal", 40.0, 400.0)  # [-160, 240]: vessels, nodes, pleura
ILD_WINDOW = HUWindow("ild", -500.0, 600.0)  # [-800, -200]: ground glass and reticulation
DEFAULT_WINDOWS: tuple[HUWindow, ...] = (LUNG_WINDOW, MEDIASTINAL_WINDOW, ILD_WINDOW)
# Bump when the slices chosen or their windows change (model inputs are keyed on it).
SAMPLING_VERSION = "sampling-1"
CROP_MARGIN = 0.05  # of the square crop side, on each side of the lung bounding box


def apply_window(hu: np.ndarray, window: HUWindow) -> np.ndarray:
    """float32 in [0, 1]: 0 at or below the window's low end, 1 at or above its high end."""
    scaled = (hu.astype(np.float32) - np.float32(window.low_hu)) / np.float32(window.width_hu)
    return np.clip(scaled, 0.0, 1.0)


def slice_indices(lung_mask: np.ndarray, k: int) -> np.ndarray:
    """(k,) slice indices spread evenly over the lung's z-extent (centres of k equal bins).

    With fewer lung slices than k, slices repeat (in order), so the output always has k.
    """
    zs = np.nonzero(lung_mask.any(axis=(1, 2)))[0]
    lo, n = int(zs[0]), int(zs[-1]) - int(zs[0]) + 1
    return lo + np.floor((np.arange(k) + 0.5) * n / k).astype(np.int64)  # (k,)


def square_crop(lung_mask: np.ndarray, margin: float = CROP_MARGIN
                ) -> tuple[float, float, float]:
    """(centre_y, centre_x, side) in voxels of a square around the lung's in-plane extent."""
    ys = np.nonzero(lung_mask.any(axis=(0, 2)))[0]
    xs = np.nonzero(lung_mask.any(axis=(0, 1)))[0]
    cy, cx = (ys[0] + ys[-1]) / 2.0, (xs[0] + xs[-1]) / 2.0
    side = max(ys[-1] - ys[0] + 1, xs[-1] - xs[0] + 1) * (1.0 + 2.0 * margin)
    return float(cy), float(cx), float(side)


def resize_bilinear(image: np.ndarray, cy: float, cx: float, side: float, size: int,
                    fill: float) -> np.ndarray:
    """(size, size) bilinear samples of a (y, x) image over the square (cy, cx, side).

    Sample centres sit at the centres of ``size`` equal cells of the square; points outside the
    image take the value ``fill`` (air).
    """
    step = side / size
    coords = (np.arange(size) + 0.5) * step - side / 2.0  # (S,) offsets from the centre
    ys, xs = cy + coords, cx + coords
    padded = np.pad(image.astype(np.float32), 1, mode="constant", constant_values=fill)
    yp = np.clip(ys + 1.0, 0.0, padded.shape[0] - 1.0)  # in padded coordinates
    xp = np.clip(xs + 1.0, 0.0, padded.shape[1] - 1.0)
    y0 = np.minimum(np.floor(yp).astype(np.int64), padded.shape[0] - 2)
    x0 = np.minimum(np.floor(xp).astype(np.int64), padded.shape[1] - 2)
    wy = (yp - y0).astype(np.float32)[:, None]  # (S, 1)
    wx = (xp - x0).astype(np.float32)[None, :]  # (1, S)
    a = padded[np.ix_(y0, x0)]
    b = padded[np.ix_(y0, x0 + 1)]
    c = padded[np.ix_(y0 + 1, x0)]
    d = padded[np.ix_(y0 + 1, x0 + 1)]
    return (a * (1 - wy) * (1 - wx) + b * (1 - wy) * wx + c * wy * (1 - wx) + d * wy * wx)


def _as_window(w: HUWindow | tuple[float, float]) -> HUWindow:
    if isinstance(w, HUWindow):
        return w
    level, width = (float(v) for v in w)
    if width <= 0:
        raise ValueError(f"a window width must be positive, got {width}")
    return HUWindow(f"WL{level:g}/WW{width:g}", level, width)


def sample_model_input(hu: np.ndarray, lung_mask: np.ndarray, *, k: int, size: int,
                       windows: Sequence[HUWindow | tuple[float, float]] = DEFAULT_WINDOWS,
                       ) -> np.ndarray:
    """K windowed lung slices as a (K, C, S, S) float32 array in [0, 1].

    hu: (z, y, x) HU; lung_mask: (z, y, x) bool, same shape. Slices: centres of K equal bins of
    the lung's z-extent (repeated when the lung has fewer than K slices). Crop: one square for
    all slices, around the lung's in-plane bounding box plus 5 % margin, resampled to S x S
    bilinearly (outside the image counts as air, -1024 HU). Channels: one per window, given as
    :class:`HUWindow` or (level, width) in HU (default lung WL -600/WW 1500, mediastinal WL 40/
    WW 400, ILD WL -500/WW 600), each mapped linearly and clipped to [0, 1].
    Raises EmptyMaskError for an empty mask, ValueError for bad arguments.
    """
    if hu.ndim != 3 or hu.shape != lung_mask.shape:
        raise ValueError(f"hu {hu.shape} and lung_mask {lung_mask.shape} must be the same (z, y, x)")
    if k < 1 or size < 2 or not windows:
        raise ValueError(f"need k >= 1, size >= 2 and at least one window (got k={k}, "
                         f"size={size}, {len(windows)} windows)")
    windows = [_as_window(w) for w in windows]
    mask = lung_mask.astype(bool, copy=False)
    if not mask.any():
        raise EmptyMaskError("the lung mask is empty, so no slices can be sampled")
    cy, cx, side = square_crop(mask)
    out = np.empty((k, len(windows), size, size), dtype=np.float32)  # (K, C, S, S)
    for i, z in enumerate(slice_indices(mask, k)):
        resized = resize_bilinear(hu[z], cy, cx, side, size, fill=-1024.0)  # (S, S) HU
        for c, window in enumerate(windows):
            out[i, c] = apply_window(resized, window)
    return out
