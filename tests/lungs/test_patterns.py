"""The ILD pattern map: the classifier against a slow reference, the shipped model against a
refit from its recorded recipe, and the extents against the generator's truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from sscmort_core.lungs import PATTERNS, classify_patterns, segment_lungs
from sscmort_core.lungs.patterns import (
    CLASSES,
    FEATURES,
    PARAMS_FILE,
    PatternModel,
    _lung_box_mean,
    default_model,
)
from sscmort_core.pipeline.pattern_fit import (
    CLUSTER_PATTERNS,
    MODEL_VERSION,
    TRAINING_DESIGN,
    TRUTH_TO_CLASS,
    fit_pattern_model,
)
from sscmort_core.synthetic import cohort as cohort_mod
from sscmort_core.synthetic import phantom as ph

EXTENT_KEYS = ("normal_pct", "emphysema_pct", "ground_glass_pct", "reticulation_pct",
               "honeycombing_pct", "consolidation_pct")


def test_qda_posterior_matches_scipy_gaussians():
    rng = np.random.default_rng(0)
    k, f = len(CLASSES), len(FEATURES)
    x = rng.normal(size=(k * 60, f))
    y = np.repeat(np.arange(k), 60)
    x += y[:, None] * 0.7
    priors = rng.uniform(1, 5, k)
    model = PatternModel.fit(x, y, priors, version="t", ridge=0.0)
    probe = rng.normal(size=(20, f)) + 2.0
    fast = model.log_posterior(probe)
    for c in range(k):
        xc = x[y == c]
        ref = stats.multivariate_normal(xc.mean(axis=0), np.cov(xc, rowvar=False)).logpdf(probe)
        ref += np.log(priors[c] / priors.sum()) + 0.5 * f * np.log(2 * np.pi)
        np.testing.assert_allclose(fast[:, c], ref, rtol=1e-4, atol=1e-3)


def test_lung_box_mean_matches_a_loop():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(2, 9, 11)).astype(np.float32)
    m = rng.random((2, 9, 11)) > 0.4
    fast = _lung_box_mean(v, m, 3)
    for idx in zip(*np.nonzero(m)):
        z, yy, xx = idx
        win = (slice(z, z + 1), slice(max(0, yy - 1), yy + 2), slice(max(0, xx - 1), xx + 2))
        np.testing.assert_allclose(fast[idx], v[win][m[win]].mean(), rtol=1e-5)


def test_the_shipped_model_records_how_it_was_made():
    data = json.loads(PARAMS_FILE.read_text())
    assert data["version"] == MODEL_VERSION == default_model().version
    assert data["provenance"]["phantom_seeds"] == [d.seed for d in TRAINING_DESIGN]
    assert data["classes"] == list(CLASSES) and data["features"] == list(FEATURES)
    clustered = [PATTERNS.index(n) for n in CLUSTER_PATTERNS]
    for k, (floor, cluster) in enumerate(zip(data["floors_pct"], data["min_cluster_pct"])):
        if k in clustered:  # the cluster rule replaces the flat floor
            assert cluster > 0 and floor >= 0
        else:
            assert cluster == 0 and floor >= 0.5


@pytest.mark.slow
def test_refitting_reproduces_the_shipped_model():
    """The recipe of sscmort_core.pipeline.pattern_fit, run again, gives the shipped file's
    numbers (float32 feature sums may differ in the last bits between machines)."""
    shipped, refit = default_model(), fit_pattern_model()
    np.testing.assert_allclose(refit.means, shipped.means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(refit.precisions_chol, shipped.precisions_chol, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(refit.log_prior, shipped.log_prior, rtol=1e-9)
    np.testing.assert_allclose(refit.floors_pct, shipped.floors_pct, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(refit.min_cluster_pct, shipped.min_cluster_pct, rtol=1e-4,
                               atol=1e-6)


def test_the_map_labels_every_mask_voxel_and_nothing_else():
    p = ph.make_phantom(ild_extent_pct=20.0, kernel="smooth", noise_hu=18.0,
                        slice_thickness_mm=7.5, seed=4, progressor=True)
    mask = segment_lungs(p.hu, p.spacing_mm).mask
    pm = classify_patterns(p.hu, mask, p.spacing_mm)
    assert pm.labels.shape == p.hu.shape and not pm.labels.flags.writeable
    assert (pm.labels[mask] >= 1).all() and (pm.labels[~mask] == 0).all()
    counts = np.bincount(pm.labels[mask], minlength=len(PATTERNS) + 1)[1:]
    assert sum(pm.extents().values()) == pytest.approx(100.0)
    shown = [k for k, v in pm.extents().items() if v > 0]
    np.testing.assert_allclose([pm.extents()[k] for k in shown],
                               [100 * counts[EXTENT_KEYS.index(k)] / mask.sum() for k in shown])


def test_real_ct_grid_is_downsampled_and_returned_on_the_input_grid():
    """0.84 mm pixels are classified on a 1.68 mm grid, labels returned at 0.84 mm."""
    p = ph.make_phantom(ild_extent_pct=15.0, kernel="sharp", noise_hu=25.0,
                        slice_thickness_mm=6.0, seed=9, shape=(50, 64, 64))
    fine = np.repeat(np.repeat(p.hu, 2, axis=1), 2, axis=2)
    spacing = (p.spacing_mm[0], p.spacing_mm[1] / 2, p.spacing_mm[2] / 2)
    mask = np.repeat(np.repeat(p.lung_mask, 2, axis=1), 2, axis=2)
    pm = classify_patterns(fine, mask, spacing)
    assert pm.labels.shape == fine.shape and (pm.labels[mask] > 0).all()


def _cohort_scans(n: int, seed: int) -> list[dict]:
    rows = cohort_mod.generate_cohort(n_patients=max(30, n), seed=seed).scans
    rows = rows.to_dict(orient="records")
    pick = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in sorted(pick)]


def _extents(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    est, true = [], []
    for row in rows:
        p = ph.phantom_for_scan(row)
        mask = segment_lungs(p.hu, p.spacing_mm).mask
        pm = classify_patterns(p.hu, mask, p.spacing_mm)
        est.append([pm.extents()[k] for k in EXTENT_KEYS])
        t = TRUTH_TO_CLASS[p.pattern[p.lung_mask]]
        true.append(100.0 * np.bincount(t, minlength=len(PATTERNS)) / p.lung_mask.sum())
    return np.asarray(est), np.asarray(true)


def test_ild_extent_from_the_map_tracks_the_truth_fast():
    """12 scans: rho 0.9 or more up to patterns-6; patterns-7 measures 0.895 (its cluster rule
    drops the scattered honeycomb specks that patterns-6 kept above its flat floor, and 12
    scans rank by chance; over 100 scans of the development cohorts 43 / 44 the ILD rho was
    0.975 / 0.965 with patterns-6 and 0.973 / 0.964 with patterns-7, 0.976 on seed 41). The
    floor sits about 0.015 below the measured 0.895 (docs/BENCHMARKS.md, patterns-7)."""
    est, true = _extents(_cohort_scans(12, seed=41))
    ild_est, ild_true = est[:, 2:].sum(axis=1), true[:, 2:].sum(axis=1)
    assert stats.spearmanr(ild_est, ild_true).statistic >= 0.88
    assert np.mean(np.abs(ild_est - ild_true)) < 5.0


@pytest.mark.slow
def test_pattern_extents_rank_with_the_truth_over_100_cohort_scans():
    """Per-pattern Spearman rho over 100 scans of a cohort seed the model never saw (41).
    Measured with lungmask-4 and patterns-3 on seed 41 as the cohort generator makes it now
    (docs/BENCHMARKS.md "## Lungs"): normal 0.966, emphysema 0.958, ground glass 0.936,
    reticulation 0.847, honeycombing 0.432, consolidation 0.888, ILD (their sum) 0.980. With
    lungmask-5 and its refit (patterns-6): normal 0.966, emphysema 0.958, ground glass 0.927,
    reticulation 0.846, honeycombing 0.359 (consolidation not printed by that run). patterns-7
    (the cluster rule for honeycombing and consolidation, the 3 x 3 x 3 honeycomb smoothing;
    measured once on seed 41 with the candidate frozen after choosing on seeds 43 / 44):
    normal 0.966, emphysema 0.958, ground glass 0.936, reticulation 0.845, honeycombing 0.570,
    consolidation 0.914, ILD 0.976. The issue's 0.85 is not reached for reticulation and
    honeycombing; the floors sit about 0.01 below the measured levels (set from that one
    measurement, not tuned)."""
    est, true = _extents(_cohort_scans(100, seed=41))
    rho = {name: stats.spearmanr(est[:, i], true[:, i]).statistic
           for i, name in enumerate(PATTERNS)}
    ild = stats.spearmanr(est[:, 2:].sum(axis=1), true[:, 2:].sum(axis=1)).statistic
    assert ild >= 0.97, rho
    floors = {"normal": 0.955, "emphysema": 0.945, "ground glass": 0.925, "reticulation": 0.835,
              "honeycombing": 0.56, "consolidation": 0.90}
    for name, floor in floors.items():
        assert rho[name] >= floor, rho


def test_honeycomb_smoothing_matches_a_loop():
    """smoothed_patterns against a per-voxel loop: the voxel's own argmax, or honeycombing
    where the lung-window mean of the posteriors puts honeycombing first; in-plane (3) and
    3-D (SMOOTH_WINDOW, the shipped 3 x 3 x 3) windows."""
    from sscmort_core.lungs.patterns import SMOOTH_WINDOW, smoothed_patterns

    assert SMOOTH_WINDOW == (3, 3, 3)
    rng = np.random.default_rng(3)
    lung = rng.random((3, 9, 10)) > 0.3
    post = rng.dirichlet(np.ones(len(PATTERNS)), size=int(lung.sum())).astype(np.float32)
    vol = np.zeros(lung.shape + (len(PATTERNS),), np.float32)
    vol[lung] = post
    honey = PATTERNS.index("honeycombing")
    for w, dz in ((3, 0), (SMOOTH_WINDOW, 1)):
        fast = smoothed_patterns(post, lung, w)
        for i, (z, y, x) in enumerate(zip(*np.nonzero(lung))):
            win = (slice(max(0, z - dz), z + dz + 1), slice(max(0, y - 1), y + 2),
                   slice(max(0, x - 1), x + 2))
            mean = vol[win][lung[win]].mean(axis=0)
            want = honey if np.argmax(mean) == honey else int(np.argmax(post[i]))
            assert fast[i] == want
    np.testing.assert_array_equal(smoothed_patterns(post, lung, 1), np.argmax(post, axis=1))
    assert not np.array_equal(smoothed_patterns(post, lung, 3),
                              smoothed_patterns(post, lung, SMOOTH_WINDOW))


def _flood_clusters(labels: np.ndarray, value: int) -> list[list[tuple[int, int, int]]]:
    """26-connected clusters of ``value`` by a plain breadth-first flood fill (the reference)."""
    seen = np.zeros(labels.shape, bool)
    out = []
    for start in zip(*np.nonzero(labels == value)):
        if seen[start]:
            continue
        seen[start] = True
        todo, members = [start], []
        while todo:
            v = todo.pop()
            members.append(v)
            for d in np.ndindex(3, 3, 3):
                w = tuple(int(a) + int(b) - 1 for a, b in zip(v, d))
                if all(0 <= c < n for c, n in zip(w, labels.shape)) and not seen[w] \
                        and labels[w] == value:
                    seen[w] = True
                    todo.append(w)
        out.append(members)
    return out


def test_drop_small_clusters_matches_a_flood_fill():
    """The cluster rule on a working grid of 2 x 2 blocks (weights = the fine mask's voxels in
    each block) against a flood fill and a loop over the fine grid."""
    from sscmort_core.lungs.patterns import drop_small_clusters
    from sscmort_core.lungs.segmentation import block_count

    rng = np.random.default_rng(5)
    fine = rng.random((4, 23, 21)) > 0.25  # the input grid's lung mask, odd sizes
    weights = block_count(fine, 2, pad="constant")
    assert weights.shape == (4, 12, 11)
    for z, y, x in np.ndindex(*weights.shape):
        assert weights[z, y, x] == fine[z, 2 * y:2 * y + 2, 2 * x:2 * x + 2].sum()
    lung = weights > 0
    np.testing.assert_array_equal(lung, block_count(fine, 2) > 0)  # the classifier's blocks
    labels = np.where(lung, rng.choice([1, 2, 4, 5, 6], size=lung.shape,
                                       p=[0.5, 0.1, 0.2, 0.1, 0.1]), 0).astype(np.uint8)
    min_pct = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 1.0])  # honeycombing, consolidation
    fast = drop_small_clusters(labels, weights, min_pct)
    want = labels.copy()
    total = float(fine.sum())
    sizes_seen = []
    for k in (4, 5):
        for members in _flood_clusters(labels, k + 1):
            pct = 100.0 * sum(int(weights[v]) for v in members) / total
            sizes_seen.append(pct)
            if pct <= min_pct[k]:
                for v in members:
                    want[v] = 1
    assert min(sizes_seen) <= 0.3 < max(sizes_seen)  # the rule drops some and keeps some
    np.testing.assert_array_equal(fast, want)
    np.testing.assert_array_equal(drop_small_clusters(labels, weights, np.zeros(6)), labels)
