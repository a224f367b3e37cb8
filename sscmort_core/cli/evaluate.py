"""CLI command ``evaluate``: compute and store every metric of every model and horizon."""

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
)


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


def cmd_evaluate(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.evaluate import run_evaluation  # heavy: scipy
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

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
    add_store(p)
    add_common(p)
    commands["evaluate"] = cmd_evaluate
