"""CLI command ``predict PATH [--model ID|all] [--device ...] [--json]`` and
``predict --all-scans [--executor ray] ...``.

With PATH: reads a DICOM folder or zip, NIfTI, NRRD or MetaImage file (de-identified,
validated, lungs segmented by the ingest stages), then prints per-horizon risks from every
registered model (radiomics and QCT models from the store's registry, each deep backbone and
their ensemble), or the one ``--model`` names, and which device ran the deep models. Nothing
is written to the store.

With ``--all-scans``: every registered model scores every stored scan, written to the store's
predictions with split 'inference' (:mod:`sscmort_core.pipeline.batch_predict`); deep models
run on the executor (Ray actors on the cluster's GPUs with ``--executor ray``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from sscmort_core.cli.audit import record_cli
from sscmort_core.cli.output import (
    Command,
    Progress,
    add_common,
    add_executor,
    add_models_dir,
    add_store,
    cli_executor,
    emit,
    existing_store,
    int_at_least,
)
from sscmort_core.deep.config import DEVICE_CHOICES, PRECISIONS
from sscmort_core.errors import DataError, ModelError, StoreLockedError
from sscmort_core.util.paths import default_models_dir


@contextlib.contextmanager
def _registry_store(store_path: Path) -> Iterator[tuple[Any, str]]:
    """The store read-only (its registry: every kind of model, with their sha256), or None
    with the reason when there is none or another process holds it (then only the deep
    models' cards on disk are used)."""
    from sscmort_core import store as st_store  # heavy: duckdb, pandas

    if not Path(store_path).is_file():
        yield None, "model cards"
        return
    try:
        store = st_store.open_store(store_path, read_only=True)
    except StoreLockedError:
        yield None, "model cards (store locked by another process)"
        return
    with store:
        yield store, f"store {store_path}"


def cmd_predict(args: argparse.Namespace) -> None:
    if args.all_scans:
        if args.path is not None:
            raise DataError("give either a scan PATH or --all-scans, not both")
        if args.model != "all":
            raise DataError("--model is for one scan PATH; --all-scans predicts with every "
                            "registered model")
        return cmd_predict_all(args)
    if args.path is None:
        raise DataError("give a scan PATH (DICOM folder or zip, NIfTI, NRRD, MHA) or "
                        "--all-scans")
    if args.executor or args.ray_address:
        raise DataError("--executor and --ray-address are for --all-scans")
    from sscmort_core.pipeline.analyse import analyse_path  # heavy: SimpleITK, pydicom
    from sscmort_core.pipeline.predict import predict_volume_all  # heavy: pydicom, scipy

    t0 = time.perf_counter()
    models_dir = Path(args.models_dir or default_models_dir())
    analysis = analyse_path(Path(args.path), secret=None, progress=Progress(not args.quiet))
    with _registry_store(args.store) as (store, source):
        report = predict_volume_all(
            store, analysis.volume.hu, analysis.lungs.mask, analysis.volume.spacing_mm,
            qct=analysis.measures.features(), models_dir=models_dir, device=args.device,
            model=args.model, precision=args.precision)
    if not report.predictions:
        raise ModelError("no model could predict: " + ("; ".join(
            f"{who}: {why}" for who, why in report.problems) or "none is registered; train "
            "one with `sscmort train`"))
    rows = [{"model_id": p.model_id, "kind": p.kind, "label": p.label,
             "risk_1y": round(p.risk_1y, 4), "risk_3y": round(p.risk_3y, 4),
             "risk_5y": round(p.risk_5y, 4), "note": p.notes_text or None}
            for p in report.predictions]
    device, reason = report.device or (None, "no deep model ran")
    summary: dict[str, Any] = {
        "input": str(args.path), "device": device, "device_reason": reason,
        "precision": args.precision if device == "cuda" else "fp32",
        "registry": f"{source} ({models_dir})",
        "models": [r for r in rows if r["kind"] != "ensemble"],
        "ensemble": next((r for r in rows if r["kind"] == "ensemble"), None),
        "problems": [{"model": who, "reason": why} for who, why in report.problems],
        "predict_seconds": round(report.seconds, 3),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "research_use_only": True}
    lines = [f"{r['label']:<48} 1y {r['risk_1y']:.3f}  3y {r['risk_3y']:.3f}  "
             f"5y {r['risk_5y']:.3f}  {r['note'] or ''}" for r in rows]
    lines += [f"warning: {who}: {why}" for who, why in report.problems]
    lines.append(f"device: {device or 'none'} ({reason}); research use only")
    emit(args, summary, "\n".join(lines))


def cmd_predict_all(args: argparse.Namespace) -> None:
    from sscmort_core import store as st_store  # heavy: duckdb, pandas
    from sscmort_core.pipeline.batch_predict import predict_all_scans  # heavy: scipy, SimpleITK

    with st_store.open_store(existing_store(args.store)) as store, cli_executor(args) as ex:
        result = predict_all_scans(store, executor=ex, models_dir=args.models_dir,
                                   device=args.device, precision=args.precision,
                                   batch_size=args.batch_size,
                                   progress=Progress(not args.quiet))
        record_cli(store, "predict", result.models, detail=f"sscmort predict --all-scans: "
                   f"{result.n_written} risks written for {result.n_scans} scans")
    s = result.to_json()
    lines = [f"warning: model {p['model_id']}: {p['reason']}" for p in s["problems"]]
    lines += [f"warning: scan {f['scan_id']}: model {f['model_id']}: {f['reason']}"
              for f in s["failures"][:20]]
    if s["failed"] > 20:
        lines.append(f"warning: ... and {s['failed'] - 20} more failures (prediction_failures "
                     "table)")
    if lines:
        print("\n".join(lines), file=sys.stderr)
    ex = s["executor"]
    emit(args, s, f"predictions (split '{s['split']}') of {s['scans']} scans from "
                  f"{len(s['models'])} models: {s['written']} written, {s['skipped']} already "
                  f"there, {s['failed']} failed; {s['seconds']} s on {ex['executor']} "
                  f"({ex['workers']} workers; deep models on {', '.join(s['devices']) or '-'});"
                  " research use only")


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("predict", help="per-horizon mortality risk of a chest CT (DICOM "
                                       "folder/zip, NIfTI, NRRD, MHA) from every registered "
                                       "model, "
                                       "or of every stored scan from every model (--all-scans)")
    p.add_argument("path", nargs="?", default=None,
                   help="DICOM folder or zip, or a NIfTI/NRRD/MHA file")
    p.add_argument("--all-scans", action="store_true",
                   help="predict every stored scan with every registered model and write the "
                        "risks to the store (split 'inference')")
    p.add_argument("--model", default="all", metavar="ID|all",
                   help="a registered model id (radiomics, QCT or deep), or all (default): "
                        "every registered model, as on the upload page")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="auto picks cuda, then mps, then cpu (default auto)")
    add_models_dir(p)
    p.add_argument("--precision", choices=PRECISIONS, default="bf16",
                   help="on CUDA: bf16 autocast (default) or fp32; the CPU always runs fp32")
    p.add_argument("--batch-size", type=int_at_least(1), default=16,
                   help="--all-scans: scans per forward pass of a deep model (16)")
    p.add_argument("--workers", type=int_at_least(1), default=None,
                   help="--all-scans: worker processes / local Ray CPUs (all cores)")
    add_executor(p)
    add_store(p)
    add_common(p)
    commands["predict"] = cmd_predict
