"""CLI command ``train --kind radiomics|qct|goh|sadl|clinical|clinical_qct|longitudinal|deep``:
train and register models (goh, sadl, clinical and clinical_qct are the clinical reference
models; longitudinal scores each scan with its patient's earlier scans).

The options are read once into :class:`TrainOptions` (typed, validated before any work
starts); ``--kind radiomics|qct`` trains the tabular models, ``--kind deep`` CT backbones.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any


from sscmort_core.cli.audit import record_cli
from sscmort_core.cli.output import (
    Command,
    Progress,
    add_common,
    add_models_dir,
    add_store,
    emit,
    existing_store,
)
from sscmort_core.deep.config import DEVICE_CHOICES, LOSS_NAMES, PRECISIONS, PROFILES, UI_BACKBONES
from sscmort_core.errors import DataError
from sscmort_core.util.paths import default_models_dir

if TYPE_CHECKING:
    from sscmort_core.deep.fit import EpochLog

# tabular.model.TRAINABLE_KINDS and "deep" (kept light: --help loads no numpy-heavy module)
KINDS = ("radiomics", "qct", "goh", "sadl", "clinical", "clinical_qct", "longitudinal", "deep")


@dataclass(frozen=True)
class TrainOptions:
    """What ``sscmort train`` was asked to do."""

    kind: str
    store: Path
    models_dir: Path
    seed: int
    folds: int
    quiet: bool
    # deep only
    backbone: str = "resnet18"
    profile: str = "quick"
    pretrained: str | None = None
    device: str = "auto"
    workers: int | None = None
    epochs: int | None = None
    loss: str | None = None
    batch_size: int | None = None
    precision: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TrainOptions":
        if args.folds < 2:  # every kind: checked before any work starts
            raise DataError(f"--folds must be at least 2, got {args.folds}")
        return cls(kind=args.kind, store=Path(args.store),
                   models_dir=Path(args.models_dir or default_models_dir()), seed=args.seed,
                   folds=args.folds, quiet=args.quiet, backbone=args.backbone,
                   profile=args.profile, pretrained=args.pretrained, device=args.device,
                   workers=args.workers, epochs=args.epochs, loss=args.loss,
                   batch_size=args.batch_size, precision=args.precision)

    def config_overrides(self) -> dict[str, Any]:
        """The deep profile's settings this run replaces."""
        return {k: v for k, v in (("epochs", self.epochs), ("loss", self.loss),
                                  ("precision", self.precision),
                                  ("batch_size", self.batch_size)) if v is not None}


def cmd_train(args: argparse.Namespace) -> None:
    opts = TrainOptions.from_args(args)
    existing_store(opts.store)
    summary, text = (train_deep if opts.kind == "deep" else train_tabular_models)(opts)
    emit(args, summary, text)


def train_tabular_models(opts: TrainOptions) -> tuple[dict[str, Any], str]:
    from sscmort_core.labels import HORIZONS_YEARS  # heavy: pandas
    from sscmort_core.store import open_store  # heavy: duckdb, pandas
    from sscmort_core.tabular.train import train_tabular  # heavy: sklearn
    from sscmort_core.views.radiomics import tabular_models  # heavy: scipy

    with open_store(opts.store) as store:
        ids = train_tabular(store, opts.kind, models_dir=opts.models_dir, seed=opts.seed,
                            folds=opts.folds, progress=Progress(not opts.quiet))
        record_cli(store, "train", ids, detail=f"sscmort train --kind {opts.kind}")
        info = {m.model_id: m for m in tabular_models(store)}
    models = [{"model_id": i, "label": info[i].label,
               "oof_auc": {f"{h}y": a for h, a in zip(HORIZONS_YEARS, info[i].oof_auc)}}
              for i in ids]
    lines = [f"{m['model_id']} ({m['label']}): OOF AUC " + ", ".join(
        f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in m["oof_auc"].items())
        for m in models]
    return ({"kind": opts.kind, "models": models, "models_dir": str(opts.models_dir)},
            "\n".join(lines))


