"""Validation framework: check results, the check registry, one doit task per check, and the summary.

A check selects what is wrong (sqlmesh audit style: zero offending rows passes)
and returns a ``CheckResult``: name, status (passed, failed, skipped), severity
(critical, error, warning, info), a message, the numbers behind it, and guidance
for a failure. Each check is the task ``validate:<name>``; it depends on the node
tasks of the tables it reads and runs again only when their fingerprints, the
check's definition or the settings it uses changed (otherwise doit shows it up to
date and its last result is reused). A failed check whose severity is in
``validation.fail_on`` fails its task, and so the run.

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

import csv
import datetime as dt
import decimal
import hashlib
import importlib
import inspect
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from doit.exceptions import InvalidDodoFile, TaskFailed

from . import database
from .config import ValidationSettings, nearest, thaw
from .errors import DatabaseError, SetupError
from .fingerprints import explain
from .manifest import Node
from .state import read_json, write_json_atomic

if TYPE_CHECKING:
    from .engine import Engine

SEVERITIES = ("critical", "error", "warning", "info")
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
TASK_PREFIX = "validate:"
GROUP_TASK = "validate"
QUICK_SUMMARY_TASK = "_validate:quick"
PLAN_TASK = "_plan:validate"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")
SAMPLE_ROWS = 5
TaskDict = dict[str, Any]


# -- results ----------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Numbers and samples as JSON: decimals as floats, dates as ISO text."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    status: str  # passed | failed | skipped
    severity: str  # critical | error | warning | info
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    guidance: str = ""
    seconds: float = 0.0
    up_to_date: bool = False  # reused from the last run: its inputs did not change
    incomplete: bool = False  # the check could not run to the end (locked database, crash): never reused

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def skipped(self) -> bool:
        return self.status == SKIPPED

    def blocking(self, fail_on: Iterable[str]) -> bool:
        """Does this result fail the setup under ``validation.fail_on``?"""
        return self.failed and self.severity in tuple(fail_on)

    def one_line(self) -> str:
        """'<name> failed (<severity>): <message> -- fix: <guidance>'."""
        text = f"{self.name} {self.status} ({self.severity}): {self.message}"
        return f"{text} -- fix: {self.guidance}" if self.failed and self.guidance else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "severity": self.severity, "message": self.message,
            "details": jsonable(self.details), "guidance": self.guidance, "seconds": round(self.seconds, 4),
            "up_to_date": self.up_to_date, "incomplete": self.incomplete,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckResult":
        return cls(
            name=data["name"], status=data["status"], severity=data["severity"], message=data.get("message", ""),
            details=data.get("details") or {}, guidance=data.get("guidance", ""),
            seconds=float(data.get("seconds") or 0.0), up_to_date=bool(data.get("up_to_date")),
            incomplete=bool(data.get("incomplete")),
        )


class SkipCheck(Exception):
    """Raised inside a check: it cannot run here (a table or column is absent); the reason is reported."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# -- the dbt project as checks see it ---------------------------------------------------


@dataclass(frozen=True)
class Project:
    """The parts of the dbt project checks need: where it is, its nodes, what setup builds."""

    project_dir: Path
    nodes: Mapping[str, Node]
    setup_nodes: tuple[str, ...] = ()
    foundation_nodes: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()  # dbt tests on the setup nodes

    @classmethod
    def from_engine(cls, engine: "Engine") -> "Project":
        """The engine's project (made once per engine)."""
        cached = _PROJECTS.get(id(engine))
        if cached is None or cached[0] is not engine:
            project = cls(engine.ctx.project_dir, engine.manifest.nodes, tuple(engine.setup_nodes),
                          tuple(engine.foundation_nodes), tuple(engine.graph.tests_of(engine.setup_nodes)))
            _PROJECTS.clear()
            cached = _PROJECTS[id(engine)] = (engine, project)
        return cached[1]

    def selected(self, *resource_types: str) -> list[Node]:
        """Nodes setup builds, of the given types, in build order."""
        return [self.nodes[u] for u in self.setup_nodes if self.nodes[u].resource_type in resource_types]

    def node_for_table(self, name: str) -> Node | None:
        """The seed, model, snapshot or source whose relation (or unique id) is ``name``."""
        if name in self.nodes:
            return self.nodes[name]
        found = [
            n for n in self.nodes.values()
            if n.relation is not None and (n.is_buildable or n.resource_type == "source")
            and names_table(n.relation.key(), name)
        ]
        found.sort(key=lambda n: (not n.is_buildable, n.unique_id))
        return found[0] if found else None

    def seed_files_behind(self, uid: str) -> list[str]:
        """CSV files of the seeds a node is built from (itself included): where a fix goes."""
        seen: set[str] = set()
        stack, files = [uid], []
        while stack:
            current = stack.pop()
            if current in seen or current not in self.nodes:
                continue
            seen.add(current)
            node = self.nodes[current]
            if node.resource_type == "seed" and node.path:
                files.append(node.path)
            stack.extend(node.depends_on)
        return sorted(files)


