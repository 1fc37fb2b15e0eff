"""Validation framework: what a check function gets (CheckContext), the Check itself, and the registry.

A check selects what is wrong (sqlmesh audit style: zero offending rows passes)
and returns a ``CheckResult`` (``validation.results``). The framework knows no
check: the built-in ones live in ``validation.builtin`` and ``validation.catalog``
discovers them.

Adding a check without touching this package
--------------------------------------------
In ``setup.yaml``, a query selecting the offending rows::

    validation:
      custom_checks:
        - name: no_negative_salaries
          severity: error
          sql: select * from stg_census_data where employee_gross_compensation <= 0

In Python, a function registered with ``register_check`` in a module that
``validation.check_modules`` names (imported when the tasks are defined)::

    from setup_tasks.validation import CheckContext, CheckResult, register_check

    @register_check(name="no_contractors", severity="warning", reads=["census"])
    def no_contractors(ctx: CheckContext) -> CheckResult:
        \"\"\"Contractors do not belong in the baseline census.\"\"\"
        census = ctx.table("census")                  # validation.tables.census
        kind = ctx.column(census, "employee_type")    # validation.columns.census.employee_type, else as is
        return ctx.audit(f"select * from {census} where {kind} = ?", ["contractor"],
                         what="contractors in the census", guidance="remove them from the census file")

``reads`` names logical tables (keys of ``validation.tables``), table names or dbt
unique ids: they decide the task's dependencies and when it is stale.
``thresholds`` names the ``validation`` settings the check uses (dotted, e.g.
``min_baseline_workforce_count`` or ``columns.census``). A table or column that
is not there makes ``ctx.table``/``ctx.column`` skip the check with the reason.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

from ..config import ValidationSettings
from ..errors import PlanwiseError
from ..project.inputs import resolved
from ..store.database import Database, QueryResult, Reader, qualified, quote, scratch_reader
from ..project.manifest import Node
from .engine_port import CheckEngine
from .project_view import ProjectView, input_state
from .results import FAILED, PASSED, SEVERITIES, SKIPPED, CheckResult, SkipCheck, jsonable, plural

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")
SAMPLE_ROWS = 5


@dataclass(frozen=True)
class Table:
    """A table a check reads: its configured name, where it is, its columns."""

    logical: str
    name: str
    key: tuple[str, str, str]
    columns: tuple[str, ...]
    config_key: str | None = None
    node: Node | None = None

    @property
    def sql(self) -> str:
        return qualified(self.key)

    def __str__(self) -> str:
        return self.sql


class TableMemo:
    """What a check measured of each table, kept between its runs: a check over many tables reads again
    only those whose content or inputs changed (``state``: the table's, in words that change with them)."""

    def __init__(self, previous: Any = None, state: Callable[[str], str] | None = None) -> None:
        self.previous = previous if isinstance(previous, Mapping) else {}
        self.state = state
        self.kept: dict[str, list[Any]] = {}  # unique id -> [state, value]: what this run keeps for the next

    def value(self, uid: str, measure: Callable[[], Any]) -> Any:
        found, value = self.known(uid)
        if not found:
            value = measure()
            self.keep(uid, value)
        return value

    def known(self, uid: str) -> tuple[bool, Any]:
        """(True, what the last run measured) when the table's state is unchanged since, else (False, None)."""
        if self.state is None:
            return False, None
        old = self.previous.get(uid)
        if isinstance(old, list) and len(old) == 2 and old[0] == self.state(uid):
            self.kept[uid] = old
            return True, old[1]
        return False, None

    def keep(self, uid: str, value: Any) -> None:
        if self.state is not None:
            self.kept[uid] = [self.state(uid), value]


class CheckContext:
    """Everything a check function uses: settings, tables, queries and result helpers."""

    def __init__(
        self,
        check: "Check",
        validation: ValidationSettings,
        reader: Reader,
        project: ProjectView | None = None,
        memo: TableMemo | None = None,
    ) -> None:
        self.check = check
        self.validation = validation
        self.reader = reader
        self.project = project
        self.memo = memo or TableMemo()
        self._tables: dict[str, Table | None] = {}

    # -- tables and columns -----------------------------------------------------------

    def table_name(self, logical: str) -> str:
        return self.validation.tables.get(logical, logical)

    def find_table(self, logical: str) -> Table | None:
        """The table for a logical name (or a table name), None if absent from the database."""
        if logical not in self._tables:
            self._tables[logical] = self._locate(logical)
        return self._tables[logical]

    def _locate(self, logical: str) -> Table | None:
        name = self.table_name(logical)
        node = self.project.node_for_table(name) if self.project else None
        key = None
        if node is not None and node.relation is not None and node.relation.key() in self.reader.tables():
            key = node.relation.key()
        if key is None:
            key = self.reader.find(node.relation.identifier if node is not None and node.relation else name)
        if key is None:
            return None
        config_key = f"validation.tables.{logical}" if logical in self.validation.tables else None
        return Table(logical, name, key, self.reader.columns(key), config_key, node)

    def table(self, logical: str) -> Table:
        """The table, or skip the check saying which table (and setting) is missing."""
        found = self.find_table(logical)
        if found is None:
            where = f" (validation.tables.{logical})" if logical in self.validation.tables else ""
            raise SkipCheck(f"table {self.table_name(logical)}{where} is not in the database")
        return found

    def column_name(self, table: Table, key: str, columns_of: str | None = None) -> str:
        return (self.validation.columns.get(columns_of or table.logical) or {}).get(key, key)

    def find_column(self, table: Table, key: str, columns_of: str | None = None) -> str | None:
        """The quoted column for a logical column key, None if the table lacks it."""
        return self.existing_column(table, self.column_name(table, key, columns_of))

    @staticmethod
    def existing_column(table: Table, name: str) -> str | None:
        """The quoted column called ``name`` (any case), None if the table lacks it."""
        actual = next((c for c in table.columns if c.lower() == name.lower()), None)
        return quote(actual) if actual is not None else None

    def column(self, table: Table, key: str, columns_of: str | None = None) -> str:
        """The quoted column for ``validation.columns.<table>.<key>`` (else ``key`` itself), or skip."""
        found = self.find_column(table, key, columns_of)
        if found is None:
            group = columns_of or table.logical
            setting = f" (validation.columns.{group}.{key})" if group in self.validation.columns else ""
            raise SkipCheck(f"column {self.column_name(table, key, columns_of)}{setting} is not in table {table.name}")
        return found

    def fix_location(self, table: Table) -> str:
        """Where to correct a table's content: its seed files, else the table."""
        files = self.project.seed_files_behind(table.node.unique_id) if self.project and table.node else []
        return " or ".join(files) if files else f"the source of {table.name}"

    # -- queries ----------------------------------------------------------------------

    def measured(self, table: Table, measure: Callable[[], Any]) -> Any:
        """``measure()`` of a table (a JSON value: a row count, a list of columns), or what it gave in the
        check's last run when the table's content and inputs are unchanged since: a check reading many
        tables reads again only those that changed."""
        if table.node is None:
            return measure()
        return self.memo.value(table.node.unique_id, measure)

    def row_counts(self, tables: Sequence[Table]) -> list[int]:
        """Each table's row count (``measured``), those not kept read in one query per hundred tables."""
        counts: dict[int, int] = {}
        missing = []
        for i, table in enumerate(tables):
            found, value = self.memo.known(table.node.unique_id) if table.node is not None else (False, None)
            if found and value is not None:
                counts[i] = int(value)
            else:
                missing.append(i)
        for start in range(0, len(missing), 100):
            chunk = missing[start : start + 100]
            union = " UNION ALL ".join(f"SELECT {i} AS i, count(*) AS n FROM {tables[i]}" for i in chunk)
            for i, n in self.query(union).rows:
                node = tables[int(i)].node
                counts[int(i)] = int(n)
                if node is not None:
                    self.memo.keep(node.unique_id, counts[int(i)])
        return [counts[i] for i in range(len(tables))]

    def query(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult:
        return self.reader.query(sql, params)

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params).rows
        return rows[0][0] if rows else None

    def audit(
        self, sql: str, params: Sequence[Any] | None = None, *, what: str, guidance: str, **details: Any
    ) -> CheckResult:
        """Passed when ``sql`` selects no rows; else failed with the count and a sample."""
        body = sql.strip().rstrip(";")
        count = self.scalar(f"SELECT count(*) FROM ({body}) AS offending", params) or 0
        if not count:
            return self.passed(f"no {what}", offending_rows=0, **details)
        sample = self.query(f"SELECT * FROM ({body}) AS offending LIMIT {SAMPLE_ROWS}", params).records()
        return self.failed(plural(count, what), guidance, offending_rows=count, sample=sample, **details)

    # -- results ----------------------------------------------------------------------

    def passed(self, message: str, **details: Any) -> CheckResult:
        return CheckResult(self.check.name, PASSED, self.check.severity, message, jsonable(details))

    def failed(self, message: str, guidance: str, severity: str | None = None, **details: Any) -> CheckResult:
        return CheckResult(
            self.check.name, FAILED, severity or self.check.severity, message, jsonable(details), guidance
        )


# -- checks -----------------------------------------------------------------------------

Reads = Sequence[str] | Callable[[ProjectView, ValidationSettings], Iterable[str]]


@dataclass(frozen=True)
class Environment:
    """Where a check runs: settings, database, project, and (in a setup run) the engine and saved values."""

    validation: ValidationSettings
    db: Database
    project: ProjectView | None = None
    engine: CheckEngine | None = None
    previous: Mapping[str, Any] = field(default_factory=dict)
    unbuilt: Mapping[str, str] = field(default_factory=dict)  # nodes without a good table in this run, and why
    # What the check measured of each table in this run (``TableMemo.kept``): stored with its results.
    tables: dict[str, list[Any]] = field(default_factory=dict)

    def memo(self, check: "Check") -> TableMemo:
        """The check's per-table measurements of its last run, valid while its definition and each table are."""
        engine = self.engine
        if engine is None:
            return TableMemo()
        definition = check.definition_digest()
        fingerprints = engine.fingerprints()
        return TableMemo(
            self.previous.get("tables"), lambda uid: f"{definition}|{input_state(engine, uid, fingerprints)}"
        )


@dataclass(frozen=True)
class Check:
    """One validation, named ``<area>.<check>`` (its task is named by ``naming.Translator``)."""

    name: str
    severity: str
    function: Callable[[CheckContext], CheckResult | Iterable[CheckResult]] | None
    reads: Reads = ()
    thresholds: tuple[str, ...] = ()
    description: str = ""
    origin: str = ""  # where it is defined, for messages: a function or a config key
    definition: str = ""  # what else defines it (custom SQL), besides the function's source
    # A check made of parts (dbt_tests) runs those whose inputs built; others are "not run" as a whole.
    runs_without_some_inputs: ClassVar[bool] = False

    @property
    def group(self) -> str | None:
        return self.name.split(".", 1)[0] if "." in self.name else None

    def read_names(self, project: ProjectView | None, validation: ValidationSettings) -> list[str]:
        if callable(self.reads):
            return list(self.reads(project, validation)) if project is not None else []
        return list(self.reads)

    def definition_digest(self) -> str:
        return _sha(self.definition + "\0" + _source_digest(self.function))

    def input_parts(self, engine: CheckEngine, project: ProjectView) -> dict[str, str]:
        """Fingerprint parts beyond the tables read (subclasses: e.g. each dbt test's definition): the
        files the check's SQL (a custom check's) reads, where dbt runs (``read_csv('extra.csv')``)."""
        if not self.definition:
            return {}
        paths = resolved(engine.definitions.reader_paths(self.definition), engine.ctx.cwd)
        return {f"external:{path}": engine.hasher.hash(path) for path in paths}

    def run(self, env: Environment) -> list[CheckResult]:
        """Run the check once; never raises: problems become failed or skipped results."""
        started = time.perf_counter()
        try:
            # A check that reads no table of the project (seed checks of a project without seeds) needs no
            # database: it runs, and says it has nothing to check, before the first build made the file.
            needs_database = env.db.path.exists() or bool(self.read_names(env.project, env.validation))
            with env.db.read_only(keep_open=True) if needs_database else scratch_reader(env.db.path) as reader:
                ctx = CheckContext(self, env.validation, reader, env.project, env.memo(self))
                outcome = self.function(ctx) if self.function else []
                results = [outcome] if isinstance(outcome, CheckResult) else list(outcome)
                env.tables.update(ctx.memo.kept)
        except SkipCheck as skip:
            results = [CheckResult(self.name, SKIPPED, self.severity, skip.reason)]
        except PlanwiseError as err:
            fix = err.fix or (
                f"check the types of the tables and columns it reads (validation.tables, "
                f"validation.columns), or fix {self.origin or self.name}"
            )
            results = [
                CheckResult(self.name, FAILED, self.severity, f"could not run: {err.cause}", {}, fix, incomplete=True)
            ]
        except Exception as exc:  # a broken check must not end the run: report it as failed
            results = [
                CheckResult(
                    self.name,
                    FAILED,
                    self.severity,
                    f"check crashed: {type(exc).__name__}: {exc}",
                    {},
                    f"fix the check {self.origin or self.name}",
                    incomplete=True,
                )
            ]
        seconds, now = time.perf_counter() - started, time.time()
        return [replace(r, seconds=r.seconds or seconds, checked_at=r.checked_at or now) for r in results]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@functools.lru_cache(maxsize=256)
def _file_digest(path: str) -> str:
    try:
        return _sha(Path(path).read_text(encoding="utf-8"))
    except OSError:
        return "unreadable"


def _source_digest(function: Callable[..., Any] | None) -> str:
    """The function's whole module and this framework: editing either re-runs the check. A team's check
    module (outside setup's package) counts with every module loaded from its folder (the helpers it
    imports: an edit of one re-runs its checks)."""
    if function is None:
        return ""
    try:
        path = inspect.getsourcefile(function) or ""
    except TypeError:
        path = ""
    files = [path, __file__]
    if path and not function.__module__.startswith(f"{_PACKAGE}."):
        files += _loaded_beside(Path(path))
    digests = [_file_digest(file) if file else "" for file in files]
    return f"{function.__module__}.{function.__qualname__}:{':'.join(digests)}"


_PACKAGE = __name__.split(".", 1)[0]


def _loaded_beside(module_file: Path) -> list[str]:
    """Python files of the modules loaded from the import root the module ``module_file`` came from."""
    roots = [Path(p).resolve() for p in sys.path if p and module_file.resolve().is_relative_to(Path(p).resolve())]
    if not roots:
        return []
    root = max(roots, key=lambda p: len(p.parts))  # the innermost: the folder the team's modules are in
    found = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if (
            file
            and file.endswith(".py")
            and Path(file).resolve().is_relative_to(root)
            and not (module.__name__ or "").startswith(f"{_PACKAGE}.")
        ):
            found.add(str(Path(file).resolve()))
    found.discard(str(module_file.resolve()))
    return sorted(found)


# -- the registry -------------------------------------------------------------------------


class CheckRegistry:
    """Checks by name, in registration order."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, check: Check) -> Check:
        _check_definition(check.name, check.severity, check.origin)
        existing = self._checks.get(check.name)
        if existing is not None and existing.origin != check.origin:
            raise PlanwiseError(
                f"validation check {check.name!r} is defined twice: {existing.origin} and {check.origin}",
                "rename one of them",
            )
        self._checks[check.name] = check
        return check

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    def get(self, name: str) -> Check | None:
        return self._checks.get(name)

    def checks(self) -> list[Check]:
        return list(self._checks.values())

    def __contains__(self, name: object) -> bool:
        return name in self._checks


REGISTRY = CheckRegistry()


def _check_definition(name: str, severity: str, origin: str) -> None:
    if not NAME_RE.match(name):
        raise PlanwiseError(
            f"validation check name {name!r} ({origin}) is not valid",
            "use lower case letters, digits and underscores, optionally 'group.name'",
        )
    if severity not in SEVERITIES:
        raise PlanwiseError(
            f"validation check {name!r} ({origin}) has severity {severity!r}", f"use one of {', '.join(SEVERITIES)}"
        )


def register_check(
    name: str,
    *,
    severity: str = "error",
    reads: Reads = (),
    thresholds: Sequence[str] = (),
    description: str | None = None,
    registry: CheckRegistry | None = None,
) -> Callable[[Callable[[CheckContext], Any]], Callable[[CheckContext], Any]]:
    """Decorator: the function becomes the check ``validate:<name>`` (see the module docstring)."""

    def decorator(function: Callable[[CheckContext], Any]) -> Callable[[CheckContext], Any]:
        doc = (inspect.getdoc(function) or "").strip().splitlines()
        (registry or REGISTRY).add(
            Check(
                name=name,
                severity=severity,
                function=function,
                reads=reads if callable(reads) else tuple(reads),
                thresholds=tuple(thresholds),
                description=description if description is not None else (doc[0] if doc else ""),
                origin=f"{function.__module__}.{function.__qualname__}",
            )
        )
        return function

    return decorator
