"""GPU benchmark of the deep models (docs/BENCHMARKS.md, "Deep models on a GPU"). Not collected
by pytest; needs CUDA.

    python tests/bench/bench_gpu.py prepare --real-ct FOLDER --out inputs.npz   # any machine
    python tests/bench/bench_gpu.py run --real-inputs inputs.npz --work DIR     # on the GPU

``prepare`` reads a real DICOM series through the ingest pipeline (read, de-identify, lungs)
and saves its model inputs for the full (16 x 224 px) and quick (8 x 64 px) profiles, so the
GPU machine needs neither the DICOM files nor SimpleITK.

``run`` builds a synthetic cohort (cohort, volumes, lungs, QCT; labelled synthetic), then for
each UI backbone and each precision (bf16 autocast, fp32) trains the full profile for a few
epochs on patient-grouped folds through the real :func:`train_backbone`, and reads the
training throughput (slices/s, steady state) from the per-batch progress callback: batches 2..n
of each epoch, so the first batch (allocator warm-up, lazy initialisation) and validation are
left out. Training runs as `train_backbone` sets it up: seeded, deterministic cuDNN, no autotuning. Then, with the bf16-trained ensemble of each backbone on CUDA, the predict latency on the
real series (median of 20 warm runs) in bf16 and fp32, a naive per-slice unbatched fp32 loop in
the same run, and the batch throughput over 32 scans. Prints one JSON document (also written
to DIR/bench_gpu.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

BACKBONES = ("resnet18", "densenet121", "swin_tiny_patch4_window7_224")


def prepare(real_ct: Path, out: Path) -> dict:
    import numpy as np

    from sscmort_core.deep.config import PROFILES
    from sscmort_core.deep.inputs import input_for_volume
    from sscmort_core.pipeline.ingest import analyse_path

    analysis = analyse_path(real_ct, secret=None)
    hu, mask = analysis.volume.hu, analysis.lungs.mask
    arrays = {}
    for name, cfg in PROFILES.items():
        arrays[name] = input_for_volume(hu, mask, k=cfg.n_slices, size=cfg.image_size)[None]
    np.savez_compressed(out, **arrays)
    return {"series": real_ct.name, "shape_zyx": list(hu.shape),
            "inputs": {k: list(v.shape) for k, v in arrays.items()}}


class _BatchClock:
    """Progress callback: per epoch bar, the times at which batch 1 and the last batch ended."""

    def __init__(self) -> None:
        self.marks: dict[str, dict[int, float]] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if " epoch " in stage and done >= 1:
            self.marks.setdefault(stage, {})[done] = time.perf_counter()

    def throughput(self, batch_scans: int, k: int) -> tuple[float, int]:
        """Median slices/s over epochs (batches 2..n), and how many epochs were timed."""
        rates = []
        for marks in self.marks.values():
            last = max(marks)
            if last >= 3 and 1 in marks:
                rates.append((last - 1) * batch_scans * k / (marks[last] - marks[1]))
        return (statistics.median(rates) if rates else float("nan")), len(rates)


def _train(store_path: Path, work: Path, backbone: str, precision: str, epochs: int,
           folds: int, device: str, overrides: dict, batch_size: int | None = None) -> dict:
    import torch

    from sscmort_core import store as st_store
    from sscmort_core.deep.config import PROFILES
    from sscmort_core.deep.registry import read_card
    from sscmort_core.deep.train import train_backbone

    cfg = PROFILES["full"]
    if batch_size:
        overrides = {**overrides, "batch_size": batch_size}
    clock = _BatchClock()
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with st_store.open_store(store_path) as store:
        model_id = train_backbone(
            store, backbone, profile="full", models_dir=work / f"models_{precision}",
            device=device, folds=folds, progress=clock, cache_dir=work / "inputs",
            config_overrides={"epochs": epochs, "patience": epochs + 1,
                              "precision": precision, **overrides})
    card = read_card(work / f"models_{precision}", model_id)
    rate, n = clock.throughput(overrides.get("batch_size", cfg.batch_size),
                               overrides.get("n_slices", cfg.n_slices))
    return {"backbone": backbone, "precision": precision, "model_id": model_id,
            "batch_scans": overrides.get("batch_size", cfg.batch_size),
            "train_slices_per_s": round(rate, 1), "epochs_timed": n,
            "wall_s": round(time.perf_counter() - t0, 1),
            "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
            if cuda else None,
            "oof_auc": card.oof_auc, "n_scans": card.n_scans}


def _sync_time(fn, repeats: int) -> float:
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def predict_features(models_dir: Path, model_id: str, x, device: str, repeats: int = 20) -> dict:
    import numpy as np

    from sscmort_core.deep.infer import load_deep_model, predict_batch, predict_naive, select_device
    from sscmort_core.util.cache import ModelCache

    dev = select_device(device)
    t = time.perf_counter()
    loaded = load_deep_model(models_dir, model_id, dev, cache=ModelCache())
    cold = time.perf_counter() - t
    bf16 = _sync_time(lambda: predict_batch(loaded, x, "bf16"), repeats)
    fp32 = _sync_time(lambda: predict_batch(loaded, x, "fp32"), repeats)
    naive = _sync_time(lambda: predict_naive(loaded, x), 3)
    xb = np.repeat(x, 32, axis=0)
    b_bf16 = _sync_time(lambda: predict_batch(loaded, xb, "bf16"), 5)
    b_fp32 = _sync_time(lambda: predict_batch(loaded, xb, "fp32"), 5)
    r16 = predict_batch(loaded, x, "bf16").risk[0]
    r32 = predict_batch(loaded, x, "fp32").risk[0]
    return {"model_id": model_id, "folds": len(loaded.net.heads), "cold_load_s": round(cold, 2),
            "bf16_ms": round(1000 * bf16, 1), "fp32_ms": round(1000 * fp32, 1),
            "naive_per_slice_fp32_ms": round(1000 * naive, 1),
            "speedup_bf16_vs_fp32": round(fp32 / bf16, 2),
            "speedup_bf16_vs_naive": round(naive / bf16, 1),
            "batch32_scans_per_s_bf16": round(32 / b_bf16, 1),
            "batch32_scans_per_s_fp32": round(32 / b_fp32, 1),
            "max_abs_risk_diff_bf16_fp32": float(np.max(np.abs(r16 - r32))),
            "risk_bf16": [round(float(v), 4) for v in r16]}


def run(real_inputs: Path, work: Path, patients: int, epochs: int, folds: int,
        backbones: list[str], device: str = "cuda", tiny: bool = False,
        batch_sizes: list[int] | None = None, predict: bool = True) -> dict:
    """``device='cpu', tiny=True``: a smoke run of this script on a CPU (tiny images)."""
    import numpy as np
    import torch

    from sscmort_core.pipeline.demo import build_demo

    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
                    "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "patients": patients, "epochs": epochs,
                    "folds": folds, "tf32_conv": torch.backends.cudnn.allow_tf32,
                    "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}
    t = time.perf_counter()
    store_path = work / "bench.duckdb"
    summary = build_demo(store_path, n_patients=patients, seed=0, stages=())
    result["store_build_s"] = round(time.perf_counter() - t, 1)
    result["n_scans"] = summary.scans
    overrides = {"image_size": 64, "n_slices": 8, "batch_size": 4} if tiny else {}
    x = np.load(real_inputs)["quick" if tiny else "full"]
    result["train"], result["predict"] = [], []
    for name in backbones:
        for batch_size in batch_sizes or [None]:
            for precision in ("bf16", "fp32"):
                row = _train(store_path, work, name, precision, epochs, folds, device,
                             overrides, batch_size)
                result["train"].append(row)
                print(json.dumps(row), flush=True)
        if not predict:
            continue
        bf16_row = result["train"][-2]
        row = predict_features(work / "models_bf16", bf16_row["model_id"], x, device)
        result["predict"].append(row)
        print(json.dumps(row), flush=True)
    (work / "bench_gpu.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--real-ct", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("run")
    b.add_argument("--real-inputs", type=Path, required=True)
    b.add_argument("--work", type=Path, required=True)
    b.add_argument("--patients", type=int, default=120)
    b.add_argument("--epochs", type=int, default=2)
    b.add_argument("--folds", type=int, default=2)
    b.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    b.add_argument("--device", default="cuda")
    b.add_argument("--tiny", action="store_true", help="64 px, 8 slices (a CPU smoke run)")
    b.add_argument("--batch-sizes", nargs="+", type=int, default=None,
                   help="scans per training step to compare (default: the profile's)")
    b.add_argument("--no-predict", action="store_true")
    args = p.parse_args()
    if args.cmd == "prepare":
        print(json.dumps(prepare(args.real_ct, args.out), indent=2))
    else:
        print(json.dumps(run(args.real_inputs, args.work, args.patients, args.epochs,
                             args.folds, args.backbones, args.device, args.tiny,
                             args.batch_sizes, not args.no_predict), indent=2))


if __name__ == "__main__":
    main()
