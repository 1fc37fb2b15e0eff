"""Seeds, tables and views built straight in DuckDB, as dbt-duckdb builds them, when that is provably the same.

A session's first run pays dbt's start-up in full (2-4 s to import it, about 1.5 s for its
first invocation) although DuckDB does this project's work in well under a second. For the
plainest nodes this module does what dbt-duckdb's materializations do, with the same SQL:

- a **seed**: the column types dbt infers (``seed_columns``: agate's type tests as dbt
  configures them, dbt-duckdb's type names, ``column_types`` overrides), then, in one
  transaction, drop the old table, ``create table`` with those columns and dbt-duckdb's
  ``COPY ... FROM '<file>' (FORMAT CSV, HEADER TRUE, DELIMITER ...)``;
- a **table** or **view** model: the SQL dbt compiled for it in an earlier run
  (``kept_sql``), created under dbt's intermediate name, the old relation renamed to dbt's
  backup name, the new one renamed into place and the backup dropped, in one transaction
  (a node that fails keeps what it had).

Anything else is built by dbt (``why_not_direct``): other materializations, Python models,
hooks, grants, contracts, indexes, docs persisted to the database, SQL headers, DuckDB
partitioning options, a Jinja that may query the database while compiling, a model whose
SQL was not kept yet. A batch is built here only when every node of it can be; otherwise the
whole batch goes to dbt, which keeps the SQL of its models for the next run.
"""

from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Sequence

from ..dbt.invoke import NodeOutcome
from ..project.manifest import Manifest, Node, Relation
from ..store.database import interrupted, memory_connection, qualified, quote

DIRECT_ENV = "PLANWISE_SETUP_DIRECT"  # "0": dbt builds every node and runs every test
# Config keys whose presence (truthy) means dbt does more than this module does.
DBT_ONLY_CONFIG = (
    "pre-hook",
    "post-hook",
    "pre_hook",
    "post_hook",
    "grants",
    "indexes",
    "sql_header",
    "partitioned_by",
    "sorted_by",
    "persist_docs",
    "plugin",
    "location",
    "options",
)
NULL_VALUES = ("null", "")  # dbt's null values for every inferred type
INTERMEDIATE, BACKUP = "__dbt_tmp", "__dbt_backup"  # dbt's names for a relation being replaced


def _truthy(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_truthy(v) for v in value.values())
    return bool(value)


def why_not_direct(node: Node, manifest: Manifest) -> str | None:
    """Why dbt must build this node itself; None when this module builds exactly what dbt would."""
    if node.relation is None or node.resource_type not in ("seed", "model"):
        return "not a seed or model"
    config = node.config
    if any(_truthy(config.get(key)) for key in DBT_ONLY_CONFIG):
        return "it has hooks, grants, indexes, docs persisted or DuckDB table options"
    if _truthy((config.get("contract") or {}).get("enforced")):
        return "its contract is enforced"
    if node.resource_type == "seed" and node.package != manifest.project_name:
        return "a seed of an installed package (its file is in the package)"
    if node.resource_type == "seed":
        problem = seed_problem(node)
        if problem:
            return problem
    if node.resource_type == "model":
        if node.materialized not in ("table", "view"):
            return f"it is materialized as {node.materialized}"
        if node.path and not node.path.endswith(".sql"):
            return "it is a Python model"
    return how_dbt_builds_problem(manifest)


def seed_problem(node: Node) -> str | None:
    """Why dbt-duckdb's seed load is not the one this module does (``COPY`` of the file, columns as
    agate infers them) for this seed; None when it is."""
    config = node.config
    if not config.get("fast", True):
        return "its config says fast: false (dbt inserts the rows agate parsed)"
    delimiter = "," if config.get("delimiter") is None else str(config.get("delimiter"))
    if len(delimiter) != 1 or delimiter in "'\\\n\r\"":
        return f"its delimiter {delimiter!r} is not one plain character"
    if "'" in str(node.path or ""):
        return "its file name holds a quote"
    return None


class NotDirect(Exception):
    """What this module meets that dbt does otherwise: dbt builds the node (and says what it makes of it)."""


