"""CLI command ``evaluate``: compute and store every metric of every model and horizon
(cross-validation), or run a temporal / external validation design
(:mod:`sscmort_core.pipeline.designs`)."""

from __future__ import annotations

import argparse
from typing import Any

from sscmort_core.cli.audit import record_cli
from sscmort_core.cli.output import (
    Command,
    Progress,
    add_common,
    add_store,
    emit,
    existing_store,
    int_at_least,
    iso_date,
)
from sscmort_core.errors import DataError

DESIGNS = ("cv", "temporal", "external")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _text(summary: dict[str, Any]) -> str:
    """One line per model and horizon: AUC [CI], Brier, calibration slope, C-index, counts."""
    lines = [f"evaluated {len(summary['models'])} model(s) with {summary['n_boot']} patient "
             f"bootstrap resamples in {summary['seconds']} s"]
    for model_id, horizons in summary["models"].items():
        for h, m in horizons.items():
            a = m["auc"]
            if a["value"] is None:
                lines.append(f"{model_id} {h} y: not computed ({a['note']})")
                continue
            lines.append(
                f"{model_id} {h} y: AUC {_fmt(a['value'])} [{_fmt(a['ci_low'])}, "
                f"{_fmt(a['ci_high'])}], Brier {_fmt(m['brier']['value'])}, calibration slope "
                f"{_fmt(m['calibration_slope']['value'], 2)}, C-index "
                f"{_fmt(m['c_index']['value'])} ({a['n_scans']} scans, {a['n_patients']} "
                f"patients, {a['n_events']} events)")
    return "\n".join(lines)


def _design_text(summary: dict[str, Any]) -> str:
    """The design, its parts, then one line per model and horizon (as :func:`_text`)."""
    lines = [f"{summary['design']} ({summary['split']})",
             f"training: {summary['train_scans']} scans of {summary['train_patients']} "
             f"patients; test: {summary['test_scans']} scans of {summary['test_patients']} "
             f"patients ({summary['shared_patients']} patients in both, "
             f"{summary['scans_left_out']} scans in neither)"]
    lines += [f"{s['model_id']}: left out, {s['why']}" for s in summary["skipped"]]
    body = _text(summary).splitlines()[1:]
    return "\n".join(lines + body + ["metrics computed on the test part, not stored (the "
                                      "Model comparison page shows them under this design)"])


def _design(args: argparse.Namespace) -> Any:
    from sscmort_core.pipeline.designs import ValidationDesign  # heavy: pandas, sklearn

    if args.design == "temporal":
        return ValidationDesign("temporal", before=args.before, all_patients=args.all_patients)
    return ValidationDesign("external", train_source=args.train_source,
                            test_source=args.test_source)


def cmd_evaluate_design(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.designs import run_design  # heavy: sklearn, scipy
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    design = _design(args)  # DataError (exit 2) before the store is opened
    with open_store(existing_store(args.store)) as store:
        run = run_design(store, design, model_ids=args.models, n_boot=args.n_boot,
                         seed=args.seed, progress=Progress(not args.quiet))
        record_cli(store, "evaluate", run.model_ids,
                   detail=f"sscmort evaluate --design {design.split}: "
                          f"{run.rows_written} prediction rows")
    summary = run.to_json() | {"store": str(args.store)}
    emit(args, summary, _design_text(summary))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.evaluate import run_evaluation  # heavy: scipy
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    if args.design != "cv":
        cmd_evaluate_design(args)
        return
    if args.before or args.all_patients or args.train_source or args.test_source:
        raise DataError("--before, --all-patients, --train-source and --test-source belong to "
                        "a validation design: add --design temporal or --design external")
    with open_store(existing_store(args.store)) as store:
        run = run_evaluation(store, model_ids=args.models, n_boot=args.n_boot, seed=args.seed,
                             progress=Progress(not args.quiet))
        record_cli(store, "evaluate", run.model_ids,
                   detail=f"sscmort evaluate: {run.rows_written} metric rows")
    summary = run.to_json() | {"store": str(args.store)}
    emit(args, summary, _text(summary))


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("evaluate", help="compute AUC with patient-bootstrap CI, Brier, "
                                        "calibration, C-index and time-dependent AUC of every "
                                        "model at 1, 3 and 5 years from its out-of-fold "
                                        "predictions, and store them")
    p.add_argument("--models", nargs="+", default=None, metavar="ID",
                   help="model ids to evaluate (default: every model with out-of-fold "
                        "predictions)")
    p.add_argument("--n-boot", type=int_at_least(1), default=2000,
                   help="patient-level bootstrap resamples for the AUC CI (2000)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="bootstrap seed (0)")
    p.add_argument("--design", choices=DESIGNS, default="cv",
                   help="cv: the models' out-of-fold predictions (default); temporal: refit the "
                        "tabular and reference models on scans before --before and score the "
                        "later ones; external: refit on --train-source, score --test-source "
                        "(deep models: cross-validation only)")
    p.add_argument("--before", type=iso_date, default=None, metavar="YYYY-MM-DD",
                   help="temporal design: training scans are dated before this day")
    p.add_argument("--all-patients", action="store_true",
                   help="temporal design: also test the later scans of patients scanned "
                        "before the date (default: new patients only)")
    p.add_argument("--train-source", default=None, metavar="SOURCE",
                   help="external design: the patients' source to train on")
    p.add_argument("--test-source", default=None, metavar="SOURCE",
                   help="external design: the source to test on")
    add_store(p)
    add_common(p)
    commands["evaluate"] = cmd_evaluate
