"""The only module that opens DuckDB: what a database holds, lock detection, drops, queries.

DuckDB is imported lazily (on first use, 80 ms): a run whose database file is
unchanged since the last run's end answers from the saved contents and never
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

from ..errors import DatabaseError, DatabaseLockedError


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


def lock_holder(error: Exception) -> str | None:
    """'<program> (PID n)' when a DuckDB error is a lock conflict, else None."""
    match = LOCK_RE.search(str(error))
    if not match:
        return None
    return f"{Path(match['program']).name} (PID {match['pid']})"


def interrupted(error: BaseException) -> bool:
    """Is this how DuckDB ends a query on a signal? It turns a pending SIGINT into RuntimeError('Query interrupted')."""
    return isinstance(error, duckdb.InterruptException) or (
        isinstance(error, RuntimeError) and str(error).strip().lower() == "query interrupted")


def _open_error(path: Path, error: Exception) -> DatabaseError:
    holder = lock_holder(error)
    if holder:
        return DatabaseLockedError(str(path), holder)
    return DatabaseError(f"cannot open database {path}: {error}", "check the path in database.path / DUCKDB_PATH")


def quote(identifier: str) -> str:
    """A DuckDB quoted identifier: names from config never reach SQL unquoted."""
    return '"' + identifier.replace('"', '""') + '"'


def qualified(key: tuple[str, str, str]) -> str:
    return ".".join(quote(part) for part in key if part)


def _signature(con: duckdb.DuckDBPyConnection, key: tuple[str, str, str]) -> str | None:
    try:
        count, digest = con.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {qualified(key)} AS t").fetchone()
    except duckdb.Error as exc:
        if interrupted(exc):
            raise
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
    except duckdb.Error as exc:  # one odd table must not cost the others their signature
        if interrupted(exc):
            raise
        return {key: _signature(con, key) for key in keys}
    return {keys[i]: f"{n}:{h}" for i, n, h in rows}


def _tables(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], str]:
    rows = con.execute(
        "SELECT table_catalog, table_schema, table_name, table_type FROM information_schema.tables"
    ).fetchall()
    return {(c.lower(), s.lower(), n.lower()): kind for c, s, n, kind in rows}


def _schemas(con: duckdb.DuckDBPyConnection) -> frozenset[tuple[str, str]]:
    rows = con.execute("SELECT catalog_name, schema_name FROM information_schema.schemata").fetchall()
    return frozenset((c.lower(), s.lower()) for c, s in rows)


def file_state(path: Path) -> list[int] | None:
    """Size and modification time of the database file and its WAL: any write changes them."""
    try:
        st = path.stat()
    except OSError:
        return None
    wal = Path(f"{path}.wal")
    wal_st = wal.stat() if wal.exists() else None
    return [st.st_size, st.st_mtime_ns, wal_st.st_size if wal_st else -1, wal_st.st_mtime_ns if wal_st else -1]


def contents_to_dict(snap: DatabaseContents) -> dict[str, Any]:
    return {"exists": snap.exists, "tables": [[list(k), v.kind, v.signature] for k, v in snap.tables.items()],
            "schemas": sorted(list(s) for s in snap.schemas)}


def contents_from_dict(path: Path, data: Mapping[str, Any]) -> DatabaseContents:
    tables = {tuple(k): TableState(kind, signature) for k, kind, signature in data["tables"]}
    return DatabaseContents(path, bool(data["exists"]), tables, frozenset(tuple(s) for s in data["schemas"]))


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
        except (duckdb.Error, RuntimeError) as exc:
            if interrupted(exc):
                raise KeyboardInterrupt from None  # Ctrl-C (or SIGTERM) mid-query: an interrupt, not a failed check
            if not isinstance(exc, duckdb.Error):
                raise
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


class Database:
    """One DuckDB database file, opened the way setup's settings say.

    Holds at most one read-only connection open across validation checks
    (opening the file costs tens of milliseconds per check); every writer and
    every dbt invocation closes it first (``close_reader``).
    """

    def __init__(self, path: Path, settings: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.settings = dict(settings or {})
        self._reader: duckdb.DuckDBPyConnection | None = None

    # -- connections ------------------------------------------------------------------

    def close_reader(self) -> None:
        """Close the kept read-only connection: call before dbt or the engine writes."""
        con, self._reader = self._reader, None
        if con is not None:
            con.close()

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        self.close_reader()
        return duckdb.connect(str(self.path), read_only=read_only, config=dict(self.settings))

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
                self._reader = con
        try:
            with interrupts_raised():
                yield Reader(con, self.path)
        finally:
            if con is not self._reader:
                con.close()

    def _open_read_only(self) -> duckdb.DuckDBPyConnection:
        try:
            return self._connect(True)
        except duckdb.Error as exc:
            if "different configuration" not in str(exc):
                raise _open_error(self.path, exc) from None
            try:
                return duckdb.connect(str(self.path))
            except duckdb.Error as again:
                raise _open_error(self.path, again) from None

    # -- what it holds --------------------------------------------------------------------

    def contents(self, signed: Iterable[tuple[str, str, str]] = ()) -> DatabaseContents:
        """Tables present, with content signatures for the ``signed`` ones (tables only)."""
        if not self.path.exists():
            return DatabaseContents(self.path, False, {})
        with self.connect(read_only=True) as con:
            kinds = _tables(con)
            wanted = set(signed)
            signed_now = _signatures(con, sorted(k for k, kind in kinds.items() if k in wanted and kind == "BASE TABLE"))
            tables = {key: TableState(kind, signed_now.get(key)) for key, kind in kinds.items()}
            schemas = _schemas(con)
        return DatabaseContents(self.path, True, tables, schemas)

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
            raise DatabaseError(f"database directory {parent} is not a directory", "set database.path to a file in a writable directory")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create database directory {parent}: {exc.strerror}", "set database.path to a writable location") from None
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
                return DatabaseError(f"the database {what} {target} is not writable for you{also}",
                                     f"make {target} writable for you, or set database.path (or DUCKDB_PATH) to a "
                                     "file in a folder you can write")
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


# -- what a value or a profile does to DuckDB -------------------------------------------------------


def first_uncastable(values: Iterable[str], sql_type: str) -> int | None:
    """Index of the first value DuckDB cannot cast to ``sql_type`` (a seed's ``column_types`` entry), or
    None (also when the type itself is not DuckDB's: nothing can be said of its values)."""
    texts = list(values)
    if not texts or ";" in sql_type:
        return None
    with memory_connection() as con:
        try:
            row = con.execute(f"SELECT i FROM (SELECT unnest(range(len($1))) AS i, unnest($1) AS v) "
                              f"WHERE TRY_CAST(v AS {sql_type}) IS NULL ORDER BY i LIMIT 1", [texts]).fetchone()
        except duckdb.Error:
            return None
    return None if row is None else int(row[0])


@dataclass(frozen=True)
class ProfileProblem:
    """A part of dbt's profile DuckDB refuses: where it is (``settings.memory_limit``) and DuckDB's words."""

    key: str
    error: str


def profile_problem(config: Mapping[str, Any], extensions: Iterable[Any], settings: Mapping[str, Any]
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

