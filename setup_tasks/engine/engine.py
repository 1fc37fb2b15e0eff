"""The setup engine of one run: staleness of every node, and batched builds.

Definitions (manifest, graph, selections) are computed when the engine is made and
never run dbt unless the project changed. The database is read once, lazily, before
anything is built. Building a stale node builds, in one dbt invocation, every stale
node of the groups doit was asked to run, and records each one durably the moment
dbt reports it done. The engine knows nothing of doit: the ``cli`` layer drives it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..dbt.client import DbtClient
from ..errors import CensusError, DatabaseError, DatabaseLockedError, ProjectError, RunInProgressError, SetupError, WriteError
from ..project.context import DbtProfile, dbt_context
from ..project.fingerprints import CHANGED_DURING_BUILD, FileHasher, Fingerprint
from ..project.inputs import first_ragged_row, glob_folders, not_utf8, sql_path_problem
from ..project.manifest import Node, watched_project_paths
from ..store.database import Database, DatabaseContents, DbRelation, DropResult, profile_problem
from ..files import write_json_atomic
from ..keys import key_path
from ..store.lock import RunLock
from ..store.records import (PROJECT_STATE, RECORDS_FILE, BuildRecord, BuildRecords, WrittenFiles, new_build_id,
                             other_projects, project_state_dir)
from .census import census_contract_problem, inspect_census
from . import direct_build
from .census_owner import CensusOwner
from .contents import ContentsView, Key
from .definitions import Definitions
from .kept_sql import KEPT_FILE, KeptSql, definition_key
from .hints import NodeFailure, SeedFile, database_name_problem, explain, profile_error
from .staleness import NodeStatus, Staleness

Listener = Callable[[str, dict[str, Any]], None]
# The names dbt gives a table while it builds it, besides its own.
DBT_INTERMEDIATES = ("", "__dbt_tmp", "__dbt_backup")
# DuckDB's error for a table that is not there (yet): "Catalog Error: Table with name x does not exist!"
MISSING_TABLE_RE = re.compile(r"Table with name (?P<table>\w+) does not exist", re.I)
# doit's state (watched by its own rule: see cli.app) and caches, which cost time, never correctness.
CACHE_STATE = ("doit.sqlite", "file_hashes.json", "db_contents.json")
DIRECT_ENV = "PLANWISE_SETUP_DIRECT"  # "0": dbt builds every node (see engine.direct_build)


@dataclass(frozen=True)
class Outcome:
    """What happened to a node in this run."""

    unique_id: str
    status: str  # success | error | skipped
    message: str = ""
    seconds: float = 0.0
    rows: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"


@dataclass
class RunState:
    """What this run has done to nodes so far."""

    build_id: str = field(default_factory=new_build_id)
    started: float = field(default_factory=time.time)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    scope: set[str] = field(default_factory=set)
    invocations: int = 0
    # dbt tests run straight in DuckDB from the SQL dbt compiled for them (engine.direct_tests).
    direct_tests: int = 0
    # Seeds and models built straight in DuckDB, as dbt-duckdb builds them (engine.direct_build).
    direct_builds: int = 0
    # Staleness doit saw for each node it considered (reasons go into the run report).
    checked: dict[str, NodeStatus] = field(default_factory=dict)
    callback_errors: list[str] = field(default_factory=list)
    # Tables dropped because their node left the project.
    retired: list[str] = field(default_factory=list)
    # Why nothing more of this run can work (the database is locked, another setup run holds it).
    fatal: SetupError | None = None
    # The run may build: its lock, the database file and dbt's profile were checked (Engine._ready_to_build).
    ready: bool = False


def database_settings(settings: Any, profile: DbtProfile | None) -> Any:
    """The settings of the database file dbt's profile writes: the one setup inspects.

    ``database.path`` null takes the profile's file; set, it must be that file (else a
    one-line refusal naming both), so setup never checks a file dbt did not write.
    """
    if profile is None:  # a manifest made without dbt (tests): the configured file or nothing
        if settings.database.path is None:
            raise ProjectError("the database file is unknown: no parse read dbt's profile", "set database.path")
        return settings
    path = profile.database_file(settings.database.path)
    return settings if settings.database.path is not None else settings.with_database(path)


class Engine:
    """Staleness and builds for one database and one dbt project."""

    def __init__(self, settings: Any, listeners: Iterable[Listener] = (), keep_state: bool = True) -> None:
        # False for a command that only looks at a database not built yet: it writes no state.
        self.keep_state = keep_state
        self.ctx = dbt_context(settings)
        self.dbt = DbtClient(settings.dbt.worker_idle_seconds)
        self.listeners = list(listeners)
        self.definitions = Definitions.load(settings, self.ctx, self.dbt, self.step)
        self.manifest = self.definitions.manifest
        self.manifest_path = self.definitions.manifest_path
        self.graph = self.definitions.graph
        self.setup_nodes = self.definitions.setup_nodes
        self.foundation_nodes = self.definitions.foundation_nodes
        # Nodes that get a task: what setup builds and what the foundation needs.
        self.task_nodes = self.graph.buildable({*self.setup_nodes, *self.foundation_nodes})
        self.settings = settings = database_settings(settings, self.manifest.profile)
        self.root: Path = settings.root
        self.db_path: Path = settings.database.path
        self.db = Database(self.db_path, self.ctx.duckdb_config())
        self.project = self.manifest.project_name
        # This project's records and doit state for the database; the lock and the census are the database's.
        self.state_dir = state_dir = project_state_dir(settings.state_dir, self.project)
        packages = {n.package for n in self.manifest.nodes.values()} | {m.split(".")[1] for m in self.manifest.macros}
        self.records = BuildRecords.load(state_dir / RECORDS_FILE, self.project, packages)
        self.lock = RunLock(settings.state_dir / "run.lock", self.db_path)  # one writer per database file
        self._hash_cache_path = state_dir / "file_hashes.json"
        self.hasher = FileHasher.load(self._hash_cache_path)
        self.contents = ContentsView(self.db, self.lock, state_dir / "db_contents.json", self._signed_keys)
        self.census = CensusOwner(settings, self.definitions, self.hasher,
                                  WrittenFiles.load(settings.state_dir / "census.json"))
        self.staleness = Staleness(self.definitions, self.contents, self.records, self.hasher, self.census.expected)
        # SQL dbt compiled for models and tests, for building and testing without dbt (kept_sql).
        self.kept_sql = KeptSql(self.manifest_path.parent / KEPT_FILE)
        self.run = RunState()
        self.quiet = True
        self.log: Callable[[str], None] | None = None  # takes dbt's own lines (-v 2)
        # setup.fail_fast: after a failed node no further dbt run starts (doit --continue turns it off).
        self.fail_fast = bool(settings.setup.fail_fast)
        self._record_lock = threading.Lock()

    def close(self) -> None:
        """Keep what this run learnt, and let other runs build this database again."""
        self.db.close_reader()
        self.save_caches()
        self.lock.release()

    def save_caches(self) -> None:
        """Signatures of builds, the database contents, graph answers and file hashes, at the end of a run."""
        self.definitions.save()  # beside the manifest, not the database
        self.kept_sql.save()
        if not self.keep_state:
            return
        try:
            self.records.flush()
            self.contents.save()
        except (OSError, SetupError):
            pass  # a lost signature costs a rebuild, a lost copy of the contents a read
        if self.hasher.dirty:
            try:
                write_json_atomic(self._hash_cache_path, self.hasher.cache)
                self.hasher.dirty = False
            except OSError:
                pass

    # -- what the project and the database hold --------------------------------------------

    def node(self, uid: str) -> Node:
        return self.definitions.node(uid)

    def label(self, uid: str) -> str:
        return self.definitions.label(uid)

    def names(self) -> dict[str, str]:
        return self.definitions.names()

    def reads_census(self, uid: str) -> bool:
        return self.definitions.reads_census(uid)

    def _signed_keys(self) -> list[Key]:
        return [self.node(u).relation.key() for u in self.definitions.tracked() if self.node(u).relation]

    def database_contents(self, live: bool = False) -> DatabaseContents:
        """What the database holds (``live``: open it even when the saved copy is current)."""
        return self.contents.get(live)

    def drop_tables(self, wanted: Callable[[DbRelation], bool]) -> DropResult:
        return self.contents.drop(wanted)

    def fingerprints(self) -> dict[str, Fingerprint]:
        return self.staleness.fingerprints()

    def watched_paths(self) -> list[Path]:
        """Every file and folder this run's checks read or looked for, present or not (``store.witness``):
        the configuration, the dbt project and profile, seeds, the census and other external files,
        the database file and its WAL, this project's records, the user's key."""
        settings, ctx = self.settings, self.ctx
        paths = [*watched_project_paths(ctx.project_dir), ctx.profiles_dir / "profiles.yml",
                 Path.home() / ".dbt" / "profiles.yml", settings.root / "setup.yaml", settings.root / "dbt_project.yml"]
        if settings.source is not None:
            paths.append(settings.source)
        paths += self.hasher.hashed_paths()  # seeds, the census, external files
        paths += [settings.census.path, self.db_path, Path(f"{self.db_path}.wal"), key_path(),
                  settings.state_dir / "census.json"]
        paths += [self.state_dir / name for name in PROJECT_STATE if name not in CACHE_STATE]
        for uid in self.definitions.tracked():
            node = self.node(uid)
            if node.resource_type == "source" and node.external_location:
                paths += [*self.definitions.external_inputs(uid), *glob_folders(node, ctx.project_dir)]
        return paths

    def census_written(self) -> None:
        """The census task wrote the file: fingerprints that hashed the old one are void."""
        self.census.written()
        self.staleness.invalidate()

    # -- staleness --------------------------------------------------------------------

    def status(self, uid: str) -> NodeStatus:
        """Is the node's table up to date? No side effects."""
        outcome = self.run.outcomes.get(uid)
        if outcome is not None:
            why = "built in this run" if outcome.ok else f"{outcome.status} in this run"
            return NodeStatus(uid, True, (why,))
        return self.staleness.status(uid)

    def force(self, uids: Iterable[str]) -> list[str]:
        """`doit forget`: these nodes are rebuilt by the next setup. Returns those that had been built."""
        return self.records.force([u for u in uids if u in self.manifest.nodes])

    def note_checked(self, status: NodeStatus) -> None:
        """doit considered this node in this run: its reason goes into the run report."""
        self.run.checked[status.unique_id] = status

    def leftover_tables(self, scope: Iterable[str] | None = None) -> dict[Key, str]:
        return self.staleness.leftover_tables(scope)

    def other_projects_tables(self) -> dict[str, list[Key]]:
        """Tables of this database that other dbt projects built, by project: kept, never retired here."""
        foreign = [(rec.project, rec.relation) for rec in self.records.records.values()
                   if rec.project not in (None, self.project)]
        for name, records in other_projects(self.settings.state_dir, self.project):
            foreign += [(name, rec.relation) for rec in records.records.values()]
        tables = self.database_contents().tables
        found: dict[str, set[Key]] = {}
        for project, key in foreign:
            if key is not None and key in tables:
                found.setdefault(str(project), set()).add(key)
        return {project: sorted(keys) for project, keys in sorted(found.items())}

    def leftover_label(self, uid: str, key: Key) -> str:
        return self.staleness.leftover_label(uid, key)

    def retire_leftovers(self) -> list[str]:
        """Drop the leftover tables of this run's scope; forget the builds of retired nodes;
        drop the schemas setup created that are left empty.

        Returns the dropped tables. A table another node now builds (same name) is
        kept. A drop the database refuses keeps its record, so the next run tries again.
        """
        retired = self.staleness.retired_nodes()
        leftovers = self.leftover_tables(self.run.scope)
        dropped: list[str] = []
        if leftovers:
            result = self.drop_tables(lambda rel: rel.key in leftovers)
            dropped = [str(rel) for rel in result.dropped]
            for rel, message in sorted(result.failed.items(), key=lambda item: item[0].key):
                retired.discard(leftovers[rel.key])
                self._emit("warning", {"message": f"cannot drop {self.leftover_label(leftovers[rel.key], rel.key)}: {message}"})
        if retired:
            self.records.drop(sorted(retired))
        self._drop_empty_schemas()
        self.run.retired.extend(dropped)
        if dropped:
            self._emit("retired", {"tables": dropped})
        return dropped

    def _drop_empty_schemas(self) -> None:
        empty, gone = self.staleness.empty_schemas()
        if empty:
            gone += self.contents.drop_empty_schemas(empty)
        self.records.forget_schemas(gone)

    # -- building ---------------------------------------------------------------------

    def add_scope(self, uids: Iterable[str]) -> None:
        """Nodes doit will run in this invocation: one stale node builds them all at once."""
        self.run.scope.update(uids)

    def build(self, uid: str) -> Outcome:
        """Make the node's table up to date, building with it every stale node in scope."""
        if uid not in self.run.outcomes:
            failed = self.first_failure()
            if self.fail_fast and failed is not None:
                self._set(Outcome(uid, "skipped", f"not built: stopped after {self.label(failed)} failed (setup.fail_fast)"))
                return self.run.outcomes[uid]
            try:
                self._ready_to_build()
                self._build_batch(uid)
            except SetupError as err:
                if isinstance(err, (RunInProgressError, DatabaseLockedError)) or not self.run.ready:
                    self.run.fatal = err  # nothing else of this run can work: the app stops it
                self._set(Outcome(uid, "error", err.one_line()))
        return self.run.outcomes[uid]

    def _ready_to_build(self) -> None:
        """Once per run, before its first build: what fails every node alike -- this run's lock, a database
        file dbt-duckdb cannot name or DuckDB cannot write, a profile setting or extension DuckDB refuses --
        is the run's one failure, naming the file and setting, not each node's."""
        if self.run.ready:
            return
        self.lock.acquire()
        self.db.check_writable()
        problem = self.build_problem()
        if problem is not None:
            raise problem
        self.run.ready = True

    def build_problem(self) -> SetupError | None:
        """What would fail every build alike (``doit status`` asks too, creating nothing): a database file
        DuckDB cannot write or dbt-duckdb cannot name, a part of dbt's profile DuckDB refuses."""
        problem = self.db.write_problem()
        if problem is not None:
            return problem
        name = database_name_problem(self.db_path)
        if name:
            return DatabaseError(name, "set database.path (or DUCKDB_PATH) to a file named with letters, digits and "
                                       "underscores, e.g. simulation.duckdb")
        profile = self.manifest.profile
        refused = profile_problem(profile.config_options, profile.extensions, profile.settings) if profile else None
        return profile_error(profile, refused, self.ctx) if refused is not None and profile is not None else None

    def first_failure(self) -> str | None:
        """The first node that failed in this run, if any."""
        return next((u for u, o in self.run.outcomes.items() if o.status == "error"), None)

    def ensure(self, uids: Iterable[str]) -> dict[str, str]:
        """Build what is stale among ``uids`` (nodes setup builds) and what they need; why each unbuilt one is not.

        Returns unique id -> reason ('model stg_orders failed') for the nodes among
        ``uids`` without a good table from this run: a check of them cannot run.
        """
        wanted = [u for u in uids if u in self.task_nodes]
        self.add_scope(u for u in self.graph.buildable(self.graph.with_ancestors(wanted)) if u in self.task_nodes)
        for uid in wanted:
            if uid not in self.run.outcomes and self.status(uid).stale:
                self.build(uid)
        return {u: self.unbuilt_reason(u) for u in wanted if u in self.run.outcomes and not self.run.outcomes[u].ok}

    def unbuilt_reason(self, uid: str) -> str:
        """'model stg_orders failed', 'model stg_x was not built (model stg_orders failed)'."""
        outcome = self.run.outcomes[uid]
        if outcome.status == "error":
            return f"{self.label(uid)} failed"
        failed = [u for u in self.graph.ancestors([uid]) if self.run.outcomes.get(u, outcome).status == "error"]
        cause = f"{', '.join(self.label(u) for u in sorted(failed))} failed" if failed else outcome.message.removeprefix("not built: ")
        return f"{self.label(uid)} was not built ({cause})"

    def batch_for(self, uid: str) -> list[str]:
        """This node plus every stale node in scope that can build now.

        Readers of a census that the census task has yet to write wait for their own
        task (after it), with everything downstream of them.
        """
        scope = self.run.scope | {uid}
        waiting: set[str] = set()
        if self.census.pending():
            readers = {u for u in scope if self.reads_census(u)}
            waiting = readers | self.graph.descendants(readers)
        batch = []
        for u in self.setup_nodes_and(uid):
            if u not in scope or u in self.run.outcomes or (u != uid and u in waiting):
                continue
            status = self.status(u)
            if u == uid or status.stale:
                self.run.checked.setdefault(u, status)  # its reason, for the run report
                batch.append(u)
        return batch

    def setup_nodes_and(self, uid: str) -> list[str]:
        return self.task_nodes if uid in self.task_nodes else self.graph.buildable({*self.task_nodes, uid})

    def _build_batch(self, uid: str) -> None:
        status = self.status(uid)
        if status.error is not None:
            raise status.error
        self.lock.acquire()
        self.database_contents(live=True)  # a build needs the file: is it free? (a saved snapshot cannot tell)
        self.fingerprints()  # read the database and inputs before dbt holds the file
        batch = self.batch_for(uid)
        blocked = self._preflight(batch)
        runnable = [u for u in batch if u not in blocked]
        direct = self.direct_batch(runnable) if runnable else None
        self._emit("batch", {"nodes": runnable, "blocked": sorted(blocked), "without_dbt": direct is not None})
        if runnable:
            nodes = [self.node(u) for u in runnable]
            self._intend(nodes)
            self.db.close_reader()  # dbt writes the file, here or in the worker
            on_start = lambda started: self._emit("start", {"unique_id": started})  # noqa: E731
            try:
                if direct is not None:
                    self.run.direct_builds += len(direct)
                    direct_build.build(self.db, direct, {u: self.graph.built_parents(u) for u in runnable},
                                       self._on_dbt_outcome, on_start)
                else:
                    self.run.invocations += 1
                    self.dbt.build_nodes(
                        self.ctx, self.manifest_path, nodes, self._on_dbt_outcome, quiet=self.quiet,
                        on_start=on_start, dbt_lines=self.log, on_phase=self.phase,
                        edges=self.graph.implied_edges(runnable),
                    )
            finally:  # dbt did not start skipped nodes; a failed one may have committed (a post-hook failed)
                self.records.settle(u for u in runnable if u in self.run.outcomes and self.run.outcomes[u].status == "skipped")
                self.contents.invalidate()  # the next question reads what the database holds now
            built = [u for u in runnable if self.run.outcomes.get(u, Outcome(u, "x")).ok]
            self._sign(built)
            self._check_inputs(built)
        for u in runnable:
            if u not in self.run.outcomes:
                self._set(Outcome(u, "skipped", "not built: an upstream node failed"))

    def direct_batch(self, uids: list[str]) -> list[direct_build.DirectNode] | None:
        """The batch in build order, when every node of it can be built without dbt (see
        ``direct_build``); None when dbt builds it (``PLANWISE_SETUP_DIRECT=0`` always)."""
        if self.ctx.environ().get(DIRECT_ENV, "1") == "0":
            return None
        if any(n.resource_type == "operation" for n in self.manifest.nodes.values()):
            return None  # on-run-start / on-run-end hooks: dbt runs them around every build
        fingerprints = self.fingerprints()
        items = []
        for uid in self.graph.topological(uids):
            node = self.node(uid)
            if uid not in fingerprints or direct_build.why_not_direct(node, self.manifest) is not None:
                return None
            if node.resource_type == "seed":
                items.append(direct_build.DirectNode(node, csv=self.ctx.project_dir / str(node.path)))
                continue
            sql = self.kept_sql.sql(uid, definition_key(fingerprints[uid].parts, self.manifest, node))
            if sql is None:
                return None
            items.append(direct_build.DirectNode(node, sql=sql))
        return items

    def _intend(self, nodes: list[Node]) -> None:
        """Write down, before dbt runs, every table it may commit (dbt's intermediate names
        too) and every schema it may create: a run killed at any instant leaves nothing
        a later run does not know of."""
        relations = {
            n.unique_id: [key[:2] + (key[2] + suffix,) for suffix in DBT_INTERMEDIATES]
            for n in nodes if n.relation is not None for key in [n.relation.key()]
        }
        existing = self.database_contents().schemas
        schemas = {key[:2] for keys in relations.values() for key in keys} - existing
        self.records.intend(relations, {s for s in schemas if s[1] != "main"})

    def _preflight(self, batch: list[str]) -> set[str]:
        """Fail nodes whose inputs are unusable before dbt sees them; skip their children."""
        failed: dict[str, str] = {}
        for uid in batch:
            problem = self._input_problem(uid)
            if problem:
                failed[uid] = problem
        blocked = set(failed)
        for uid, message in failed.items():
            self._set(Outcome(uid, "error", message))
            for child in sorted(self.graph.descendants([uid]) & set(batch)):
                if child not in blocked:
                    blocked.add(child)
                    self._set(Outcome(child, "skipped", f"not built: {self.label(uid)} failed"))
        return blocked

    def _input_problem(self, uid: str) -> str | None:
        node = self.node(uid)
        if node.resource_type == "seed" and node.path:
            path = self.ctx.project_dir / node.path
            encoding = not_utf8(path)
            if encoding:
                return (f"seed {node.name}: {path} is not UTF-8 text ({encoding}) -- fix: save {node.path} with UTF-8 "
                        "encoding (it looks like Latin-1 or Windows-1252 text)")
            problem = first_ragged_row(path, node.config.get("delimiter") or ",")
            if problem:
                return f"seed {node.name}: malformed CSV {path} {problem} -- fix: correct that row (every row needs the header's number of fields)"
        for parent in self.graph.built_parents(uid):
            source = self.node(parent)
            if source.resource_type == "source" and source.external_location:
                problem = self._external_input_problem(source)
                if problem:
                    return f"{node.resource_type} {node.name}: {problem}"
        return None

    def _external_input_problem(self, source: Node) -> str | None:
        location = source.external_location or ""
        paths = self.definitions.external_inputs(source.unique_id)
        census = Path(self.settings.census.path)
        problem = sql_path_problem(census)
        if problem and any(p.resolve() == census.resolve() for p in paths):
            return CensusError(f"census path {census} {problem}",
                               "rename or move the file so that its path has none of ' ( ) { }, and set census.path "
                               "(or CENSUS_PATH) to it").one_line()
        if "(" not in location and not location.startswith("'") and "'" in location:
            return CensusError(f"input location {location} of source {source.name} {sql_path_problem(location)}",
                               "rename or move the file so that its path has no quote").one_line()
        missing = [p for p in paths if not p.exists()]
        if not paths or missing:
            where = missing[0] if missing else location
            census = Path(self.settings.census.path)
            if missing and missing[0].resolve() == census.resolve():
                err = CensusError(f"census file {census} does not exist", "run `doit census` to generate one, or set census.path / CENSUS_PATH to your file")
            else:
                err = CensusError(f"input file {where} of source {source.name} does not exist", "create it or fix the source's external_location")
            return err.one_line()
        return self._census_columns_problem(paths)

    def _census_columns_problem(self, paths: list[Path]) -> str | None:
        """The census contract (every required column, each of its type), checked before dbt reads the file."""
        census = Path(self.settings.census.path).resolve()
        if census not in {p.resolve() for p in paths}:
            return None
        try:
            info = inspect_census(census)
            problem = census_contract_problem(info)
        except CensusError as err:
            return err.one_line()
        except Exception as exc:  # unreadable parquet: name the file, keep the cause
            return CensusError(f"census file {census} cannot be read: {exc}", "replace it with a valid parquet file or run `doit census`").one_line()
        if problem is not None:
            return problem.one_line()
        missing = [c for c in self.settings.validation.census_required_columns if c not in info.columns]
        if missing:
            return CensusError(
                f"census file {census} lacks required columns: {', '.join(missing)}",
                "add those columns to the file (docs/census.md), regenerate with `doit census`, "
                "or change validation.census_required_columns",
            ).one_line()
        return None

    def _on_dbt_outcome(self, result: Any) -> None:
        """dbt's callback, on its worker thread: it must never raise into dbt."""
        try:
            self._record_dbt_outcome(result)
        except Exception as exc:  # a failed record only costs a rebuild next run
            self.run.callback_errors.append(f"{result.unique_id}: {exc}")

    def _record_dbt_outcome(self, result: Any) -> None:
        sql = getattr(result, "sql", None)
        if result.status == "success" and sql and result.unique_id.startswith("model."):
            self.keep_sql(result.unique_id, sql)
        status = result.status if result.status in ("success", "error", "skipped") else "error"
        message = result.message if status != "success" else ""
        if status == "error":
            uid = result.unique_id
            message = self.unbuilt_input(uid, result.message) or explain(self.failure(uid, result.message), self.ctx,
                                                                         self.db_path)
        self._set(Outcome(result.unique_id, status, message, result.seconds, result.rows))

    def failure(self, uid: str, message: str) -> NodeFailure:
        """A failed node with the seeds a value it failed on may come from: itself, then upstream, nearest first."""
        node = self.node(uid)
        upstream, seen, queue = [], {uid}, [uid]
        while queue:
            for parent in sorted(self.graph.built_parents(queue.pop(0))):
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
                    upstream += [parent] if self.node(parent).resource_type == "seed" else []
        return NodeFailure(self.label(uid), node.path, message,
                           self.seed_file(node) if node.resource_type == "seed" else None,
                           tuple(self.seed_file(self.node(u)) for u in upstream))

    def seed_file(self, node: Node) -> SeedFile:
        return SeedFile(node.name, str(node.path), self.ctx.project_dir / str(node.path),
                        node.config.get("delimiter") or ",", dict(node.config.get("column_types") or {}))

    def keep_sql(self, uid: str, sql: str) -> None:
        """Keep the SQL dbt compiled for a node, under the key of what it was compiled from."""
        fingerprint = self.fingerprints().get(uid)
        if fingerprint is not None:
            self.kept_sql.keep(uid, definition_key(fingerprint.parts, self.manifest, self.node(uid)), sql)

    def unbuilt_input(self, uid: str, dbt_message: str) -> str | None:
        """A node that failed reading a table another node builds and has not (yet), in one line
        with the fix that names that node; None for any other failure."""
        match = MISSING_TABLE_RE.search(dbt_message)
        builder = self.manifest.builder_of(match["table"]) if match else None
        if match is None or builder is None or builder == uid:
            return None
        node = self.node(uid)
        failed = f"{self.label(uid)} ({node.path}) failed: {dbt_message}"
        outcome = self.run.outcomes.get(builder)
        if outcome is not None and not outcome.ok:
            return f"{failed} -- fix: {self.label(builder)} builds that table and failed in this run: fix it first"
        return (f"{failed} -- fix: {self.label(builder)} builds {match['table']}, and {node.name} does not read it "
                f"through ref(): write {{{{ ref('{self.node(builder).name}') }}}} in {node.path}, so setup builds "
                f"{self.label(builder)} first")

    def _set(self, outcome: Outcome) -> None:
        with self._record_lock:
            if outcome.ok:
                fp = self.fingerprints()[outcome.unique_id]
                relation = self.node(outcome.unique_id).relation
                try:
                    self.records.put(
                        outcome.unique_id,
                        BuildRecord(fp.digest, dict(fp.parts), time.time(), outcome.seconds, self.run.build_id, outcome.rows,
                                    relation=relation.key() if relation is not None else None, project=self.project),
                    )
                except WriteError as err:  # the table is built; without its record the next run builds it again
                    outcome = Outcome(outcome.unique_id, "error", f"built, but {err.one_line()}", outcome.seconds, outcome.rows)
            self.run.outcomes[outcome.unique_id] = outcome
        self._emit("node", {"unique_id": outcome.unique_id, "outcome": outcome})

    def _check_inputs(self, built: list[str]) -> None:
        """Files a build read that changed while it ran: what dbt read is unknown, so those
        nodes (and what was built from them in the batch) are recorded as built from
        nothing current, and the next setup builds them again."""
        changed: dict[str, list[str]] = {}
        for uid in built:
            for owner in [uid, *(p for p in self.graph.built_parents(uid) if self.node(p).resource_type == "source")]:
                moved = [part for part in self.fingerprints()[owner].parts if self._input_changed(part)]
                if moved:
                    changed.setdefault(owner, []).extend(moved)
        if not changed:
            return
        tainted = self.graph.descendants(changed) & set(built) | (set(changed) & set(built))
        marks = {uid: {part: CHANGED_DURING_BUILD for part in changed.get(uid, ())} for uid in tainted}
        for uid in tainted:
            marks[uid].update({f"upstream:{p}": CHANGED_DURING_BUILD for p in self.graph.parents(uid) if p in changed or p in tainted})
        self.records.taint(marks, CHANGED_DURING_BUILD)
        for uid, parts in sorted(changed.items()):
            files = ", ".join(part.partition(":")[2] for part in parts)
            self._emit("warning", {"message": f"{self.label(uid)}: {files} changed while it was being built; the next setup builds it again"})

    def _input_changed(self, part: str) -> bool:
        kind, _, what = part.partition(":")
        if kind == "file":
            return self.hasher.changed_since_hashed(self.ctx.project_dir / what)
        if kind == "external":
            return self.hasher.changed_since_hashed(Path(what) if Path(what).is_absolute() else self.root / what)
        return False

    def _sign(self, uids: list[str]) -> None:
        """Remember each fresh table's content signature, to notice edits made outside setup."""
        keys = {self.node(u).relation.key(): u for u in uids if self.node(u).relation}
        try:
            signed = self.db.signatures(keys)
        except DatabaseError:
            return
        self.records.sign({keys[key]: signature for key, signature in signed.items()})

    # -- what the run is doing, for people watching ------------------------------------

    def step(self, text: str | None) -> None:
        """A step that may take a while begins (what it is, in words), or ends (None)."""
        self._emit("step", {"text": text})

    def phase(self, phase: str) -> None:
        """dbt's side of a step: "starting" (dbt is being loaded, seconds)."""
        if phase == "starting":
            self.step(self.dbt.starting_words())

    def progress(self, text: str, done: int, total: int) -> None:
        """Part of a step done: 'running 135 dbt tests', 40 of 135."""
        self._emit("progress", {"text": text, "done": done, "total": total})

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(kind, payload)