class TrainBars(Progress):
    """The CLI's progress bars (one per stage: a fold, or an epoch when fine-tuning), plus the
    last epoch's loss and validation AUC as the bar's postfix."""

    def epoch(self, log: "EpochLog") -> None:
        if not self.enabled:
            return
        stage = log.stage
        bar = self._bars.get(stage)
        if bar is not None and not bar.disable and bar.n < bar.total:
            bar.set_postfix_str(log.postfix())
        else:
            from tqdm import tqdm

            tqdm.write(f"{stage} epoch {log.epoch}/{log.epochs}: {log.postfix()}")


def train_deep(opts: TrainOptions) -> tuple[dict[str, Any], str]:
    """``train --kind deep``: train and register each backbone; (summary, text)."""
    from sscmort_core import store as st_store  # heavy: duckdb, pandas
    from sscmort_core.deep.registry import read_card  # heavy: duckdb, pandas
    from sscmort_core.deep.train import train_backbone  # heavy: torch

    bars = TrainBars(not opts.quiet)
    backbones = list(UI_BACKBONES) if opts.backbone == "all" else [opts.backbone]
    out = []
    with st_store.open_store(opts.store) as store:
        for name in backbones:
            t0 = time.perf_counter()
            model_id = train_backbone(
                store, name, profile=opts.profile, models_dir=opts.models_dir,
                device=opts.device, pretrained=opts.pretrained, seed=opts.seed,
                folds=opts.folds, progress=bars, on_epoch=bars.epoch, workers=opts.workers,
                config_overrides=opts.config_overrides())
            record_cli(store, "train", (model_id,), detail=f"sscmort train --kind deep "
                       f"--backbone {name} --profile {opts.profile}")
            card = read_card(opts.models_dir, model_id)
            out.append({"model_id": model_id, "backbone": name, "profile": card.profile,
                        "pretrained": card.pretrained,
                        "oof_auc": {str(h): a for h, a in card.oof_auc.items()},
                        "device": card.config["device"],
                        "seconds": round(time.perf_counter() - t0, 1)})
    summary = {"kind": "deep", "models": out, "models_dir": str(opts.models_dir)}
    text = "\n".join(f"{m['model_id']} ({m['profile']}, {m['pretrained']}, {m['device']}): "
                     f"OOF AUC 1/3/5 y {m['oof_auc']}; {m['seconds']} s" for m in out)
    return summary, text


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("train",
                       help="train and register models: radiomics / QCT (tabular) or deep")
    p.add_argument("--kind", choices=KINDS, required=True,
                   help="radiomics: logistic + gradient boosting on radiomics features; "
                        "qct: logistic on QCT metrics; longitudinal: QCT and PFTs with their "
                        "change per year over the patient's earlier scans; deep: CT backbones")
    add_store(p)
    add_common(p)
    add_models_dir(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--folds", type=int, default=5, help="patient-grouped CV folds (5)")
    p.add_argument("--backbone", default="resnet18",
                   help="deep: any timm backbone name, or 'all' for " + ", ".join(UI_BACKBONES))
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                   help="deep: quick = frozen backbone, 64 px, 8 slices (CPU, minutes); full = "
                        "fine-tuned end to end, 224 px, 16 slices (GPU)")
    p.add_argument("--pretrained", default=None, metavar="PATH",
                   help="deep: backbone weights (.safetensors or torch file), or 'hf-cache' for "
                        "the local Hugging Face cache; never downloads (default: random init)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="deep: auto picks cuda, then mps, then cpu")
    p.add_argument("--epochs", type=int, default=None,
                   help="deep: override the profile's epochs")
    p.add_argument("--loss", choices=LOSS_NAMES, default=None,
                   help="deep: survival (discrete-time likelihood, default) or bce "
                        "(per-horizon, as in the study)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes for model inputs (all cores)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="deep: scans per training step (quick 64, full 16; lower it on a small "
                        "GPU)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="deep, on CUDA: bf16 autocast (default) or fp32; the CPU always runs fp32")
    commands["train"] = cmd_train
