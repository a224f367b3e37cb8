"""CLI command ``report MODEL_ID``: a TRIPOD+AI-style summary of one model (cohort, labels per
horizon, validation design, every stored metric with its CI, calibration, clinical baselines,
model card, charts) as Markdown or a self-contained HTML page."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sscmort_core.cli.audit import record_cli
from sscmort_core.cli.output import (
    Command,
    add_store,
    emit,
    existing_store,
    int_at_least,
)
from sscmort_core.errors import InputError

SUFFIX_FORMATS = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


def output_format(out: Path | None) -> str:
    """The document format the ``--out`` file's suffix asks for (none: Markdown on stdout);
    another suffix, or a folder that does not exist, is an InputError (exit 2)."""
    if out is None:
        return "md"
    fmt = SUFFIX_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError("the report is written as .html or .md; choose one of those "
                         "suffixes", out)
    if not out.parent.is_dir():
        raise InputError("the folder to write the report into does not exist", out.parent)
    return fmt


def _write(path: Path, text: str) -> None:
    """Write atomically (a temporary file moved into place)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def cmd_report(args: argparse.Namespace) -> None:
    from sscmort_core.store import open_store  # heavy: duckdb, pandas
    from sscmort_core.views.report import (  # heavy: pandas
        build_report,
        check_reportable,
        summary_json,
    )
    from sscmort_core.views.report_render import render  # heavy: pandas

    fmt = output_format(args.out)
    # opened for writing only to add the audit row of the report (the tables are only read)
    with open_store(existing_store(args.store)) as store:
        check_reportable(store, args.model_id)
        report = build_report(store, args.model_id, n_boot=args.n_boot, seed=args.seed)
        text = render(report, fmt)
        if args.out is not None:
            _write(args.out, text)
        record_cli(store, "report", (args.model_id,),
                   detail=f"sscmort report ({fmt})")
    summary = summary_json(report) | {"format": fmt, "store": str(args.store),
                                      "out": None if args.out is None else str(args.out)}
    if args.out is None:  # the document on stdout (inside the JSON summary with --json)
        if args.json:
            emit(args, summary | {"document": text}, "")
        else:
            sys.stdout.write(text)
        return
    aucs = ", ".join(f"{h} y {a['value']:.3f}" for h, a in summary["auc"].items()
                     if a is not None and a["value"] is not None)
    emit(args, summary, f"wrote the {fmt} report of {args.model_id} to {args.out} "
                        f"(AUC {aucs or 'n/a'}; {'synthetic data; ' if report.synthetic else ''}"
                        "research use only)")


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("report", help="a TRIPOD+AI-style report of one model (cohort, labels, "
                                      "validation design, metrics with CIs, calibration, "
                                      "clinical baselines, model card, charts) as .html or .md")
    p.add_argument("model_id", metavar="MODEL_ID",
                   help="the model to report on (ids: Models & jobs page, `sscmort evaluate "
                        "--json`)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE.html|.md",
                   help="write the report here (.html: self-contained page with the charts "
                        "as inline SVG; .md: Markdown); default: Markdown on stdout")
    p.add_argument("--n-boot", type=int_at_least(1), default=2000,
                   help="patient-bootstrap resamples of the paired test against the best "
                        "clinical reference (2000)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="bootstrap seed (0)")
    add_store(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    commands["report"] = cmd_report