_PROJECTS: dict[int, tuple[Any, Project]] = {}


def names_table(key: tuple[str, str, str], name: str) -> bool:
    """Does 'table', 'schema.table' or 'db.schema.table' (any case) name the relation ``key``?"""
    parts = [p.lower() for p in name.split(".")]
    return list(key[3 - len(parts):]) == parts


def csv_data_rows(path: Path, delimiter: str = ",") -> int:
    """Data rows of a CSV (header excluded, blank lines skipped; quoted newlines stay one row)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader, None)
        return sum(1 for row in reader if any(cell.strip() for cell in row))


# -- what a check function gets --------------------------------------------------------


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
        return database.qualified(self.key)

    def __str__(self) -> str:
        return self.sql



class CheckContext:
    """Everything a check function uses: settings, tables, queries and result helpers."""

    def __init__(self, check: "Check", validation: ValidationSettings, reader: database.Reader,
                 project: Project | None = None) -> None:
        self.check = check
        self.validation = validation
        self.reader = reader
        self.project = project
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

    def has_table(self, logical: str) -> bool:
        return self.find_table(logical) is not None

    def column_name(self, table: Table, key: str, columns_of: str | None = None) -> str:
        return (self.validation.columns.get(columns_of or table.logical) or {}).get(key, key)

    def find_column(self, table: Table, key: str, columns_of: str | None = None) -> str | None:
        """The quoted column for a logical column key, None if the table lacks it."""
        return self.existing_column(table, self.column_name(table, key, columns_of))

    @staticmethod
    def existing_column(table: Table, name: str) -> str | None:
        """The quoted column called ``name`` (any case), None if the table lacks it."""
        actual = next((c for c in table.columns if c.lower() == name.lower()), None)
        return database.quote(actual) if actual is not None else None

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

    def query(self, sql: str, params: Sequence[Any] | None = None) -> database.QueryResult:
        return self.reader.query(sql, params)

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params).rows
        return rows[0][0] if rows else None

    def audit(self, sql: str, params: Sequence[Any] | None = None, *, what: str, guidance: str,
              **details: Any) -> CheckResult:
        """Passed when ``sql`` selects no rows; else failed with the count and a sample."""
        body = sql.strip().rstrip(";")
        count = self.scalar(f"SELECT count(*) FROM ({body}) AS offending", params) or 0
        if not count:
            return self.passed(f"no {what}", offending_rows=0, **details)
        sample = self.query(f"SELECT * FROM ({body}) AS offending LIMIT {SAMPLE_ROWS}", params).records()
        return self.failed(f"{count:,} {what}", guidance, offending_rows=count, sample=sample, **details)

    # -- results ----------------------------------------------------------------------

    def passed(self, message: str, **details: Any) -> CheckResult:
        return CheckResult(self.check.name, PASSED, self.check.severity, message, jsonable(details))

    def failed(self, message: str, guidance: str, severity: str | None = None, **details: Any) -> CheckResult:
        return CheckResult(self.check.name, FAILED, severity or self.check.severity, message, jsonable(details), guidance)


# -- checks -----------------------------------------------------------------------------

Reads = Sequence[str] | Callable[[Project, ValidationSettings], Iterable[str]]


@dataclass(frozen=True)
class Environment:
    """Where a check runs: settings, database, project, and (in doit) the engine and saved values."""

    validation: ValidationSettings
    db_path: Path
    project: Project | None = None
    engine: "Engine | None" = None
    previous: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One validation: the task ``validate:<name>``."""

    name: str
    severity: str
    function: Callable[[CheckContext], CheckResult | Iterable[CheckResult]] | None
    reads: Reads = ()
    thresholds: tuple[str, ...] = ()
    description: str = ""
    origin: str = ""  # where it is defined, for messages: a function or a config key
    definition: str = ""  # what else defines it (custom SQL), besides the function's source

    @property
    def group(self) -> str | None:
        return self.name.split(".", 1)[0] if "." in self.name else None

    @property
    def task_name(self) -> str:
        return TASK_PREFIX + self.name

    def read_names(self, project: Project | None, validation: ValidationSettings) -> list[str]:
        if callable(self.reads):
            return list(self.reads(project, validation)) if project is not None else []
        return list(self.reads)

    def definition_digest(self) -> str:
        return _sha(self.definition + "\0" + _source_digest(self.function))

    def input_parts(self, engine: "Engine") -> dict[str, str]:
        """Fingerprint parts beyond the tables read (subclasses: e.g. each dbt test's definition)."""
        return {}

    def run(self, env: Environment) -> list[CheckResult]:
        """Run the check once; never raises: problems become failed or skipped results."""
        started = time.perf_counter()
        try:
            with database.read_only(env.db_path, keep_open=True) as reader:
                ctx = CheckContext(self, env.validation, reader, env.project)
                outcome = self.function(ctx) if self.function else []
                results = [outcome] if isinstance(outcome, CheckResult) else list(outcome)
        except SkipCheck as skip:
            results = [CheckResult(self.name, SKIPPED, self.severity, skip.reason)]
        except SetupError as err:
            fix = err.fix or (f"check the types of the tables and columns it reads (validation.tables, "
                              f"validation.columns), or fix {self.origin or self.name}")
            results = [CheckResult(self.name, FAILED, self.severity, f"could not run: {err.cause}", {}, fix,
                                   incomplete=True)]
        except Exception as exc:  # a broken check must not end the run: report it as failed
            results = [CheckResult(self.name, FAILED, self.severity, f"check crashed: {type(exc).__name__}: {exc}",
                                   {}, f"fix the check {self.origin or self.name}", incomplete=True)]
        seconds = time.perf_counter() - started
        return [replace(r, seconds=seconds) if not r.seconds else r for r in results]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