def how_dbt_builds_problem(manifest: Manifest) -> str | None:
    """Why building or testing anything without dbt would differ from dbt's way here: the project or a
    package overrides a macro dbt builds or tests with, or the profile configures the connection in a
    way setup cannot; None when neither."""
    if manifest.overrides:
        names = ", ".join(uid.split(".", 2)[2] for uid in manifest.overrides[:3])
        return f"the project overrides dbt's macros ({names}{', ...' if len(manifest.overrides) > 3 else ''})"
    profile = manifest.profile
    if profile is None:
        return "the profile dbt renders is unknown"
    if profile.connection.unsupported:
        return f"the profile configures DuckDB with {', '.join(profile.connection.unsupported)}"
    return None


# -- seeds: dbt's column types -------------------------------------------------------------------


def _type_tester(text_columns: Sequence[str]) -> Any:
    """agate's type tests as dbt configures them for a seed (dbt_common's ``build_type_tester``)."""
    import agate
    import isodate

    class Integer(agate.data_types.DataType):
        def cast(self, d: Any) -> Any:  # only Python ints: a CSV's text never is one
            if type(d) is int or d is None:
                return d
            raise agate.exceptions.CastError(f'Can not parse value "{d}" as Integer.')

    class Number(agate.data_types.Number):
        def cast(self, d: Any) -> Any:  # never True/False as 1/0
            if type(d) is bool:
                raise agate.exceptions.CastError("Do not cast True to 1 or False to 0.")
            return super().cast(d)

    class ISODateTime(agate.data_types.DateTime):
        def cast(self, d: Any) -> Any:  # ISO 8601 only
            import datetime

            if isinstance(d, datetime.datetime) or d is None:
                return d
            if isinstance(d, datetime.date):
                return datetime.datetime.combine(d, datetime.time(0, 0, 0))
            if isinstance(d, str):
                d = d.strip()
                if d.lower() in self.null_values:
                    return None
            try:
                return isodate.parse_datetime(d)
            except Exception:  # noqa: BLE001 - any parse failure means "not this type"
                raise agate.exceptions.CastError(f'Can not parse value "{d}" as datetime.') from None

    types = [
        Integer(null_values=NULL_VALUES),
        Number(null_values=NULL_VALUES),
        agate.data_types.Date(null_values=NULL_VALUES, date_format="%Y-%m-%d"),
        agate.data_types.DateTime(null_values=NULL_VALUES, datetime_format="%Y-%m-%d %H:%M:%S"),
        ISODateTime(null_values=NULL_VALUES),
        agate.data_types.Boolean(true_values=("true",), false_values=("false",), null_values=NULL_VALUES),
        agate.data_types.Text(null_values=NULL_VALUES),
    ]
    force = {name: agate.data_types.Text(null_values=NULL_VALUES) for name in text_columns}
    return agate.TypeTester(force=force, types=types), Integer


# A value agate's tests (as dbt configures them) decide without doubt, by its shape alone.
_NULL, _WHOLE, _FRACTION, _BOOLEAN, _TEXT = "null", "whole", "fraction", "boolean", "text"
_NUMBERS = frozenset({_WHOLE, _FRACTION})
_PLAIN_NUMBER = re.compile(r"-?(\d+)(?:\.(\d+))?")
_PLAIN_TEXT = re.compile(r"[A-Za-z][^,%]*")  # no ',' (Boolean and Number drop it), no '%' (Number strips it)
_BAND = re.compile(r"[<>]=?\d+(?:\.\d+)?|\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?|\+)")  # '<25', '25-34', '65+'
_DECIMAL_WORDS = ("inf", "nan", "snan")  # Decimal('Infinity'), Decimal('NaN1'): numbers to agate
_MAX_DIGITS = 15  # within the 28 digits of Decimal's context: max_precision never rounds


def _plain_kind(value: str) -> str | None:
    """The kind of a CSV value whose outcome in every one of dbt's agate type tests is certain: a null, a
    plain decimal number, true/false, text starting with a letter or a band ('25-34') that no number, date
    or boolean test accepts; None for anything else (dates, '1,000', '$5', '1e5', ' 5': agate decides those)."""
    lower = value.lower()
    if lower in NULL_VALUES:
        return _NULL
    number = _PLAIN_NUMBER.fullmatch(value)
    if number is not None:
        if len(number[1]) + len(number[2] or "") > _MAX_DIGITS:
            return None
        return _FRACTION if (number[2] or "").rstrip("0") else _WHOLE  # 2.0 normalizes to a whole number
    if lower in ("true", "false"):
        return _BOOLEAN
    if _PLAIN_TEXT.fullmatch(value) and not lower.startswith(_DECIMAL_WORDS) and value == value.strip():
        return _TEXT
    if _BAND.fullmatch(value):  # no number to Decimal, no %Y-%m-%d date, no 'T' for an ISO datetime
        return _TEXT
    return None


