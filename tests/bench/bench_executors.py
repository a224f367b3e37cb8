"""Executor benchmarks behind docs/BENCHMARKS.md "## Executors: the local pool and Ray" (not
collected by pytest).

    .venv/bin/python tests/bench/bench_executors.py [--sections overhead radiomics memory predict]
        [--radiomics-patients 12] [--memory-patients 600] [--out results.json]

1. overhead: a task that returns its argument, 1,000 and 10,000 of them, on the local executor
   (in-process with 1 worker; the forkserver pool with 2), on the pool code this issue replaced
   (``ProcessPoolExecutor.map`` with the old chunking, the same-run baseline), and on a local
   Ray instance with 2 CPUs. Fixed cost per call and marginal cost per task come from the
   two sizes (a straight line through them).
2. radiomics: ``run_radiomics_stage`` over a demo store (regeneration + segmentation +
   extraction per scan) with 1 and 2 workers on both executors; Ray's start-up is timed
   apart from the stage, and each task reports its worker's CPU time.
3. memory: the driver's resident memory (VmRSS) while ``run_radiomics_stage`` runs over every
   scan row of the default 600-patient demo cohort (2,141 rows) with a cheap stand-in for the
   extraction: 72 seeded random values per scan, the size of a real result. The driver's
   work (dispatch, results arriving, 64-scan write transactions into radiomics_features) is
   the real stage's; only the worker's CPU time is left out, which would make the run
   ~15 minutes per executor on these two shared cores without touching the driver's memory.
4. predict: ``predict_all_scans`` over the same demo store with a QCT model and two tiny
   random deep models (timm's test_resnet, 64 px, 3 slices) on the CPU, local pool vs Ray
   (prepare tasks + one CPU model actor): the pipeline's throughput, not a real backbone's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# Light imports only at the top: the local pool's workers import this script again (as
# __mp_main__) when they start, so heavy ones here would be counted as pool start-up.
from sscmort_core.util.executors import (
    ExecutorSpec,
    LocalExecutor,
    open_executor,
    pool_context,
    worker_init,
)


def identity(x: int) -> int:
    return x


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def load() -> float:
    return os.getloadavg()[0]


# --- 1. per-task overhead --------------------------------------------------------------------
def old_pool_map(fn, items, workers):
    """The pool code before executors (map_in_workers as it was): pool.map with chunks."""
    chunk = max(1, min(16, len(items) // (workers * 8) or 1))
    with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(),
                             initializer=worker_init) as pool:
        return list(pool.map(fn, items, chunksize=chunk))


def _timed(run, n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run(list(range(n)))
        best = min(best, time.perf_counter() - t0)
    return best


SMALL, BIG = 1000, 10000


def _line(run) -> dict:
    t_small, t_big = _timed(run, SMALL), _timed(run, BIG)
    per_task = (t_big - t_small) / (BIG - SMALL)
    return {f"seconds_{SMALL}": round(t_small, 4), f"seconds_{BIG}": round(t_big, 4),
            "per_task_us": round(per_task * 1e6, 1),
            "fixed_s": round(t_small - per_task * SMALL, 3)}


def bench_overhead() -> dict:
    out = {"load_start": load()}
    runs = {
        "in-process (local, 1 worker)": lambda xs: list(LocalExecutor(1).map(identity, xs)),
        "old pool.map (2 workers, baseline)": lambda xs: old_pool_map(identity, xs, 2),
        "local pool map (2 workers)": lambda xs: list(LocalExecutor(2).map(identity, xs)),
        "local pool outcomes (2 workers)": lambda xs: list(LocalExecutor(2).outcomes(identity,
                                                                                     xs)),
    }
    for name, run in runs.items():
        out[name] = _line(run)
    t0 = time.perf_counter()
    with open_executor(ExecutorSpec("ray", 2)) as rx:
        out["ray_start_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        list(rx.map(identity, [0, 1]))  # the first tasks start the workers
        out["ray_first_tasks_s"] = round(time.perf_counter() - t0, 2)
        out["ray outcomes (2 CPUs)"] = _line(lambda xs: list(rx.outcomes(identity, xs)))
        out["ray map, in order (2 CPUs)"] = _line(lambda xs: list(rx.map(identity, xs)))
    out["load_end"] = load()
    return out


# --- 2. radiomics stage throughput -----------------------------------------------------------
def cpu_timed_extract(job):
    """The stage's own worker function, its ``seconds`` replaced by the worker's CPU time (so
    CPU per scan is comparable across executors on a machine other jobs share)."""
    import dataclasses

    from sscmort_core.radiomics.stage import extract_stored_scan

    t0 = time.process_time()
    out = extract_stored_scan(job)
    return dataclasses.replace(out, seconds=time.process_time() - t0)


def bench_radiomics(patients: int, root: Path) -> dict:
    from sscmort_core import store as st
    from sscmort_core.pipeline.demo import build_demo
    from sscmort_core.radiomics.features import load_params
    from sscmort_core.radiomics.stage import run_radiomics_stage

    template = root / "template.duckdb"
    build_demo(template, n_patients=patients, seed=3, stages=(), workers=2)
    params = load_params()
    out = {"patients": patients, "rows": []}
    for kind, workers in (("local", 1), ("local", 2), ("ray", 1), ("ray", 2)):
        path = root / f"{kind}{workers}.duckdb"
        shutil.copy(template, path)
        t0 = time.perf_counter()
        with open_executor(ExecutorSpec(kind, workers)) as ex:
            start = time.perf_counter() - t0
            l0 = load()
            with st.open_store(path) as s:
                res = run_radiomics_stage(s, params=params, executor=ex,
                                          extract_fn=cpu_timed_extract)
            out["rows"].append({
                "executor": kind, "workers": workers, "scans": res.n_extracted,
                "failed": res.n_failed, "executor_start_s": round(start, 2),
                "stage_s": round(res.seconds, 2),
                "scans_per_s": round(res.n_extracted / res.seconds, 3),
                "worker_cpu_s_per_scan": round(res.mean_scan_seconds or 0, 3),
                "load": [round(l0, 1), round(load(), 1)]})
        print(json.dumps(out["rows"][-1]), flush=True)
    return out


# --- 3. driver memory over 2,141 scans ---------------------------------------------------------
FEATURES = tuple(f"synthetic_feature_{i:02d}" for i in range(72))


def stand_in_extract(job):
    """72 seeded values per scan: a real result's size, none of its CPU time."""
    from sscmort_core.radiomics.features import RadiomicsFeatures, RadiomicsOutcome

    seed = int(job.row["volume_seed"])
    values = tuple(float(v) for v in np.random.default_rng(seed).normal(size=len(FEATURES)))
    feats = RadiomicsFeatures(FEATURES, values, job.params.param_hash, "stand-in", 0.0)
    return RadiomicsOutcome(str(job.row["scan_id"]), feats, None, 0.0)


