"""Command line: ``sscmort`` / ``python -m sscmort_core`` (DESIGN.md "CLI contract").

Each command takes ``--store PATH`` where it uses the store, prints a JSON summary on stdout
with ``--json``, shows progress on stderr for long work, and on bad input exits with status 2
and one line on stderr naming the file and the problem, leaving the store unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from sscmort_core.errors import SscmortError
from sscmort_core.store import DEFAULT_STORE_PATH

EXIT_BAD_INPUT = 2


class _Progress:
    """tqdm bars on stderr, one per stage (silent when stderr is not wanted)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        key = stage.split(":")[0]  # "ingest: segment lungs" shares the "ingest" bar
        bar = self._bars.get(key)
        if bar is None:
            bar = tqdm(total=total, desc=stage, file=sys.stderr, unit="item",
                       dynamic_ncols=True, leave=True)
            self._bars[key] = bar
        bar.set_description(stage, refresh=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()


def _emit(args: argparse.Namespace, summary: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(text)


# --- commands ------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline import DEMO_STAGES, build_demo

    stages = [s for s in DEMO_STAGES if s not in (args.skip or ())]
    summary = build_demo(args.store, n_patients=args.patients, seed=args.seed,
                         workers=args.workers, progress=_Progress(not args.quiet),
                         stages=stages, models_dir=args.models_dir)
    s = summary.to_json()
    _emit(args, s, f"demo store {s['store']}: {s['patients']} patients, {s['scans']} scans "
                   f"(synthetic); positives 1/3/5 y: {s['positives']}; censored: "
                   f"{s['censored']}; {s['seconds']} s")


def cmd_bench(args: argparse.Namespace) -> None:
    from sscmort_core.bench import DEFAULT_REAL_CT, run_benchmarks

    real = args.real_ct or DEFAULT_REAL_CT
    results = [r.to_json() for r in run_benchmarks(real, tuple(args.only or ()))]
    lines = [f"{r['name']}: {r['seconds']:.3f} s" + (
        f" = {r['ratio']:.2f} x {r['baseline']} ({r['baseline_seconds']:.3f} s)"
        if r["ratio"] is not None else "") + (
        f"; peak traced {r['peak_traced_mb']:.0f} MB" if r["peak_traced_mb"] else "")
        for r in results]
    _emit(args, {"results": results}, "\n".join(lines))


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, default=DEFAULT_STORE_PATH,
                   help=f"store file (default {DEFAULT_STORE_PATH})")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars on stderr")


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {"demo": cmd_demo,
                                                               "bench": cmd_bench}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sscmort", description="SSc-ILD mortality risk from chest CT (research use only).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="build the synthetic demo cohort store")
    _add_store(p)
    _add_common(p)
    p.add_argument("--patients", type=int, default=600, help="number of patients (600)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (all cores)")
    p.add_argument("--skip", nargs="*", choices=("radiomics", "tabular", "deep", "evaluate"),
                   help="optional stages to leave out (default: run them all)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="model registry folder (default $SSCMORT_MODELS or models/)")

    p = sub.add_parser("bench", help="run the benchmarks (ratios against same-run baselines)")
    _add_common(p)
    p.add_argument("--real-ct", type=Path, default=None,
                   help="folder of real CT series (default ../shared/data/real_ct)")
    p.add_argument("--only", nargs="*", help="names of benchmarks to run")

    _register_more(sub)
    return parser


def _register_more(sub: Any) -> None:
    """Commands contributed by later stages register here (see their modules)."""
    from sscmort_core import cli_deep, cli_evaluate, cli_imaging, cli_radiomics

    for module in (cli_imaging, cli_radiomics, cli_deep, cli_evaluate):
        module.register(sub, COMMANDS, _add_store, _add_common)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except SscmortError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