def plain_seed_columns(text: str, column_types: Mapping[str, str], delimiter: str) -> list[tuple[str, str]] | None:
    """What ``seed_columns`` answers for a CSV whose every value is plain (``_plain_kind``), read as agate reads
    it, without agate (importing it and babel's locale costs more than a small seed's whole build); None when
    a value, a header or a row is not plain."""
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not rows:
        return None
    header, body = rows[0], rows[1:]
    if len(set(header)) != len(header) or not all(header) or any(len(row) != len(header) for row in body):
        return None  # agate renames empty and repeated names, pads short rows: its own answer
    columns = []
    for index, name in enumerate(header):
        kinds = set()
        for row in body:
            kind = _plain_kind(row[index])
            if kind is None:
                return None
            kinds.add(kind)
        kinds.discard(_NULL)
        if kinds <= _NUMBERS:  # agate's Number (all nulls too); its max_precision of normalized values
            inferred = "float8" if _FRACTION in kinds else "integer"
        elif kinds == {_BOOLEAN}:
            inferred = "boolean"
        else:  # text, or kinds no single test accepts together
            inferred = "text"
        columns.append((name, column_types.get(name, inferred)))
    return columns


def seed_columns(path: Path, column_types: Mapping[str, str], delimiter: str = ",") -> list[tuple[str, str]]:
    """(name, type) of each column of the seed's table, as dbt-duckdb creates it."""
    with path.open(encoding="utf-8") as handle:
        if handle.read(1) != "\ufeff":
            handle.seek(0)
        text = handle.read()
    plain = plain_seed_columns(text, column_types, delimiter)
    return plain if plain is not None else _agate_seed_columns(text, column_types, delimiter)


def _agate_seed_columns(text: str, column_types: Mapping[str, str], delimiter: str) -> list[tuple[str, str]]:
    """``seed_columns`` by agate's type tests, as dbt configures them."""
    import agate

    tester, integer = _type_tester(list(column_types))
    table = agate.Table.from_csv(io.StringIO(text), column_types=tester, delimiter=delimiter)
    columns = []
    for index, (name, kind) in enumerate(zip(table.column_names, table.column_types)):
        if isinstance(kind, integer):
            inferred = "integer"
        elif isinstance(kind, agate.data_types.Text):
            inferred = "text"
        elif isinstance(kind, agate.data_types.Number):
            inferred = "float8" if table.aggregate(agate.MaxPrecision(index)) else "integer"
        elif isinstance(kind, agate.data_types.Boolean):
            inferred = "boolean"
        elif isinstance(kind, agate.data_types.DateTime):
            inferred = "timestamp without time zone"
        elif isinstance(kind, agate.data_types.Date):
            inferred = "date"
        else:
            inferred = "time"
        columns.append((str(name), column_types.get(str(name), inferred)))
    return columns


# -- building ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectNode:
    """A node this module builds: its kept SQL (a model) or its CSV (a seed)."""

    node: Node
    sql: str | None = None
    csv: Path | None = None


Name = tuple[str, str, str]  # (database, schema, identifier) in the case dbt writes them


def _name(node: Node) -> Name:
    rel = node.relation
    return (rel.database or "", rel.schema or "", rel.identifier)  # type: ignore[union-attr]  # only nodes that build a relation come here


def _renamed(name: Name, suffix: str) -> Name:
    return (name[0], name[1], name[2] + suffix)


