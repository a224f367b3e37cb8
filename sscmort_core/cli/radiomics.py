"""CLI command ``radiomics``: extract pyradiomics lung features for every stored scan not yet
extracted with the current parameters."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sscmort_core.cli.audit import record_cli
from sscmort_core.cli.output import (
    Command,
    Progress,
    add_common,
    add_executor,
    add_store,
    cli_executor,
    emit,
    existing_store,
)
from sscmort_core.errors import DataError


def cmd_radiomics(args: argparse.Namespace) -> None:
    from sscmort_core.radiomics.stage import run_radiomics_stage  # heavy: pydicom, scipy
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    if args.workers is not None and args.workers < 1:
        raise DataError(f"--workers must be at least 1, got {args.workers}")
    with open_store(existing_store(args.store)) as store, cli_executor(args) as executor:
        result = run_radiomics_stage(store, progress=Progress(not args.quiet),
                                     executor=executor)
        record_cli(store, "extract", (result.param_hash,),
                   detail=f"sscmort radiomics: {result.n_extracted} scans extracted")
    for failure in result.failures:
        print(f"warning: scan {failure.scan_id}: radiomics failed: {failure.reason}",
              file=sys.stderr)
    s = result.to_json()
    emit(args, s, f"radiomics ({s['param_hash']}, pyradiomics {s['pyradiomics_version']}): "
                  f"{s['extracted']} scans extracted, {s['skipped']} already done, "
                  f"{s['failed']} failed; {s['features_per_scan']} features per scan; "
                  f"{s['seconds']} s with {s['workers']} worker(s) ({s['executor']})")


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("radiomics", help="extract pyradiomics lung features for every stored "
                                         "scan not yet extracted with the current parameters")
    add_store(p)
    add_common(p)
    p.add_argument("--workers", type=int, default=None, help="worker processes (all cores)")
    add_executor(p)
    commands["radiomics"] = cmd_radiomics
