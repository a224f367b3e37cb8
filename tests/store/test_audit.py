"""The audit trail: append-only (no SQL anywhere updates or deletes it; a planted one is
found), rows read back with every filter the same from the table and from the journal, the
journal kept private and robust to a torn last line."""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
import shutil
import stat
from pathlib import Path

import pytest

from sscmort_core import store as st
from sscmort_core.store.schema import _TABLE_COLUMNS

REPO = Path(__file__).resolve().parents[2]
SOURCES = [REPO / "sscmort_core", REPO / "pages", REPO / "app.py"]
# SQL that would change or remove audit rows (or the table itself)
MUTATION = re.compile(r"\b(UPDATE\s+audit|DELETE\s+FROM\s+audit|DROP\s+(TABLE\s+)?audit|"
                      r"ALTER\s+TABLE\s+audit|TRUNCATE\s+(TABLE\s+)?audit|"
                      r"(INSERT\s+)?OR\s+REPLACE\s+INTO\s+audit|REPLACE\s+INTO\s+audit)\b",
                      re.IGNORECASE)
WRITE = re.compile(r"\bINTO\s+audit\b", re.IGNORECASE)


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module (f-string parts joined), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                id(node) not in parts:
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            out.append((node.lineno, "".join(v.value for v in node.values
                                             if isinstance(v, ast.Constant))))
    return out


def audit_sql_problems(roots: list[Path]) -> list[str]:
    """Where code could change or delete audit rows, or write them outside store/audit.py."""
    found = []
    for root in roots:
        for path in ([root] if root.is_file() else sorted(root.rglob("*.py"))):
            for line, text in _strings(path):
                flat = " ".join(text.split())
                if MUTATION.search(flat):
                    found.append(f"{path}:{line}: {flat[:80]}")
                elif WRITE.search(flat) and path.name != "audit.py":
                    found.append(f"{path}:{line}: writes audit rows outside store/audit.py")
    return found


def test_no_code_updates_or_deletes_audit_rows():
    assert audit_sql_problems(SOURCES) == []
    assert "audit" not in _TABLE_COLUMNS  # insert_frame (which can REPLACE) cannot reach it
    migrations = " ".join(st.MIGRATIONS[:]).lower()
    assert migrations.count("create table audit") == 1


@pytest.mark.parametrize("planted", [
    'store.cursor().execute("UPDATE audit SET who = ? WHERE audit_id = ?", [w, i])',
    'store.cursor().execute(f"DELETE FROM audit WHERE at_utc < {cutoff}")',
    'cur.execute("INSERT OR REPLACE INTO audit SELECT * FROM x")',
    'cur.execute("drop table audit")',
])
def test_a_planted_mutation_is_found(tmp_path, planted):
    root = tmp_path / "store"
    shutil.copytree(REPO / "sscmort_core" / "store", root,
                    ignore=shutil.ignore_patterns("__pycache__"))
    assert audit_sql_problems([root]) == []
    target = root / "cohort.py"
    target.write_text(target.read_text() + f"\n\ndef _planted(store, cur, w, i, cutoff):\n"
                                          f"    {planted}\n")
    found = audit_sql_problems([root])
    assert len(found) == 1 and "store/cohort.py" in found[0], found


def _rows(store: st.Store) -> None:
    base = dt.datetime(2026, 1, 10, 9, 0, tzinfo=dt.timezone.utc)
    events = [
        st.AuditEvent("pi@h.org", "admin", "login"),
        st.AuditEvent("rheum@h.org", "clinician", "view patient", ("P-001",)),
        st.AuditEvent("rheum@h.org", "clinician", "save", ("upload:abc",), outcome="refused",
                      detail="Not allowed:\nsave needs the analyst role"),
        st.AuditEvent("RHEUM@h.org", "clinician", "view scan", ("S-001",)),
        st.AuditEvent("alice", "cli", "save", ("P-002", "S-009"), channel="cli",
                      detail="sscmort ingest"),
    ]
    for day, e in enumerate(events):
        st.record_audit(store, e, at=base + dt.timedelta(days=day))


