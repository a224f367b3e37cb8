"""Development bench for the ILD pattern map's classifier (not collected by pytest; nothing
here is shipped). Compares the shipped recipe (QDA on :data:`~sscmort_core.lungs.patterns.
FEATURES`) with variants on the same training phantoms (``pattern_fit.TRAINING_DESIGN``,
volume seeds 1000-1023) and scores them on a DEVELOPMENT cohort only (default seed 43; the
evaluation cohort seed 41 is refused, so a variant is chosen before it is measured there):

    PYTHONPATH=. nice -n 10 .venv/bin/python tests/bench/bench_pattern_variants.py \\
        --classifier hgb --extra own,max3,min3 --extents count [--scans 100] [--out r.json]

``--extra``: features added to the shipped eleven: ``own`` (the voxel's HU relative to the
scan's median lung density), ``max3`` / ``min3`` (in-plane 3 x 3 maximum / minimum over lung
voxels, relative). ``--classifier``: ``qda`` (the shipped closed-form QDA, the shipped
sampling: at most PER_CLASS voxels a class and phantom, class shares as priors) or ``hgb``
(scikit-learn's HistGradientBoostingClassifier on a sample of ``--hgb-sample`` voxels a
phantom at their natural shares, or with ``--hgb-balanced`` on the QDA's per-class capped
sample weighted back to the class shares; ``--hgb-iter``, ``--hgb-leaves``, ``--hgb-rate``).
``--extents``: ``count`` (the shipped rule: the share of voxels labelled with a pattern) or
``posterior`` (the mean posterior of each pattern over the lung, emphysema from the rule).
Both use the shipped honeycomb smoothing and emphysema rule and flat detection floors
(refitted the shipped way) but not patterns-7's cluster rule for honeycombing and consolidation
(``patterns.drop_small_clusters``): they compare classifiers before that rule, so their
honeycombing and consolidation figures are below the shipped map's. Prints per-pattern Spearman rho of the extents against the generator's truth,
the ILD (sum) rho and the voxel confusion matrix (true lung inside the mask).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy import stats

import sscmort_core.lungs.patterns as pm
from sscmort_core.lungs import segment_lungs
from sscmort_core.pipeline.pattern_fit import (
    PER_CLASS,
    SAMPLE_SEED,
    TRAINING_DESIGN,
    TRUTH_TO_CLASS,
)
from sscmort_core.synthetic import cohort as cohort_mod
from sscmort_core.synthetic import phantom as ph

EVALUATION_COHORT_SEED = 41  # never scored here


def _scan(p: ph.Phantom) -> dict[str, np.ndarray]:
    return {"hu": np.asarray(p.hu), "mask": segment_lungs(p.hu, p.spacing_mm).mask,
            "vessel": np.asarray(p.vessel_mask), "pattern": np.asarray(p.pattern),
            "lung": np.asarray(p.lung_mask)}


def training_scans() -> list[dict[str, np.ndarray]]:
    return [_scan(ph.make_phantom(ild_extent_pct=d.extent_pct, kernel=d.kernel,
                                  noise_hu=d.noise_hu, slice_thickness_mm=d.slice_thickness_mm,
                                  seed=d.seed, progressor=d.progressor,
                                  emphysema_pct=d.emphysema_pct)) for d in TRAINING_DESIGN]


def cohort_scans(seed: int, n: int) -> list[dict[str, np.ndarray]]:
    if seed == EVALUATION_COHORT_SEED:
        raise SystemExit("cohort seed 41 is the evaluation cohort: use tests/bench/bench_lungs.py")
    rows = cohort_mod.generate_cohort(n_patients=max(30, n), seed=seed).scans.to_dict(
        orient="records")
    pick = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [_scan(ph.phantom_for_scan(rows[i])) for i in sorted(pick)]


def features(hu: np.ndarray, lung: np.ndarray, extra: tuple[str, ...]) -> np.ndarray:
    """(n, 11 + len(extra)) the shipped features and the extra ones, lung voxels in C order."""
    x = pm.voxel_features(hu, lung)
    if not extra:
        return x
    h = hu.astype(np.float32)
    med = float(np.median(pm._lung_box_mean(h, lung, 5)[lung]))
    cols = []
    for e in extra:
        if e == "own":
            cols.append(h - med)
        elif e == "max3":
            cols.append(ndi.maximum_filter(np.where(lung, h, -1100.0), size=(1, 3, 3)) - med)
        elif e == "min3":
            cols.append(ndi.minimum_filter(np.where(lung, h, 200.0), size=(1, 3, 3)) - med)
        else:
            raise SystemExit(f"unknown extra feature {e!r}")
    return np.concatenate([x, np.stack([c[lung] for c in cols], axis=1)], axis=1)


class _Hgb:
    """A fitted HistGradientBoostingClassifier with the PatternModel interface used here."""

    def __init__(self, clf: object) -> None:
        self.clf = clf
        self.floors_pct = np.full(len(pm.PATTERNS), pm.MIN_FLOOR_PCT)

    def pattern_posterior(self, x: np.ndarray) -> np.ndarray:
        p = self.clf.predict_proba(x).astype(np.float32)  # type: ignore[attr-defined]
        out = np.zeros((x.shape[0], len(pm.PATTERNS)), np.float32)
        for c, pat in enumerate(pm.CLASS_PATTERN):
            out[:, pat] += p[:, c]
        return out


def _labels(model: object, x: np.ndarray, hu: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """The shipped decision (predict_patterns) on any model with pattern_posterior."""
    post = model.pattern_posterior(x)  # type: ignore[attr-defined]
    pred = pm.smoothed_patterns(post, lung, pm.SMOOTH_WINDOW)
    emph = pm.PATTERNS.index("emphysema")
    pred = np.where(pred == emph, 0, pred)
    return np.where(pm.emphysema_rule(x, hu, lung), emph, pred)


def _truth(s: dict[str, np.ndarray]) -> np.ndarray:
    return 100.0 * np.bincount(TRUTH_TO_CLASS[s["pattern"][s["lung"]]],
                               minlength=len(pm.PATTERNS)) / s["lung"].sum()


def fit(scans: list[dict[str, np.ndarray]], args: argparse.Namespace) -> object:
    rng = np.random.default_rng(SAMPLE_SEED)
    xs, ys, total, feats = [], [], np.zeros(len(pm.CLASSES)), []
    for s in scans:
        x = features(s["hu"], s["mask"], args.extra)
        y = np.where(s["vessel"][s["mask"]], pm.CLASSES.index("vessel"),
                     TRUTH_TO_CLASS[s["pattern"][s["mask"]]])
        keep = s["lung"][s["mask"]]
        x, y = x[keep], y[keep]
        feats.append(features(s["hu"], s["mask"], args.extra))
        total += np.bincount(y, minlength=len(pm.CLASSES))
        if args.classifier == "qda" or args.hgb_balanced:
            sel = []
            for c in range(len(pm.CLASSES)):
                idx = np.flatnonzero(y == c)
                if idx.size > PER_CLASS:
                    idx = np.sort(rng.choice(idx, size=PER_CLASS, replace=False))
                sel.append(idx)
            idx = np.concatenate(sel)
        else:
            idx = np.sort(rng.choice(len(y), size=min(len(y), args.hgb_sample), replace=False))
        xs.append(x[idx])
        ys.append(y[idx])
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    if args.classifier == "qda":
        model: object = pm.PatternModel.fit(x_all, y_all, total, version="dev")
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier
        weight = None
        if args.hgb_balanced:  # per-class capped sample, weighted back to the class shares
            n_c = np.bincount(y_all, minlength=len(pm.CLASSES)).astype(np.float64)
            weight = (total / total.sum() / np.maximum(n_c / n_c.sum(), 1e-12))[y_all]
        model = _Hgb(HistGradientBoostingClassifier(
            max_iter=args.hgb_iter, max_leaf_nodes=args.hgb_leaves,
            learning_rate=args.hgb_rate, random_state=0).fit(x_all, y_all,
                                                             sample_weight=weight))
    floors = np.zeros(len(pm.PATTERNS))
    for s, x in zip(scans, feats):
        found = 100.0 * np.bincount(_labels(model, x, s["hu"], s["mask"]),
                                    minlength=len(pm.PATTERNS)) / s["mask"].sum()
        absent = _truth(s) == 0
        floors[absent] = np.maximum(floors[absent], found[absent])
    floors = np.maximum(floors, pm.MIN_FLOOR_PCT)
    if isinstance(model, pm.PatternModel):
        return model.with_floors(floors)
    model.floors_pct = floors  # type: ignore[attr-defined]
    return model


RULES = ("count", "posterior", "hybrid")  # hybrid: posterior for GGO / reticulation, else count


def score_all(model: object, scans: list[dict[str, np.ndarray]],
              extra: tuple[str, ...]) -> dict[str, object]:
    """Every extent rule of RULES from one pass (with and without the detection floors)."""
    k = len(pm.PATTERNS)
    est = {r: [] for r in RULES}
    true, confusion = [], np.zeros((k, k), np.int64)
    for s in scans:
        mask = s["mask"]
        x = features(s["hu"], mask, extra)
        pred = _labels(model, x, s["hu"], mask)
        post = model.pattern_posterior(x)  # type: ignore[attr-defined]
        emph = pred == pm.PATTERNS.index("emphysema")
        post[:, 1] = 0.0
        post[emph] = 0.0
        post[emph, 1] = 1.0
        post[post.sum(axis=1) <= 0.0, 0] = 1.0
        post /= post.sum(axis=1, keepdims=True)
        pp = 100.0 * post.sum(axis=0) / mask.sum()
        pc = 100.0 * np.bincount(pred, minlength=k) / mask.sum()
        ph_ = pc.copy()
        ph_[[2, 3]] = pp[[2, 3]]
        for r, v in zip(RULES, (pc, pp, ph_)):
            est[r].append(v)
        true.append(_truth(s))
        lab = np.zeros(mask.shape, np.int64)
        lab[mask] = pred
        both = mask & s["lung"]
        np.add.at(confusion, (TRUTH_TO_CLASS[s["pattern"][both]], lab[both]), 1)
    t = np.asarray(true)
    out: dict[str, object] = {}
    for r in RULES:
        for floor in (True, False):
            e = np.asarray(est[r]).copy()
            if floor:
                f = model.floors_pct  # type: ignore[attr-defined]
                for i in range(1, k):
                    e[e[:, i] <= f[i], i] = 0.0
            out[f"{r}{'' if floor else '_nofloor'}"] = {
                **{n: round(float(stats.spearmanr(e[:, i], t[:, i]).statistic), 3)
                   for i, n in enumerate(pm.PATTERNS)},
                "ild": round(float(stats.spearmanr(e[:, 2:].sum(1), t[:, 2:].sum(1)).statistic), 3)}
    rec = np.diag(confusion) / confusion.sum(1)
    out["voxel_recall"] = np.round(rec, 3).tolist()
    out["confusion_row_share"] = np.round(confusion / confusion.sum(1, keepdims=True), 3).tolist()
    return out


def score(model: object, scans: list[dict[str, np.ndarray]], extents: str,
          extra: tuple[str, ...]) -> dict[str, object]:
    k = len(pm.PATTERNS)
    est, true, confusion = [], [], np.zeros((k, k), np.int64)
    for s in scans:
        mask = s["mask"]
        x = features(s["hu"], mask, extra)
        pred = _labels(model, x, s["hu"], mask)
        if extents == "posterior":
            post = model.pattern_posterior(x)  # type: ignore[attr-defined]
            emph = pred == pm.PATTERNS.index("emphysema")
            post[:, 1] = 0.0
            post[emph] = 0.0
            post[emph, 1] = 1.0
            post[post.sum(axis=1) <= 0.0, 0] = 1.0  # all mass on emphysema, rule says no
            post /= post.sum(axis=1, keepdims=True)
            pct = 100.0 * post.sum(axis=0) / mask.sum()
        else:
            pct = 100.0 * np.bincount(pred, minlength=k) / mask.sum()
        pct[np.flatnonzero(pct[1:] <= model.floors_pct[1:]) + 1] = 0.0  # type: ignore[attr-defined]
        est.append(pct)
        true.append(_truth(s))
        lab = np.zeros(mask.shape, np.int64)
        lab[mask] = pred
        both = mask & s["lung"]
        np.add.at(confusion, (TRUTH_TO_CLASS[s["pattern"][both]], lab[both]), 1)
    e, t = np.asarray(est), np.asarray(true)
    return {"rho": {n: float(stats.spearmanr(e[:, i], t[:, i]).statistic)
                    for i, n in enumerate(pm.PATTERNS)},
            "ild_rho": float(stats.spearmanr(e[:, 2:].sum(1), t[:, 2:].sum(1)).statistic),
            "confusion_row_share": np.round(confusion / confusion.sum(1, keepdims=True),
                                            3).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classifier", choices=("qda", "hgb"), default="qda")
    ap.add_argument("--extra", type=lambda s: tuple(v for v in s.split(",") if v), default=())
    ap.add_argument("--extents", choices=("count", "posterior", "all"),
                    default="count")
    ap.add_argument("--cohort-seed", type=int, default=43)
    ap.add_argument("--scans", type=int, default=100)
    ap.add_argument("--hgb-sample", type=int, default=20000)
    ap.add_argument("--hgb-iter", type=int, default=100)
    ap.add_argument("--hgb-leaves", type=int, default=15)
    ap.add_argument("--hgb-rate", type=float, default=0.1)
    ap.add_argument("--hgb-balanced", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    dev = cohort_scans(args.cohort_seed, args.scans)
    model = fit(training_scans(), args)
    out = {"args": {k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in vars(args).items() if k != "out"},
           **(score_all(model, dev, args.extra) if args.extents == "all"
              else score(model, dev, args.extents, args.extra)),
           "seconds": round(time.perf_counter() - t0, 1)}
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
