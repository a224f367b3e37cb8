"""How the shipped pattern model (``sscmort_core/lungs/params/patterns.json``) is made.

Phantoms of a fixed design (:data:`TRAINING_DESIGN`: stable and progressing disease, 0-45%
ILD, both kernels, three slice thicknesses, with and without emphysema; volume seeds
1000-1023, none of them a seed of the cohorts the accuracy tests score) are segmented with
the shipped lung mask; the features of lung voxels (:func:`sscmort_core.lungs.patterns.
voxel_features`) inside both the mask and the true lung are sampled, at most
:data:`PER_CLASS` per class (the six patterns and vessels) and phantom (seeded), and a QDA
is fitted in closed form with the classes' shares of all those voxels as priors. For the
patterns of :data:`CLUSTER_PATTERNS` the cluster rule's threshold is the largest 26-connected
3-D cluster of it (in % of the mask) the fitted map finds in a training phantom that has none
(:func:`sscmort_core.lungs.patterns.largest_cluster_pct`); then, with that rule applied, each
pattern's detection floor is the largest extent the map reports of it in a training phantom
that has none. Deterministic: the same code gives the same file, which
``tests/lungs/test_patterns.py`` checks by refitting.

``python -m sscmort_core.pipeline.pattern_fit`` writes the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sscmort_core.lungs import segment_lungs
from sscmort_core.lungs.patterns import (
    CLASSES,
    PARAMS_FILE,
    PATTERNS,
    TARGET_INPLANE_MM,
    PatternModel,
    drop_small_clusters,
    largest_cluster_pct,
    predict_with_fallback,
    voxel_features,
)
from sscmort_core.lungs.segmentation import block_mean
from sscmort_core.synthetic import phantom as ph

MODEL_VERSION = "patterns-7"  # patterns-6 + the cluster rule for honeycombing, consolidation
CLUSTER_PATTERNS: tuple[str, ...] = ("honeycombing", "consolidation")
PER_CLASS = 1500
SAMPLE_SEED = 12
# truth codes of the phantom (0 normal, 1 GGO, 2 reticulation, 3 honeycombing,
# 4 consolidation, 5 emphysema) -> index in PATTERNS
TRUTH_TO_CLASS = np.array([PATTERNS.index(n) for n in (
    "normal", "ground glass", "reticulation", "honeycombing", "consolidation", "emphysema")])


@dataclass(frozen=True)
class Design:
    seed: int
    extent_pct: float
    progressor: bool
    kernel: str
    slice_thickness_mm: float
    emphysema_pct: float
    noise_hu: float


def _design() -> tuple[Design, ...]:
    out, seed = [], 1000
    for progressor in (False, True):
        for extent in (3.0, 10.0, 20.0, 30.0, 45.0, 15.0):
            kernel = "sharp" if seed % 2 == 0 else "smooth"
            thickness = (5.0, 6.0, 7.5)[seed % 3]
            emph = (0.0, 6.0)[(seed // 2) % 2]
            noise = 32.0 if kernel == "sharp" else 17.0
            out.append(Design(seed, extent, progressor, kernel, thickness, emph, noise))
            seed += 1
    for extent in (0.0, 8.0, 25.0, 40.0, 12.0, 35.0):  # more emphysema and progressors
        kernel = "sharp" if seed % 2 == 0 else "smooth"
        out.append(Design(seed, extent, extent >= 20.0, kernel, (5.0, 6.0, 7.5)[seed % 3],
                          4.0 + (seed % 5), 32.0 if kernel == "sharp" else 17.0))
        seed += 1
    for extent in (5.0, 18.0, 28.0, 38.0, 22.0, 33.0):
        kernel = "sharp" if seed % 2 == 0 else "smooth"
        out.append(Design(seed, extent, True, kernel, (5.0, 6.0, 7.5)[seed % 3], 0.0,
                          38.0 if kernel == "sharp" else 20.0))
        seed += 1
    return tuple(out)


TRAINING_DESIGN = _design()


@dataclass(frozen=True)
class _Sample:
    x: np.ndarray  # (m, f) sampled features
    y: np.ndarray  # (m,) their class (CLASSES)
    counts: np.ndarray  # (k,) voxels of each class in the phantom's mask and true lung
    hu: np.ndarray  # the phantom on the working grid, its mask, its true pattern shares
    mask: np.ndarray
    true_pct: np.ndarray  # (6,) % of the true lung


def phantom_samples(d: Design, rng: np.random.Generator) -> _Sample:
    """The training samples of one phantom of the design."""
    p = ph.make_phantom(ild_extent_pct=d.extent_pct, kernel=d.kernel, noise_hu=d.noise_hu,
                        slice_thickness_mm=d.slice_thickness_mm, seed=d.seed,
                        progressor=d.progressor, emphysema_pct=d.emphysema_pct)
    mask = segment_lungs(p.hu, p.spacing_mm).mask
    if max(1, int(round(TARGET_INPLANE_MM / min(p.spacing_mm[1:])))) != 1:
        raise ValueError("the training phantoms are on a grid the classifier works on as is")
    hu = block_mean(p.hu, 1)
    x = voxel_features(hu, mask)  # (n, f) over the mask, C order
    y = np.where(p.vessel_mask[mask], CLASSES.index("vessel"), TRUTH_TO_CLASS[p.pattern[mask]])
    truth_lung = p.lung_mask[mask]
    x, y = x[truth_lung], y[truth_lung]
    keep = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(y == c)
        if idx.size > PER_CLASS:
            idx = np.sort(rng.choice(idx, size=PER_CLASS, replace=False))
        keep.append(idx)
    sel = np.concatenate(keep)
    true_pct = 100.0 * np.bincount(TRUTH_TO_CLASS[p.pattern[p.lung_mask]],
                                   minlength=len(PATTERNS)) / p.lung_mask.sum()
    return _Sample(x[sel], y[sel], np.bincount(y, minlength=len(CLASSES)), hu, mask, true_pct)


def fit_pattern_model(design: tuple[Design, ...] = TRAINING_DESIGN) -> PatternModel:
    """The QDA fitted on ``design``, with its detection floors (module docstring)."""
    rng = np.random.default_rng(SAMPLE_SEED)
    samples = [phantom_samples(d, rng) for d in design]
    total = np.sum([s.counts for s in samples], axis=0)
    provenance = {"made_by": "sscmort_core.pipeline.pattern_fit.fit_pattern_model",
                  "phantom_seeds": [d.seed for d in design], "per_class": PER_CLASS,
                  "sample_seed": SAMPLE_SEED, "n_samples": int(sum(len(s.y) for s in samples)),
                  "class_voxels": [int(v) for v in total]}
    model = PatternModel.fit(np.concatenate([s.x for s in samples]),
                             np.concatenate([s.y for s in samples]), total,
                             version=MODEL_VERSION, provenance=provenance)
    labels, fallbacks = [], []
    for s in samples:  # the map of each training phantom, before any floor or cluster rule
        lab, instead = np.zeros(s.mask.shape, np.uint8), np.zeros(s.mask.shape, np.uint8)
        pred, fallback = predict_with_fallback(model, s.hu, s.mask)
        lab[s.mask], instead[s.mask] = pred + 1, fallback + 1
        labels.append(lab)
        fallbacks.append(instead)
    min_cluster = np.zeros(len(PATTERNS))
    for s, lab in zip(samples, labels):
        for name in CLUSTER_PATTERNS:
            k = PATTERNS.index(name)
            if s.true_pct[k] == 0:
                min_cluster[k] = max(min_cluster[k], largest_cluster_pct(
                    lab, s.mask.view(np.uint8), k, float(s.mask.sum())))
    model = model.with_clusters(min_cluster)
    floors = np.zeros(len(PATTERNS))
    for s, lab, instead in zip(samples, labels, fallbacks):
        kept = drop_small_clusters(lab, s.mask.view(np.uint8), model.min_cluster_pct, instead)
        found = 100.0 * np.bincount(kept[s.mask] - 1, minlength=len(PATTERNS)) / s.mask.sum()
        absent = s.true_pct == 0
        floors[absent] = np.maximum(floors[absent], found[absent])
    return model.with_floors(floors)


def write_model(path: Path = PARAMS_FILE) -> Path:
    path.write_text(json.dumps(fit_pattern_model().to_json(), indent=1) + "\n")
    return path


if __name__ == "__main__":  # pragma: no cover
    print(write_model())
