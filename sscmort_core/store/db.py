"""Opening, locking and migrating the store; the few helpers every query module uses.

One process owns the file for writing (DuckDB locks it); a second writer gets
:class:`StoreLockedError`. Every multi-row write runs in one transaction. All values are bound
parameters; table and column names come only from constants of this package.

Threads: a DuckDB connection is not thread-safe. :meth:`Store.cursor` gives a thread its own
cursor over the same database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import duckdb
import numpy as np

from sscmort_core.errors import SchemaTooNewError, StoreError, StoreLockedError
from sscmort_core.store.schema import _TABLE_COLUMNS, MIGRATIONS, SCHEMA_VERSION
from sscmort_core.util.paths import DEFAULT_STORE_PATH  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import pandas as pd


class Store:
    """An open store. Use :func:`open_store`; close with :meth:`close` or as a context manager."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        self.path = path
        self.con = con
        self.read_only = read_only
        self._local = threading.local()
        self._main_thread = threading.get_ident()

    # -- connection handling -----------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's own cursor (the main thread uses the connection itself)."""
        if threading.get_ident() == self._main_thread:
            return self.con
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self.con.cursor()
            self._local.cursor = cur
        return cur

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on this thread's cursor: committed on success, rolled back on error."""
        cur = self.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def query_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a query; DATE columns come back as ``datetime.date`` objects (not Timestamps)."""
        import pandas as pd

        cur = self.cursor().execute(sql, list(params or []))
        date_cols = [d[0] for d in cur.description if str(d[1]).upper() == "DATE"]
        df = cur.df()
        for col in date_cols:
            df[col] = [None if pd.isna(v) else pd.Timestamp(v).date() for v in df[col]]
        return df

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def data_dir(self) -> Path:
        """Folder beside the store file for de-identified volumes and other artefacts."""
        return self.path.parent / f"{self.path.stem}_files"


def _check_path(path: Path, read_only: bool) -> None:
    if path.exists() and path.is_dir():
        raise StoreError("is a directory, not a store file; give a file path such as "
                         "data/sscmort.duckdb", path)
    if read_only:
        if not path.exists():
            raise StoreError("no store at this path; build one with `sscmort demo`", path)
        return
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise StoreError(f"parent {parent} is not a directory", path)
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError("store file is not writable", path)
    if parent.exists() and not path.exists() and not os.access(parent, os.W_OK):
        raise StoreError(f"folder {parent} is not writable", path)


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as err:
        text = str(err)
        if "lock" in text.lower():
            raise StoreLockedError(
                "store is open for writing in another process (the app or a CLI command); "
                "stop that process or use another --store path", path) from None
        raise StoreError(f"cannot open store: {text.splitlines()[0]}", path) from None
    except duckdb.Error as err:
        raise StoreError(f"not a valid store file: {str(err).splitlines()[0]}", path) from None


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version recorded in the store, 0 for an empty database."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()[0]
    if not exists:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION` in one transaction; return the version."""
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"store has schema version {current} but this sscmort knows only up to "
            f"{SCHEMA_VERSION}; upgrade sscmort (it never migrates a store down)", path)
    if current == SCHEMA_VERSION:
        return current
    con.execute("BEGIN TRANSACTION")
    try:
        if current == 0:
            con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                        "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            con.execute(MIGRATIONS[version - 1])
            con.execute("INSERT INTO schema_version (version) VALUES (?)", [version])
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return SCHEMA_VERSION


def open_store(path: str | Path = DEFAULT_STORE_PATH, *, read_only: bool = False) -> Store:
    """Open (creating and migrating if needed) the store at ``path``.

    Raises StoreError (directory, unwritable, corrupt), StoreLockedError (another writer),
    SchemaTooNewError (store from a newer sscmort).
    """
    path = Path(path)
    _check_path(path, read_only)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, read_only)
    try:
        if read_only:
            version = schema_version(con)
            if version > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"store has schema version {version}; this sscmort knows up to "
                    f"{SCHEMA_VERSION}", path)
            if version < SCHEMA_VERSION:
                raise StoreError(f"store has schema version {version}; open it once for "
                                 "writing to migrate it", path)
        else:
            migrate(con, path)
    except BaseException:
        con.close()
        raise
    return Store(path, con, read_only)


