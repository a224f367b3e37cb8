"""Benchmark of the deep models (docs/BENCHMARKS.md, "Deep models"). Not collected by pytest.

    python tests/bench/bench_deep.py --store STORE --models-dir DIR [--train] [--real-ct FOLDER]

--train: quick profile of the three UI backbones on STORE (model inputs must be cached or are
computed first), with wall and CPU seconds per backbone (and of the head training after the
embeddings), each fold's chosen head settings and OOF AUC per horizon.
--real-ct: CPU predict latency on a real DICOM series for every deep model in DIR (warm,
median of 5), against a naive per-slice, unbatched fp32 loop in the same run.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_train(store_path: Path, models_dir: Path, backbones: list[str]) -> list[dict]:
    from sscmort_core import store as st_store
    from sscmort_core.deep.registry import read_card
    from sscmort_core.deep.train import train_backbone

    out = []
    with st_store.open_store(store_path) as store:
        for name in backbones:
            marks: dict[str, float] = {}
            cpu_marks: dict[str, float] = {}
            t0, c0 = time.perf_counter(), time.process_time()

            def progress(stage: str, done: int, total: int) -> None:
                if done >= total:
                    marks.setdefault(stage, time.perf_counter() - t0)
                    cpu_marks.setdefault(stage, time.process_time() - c0)

            load0 = _load()
            model_id = train_backbone(store, name, profile="quick", models_dir=models_dir,
                                      device="cpu", progress=progress)
            card = read_card(models_dir, model_id)
            embed = next((v for k, v in marks.items() if "embeddings" in k), None)
            embed_cpu = next((v for k, v in cpu_marks.items() if "embeddings" in k), None)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            out.append({"backbone": name, "model_id": model_id,
                        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                        "embedding_wall_s": None if embed is None else round(embed, 1),
                        # after the embeddings: every fold's head (all candidates), register
                        "head_wall_s": None if embed is None else round(wall - embed, 1),
                        "head_cpu_s": None if embed_cpu is None else round(cpu - embed_cpu, 1),
                        "head_chosen": (card.extra.get("head_selection") or {}).get("chosen"),
                        "oof_auc": card.oof_auc, "best_epochs": card.config["best_epochs"],
                        "n_scans": card.n_scans, "load_avg_before": load0,
                        "load_avg_after": _load()})
            print(json.dumps(out[-1]), flush=True)
    return out


def _naive_shared_once(loaded, x):
    """Per-slice, unbatched fp32, but the shared encoder run once per slice (not per fold)."""
    import numpy as np
    import torch

    from sscmort_core.deep.nets import cumulative_risk

    xt = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    with torch.inference_mode():
        enc = loaded.net.encoders[0]
        emb = torch.stack([enc(xt[0, k:k + 1])[0] for k in range(xt.shape[1])])[None]
        return np.mean([cumulative_risk(h(emb)[0])[0].numpy() for h in loaded.net.heads],
                       axis=0)


def bench_predict(real_ct: Path, models_dir: Path, repeats: int = 5) -> dict:
    import numpy as np

    from sscmort_core.deep.infer import load_deep_model, predict_batch, predict_naive, select_device
    from sscmort_core.deep.inputs import input_for_volume
    from sscmort_core.deep.registry import list_cards
    from sscmort_core.pipeline.ingest import analyse_path
    from sscmort_core.util.cache import ModelCache

    t = time.perf_counter()
    analysis = analyse_path(real_ct, secret=None)
    read_s = time.perf_counter() - t
    hu, mask = analysis.volume.hu, analysis.lungs.mask
    dev = select_device("cpu")
    cache = ModelCache()
    rows = []
    for card in list_cards(models_dir):
        t = time.perf_counter()
        loaded = load_deep_model(models_dir, card.model_id, dev, cache=cache)
        cold_s = time.perf_counter() - t
        k, s = int(card.config["n_slices"]), int(card.config["image_size"])
        t = time.perf_counter()
        x = input_for_volume(hu, mask, k=k, size=s)[None]  # (1, K, 3, S, S)
        sample_s = time.perf_counter() - t
        predict_batch(loaded, x)  # warm-up
        fast, slow, slow_once = [], [], []
        for _ in range(repeats):
            t = time.perf_counter()
            r_fast = predict_batch(loaded, x).risk[0]
            fast.append(time.perf_counter() - t)
            t = time.perf_counter()
            r_slow = predict_naive(loaded, x)[0]
            slow.append(time.perf_counter() - t)
            if loaded.net.shared_encoder:
                t = time.perf_counter()
                _naive_shared_once(loaded, x)
                slow_once.append(time.perf_counter() - t)
        rows.append({
            "model_id": card.model_id, "k": k, "size": s, "folds": len(loaded.net.heads),
            "cold_load_s": round(cold_s, 3), "sampling_s": round(sample_s, 4),
            "batched_ms": round(1000 * statistics.median(fast), 1),
            "naive_per_slice_per_fold_ms": round(1000 * statistics.median(slow), 1),
            "naive_per_slice_encoder_once_ms": round(1000 * statistics.median(slow_once), 1)
            if slow_once else None,
            "speedup_vs_naive": round(statistics.median(slow) / statistics.median(fast), 1),
            "speedup_vs_naive_encoder_once": round(
                statistics.median(slow_once) / statistics.median(fast), 1) if slow_once else None,
            "max_abs_risk_diff": float(np.max(np.abs(r_fast - r_slow))),
            "risk": [round(float(v), 4) for v in r_fast]})
        print(json.dumps(rows[-1]), flush=True)
    return {"series": str(real_ct), "shape_zyx": list(hu.shape),
            "read_and_lungs_s": round(read_s, 2), "device": dev.name, "models": rows,
            "load_avg": _load()}


def main() -> None:
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--store", type=Path)
    p.add_argument("--models-dir", type=Path, required=True)
    p.add_argument("--train", action="store_true")
    p.add_argument("--backbones", nargs="+",
                   default=["resnet18", "densenet121", "swin_tiny_patch4_window7_224"])
    p.add_argument("--real-ct", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (all cores)")
    args = p.parse_args()
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    result: dict = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if args.train:
        result["train"] = bench_train(args.store, args.models_dir, args.backbones)
    if args.real_ct:
        result["predict"] = bench_predict(args.real_ct, args.models_dir)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