_SOURCE_CACHE: dict[str, str] = {}


def _source_digest(function: Callable[..., Any] | None) -> str:
    """The function's whole module and this framework: editing either re-runs the check."""
    if function is None:
        return ""
    try:
        path = inspect.getsourcefile(function) or ""
    except TypeError:
        path = ""
    digests = []
    for file in (path, __file__):
        if file and file not in _SOURCE_CACHE:
            try:
                _SOURCE_CACHE[file] = _sha(Path(file).read_text(encoding="utf-8"))
            except OSError:
                _SOURCE_CACHE[file] = "unreadable"
        digests.append(_SOURCE_CACHE.get(file, ""))
    return f"{function.__module__}.{function.__qualname__}:{':'.join(digests)}"


# -- the registry -------------------------------------------------------------------------


class CheckRegistry:
    """Checks by name, in registration order."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, check: Check) -> Check:
        _check_definition(check.name, check.severity, check.origin)
        existing = self._checks.get(check.name)
        if existing is not None and existing.origin != check.origin:
            raise SetupError(
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
        raise SetupError(
            f"validation check name {name!r} ({origin}) is not valid",
            "use lower case letters, digits and underscores, optionally 'group.name'",
        )
    if severity not in SEVERITIES:
        raise SetupError(f"validation check {name!r} ({origin}) has severity {severity!r}",
                         f"use one of {', '.join(SEVERITIES)}")


def register_check(name: str, *, severity: str = "error", reads: Reads = (), thresholds: Sequence[str] = (),
                   description: str | None = None, registry: CheckRegistry | None = None
                   ) -> Callable[[Callable[[CheckContext], Any]], Callable[[CheckContext], Any]]:
    """Decorator: the function becomes the check ``validate:<name>`` (see the module docstring)."""

    def decorator(function: Callable[[CheckContext], Any]) -> Callable[[CheckContext], Any]:
        doc = (inspect.getdoc(function) or "").strip().splitlines()
        (registry or REGISTRY).add(Check(
            name=name, severity=severity, function=function,
            reads=reads if callable(reads) else tuple(reads), thresholds=tuple(thresholds),
            description=description if description is not None else (doc[0] if doc else ""),
            origin=f"{function.__module__}.{function.__qualname__}",
        ))
        return function

    return decorator


# -- custom SQL checks from the config ----------------------------------------------------


def custom_check(index: int, name: str, sql: str, severity: str, description: str) -> Check:
    """A check from ``validation.custom_checks[index]``: the query selects the offending rows."""
    origin = f"validation.custom_checks[{index}]"
    tables = database.tables_in_sql(sql)

    def run(ctx: CheckContext) -> CheckResult:
        what = f"offending rows{f' ({description})' if description else ''}"
        guidance = f"correct the rows the query of {origin} ({name}) selects"
        try:
            return ctx.audit(sql, what=what, guidance=guidance)
        except DatabaseError as err:
            return ctx.failed(f"the query failed: {err.cause.removeprefix('query failed: ')}", f"fix the SQL of {origin}.sql")

    reads: Reads = tuple(sorted(tables)) if tables is not None else _everything
    return Check(name, severity, run, reads, (), description, origin, definition=sql)


def _everything(project: Project, validation: ValidationSettings) -> list[str]:
    """Reads of a query that cannot be parsed: every node setup builds."""
    return list(project.setup_nodes)


def _import_check_modules(validation: ValidationSettings, root: Path) -> None:
    if validation.check_modules and str(root) not in sys.path:
        sys.path.append(str(root))
    for module in validation.check_modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any import failure is a definition error, named
            raise SetupError(
                f"validation.check_modules: cannot import {module}: {type(exc).__name__}: {exc}",
                f"make {module} importable from {root} (or installed), or remove it from validation.check_modules",
            ) from None


def load_checks(validation: ValidationSettings, root: Path, registry: CheckRegistry | None = None) -> list[Check]:
    """Built-in, Python-registered and custom SQL checks, in that order; names checked unique."""
    from . import checks as _builtin  # noqa: F401  (registers the built-in checks)

    registry = registry or REGISTRY
    _import_check_modules(validation, root)
    found = [c for c in registry.checks() if validation.run_dbt_tests or c.name != "dbt_tests"]
    taken = {c.name for c in found} | {c.group for c in found if c.group}
    for index, entry in enumerate(validation.custom_checks):
        if entry.name in taken:
            raise SetupError(
                f"validation.custom_checks[{index}].name: {entry.name!r} is already a built-in or registered check",
                "choose another name",
            )
        taken.add(entry.name)
        found.append(custom_check(index, entry.name, entry.sql, entry.severity, entry.description))
    return _without_disabled(found, validation.disabled_checks, taken | {"dbt_tests"})


def _without_disabled(checks: list[Check], disabled: Sequence[str], known: set[str]) -> list[Check]:
    """The checks ``validation.disabled_checks`` leaves, by check name or area; an unknown name is an error."""
    for index, name in enumerate(disabled):
        if name not in known:
            close = nearest(name, known)
            raise SetupError(
                f"validation.disabled_checks[{index}]: {name!r} is no check or area"
                + (f" (did you mean {close!r}?)" if close else ""),
                "use a name from `doit list` without the validate: prefix",
            )
    off = set(disabled)
    return [c for c in checks if c.name not in off and (c.group or "") not in off]


# -- staleness ----------------------------------------------------------------------------


def setting_value(validation: ValidationSettings, dotted: str) -> Any:
    """The value of a dotted ``validation`` setting, e.g. 'columns.census'."""
    value: Any = validation
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
    return thaw(value)


def resolve_reads(check: Check, engine: "Engine") -> tuple[list[str], list[str]]:
    """(node unique ids, names that are no node of the project) the check reads."""
    project = Project.from_engine(engine)
    validation = engine.settings.validation
    uids: list[str] = []
    untracked: list[str] = []
    for name in check.read_names(project, validation):
        node = project.node_for_table(validation.tables.get(name, name))
        if node is None:
            untracked.append(name)
        elif node.unique_id not in uids:
            uids.append(node.unique_id)
    return uids, untracked


def fingerprint_parts(check: Check, engine: "Engine") -> dict[str, str]:
    """Everything a check's result depends on, by name: a change in any part re-runs it."""
    validation = engine.settings.validation
    parts = {
        "definition": check.definition_digest(),
        "severity": f"{check.severity}, {'blocking' if validation.is_blocking(check.severity) else 'reported'}",
    }
    for key in check.thresholds:
        parts[f"setting:validation.{key}"] = json.dumps(setting_value(validation, key), sort_keys=True)
    project = Project.from_engine(engine)
    for name in check.read_names(project, validation):
        if name in validation.tables:
            parts[f"setting:validation.tables.{name}"] = validation.tables[name]
        if name in validation.columns:
            parts[f"setting:validation.columns.{name}"] = json.dumps(thaw(validation.columns[name]), sort_keys=True)
    uids, untracked = resolve_reads(check, engine)
    fingerprints = engine.fingerprints()
    for uid in uids:
        parts[f"input:{uid}"] = _input_state(engine, uid, fingerprints)
    tables = engine.snapshot().tables
    for name in untracked:
        table = validation.tables.get(name, name)
        if any(names_table(key, table) for key in tables):
            parts[f"untracked:{table}"] = "in the database, not a node of the dbt project"
        else:
            parts[f"absent:{table}"] = "not in the database"
    parts.update(check.input_parts(engine))
    return parts




