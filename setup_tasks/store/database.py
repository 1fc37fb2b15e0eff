"""The only module that opens DuckDB: what a database holds, lock detection, drops, queries.

DuckDB is imported lazily (on first use, 80 ms): a run whose database file is
unchanged since the last run's end answers from the saved contents and never
loads it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from ..errors import DatabaseError, DatabaseLockedError, DatabaseUnopenable
from ..files import path_key
from ..project.context import Connection
from ..project.inputs import may_read_files, reader_call_paths


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


if TYPE_CHECKING:  # the type checker reads duckdb's own types; at run time it loads on first use
    import duckdb as duckdb  # "as": census.py reads it from here too
else:
    duckdb = _lazy_module("duckdb")


@contextmanager
def memory_connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB for scratch work (census generation, file inspection)."""
    con = duckdb.connect(":memory:")
    try:
        with interrupts_raised():
            yield con
    finally:
        con.close()


@contextmanager
def interrupts_raised() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) during a DuckDB query is an interrupt, wherever the query runs: DuckDB
    ends the query with RuntimeError('Query interrupted') or InterruptException instead."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only an interrupt is changed
        if interrupted(exc):
            raise KeyboardInterrupt from None
        raise


MORE_INFO_RE = re.compile(r"For more info, visit \S+")
LOCK_RE = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


@dataclass(frozen=True)
class TableState:
    kind: str  # "BASE TABLE" or "VIEW"
    signature: str | None  # row count and an order-independent content hash; None for views


@dataclass(frozen=True)
class DatabaseContents:
    """What the database holds (tables, views, content signatures), read once before a run builds."""

    path: Path
    exists: bool
    tables: Mapping[tuple[str, str, str], TableState]
    schemas: frozenset[tuple[str, str]] = frozenset()  # (catalog, schema), lower case

    def has(self, key: tuple[str, str, str]) -> bool:
        return key in self.tables

    def signature(self, key: tuple[str, str, str]) -> str | None:
        state = self.tables.get(key)
        return state.signature if state else None


DUCKDB_MAGIC = b"DUCK"  # at offset 8 of every DuckDB database file
WORKER_MODULE = "setup_tasks.dbt.worker"  # how setup's warm worker is started (its command line)


def lock_holder(error: Exception) -> str | None:
    """'<program> (PID n)' when a DuckDB error is a lock conflict, else None; setup's own worker is
    named as such ('setup's dbt worker (PID n)')."""
    pid = lock_pid(error)
    if pid is None:
        return None
    if is_setup_worker(pid):
        return f"setup's dbt worker (PID {pid})"
    return f"{Path(LOCK_RE.search(str(error))['program']).name} (PID {pid})"  # type: ignore[index]


def lock_pid(error: Exception) -> int | None:
    match = LOCK_RE.search(str(error))
    return int(match["pid"]) if match else None


def is_setup_worker(pid: int) -> bool:
    """Is ``pid`` one of setup's warm dbt workers (by its command line; False where that cannot be read)?"""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return WORKER_MODULE.encode() in argv