class _Relations:
    """The relations of the batch's connection and their kind, read once and kept as the batch creates,
    renames and drops them (undone with a node's rolled-back transaction): a catalog query costs 5-15 ms
    at 1,000 tables, and each node asked it four times (issue 21)."""

    def __init__(self, con: Any) -> None:
        rows = con.execute(
            "select table_catalog, table_schema, table_name, table_type from information_schema.tables"
        ).fetchall()
        self.kinds: dict[tuple[str, ...], str] = {
            (c.lower(), s.lower(), n.lower()): ("VIEW" if t == "VIEW" else "TABLE") for c, s, n, t in rows
        }
        self.undo: dict[tuple[str, ...], str | None] = {}  # the node's changes: key -> its kind before

    def kind(self, name: Name) -> str | None:
        return self.kinds.get(tuple(part.lower() for part in name))

    def set(self, name: Name, kind: str | None) -> None:
        key = tuple(part.lower() for part in name)
        self.undo.setdefault(key, self.kinds.get(key))
        if kind is None:
            self.kinds.pop(key, None)
        else:
            self.kinds[key] = kind

    def begin(self) -> None:
        self.undo = {}

    def rollback(self) -> None:
        for key, kind in self.undo.items():
            if kind is None:
                self.kinds.pop(key, None)
            else:
                self.kinds[key] = kind
        self.undo = {}


def _drop(con: Any, relations: _Relations, key: Name) -> None:
    kind = relations.kind(key)
    if kind is not None:
        con.execute(f"drop {kind} {qualified(key)}")
        relations.set(key, None)


def _build_seed(con: Any, relations: _Relations, item: DirectNode) -> int:
    node, key = item.node, _name(item.node)
    column_types = {str(k): str(v) for k, v in (node.config.get("column_types") or {}).items()}
    delimiter = "," if node.config.get("delimiter") is None else str(node.config.get("delimiter"))
    quote_columns = node.config.get("quote_columns")
    columns = seed_columns(item.csv, column_types, delimiter)  # type: ignore[arg-type]  # a seed to load directly has its CSV
    if any('"' in name or not name for name, _ in columns):
        raise NotDirect("a column name dbt-duckdb pastes into SQL as it is")
    names = [quote(n) if quote_columns is not False else n for n, _ in columns]
    if relations.kind(key) == "VIEW":
        raise RuntimeError(f"Cannot seed to '{qualified(key)}', it is a view")
    _drop(con, relations, key)
    con.execute(f"create table {qualified(key)} ({', '.join(f'{n} {t}' for n, (_, t) in zip(names, columns))})")
    relations.set(key, "TABLE")
    path = str(item.csv).replace("'", "''")
    delim = delimiter.replace("'", "''")
    con.execute(f"COPY {qualified(key)} FROM '{path}' (FORMAT CSV, HEADER TRUE, DELIMITER '{delim}')")
    return int(con.execute(f"select count(*) from {qualified(key)}").fetchone()[0])


def _build_model(con: Any, relations: _Relations, item: DirectNode) -> None:
    """dbt-duckdb's table and view materializations; like dbt, no row count for a model."""
    node, key = item.node, _name(item.node)
    kind = "view" if node.materialized == "view" else "table"
    tmp, backup = _renamed(key, INTERMEDIATE), _renamed(key, BACKUP)
    _drop(con, relations, tmp)
    _drop(con, relations, backup)
    con.execute(f"create {kind} {qualified(tmp)} as (\n{item.sql}\n)")
    relations.set(tmp, kind.upper())
    existing = relations.kind(key)
    if existing is not None:
        con.execute(f"alter {existing} {qualified(key)} rename to {quote(backup[2])}")
        relations.set(backup, existing)
    con.execute(f"alter {kind} {qualified(tmp)} rename to {quote(key[2])}")
    relations.set(tmp, None)
    relations.set(key, kind.upper())
    _drop(con, relations, backup)


def dry_run_seed(node: Node, csv: Path) -> str | None:
    """DuckDB's error loading the seed as dbt-duckdb loads it (``_build_seed``), into a database in memory;
    None when it loads."""
    item = DirectNode(replace(node, relation=Relation(None, "main", "seed")), csv=csv)
    try:
        with memory_connection() as con:
            _build_seed(con, _Relations(con), item)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever stops the load is the answer
        return " ".join(str(exc).split())
    return None


@dataclass(frozen=True)
class DirectTest:
    """A test of the batch run here, right after the nodes it reads (as `dbt build` runs it)."""

    node: Node
    sql: str
    parents: tuple[str, ...]  # the tables it reads (through ephemeral models)


# Runs a test on the batch's connection: its outcome as dbt reports it (``direct_tests.run_direct``).
RunTest = Callable[[Any, DirectTest], NodeOutcome]
# Why a node must not be built after these tests failed (dbt build's rule), or None.
Gate = Callable[[str, set[str]], "str | None"]