def _input_state(engine: "Engine", uid: str, fingerprints: Mapping[str, Any]) -> str:
    """A node's inputs and, for a built table, the content it was built with."""
    fingerprint = fingerprints.get(uid)
    record = engine.records.get(uid)
    digest = fingerprint.digest if fingerprint is not None else "untracked"
    return f"{digest}:{record.signature if record and record.signature else ''}"


def stale_reasons(old: Mapping[str, str], new: Mapping[str, str], names: Mapping[str, str]) -> list[str]:
    """Why a check whose last run saw ``old`` must run again now that it sees ``new``."""
    if not old:
        return ["no stored result (never checked, failed last time, or forgotten)"]
    untracked = {key for key in (*old, *new) if key.startswith("untracked:")}
    reasons = [f"reads {k.split(':', 1)[1]}, which setup does not track" for k in new if k in untracked]
    tracked_old = {k: v for k, v in old.items() if k not in untracked}
    tracked_new = {k: v for k, v in new.items() if k not in untracked}
    return reasons + explain(tracked_old, tracked_new, names)


class CheckTarget:
    """doit uptodate for a check: up to date when its inputs are unchanged and its last result is stored.

    When up to date, the stored result becomes this run's result (marked up_to_date).
    Its repr says why the check will run, so ``doit info validate:<name>`` explains itself.
    """

    def __init__(self, engine: "Engine", check: Check) -> None:
        self.engine = engine
        self.check = check
        self.reasons: list[str] | None = None
        self.values: Mapping[str, Any] = {}

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        self.values = dict(values or {})
        self.reasons = self.compute_reasons(self.values)
        if self.reasons:
            return False
        for stored in self.values["results"]:
            result = replace(CheckResult.from_dict(stored), up_to_date=True)
            self.engine.run.checks[result.name] = result
        return True

    def compute_reasons(self, values: Mapping[str, Any]) -> list[str]:
        try:
            parts = self.check_parts()
        except SetupError as err:
            return [f"cannot check: {err.cause}"]
        reasons = stale_reasons(values.get("parts") or {}, parts, self.engine.names())
        if not reasons and not values.get("results"):
            reasons = ["last result not stored"]
        return reasons

    def check_parts(self) -> dict[str, str]:
        return fingerprint_parts(self.check, self.engine)

    def __repr__(self) -> str:
        state = "" if self.reasons is None else ": " + ("; ".join(self.reasons) if self.reasons else "up to date")
        return f"CheckTarget({self.check.task_name}){state}"