def held_databases() -> list[str] | None:
    """The DuckDB database files this process holds open (by their header), or None where open
    files cannot be listed (no /proc)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    held = []
    for name in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith("/") and os.pread(int(name), 12, 0)[8:12] == DUCKDB_MAGIC:
                held.append(target)
        except (OSError, ValueError):
            continue  # closed meanwhile, a socket or pipe, or not readable
    return sorted(set(held))


def interrupted(error: BaseException) -> bool:
    """Is this how DuckDB ends a query on a signal? It turns a pending SIGINT into RuntimeError('Query interrupted')."""
    return isinstance(error, duckdb.InterruptException) or (
        isinstance(error, RuntimeError) and str(error).strip().lower() == "query interrupted"
    )


def locked_error(path: Path | str, error: Exception) -> DatabaseLockedError | None:
    """The one-line error of a DuckDB lock conflict (None for any other error): setup's own worker is named
    as such, with a fix that ends it, never 'close that connection (notebook, IDE...)'."""
    holder = lock_holder(error)
    if holder and holder.startswith("setup's"):  # a worker this run could not reach (another worker folder)
        return DatabaseLockedError(
            str(path),
            holder,
            f"end it (kill {lock_pid(error)}; it is setup's own warm "
            "worker, started with another worker folder) and run again",
        )
    return DatabaseLockedError(str(path), holder) if holder else None


def _open_error(path: Path, error: Exception) -> DatabaseUnopenable:
    locked = locked_error(path, error)
    if locked is not None:
        return locked
    return DatabaseUnopenable(f"cannot open database {path}: {error}", "check the path in database.path / DUCKDB_PATH")


# What setup does about a lock held by process ``pid`` (setup's own worker): None when ``pid`` is
# not setup's; else (who holds it, in words; None when it let go, so opening again may work, else the fix).
LockedBy = Callable[[int], "tuple[str, str | None] | None"]


def quote(identifier: str) -> str:
    """A DuckDB quoted identifier: names from config never reach SQL unquoted."""
    return '"' + identifier.replace('"', '""') + '"'


def qualified(key: tuple[str, str, str]) -> str:
    return ".".join(quote(part) for part in key if part)


# A table's content signature: its columns (names and types, in order), its row count, and the xor and
# the sum of its rows' hashes (a multiset hash: rows in any order; rows twice do not cancel out, as under
# xor alone). Readers of an up-to-date table depend on it (early cutoff), so it must change with any
# change to what they could read.
SIGNATURE_VERSION = "s2"


def _row_digests(key: tuple[str, str, str], i: int) -> str:
    return (
        f"SELECT {i} AS i, count(*) AS n, bit_xor(h) AS x, sum(h::HUGEINT) AS s "
        f"FROM (SELECT hash(t) AS h FROM {qualified(key)} AS t)"
    )


def _column_digests(
    con: duckdb.DuckDBPyConnection, keys: list[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """Each table's columns (name and type, in order), digested: one catalog query for all."""
    wanted = {tuple(part.lower() for part in key) for key in keys}
    schemas = sorted({key[:2] for key in wanted})
    where = " OR ".join("(lower(database_name) = ? AND lower(schema_name) = ?)" for _ in schemas)
    rows = con.execute(
        "SELECT lower(database_name), lower(schema_name), lower(table_name), "
        "list(column_name || ' ' || data_type ORDER BY column_index) FROM duckdb_columns() "
        f"WHERE {where} GROUP BY ALL",
        [part for schema in schemas for part in schema],
    ).fetchall()
    return {
        (c, s, n): hashlib.sha256("\n".join(cols).encode()).hexdigest()[:12]
        for c, s, n, cols in rows
        if (c, s, n) in wanted
    }


def _signature(con: duckdb.DuckDBPyConnection, key: tuple[str, str, str]) -> str | None:
    return _signatures(con, [key], one_by_one=False).get(key)


def _signatures(
    con: duckdb.DuckDBPyConnection, keys: list[tuple[str, str, str]], one_by_one: bool = True
) -> dict[tuple[str, str, str], str | None]:
    """The content signature of each table (``SIGNATURE_VERSION``), in two queries."""
    if not keys:
        return {}
    union = " UNION ALL ".join(_row_digests(key, i) for i, key in enumerate(keys))
    try:
        columns = _column_digests(con, keys)
        rows = con.execute(union).fetchall()
    except duckdb.Error as exc:  # one odd table must not cost the others their signature
        if interrupted(exc):
            raise
        return {key: _signature(con, key) for key in keys} if one_by_one else {key: None for key in keys}
    return {
        keys[i]: f"{SIGNATURE_VERSION}:{n}:{x}:{total}:{columns.get(tuple(p.lower() for p in keys[i]), '')}"
        for i, n, x, total in rows
    }


def _tables(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], str]:
    rows = con.execute(
        "SELECT table_catalog, table_schema, table_name, table_type FROM information_schema.tables"
    ).fetchall()
    return {(c.lower(), s.lower(), n.lower()): kind for c, s, n, kind in rows}


def _schemas(con: duckdb.DuckDBPyConnection) -> frozenset[tuple[str, str]]:
    rows = con.execute("SELECT catalog_name, schema_name FROM information_schema.schemata").fetchall()
    return frozenset((c.lower(), s.lower()) for c, s in rows)


