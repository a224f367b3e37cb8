"""CLI commands of the radiomics and tabular-model stages: ``radiomics`` and ``train``.

``train --kind radiomics|qct`` trains the tabular models here; ``--kind deep`` hands over to
:func:`sscmort_core.cli_deep.cli_train`; ``cli_deep.add_train_arguments`` adds its options
(backbone, profile, device...) to the same ``train`` parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from sscmort_core.errors import DataError, StoreError


def _existing_store(path: Path) -> Path:
    """These commands work on a built store; they never create an empty one."""
    if not Path(path).exists():
        raise StoreError("no store at this path; build one with `sscmort demo` or add scans "
                         "with `sscmort ingest`", path)
    return Path(path)


def cmd_radiomics(args: argparse.Namespace) -> None:
    from sscmort_core.cli import _emit, _Progress
    from sscmort_core.radiomics import run_radiomics_stage
    from sscmort_core.store import open_store

    if args.workers is not None and args.workers < 1:
        raise DataError(f"--workers must be at least 1, got {args.workers}")
    with open_store(_existing_store(args.store)) as store:
        result = run_radiomics_stage(store, workers=args.workers,
                                     progress=_Progress(not args.quiet))
    for failure in result.failures:
        print(f"warning: scan {failure.scan_id}: radiomics failed: {failure.reason}",
              file=sys.stderr)
    s = result.to_json()
    _emit(args, s, f"radiomics ({s['param_hash']}, pyradiomics {s['pyradiomics_version']}): "
                   f"{s['extracted']} scans extracted, {s['skipped']} already done, "
                   f"{s['failed']} failed; {s['features_per_scan']} features per scan; "
                   f"{s['seconds']} s with {s['workers']} worker(s)")


def cmd_train(args: argparse.Namespace) -> None:
    if args.folds < 2:  # every kind: checked before any work starts
        raise DataError(f"--folds must be at least 2, got {args.folds}")
    if args.kind == "deep":
        _deep_train(args)
        return
    from sscmort_core.cli import _emit, _Progress
    from sscmort_core.explain_tabular import tabular_models
    from sscmort_core.store import open_store
    from sscmort_core.tabular import train_tabular

    with open_store(_existing_store(args.store)) as store:
        ids = train_tabular(store, args.kind, models_dir=args.models_dir, seed=args.seed,
                            folds=args.folds, progress=_Progress(not args.quiet))
        info = {m.model_id: m for m in tabular_models(store)}
    models = [{"model_id": i, "label": info[i].label,
               "oof_auc": {f"{h}y": a for h, a in zip((1, 3, 5), info[i].oof_auc)}}
              for i in ids]
    lines = [f"{m['model_id']} ({m['label']}): OOF AUC " + ", ".join(
        f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in m["oof_auc"].items())
        for m in models]
    _emit(args, {"kind": args.kind, "models": models, "models_dir": str(args.models_dir)},
          "\n".join(lines))


def _deep_train(args: argparse.Namespace) -> None:
    from sscmort_core.cli_deep import cli_train

    cli_train(args)


def register(sub: Any, commands: dict[str, Callable[[argparse.Namespace], None]],
             add_store: Callable[[argparse.ArgumentParser], None],
             add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    from sscmort_core.registry import default_models_dir

    models_dir = default_models_dir()
    p = sub.add_parser("radiomics", help="extract pyradiomics lung features for every stored "
                                         "scan not yet extracted with the current parameters")
    add_store(p)
    add_common(p)
    p.add_argument("--workers", type=int, default=None, help="worker processes (all cores)")
    commands["radiomics"] = cmd_radiomics

    p = sub.add_parser("train",
                       help="train and register models: radiomics / QCT (tabular) or deep")
    p.add_argument("--kind", choices=("radiomics", "qct", "deep"), required=True,
                   help="radiomics: logistic + gradient boosting on radiomics features; "
                        "qct: logistic on QCT metrics; deep: CT backbones")
    add_store(p)
    add_common(p)
    p.add_argument("--models-dir", type=Path, default=models_dir,
                   help=f"model registry folder (default {models_dir})")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--folds", type=int, default=5, help="patient-grouped CV folds (5)")
    from sscmort_core.cli_deep import add_train_arguments

    add_train_arguments(p)  # --backbone, --profile, --device... (skips the flags above)
    commands["train"] = cmd_train
