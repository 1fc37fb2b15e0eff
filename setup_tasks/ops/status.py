"""`doit status`: is the warehouse ready to set up, and what would setup rebuild? Never builds.

Ready-to-set-up rule (the task exits 0 when ready, 1 when not):

  not ready when
    - the dbt project cannot be loaded (parse error, cycle, bad profile) or its setup
      selection holds no seed and no model;
    - another setup run holds this database's run lock (a run is in progress);
    - another process holds DuckDB's lock on the database file, or the file cannot
      be opened as a DuckDB database;
    - the database file cannot be written (its folder neither: DuckDB writes its
      WAL there) or dbt-duckdb cannot use its name, or dbt's profile holds a
      setting, extension or connection option DuckDB refuses (``Engine.build_problem``);
    - a node setup builds reads the census file (a source whose external
      location is ``census.path``), ``census.generate`` is false, and the file is
      missing, unreadable or lacks required columns;
    - setup's own pre-flight (``Engine.preflight``) finds what would stop its run
      before it builds: the census generator's inputs (when setup is to generate
      the census), a stale node's inputs (a malformed seed, a missing external file).
  Everything else is ready, including a database that does not exist yet and
  stale nodes: rebuilding stale nodes is what setup is for.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping

from ..config import Settings
from ..engine.census import REQUIRED_CENSUS_COLUMNS, inspect_census
from ..engine.engine import Engine
from ..engine.staleness import NodeStatus
from ..errors import DatabaseError, DatabaseLockedError, RunInProgressError, PlanwiseError
from ..naming import Translator
from ..store.database import Database, DatabaseContents
from ..validation.results import when
from ..validation.scope import read_last_failures
from .run_report import last_run, regressions, task_names
from .history import run_failures


@dataclass(frozen=True)
class DatabaseState:
    """Whether the database can be read: reachable, absent, in-use, locked, unreadable or unknown (no project)."""

    path: str
    state: str
    detail: str = ""
    relations: int = 0
    named_by: str = ""  # whose file it is: dbt's profile and target

    @property
    def readable(self) -> bool:
        return self.state in ("reachable", "absent", "unknown")


@dataclass(frozen=True)
class CensusState:
    path: str
    read_by_project: bool
    generate: bool
    rows: int | None = None
    missing_columns: tuple[str, ...] = ()
    problem: str = ""  # why the file is unusable ("" when usable)
    plan: str = ""  # whose file it is and what setup will do with it, in words

    @property
    def blocks_setup(self) -> bool:
        return self.read_by_project and not self.generate and bool(self.problem)


@dataclass(frozen=True)
class NodeState:
    task: str
    unique_id: str
    stale: bool
    reason: str


@dataclass(frozen=True)
class SystemStatus:
    """Everything `doit status` reports; ``ready`` follows the rule in this module's docstring."""

    ready: bool
    reason: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    project: str = ""
    project_problem: str = ""
    database: DatabaseState | None = None
    census: CensusState | None = None
    seeds: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    nodes: tuple[NodeState, ...] = ()
    last_run: Mapping[str, Any] | None = None
    regressions: tuple[tuple[str, float, float], ...] = ()
    # Tables setup built for nodes since removed from the project: the next setup drops them.
    leftovers: tuple[str, ...] = ()
    # Tables other dbt projects built into this database: "main.x (project sales)"; never dropped here.
    others: tuple[str, ...] = ()
    # Tables this project builds that another project recorded too: "main.x (also built by project sales)".
    shared: tuple[str, ...] = ()
    # Checks that failed when they last ran (warnings a no-op run only counts), one line each.
    failed_checks: tuple[str, ...] = ()
    # What would stop setup's next run before it builds (Engine.preflight), one line each.
    problems: tuple[str, ...] = ()
    # What would fail every build alike (Engine.build_problem): the database file, dbt's profile.
    build_problem: str = ""
    # Nodes that failed in the last run, each with its one line ("model:stg_orders: ... -- fix: ...").
    last_failures: tuple[str, ...] = ()

    @property
    def stale(self) -> list[str]:
        return [n.task for n in self.nodes if n.stale]

    def lines(self) -> list[str]:
        return render(self)


# -- facts ---------------------------------------------------------------------------