def build(
    connect: Callable[[], ContextManager[Any]],
    items: Sequence[DirectNode],
    parents: Mapping[str, Sequence[str]],
    on_outcome: Callable[[NodeOutcome], None],
    on_start: Callable[[str], None] | None = None,
    tests: Sequence[DirectTest] = (),
    run_test: RunTest | None = None,
    gate: Gate | None = None,
    before_close: Callable[[Any], None] | None = None,
) -> list[str]:
    """Build ``items`` (in dependency order) in one connection (``connect``: configured as dbt-duckdb's),
    one transaction each, each of ``tests`` right after the nodes it reads; a node whose parent failed in
    this batch is skipped, as dbt skips it, and so is one ``gate`` stops (a test it waits for failed).
    A failure is reported as it is: the caller has dbt build what failed here before believing it. A test
    whose query fails here hands the rest over: returns the nodes and tests not done (dbt's to run).
    ``before_close``: given the connection once all is done here (nothing handed over), before it closes."""
    failed: set[str] = set()
    failing: set[str] = set()  # tests that failed with severity error
    done: set[str] = set()
    in_batch = {item.node.unique_id for item in items}
    pending = list(tests)
    with connect() as con:
        relations = _Relations(con)

        def run_ready() -> list[str] | None:
            """Run each pending test whose tables are all there; what to hand over when one's query fails."""
            for test in [t for t in pending if all(p in done or p in failed or p not in in_batch for p in t.parents)]:
                pending.remove(test)
                tid = test.node.unique_id
                if any(p in failed for p in test.parents):
                    on_outcome(NodeOutcome(tid, "skipped", "Skipping due to an upstream failure", 0.0))
                    continue
                outcome = run_test(con, test) if run_test is not None else NodeOutcome(tid, "error", "no runner", 0.0)
                if outcome.status == "error":  # the shortcut's failure until dbt says otherwise
                    return [tid]
                on_outcome(outcome)
                if outcome.status == "fail":
                    failing.add(tid)
            return None

        for index, item in enumerate(items):
            handed = run_ready()
            if handed is not None:
                return [i.node.unique_id for i in items[index:]] + handed + [t.node.unique_id for t in pending]
            uid = item.node.unique_id
            why = gate(uid, failing) if gate is not None else None
            if why is not None or any(p in failed for p in parents.get(uid, ())):
                failed.add(uid)
                on_outcome(NodeOutcome(uid, "skipped", why or "Skipping due to an upstream failure", 0.0))
                continue
            if on_start is not None:
                on_start(uid)
            (done if _build_one(con, relations, item, on_outcome) else failed).add(uid)
        handed = run_ready()
        if handed is not None:
            return handed + [t.node.unique_id for t in pending]
        for test in pending:
            on_outcome(NodeOutcome(test.node.unique_id, "skipped", "Skipping due to an upstream failure", 0.0))
        if before_close is not None:
            before_close(con)
    return []


def _build_one(con: Any, relations: _Relations, item: DirectNode, on_outcome: Callable[[NodeOutcome], None]) -> bool:
    """One node in one transaction; its outcome to ``on_outcome``; False when it failed (keeping what it had)."""
    uid = item.node.unique_id
    started = time.perf_counter()
    schema = _name(item.node)[:2]
    try:
        relations.begin()
        con.execute("begin transaction")
        con.execute(f"create schema if not exists {quote(schema[0])}.{quote(schema[1])}")
        rows: int | None = None  # a model: no row count, as in dbt's
        if item.node.resource_type == "seed":
            rows = _build_seed(con, relations, item)
        else:
            _build_model(con, relations, item)
        con.execute("commit")
    except Exception as exc:  # noqa: BLE001 - dbt reports any failure of a node the same way
        if interrupted(exc):
            raise KeyboardInterrupt from None  # the transaction goes with the connection
        try:
            con.execute("rollback")  # the node keeps what it had
        except Exception:  # noqa: BLE001 - no transaction left to roll back
            pass
        relations.rollback()
        on_outcome(NodeOutcome(uid, "error", " ".join(str(exc).split()), time.perf_counter() - started))
        return False
    on_outcome(NodeOutcome(uid, "success", "", time.perf_counter() - started, rows))
    return True