def set_meta(cur: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    cur.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])


def get_meta(store: Store, key: str) -> str | None:
    row = store.cursor().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


def insert_frame(cur: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame,
                 *, replace: bool = False) -> int:
    """Insert the rows of ``frame`` into ``table`` (columns as listed in this module).

    ``replace`` uses INSERT OR REPLACE (tables with a primary key). Returns rows written.
    Run it inside :meth:`Store.transaction` so a failure leaves nothing behind.
    """
    columns = _TABLE_COLUMNS[table]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}: missing columns {missing}")
    if frame.empty:
        return 0
    view = frame.loc[:, list(columns)].copy()
    name = f"_incoming_{table}"
    cur.register(name, view)
    try:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        cols = ", ".join(columns)
        cur.execute(f"{verb} INTO {table} ({cols}) SELECT {cols} FROM {name}")
    finally:
        try:
            cur.unregister(name)
        except duckdb.Error:  # the transaction already failed; the view goes with it
            pass
    return len(view)


def to_python(value: Any) -> Any:
    """numpy/pandas scalars -> plain Python (for JSON and bound parameters)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    pd = sys.modules.get("pandas")  # a pandas value exists only once pandas is loaded
    if pd is not None:
        if isinstance(value, pd.Timestamp):
            return value.date()
        if value is pd.NaT:
            return None
    return value


# Up to this many rows, :func:`insert_rows` writes one INSERT ... VALUES (no pandas: the CLI's
# ingest of one scan never loads it); more go through a DataFrame, which DuckDB scans faster.
VALUES_MAX_ROWS = 500


def insert_rows(cur: duckdb.DuckDBPyConnection, table: str, rows: Sequence[dict[str, Any]],
                *, replace: bool = False) -> int:
    """:func:`insert_frame` for rows given as dicts (every column of ``table``; extra keys
    are ignored), with the same stored values: numpy scalars become Python values and NaN
    becomes NULL, as DuckDB's scan of a DataFrame makes them. Returns rows written."""
    columns = _TABLE_COLUMNS[table]
    for row in rows:
        missing = [c for c in columns if c not in row]
        if missing:
            raise ValueError(f"{table}: missing columns {missing}")
    if not rows:
        return 0
    if len(rows) > VALUES_MAX_ROWS:
        import pandas as pd

        return insert_frame(cur, table, pd.DataFrame(list(rows)), replace=replace)
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    one = "(" + ", ".join("?" for _ in columns) + ")"
    params = [_bound(row[c]) for row in rows for c in columns]
    cur.execute(f"{verb} INTO {table} ({', '.join(columns)}) VALUES "
                + ", ".join([one] * len(rows)), params)
    return len(rows)


def _bound(value: Any) -> Any:
    value = to_python(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def in_clause(column: str, values: Sequence[Any]) -> str:
    """``column IN (?, ?, ...)`` with one bound parameter per value ("false" when empty)."""
    return f"{column} IN ({', '.join('?' for _ in values)})" if values else "false"


def one_row(store: Store, sql: str, params: Sequence[Any]) -> dict[str, Any] | None:
    """The first row of a query as plain Python values, or None when there is none."""
    df = store.query_df(sql, params)
    return None if df.empty else {k: to_python(v) for k, v in df.iloc[0].to_dict().items()}


def plain_row(store: Store, sql: str, params: Sequence[Any]) -> dict[str, Any] | None:
    """:func:`one_row` without pandas, for tables of VARCHAR, numbers, BOOLEAN, DATE and
    TIMESTAMP columns: NULL is None, a DATE a ``datetime.date`` and a TIMESTAMP its date
    (as :func:`one_row` gives them), the rest as DuckDB returns them."""
    cur = store.cursor().execute(sql, list(params))
    row = cur.fetchone()
    if row is None:
        return None
    names = [d[0] for d in cur.description]
    return {k: v.date() if isinstance(v, dt.datetime) else v for k, v in zip(names, row)}