# -- doit tasks ----------------------------------------------------------------------------


def check_action(engine: "Engine", check: Check, target: CheckTarget) -> dict[str, Any] | TaskFailed:
    """Task action: run the check, record its results, fail the task on a blocking failure."""
    parts = target.check_parts()
    memo = _failed_run_memo(engine, check)
    previous = target.values or read_json(memo, {})
    env = Environment(engine.settings.validation, engine.db_path, Project.from_engine(engine), engine, previous)
    results = check.run(env)
    for result in results:
        engine.run.checks[result.name] = result
    for line in result_lines(results):
        print(line)
    fail_on = engine.settings.validation.fail_on
    blocking = [r for r in results if r.blocking(fail_on)]
    if blocking:
        # doit keeps no values of a failed task: keep what passed here, so a check made of
        # many results (dbt_tests) re-runs only the failed ones and those whose inputs changed.
        kept = [r.as_dict() for r in results if r.passed and not r.incomplete]
        write_json_atomic(memo, {"parts": parts, "results": kept})
        return TaskFailed(failure_message(blocking))
    memo.unlink(missing_ok=True)
    if any(r.incomplete for r in results):
        return {"parts": parts}  # no result stored: the next run checks again
    return {"parts": parts, "results": [r.as_dict() for r in results], "build_id": engine.run.build_id}