def package_versions(adapter: str = "duckdb") -> dict[str, str]:
    """Installed versions of dbt, its adapter and DuckDB, without importing dbt."""
    versions = {}
    for package in ("dbt-core", f"dbt-{adapter}", "duckdb"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def database_state(path: Path, read: Callable[[], DatabaseContents], run_holder: int | None = None) -> DatabaseState:
    """Read the database the way a build would, and say what stopped it."""
    if run_holder:
        return DatabaseState(
            str(path),
            "in-use",
            f"a setup run is in progress (PID {run_holder})" if run_holder > 0 else "a setup run is in progress",
        )
    try:
        snap = read()
    except RunInProgressError:
        return DatabaseState(str(path), "in-use", "a setup run is in progress")
    except DatabaseLockedError as err:
        return DatabaseState(str(path), "locked", f"locked by {err.holder}")
    except DatabaseError as err:
        return DatabaseState(str(path), "unreadable", err.cause)
    if not snap.exists:
        return DatabaseState(str(path), "absent", "does not exist yet (setup creates it)")
    return DatabaseState(str(path), "reachable", "", len(snap.tables))


def reads_census(engine: Engine | None) -> bool:
    """Does a node setup builds read the census file? Unknown (no project) counts as yes."""
    return engine is None or any(engine.reads_census(uid) for uid in engine.setup_nodes)


def census_state(settings: Settings, read_by_project: bool, engine: Engine | None = None) -> CensusState:
    path, generate = settings.census.path, settings.census.generate
    plan = engine.census.describe() if engine is not None and read_by_project else ""
    if not path.exists():
        return CensusState(str(path), read_by_project, generate, problem="missing", plan=plan)
    try:
        info = inspect_census(path)
    except PlanwiseError as err:
        return CensusState(str(path), read_by_project, generate, problem=err.cause, plan=plan)
    problem = f"lacks required columns: {', '.join(info.missing_columns)}" if info.missing_columns else ""
    return CensusState(str(path), read_by_project, generate, info.rows, tuple(info.missing_columns), problem, plan)


def node_statuses(engine: Engine) -> dict[str, NodeStatus]:
    """Each setup node's staleness as setup would see it now."""
    return {uid: engine.status(uid) for uid in engine.setup_nodes}


def readiness(status: SystemStatus) -> str:
    """Why setup cannot run now ('' when it can): the rule in the module docstring."""
    if status.project_problem:
        return f"dbt project unusable: {status.project_problem}"
    db = status.database
    if db is not None and not db.readable:
        return f"database {db.path}: {db.detail}"
    if status.build_problem:
        return status.build_problem
    census = status.census
    if census is not None and census.blocks_setup:
        return f"census {census.path}: {census.problem} (and census.generate is false)"
    if status.problems:
        more = len(status.problems) - 1
        return f"setup would fail: {status.problems[0]}" + (f" (and {more} more: see problem lines)" if more else "")
    return ""


def collect_status(settings: Settings, make_engine: Callable[[], Engine], translator: Translator) -> SystemStatus:
    """Gather the facts `doit status` shows. Reads the database; never builds or writes it."""
    engine, problem = _load(make_engine)
    if engine is not None:
        settings = engine.settings  # the database is the file dbt's profile writes
    db = _database_state(settings, engine)
    read = reads_census(engine)
    # A project that reads no census gets no census line (the file setup would generate is nobody's input).
    census = census_state(settings, read, engine) if read else None
    history = settings.report.history_path
    status = SystemStatus(
        ready=False,
        versions=package_versions(engine.manifest.adapter_type if engine else "duckdb"),
        project=str(settings.dbt.project_dir)
        if engine is None
        else f"{engine.manifest.project_name} ({settings.dbt.project_dir})",
        project_problem=problem,
        database=db,
        census=census,
        last_run=(run := last_run(history) if history else None),
        last_failures=tuple(run_failures(run, settings.report.path)) if run else (),
        regressions=tuple(regressions(history)) if history else (),
    )
    if engine is not None:
        status = _with_engine(status, engine, db, translator)
    reason = readiness(status)
    return replace(status, ready=not reason, reason=reason)


def _load(make_engine: Callable[[], Engine]) -> tuple[Engine | None, str]:
    """The engine, or None with the problem that keeps the project from loading (or from selecting anything)."""
    try:
        engine = make_engine()
    except PlanwiseError as err:
        return None, err.one_line()
    return engine, "" if engine.setup_nodes else "the setup selection holds no seed or model"


def _database_state(settings: Settings, engine: Engine | None) -> DatabaseState:
    db_path = settings.database.path
    if engine is not None and db_path is not None:  # the engine's settings name the database file
        db = database_state(db_path, lambda: engine.database_contents(live=True), engine.lock.holder())
        profile = engine.manifest.profile
        return replace(db, named_by=profile.label) if profile is not None else db
    if db_path is not None:
        return database_state(db_path, lambda: Database(db_path).contents())
    return DatabaseState("(dbt's profile names it)", "unknown", "not known until the project loads")


def _with_engine(status: SystemStatus, engine: Engine, db: DatabaseState, translator: Translator) -> SystemStatus:
    """What a loaded project adds: its nodes, the checks that failed, and what would stop its next build."""
    status = _with_nodes(status, engine, db.readable, translator)
    refused = engine.build_problem() if db.readable else None
    status = replace(
        status, failed_checks=failed_checks(engine), build_problem=refused.one_line() if refused is not None else ""
    )
    census = status.census
    if db.readable and not (census is not None and census.blocks_setup):
        status = replace(status, problems=tuple(engine.preflight()))
    return status


def failed_checks(engine: Engine) -> tuple[str, ...]:
    """'known_warning warn: 1 offending row (...) -- fix: ... (since 05:03)' for each failed result of the last runs."""
    fail_on = tuple(engine.settings.validation.fail_on)
    return tuple(
        f"{r.one_line(fail_on)}{f' (since {when(r.checked_at)})' if r.checked_at else ''}"
        for results in read_last_failures(engine.state_dir).values()
        for r in results
    )


def _with_nodes(status: SystemStatus, engine: Engine, readable: bool, translator: Translator) -> SystemStatus:
    names = task_names(engine, translator)
    by_type = {
        kind: tuple(engine.node(u).name for u in engine.setup_nodes if engine.node(u).resource_type == kind)
        for kind in ("seed", "model")
    }
    nodes: tuple[NodeState, ...] = ()
    if readable:
        nodes = tuple(NodeState(names[u], u, s.stale, s.reason) for u, s in node_statuses(engine).items())
    leftovers: tuple[str, ...] = ()
    others: list[str] = []
    shared: list[str] = []
    if readable:
        leftovers = tuple(engine.leftover_label(uid, key) for key, uid in sorted(engine.leftover_tables().items()))
        built = {engine.node(u).relation.key() for u in engine.setup_nodes if engine.node(u).relation}  # type: ignore[union-attr]  # node(u).relation checked in the condition
        for project, keys in engine.other_projects_tables().items():
            others += [f"{'.'.join(k[1:])} (project {project})" for k in keys if k not in built]
            shared += [f"{'.'.join(k[1:])} (also built by project {project})" for k in keys if k in built]
    return replace(
        status,
        seeds=by_type["seed"],
        models=by_type["model"],
        nodes=nodes,
        leftovers=leftovers,
        others=tuple(others),
        shared=tuple(shared),
    )


def unready(reason: str) -> SystemStatus:
    """The status when not even the configuration could be read."""
    return SystemStatus(ready=False, reason=reason, project_problem=reason, versions=package_versions())


# -- text ------------------------------------------------------------------------------


def render(status: SystemStatus) -> list[str]:
    verdict = "ready to set up" if status.ready else f"NOT READY: {status.reason}"
    if status.ready and status.last_failures:
        failed = [line.split(": ", 1)[0] for line in status.last_failures]
        verdict += f" (the last run failed: {', '.join(failed)}; its lines below)"
    lines = [f"status     {verdict}"]
    lines.append("versions   " + ", ".join(f"{k} {v}" for k, v in status.versions.items()))
    lines.append(f"project    {status.project}" + (f": {status.project_problem}" if status.project_problem else ""))
    if status.database is not None:
        db = status.database
        detail = db.detail or f"reachable, {db.relations} tables and views"
        lines.append(f"database   {db.path}{f' ({db.named_by})' if db.named_by else ''}: {detail}")
    if status.census is not None:
        lines.append(f"census     {census_line(status.census)}")
    lines.append(f"seeds      {len(status.seeds)}" + (f": {', '.join(status.seeds)}" if status.seeds else ""))
    lines.append(f"models     {len(status.models)}" + (f": {', '.join(status.models)}" if status.models else ""))
    lines += nodes_lines(status)
    for leftover in status.leftovers:
        lines.append(f"leftover   {leftover}: the next setup drops it")
    if status.others:
        lines.append(f"others     {', '.join(status.others)}: built by other dbt projects, kept")
    for table in status.shared:
        lines.append(f"shared     {table}: both projects write it, the last build wins")
    for problem in status.problems:
        lines.append(f"problem    {problem}")
    for check in status.failed_checks:
        lines.append(f"check      {check}")
    lines.append(f"last run   {run_line(status.last_run)}")
    lines += [f"failed     {line}" for line in status.last_failures]
    for step, seconds, median in status.regressions:
        lines.append(f"slower     {step}: {seconds:.2f} s, median of earlier runs {median:.2f} s")
    return lines


def census_line(census: CensusState) -> str:
    if census.problem:
        text = f"{census.path}: {census.problem}"
    else:
        text = f"{census.path}: {census.rows} rows, all {len(REQUIRED_CENSUS_COLUMNS)} required columns"
    if not census.read_by_project:
        return f"{text} (not read by this project)"
    plan = f"; {census.plan}" if census.plan else ""
    return f"{text}{plan} (census.generate is {'on' if census.generate else 'off'})"


def nodes_lines(status: SystemStatus) -> list[str]:
    if not status.nodes:
        return (
            []
            if status.database is None or status.database.readable
            else ["nodes      not checked: the database cannot be read"]
        )
    stale = sum(n.stale for n in status.nodes)
    lines = [f"nodes      {stale} stale, {len(status.nodes) - stale} up to date"]
    width = max(len(n.task) for n in status.nodes)
    for node in status.nodes:
        lines.append(
            f"  {'stale' if node.stale else 'ok':5}  {node.task:{width}}  {node.reason if node.stale else ''}".rstrip()
        )
    return lines


def run_line(run: Mapping[str, Any] | None) -> str:
    if not run:
        return "none recorded"
    counts = run.get("counts") or {}
    # The run's own summary when a console said one; else its nodes' counts (an API or json run).
    done = run.get("tally") or ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing checked"
    end = "interrupted" if run.get("interrupted") else f"exit {run.get('exit_code')}"
    return f"{run.get('run_id')} at {run.get('started')}, {run.get('seconds')} s, {end}: {done}"
