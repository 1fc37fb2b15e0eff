"""The only module that opens DuckDB: snapshots, lock detection, drops, queries.

DuckDB is imported lazily (on first use, 80 ms): a run whose database file is
unchanged since the last run's end answers from the saved snapshot and never
loads it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from .errors import DatabaseError, DatabaseLockedError


def _lazy_module(name: str) -> Any:
    """The module, loaded on first attribute access (importlib's own LazyLoader)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


duckdb = _lazy_module("duckdb")


@contextmanager
def memory_connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB for scratch work (census generation, file inspection)."""
    con = duckdb.connect(":memory:")
    try:
        yield con
    finally:
        con.close()


LOCK_RE = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


@dataclass(frozen=True)
class TableState:
    kind: str  # "BASE TABLE" or "VIEW"
    signature: str | None  # row count and an order-independent content hash; None for views


@dataclass(frozen=True)
class Snapshot:
    """What the database holds, read once before a run builds anything."""

    path: Path
    exists: bool
    tables: Mapping[tuple[str, str, str], TableState]

    def has(self, key: tuple[str, str, str]) -> bool:
        return key in self.tables

    def signature(self, key: tuple[str, str, str]) -> str | None:
        state = self.tables.get(key)
        return state.signature if state else None


def lock_holder(error: Exception) -> str | None:
    """'<program> (PID n)' when a DuckDB error is a lock conflict, else None."""
    match = LOCK_RE.search(str(error))
    if not match:
        return None
    return f"{Path(match['program']).name} (PID {match['pid']})"


def _open_error(path: Path, error: Exception) -> DatabaseError:
    holder = lock_holder(error)
    if holder:
        return DatabaseLockedError(str(path), holder)
    return DatabaseError(f"cannot open database {path}: {error}", "check the path in database.path / DUCKDB_PATH")


# DuckDB settings for the engine's own connections (database.threads / memory_limit).
SETTINGS: dict[str, str] = {}


def configure(settings: Mapping[str, str]) -> None:
    SETTINGS.clear()
    SETTINGS.update(settings)


# One read-only connection kept open across validation checks (opening the file
# costs tens of milliseconds per check); closed before anything writes the file.
_shared: dict[str, duckdb.DuckDBPyConnection] = {}


def close_shared() -> None:
    """Close the kept read-only connection: call before dbt or the engine writes."""
    while _shared:
        _, con = _shared.popitem()
        con.close()


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    close_shared()
    return duckdb.connect(str(path), read_only=read_only, config=dict(SETTINGS))


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the database file, closed on exit; errors become one-line causes."""
    try:
        con = _connect(path, read_only)
    except duckdb.Error as exc:
        raise _open_error(path, exc) from None
    try:
        yield con
    finally:
        con.close()


def quote(identifier: str) -> str:
    """A DuckDB quoted identifier: names from config never reach SQL unquoted."""
    return '"' + identifier.replace('"', '""') + '"'


def qualified(key: tuple[str, str, str]) -> str:
    return ".".join(quote(part) for part in key if part)


def _signature(con: duckdb.DuckDBPyConnection, key: tuple[str, str, str]) -> str | None:
    try:
        count, digest = con.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {qualified(key)} AS t").fetchone()
    except duckdb.Error:
        return None
    return f"{count}:{digest}"


def _signatures(con: duckdb.DuckDBPyConnection, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], str | None]:
    """Row count and order-independent content hash of each table, in one query."""
    if not keys:
        return {}
    union = " UNION ALL ".join(
        f"SELECT {i} AS i, count(*) AS n, bit_xor(hash(t)) AS h FROM {qualified(key)} AS t" for i, key in enumerate(keys)
    )
    try:
        rows = con.execute(union).fetchall()
    except duckdb.Error:  # one odd table must not cost the others their signature
        return {key: _signature(con, key) for key in keys}
    return {keys[i]: f"{n}:{h}" for i, n, h in rows}


def _tables(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], str]:
    rows = con.execute(
        "SELECT table_catalog, table_schema, table_name, table_type FROM information_schema.tables"
    ).fetchall()
    return {(c.lower(), s.lower(), n.lower()): kind for c, s, n, kind in rows}