def _contents_of(
    path: Path,
    con: duckdb.DuckDBPyConnection,
    kinds: Mapping[tuple[str, str, str], str],
    signed: Iterable[tuple[str, str, str]],
    known: Mapping[tuple[str, str, str], TableState],
) -> DatabaseContents:
    wanted = {k for k in signed if kinds.get(k) == "BASE TABLE"}
    held = {k: known[k].signature for k in wanted if k in known and known[k].kind == "BASE TABLE"}
    signed_now = {**held, **_signatures(con, sorted(wanted - set(held)))}
    tables = {key: TableState(kind, signed_now.get(key)) for key, kind in kinds.items()}
    return DatabaseContents(path, True, tables, _schemas(con))


def file_state(path: Path) -> list[int] | None:
    """The stat keys (``files.stat_key``) of the database file and its WAL: any write changes them, and a
    program that restores the modification time afterwards changes the change time in doing so."""
    main = path_key(path)
    if main is None:
        return None
    return [*main, *(path_key(Path(f"{path}.wal")) or [-1] * 5)]


def contents_to_dict(snap: DatabaseContents) -> dict[str, Any]:
    return {
        "exists": snap.exists,
        "tables": [[list(k), v.kind, v.signature] for k, v in snap.tables.items()],
        "schemas": sorted(list(s) for s in snap.schemas),
    }


def contents_from_dict(path: Path, data: Mapping[str, Any]) -> DatabaseContents:
    tables = {tuple(k): TableState(kind, signature) for k, kind, signature in data["tables"]}
    return DatabaseContents(path, bool(data["exists"]), tables, frozenset(tuple(s) for s in data["schemas"]))


# -- read-only queries (validation checks) ----------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of one query."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]  # DuckDB's values: their types are the query's

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class Catalog:
    """The tables and columns of a database as one connection sees it, each read at the first question
    with one query for all of them (not one per table: a catalog query costs milliseconds)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._tables: dict[tuple[str, str, str], str] | None = None
        self._columns: dict[tuple[str, str, str], tuple[str, ...]] | None = None

    def tables(self) -> dict[tuple[str, str, str], str]:
        if self._tables is None:
            self._tables = _tables(self._con)
        return self._tables

    def columns(self, key: tuple[str, str, str]) -> tuple[str, ...]:
        if self._columns is None:
            found: dict[tuple[str, str, str], list[str]] = {}
            rows = self._con.execute(
                "SELECT table_catalog, table_schema, table_name, column_name FROM information_schema.columns"
                " ORDER BY table_catalog, table_schema, table_name, ordinal_position"
            ).fetchall()
            for catalog, schema, table, column in rows:
                found.setdefault((catalog.lower(), schema.lower(), table.lower()), []).append(column)
            self._columns = {k: tuple(v) for k, v in found.items()}
        return self._columns.get(tuple(part.lower() for part in key), ())  # type: ignore[arg-type]


class Reader:
    """Queries on a database opened read-only (see ``read_only``); every error is a DatabaseError."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, catalog: Catalog | None = None) -> None:
        self._con = con
        self.path = path
        self._catalog = catalog or Catalog(con)

    def query(self, sql: str, params: Iterable[object] | Mapping[str, object] | None = None) -> QueryResult:
        try:
            cursor = self._con.execute(sql, params) if params is not None else self._con.execute(sql)
            rows = cursor.fetchall()
        except (duckdb.Error, RuntimeError) as exc:
            if interrupted(exc):
                raise KeyboardInterrupt from None  # Ctrl-C (or SIGTERM) mid-query: an interrupt, not a failed check
            if not isinstance(exc, duckdb.Error):
                raise
            raise DatabaseError(f"query failed: {' '.join(str(exc).split())}") from None
        return QueryResult(tuple(d[0] for d in cursor.description or ()), rows)

    def tables(self) -> dict[tuple[str, str, str], str]:
        """(catalog, schema, name) in lower case -> 'BASE TABLE' or 'VIEW'."""
        return self._catalog.tables()

    def find(self, name: str) -> tuple[str, str, str] | None:
        """The table or view called ``name`` ('t', 'schema.t' or 'db.schema.t'); schema main first."""
        parts = [p.lower() for p in name.split(".")]
        matches = sorted(k for k in self.tables() if list(k[3 - len(parts) :]) == parts)
        main = [k for k in matches if k[1] == "main"]
        return (main or matches or [None])[0]  # type: ignore[list-item]  # None: no match

    def columns(self, key: tuple[str, str, str]) -> tuple[str, ...]:
        """Column names of a table or view, in order (empty when it does not exist)."""
        try:
            return self._catalog.columns(key)
        except duckdb.Error as exc:
            if interrupted(exc):
                raise KeyboardInterrupt from None
            raise DatabaseError(f"query failed: {' '.join(str(exc).split())}") from None


