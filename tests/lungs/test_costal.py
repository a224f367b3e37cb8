"""The costal step of the lung mask: its fast ray arithmetic against slow loops, and what it
keeps on dense-fibrosis phantoms against the threshold mask it replaces (the regression set of
the hardest cases found is checked in as seeds: hard_cases.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sscmort_core.lungs import costal, segment_lungs
from sscmort_core.synthetic.phantom import DenseCase, dense_cases, make_phantom

HARD_CASES = Path(__file__).with_name("hard_cases.json")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)))


# --- fast ray arithmetic against slow references ---------------------------------------------
@pytest.fixture(scope="module")
def rays():
    return costal.make_rays((40, 50), (2.0, 2.0), (19.5, 24.0))


def test_every_pixel_sits_in_the_ray_of_its_angle(rays):
    yy, xx = np.indices((40, 50))
    angle = np.arctan2((yy - 19.5) * 2.0, (xx - 24.0) * 2.0)
    expected = np.floor((angle + np.pi) / (2 * np.pi) * rays.n).astype(int) % rays.n
    np.testing.assert_array_equal(rays.bins, expected)
    np.testing.assert_allclose(rays.radius, np.hypot((yy - 19.5) * 2, (xx - 24.0) * 2),
                               rtol=1e-6)


def test_outer_and_first_beyond_match_loops(rays):
    rng = np.random.default_rng(0)
    mask = rng.random((3, 40, 50)) > 0.7
    r_from = rng.uniform(0, 40, (3, rays.n)).astype(np.float32)
    fast_outer = costal.outer_radius(mask, rays)
    fast_first = costal.first_beyond(mask, r_from, rays)
    for z in range(3):
        for k in range(rays.n):
            sel = (rays.bins == k) & mask[z]
            radii = rays.radius[sel]
            want = radii.max() if radii.size else np.nan
            np.testing.assert_allclose(fast_outer[z, k], want, rtol=1e-6)
            beyond = radii[radii > r_from[z, k]]
            np.testing.assert_allclose(fast_first[z, k], beyond.min() if beyond.size else np.nan,
                                       rtol=1e-6)


def test_nan_quantile_is_numpys_lower_percentile():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(9, 7, 5))
    v[rng.random(v.shape) < 0.3] = np.nan
    v[:, 0, 0] = np.nan  # a column with no value
    for q in (0.0, 20.0, 50.0, 100.0):
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            want = np.nanpercentile(v, q, axis=0, method="lower")
        np.testing.assert_array_equal(costal.nan_quantile(v, q, axis=0), want)


def test_smoothing_and_interpolation_match_loops(rays):
    rng = np.random.default_rng(2)
    v = rng.normal(size=(4, rays.n)).astype(np.float32)
    v[rng.random(v.shape) < 0.2] = np.nan
    fast = costal._smooth2d(v, 1, 2)
    for z in range(4):
        for k in range(rays.n):
            if np.isnan(v[z, k]):
                assert np.isnan(fast[z, k])
                continue
            win = [v[zz, (k + s) % rays.n] for zz in range(max(0, z - 1), min(4, z + 2))
                   for s in range(-2, 3)]
            np.testing.assert_allclose(fast[z, k], np.nanmean(win), rtol=1e-5)
    per_ray = rng.normal(size=(2, rays.n)).astype(np.float32)
    px = costal.at_pixels(per_ray, rays)
    a = rays.pos - 0.5
    k0 = np.floor(a).astype(int)
    w = a - k0
    want = (1 - w) * per_ray[:, k0 % rays.n] + w * per_ray[:, (k0 + 1) % rays.n]
    np.testing.assert_allclose(px, want, rtol=1e-5, atol=1e-6)


# --- what the mask keeps --------------------------------------------------------------------
def _accuracy(case: DenseCase, costal_step: bool = True) -> tuple[float, float, float]:
    p = make_phantom(**case.kwargs())
    m = segment_lungs(p.hu, p.spacing_mm, costal=costal_step).mask
    return (float(m[p.ild_mask].mean()), float((m & ~p.lung_mask).sum() / m.sum()),
            dice(m, p.lung_mask))


def test_dense_fibrosis_is_kept_far_better_than_by_the_threshold_mask():
    for case in dense_cases(3, seed=5, extent_range=(8.0, 35.0)):
        new, old = _accuracy(case), _accuracy(case, costal_step=False)
        assert new[0] >= old[0] + 0.15, (case, new, old)  # fibrotic lung kept
        assert new[0] >= 0.8 and new[1] <= 0.03 and new[2] >= 0.95, (case, new)
        assert new[2] > old[2]


def test_the_regression_set_of_hardest_cases_keeps_its_level():
    """Each case's recall, false share and Dice when the set was chosen (the 6 with the
    lowest recall of dense_cases(48, seed=77), measured with lungmask-5) may not get worse."""
    cases = json.loads(HARD_CASES.read_text())
    for c in cases["cases"]:
        case = DenseCase(**c["case"])
        recall, false, d = _accuracy(case)
        assert recall >= c["recall"] - 0.02, (case, recall)
        assert false <= c["false_share"] + 0.01, (case, false)
        assert d >= c["dice"] - 0.01, (case, d)


@pytest.mark.slow
def test_dense_fibrosis_phantoms_5_to_40_percent():
    """24 dense phantoms (5-40 % ILD; settings were chosen on dense_cases(24, seed=77), never
    on these). The issue's targets (>= 0.95 of the fibrotic lung kept, <= 2 % of the mask
    outside the lung, Dice >= 0.97) are not all reached: measured with lungmask-5, median
    recall 0.946 (min 0.844), false share median 0.0131 (max 0.0195, so every phantom meets
    the 2 %), Dice median 0.9838 (min 0.9730, so every phantom meets the 0.97)
    (docs/BENCHMARKS.md "## Lungs"); the floors sit a little below those levels (the false
    share's maximum at the 2 % target itself)."""
    results = np.array([_accuracy(c) for c in dense_cases(24, seed=31)])
    assert np.median(results[:, 0]) >= 0.935 and results[:, 0].min() >= 0.83
    assert np.median(results[:, 1]) <= 0.015 and results[:, 1].max() <= 0.020
    assert np.median(results[:, 2]) >= 0.980 and results[:, 2].min() >= 0.968


def test_diseased_rays_match_a_loop():
    rng = np.random.default_rng(4)
    inside = rng.choice([-1000.0, -850.0, -800.0, -600.0, np.nan], size=(3, 40))
    fast = costal.diseased_rays(inside)
    own = (inside > costal.DISEASED_INSIDE_HU) | (inside <= costal.NOT_LUNG_INSIDE_HU)
    d = costal.DISEASE_SPREAD_RAYS
    for z in range(3):
        for k in range(40):
            assert fast[z, k] == any(own[z, (k + s) % 40] for s in range(-d, d + 1))


def test_borrowed_edge_matches_a_loop():
    rng = np.random.default_rng(5)
    shape = (3, 30)
    r_lung = np.where(rng.random(shape) < 0.8, rng.uniform(50, 90, shape), np.nan)
    edge = np.where(np.isfinite(r_lung) & (rng.random(shape) < 0.6), r_lung + 1.0, np.nan)
    inside = rng.choice([-1000.0, -850.0, -600.0, -100.0], size=shape)
    fast = costal.borrowed_edge(r_lung, edge, inside)
    n = shape[1]
    for z in range(shape[0]):
        for k in range(n):
            want = edge[z, k]
            if np.isfinite(r_lung[z, k]) and not np.isfinite(want):
                for s in (1, -1, 2, -2)[:2 * costal.EDGE_BORROW_RAYS]:
                    j = (k - s) % n  # np.roll(a, s)[k] is a[k - s]
                    if np.isfinite(edge[z, j]) and inside[z, j] > costal.DONOR_HU:
                        want = edge[z, j]
                        break
            np.testing.assert_equal(fast[z, k], want)


def test_half_way_rim_drops_blurred_air_beside_normal_lung_only():
    """A smooth kernel's first voxel of mediastinum (-400 HU beside -850 lung) is dropped;
    the same voxel beside ground glass (-550) is kept, and so is lung below -450 HU."""
    from sscmort_core.lungs.segmentation import half_way_rim

    hu = np.full((1, 7, 9), 40.0, np.float32)
    mask = np.zeros(hu.shape, bool)
    mask[0, 1:6, 1:8] = True
    hu[0, 1:6, 1:8] = -850.0
    hu[0, 1:6, 7] = -400.0  # the blurred first voxel of soft tissue, right column
    hu[0, 1:6, 1] = -500.0  # a darker edge voxel (below the half-way value), left column
    out = half_way_rim(mask, hu)
    assert out[0, 2:5, 7].all() and not out[0, :, :7].any()
    hu[0, 1:6, 5:7] = -550.0  # ground glass beside the rim: the rim is disease, kept
    assert not half_way_rim(mask, hu)[0, 2:5, 7].any()


@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_disc_morphology_matches_scipy(r):
    from scipy import ndimage as ndi
    rng = np.random.default_rng(10 + r)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = np.zeros((1, 2 * r + 1, 2 * r + 1), dtype=bool)
    disc[0] = yy ** 2 + xx ** 2 <= r * r
    sparse = rng.random((3, 30, 34)) < 0.2
    np.testing.assert_array_equal(costal._dilate_disc(sparse, r),
                                  ndi.binary_dilation(sparse, disc))
    dense = rng.random((3, 30, 34)) < 0.85
    inner = (slice(None), slice(r, -r), slice(r, -r))  # scipy treats the outside as background
    np.testing.assert_array_equal(costal._erode_disc(dense, r)[inner],
                                  ndi.binary_erosion(dense, disc)[inner])


def test_rind_closing_stays_inside_the_pleura_and_on_its_side():
    """A notch in a ring of lung is closed where it lies inside the pleura, not beyond it,
    and nothing joins across the midline."""
    shape = (1, 60, 60)
    yy, xx = np.indices(shape[1:])
    r = np.hypot(yy - 29.5, xx - 29.5)  # pixels of 1 mm
    lung = ((r > 15) & (r <= 24) & (np.abs(xx - 29.5) > 3))[None]
    lung[0, 25:35, 50:54] = False  # a notch at the lung's outer edge (right-hand side)
    rays = costal.make_rays(shape[1:], (1.0, 1.0), (29.5, 29.5))
    wall = np.full((1, rays.n), 24.5, np.float32)
    surf = costal.CostalSurface(rays, wall, wall, wall, wall, np.zeros(rays.n))
    may = np.ones(shape, bool) & ~lung
    add = costal.rind_closing(lung, may, surf, 29.5, np.zeros(shape, np.float32))
    assert add[0, 25:35, 50:54].sum() > 0  # the notch is closed ...
    assert not add[0][r > 24.5].any()  # ... never past the pleura
    assert not add[0][np.abs(xx - 29.5) <= 3].any()  # nor across the midline gap