def _failed_run_memo(engine: "Engine", check: Check) -> Path:
    """Where the passing results of a check's last failed run are kept."""
    return engine.settings.state_dir / "failed_checks" / f"{check.name}.json"


def failure_message(blocking: Sequence[CheckResult], shown: int = 3) -> str:
    """One line for doit: each blocking failure with its fix, the rest counted."""
    text = "; ".join(r.one_line() for r in blocking[:shown])
    more = len(blocking) - shown
    return text + (f"; and {more} more blocking failure{'s' * (more != 1)}" if more > 0 else "")


def result_lines(results: Sequence[CheckResult]) -> list[str]:
    return [f"{r.status.upper():<7} [{r.severity}] {r.name}: {r.message}" for r in results]


def summary_action(engine: "Engine") -> None:
    """Task action of the `validate` group: print the summary of every check seen in this run."""
    for line in summarize(engine.run.checks.values(), engine.settings.validation.fail_on).lines():
        print(line)


def _doc(check: Check, engine: "Engine") -> str:
    uids, untracked = resolve_reads(check, engine)
    tables = [engine.node(u).name for u in uids] + untracked
    reads = f" (reads {', '.join(tables[:4])}{', ...' if len(tables) > 4 else ''})" if tables else ""
    return f"[{check.severity}] {check.description or 'Validation check'}{reads}"


