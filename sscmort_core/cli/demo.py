"""CLI commands ``demo`` (build the synthetic demo store) and ``bench`` (the benchmarks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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
)
from sscmort_core.pipeline import DEMO_STAGES


def cmd_demo(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.demo import build_demo  # heavy: sklearn, SimpleITK

    stages = [s for s in DEMO_STAGES if s not in (args.skip or ())]
    with cli_executor(args) as executor:
        summary = build_demo(args.store, n_patients=args.patients, seed=args.seed,
                             workers=args.workers, progress=Progress(not args.quiet),
                             stages=stages, models_dir=args.models_dir, executor=executor)
    s = summary.to_json()
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    with open_store(args.store) as store:
        record_cli(store, "import", (), detail=f"sscmort demo: synthetic cohort of "
                   f"{s['patients']} patients, {s['scans']} scans")
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    emit(args, s, f"demo store {s['store']}: {s['patients']} patients, {s['scans']} scans "
                  f"(synthetic); positives 1/3/5 y: {s['positives']}; censored: "
                  f"{s['censored']}; {s['seconds']} s")


def cmd_bench(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.bench import DEFAULT_REAL_CT, run_benchmarks  # heavy: pydicom, scipy

    real = args.real_ct or DEFAULT_REAL_CT
    results = [r.to_json() for r in run_benchmarks(real, tuple(args.only or ()))]
    lines = [f"{r['name']}: {r['seconds']:.3f} s" + (
        f" = {r['ratio']:.2f} x {r['baseline']} ({r['baseline_seconds']:.3f} s)"
        if r["ratio"] is not None else "") + (
        f"; peak traced {r['peak_traced_mb']:.0f} MB" if r["peak_traced_mb"] else "") + (
        f"; {r['detail']}" if r["detail"] else "")
        for r in results]
    emit(args, {"results": results}, "\n".join(lines))


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("demo", help="build the synthetic demo cohort store")
    add_store(p)
    add_common(p)
    p.add_argument("--patients", type=int, default=600, help="number of patients (600)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (all cores)")
    p.add_argument("--skip", nargs="*", choices=DEMO_STAGES,
                   help="optional stages to leave out (default: run them all)")
    add_models_dir(p)
    add_executor(p)
    commands["demo"] = cmd_demo

    p = sub.add_parser("bench", help="run the benchmarks (ratios against same-run baselines)")
    add_common(p)
    p.add_argument("--real-ct", type=Path, default=None,
                   help="folder of real CT series (default ../shared/data/real_ct beside the "
                        "checkout)")
    p.add_argument("--only", nargs="*", choices=("phantom", "ingest", "cli", "lungs"),
                   help="benchmarks to run (default all)")
    commands["bench"] = cmd_bench
