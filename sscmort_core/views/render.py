"""Turn CT slices (HU), masks and saliency heatmaps into RGB images for display (pure numpy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from sscmort_core.deep.sampling import resize_bilinear

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
    """One-pixel inner boundary of a 2D boolean mask: its pixels with a 4-neighbour outside it
    (or on the image's edge), i.e. ``mask & ~binary_erosion(mask)`` with a cross and a zero
    border, by shifted slices (a few times faster on a 512 x 512 slice; a test compares)."""
    mask = np.asarray(mask, dtype=bool)
    inner = np.zeros_like(mask)
    if mask.shape[0] > 2 and mask.shape[1] > 2:
        c = mask[1:-1, 1:-1]
        inner[1:-1, 1:-1] = (c & mask[:-2, 1:-1] & mask[2:, 1:-1]
                             & mask[1:-1, :-2] & mask[1:-1, 2:])
    return mask & ~inner


HEAT_FLOOR = 0.15  # heat below this stays uncoloured (little or no contribution)


def heat_colour(h: np.ndarray) -> np.ndarray:
    """(..., 3) float RGB 0..255 of heat values in [0, 1]: red at the floor to yellow at 1."""
    g = np.clip((h - HEAT_FLOOR) / (1.0 - HEAT_FLOOR), 0.0, 1.0)
    return np.stack([np.ones_like(g), g, np.zeros_like(g)], axis=-1) * 255.0


def heat_opacity(h: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend weight of the heat colour: 0 below :data:`HEAT_FLOOR`, then ``alpha`` to 0.9, so
    weak heat is clearly red (not grey-olive) and strong heat clearly yellow."""
    on = h >= HEAT_FLOOR
    return np.where(on, alpha + (0.9 - alpha) * np.clip(h, 0.0, 1.0), 0.0).astype(np.float32)


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
        colour = heat_colour(h)
        a = heat_opacity(h, heat_alpha)[..., None]
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


def overlay_full_rgb(sal: Saliency, i: int, hu: np.ndarray, size: int = 384) -> np.ndarray:
    """(size, size, 3) uint8: the *volume's* slice ``sal.slices[i].z_index`` (hu: (z, y, x)),
    cropped to the model's square lung crop and resampled to ``size`` (so it is as sharp as the
    lung view), with the model's heatmap upsampled onto it. Falls back to :func:`overlay_rgb`
    without a crop or slice index."""
    s = sal.slices[i]
    if sal.crop_yx_side is None or s.z_index is None:
        return overlay_rgb(sal, i, upscale=max(1, size // s.image.shape[0]))
    cy, cx, side = sal.crop_yx_side
    img = resize_bilinear(hu[s.z_index], cy, cx, side, size, fill=-1000.0)
    heat = ndimage.zoom(s.heatmap.astype(np.float32), size / s.heatmap.shape[0], order=1)
    return render_slice(img, LUNG_WINDOW, heatmap=np.clip(heat[:size, :size], 0, 1))


def colorbar_rgb(width: int = 256, height: int = 14) -> np.ndarray:
    """(height, width, 3) uint8 legend strip: the overlay's colours from 0 (left) to 1 (right)
    blended over mid-grey exactly as :func:`overlay_rgb` blends them."""
    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))  # (h, w)
    grey = np.full((height, width), -600.0, dtype=np.float32)  # lung-window mid-grey (HU)
    return render_slice(grey, heatmap=ramp)
