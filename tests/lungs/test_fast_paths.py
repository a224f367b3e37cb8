"""Issue 13's faster lung code gives the very same results as the code it replaced: each fast
path against the straightforward one it stands for (the old implementation, kept here as the
reference), bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from sscmort_core.lungs import morphology, patterns
from sscmort_core.lungs.patterns import (
    AIR_HU,
    DENSE_HU,
    EMPHYSEMA_HU,
    EMPHYSEMA_MAX_DENSE,
    FEATURES,
    GGO_HU,
    PATTERNS,
    SMOOTH_WINDOW,
    default_model,
    predict_patterns,
    voxel_features,
)
from sscmort_core.lungs.segmentation import block_count, block_mean
from sscmort_core.synthetic.phantom import make_phantom


def _masks(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    blobs = ndi.uniform_filter(rng.random((5, 23, 31)).astype(np.float32), 3) > 0.5
    return [blobs, rng.random((3, 9, 7)) > 0.3, np.ones((2, 4, 5), bool),
            np.zeros((2, 3, 3), bool), rng.random((2, 1, 6)) > 0.5]


@pytest.mark.parametrize("seed", [0, 1])
def test_square_morphology_equals_scipys_filters(seed):
    for m in _masks(seed):
        u8 = m.view(np.uint8)
        for r in (1, 2, 3, 6):
            size = (1, 2 * r + 1, 2 * r + 1)
            assert np.array_equal(morphology.erode_square(m, r), ndi.minimum_filter(
                u8, size=size, mode="constant", cval=0).view(bool)), (m.shape, r)
            assert np.array_equal(morphology.erode_square(m, r, outside="edge"),
                                  ndi.minimum_filter(u8, size=size, mode="nearest").view(bool))
            dilated = ndi.maximum_filter(u8, size=size, mode="constant", cval=0).view(bool)
            assert np.array_equal(morphology.dilate_square(m, r), dilated)
            assert np.array_equal(dilated, ndi.maximum_filter(u8, size=size,
                                                              mode="nearest").view(bool))


@pytest.mark.parametrize("f", [1, 2, 3])
def test_block_count_thresholds_equal_block_mean_thresholds(f):
    for m in _masks(3):
        mean = block_mean(m.astype(np.float32), f)
        count = block_count(m, f)
        assert np.array_equal(count > 0, mean > 0)
        assert np.array_equal(count >= (f * f + 1) // 2, mean >= 0.5)


def _old_box_mean(values, m, w):
    size = (1, w, w) if isinstance(w, int) else w
    weight = ndi.uniform_filter(m.astype(np.float32), size=size, mode="constant")
    total = ndi.uniform_filter(np.where(m, values, 0.0).astype(np.float32), size=size,
                               mode="constant")
    return total / np.maximum(weight, np.float32(1e-6))


def _old_features(hu, lung):
    h = hu.astype(np.float32)
    mean = {w: _old_box_mean(h, lung, w) for w in (3, 5, 7)}
    std = {w: np.sqrt(np.maximum(_old_box_mean(h * h, lung, w) - mean[w] ** 2, 0.0))
           for w in (3, 5)}
    air = {w: _old_box_mean((h < AIR_HU).astype(np.float32), lung, w) for w in (3, 5)}
    ggo = _old_box_mean(((h >= GGO_HU[0]) & (h <= GGO_HU[1])).astype(np.float32), lung, 5)
    dense = _old_box_mean((h > DENSE_HU).astype(np.float32), lung, 5)
    inside = ndi.uniform_filter(lung.astype(np.float32), size=(1, 5, 5), mode="constant")
    med = float(np.median(mean[5][lung]))
    resid = (h - mean[3])[lung]
    noise = float(1.4826 * np.median(np.abs(resid - np.median(resid))) * np.sqrt(9.0 / 8.0))
    noise = max(noise, 1.0)
    cols = [mean[3] - med, mean[5] - med, mean[7] - med, std[3] / noise, std[5] / noise,
            air[3], air[5], ggo, dense, inside]
    x = np.stack([c[lung] for c in cols], axis=1)
    return np.concatenate([x, np.full((x.shape[0], 1), noise, np.float32)], axis=1)


def _old_posterior(model, x):
    x = np.asarray(x, dtype=np.float32)
    k, f = model.means.shape
    chol = model.precisions_chol.astype(np.float32)
    stacked = np.concatenate(list(chol), axis=1)
    shift = np.einsum("kf,kfg->kg", model.means.astype(np.float32), chol).reshape(-1)
    d = x @ stacked
    d -= shift
    np.square(d, out=d)
    quad = d.reshape(x.shape[0], k, f).sum(axis=2)
    logp = (model.log_det + model.log_prior).astype(np.float32) - 0.5 * quad
    lp = logp.copy()
    logp -= logp.max(axis=1, keepdims=True)
    post = np.exp(logp)
    post /= post.sum(axis=1, keepdims=True)
    out = np.zeros((x.shape[0], len(PATTERNS)), np.float32)
    for c, pat in enumerate(patterns.CLASS_PATTERN):
        out[:, pat] += post[:, c]
    return lp, out


def _old_predict(model, hu, lung):
    x = _old_features(hu, lung)
    post = _old_posterior(model, x)[1]
    pred = np.argmax(post, axis=1)
    avg = np.empty_like(post)
    vol = np.zeros(lung.shape, np.float32)
    for j in range(post.shape[1]):
        vol[lung] = post[:, j]
        avg[:, j] = _old_box_mean(vol, lung, SMOOTH_WINDOW)[lung]
    honey = PATTERNS.index("honeycombing")
    pred[np.argmax(avg, axis=1) == honey] = honey
    emph = PATTERNS.index("emphysema")
    pred = np.where(pred == emph, 0, pred)
    mean3 = _old_box_mean(hu.astype(np.float32), lung, 3)[lung]
    rule = (mean3 < EMPHYSEMA_HU) & (x[:, FEATURES.index("dense5")] <= EMPHYSEMA_MAX_DENSE)
    return np.where(rule, emph, pred)


def test_pattern_features_posteriors_and_labels_equal_the_old_code():
    """Shared window shares, the 3-pixel mean computed once, the QDA in row chunks on one BLAS
    thread (chunks smaller than the phantom's lung, so several): the same bits."""
    p = make_phantom(ild_extent_pct=25.0, kernel="sharp", noise_hu=30.0,
                     slice_thickness_mm=5.0, seed=7, progressor=True)
    hu = block_mean(p.hu, 2)
    lung = block_mean(p.lung_mask.astype(np.float32), 2) > 0
    model = default_model()
    x = voxel_features(hu, lung)
    assert np.array_equal(x, _old_features(hu, lung))
    assert x.shape[0] > 3 * patterns.ROW_CHUNK
    lp, post = _old_posterior(model, x)
    assert np.array_equal(model.log_posterior(x), lp)
    assert np.array_equal(model.pattern_posterior(x), post)
    assert np.array_equal(predict_patterns(model, hu, lung), _old_predict(model, hu, lung))
