"""Turn CT slices (HU), masks and saliency heatmaps into RGB images for display (pure numpy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from sscmort_core.deep.saliency import Saliency

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


# --- saliency overlays (Grad-CAM of the deep models) ---------------------------------------
def overlay_rgb(sal: Saliency, i: int, *, upscale: int = 4) -> np.ndarray:
    """(S*u, S*u, 3) uint8: the model's input slice (lung window) with the heatmap blended in."""
    s = sal.slices[i]
    level, width = LUNG_WINDOW
    hu = s.image.astype(np.float32) / 255.0 * width + (level - width / 2)  # back to HU
    return render_slice(hu, LUNG_WINDOW, heatmap=s.heatmap, upscale=upscale)


def colorbar_rgb(width: int = 256, height: int = 14) -> np.ndarray:
    """(height, width, 3) uint8 legend strip: the overlay's colours from 0 (left) to 1 (right)
    blended over mid-grey exactly as :func:`overlay_rgb` blends them."""
    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))  # (h, w)
    grey = np.full((height, width), -600.0, dtype=np.float32)  # lung-window mid-grey (HU)
    return render_slice(grey, heatmap=ramp)