@pytest.mark.parametrize("flt, expect", [
    (st.AuditFilter(), [1, 2, 3, 4, 5]),
    (st.AuditFilter(since=dt.date(2026, 1, 11)), [2, 3, 4, 5]),
    (st.AuditFilter(until=dt.date(2026, 1, 11)), [1, 2]),
    (st.AuditFilter(since=dt.date(2026, 1, 11), until=dt.date(2026, 1, 12)), [2, 3]),
    (st.AuditFilter(who="rheum@H.ORG"), [2, 3, 4]),
    (st.AuditFilter(action="save"), [3, 5]),
    (st.AuditFilter(outcome="refused"), [3]),
    (st.AuditFilter(object_id="S-009"), [5]),
    (st.AuditFilter(object_id="S-00"), []),  # whole ids only
])
def test_filters_agree_between_the_table_and_the_journal(tmp_path, flt, expect):
    with st.open_store(tmp_path / "a.duckdb") as store:
        _rows(store)
        table = st.audit_frame(store, flt)
    journal = st.read_journal(tmp_path / "a.duckdb", flt)
    assert list(table["audit_id"]) == expect
    assert table.astype(str).equals(journal.astype(str)), (table, journal)


def test_rows_read_back_as_written_and_the_newest_limit(tmp_path):
    with st.open_store(tmp_path / "a.duckdb") as store:
        _rows(store)
        rows = st.audit_frame(store)
        newest = st.audit_frame(store, limit=2)
        choices = st.audit_choices(store)
    r = rows.iloc[2]
    assert (r.who, r.role, r.action, r.object_ids, r.outcome, r.channel) == (
        "rheum@h.org", "clinician", "save", "upload:abc", "refused", "app")
    assert r.detail == "Not allowed: save needs the analyst role"  # one line
    assert str(rows.iloc[4].at_utc) == "2026-01-14 09:00:00"  # UTC, naive
    assert list(newest["audit_id"]) == [4, 5]
    assert choices["outcome"] == ["ok", "refused"] and "view scan" in choices["action"]


def test_the_journal_is_private_and_a_torn_last_line_is_skipped(tmp_path):
    with st.open_store(tmp_path / "a.duckdb") as store:
        _rows(store)
    path = st.journal_path(tmp_path / "a.duckdb")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert [json.loads(x)["audit_id"] for x in lines] == [1, 2, 3, 4, 5]
    with open(path, "a") as f:
        f.write('{"audit_id": 6, "who": "cut sh')
    assert list(st.read_journal(tmp_path / "a.duckdb")["audit_id"]) == [1, 2, 3, 4, 5]


def test_a_replaced_store_keeps_its_old_journal_aside(tmp_path):
    with st.open_store(tmp_path / "a.duckdb") as store:
        _rows(store)
    moved = st.archive_journal(tmp_path / "a.duckdb")
    assert moved is not None and moved.name.startswith("audit-") and moved.is_file()
    assert not st.journal_path(tmp_path / "a.duckdb").exists()
    assert st.archive_journal(tmp_path / "a.duckdb") is None
    assert st.read_journal(tmp_path / "a.duckdb").empty


@pytest.mark.parametrize("kwargs", [
    {"outcome": "maybe"}, {"channel": "web"}, {"object_ids": ("two words",)},
    {"object_ids": ("",)}, {"who": ""}])
def test_malformed_events_are_programming_errors(kwargs):
    base = {"who": "a", "role": "viewer", "action": "view"}
    with pytest.raises(ValueError):
        st.AuditEvent(**(base | kwargs))


def test_opaque_ids_never_carry_the_typed_value():
    typed = "MRN-77341-XQ"
    got = st.opaque_id(typed)
    assert typed not in got and got.startswith("unknown:") and got == st.opaque_id(typed)