def _cohort_store(path: Path, patients: int) -> int:
    from sscmort_core import store as st
    from sscmort_core.synthetic.cohort import generate_cohort

    cohort = generate_cohort(n_patients=patients, seed=0)
    pts = cohort.patients.copy()
    pts["source"], pts["synthetic"] = "synthetic", True
    scans = cohort.scans.copy()
    for col in st.SCAN_COLUMNS:
        if col not in scans.columns:
            scans[col] = None
    scans["source"], scans["synthetic"] = "synthetic", True
    with st.open_store(path) as s, s.transaction() as cur:
        st.insert_frame(cur, "patients", pts)
        st.insert_frame(cur, "scans", scans)
    return len(scans)


def _duckdb_mb(con) -> dict[str, float]:
    df = con.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory()").df()
    by = dict(zip(df["tag"], df["memory_usage_bytes"] / 2**20))
    return {"total": float(sum(by.values())), "art_index": float(by.get("ART_INDEX", 0.0))}


def bench_memory(patients: int, root: Path) -> dict:
    """Resident memory of the driver, and what it is made of: Python objects (tracemalloc)
    and DuckDB's own memory (duckdb_memory(): table blocks it caches, the in-memory ART index
    of each primary key)."""
    import tracemalloc

    import pandas as pd

    from sscmort_core import store as st
    from sscmort_core.radiomics.features import load_params
    from sscmort_core.radiomics.stage import run_radiomics_stage

    template = root / "cohort.duckdb"
    n = _cohort_store(template, patients)
    params = load_params()
    out = {"patients": patients, "scans": n, "rows": []}
    for kind in ("local", "ray"):
        path = root / f"mem-{kind}.duckdb"
        shutil.copy(template, path)
        samples: list[tuple[int, float, float, float, float]] = []
        with open_executor(ExecutorSpec(kind, 2)) as ex, st.open_store(path) as s:
            def progress(stage, done, total):
                if done % 100 == 0 or done == total:
                    db = _duckdb_mb(s.con)
                    samples.append((done, rss_mb(), tracemalloc.get_traced_memory()[0] / 2**20,
                                    db["total"], db["art_index"]))

            before = rss_mb()
            tracemalloc.start()
            res = run_radiomics_stage(s, params=params, executor=ex, progress=progress,
                                      extract_fn=stand_in_extract)
            tracemalloc.stop()
            rows = st.table_counts(s)["radiomics_features"]
        frame = pd.DataFrame(samples, columns=["done", "rss", "python", "duckdb", "art"])
        frame = frame.drop_duplicates("done")
        half = frame[frame["done"] >= n // 2]

        def slope(col: str) -> float:  # MB per 1,000 scans over the second half
            return round(float(np.polyfit(half["done"], half[col], 1)[0]) * 1000, 2)

        at = {f: frame.iloc[int((frame["done"] - int(f * n)).abs().argmin())]
              for f in (0.1, 0.5, 1.0)}
        out["rows"].append({
            "executor": kind, "extracted": res.n_extracted, "feature_rows": rows,
            "stage_s": round(res.seconds, 1),
            "driver_ms_per_scan": round(1000 * res.seconds / max(1, res.n_extracted), 2),
            "rss_before_mb": round(before, 1),
            "at": {str(k): {c: round(float(v[c]), 1) for c in ("rss", "python", "duckdb", "art")}
                   for k, v in at.items()},
            "slope_mb_per_1000_scans": {c: slope(c) for c in ("rss", "python", "duckdb",
                                                               "art")}})
        print(json.dumps(out["rows"][-1]), flush=True)
    return out


# --- 4. batch predict on CPU ------------------------------------------------------------------
def _tiny_deep_model(models_dir: Path, seed: int):
    """timm's test_resnet at 64 px, K = 3, two fold heads, random weights: the pipeline's cost
    (prepare tasks, actors, batches, writes), not a real backbone's."""
    from sscmort_core.deep import registry
    from sscmort_core.deep.nets import EnsembleNet, NetConfig, SliceHead, build_net

    cfg = NetConfig("test_resnet", image_size=64, n_slices=3, attention_dim=8, dropout=0.0,
                    pooling="multiscale")
    net, _ = build_net(cfg, seed=seed)
    heads = [SliceHead(net.encoder.dim, cfg.attention_dim, cfg.dropout) for _ in range(2)]
    return registry.save_model(
        models_dir, EnsembleNet([net.encoder], heads).state_dict(), backbone=cfg.backbone,
        profile="quick: frozen backbone",
        config={"image_size": 64, "n_slices": 3, "attention_dim": 8, "dropout": 0.0,
                "folds": 2, "shared_encoder": True, "pooling": "multiscale"},
        data_hash="0" * 64, pretrained="random init", oof_auc={"1": None, "3": None, "5": None},
        n_scans=0, n_patients=0, synthetic=True)


def bench_predict(patients: int, root: Path) -> dict:
    from sscmort_core import store as st
    from sscmort_core.deep import registry
    from sscmort_core.pipeline.batch_predict import predict_all_scans
    from sscmort_core.pipeline.demo import build_demo
    from sscmort_core.tabular.train import train_tabular

    template, models_dir = root / "predict.duckdb", root / "models"
    build_demo(template, n_patients=patients, seed=3, stages=(), workers=2)
    cards = [_tiny_deep_model(models_dir, seed) for seed in (0, 1)]
    with st.open_store(template) as s:
        train_tabular(s, "qct", models_dir=models_dir, seed=0)
        with s.transaction() as cur:
            for card in cards:
                registry.register_in_store(cur, card, models_dir)
    out = {"patients": patients, "rows": []}
    for kind in ("local", "ray"):
        path = root / f"predict-{kind}.duckdb"
        shutil.copy(template, path)
        with open_executor(ExecutorSpec(kind, 2)) as ex, st.open_store(path) as s:
            l0 = load()
            res = predict_all_scans(s, executor=ex, models_dir=models_dir, device="cpu",
                                    batch_size=16)
        out["rows"].append({"executor": kind, "scans": res.n_scans, "models": len(res.models),
                            "written": res.n_written, "failed": len(res.failures),
                            "seconds": round(res.seconds, 2),
                            "scans_per_s": round(res.n_scans / res.seconds, 3),
                            "devices": list(res.devices), "load": [round(l0, 1),
                                                                   round(load(), 1)]})
        print(json.dumps(out["rows"][-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sections", nargs="*",
                    default=["overhead", "radiomics", "memory", "predict"])
    ap.add_argument("--radiomics-patients", type=int, default=12)
    ap.add_argument("--memory-patients", type=int, default=600)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results: dict = {}
    root = Path(tempfile.mkdtemp(prefix="bench-executors-"))
    try:
        if "overhead" in args.sections:
            results["overhead"] = bench_overhead()
            print(json.dumps(results["overhead"], indent=2), flush=True)
        if "radiomics" in args.sections:
            results["radiomics"] = bench_radiomics(args.radiomics_patients, root)
        if "memory" in args.sections:
            results["memory"] = bench_memory(args.memory_patients, root)
        if "predict" in args.sections:
            results["predict"] = bench_predict(args.radiomics_patients, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