class ValidationTasks:
    """The validation tasks of one engine: a task per check, a group per area, the summaries."""

    def __init__(self, engine: "Engine", checks: Sequence[Check] | None = None) -> None:
        self.engine = engine
        try:
            self.checks = list(checks) if checks is not None else load_checks(engine.settings.validation, engine.root)
        except SetupError as err:
            raise InvalidDodoFile(err.one_line()) from None

    def node_task(self, uid: str) -> str | None:
        from .tasks import Translator

        node = self.engine.node(uid)
        if not node.is_buildable or uid not in self.engine.setup_nodes:
            return None
        if node.resource_type == "seed" and not self.engine.settings.setup.load_seeds:
            return None  # seeds are loaded by hand then: check what is there
        return Translator().task_name(node)

    def task_dep(self, check: Check) -> list[str]:
        uids, _ = resolve_reads(check, self.engine)
        return [name for name in (self.node_task(u) for u in uids) if name]

    def is_foundation(self, check: Check) -> bool:
        """Reads only foundation tables (and sources): `quick` runs it."""
        uids, untracked = resolve_reads(check, self.engine)
        allowed = set(self.engine.foundation_nodes)
        return bool(uids) and not untracked and all(
            u in allowed or self.engine.node(u).resource_type == "source" for u in uids
        )

    def check_task(self, check: Check) -> TaskDict:
        target = CheckTarget(self.engine, check)
        return {
            "basename": check.task_name,
            "doc": _doc(check, self.engine),
            "actions": [(check_action, [self.engine, check, target])],
            "uptodate": [target],
            "task_dep": self.task_dep(check),
            "verbosity": 1,
        }

    def groups(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for check in self.checks:
            if check.group:
                found.setdefault(check.group, []).append(check.task_name)
        return found

    def plan_nodes(self) -> list[str]:
        uids = {u for check in self.checks for u in resolve_reads(check, self.engine)[0]}
        return [u for u in self.engine.setup_nodes if u in self.engine.graph.with_ancestors(uids)]

    def tasks(self) -> Iterator[TaskDict]:
        from .tasks import plan_action

        names = [c.task_name for c in self.checks]
        for check in self.checks:
            yield self.check_task(check)
        for group, members in self.groups().items():
            yield {"basename": TASK_PREFIX + group, "doc": f"Run the {group} checks", "actions": None,
                   "task_dep": members}
        yield {"basename": PLAN_TASK, "doc": "Tell the engine which nodes the checks read, so stale ones build in one dbt run",
               "actions": [(plan_action, [self.engine, self.plan_nodes()])], "verbosity": 0}
        yield {"basename": GROUP_TASK,
               "doc": "Run every validation check (each only when what it reads changed) and print the summary",
               "actions": [(summary_action, [self.engine])], "task_dep": [PLAN_TASK, *names], "verbosity": 2}
        yield {"basename": QUICK_SUMMARY_TASK, "doc": "Run the checks that read only the foundation, print the summary",
               "actions": [(summary_action, [self.engine])], "task_dep": self.quick_names(), "verbosity": 2}

    def quick_names(self) -> list[str]:
        return [c.task_name for c in self.checks if self.is_foundation(c)]

    def dependencies(self) -> dict[str, list[str]]:
        if not self.engine.settings.setup.validate_results:
            return {"setup": [], "quick": []}
        return {
            "setup": [*(c.task_name for c in self.checks), GROUP_TASK],
            "quick": [*self.quick_names(), QUICK_SUMMARY_TASK],
        }


_TASKS_CACHE: dict[int, ValidationTasks] = {}


def _validation_tasks(engine: "Engine") -> ValidationTasks:
    """One ValidationTasks per engine: both entry points see the same checks."""
    cached = _TASKS_CACHE.get(id(engine))
    if cached is None or cached.engine is not engine:
        _TASKS_CACHE.clear()
        cached = _TASKS_CACHE[id(engine)] = ValidationTasks(engine)
    return cached


def validation_tasks(engine: "Engine") -> Iterator[TaskDict]:
    """Every `validate:<name>` task, a `validate:<group>` per area, the `validate` group and its plan."""
    yield from _validation_tasks(engine).tasks()


def group_dependencies(engine: "Engine") -> dict[str, list[str]]:
    """Tasks the `setup` and `quick` groups add after their builds ({} lists when setup.validate_results is off)."""
    return _validation_tasks(engine).dependencies()


def stored_results(task_name: str) -> list[CheckResult]:
    """The last stored results of a check task (doit's saved values), outside its uptodate call."""
    from doit.globals import Globals

    if Globals.dep_manager is None:
        return []
    values = Globals.dep_manager.get_values(task_name) or {}
    return [replace(CheckResult.from_dict(r), up_to_date=True) for r in values.get("results", [])]


# -- summary ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationSummary:
    """Checks run, passed, failed, success rate, and the failures that matter."""

    results: tuple[CheckResult, ...]
    fail_on: tuple[str, ...]

    @property
    def run(self) -> int:
        return self.passed + self.failed

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.results)

    @property
    def success_rate(self) -> float:
        return self.passed / self.run if self.run else 1.0

    @property
    def critical_failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed and r.severity == "critical"]

    @property
    def blocking_failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.blocking(self.fail_on)]

    @property
    def reported_failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed and not r.blocking(self.fail_on)]

    @property
    def ok(self) -> bool:
        return not self.blocking_failures

    def lines(self) -> list[str]:
        head = (f"validation: {self.run} checks run, {self.passed} passed, {self.failed} failed"
                f"{f', {self.skipped} skipped' if self.skipped else ''}, success rate {self.success_rate:.0%}")
        lines = [head]
        for label, results in (("critical", self.critical_failures),
                               ("blocking", [r for r in self.blocking_failures if r.severity != "critical"]),
                               ("reported", self.reported_failures)):
            lines += [f"  {label}: {r.one_line()}" for r in results]
        by_reason: dict[str, list[str]] = {}
        for r in self.results:
            if r.skipped:
                by_reason.setdefault(r.message, []).append(r.name)
        lines += [f"  skipped ({reason}): {', '.join(names)}" for reason, names in by_reason.items()]
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "checks_run": self.run, "passed": self.passed, "failed": self.failed, "skipped": self.skipped,
            "success_rate": round(self.success_rate, 4), "ok": self.ok,
            "critical_failures": [r.name for r in self.critical_failures],
            "blocking_failures": [r.name for r in self.blocking_failures],
            "results": [r.as_dict() for r in self.results],
        }


def summarize(results: Iterable[CheckResult], fail_on: Iterable[str] = ("critical", "error")) -> ValidationSummary:
    ordered = sorted(results, key=lambda r: (SEVERITIES.index(r.severity) if r.severity in SEVERITIES else 9, r.name))
    return ValidationSummary(tuple(ordered), tuple(fail_on))
