"""Lung segmentation and quantitative CT.

Three levels: a small hand-built chest (numpy, here), the synthetic phantoms of
``sscmort_core.synthetic`` (acceptance: median Dice >= 0.95, Spearman rho >= 0.9 for the ILD
extent), and the real CT beside the repo (both kernels agree within 3 %).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sscmort_core.errors import EmptyMaskError
from sscmort_core.lungs import LungMask, QCTMetrics, qct_metrics, segment_lungs
from sscmort_core.lungs.qct import ild_mask, lung_opening, moments
from sscmort_core.lungs.segmentation import block_mean

QCT_KEYS = ["lung_volume_ml", "mean_lung_density_hu", "skewness", "kurtosis", "haa_pct",
            "ild_extent_pct"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)))


# ---------------------------------------------------------------------------------------------
# a hand-built chest: canonical orientation (z up, x to the patient's left)
# ---------------------------------------------------------------------------------------------
def toy_chest(*, nz: int = 40, n: int = 96, spacing=(5.0, 3.0, 3.0), gap_mm: float = 24.0,
              dense_patch: bool = False, seed: int = 0):
    """(hu, truth lung mask, spacing): body, table, two lung ellipsoids, trachea on top,
    vessels, stomach gas below the left lung; optional dense (-300 HU) subpleural patch."""
    sz, sy, sx = spacing
    z = (np.arange(nz) - nz / 2 + 0.5) * sz
    y = (np.arange(n) - n / 2 + 0.5) * sy
    x = (np.arange(n) - n / 2 + 0.5) * sx
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")  # (z, y, x) mm
    hu = np.full(Z.shape, -1000.0, dtype=np.float32)
    body = (X / 125.0) ** 2 + (Y / 90.0) ** 2 < 1
    hu[body] = 40.0
    hu[(Y > 95) & (Y < 101) & (np.abs(X) < 120)] = 200.0  # table, apart from the body
    half_gap = gap_mm / 2
    lung = np.zeros(Z.shape, dtype=bool)
    for side in (-1, 1):
        cx = side * (half_gap + 45.0)
        lung |= ((X - cx) / 45.0) ** 2 + (Y / 65.0) ** 2 + (Z / 80.0) ** 2 < 1
    hu[lung] = -860.0
    vessel = lung & ((np.abs(X) - 50.0) ** 2 + (Y + 10.0) ** 2 < 4.0 ** 2)  # tubes along z
    hu[vessel] = 40.0
    if dense_patch:  # a subpleural band 15 mm deep, posterior and basal: too dense for a threshold
        from scipy import ndimage as ndi

        depth = ndi.distance_transform_edt(lung, sampling=(1e3, sy, sx))  # in-plane, mm
        patch = lung & (depth <= 15.0) & (Y > 10) & (Z < -10)
        hu[patch] = -300.0
    trachea = ((X / 8.0) ** 2 + ((Y + 20.0) / 8.0) ** 2 < 1) & (Z > 0)
    hu[trachea & ~lung] = -1000.0
    for side in (-1, 1):  # main bronchi from the trachea into each lung
        t = np.clip((side * X) / (half_gap + 20.0), 0, 1)
        bronchus = ((X - side * t * (half_gap + 20.0)) ** 2 + (Y + 20.0) ** 2
                    + (Z - 5.0 + 10 * t) ** 2 < 5.0 ** 2) & (side * X >= 0)
        hu[bronchus & ~lung] = -1000.0
    gas = ((X - 40.0) / 20.0) ** 2 + ((Y + 10) / 15.0) ** 2 + ((Z + 95.0) / 12.0) ** 2 < 1
    hu[gas & ~lung] = -1000.0
    rng = np.random.default_rng(seed)
    hu += rng.normal(0.0, 15.0, hu.shape).astype(np.float32)
    return np.rint(hu).astype(np.int16), lung, spacing


@pytest.fixture(scope="module")
def chest():
    return toy_chest()


def test_toy_chest_segmentation(chest):
    hu, truth, spacing = chest
    lm = segment_lungs(hu, spacing)
    assert isinstance(lm, LungMask)
    assert dice(lm.mask, truth) > 0.95
    assert not (lm.left & lm.right).any() and np.array_equal(lm.mask, lm.left | lm.right)
    x = np.arange(hu.shape[2])[None, None, :]
    assert (np.broadcast_to(x, hu.shape)[lm.left].mean()
            > np.broadcast_to(x, hu.shape)[lm.right].mean())  # left = larger x (patient left)
    voxel_ml = np.prod(spacing) / 1000.0
    assert lm.volume_ml == pytest.approx(lm.mask.sum() * voxel_ml)
    assert lm.left_volume_ml + lm.right_volume_ml == pytest.approx(lm.volume_ml)
    assert lm.left_volume_ml == pytest.approx(lm.right_volume_ml, rel=0.1)
    assert lm.airway is not None and lm.airway.any() and not (lm.airway & lm.mask).any()
    assert not lm.mask[hu > 150].any()  # no table


def test_bowel_gas_and_outside_air_are_not_lung(chest):
    hu, truth, spacing = chest
    lm = segment_lungs(hu, spacing)
    air = (hu < -500) & ~truth
    below_lungs = air.copy()
    below_lungs[hu.shape[0] // 2 - 8:] = False  # the stomach gas lies below the lungs' centre
    assert below_lungs.sum() > 50_000 and not (lm.mask & below_lungs).any()
    outside = air.copy()
    outside[:, 10:-10, 10:-10] = False  # near the border: outside the body
    assert not (lm.mask & outside).any()


def test_vessels_are_inside_the_mask(chest):
    hu, truth, spacing = chest
    lm = segment_lungs(hu, spacing)
    vessels = truth & (hu > -200)
    assert vessels.any() and lm.mask[vessels].mean() > 0.95


def test_dense_subpleural_ild_is_inside_the_mask():
    hu, truth, spacing = toy_chest(dense_patch=True)
    lm = segment_lungs(hu, spacing)
    patch = truth & (hu > -400) & (hu < -200)
    assert patch.sum() > 500
    assert lm.mask[patch].mean() > 0.9
    assert dice(lm.mask, truth) > 0.95


def test_touching_lungs_are_split():
    hu, truth, spacing = toy_chest(gap_mm=0.0)
    lm = segment_lungs(hu, spacing)
    assert dice(lm.mask, truth) > 0.95
    assert lm.left_volume_ml == pytest.approx(lm.right_volume_ml, rel=0.15)


def test_segmentation_is_deterministic_and_read_only(chest):
    hu, _, spacing = chest
    a, b = segment_lungs(hu, spacing), segment_lungs(hu.copy(), spacing)
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.left, b.left)
    with pytest.raises(ValueError):
        a.mask[0, 0, 0] = True


def test_fine_grid_matches_coarse_grid():
    """The downsampled fast path (0.75 mm input, worked at 1.5 mm) agrees with a native
    1.5 mm segmentation of the same chest."""
    hu, truth, spacing = toy_chest(nz=30, n=80, spacing=(5.0, 3.0, 3.0))
    fine = np.repeat(np.repeat(hu, 4, axis=1), 4, axis=2)  # 0.75 mm, same values
    fine_lm = segment_lungs(fine, (5.0, 0.75, 0.75))
    coarse_lm = segment_lungs(hu, spacing)
    assert fine_lm.volume_ml == pytest.approx(coarse_lm.volume_ml, rel=0.03)


def test_block_mean_matches_a_loop():
    rng = np.random.default_rng(3)
    hu = rng.integers(-1000, 100, size=(3, 7, 9)).astype(np.int16)
    fast = block_mean(hu, 2)  # (3, 4, 5), edges replicated
    padded = np.pad(hu, ((0, 0), (0, 1), (0, 1)), mode="edge").astype(np.float64)
    slow = np.zeros((3, 4, 5))
    for k in range(3):
        for i in range(4):
            for j in range(5):
                slow[k, i, j] = padded[k, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean()
    np.testing.assert_allclose(fast, slow, rtol=1e-6)


def test_no_lung_raises():
    hu = np.full((12, 64, 64), -1000, dtype=np.int16)
    hu[:, 8:56, 8:56] = 40  # a body with no air inside
    with pytest.raises(EmptyMaskError, match="no lung"):
        segment_lungs(hu, (5.0, 3.0, 3.0))


def test_bad_input_raises():
    with pytest.raises(ValueError):
        segment_lungs(np.zeros((64, 64), np.int16), (1.0, 1.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        segment_lungs(np.zeros((4, 64, 64), np.int16), (0.0, 1.0, 1.0))


# ---------------------------------------------------------------------------------------------
# QCT metrics
# ---------------------------------------------------------------------------------------------
def test_qct_golden_values():
    hu = np.full((2, 4, 5), 0, dtype=np.int16)
    mask = np.zeros(hu.shape, dtype=bool)
    mask[0, :2, :5] = True  # 10 lung voxels
    values = np.array([-900, -900, -850, -800, -700, -601, -600, -400, -250, -249])
    hu[mask] = values
    q = qct_metrics(hu, mask, (2.0, 1.0, 0.5))
    assert isinstance(q, QCTMetrics)
    assert q.lung_volume_ml == pytest.approx(10 * 1.0 / 1000.0)  # 10 voxels of 1 mm^3
    assert q.mean_lung_density_hu == pytest.approx(values.mean())  # -625.0
    assert q.haa_pct == pytest.approx(30.0)  # -600, -400, -250: the range is inclusive
    # reference: scipy.stats defaults (biased skewness; Fisher, i.e. excess, kurtosis)
    assert q.skewness == pytest.approx(stats.skew(values))
    assert q.kurtosis == pytest.approx(stats.kurtosis(values))
    assert list(q.to_dict()) == QCT_KEYS


def test_moments_match_scipy_on_a_large_sample():
    rng = np.random.default_rng(5)
    v = rng.gamma(2.0, 50.0, 100_000) - 900.0
    mean, skew, kurt = moments(v)
    assert mean == pytest.approx(v.mean())
    assert skew == pytest.approx(stats.skew(v), rel=1e-9)
    assert kurt == pytest.approx(stats.kurtosis(v, fisher=True), rel=1e-9)


def test_qct_input_errors():
    with pytest.raises(EmptyMaskError):
        qct_metrics(np.zeros((3, 4, 4)), np.zeros((3, 4, 4), bool), (1, 1, 1))
    with pytest.raises(ValueError):
        qct_metrics(np.zeros((3, 4, 4)), np.ones((3, 4, 5), bool), (1, 1, 1))


def test_ild_mask_on_a_block_of_lung():
    spacing = (5.0, 2.5, 2.5)
    rng = np.random.default_rng(2)
    hu = rng.normal(-860.0, 25.0, (20, 80, 80)).astype(np.float32)
    mask = np.zeros(hu.shape, bool)
    mask[:, 5:75, 5:75] = True
    hu[~mask] = 40.0  # chest wall around the lung: its partial volume must not count
    assert ild_mask(hu, mask, spacing).sum() == 0
    # thin vessels (+40 HU lines) are not ILD
    hu_v = hu.copy()
    hu_v[:, 20:60:10, 10:70] = 40.0
    assert ild_mask(hu_v, mask, spacing).mean() < 0.01
    # a broad ground-glass region is: 25 % of the lung
    hu_g = hu.copy()
    ggo = mask.copy()
    ggo[:, :, 40:] = False
    ggo[10:] = False
    hu_g[ggo] = rng.normal(-550.0, 25.0, int(ggo.sum()))
    est = ild_mask(hu_g, mask, spacing)
    assert est[ggo].mean() > 0.9 and est[mask & ~ggo].mean() < 0.05


def test_lung_opening_matches_a_slow_reference():
    rng = np.random.default_rng(4)
    values = rng.normal(0, 1, (3, 8, 9)).astype(np.float32)
    mask = rng.random((3, 8, 9)) > 0.3
    fast = lung_opening(values, mask, (3, 3, 3))
    eroded = np.full(values.shape, np.inf)
    for idx in np.ndindex(values.shape):
        sl = tuple(slice(max(0, i - 1), i + 2) for i in idx)
        win = values[sl][mask[sl]]
        eroded[idx] = win.min() if win.size else np.inf
    slow = np.full(values.shape, -np.inf)
    for idx in np.ndindex(values.shape):
        sl = tuple(slice(max(0, i - 1), i + 2) for i in idx)
        win = eroded[sl][mask[sl]]
        slow[idx] = win.max() if win.size else -np.inf
    np.testing.assert_allclose(fast[mask], slow[mask], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# synthetic phantoms (acceptance checks)
# ---------------------------------------------------------------------------------------------
def _cohort_rows(n: int, seed: int) -> list[dict]:
    from sscmort_core.synthetic import cohort as cohort_mod
    rows = cohort_mod.generate_cohort(n_patients=max(20, n // 2), seed=seed).scans
    rows = rows.to_dict(orient="records")
    pick = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in sorted(pick)]


def _phantom_results(n: int, seed: int) -> tuple[list[float], list[float], list[float]]:
    from sscmort_core.synthetic import phantom as phantom_mod
    dices, est, true = [], [], []
    for row in _cohort_rows(n, seed):
        ph = phantom_mod.phantom_for_scan(row)
        lm = segment_lungs(ph.hu, ph.spacing_mm)
        dices.append(dice(lm.mask, ph.lung_mask))
        est.append(qct_metrics(ph.hu, lm.mask, ph.spacing_mm).ild_extent_pct)
        true.append(ph.true_ild_extent_pct)
    return dices, est, true


def test_phantom_dice_and_ild_extent_fast():
    """ILD extent (the pattern map's) over 20 scans: rho 0.905 with patterns-6, 0.877 with
    patterns-7 (the cluster rule; over 100 development scans the ILD rho did not change:
    docs/BENCHMARKS.md, patterns-7); the floor sits about 0.015 below the measured figure."""
    dices, est, true = _phantom_results(20, seed=21)
    assert np.median(dices[:8]) >= 0.95
    assert np.median(dices) >= 0.95
    assert stats.spearmanr(est, true).statistic >= 0.86


@pytest.mark.slow
def test_phantom_dice_over_50_scans():
    dices, _, _ = _phantom_results(50, seed=22)
    assert np.median(dices) >= 0.95
    assert np.min(dices) >= 0.9


@pytest.mark.slow
def test_phantom_ild_extent_rank_correlation_over_100_scans():
    _, est, true = _phantom_results(100, seed=23)
    assert stats.spearmanr(est, true).statistic >= 0.9
    assert np.mean(np.abs(np.asarray(est) - np.asarray(true))) < 5.0  # percentage points


# ---------------------------------------------------------------------------------------------
# the real CT beside the repo
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_lungs(real_ct: Path):
    """Both kernels read, segmented and measured; ``real_ct`` (conftest) skips when
    ../shared/data/real_ct is absent."""
    from sscmort_core.imaging import read_volume

    out = {}
    for kernel in "LB":
        vol = read_volume(real_ct / f"philips_A0001_kernel_{kernel}").volume
        lm = segment_lungs(vol.hu, vol.spacing_mm)
        out[kernel] = (vol, lm, qct_metrics(vol.hu, lm.mask, vol.spacing_mm))
    return out


def test_real_ct_kernels_agree(real_lungs):
    (_, lm_l, q_l), (_, lm_b, q_b) = real_lungs["L"], real_lungs["B"]
    for lm in (lm_l, lm_b):
        assert 2500.0 <= lm.volume_ml <= 8000.0
        assert lm.left_volume_ml > 1000.0 and lm.right_volume_ml > 1000.0
        assert lm.right_volume_ml > lm.left_volume_ml  # the right lung is the larger one
        assert lm.airway is not None and lm.airway.any()
    assert lm_l.volume_ml == pytest.approx(lm_b.volume_ml, rel=0.03)
    assert dice(lm_l.mask, lm_b.mask) > 0.95
    for q in (q_l, q_b):
        assert -900.0 < q.mean_lung_density_hu < -700.0
        assert q.skewness > 0 and 0.0 <= q.haa_pct < 20.0 and 0.0 <= q.ild_extent_pct < 20.0


def test_real_ct_mask_stays_inside_the_body(real_lungs):
    vol, lm, _ = real_lungs["L"]
    hu = vol.hu
    # no voxel of the mask is outside air connected to the image border or the table
    assert not lm.mask[:, :20, :].any() and not lm.mask[:, -20:, :].any()
    assert not lm.mask[:, :, :20].any() and not lm.mask[:, :, -20:].any()
    # almost all mask voxels are lung-like (vessels and nodules aside)
    assert np.mean(hu[lm.mask] < -500) > 0.9


def test_constant_density_has_no_shape_moments():
    from sscmort_core.errors import InputError

    with pytest.raises(InputError, match="zero variance"):
        moments(np.full(10, -850.0))