@contextmanager
def scratch_reader(path: Path) -> Iterator[Reader]:
    """A Reader on an empty in-memory database, for a check that reads no table: it runs (and says it
    has nothing to check) before the database ``path`` exists."""
    with memory_connection() as con:
        yield Reader(con, path)


class SqlParser:
    """DuckDB's parser, on one in-memory database opened at the first parse: opening one costs about
    10 ms, a parse on it a fraction of a millisecond (a project's thousands of test and model SQL)."""

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None

    def tree(self, sql: str) -> dict[str, Any] | None:
        """DuckDB's syntax tree of the SELECT statement(s) in ``sql`` (``json_serialize_sql``), as JSON data;
        None when DuckDB cannot parse it (not SQL, Jinja left in, or not a SELECT)."""
        if self._con is None:
            self._con = duckdb.connect(":memory:")
        cursor = self._con.cursor()  # its own connection to the database: callers may be on dbt's thread
        try:
            with interrupts_raised():
                text = cursor.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]  # type: ignore[index]  # one row
        except duckdb.Error:
            return None
        finally:
            cursor.close()
        tree = json.loads(text)
        return None if tree.get("error") else tree

    def reader_paths(self, sql: str) -> list[str]:
        """``reader_paths``, parsing on this parser's database."""
        if not may_read_files(sql):
            return []
        tree = self.tree(sql)
        return reader_call_paths(tree) if tree is not None else []


def syntax_tree(sql: str) -> dict[str, Any] | None:
    """``SqlParser.tree`` on a parser of its own."""
    return SqlParser().tree(sql)


@functools.lru_cache(maxsize=512)
def _reader_paths(sql: str) -> tuple[str, ...]:
    return tuple(SqlParser().reader_paths(sql))


def reader_paths(sql: str) -> list[str]:
    """The files ``sql`` reads, as DuckDB reads them: the path argument(s) of each reader call
    (``read_csv``, ``read_parquet``, ``read_json``, ... : a string or a list of them, globs as written),
    and each file name a FROM clause scans (``from 'data/x.parquet'``); never a ``columns={...}`` map's
    keys or values. Raw paths as written, in order, each once: the caller resolves them where dbt runs.
    Empty when DuckDB cannot parse the SQL (it could not run it either)."""
    return list(_reader_paths(sql))


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


def _kind_word(kind: str) -> str:
    return "VIEW" if kind == "VIEW" else "TABLE"


def _drop_relation(con: duckdb.DuckDBPyConnection, key: tuple[str, str, str], kind: str | None) -> None:
    if kind is not None:
        con.execute(f"DROP {_kind_word(kind)} IF EXISTS {qualified(key)}")


