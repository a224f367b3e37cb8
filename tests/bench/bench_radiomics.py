"""Radiomics benchmarks behind docs/BENCHMARKS.md "## Radiomics" (not collected by pytest).

    .venv/bin/python tests/bench/bench_radiomics.py [--synthetic N] [--scaling-patients P]
        [--skip-reference] [--out results.json]

1. synthetic: per-scan time of regeneration, lung segmentation and extraction (chosen
   settings) for N scans drawn (seeded) from the default demo cohort;
2. scaling: run_radiomics_stage over a small demo store with 1 and then 2 workers;
3. real CT (../shared/data/real_ct, skipped when absent): extraction time of both kernels with
   the chosen settings, and of kernel L with pyradiomics' example CT settings (exampleCT.yaml:
   Original image, shape/firstorder/glcm/glrlm/glszm/gldm, 1 mm B-spline resampling, bin
   width 25; its LoG and wavelet filters left out, which would multiply the time again) on the
   same lung mask;
4. kernel sensitivity: relative difference of every feature between kernels L and B
   (same mask), with and without sscmort's anti-aliasing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
REAL_CT = REPO.parent / "shared" / "data" / "real_ct"

EXAMPLE_CT = {  # pyradiomics examples/exampleSettings/exampleCT.yaml, Original image only
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None, "glrlm": None, "glszm": None,
                     "gldm": None,
                     "glcm": ["Autocorrelation", "JointAverage", "ClusterProminence",
                              "ClusterShade", "ClusterTendency", "Contrast", "Correlation",
                              "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance",
                              "JointEnergy", "JointEntropy", "Imc1", "Imc2", "Idm", "Idmn",
                              "Id", "Idn", "InverseVariance", "MaximumProbability",
                              "SumEntropy", "SumSquares"]},
    "setting": {"binWidth": 25, "interpolator": "sitkBSpline",
                "resampledPixelSpacing": [1, 1, 1], "padDistance": 10,
                "voxelArrayShift": 1000, "label": 1},
}


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def bench_synthetic(n: int, seed: int = 0) -> dict:
    from sscmort_core.lungs import segment_lungs
    from sscmort_core.radiomics.features import extract_features, load_params
    from sscmort_core.synthetic.cohort import generate_cohort
    from sscmort_core.synthetic.phantom import phantom_for_scan

    params = load_params()
    scans = generate_cohort(n_patients=600, seed=0).scans
    rows = scans.sample(n=n, random_state=seed).to_dict(orient="records")
    regen, seg, ext, voxels = [], [], [], []
    for row in rows:
        ph, t1 = _timed(phantom_for_scan, row)
        lungs, t2 = _timed(segment_lungs, ph.hu, ph.spacing_mm)
        _, t3 = _timed(extract_features, ph.hu, lungs.mask, ph.spacing_mm, params)
        regen.append(t1), seg.append(t2), ext.append(t3), voxels.append(int(lungs.mask.sum()))
    total = [a + b + c for a, b, c in zip(regen, seg, ext)]
    return {"scans": n, "mean_lung_voxels": statistics.mean(voxels),
            "regenerate_s": statistics.mean(regen), "segment_s": statistics.mean(seg),
            "extract_s": statistics.mean(ext), "extract_sd_s": statistics.stdev(ext),
            "per_scan_total_s": statistics.mean(total)}


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (worker pools)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_scaling(n_patients: int) -> dict:
    from sscmort_core import store as st
    from sscmort_core.pipeline.demo import build_demo
    from sscmort_core.radiomics.stage import run_radiomics_stage

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scaling.duckdb"
        build_demo(path, n_patients=n_patients, seed=1, workers=2, stages=())
        with st.open_store(path) as s:
            for workers in (1, 2):
                with s.transaction() as cur:
                    cur.execute("DELETE FROM radiomics_features")
                load0, cpu0 = os.getloadavg()[0], _cpu_seconds()
                r = run_radiomics_stage(s, workers=workers)
                cpu = _cpu_seconds() - cpu0
                out[f"workers_{workers}"] = {
                    "scans": r.n_extracted, "seconds": r.seconds,
                    "per_scan_s": r.seconds / max(1, r.n_extracted),
                    "cpu_s_per_scan": cpu / max(1, r.n_extracted),
                    "load_avg_1min": [load0, os.getloadavg()[0]]}
    out["speedup"] = out["workers_1"]["seconds"] / out["workers_2"]["seconds"]
    return out


def bench_real(skip_reference: bool) -> dict:
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from sscmort_core.imaging import read_volume
    from sscmort_core.lungs import segment_lungs
    from sscmort_core.radiomics.features import extract_features, load_params, to_sitk_pair

    params = load_params()
    vols = {k: read_volume(REAL_CT / f"philips_A0001_kernel_{k}").volume for k in "LB"}
    mask = segment_lungs(vols["L"].hu, vols["L"].spacing_mm).mask
    out: dict = {"shape_zyx": list(vols["L"].shape), "spacing_mm_zyx": list(vols["L"].spacing_mm),
                 "lung_voxels": int(mask.sum())}
    feats = {}
    for k, vol in vols.items():
        times = []
        for _ in range(3):
            f, t = _timed(extract_features, vol.hu, mask, vol.spacing_mm, params)
            times.append(t)
        feats[k] = f.as_dict()
        out[f"chosen_{k}_s"] = min(times)
    no_aa = dataclasses.replace(params, antialias_target_mm=None, param_hash="no-antialias")
    feats_no_aa = {k: extract_features(v.hu, mask, v.spacing_mm, no_aa).as_dict()
                   for k, v in vols.items()}
    out["no_antialias_L_s"] = _timed(extract_features, vols["L"].hu, mask,
                                     vols["L"].spacing_mm, no_aa)[1]
    out["kernel_sensitivity"] = _sensitivity(feats["L"], feats["B"])
    out["kernel_sensitivity_without_antialias"] = _sensitivity(feats_no_aa["L"],
                                                               feats_no_aa["B"])
    if not skip_reference:
        img, msk = to_sitk_pair(vols["L"].hu, mask, vols["L"].spacing_mm)
        ex = RadiomicsFeatureExtractor(EXAMPLE_CT)
        result, t = _timed(ex.execute, img, msk)
        out["example_ct_1mm_L_s"] = t
        out["example_ct_features"] = sum(k.startswith("original_") for k in result)
        out["ratio_example_over_chosen"] = t / out["chosen_L_s"]
    return out


def _sensitivity(a: dict, b: dict, threshold: float = 0.10) -> dict:
    """Relative difference |a - b| / mean(|a|, |b|) per feature (0 when both are 0)."""
    rel = {}
    for name in a:
        x, y = a[name], b[name]
        denom = (abs(x) + abs(y)) / 2
        rel[name] = 0.0 if denom == 0 else abs(x - y) / denom
    over = sorted((n for n, r in rel.items() if r > threshold), key=lambda n: -rel[n])
    return {"features": len(rel), "over_10pct": len(over),
            "median_rel_diff": float(np.median(list(rel.values()))),
            "worst": [(n, round(rel[n], 3)) for n in over[:8]],
            "by_class_over_10pct": {c: sum(1 for n in over if n.split("_")[1] == c)
                                    for c in ("firstorder", "glcm", "glrlm", "glszm")}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic", type=int, default=40)
    ap.add_argument("--scaling-patients", type=int, default=30)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], choices=["synthetic", "scaling", "real"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results: dict = {}
    if "synthetic" not in args.skip:
        results["synthetic"] = bench_synthetic(args.synthetic)
        print(json.dumps({"synthetic": results["synthetic"]}, indent=1), flush=True)
    if "scaling" not in args.skip:
        results["scaling"] = bench_scaling(args.scaling_patients)
        print(json.dumps({"scaling": results["scaling"]}, indent=1), flush=True)
    if "real" not in args.skip and REAL_CT.is_dir():
        results["real_ct"] = bench_real(args.skip_reference)
        print(json.dumps({"real_ct": results["real_ct"]}, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
