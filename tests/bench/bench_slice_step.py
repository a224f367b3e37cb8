"""The server's share of one slice-slider step of the lung viewer (issue 13; not collected by
pytest): the pattern overlay and the lung outline of one slice, as pages/_lungs.py draws
them, against the per-pixel float blend and scipy erosion they replaced, in the same run.

    PYTHONPATH=. .venv/bin/python tests/bench/bench_slice_step.py [--repeats 30]

Slices: a real-CT-sized 512 x 512 and a demo-sized 128 x 128 (seeded random HU and
labels: the cost depends on the size, not the content); median of the repeats.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from sscmort_core.lungs.patterns import PATTERN_COLORS, PATTERNS
from sscmort_core.views import lungs as lv
from sscmort_core.views import render


def blend_reference(hu: np.ndarray, labels: np.ndarray, alpha: float = 0.45,
                    show_normal: bool = False) -> np.ndarray:
    """The overlay as it was drawn before the look-up table (per-pixel float blend; the
    reference tests/views compares the overlay with)."""
    rgb = render.render_slice(hu, render.LUNG_WINDOW).astype(np.float32)
    shown = labels > (0 if show_normal else 1)
    idx = np.clip(labels.astype(np.int64) - 1, 0, len(PATTERNS) - 1)
    colours = np.asarray(PATTERN_COLORS, dtype=np.float32)
    rgb[shown] = (1 - alpha) * rgb[shown] + alpha * colours[idx[shown]]
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def outline_reference(mask: np.ndarray) -> np.ndarray:
    """The lung outline as scipy's erosion drew it (the reference of tests/views)."""
    return mask & ~ndimage.binary_erosion(mask, iterations=1, border_value=0)


def _median_ms(repeats: int, fn, *args) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print("| slice | overlay: blend (ms) | overlay: table (ms) | ratio | outline: erosion (ms) "
          "| outline: slices (ms) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for n in (512, 128):
        hu = rng.normal(-700.0, 250.0, (n, n)).astype(np.float32)
        labels = rng.integers(0, len(PATTERNS) + 1, (n, n))
        mask = ndimage.binary_opening(hu < -500)
        assert np.array_equal(lv.pattern_overlay_rgb(hu, labels), blend_reference(hu, labels))
        assert np.array_equal(render.outline(mask), outline_reference(mask))
        ob = _median_ms(args.repeats, blend_reference, hu, labels)
        ot = _median_ms(args.repeats, lv.pattern_overlay_rgb, hu, labels)
        er = _median_ms(args.repeats, outline_reference, mask)
        sl = _median_ms(args.repeats, render.outline, mask)
        print(f"| {n} x {n} | {ob:.1f} | {ot:.1f} | {ob / ot:.1f}x | {er:.1f} | {sl:.1f} "
              f"| {er / sl:.1f}x |")


if __name__ == "__main__":
    main()
