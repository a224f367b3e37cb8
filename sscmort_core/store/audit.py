"""The audit trail: who did or saw what, when, with which role, on which (pseudonymous) ids,
and the outcome. Append-only: this module inserts and reads; nothing in sscmort updates or
deletes an audit row (a test reads every module for such SQL).

Each row is also appended, after its insert commits, as one JSON line to the store's audit
journal (``<store>_files/audit.jsonl``, mode 0600). DuckDB lets one process open a file that
another process writes to not even read-only, so while the app owns the store, ``sscmort
audit`` reads the journal instead (:func:`read_journal`); the table stays the record. A
crash between the commit and the append can leave the journal one row short, never ahead.

Object ids are pseudonymous store ids (patients, scans, models, jobs); a value a user typed
that names nothing in the store is recorded only as :func:`opaque_id` (a short hash), so an
identifier typed by mistake (a hospital number) never reaches the trail.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sscmort_core.store.db import Store

if TYPE_CHECKING:
    import pandas as pd

AUDIT_COLUMNS = ("audit_id", "at_utc", "who", "role", "action", "object_ids", "outcome",
                 "detail", "channel", "session")
OUTCOMES = ("ok", "refused", "error")
CHANNELS = ("app", "cli")
JOURNAL_NAME = "audit.jsonl"
MAX_DETAIL = 300
_JOURNAL_LOCK = threading.Lock()


@dataclass(frozen=True)
class AuditEvent:
    """One audited action. ``role`` is a role name, or "cli" for a command-line user;
    ``detail`` is sscmort's own sentence (a refusal's reason), never user input."""

    who: str
    role: str
    action: str
    object_ids: tuple[str, ...] = ()
    outcome: str = "ok"
    detail: str | None = None
    channel: str = "app"
    session: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"audit outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.channel not in CHANNELS:
            raise ValueError(f"audit channel must be one of {CHANNELS}, got {self.channel!r}")
        if not self.who or not self.action or not self.role:
            raise ValueError("an audit row needs who, role and action")
        if any(not i or any(c.isspace() for c in i) for i in self.object_ids):
            raise ValueError(f"object ids must be non-empty and without spaces: "
                             f"{self.object_ids!r}")


@dataclass(frozen=True)
class AuditFilter:
    """Rows to read: dates are UTC days, inclusive; ``who`` ignores case."""

    since: dt.date | None = None
    until: dt.date | None = None
    who: str | None = None
    action: str | None = None
    outcome: str | None = None
    object_id: str | None = None


def opaque_id(value: str) -> str:
    """A stand-in for a typed value that names nothing in the store (never the value)."""
    return "unknown:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:12]


def journal_path(store_path: str | Path) -> Path:
    store_path = Path(store_path)
    return store_path.parent / f"{store_path.stem}_files" / JOURNAL_NAME


def archive_journal(store_path: str | Path) -> Path | None:
    """Move the journal of a store that is being replaced (``sscmort demo`` over an old demo)
    aside as ``audit-<UTC time>.jsonl``, kept, so the journal always matches the store file."""
    path = journal_path(store_path)
    if not path.is_file():
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"audit-{stamp}.jsonl")
    path.rename(target)
    return target


def record_audit(store: Store, event: AuditEvent, *, at: dt.datetime | None = None) -> int:
    """Append one row (and its journal line); return its audit_id."""
    at = (at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).replace(
        tzinfo=None)
    detail = None if event.detail is None else " ".join(event.detail.split())[:MAX_DETAIL]
    values = [at, event.who, event.role, event.action, " ".join(event.object_ids),
              event.outcome, detail, event.channel, event.session]
    audit_id = int(store.cursor().execute(
        "INSERT INTO audit (at_utc, who, role, action, object_ids, outcome, detail, channel, "
        "session) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING audit_id", values).fetchone()[0])
    _append_journal(journal_path(store.path), dict(zip(AUDIT_COLUMNS, [audit_id, *values])))
    return audit_id


def _append_journal(path: Path, row: dict[str, Any]) -> None:
    line = json.dumps({**row, "at_utc": row["at_utc"].isoformat()}, separators=(",", ":"))
    with _JOURNAL_LOCK:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)


def audit_frame(store: Store, flt: AuditFilter = AuditFilter(), *,
                limit: int | None = None) -> pd.DataFrame:
    """Audit rows matching ``flt``, oldest first (the newest ``limit`` when given)."""
    where, params = _where(flt)
    newest = "" if limit is None else f" ORDER BY audit_id DESC LIMIT {int(limit)}"
    return store.query_df(f"SELECT * FROM (SELECT {', '.join(AUDIT_COLUMNS)} FROM audit "
                          f"WHERE {where}{newest}) ORDER BY audit_id", params)


def _where(flt: AuditFilter) -> tuple[str, list[Any]]:
    parts, params = ["true"], []
    if flt.since is not None:
        parts.append("at_utc >= ?")
        params.append(dt.datetime.combine(flt.since, dt.time()))
    if flt.until is not None:
        parts.append("at_utc < ?")
        params.append(dt.datetime.combine(flt.until + dt.timedelta(days=1), dt.time()))
    if flt.who:
        parts.append("lower(who) = lower(?)")
        params.append(flt.who)
    for column in ("action", "outcome"):
        if getattr(flt, column):
            parts.append(f"{column} = ?")
            params.append(getattr(flt, column))
    if flt.object_id:
        parts.append("list_contains(string_split(object_ids, ' '), ?)")
        params.append(flt.object_id)
    return " AND ".join(parts), params


def audit_choices(store: Store) -> dict[str, list[str]]:
    """The distinct users, actions and outcomes in the trail (for filter widgets)."""
    return {c: [str(v) for v in store.query_df(
        f"SELECT DISTINCT {c} FROM audit ORDER BY {c}")[c]] for c in ("who", "action", "outcome")}


def read_journal(store_path: str | Path, flt: AuditFilter = AuditFilter()) -> pd.DataFrame:
    """The journal's rows matching ``flt`` (the same columns and order as :func:`audit_frame`);
    a last line cut short by a crash is skipped. Needs no lock on the store."""
    import pandas as pd

    path = journal_path(store_path)
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    df = pd.DataFrame(rows, columns=list(AUDIT_COLUMNS))
    df["at_utc"] = pd.to_datetime(df["at_utc"])
    keep = pd.Series(True, index=df.index)
    if flt.since is not None:
        keep &= df["at_utc"] >= pd.Timestamp(flt.since)
    if flt.until is not None:
        keep &= df["at_utc"] < pd.Timestamp(flt.until + dt.timedelta(days=1))
    if flt.who:
        keep &= df["who"].str.lower() == flt.who.lower()
    for column in ("action", "outcome"):
        if getattr(flt, column):
            keep &= df[column] == getattr(flt, column)
    if flt.object_id:
        keep &= df["object_ids"].map(lambda s: flt.object_id in str(s).split())
    return df[keep].sort_values("audit_id").reset_index(drop=True)