def file_state(path: Path) -> list[int] | None:
    """Size and modification time of the database file and its WAL: any write changes them."""
    try:
        st = path.stat()
    except OSError:
        return None
    wal = Path(f"{path}.wal")
    wal_st = wal.stat() if wal.exists() else None
    return [st.st_size, st.st_mtime_ns, wal_st.st_size if wal_st else -1, wal_st.st_mtime_ns if wal_st else -1]


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    return {"exists": snap.exists, "tables": [[list(k), v.kind, v.signature] for k, v in snap.tables.items()]}


def snapshot_from_dict(path: Path, data: Mapping[str, Any]) -> Snapshot:
    tables = {tuple(k): TableState(kind, signature) for k, kind, signature in data["tables"]}
    return Snapshot(path, bool(data["exists"]), tables)


def snapshot(path: Path, signed: Iterable[tuple[str, str, str]] = ()) -> Snapshot:
    """Tables present, with content signatures for the ``signed`` ones (tables only)."""
    if not path.exists():
        return Snapshot(path, False, {})
    with connect(path, read_only=True) as con:
        kinds = _tables(con)
        wanted = set(signed)
        signed_now = _signatures(con, sorted(k for k, kind in kinds.items() if k in wanted and kind == "BASE TABLE"))
        tables = {key: TableState(kind, signed_now.get(key)) for key, kind in kinds.items()}
    return Snapshot(path, True, tables)


def signatures(path: Path, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], str | None]:
    """Content signatures of freshly built tables (None for views and missing ones)."""
    keys = list(keys)
    if not keys or not path.exists():
        return {}
    with connect(path) as con:
        kinds = _tables(con)
        signed = _signatures(con, [k for k in keys if kinds.get(k) == "BASE TABLE"])
        return {k: signed.get(k) for k in keys}


def check_writable(path: Path) -> None:
    """Fail early, with the fix, when the database cannot be created or written."""
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise DatabaseError(f"database directory {parent} is not a directory", "set database.path to a file in a writable directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create database directory {parent}: {exc.strerror}", "set database.path to a writable location") from None
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise DatabaseError(f"database {'file' if target == path else 'directory'} {target} is not writable", "fix its permissions or set database.path elsewhere")