class Database:
    """One DuckDB database file, opened the way setup's settings say.

    Holds at most one read-only connection open across validation checks
    (opening the file costs tens of milliseconds per check); every writer and
    every dbt invocation closes it first (``close_reader``).

    ``files_from``: the folder a relative input path in SQL resolves in (where dbt runs: dbt-duckdb
    reads ``read_csv('data/x.csv')`` from its working directory, and setup runs the same SQL itself
    from any folder), set as DuckDB's ``file_search_path`` on each connection (a session setting:
    dbt-duckdb's own connections to the same file are untouched).
    """

    def __init__(
        self,
        path: Path,
        settings: Mapping[str, str] | None = None,
        files_from: Path | None = None,
        locked_by: LockedBy | None = None,
        before_open: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.settings = dict(settings or {})
        self.files_from = files_from
        self._reader: duckdb.DuckDBPyConnection | None = None
        self._catalog: Catalog | None = None  # the kept reader's: nothing writes while it is open
        self.locked_by = locked_by
        self.before_open = before_open  # called before each connection opens (the run's readers' lock)

    # -- connections ------------------------------------------------------------------

    def close_reader(self) -> None:
        """Close the kept read-only connection: call before dbt or the engine writes."""
        con, self._reader, self._catalog = self._reader, None, None
        if con is not None:
            con.close()

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        self.close_reader()
        return self._searching(self._open(read_only, self.settings))

    def _open(self, read_only: bool, config: Mapping[str, Any]) -> duckdb.DuckDBPyConnection:
        """The file opened with ``config``; once more after setup's own worker let go of it."""
        if self.before_open is not None:
            self.before_open()
        try:
            return duckdb.connect(str(self.path), read_only=read_only, config=dict(config))
        except duckdb.Error as exc:
            if not self._freed(exc):
                raise
        return duckdb.connect(str(self.path), read_only=read_only, config=dict(config))

    def _searching(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        if self.files_from is not None:
            con.execute("SET file_search_path = " + "'" + str(self.files_from).replace("'", "''") + "'")
        return con

    def _freed(self, error: Exception) -> bool:
        """A lock held by setup's own worker: True when it let go (open again); a worker busy with
        another run's build is named as the holder (DatabaseLockedError)."""
        pid = lock_pid(error)
        answer = None if pid is None or self.locked_by is None else self.locked_by(pid)
        if answer is None:
            return False
        holder, fix = answer
        if fix is not None:
            raise DatabaseLockedError(str(self.path), holder, fix)
        return True

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the database file, closed on exit; errors become one-line causes."""
        try:
            con = self._connect(read_only)
        except duckdb.Error as exc:
            raise _open_error(self.path, exc) from None
        try:
            with interrupts_raised():
                yield con
        finally:
            con.close()

    @contextmanager
    def read_only(self, keep_open: bool = False) -> Iterator[Reader]:
        """A read-only Reader on the database, closed on exit unless ``keep_open``.

        With ``keep_open`` the connection stays for the next reader, until
        ``close_reader()`` or a writing connection. Inside a process that already
        has the file open (dbt-duckdb not yet released), DuckDB refuses a second
        configuration; the shared instance is used instead.
        """
        if not self.path.exists():
            raise DatabaseError(f"database {self.path} does not exist", "run `doit setup` to build it")
        con = self._reader
        if con is None:
            con = self._open_read_only()
            if keep_open:
                self._reader, self._catalog = con, Catalog(con)
        try:
            with interrupts_raised():
                yield Reader(con, self.path, self._catalog if con is self._reader else None)
        except KeyboardInterrupt:
            if con is self._reader:
                self.close_reader()  # its query was interrupted: the next reader starts afresh
            raise
        finally:
            if con is not self._reader:
                con.close()

    @contextmanager
    def dbt_session(self, connection: Connection, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection configured as dbt-duckdb configures its own from the profile: its connect options,
        then extensions loaded and databases attached, then each setting SET (its Environment does the
        same). Closed on exit, and with it the settings: setup's other connections never see them.
        A profile this cannot reproduce, or a step DuckDB refuses, is a DatabaseError."""
        if connection.unsupported:
            raise DatabaseError(f"the profile configures DuckDB with {', '.join(connection.unsupported)}")
        self.close_reader()
        try:
            con = self._searching(self._open(read_only, connection.config))
        except duckdb.Error as exc:
            raise _open_error(self.path, exc) from None
        try:
            try:
                for statement in connection.setup:
                    con.execute(statement)
                for key, value in connection.settings.items():
                    if not key.isidentifier():
                        raise DatabaseError(f"the profile's setting {key!r} is not a DuckDB setting name")
                    con.execute(f"SET {key} = '{str(value).replace(chr(39), chr(39) * 2)}'")
            except duckdb.Error as exc:
                raise DatabaseError(
                    f"cannot configure DuckDB as the profile does: {' '.join(str(exc).split())}"
                ) from None
            with interrupts_raised():
                yield con
        finally:
            con.close()

    def _open_read_only(self) -> duckdb.DuckDBPyConnection:
        try:
            return self._connect(True)
        except duckdb.Error as exc:
            if "different configuration" not in str(exc):
                raise _open_error(self.path, exc) from None
            try:
                return self._searching(duckdb.connect(str(self.path)))
            except duckdb.Error as again:
                raise _open_error(self.path, again) from None

    # -- what it holds --------------------------------------------------------------------

    def contents(
        self,
        signed: Iterable[tuple[str, str, str]] = (),
        known: Mapping[tuple[str, str, str], TableState] | None = None,
        session: duckdb.DuckDBPyConnection | None = None,
    ) -> DatabaseContents:
        """Tables present, with content signatures for the ``signed`` ones (tables only). ``known``: tables
        whose signature is known to hold (nothing wrote them since): theirs is not computed again.
        ``session``: read through that connection (a build's own, before it closes), not the kept reader."""
        if not self.path.exists():
            return DatabaseContents(self.path, False, {})
        if session is not None:
            return _contents_of(self.path, session, _tables(session), signed, known or {})
        # The kept reader: the checks that follow read through the same connection (an open costs 10 ms
        # at 30 tables, 100 at 1,000), and its catalog; a writer or dbt closes it first.
        with self.read_only(keep_open=True) as reader:
            return _contents_of(self.path, reader._con, reader.tables(), signed, known or {})

    def signatures(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], str | None]:
        """Content signatures of freshly built tables (None for views and missing ones)."""
        keys = list(keys)
        if not keys or not self.path.exists():
            return {}
        with self.connect() as con:
            kinds = _tables(con)
            signed = _signatures(con, [k for k in keys if kinds.get(k) == "BASE TABLE"])
            return {k: signed.get(k) for k in keys}

    def file_state(self) -> list[int] | None:
        return file_state(self.path)

    def check_writable(self) -> None:
        """Fail early, with the fix, when the database cannot be created or written."""
        parent = self.path.parent
        if parent.exists() and not parent.is_dir():
            raise DatabaseError(
                f"database directory {parent} is not a directory", "set database.path to a file in a writable directory"
            )
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"cannot create database directory {parent}: {exc.strerror}", "set database.path to a writable location"
            ) from None
        problem = self.write_problem()
        if problem is not None:
            raise problem

    def write_problem(self) -> DatabaseError | None:
        """Why a build could not write the database, without creating anything (None: it can, as far as
        permissions tell). DuckDB writes its WAL (``<file>.wal``) beside the file: the folder must be
        writable too, not only the file."""
        path, parent = self.path, self.path.parent
        while not parent.exists() and parent.parent != parent:
            parent = parent.parent  # created by the build: the first folder that exists must be writable
        for target, what in ((path, "file"), (parent, "folder")):
            if target.exists() and not os.access(target, os.W_OK):
                also = f" (DuckDB writes {path.name}.wal there)" if what == "folder" and path.exists() else ""
                return DatabaseError(
                    f"the database {what} {target} is not writable for you{also}",
                    f"make {target} writable for you, or set database.path (or DUCKDB_PATH) to a "
                    "file in a folder you can write",
                )
        return None

    # -- dropping ---------------------------------------------------------------------------

    def drop_relations(self, choose: Callable[[list[DbRelation]], list[DbRelation]]) -> DropResult:
        """Drop the relations ``choose`` picks from all the database holds, in its order.

        A drop a dependency refuses (a foreign key from a table not dropped yet) is
        retried after the others, for as long as a pass drops something.
        """
        if not self.path.exists():
            return DropResult([], {})
        with self.connect() as con:  # read-write: dbt-duckdb may hold the file open in this process
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

    def move_aside(self, keys: Mapping[str, tuple[str, str, str]], suffix: str) -> dict[str, tuple[str, str, str]]:
        """Rename each existing relation of ``keys`` (owner -> relation) to its name + ``suffix`` (replacing
        one left there); returns those moved."""
        moved: dict[str, tuple[str, str, str]] = {}
        if not keys or not self.path.exists():
            return moved
        with self.connect() as con:
            kinds = _tables(con)
            for owner, key in keys.items():
                kind = kinds.get(key)
                if kind is None:
                    continue
                aside = (key[0], key[1], key[2] + suffix)
                _drop_relation(con, aside, kinds.get(aside))
                con.execute(f"ALTER {_kind_word(kind)} {qualified(key)} RENAME TO {quote(aside[2])}")
                moved[owner] = key
        return moved

    def restore_aside(self, keys: Iterable[tuple[str, str, str]], suffix: str) -> None:
        """Relations a killed run left moved aside: put each back in place of a missing relation (the table
        it had), or drop it where the relation is there (a build finished meanwhile)."""
        if not self.path.exists():
            return
        with self.connect() as con:
            kinds = _tables(con)
            for key in keys:
                aside = (key[0], key[1], key[2] + suffix)
                if aside not in kinds:
                    continue
                if key in kinds:
                    _drop_relation(con, aside, kinds[aside])
                else:
                    con.execute(f"ALTER {_kind_word(kinds[aside])} {qualified(aside)} RENAME TO {quote(key[2])}")

    def settle_aside(self, entries: Mapping[str, tuple[tuple[str, str, str], bool]], suffix: str) -> None:
        """For each relation moved aside: drop the moved copy when its node was built (True), else put it
        back in place of whatever the failed build left."""
        if not entries or not self.path.exists():
            return
        with self.connect() as con:
            kinds = _tables(con)
            for key, built in entries.values():
                aside = (key[0], key[1], key[2] + suffix)
                if aside not in kinds:
                    continue
                if not built:
                    _drop_relation(con, key, kinds.get(key))
                    con.execute(f"ALTER {_kind_word(kinds[aside])} {qualified(aside)} RENAME TO {quote(key[2])}")
                else:
                    _drop_relation(con, aside, kinds[aside])

    def drop_empty_schemas(self, schemas: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Drop each (catalog, schema) that is empty; returns those dropped or already gone.

        Never CASCADE: DuckDB refuses a schema that still holds anything, so nobody's
        objects are ever dropped with it.
        """
        schemas = list(schemas)
        if not schemas or not self.path.exists():
            return schemas
        done = []
        with self.connect() as con:
            for catalog, schema in schemas:
                try:
                    con.execute(f"DROP SCHEMA IF EXISTS {qualified((catalog, schema, ''))}")
                except duckdb.Error:
                    continue
                done.append((catalog, schema))
        return done


# -- what a relation holds, for comparing two databases (doit verify) -----------------------------

# Doubles are compared at 12 significant digits: DuckDB's parallel aggregates may differ in the last bits.
FLOAT_TYPES = ("DOUBLE", "FLOAT", "REAL")


@dataclass(frozen=True)
class RelationProfile:
    """A relation as two databases can be compared: kind, columns with types, rows as a multiset, comments."""

    kind: str  # "table" | "view"
    columns: tuple[tuple[str, str], ...]
    rows: int | None = None
    digest: str | None = None  # an order-independent hash of the rows (None: they could not be read)
    comment: str | None = None
    column_comments: tuple[tuple[str, str], ...] = ()
    error: str | None = None  # why the rows could not be read (a view over a missing table)


def _row_digest_sql(key: tuple[str, str, str], columns: list[tuple[str, str]]) -> str:
    values = [
        f"printf('%.12g', {quote(name)})" if kind.upper() in FLOAT_TYPES else quote(name) for name, kind in columns
    ]
    row = f"hash({', '.join(values)})" if values else "0"
    # sum over hugeint: duplicates count (an xor would cancel a repeated row); the xor guards the sum's collisions
    return (
        f"SELECT count(*), sum({row}::HUGEINT)::VARCHAR || ':' || coalesce(bit_xor({row}), 0)::VARCHAR "
        f"FROM {qualified(key)}"
    )


def relation_profiles(path: Path, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], RelationProfile]:
    """The profile of each relation of ``keys`` that exists in the database file ``path`` (read-only, its
    own connection: a view names its tables by this file's catalog name)."""
    wanted: set[tuple[str, str, str]] = {tuple(part.lower() for part in key) for key in keys}  # type: ignore[misc]  # still three parts
    if not path.exists() or not wanted:
        return {}
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise _open_error(path, exc) from None
    found: dict[tuple[str, str, str], RelationProfile] = {}
    try:
        with interrupts_raised():
            tables = {
                (d.lower(), s.lower(), n.lower()): (d, s, n, t, c)
                for d, s, n, t, c in con.execute(
                    "SELECT database_name, schema_name, table_name, 'table', comment FROM duckdb_tables() "
                    "WHERE NOT internal UNION ALL "
                    "SELECT database_name, schema_name, view_name, 'view', comment FROM duckdb_views() "
                    "WHERE NOT internal"
                ).fetchall()
            }
            columns: dict[tuple[str, str, str], list[tuple[str, str, str | None]]] = {}
            for d, s, n, col, kind, comment in con.execute(
                "SELECT database_name, schema_name, table_name, column_name, data_type, comment "
                "FROM duckdb_columns() ORDER BY database_name, schema_name, table_name, column_index"
            ).fetchall():
                columns.setdefault((d.lower(), s.lower(), n.lower()), []).append((col, kind, comment))
            for key in sorted(wanted & set(tables)):
                d, s, n, kind, comment = tables[key]
                cols = columns.get(key, [])
                shape = tuple((c, k) for c, k, _ in cols)
                notes = tuple((c, note) for c, _, note in cols if note)
                try:
                    rows, digest = con.execute(_row_digest_sql((d, s, n), [(c, k) for c, k, _ in cols])).fetchone()  # type: ignore[misc]  # an aggregate: one row
                except duckdb.Error as exc:
                    if interrupted(exc):
                        raise
                    found[key] = RelationProfile(
                        kind, shape, comment=comment or None, column_comments=notes, error=" ".join(str(exc).split())
                    )
                    continue
                found[key] = RelationProfile(kind, shape, int(rows), str(digest), comment or None, notes)
    finally:
        con.close()
    return found


def relation_names(path: Path) -> set[tuple[str, str, str]]:
    """Every table and view of the database file ``path`` (catalog, schema, name in lower case)."""
    if not path.exists():
        return set()
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise _open_error(path, exc) from None
    try:
        return set(_tables(con))
    finally:
        con.close()


# -- what a value or a profile does to DuckDB -------------------------------------------------------


def first_uncastable(values: Iterable[str], sql_type: str) -> int | None:
    """Index of the first value DuckDB cannot cast to ``sql_type`` (a seed's ``column_types`` entry), or
    None (also when the type itself is not DuckDB's: nothing can be said of its values)."""
    texts = list(values)
    if not texts or ";" in sql_type:
        return None
    with memory_connection() as con:
        try:
            row = con.execute(
                f"SELECT i FROM (SELECT unnest(range(len($1))) AS i, unnest($1) AS v) "
                f"WHERE TRY_CAST(v AS {sql_type}) IS NULL ORDER BY i LIMIT 1",
                [texts],
            ).fetchone()
        except duckdb.Error:
            return None
    return None if row is None else int(row[0])


@dataclass(frozen=True)
class ProfileProblem:
    """A part of dbt's profile DuckDB refuses: where it is (``settings.memory_limit``) and DuckDB's words."""

    key: str
    error: str


def profile_digest(config: Mapping[str, Any], extensions: Iterable[Any], settings: Mapping[str, Any]) -> str:
    """What ``profile_problem`` tries, and the DuckDB that tries it: one accepted profile is accepted again."""
    tried = [duckdb.__version__, dict(config), list(extensions), dict(settings)]
    return hashlib.sha256(json.dumps(tried, sort_keys=True, default=str).encode()).hexdigest()


def profile_problem(
    config: Mapping[str, Any], extensions: Iterable[Any], settings: Mapping[str, Any]
) -> ProfileProblem | None:
    """The first part of a dbt-duckdb profile DuckDB refuses, tried as dbt-duckdb applies them (its
    connection config, each extension installed and loaded, each setting SET), on a database in memory."""
    try:
        con = duckdb.connect(":memory:", config={str(k): v for k, v in config.items()})
    except duckdb.Error as exc:
        return ProfileProblem("config_options", _one_line(exc))
    try:
        with interrupts_raised():
            for extension in extensions:
                name = extension.get("name") if isinstance(extension, Mapping) else extension
                try:
                    con.install_extension(str(name))
                    con.load_extension(str(name))
                except duckdb.Error as exc:
                    return ProfileProblem(f"extensions ({name})", _one_line(exc))
            for key, value in settings.items():
                try:
                    con.execute(f"SET {quote(str(key))} = '{str(value).replace(chr(39), chr(39) * 2)}'")
                except duckdb.Error as exc:
                    return ProfileProblem(f"settings.{key}", _one_line(exc))
    finally:
        con.close()
    return None


def _one_line(error: Exception) -> str:
    """DuckDB's message on one line, without its pointers to the documentation."""
    return " ".join(MORE_INFO_RE.sub("", str(error)).split())
