"""What every command shares: progress bars on stderr, the JSON / text summary on stdout, the
common options, argument types, and the "store must exist" check.

May import: errors and util only (no pandas, duckdb or torch: ``sscmort --help`` stays
quick). The command modules import what they run inside their command functions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, Callable

from sscmort_core.errors import StoreError
from sscmort_core.util.executors import (
    ENV_EXECUTOR,
    ENV_RAY_ADDRESS,
    EXECUTORS,
    Executor,
    executor_spec,
    open_executor,
)
from sscmort_core.util.paths import DEFAULT_STORE_PATH

EXIT_BAD_INPUT = 2
Command = Callable[[argparse.Namespace], None]


class Progress:
    """tqdm bars on stderr, one per stage (silent when stderr is not wanted)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        key = stage.split(":")[0]  # "ingest: segment lungs" shares the "ingest" bar
        bar = self._bars.get(key)
        if bar is None:
            from tqdm import tqdm  # tens of ms (importlib.metadata): only for a drawn bar

            bar = tqdm(total=total, desc=stage, file=sys.stderr, unit="item",
                       dynamic_ncols=True, leave=True)
            self._bars[key] = bar
        bar.set_description(stage, refresh=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()


def emit(args: argparse.Namespace, summary: dict[str, Any], text: str) -> None:
    """The JSON summary (``--json``) or the text lines on stdout."""
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(text)


def add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, default=DEFAULT_STORE_PATH,
                   help=f"store file (default {DEFAULT_STORE_PATH})")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars on stderr")


def add_models_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", type=Path, default=None,
                   help="model registry folder (default $SSCMORT_MODELS or models/)")


def add_executor(p: argparse.ArgumentParser) -> None:
    """``--executor`` and ``--ray-address`` (with ``--workers``, which the command adds)."""
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help=f"where the per-scan work runs: local (a process pool, the default) "
                        f"or ray (default ${ENV_EXECUTOR}, else local)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help=f"Ray cluster for --executor ray, e.g. 10.0.0.5:6379 or "
                        f"ray://host:10001 (default ${ENV_RAY_ADDRESS}; none: a local Ray "
                        f"instance with --workers CPUs)")


def cli_executor(args: argparse.Namespace) -> Executor:
    """The executor the command's options (and environment) ask for, opened; bad settings and
    a missing Ray are an ExecutorError (one line, exit 2)."""
    return open_executor(executor_spec(args.executor, args.ray_address,
                                       getattr(args, "workers", None)))


def existing_store(path: Path) -> Path:
    """Commands that work on a built store never create an empty one."""
    if not Path(path).is_file():
        raise StoreError("no store at this path; build one with `sscmort demo` or add scans "
                         "with `sscmort ingest`", path)
    return Path(path)


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``low`` (a usage error otherwise, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def iso_date(text: str) -> dt.date:
    """An argparse type: YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