# -- read-only queries (validation checks) ----------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of one query."""

    columns: tuple[str, ...]
    rows: list[tuple[object, ...]]

    def records(self) -> list[dict[str, object]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class Reader:
    """Queries on a database opened read-only (see ``read_only``); every error is a DatabaseError."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self._con = con
        self.path = path
        self._tables: dict[tuple[str, str, str], str] | None = None

    def query(self, sql: str, params: Iterable[object] | Mapping[str, object] | None = None) -> QueryResult:
        try:
            cursor = self._con.execute(sql, params) if params is not None else self._con.execute(sql)
            rows = cursor.fetchall()
        except duckdb.Error as exc:
            raise DatabaseError(f"query failed: {' '.join(str(exc).split())}") from None
        return QueryResult(tuple(d[0] for d in cursor.description or ()), rows)

    def tables(self) -> dict[tuple[str, str, str], str]:
        """(catalog, schema, name) in lower case -> 'BASE TABLE' or 'VIEW'."""
        if self._tables is None:
            self._tables = _tables(self._con)
        return self._tables

    def find(self, name: str) -> tuple[str, str, str] | None:
        """The table or view called ``name`` ('t', 'schema.t' or 'db.schema.t'); schema main first."""
        parts = [p.lower() for p in name.split(".")]
        matches = sorted(k for k in self.tables() if list(k[3 - len(parts):]) == parts)
        main = [k for k in matches if k[1] == "main"]
        return (main or matches or [None])[0]

    def columns(self, key: tuple[str, str, str]) -> tuple[str, ...]:
        """Column names of a table or view, in order (empty when it does not exist)."""
        rows = self.query(
            "SELECT column_name FROM information_schema.columns"
            " WHERE lower(table_catalog) = ? AND lower(table_schema) = ? AND lower(table_name) = ?"
            " ORDER BY ordinal_position",
            list(key),
        ).rows
        return tuple(r[0] for r in rows)


@contextmanager
def read_only(path: Path, keep_open: bool = False) -> Iterator[Reader]:
    """A read-only Reader on the database file, closed on exit unless ``keep_open``.

    With ``keep_open`` the connection stays for the next reader of the same file,
    until ``close_shared()`` or a writing connection. Inside a process that already
    has the file open (dbt-duckdb not yet released), DuckDB refuses a second
    configuration; the shared instance is used instead.
    """
    if not path.exists():
        raise DatabaseError(f"database {path} does not exist", "run `doit setup` to build it")
    key = str(path.resolve())
    con = _shared.get(key)
    if con is None:
        con = _open_read_only(path)
        if keep_open:
            _shared[key] = con
    try:
        yield Reader(con, path)
    finally:
        if key not in _shared:
            con.close()


def _open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        return _connect(path, True)
    except duckdb.Error as exc:
        if "different configuration" not in str(exc):
            raise _open_error(path, exc) from None
        try:
            return duckdb.connect(str(path))
        except duckdb.Error as again:
            raise _open_error(path, again) from None


def tables_in_sql(sql: str) -> set[str] | None:
    """Names of the tables a query reads, as written ('t' or 'schema.t'); None if it cannot be parsed."""
    try:
        return set(duckdb.get_table_names(sql, qualified=True))
    except duckdb.Error:
        return None


# -- dropping tables (doit clear) ---------------------------------------------------


@dataclass(frozen=True)
class DbRelation:
    """A table or view, with the tables its foreign keys reference."""

    key: tuple[str, str, str]
    kind: str  # "BASE TABLE" or "VIEW"
    references: tuple[tuple[str, str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.key[2]

    def __str__(self) -> str:
        return f"{self.key[1]}.{self.key[2]}"


@dataclass(frozen=True)
class DropResult:
    dropped: list[DbRelation]
    failed: dict[DbRelation, str]


def _relations(con: duckdb.DuckDBPyConnection) -> list[DbRelation]:
    refs: dict[tuple[str, str, str], set[tuple[str, str, str]]] = {}
    rows = con.execute(
        "SELECT database_name, schema_name, table_name, referenced_table FROM duckdb_constraints()"
        " WHERE constraint_type = 'FOREIGN KEY'"
    ).fetchall()
    for catalog, schema, table, referenced in rows:
        key = (catalog.lower(), schema.lower(), table.lower())
        refs.setdefault(key, set()).add((key[0], key[1], referenced.lower()))
    return [DbRelation(k, kind, tuple(sorted(refs.get(k, ())))) for k, kind in sorted(_tables(con).items())]


def drop_order(relations: Iterable[DbRelation], wanted: Callable[[DbRelation], bool]) -> list[DbRelation]:
    """The wanted relations in an order DuckDB accepts: views, then referencing tables first.

    Ties are broken by name, so the same database always clears the same way; a
    foreign-key cycle falls back to name order (the drop's retry does the rest).
    """
    chosen = sorted((r for r in relations if wanted(r)), key=lambda r: r.key)
    views = [r for r in chosen if r.kind == "VIEW"]
    tables = {r.key: r for r in chosen if r.kind != "VIEW"}
    sorter: TopologicalSorter[tuple[str, str, str]] = TopologicalSorter({key: () for key in tables})
    for rel in tables.values():
        for referenced in rel.references:
            if referenced in tables and referenced != rel.key:
                sorter.add(referenced, rel.key)  # the referenced table goes after
    try:
        sorter.prepare()
    except CycleError:
        return views + list(tables.values())
    ordered: list[DbRelation] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered += [tables[key] for key in ready]
        sorter.done(*ready)
    return views + ordered


def drop_relations(path: Path, choose: Callable[[list[DbRelation]], list[DbRelation]]) -> DropResult:
    """Drop the relations ``choose`` picks from all the database holds, in its order.

    A drop a dependency refuses (a foreign key from a table not dropped yet) is
    retried after the others, for as long as a pass drops something.
    """
    if not path.exists():
        return DropResult([], {})
    with connect(path) as con:  # read-write: dbt-duckdb may hold the file open in this process
        pending = choose(_relations(con))
        dropped: list[DbRelation] = []
        while pending:
            failed: dict[DbRelation, str] = {}
            for rel in pending:
                kind = "VIEW" if rel.kind == "VIEW" else "TABLE"
                try:
                    con.execute(f"DROP {kind} IF EXISTS {qualified(rel.key)}")
                except duckdb.Error as exc:
                    failed[rel] = " ".join(str(exc).split())
                else:
                    dropped.append(rel)
            if len(failed) == len(pending):
                return DropResult(dropped, failed)
            pending = list(failed)
    return DropResult(dropped, {})
