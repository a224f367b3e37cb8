"""CLI of the deep models: ``predict PATH [--model ID|all] [--device ...] [--json]``, and the
options and runner of ``train --kind deep`` (:func:`add_train_arguments`, :func:`cli_train`).

Reads a DICOM folder or zip, NIfTI, NRRD or MetaImage file (de-identified, validated, lungs
segmented by the ingest stages), then prints per-horizon risks from every chosen deep model
and their ensemble, and which device ran them. Nothing is written to the store.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sscmort_core.cli import _Progress
from sscmort_core.errors import StoreError, StoreLockedError

if TYPE_CHECKING:
    from sscmort_core.fit import EpochLog


def _registry(store_path: Path, models_dir: Path) -> tuple[dict[str, str | None], str]:
    """Models the store registered (and their sha256), or the cards on disk without a store."""
    from sscmort_core import store as st_store
    from sscmort_core.infer import available_models

    if not Path(store_path).is_file():
        return available_models(None, models_dir), f"model cards in {models_dir}"
    try:
        with st_store.open_store(store_path, read_only=True) as store:
            return available_models(store, models_dir), f"store {store_path}"
    except StoreLockedError:
        return available_models(None, models_dir), (f"model cards in {models_dir} (store "
                                                     "locked by another process)")


def cmd_predict(args: argparse.Namespace) -> None:
    from sscmort_core.cli import _emit, _Progress
    from sscmort_core.infer import choose_models, predict_volume
    from sscmort_core.ingest import analyse_path
    from sscmort_core.registry import default_models_dir

    t0 = time.perf_counter()
    models_dir = Path(args.models_dir or default_models_dir())
    available, source = _registry(args.store, models_dir)
    chosen = choose_models(available, args.model)
    analysis = analyse_path(Path(args.path), secret=None, progress=_Progress(not args.quiet))
    vp = predict_volume(analysis.volume.hu, analysis.lungs.mask, models=chosen,
                        models_dir=models_dir, device=args.device,
                        precision=getattr(args, "precision", "bf16"))
    rows = [{"model_id": p.model_id, "kind": p.kind, "label": p.label,
             "risk_1y": round(p.risk_1y, 4), "risk_3y": round(p.risk_3y, 4),
             "risk_5y": round(p.risk_5y, 4), "note": p.note} for p in vp.predictions]
    models = [r for r in rows if r["kind"] == "deep"]
    ensemble = next((r for r in rows if r["kind"] == "ensemble"), None)
    summary: dict[str, Any] = {
        "input": str(args.path), "device": vp.device.name, "device_reason": vp.device.reason,
        "precision": getattr(args, "precision", "bf16") if vp.device.name == "cuda" else "fp32",
        "registry": source, "models": models, "ensemble": ensemble,
        "predict_seconds": round(vp.seconds, 3),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "research_use_only": True}
    lines = [f"{r['label']:<48} 1y {r['risk_1y']:.3f}  3y {r['risk_3y']:.3f}  "
             f"5y {r['risk_5y']:.3f}  {r['note'] or ''}" for r in rows]
    lines.append(f"device: {vp.device.name} ({vp.device.reason}); research use only")
    _emit(args, summary, "\n".join(lines))


def register(sub: Any, commands: dict[str, Callable[[argparse.Namespace], None]],
             add_store: Callable[[argparse.ArgumentParser], None],
             add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    from sscmort_core.fit import PRECISIONS
    from sscmort_core.infer import DEVICE_CHOICES

    p = sub.add_parser("predict", help="per-horizon mortality risk of a chest CT (DICOM "
                                       "folder/zip, NIfTI, NRRD, MHA) from the deep models")
    p.add_argument("path", help="DICOM folder or zip, or a NIfTI/NRRD/MHA file")
    p.add_argument("--model", default="all", metavar="ID|all",
                   help="a registered deep model id, or all (default)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="auto picks cuda, then mps, then cpu (default auto)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="model registry folder (default $SSCMORT_MODELS or models/)")
    p.add_argument("--precision", choices=PRECISIONS, default="bf16",
                   help="on CUDA: bf16 autocast (default) or fp32; the CPU always runs fp32")
    add_store(p)
    add_common(p)
    commands["predict"] = cmd_predict


# ---------------------------------------------------------------------------------------------
# `train --kind deep` (the subcommand is registered by cli_radiomics, which calls these through
# sscmort_core.train; torch is imported only when they run)
# ---------------------------------------------------------------------------------------------
class TrainBars(_Progress):
    """The CLI's progress bars (one per stage: a fold, or an epoch when fine-tuning), plus the
    last epoch's loss and validation AUC as the bar's postfix."""

    def epoch(self, log: "EpochLog") -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        stage = f"{log.backbone} fold {log.fold + 1}/{log.folds}"
        bar = self._bars.get(stage)
        if bar is not None and not bar.disable and bar.n < bar.total:
            bar.set_postfix_str(log.postfix())
        else:
            tqdm.write(f"{stage} epoch {log.epoch}/{log.epochs}: {log.postfix()}")


def _add(parser: argparse.ArgumentParser, *flags: str, **kwargs: Any) -> None:
    """add_argument unless another stage's options already define the flag."""
    if any(f in parser._option_string_actions for f in flags):
        return
    parser.add_argument(*flags, **kwargs)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``train --kind deep`` (skips flags the parser already has, e.g. --seed)."""
    from sscmort_core.fit import PRECISIONS
    from sscmort_core.infer import DEVICE_CHOICES
    from sscmort_core.losses import LOSS_NAMES
    from sscmort_core.nets import UI_BACKBONES
    from sscmort_core.train import PROFILES

    _add(parser, "--backbone", default="resnet18",
         help="deep: any timm backbone name, or 'all' for " + ", ".join(UI_BACKBONES))
    _add(parser, "--profile", choices=sorted(PROFILES), default="quick",
         help="deep: quick = frozen backbone, 64 px, 8 slices (CPU, minutes); full = "
              "fine-tuned end to end, 224 px, 16 slices (GPU)")
    _add(parser, "--pretrained", default=None, metavar="PATH",
         help="deep: backbone weights (.safetensors or torch file), or 'hf-cache' for the local "
              "Hugging Face cache; never downloads (default: random init)")
    _add(parser, "--device", choices=DEVICE_CHOICES, default="auto",
         help="deep: auto picks cuda, then mps, then cpu")
    _add(parser, "--models-dir", type=Path, default=None,
         help="deep: model registry folder (default $SSCMORT_MODELS or models/)")
    _add(parser, "--folds", type=int, default=5, help="cross-validation folds (5)")
    _add(parser, "--seed", type=int, default=0, help="random seed (0)")
    _add(parser, "--epochs", type=int, default=None, help="deep: override the profile's epochs")
    _add(parser, "--loss", choices=LOSS_NAMES, default=None,
         help="deep: survival (discrete-time likelihood, default) or bce (per-horizon, as in "
              "the study)")
    _add(parser, "--workers", type=int, default=None,
         help="worker processes for model inputs (all cores)")
    _add(parser, "--batch-size", type=int, default=None,
         help="deep: scans per training step (quick 64, full 16; lower it on a small GPU)")
    _add(parser, "--precision", choices=PRECISIONS, default=None,
         help="deep, on CUDA: bf16 autocast (default) or fp32; the CPU always runs fp32")


def cli_train(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``train --kind deep``: train, register, print a summary; returns the summary."""
    from sscmort_core import store as st_store
    from sscmort_core.cli import _emit
    from sscmort_core.nets import UI_BACKBONES
    from sscmort_core.registry import default_models_dir, read_card
    from sscmort_core.train import train_backbone

    quiet = bool(getattr(args, "quiet", False))
    bars = TrainBars(not quiet)
    backbones = list(UI_BACKBONES) if args.backbone == "all" else [args.backbone]
    overrides = {k: v for k, v in (("epochs", getattr(args, "epochs", None)),
                                   ("loss", getattr(args, "loss", None)),
                                   ("precision", getattr(args, "precision", None)),
                                   ("batch_size", getattr(args, "batch_size", None)))
                 if v is not None}
    models_dir = Path(getattr(args, "models_dir", None) or default_models_dir())
    if not Path(args.store).is_file():
        raise StoreError("no store at this path; build one with `sscmort demo`", args.store)
    out = []
    with st_store.open_store(args.store) as store:
        for name in backbones:
            t0 = time.perf_counter()
            model_id = train_backbone(
                store, name, profile=args.profile, models_dir=models_dir, device=args.device,
                pretrained=args.pretrained, seed=args.seed, folds=args.folds, progress=bars,
                on_epoch=bars.epoch, workers=getattr(args, "workers", None),
                config_overrides=overrides)
            card = read_card(models_dir, model_id)
            out.append({"model_id": model_id, "backbone": name, "profile": card.profile,
                        "pretrained": card.pretrained, "oof_auc": card.oof_auc,
                        "device": card.config["device"],
                        "seconds": round(time.perf_counter() - t0, 1)})
    summary = {"kind": "deep", "models": out, "models_dir": str(models_dir)}
    text = "\n".join(f"{m['model_id']} ({m['profile']}, {m['pretrained']}, {m['device']}): "
                     f"OOF AUC 1/3/5 y {m['oof_auc']}; {m['seconds']} s" for m in out)
    _emit(args, summary, text)
    return summary
