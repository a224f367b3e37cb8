"""Lung benchmarks behind docs/BENCHMARKS.md "## Lungs" (not collected by pytest).

    .venv/bin/python tests/bench/bench_lungs.py [--dense N] [--patterns N] [--out results.json]

1. segmentation accuracy on dense-fibrosis phantoms (``dense_cases(N, seed=31)``, 5-40 % ILD):
   fibrosis recall (share of the true ILD inside the mask), false share (share of the mask
   outside the true lung) and Dice, for the lung mask and the threshold mask it replaced
   (``costal=False``), by severity;
2. the same on stable (NSIP-like) phantoms without dense fibrosis and on phantoms without ILD
   (seeds 500-509: both kernels, 5 / 6 / 7.5 mm) (no regression);
3. the pattern map over N scans of the synthetic cohort (seed 41, never used in fitting or
   development): per-pattern Spearman rho of the extent against the truth, the voxel
   confusion matrix (true lung inside the mask), and the old ILD estimate (qct-1's opening)
   beside the map's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from sscmort_core.lungs import PATTERNS, classify_patterns, segment_lungs
from sscmort_core.lungs.qct import ild_mask
from sscmort_core.pipeline.pattern_fit import TRUTH_TO_CLASS
from sscmort_core.synthetic import cohort as cohort_mod
from sscmort_core.synthetic import phantom as ph


def _accuracy(p: ph.Phantom, costal: bool) -> dict[str, float]:
    m = segment_lungs(p.hu, p.spacing_mm, costal=costal).mask
    inter = np.count_nonzero(m & p.lung_mask)
    return {"recall": float(m[p.ild_mask].mean()) if p.ild_mask.any() else float("nan"),
            "false": float((m & ~p.lung_mask).sum() / m.sum()),
            "dice": float(2 * inter / (m.sum() + p.lung_mask.sum()))}


def segmentation(n: int) -> dict[str, object]:
    rows = []
    for c in ph.dense_cases(n, seed=31):
        p = ph.make_phantom(**c.kwargs())
        rows.append({"extent": c.ild_extent_pct, "new": _accuracy(p, True),
                     "old": _accuracy(p, False)})
    stable = []
    for c in ph.dense_cases(max(6, n // 4), seed=32, extent_range=(0.0, 40.0)):
        kw = {**c.kwargs(), "progressor": False}
        p = ph.make_phantom(**kw)
        stable.append({"extent": c.ild_extent_pct, "new": _accuracy(p, True),
                       "old": _accuracy(p, False)})
    healthy = []
    for i, seed in enumerate(range(500, 510)):
        p = ph.make_phantom(ild_extent_pct=0.0, kernel=("sharp", "smooth")[i % 2],
                            noise_hu=(30.0, 17.0)[i % 2],
                            slice_thickness_mm=(5.0, 6.0, 7.5)[i % 3], seed=seed)
        healthy.append({"seed": seed, "new": _accuracy(p, True), "old": _accuracy(p, False)})
    return {"dense": rows, "stable": stable, "healthy": healthy}


def patterns(n: int) -> dict[str, object]:
    scans = cohort_mod.generate_cohort(n_patients=max(30, n), seed=41).scans
    rows = scans.to_dict(orient="records")
    pick = np.random.default_rng(41).choice(len(rows), size=min(n, len(rows)), replace=False)
    est, true, old = [], [], []
    confusion = np.zeros((len(PATTERNS), len(PATTERNS)), dtype=np.int64)
    for i in sorted(pick):
        p = ph.phantom_for_scan(rows[i])
        mask = segment_lungs(p.hu, p.spacing_mm).mask
        pm = classify_patterns(p.hu, mask, p.spacing_mm)
        est.append(list(pm.extents().values()))
        t = TRUTH_TO_CLASS[p.pattern[p.lung_mask]]
        true.append(100.0 * np.bincount(t, minlength=len(PATTERNS)) / p.lung_mask.sum())
        both = mask & p.lung_mask
        np.add.at(confusion, (TRUTH_TO_CLASS[p.pattern[both]], pm.labels[both] - 1), 1)
        old.append(100.0 * ild_mask(p.hu, mask, p.spacing_mm).sum() / mask.sum())
    est_a, true_a = np.asarray(est), np.asarray(true)
    ild_est, ild_true = est_a[:, 2:].sum(axis=1), true_a[:, 2:].sum(axis=1)
    return {
        "n": len(est), "rho": {name: float(stats.spearmanr(est_a[:, i], true_a[:, i]).statistic)
                               for i, name in enumerate(PATTERNS)},
        "present_share": {name: float(np.mean(true_a[:, i] > 0))
                          for i, name in enumerate(PATTERNS)},
        "ild_rho_map": float(stats.spearmanr(ild_est, ild_true).statistic),
        "ild_mae_map": float(np.mean(np.abs(ild_est - ild_true))),
        "ild_rho_opening": float(stats.spearmanr(old, ild_true).statistic),
        "ild_mae_opening": float(np.mean(np.abs(np.asarray(old) - ild_true))),
        "confusion": confusion.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dense", type=int, default=24)
    ap.add_argument("--patterns", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = {"segmentation": segmentation(args.dense), "patterns": patterns(args.patterns)}
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
