"""CLI commands of real cohorts: ``import`` (a registry's manifest folder into the store) and
``export`` (de-identified tables for analysis elsewhere)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path
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
    int_at_least,
)
from sscmort_core.cli.pacs import positive_seconds
from sscmort_core.errors import DataError, ManifestError
from sscmort_core.util.executor_api import ENV_EXECUTOR
from sscmort_core.util.logs import log_path_for, only_a_log_beside

TABLE_FORMATS = ("csv", "parquet")  # = store.imports.TABLE_FORMATS; --help loads no pandas


def cmd_import(args: argparse.Namespace) -> None:
    folder = Path(args.manifest)
    if not folder.is_dir():
        raise DataError("no such manifest folder", folder)
    pacs = None
    if args.pacs:
        from sscmort_core.pacs import connect  # heavy: pydicom, requests

        pacs = connect(args.pacs, timeout_s=args.pacs_timeout)
    with contextlib.ExitStack() as stack:
        executor = stack.enter_context(cli_executor(args)) \
            if args.executor or args.ray_address or os.environ.get(ENV_EXECUTOR) else None
        _import(args, pacs, executor)


def _import(args: argparse.Namespace, pacs: Any, executor: Any) -> None:
    from sscmort_core.pipeline.cohort_import import (  # heavy: SimpleITK, pydicom
        ImportOptions,
        describe,
        run_import,
    )
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    folder = Path(args.manifest)
    options = ImportOptions(shift_dates=args.shift_dates, workers=args.workers,
                            source=args.source, mapping_file=args.mapping, pacs=pacs,
                            executor=executor,
                            columns=tuple(args.column or ()), batch_scans=args.batch)
    progress = Progress(not args.quiet)
    path = Path(args.store)
    try:
        if args.dry_run:
            if path.exists():
                with open_store(path, read_only=True) as store:
                    result = run_import(store, folder, options, dry_run=True, progress=progress)
            else:
                result = run_import(None, folder, options, dry_run=True, progress=progress)
        else:
            result = _import_into(path, folder, options, progress, run_import)
    except ManifestError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        raise
    for f in result.failures:
        print(f"warning: {f.file}:{f.row}: path {f.path}: not imported: {f.reason}",
              file=sys.stderr)
    summary = result.to_json() | {"store": str(path), "manifest": str(folder)}
    lines = [describe(result)]
    lines += [f"{h.horizon_years} y: {h.positive} positive, {h.negative} known alive, "
              f"{h.censored} censored" for h in result.horizons]
    emit(args, summary, "\n".join(lines))


def _import_into(path: Path, folder: Path, options: Any, progress: Progress, run: Any) -> Any:
    """Import into the store at ``path``; a store this call created is removed again when the
    manifest is refused (the store is left as it was: absent)."""
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    existed = path.exists()
    try:
        with open_store(path) as store:
            result = run(store, folder, options, progress=progress)
            record_cli(store, "import", (), detail=f"sscmort import: {describe_counts(result)}")
            return result
    except ManifestError:
        if not existed:
            for p in (path, path.with_name(path.name + ".wal")):
                p.unlink(missing_ok=True)
            if only_a_log_beside(path):  # the folder this call's log made goes too
                shutil.rmtree(log_path_for(path).parent, ignore_errors=True)
        raise


def describe_counts(result: Any) -> str:
    """The audit detail of an import: counts only (never a path or registry id)."""
    s = result.to_json()
    counts = [f"{k} {v}" for k, v in s.items() if isinstance(v, int) and not isinstance(v, bool)]
    return ", ".join(counts) or "done"


def cmd_export(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.export import export_tables  # heavy: duckdb, pandas
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    # opened for writing only to add the audit row of the export (the tables are only read)
    with open_store(existing_store(args.store)) as store:
        result = export_tables(store, args.what, Path(args.out), args.format)
        s = result.to_json()
        record_cli(store, "export", (), detail=f"sscmort export {args.what} ({args.format}): "
                   + ", ".join(f"{n} ({r} rows)" for n, r in s["files"].items()))
    emit(args, s, f"wrote {', '.join(f'{n} ({r} rows)' for n, r in s['files'].items())} and "
                  f"README.md (one row per column) to {s['folder']}")


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser(
        "import", help="import a registry (manifest folder: patients, scans, clinical as CSV "
                       "or Parquet) with its outcomes, de-identified; resumable")
    p.add_argument("manifest", metavar="MANIFEST_DIR", help="folder holding patients.csv, "
                   "scans.csv, clinical.csv (or .parquet) and the images they name")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything (tables, paths, images) and print the report; "
                        "change nothing")
    p.add_argument("--shift-dates", action="store_true",
                   help="move all dates of each patient by one keyed offset (within +-365 "
                        "days): intervals and labels stay exact, no real date is stored")
    p.add_argument("--workers", type=int_at_least(1), default=None,
                   help="worker processes reading and measuring scans (all cores)")
    p.add_argument("--mapping", type=Path, default=None, metavar="FILE",
                   help="YAML mapping of the registry's column names (default: "
                        "MANIFEST_DIR/mapping.yaml if present)")
    p.add_argument("--column", action="append", metavar="TABLE.COLUMN=NAME",
                   help="rename one registry column, e.g. patients.patient_id=MRN (repeatable;"
                        " wins over the mapping file)")
    p.add_argument("--source", default="registry",
                   help="label of the imported rows (default 'registry')")
    p.add_argument("--batch", type=int_at_least(1), default=16, metavar="N",
                   help="scans per store transaction (16)")
    add_executor(p)
    p.add_argument("--pacs", default=None, metavar="URL",
                   help="DICOMweb root of the PACS that rows naming study_uid + series_uid "
                        "are retrieved from (credentials as for `sscmort pacs`)")
    p.add_argument("--pacs-timeout", type=positive_seconds, default=60.0, metavar="SECONDS",
                   help="give up on a PACS request after this long without data (default 60)")
    add_store(p)
    add_common(p)
    commands["import"] = cmd_import

    p = sub.add_parser("export", help="write de-identified tables (cohort, predictions or "
                                      "metrics) with a README row per column")
    p.add_argument("--what", choices=("cohort", "predictions", "metrics"), required=True)
    p.add_argument("--format", choices=TABLE_FORMATS, default="csv")
    p.add_argument("out", metavar="OUT", help="folder to write the tables into")
    add_store(p)
    add_common(p)
    commands["export"] = cmd_export
