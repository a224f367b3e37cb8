"""Model input sampling: K windowed lung slices, cropped and resized."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from sscmort_core.deep.sampling import (
    DEFAULT_WINDOWS,
    ILD_WINDOW,
    LUNG_WINDOW,
    MEDIASTINAL_WINDOW,
    HUWindow,
    apply_window,
    resize_bilinear,
    sample_model_input,
    slice_indices,
    square_crop,
)
from sscmort_core.errors import EmptyMaskError


def volume(nz: int = 20, ny: int = 48, nx: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1000, 400, size=(nz, ny, nx)).astype(np.int16)
    mask = np.zeros(hu.shape, dtype=bool)
    mask[4:16, 10:30, 8:50] = True
    return hu, mask


def test_shape_dtype_and_range():
    hu, mask = volume()
    out = sample_model_input(hu, mask, k=6, size=32)
    assert out.shape == (6, 3, 32, 32) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_deterministic():
    hu, mask = volume()
    a = sample_model_input(hu, mask, k=5, size=24)
    b = sample_model_input(hu.copy(), mask.copy(), k=5, size=24)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("window, hu, expected", [
    (LUNG_WINDOW, -600.0, 0.5),  # WL -600 / WW 1500 -> [-1350, 150]
    (LUNG_WINDOW, -1350.0, 0.0),
    (LUNG_WINDOW, 150.0, 1.0),
    (LUNG_WINDOW, -975.0, 0.25),
    (MEDIASTINAL_WINDOW, 40.0, 0.5),  # WL 40 / WW 400 -> [-160, 240]
    (MEDIASTINAL_WINDOW, -1000.0, 0.0),
    (MEDIASTINAL_WINDOW, 3000.0, 1.0),
    (ILD_WINDOW, -500.0, 0.5),  # WL -500 / WW 600 -> [-800, -200]
    (ILD_WINDOW, -650.0, 0.25),
])
def test_window_values(window, hu, expected):
    assert float(apply_window(np.array([hu]), window)[0]) == pytest.approx(expected)


def test_known_hu_maps_to_known_channel_values():
    hu = np.full((12, 32, 32), -600, dtype=np.int16)
    mask = np.zeros(hu.shape, bool)
    mask[2:10, 8:24, 8:24] = True
    out = sample_model_input(hu, mask, k=4, size=16)
    np.testing.assert_allclose(out[:, 0], 0.5, atol=1e-6)  # lung window centre
    np.testing.assert_allclose(out[:, 1], 0.0, atol=1e-6)  # below the mediastinal window
    np.testing.assert_allclose(out[:, 2], 1 / 3, atol=1e-6)  # (-600 + 800) / 600


def test_windows_as_tuples():
    hu, mask = volume()
    a = sample_model_input(hu, mask, k=3, size=16, windows=[(-600, 1500), (40, 400)])
    b = sample_model_input(hu, mask, k=3, size=16, windows=DEFAULT_WINDOWS[:2])
    assert a.shape == (3, 2, 16, 16) and np.array_equal(a, b)
    with pytest.raises(ValueError):
        sample_model_input(hu, mask, k=3, size=16, windows=[(0, 0)])


def test_slices_spread_evenly_over_the_lung():
    mask = np.zeros((30, 4, 4), bool)
    mask[10:20] = True
    assert slice_indices(mask, 5).tolist() == [11, 13, 15, 17, 19]
    assert slice_indices(mask, 10).tolist() == list(range(10, 20))


def test_more_slices_requested_than_the_lung_has():
    hu, mask = volume()
    mask[:] = False
    mask[7:10, 10:30, 8:50] = True  # three lung slices
    idx = slice_indices(mask, 8)
    assert len(idx) == 8 and set(idx.tolist()) == {7, 8, 9} and np.all(np.diff(idx) >= 0)
    out = sample_model_input(hu, mask, k=8, size=16)
    assert out.shape == (8, 3, 16, 16)
    assert np.array_equal(out[0], out[1])  # a repeated slice gives a repeated image


def test_crop_is_a_square_around_the_lung_with_margin():
    mask = np.zeros((3, 100, 100), bool)
    mask[1, 20:40, 50:90] = True  # 20 rows x 40 columns
    cy, cx, side = square_crop(mask)
    assert (cy, cx) == (29.5, 69.5) and side == pytest.approx(40 * 1.1)


def test_crop_content():
    """A horizontal HU ramp: the left and right output columns sit just outside the lung."""
    ramp = np.tile(np.linspace(-1000.0, 0.0, 101, dtype=np.float32), (6, 101, 1))  # x = 10 HU
    mask = np.zeros(ramp.shape, bool)
    mask[1:5, 40:60, 30:70] = True
    out = sample_model_input(ramp, mask, k=2, size=44, windows=[(-500, 1000)])  # HU -> x/100
    # square side 40 * 1.1 = 44 voxels around x in [29.5, 69.5]: pixel centres 28.0 ... 71.0
    np.testing.assert_allclose(out[0, 0, 22, 0], 0.28, atol=1e-5)
    np.testing.assert_allclose(out[0, 0, 22, -1], 0.71, atol=1e-5)


def test_resize_matches_map_coordinates():
    rng = np.random.default_rng(1)
    image = rng.normal(0, 100, (40, 50)).astype(np.float32)
    cy, cx, side, size = 18.3, 27.9, 30.0, 17
    fast = resize_bilinear(image, cy, cx, side, size, fill=-1024.0)
    coords = (np.arange(size) + 0.5) * side / size - side / 2
    yy, xx = np.meshgrid(cy + coords, cx + coords, indexing="ij")
    slow = ndi.map_coordinates(image, [yy, xx], order=1, mode="constant", cval=-1024.0)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-3)


def test_outside_the_image_is_air():
    image = np.zeros((10, 10), np.float32)
    out = resize_bilinear(image, 0.0, 0.0, 40.0, 8, fill=-1024.0)  # samples at -17.5 ... 17.5
    assert out[0, 0] == pytest.approx(-1024.0) and out[-1, -1] == pytest.approx(-1024.0)
    assert out[4, 4] == pytest.approx(0.0) and out[5, 5] == pytest.approx(0.0)  # 2.5, 7.5


def test_empty_mask_and_bad_arguments():
    hu, mask = volume()
    with pytest.raises(EmptyMaskError, match="empty"):
        sample_model_input(hu, np.zeros_like(mask), k=4, size=16)
    with pytest.raises(ValueError):
        sample_model_input(hu, mask[:, :, :10], k=4, size=16)
    with pytest.raises(ValueError):
        sample_model_input(hu, mask, k=0, size=16)
    with pytest.raises(ValueError):
        sample_model_input(hu, mask, k=4, size=1)


def test_window_bounds():
    w = HUWindow("x", -500.0, 600.0)
    assert (w.low_hu, w.high_hu) == (-800.0, -200.0)
