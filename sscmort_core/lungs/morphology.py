"""In-plane binary erosion and dilation by a square, from shifted slices of the mask.

The same result as ``scipy.ndimage.minimum_filter`` / ``maximum_filter`` of the mask with
``size=(1, 2r+1, 2r+1)`` (a square is the product of two 1-D windows, and a binary minimum
is an AND, a maximum an OR), at a tenth of the CPU: whole-array logical operations instead of
a filter pass per line. ``outside`` says what lies beyond the image: ``False`` (background,
scipy's ``mode="constant", cval=0``) or ``"edge"`` (the edge pixel repeated, scipy's
``mode="nearest"``; for a minimum or maximum the same as a window cut at the edge).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Outside = Literal[False, "edge"]


def _axis_slices(axis: int, a: slice, b: slice) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    sa, sb = [slice(None)] * 3, [slice(None)] * 3
    sa[axis], sb[axis] = a, b
    return tuple(sa), tuple(sb)


def window_1d(mask: np.ndarray, r: int, axis: int, erode: bool, outside: Outside
               ) -> np.ndarray:
    """(z, y, x) bool: AND (``erode``) or OR of each pixel's +-r neighbours along ``axis``."""
    out = mask.copy()
    n = mask.shape[axis]
    for s in range(1, min(r, n - 1) + 1):
        hi, lo = _axis_slices(axis, slice(s, None), slice(None, -s))
        if erode:
            out[hi] &= mask[lo]
            out[lo] &= mask[hi]
        else:
            out[hi] |= mask[lo]
            out[lo] |= mask[hi]
    if erode and outside is False and r > 0:  # a window reaching past the edge sees background
        first, last = _axis_slices(axis, slice(None, r), slice(max(0, n - r), None))
        out[first] = False
        out[last] = False
    return out


def erode_square(mask: np.ndarray, r: int, outside: Outside = False) -> np.ndarray:
    """(z, y, x) bool: in-plane erosion of ``mask`` by a (2r+1) x (2r+1) square."""
    m = np.asarray(mask, dtype=bool)
    return window_1d(window_1d(m, r, 1, True, outside), r, 2, True, outside)


def dilate_square(mask: np.ndarray, r: int) -> np.ndarray:
    """(z, y, x) bool: in-plane dilation of ``mask`` by a (2r+1) x (2r+1) square (what lies
    beyond the image never adds to a maximum, whether background or the edge repeated)."""
    m = np.asarray(mask, dtype=bool)
    return window_1d(window_1d(m, r, 1, False, False), r, 2, False, False)
