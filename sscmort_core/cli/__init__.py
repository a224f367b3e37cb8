"""Command line: ``sscmort`` / ``python -m sscmort_core`` (../shared/DESIGN.md "CLI contract").

One module per command family (:mod:`.demo`, :mod:`.imaging`, :mod:`.radiomics`,
:mod:`.train`, :mod:`.predict`, :mod:`.evaluate`, :mod:`.report`, :mod:`.pacs`,
:mod:`.registry`, :mod:`.audit`, :mod:`.app`), each with a ``register(sub, commands)``; the
shared output helpers are :mod:`.output`. Each command takes ``--store PATH`` where it uses the store, prints a JSON summary on stdout with
``--json``, shows progress on stderr for long work, and on bad input exits with status 2 and
one line on stderr naming the file and the problem, leaving the store unchanged. Heavy
libraries (torch, scikit-learn) load only inside the command that needs them, so
``sscmort --help`` stays fast.

May import: anything in sscmort_core (the top of the house).
"""

from __future__ import annotations

import argparse
import sys

from sscmort_core.cli import (
    app,
    audit,
    demo,
    evaluate,
    imaging,
    pacs,
    predict,
    radiomics,
    registry,
    report,
    train,
)
from sscmort_core.cli.output import EXIT_BAD_INPUT, Command
from sscmort_core.errors import SscmortError
from sscmort_core.util.logs import configure_logging

FAMILIES = (demo, imaging, radiomics, train, predict, evaluate, report, pacs, registry, audit,
            app)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The ``sscmort`` parser and the function behind each subcommand."""
    parser = argparse.ArgumentParser(
        prog="sscmort", description="SSc-ILD mortality risk from chest CT (research use only).")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Command] = {}
    for family in FAMILIES:
        family.register(sub, commands)
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "store", None))
    try:
        commands[args.command](args)
    except SscmortError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
