"""CLI command ``predict PATH [--model ID|all] [--device ...] [--json]``.

Reads a DICOM folder or zip, NIfTI, NRRD or MetaImage file (de-identified, validated, lungs
segmented by the ingest stages), then prints per-horizon risks from every chosen deep model
and their ensemble, and which device ran them. Nothing is written to the store.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from sscmort_core.cli.output import Command, Progress, add_common, add_models_dir, add_store, emit
from sscmort_core.deep.config import DEVICE_CHOICES, PRECISIONS
from sscmort_core.errors import StoreLockedError
from sscmort_core.util.paths import default_models_dir


def _registry(store_path: Path, models_dir: Path) -> tuple[dict[str, str | None], str]:
    """Models the store registered (and their sha256), or the cards on disk without a store."""
    from sscmort_core import store as st_store  # heavy: duckdb, pandas
    from sscmort_core.deep.infer import available_models  # heavy: torch

    if not Path(store_path).is_file():
        return available_models(None, models_dir), f"model cards in {models_dir}"
    try:
        with st_store.open_store(store_path, read_only=True) as store:
            return available_models(store, models_dir), f"store {store_path}"
    except StoreLockedError:
        return available_models(None, models_dir), (f"model cards in {models_dir} (store "
                                                     "locked by another process)")


def cmd_predict(args: argparse.Namespace) -> None:
    from sscmort_core.deep.infer import choose_models, predict_volume  # heavy: torch
    from sscmort_core.pipeline.analyse import analyse_path  # heavy: SimpleITK, pydicom

    t0 = time.perf_counter()
    models_dir = Path(args.models_dir or default_models_dir())
    available, source = _registry(args.store, models_dir)
    chosen = choose_models(available, args.model)
    analysis = analyse_path(Path(args.path), secret=None, progress=Progress(not args.quiet))
    vp = predict_volume(analysis.volume.hu, analysis.lungs.mask, models=chosen,
                        models_dir=models_dir, device=args.device, precision=args.precision)
    rows = [{"model_id": p.model_id, "kind": p.kind, "label": p.label,
             "risk_1y": round(p.risk_1y, 4), "risk_3y": round(p.risk_3y, 4),
             "risk_5y": round(p.risk_5y, 4), "note": p.note} for p in vp.predictions]
    models = [r for r in rows if r["kind"] == "deep"]
    ensemble = next((r for r in rows if r["kind"] == "ensemble"), None)
    summary: dict[str, Any] = {
        "input": str(args.path), "device": vp.device.name, "device_reason": vp.device.reason,
        "precision": args.precision if vp.device.name == "cuda" else "fp32",
        "registry": source, "models": models, "ensemble": ensemble,
        "predict_seconds": round(vp.seconds, 3),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "research_use_only": True}
    lines = [f"{r['label']:<48} 1y {r['risk_1y']:.3f}  3y {r['risk_3y']:.3f}  "
             f"5y {r['risk_5y']:.3f}  {r['note'] or ''}" for r in rows]
    lines.append(f"device: {vp.device.name} ({vp.device.reason}); research use only")
    emit(args, summary, "\n".join(lines))


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("predict", help="per-horizon mortality risk of a chest CT (DICOM "
                                       "folder/zip, NIfTI, NRRD, MHA) from the deep models")
    p.add_argument("path", help="DICOM folder or zip, or a NIfTI/NRRD/MHA file")
    p.add_argument("--model", default="all", metavar="ID|all",
                   help="a registered deep model id, or all (default)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="auto picks cuda, then mps, then cpu (default auto)")
    add_models_dir(p)
    p.add_argument("--precision", choices=PRECISIONS, default="bf16",
                   help="on CUDA: bf16 autocast (default) or fp32; the CPU always runs fp32")
    add_store(p)
    add_common(p)
    commands["predict"] = cmd_predict
