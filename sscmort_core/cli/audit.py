"""CLI command ``audit`` (read the audit trail) and :func:`record_cli`, which the commands
that write the store call to add their own row (who: the operating-system user).

``sscmort audit`` needs no write lock: it opens the store read-only, and when another process
(the app, a running command) owns the file, which DuckDB then keeps from every other process,
it reads the store's audit journal instead and says so on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from sscmort_core.access import os_user
from sscmort_core.cli.output import Command, add_store, existing_store, iso_date
from sscmort_core.errors import StoreLockedError


def record_cli(store: Any, action: str, object_ids: Sequence[str] = (), *,
               detail: str | None = None) -> None:
    """Append the audit row of a CLI command that wrote ``store`` (an open, writable store)."""
    from sscmort_core.store import AuditEvent, record_audit  # heavy: duckdb, pandas

    record_audit(store, AuditEvent(os_user(), "cli", action, tuple(object_ids), detail=detail,
                                   channel="cli"))


def _read(args: argparse.Namespace) -> tuple[Any, str]:
    """(rows, where they came from)."""
    from sscmort_core import store as st_store  # heavy: duckdb, pandas

    flt = st_store.AuditFilter(since=args.since, until=args.until, who=args.user,
                               action=args.action, outcome=args.outcome,
                               object_id=args.object)
    path = existing_store(args.store)
    try:
        with st_store.open_store(path, read_only=True) as store:
            return st_store.audit_frame(store, flt, limit=args.limit), "store"
    except StoreLockedError:
        journal = st_store.journal_path(path)
        print(f"note: {path} is open for writing in another process; reading its audit "
              f"journal {journal}", file=sys.stderr)
        rows = st_store.read_journal(path, flt)
        return (rows if args.limit is None else rows.tail(args.limit)), "journal"


def cmd_audit(args: argparse.Namespace) -> None:
    rows, source = _read(args)
    records = [{k: (None if v != v else v) for k, v in r.items()}  # NaN -> None
               for r in rows.astype(object).to_dict(orient="records")]
    for r in records:
        r["at_utc"] = str(r["at_utc"])[:19]
    if args.json:
        print(json.dumps({"source": source, "rows": records}, indent=2, default=str))
        return
    if not records:
        print("no audit rows match")
        return
    for r in records:
        print("  ".join(str(x) for x in (
            r["audit_id"], r["at_utc"], r["who"], r["role"], r["action"],
            r["object_ids"] or "-", r["outcome"], r["detail"] or "")).rstrip())


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("audit", help="read the audit trail: who did or saw what, when, and the "
                                     "outcome (read-only; works while the app runs)")
    add_store(p)
    p.add_argument("--since", type=iso_date, default=None, help="from this UTC day (YYYY-MM-DD)")
    p.add_argument("--until", type=iso_date, default=None,
                   help="up to and including this UTC day")
    p.add_argument("--user", default=None, help="only this user (e-mail, 'local', or OS user)")
    p.add_argument("--action", default=None, help="only this action (e.g. 'view patient')")
    p.add_argument("--outcome", choices=("ok", "refused", "error"), default=None)
    p.add_argument("--object", default=None, metavar="ID",
                   help="only rows naming this patient / scan / model id")
    p.add_argument("--limit", type=int, default=None, help="only the newest N rows")
    p.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    commands["audit"] = cmd_audit
