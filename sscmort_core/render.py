"""Turn CT slices (HU) and masks into RGB images for display (pure numpy)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LUNG_WINDOW = (-600.0, 1500.0)  # (level, width) in HU
MEDIASTINAL_WINDOW = (40.0, 400.0)


def window_to_uint8(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map HU to 0..255 with a display window (level, width); (y, x) -> (y, x) uint8."""
    lo = level - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - lo) / float(width)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """One-pixel inner boundary of a 2D boolean mask."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, iterations=1, border_value=0)


def render_slice(hu: np.ndarray, window: tuple[float, float] = LUNG_WINDOW,
                 outlines: tuple[tuple[np.ndarray, tuple[int, int, int]], ...] = (),
                 heatmap: np.ndarray | None = None, heat_alpha: float = 0.45,
                 upscale: int = 1) -> np.ndarray:
    """RGB image (y, x, 3) uint8 of one axial slice.

    ``outlines``: (2D bool mask, RGB colour) pairs drawn as contours. ``heatmap``: a 2D array in
    [0, 1] blended in red-yellow (saliency); ``upscale`` repeats pixels for small volumes.
    """
    gray = window_to_uint8(hu, *window)
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    if heatmap is not None:
        h = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
        colour = np.stack([np.ones_like(h), h, np.zeros_like(h)], axis=-1) * 255.0
        a = (heat_alpha * h)[..., None]
        rgb = rgb * (1 - a) + colour * a
    for mask, colour in outlines:
        edge = outline(mask)
        rgb[edge] = colour
    out = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    if upscale > 1:
        out = np.repeat(np.repeat(out, upscale, axis=0), upscale, axis=1)
    return out
