"""The setup engine of one run: staleness of every node, and batched builds.

Definitions (manifest, graph, selections) are computed when the engine is made and
never run dbt unless the project changed. The database is read once, lazily, before
anything is built. Building a stale node builds, in one dbt invocation, every stale
node of the groups doit was asked to run, and records each one durably the moment
dbt reports it done. The engine knows nothing of doit: the ``cli`` layer drives it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..config import Settings
from ..dbt.client import DbtClient
from ..dbt.invoke import NodeOutcome
from ..errors import CensusError, DatabaseError, DatabaseLockedError, ProjectError, RunInProgressError, SetupError, WriteError
from ..project.context import DbtProfile, dbt_context, with_project_census
from ..project.fingerprints import CHANGED_DURING_BUILD, CONTENT_PREFIX, FileHasher, Fingerprint
from ..project.inputs import first_ragged_row, not_utf8, searched_folders, sql_path_problem
from ..project.manifest import Node, watched_project_paths
from ..store.database import Database, DatabaseContents, DbRelation, DropResult, Reader, profile_problem
from ..files import log, write_json_atomic
from ..keys import key_path
from ..store.lock import RunLock
from ..store.records import (ASIDE_SUFFIX, PROJECT_STATE, RECORDS_FILE, BuildRecord, BuildRecords, WrittenFiles, new_build_id,
                             other_projects, project_state_dir)
from .census import census_contract_problem, inspect_census
from . import direct_build
from .census_owner import CensusOwner
from .contents import ContentsView, Key
from .definitions import Definitions
from .compiling import Compiling
from .direct_tests import run_direct, why_not_direct as test_not_direct
from .kept_sql import KEPT_FILE, KeptSql
from .test_gate import OUTCOMES_FILE, TestOutcomes, batch_tests, gating_tests
from .hints import NodeFailure, SeedFile, database_name_problem, explain, profile_error
from .staleness import NodeStatus, Staleness

Listener = Callable[[str, dict[str, Any]], None]
# The names dbt gives a table while it builds it, besides its own, and setup's name for a relation it
# moved aside while dbt builds its node afresh.
PREVIOUS = ASIDE_SUFFIX
DBT_INTERMEDIATES = ("", "__dbt_tmp", "__dbt_backup", PREVIOUS)
# Materializations that build their relation from nothing whatever exists (no need to move it aside).
FRESH_MATERIALIZATIONS = ("table", "view", "ephemeral", "snapshot")
# DuckDB's error for a table that is not there (yet): "Catalog Error: Table with name x does not exist!"
MISSING_TABLE_RE = re.compile(r"Table with name (?P<table>\w+) does not exist", re.I)
# doit's state (watched by its own rule: see cli.app) and caches, which cost time, never correctness.
CACHE_STATE = ("doit.sqlite", "file_hashes.json", "db_contents.json")
DATABASE_NAME_FIX = ("set database.path (or DUCKDB_PATH) to a file named with letters, digits and underscores, "
                     "e.g. simulation.duckdb")


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
    # Models and tests dbt compiled without building them, their compile context having changed.
    compiles: int = 0
    # Tests run inside this run's builds (right after the nodes they read, as `dbt build` runs them).
    test_outcomes: dict[str, NodeOutcome] = field(default_factory=dict)
    # Staleness doit saw for each node it considered (reasons go into the run report).
    checked: dict[str, NodeStatus] = field(default_factory=dict)
    callback_errors: list[str] = field(default_factory=list)
    # Tables dropped because their node left the project.
    retired: list[str] = field(default_factory=list)
    # Nodes stale only for an upstream node a batch rebuilt first (``Staleness.waits_on``): those its
    # rebuild left with the same content to read are kept (early cutoff).
    deferred: set[str] = field(default_factory=set)
    kept: list[str] = field(default_factory=list)
    # Why nothing more of this run can work (the database is locked, another setup run holds it).
    fatal: SetupError | None = None
    # The run may build: its lock, the database file and dbt's profile were checked (Engine._ready_to_build).
    ready: bool = False


def input_state_of(fingerprint: Fingerprint | None, record: BuildRecord | None) -> str:
    """What a reader of a node depends on: for a table built under this fingerprint, the content it holds
    (a rebuild to the same content changes nothing for its readers); else its fingerprint, and the content
    it was last built with."""
    digest = fingerprint.digest if fingerprint is not None else "untracked"
    if record is not None and record.signature and record.fingerprint == digest:
        return CONTENT_PREFIX + record.signature
    return f"{digest}:{record.signature if record and record.signature else ''}"


def database_settings(settings: Settings, profile: DbtProfile | None) -> Settings:
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

    def __init__(self, settings: Settings, listeners: Iterable[Listener] = (), keep_state: bool = True) -> None:
        # False for a command that only looks at a database not built yet: it writes no state.
        self.keep_state = keep_state
        settings = with_project_census(settings)  # the project's own census file, unless census.path is set
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
        self.db_path: Path = settings.database.path  # type: ignore[assignment]  # database_settings resolved database.path
        # SQL's relative paths resolve where dbt runs; a lock held by setup's own worker is freed, not blamed
        self.db = Database(self.db_path, self.ctx.duckdb_config(), files_from=self.ctx.cwd, locked_by=self.dbt.free_database)
        self.project = self.manifest.project_name
        # This project's records and doit state for the database; the lock and the census are the database's.
        self.state_dir = state_dir = project_state_dir(settings.state_dir, self.project)
        packages = {n.package for n in self.manifest.nodes.values()} | {m.split(".")[1] for m in self.manifest.macros}
        self.records = BuildRecords.load(state_dir / RECORDS_FILE, self.project, packages)
        self.lock = RunLock(settings.state_dir / "run.lock", self.db_path)  # one writer per database file
        self._hash_cache_path = state_dir / "file_hashes.json"
        self.hasher = FileHasher.load(self._hash_cache_path)
        # Each test's last outcome with the state of its inputs: a stored failure still gates (test_gate).
        self.test_outcomes = TestOutcomes.load(state_dir / OUTCOMES_FILE)
        self.contents = ContentsView(self.db, self.lock, state_dir / "db_contents.json", self._signed_keys)
        self.census = CensusOwner(settings, self.definitions, self.hasher,
                                  WrittenFiles.load(settings.state_dir / "census.json"))
        self.run = RunState()
        # SQL dbt compiled for models and tests, by compile key (kept_sql): their ``sql`` fingerprint
        # part, and what setup builds and tests without dbt.
        self.kept_sql = KeptSql(self.manifest_path.parent / KEPT_FILE)
        self.compiling = Compiling(self.definitions, self.kept_sql, self.run.build_id, self._compile_with_dbt)
        self.staleness = Staleness(self.definitions, self.contents, self.records, self.hasher, self.census.expected,
                                   self.compiling)
        self.quiet = True
        self.log: Callable[[str], None] | None = None  # takes dbt's own lines (-v 2)
        # setup.fail_fast: after a failed node no further dbt run starts (doit --continue turns it off).
        self.fail_fast = bool(settings.setup.fail_fast)
        self._record_lock = threading.Lock()

    def close(self) -> None:
        """Keep what this run learnt, and let other runs build this database again."""
        try:
            self.save_caches()  # may read the database once more (its contents, to save)
        finally:
            self.db.close_reader()  # last: a library caller opens the file next, maybe read-write
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
            self.test_outcomes.save()
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

    def names(self) -> Mapping[str, str]:
        return self.definitions.names()

    def reads_census(self, uid: str) -> bool:
        return self.definitions.reads_census(uid)

    def _signed_keys(self) -> list[Key]:
        return [self.node(u).relation.key() for u in self.definitions.tracked()  # type: ignore[union-attr]  # node(u).relation checked in the condition
                if self.node(u).relation and self.node(u).resource_type != "test"]

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
                 *(folder / "profiles.yml" for folder in ctx.profiles_searched),  # one appearing earlier wins
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
                paths += [*self.definitions.external_inputs(uid), *self.definitions.glob_folders(uid)]
            sql = self.compiling.compiled_sql(node) if node.is_compiled else None
            if sql:  # a glob its SQL reads searches folders: a file added there may match it
                paths += searched_folders(self.definitions.reader_paths(sql), ctx.cwd)
        return paths

    def input_state(self, uid: str) -> str:
        """A node's inputs and, for a built table, the content it was built with."""
        return input_state_of(self.fingerprints().get(uid), self.records.get(uid))

    def test_state(self, uid: str) -> str:
        """What a test's outcome depends on: its definition and compile, and the tables it reads as they are."""
        return f"{self.input_state(uid)}|{','.join(self.input_state(p) for p in self.graph.built_parents(uid))}"

    def note_tests(self, outcomes: Iterable[NodeOutcome]) -> None:
        """Tests that ran (in a build or in the dbt_tests check): their outcomes, kept with their inputs' state."""
        for outcome in outcomes:
            self.test_outcomes.put(outcome.unique_id, outcome.status, self.test_state(outcome.unique_id))

    def stored_failures(self) -> list[str]:
        """Tests whose last outcome failed with severity error, on inputs still as they were."""
        return sorted(uid for uid, outcome in self.test_outcomes.outcomes.items()
                      if uid in self.manifest.nodes and outcome.blocks(self.node(uid))
                      and self.test_outcomes.current(uid, self.test_state(uid)) is not None)

    def gate(self, uid: str, failing: Iterable[str]) -> str | None:
        """Why `dbt build` would not build ``uid`` after the ``failing`` tests failed (it waits for each
        test whose nodes are all among its ancestors); None when it would."""
        found = gating_tests(self.graph, self.manifest.nodes, uid, failing)
        if not found:
            return None
        return (f"not built: test {self.node(found[0]).name} failed (`dbt build` builds nothing downstream "
                f"of a failing test)")

    def refresh_compiled(self) -> list[str]:
        """dbt compiled nodes of this run whose ``sql`` part was unknown: fingerprints say what it compiled."""
        return self.staleness.refresh_compiled()

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
        if status.unique_id in self.run.deferred and not status.stale and status.unique_id not in self.run.outcomes:
            self.run.kept.append(status.unique_id)  # early cutoff: what it reads came out the same

    def leftover_tables(self, scope: Iterable[str] | None = None) -> dict[Key, str]:
        """Tables this project built that none of its nodes builds now, and no other project's build record
        (or unsettled intent) claims: another project may build the same table, and built it last."""
        found = self.staleness.leftover_tables(scope)
        claimed = self.claims() if found else {}  # other projects' records are read only when it matters
        return {key: uid for key, uid in found.items() if all(project == self.project for project in claimed.get(key, {}))}

    def claims(self) -> dict[Key, dict[str, float]]:
        """Every table a build record of this database claims: project -> when it last built it (an intent,
        a build under way or killed, counts as now)."""
        found: dict[Key, dict[str, float]] = {}

        def claim(project: str, key: Key | None, when: float) -> None:
            if key is not None:
                by = found.setdefault(tuple(key), {})  # type: ignore[arg-type]
                by[project] = max(by.get(project, 0.0), when)

        for name, records in [(self.project, self.records), *other_projects(self.settings.state_dir, self.project)]:
            for rec in records.records.values():
                claim(str(rec.project or name), rec.relation, rec.built_at)
            for keys in records.intents.values():
                for key in keys:
                    claim(name, key, math.inf)
        return found

    def built_by_others(self) -> set[Key]:
        """Tables another project built last (by the build records): never this project's to drop."""
        return {key for key, by in self.claims().items() if max(by, key=lambda p: (by[p], p == self.project)) != self.project}

    def other_projects_tables(self) -> dict[str, list[Key]]:
        """Tables of this database that other dbt projects built, by project: kept, never retired here."""
        tables = self.database_contents().tables
        found: dict[str, set[Key]] = {}
        for key, by in self.claims().items():
            for project in by:
                if project != self.project and key in tables:
                    found.setdefault(project, set()).add(key)
        return {project: sorted(keys) for project, keys in sorted(found.items())}

    def leftover_label(self, uid: str, key: Key) -> str:
        return self.staleness.leftover_label(uid, key)

    def retire_leftovers(self) -> list[str]:
        """Drop the leftover tables of this run's scope; forget the builds of retired nodes;
        drop the schemas setup created that are left empty.

        Returns the dropped tables. A table another node now builds (same name) is
        kept. A drop the database refuses keeps its record, so the next run tries again.
        """
        self.restore_aside()
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
            if self.fail_fast and failed is not None and uid not in self.run.deferred:  # deferred: of a batch begun before
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
            return DatabaseError(name, DATABASE_NAME_FIX)
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

    def batch_for(self, uid: str, defer: bool = True) -> list[str]:
        """This node plus every stale node in scope that can build now.

        Readers of a census that the census task has yet to write wait for their own
        task (after it), with everything downstream of them. With ``defer``, so does a
        node stale only for what this batch rebuilds (``_waits``: early cutoff).
        """
        scope = self.run.scope | {uid}
        waiting: set[str] = set()
        if self.census.pending():
            readers = {u for u in scope if self.reads_census(u)}
            waiting = readers | self.graph.descendants(readers)
        batch: list[str] = []
        later = {u for u in self.run.deferred if u not in self.run.outcomes}
        # After a failure with setup.fail_fast, only what a batch begun before deferred still builds.
        stopping = self.fail_fast and self.first_failure() is not None
        for u in self.setup_nodes_and(uid):
            if u not in scope or u in self.run.outcomes or (u != uid and u in waiting) or (stopping and u not in later):
                continue
            status = self.status(u)
            if defer and u != uid and status.stale and self._waits(u, batch, later):
                later.add(u)
                self.run.deferred.add(u)  # built later, if what it reads comes out different
            elif u == uid or status.stale:
                self.run.checked.setdefault(u, status)  # its reason, for the run report
                batch.append(u)
        return batch

    def _waits(self, uid: str, batch: list[str], later: set[str]) -> bool:
        """Does the node wait for a later batch: it reads a node that does, or it is stale only for upstream
        nodes this batch rebuilds first (if they come out the same, it is up to date)?"""
        if set(self.graph.parents(uid)) & later:
            return True
        upstream = self.staleness.waits_on(uid)
        return upstream is not None and upstream <= {*batch, *later}


    def setup_nodes_and(self, uid: str) -> list[str]:
        return self.task_nodes if uid in self.task_nodes else self.graph.buildable({*self.task_nodes, uid})

    def _build_batch(self, uid: str) -> None:
        status = self.status(uid)
        if status.error is not None:
            raise status.error
        self.lock.acquire()
        self.database_contents(live=True)  # a build needs the file: is it free? (a saved snapshot cannot tell)
        self.fingerprints()  # read the database and inputs before dbt holds the file
        before = set(self.run.deferred)
        runnable, tests, blocked, direct = self._plan(uid, defer=True)
        if direct is None and runnable and self.run.deferred - before:
            # dbt builds this batch: one dbt run costs more than what waits for it, so it goes along
            self.run.deferred = before
            runnable, tests, more, direct = self._plan(uid, defer=False)
            blocked |= more  # the first plan's preflight failed or skipped them: not in this plan
            tests = [t for t in tests if not set(self.graph.built_parents(t)) & blocked]
        self._emit("batch", {"nodes": runnable, "blocked": sorted(blocked), "without_dbt": direct is not None,
                             "tests": tests})
        if runnable:
            self.intend([self.node(u) for u in [*runnable, *tests]])
            self.restore_aside()  # what a run killed while it had relations moved aside left: back first
            self._say_implied_order(runnable)
            self.db.close_reader()  # dbt writes the file, here or in the worker
            try:
                retry = self._build_direct(*direct) if direct is not None else [*runnable, *tests]
                if retry:
                    self._build_with_dbt(retry)
            finally:  # dbt did not start skipped nodes; a failed one may have committed (a post-hook failed)
                self.records.settle(u for u in runnable if u in self.run.outcomes and self.run.outcomes[u].status == "skipped")
                self.contents.invalidate(self._written(runnable))  # the next question reads what it holds now
            built = [u for u in runnable if self.run.outcomes.get(u, Outcome(u, "x")).ok]
            self._sign(built)
            self.staleness.settle(built)  # records and fingerprints name the content built now
            self._check_inputs(built)  # first: it compares files with what this run hashed
            self.refresh_compiled()  # later batches and checks see what dbt compiled for these
            self.note_tests(self.run.test_outcomes[t] for t in tests if t in self.run.test_outcomes)
        for u in runnable:
            if u not in self.run.outcomes:
                self._set(Outcome(u, "skipped", "not built: an upstream node failed"))

    def _plan(self, uid: str, defer: bool) -> tuple[list[str], list[str], set[str], tuple[list[direct_build.DirectNode], list[direct_build.DirectTest]] | None]:
        """The batch for ``uid``: the nodes that can run, their tests, those its preflight blocked, and how to
        build it without dbt (None: dbt builds it)."""
        batch = self.batch_for(uid, defer)
        tests = self.batch_tests(batch)
        blocked = self._preflight(batch, tests)
        runnable = [u for u in batch if u not in blocked]
        tests = [t for t in tests if not set(self.graph.built_parents(t)) & blocked]
        return runnable, tests, blocked, self.direct_batch(runnable, tests) if runnable else None

    def batch_tests(self, batch: list[str]) -> list[str]:
        """The tests a batch runs, each right after the nodes it reads: those reading a node of the batch,
        and those a node of it waits for in `dbt build` whose outcome on their inputs as they are is not
        known (a failure there skips what is downstream, as dbt does)."""
        scope = self.definitions.tests()
        reading = batch_tests(self.graph, scope, batch)
        upstream = self.graph.ancestors(batch)
        known = set(reading)
        gating = [t for t in scope if t not in known and self.node(t).depends_on and set(self.node(t).depends_on) <= upstream
                  and self.test_outcomes.current(t, self.test_state(t)) is None]
        return reading + gating

    def _written(self, uids: list[str]) -> list[Key] | None:
        """The tables a build of these nodes writes: theirs, unless a hook (on-run-start/end, a node's pre- or
        post-hook) may write any other (None)."""
        nodes = [self.node(u) for u in uids]
        if any(n.resource_type == "operation" for n in self.manifest.nodes.values()) or any(
                n.config.get(hook) for n in nodes for hook in ("pre-hook", "post-hook", "pre_hook", "post_hook")):
            return None
        return [n.relation.key() for n in nodes if n.relation is not None]

    def _on_start(self, uid: str) -> None:
        self._emit("start", {"unique_id": uid})

    def _build_direct(self, items: list[direct_build.DirectNode], tests: list[direct_build.DirectTest]) -> list[str]:
        """Build the batch straight in DuckDB, each test right after what it reads; returns what dbt must
        build or run after all: the nodes that failed here and what depends on them, and what a test's
        failing query handed over. A shortcut's failure is never reported as the node's: dbt builds it,
        and its outcome is the node's."""
        uids = [item.node.unique_id for item in items]
        test_ids = [t.node.unique_id for t in tests]
        parents = {u: self.graph.built_parents(u) for u in [*uids, *test_ids]}
        missed: set[str] = set()  # dbt's to build: failed here, or skipped for what failed here

        def outcome(result: NodeOutcome) -> None:
            uid = result.unique_id
            if result.status == "success" or (result.status != "error" and not set(parents[uid]) & missed):
                self._on_dbt_outcome(result)  # built, a test's outcome, or skipped after a failing test
            else:
                missed.add(uid)

        profile = self.manifest.profile
        connection = profile.connection if profile is not None else None
        try:
            assert connection is not None
            handed = direct_build.build(lambda: self.db.dbt_session(connection), items, parents, outcome, self._on_start,
                                        tests, self._run_test, self.gate)
        except DatabaseError as err:  # the connection cannot be made as dbt-duckdb makes it: dbt builds all
            log.info("dbt builds %s: %s", ", ".join(uids), err.cause)
            return [u for u in [*uids, *test_ids] if u not in self.run.outcomes and u not in self.run.test_outcomes]
        self.run.direct_builds += sum(1 for u in uids if u in self.run.outcomes)
        self.run.direct_tests += sum(1 for t in test_ids if t in self.run.test_outcomes)
        retry = missed | set(handed)
        return [u for u in [*uids, *test_ids] if u in retry]

    def _run_test(self, con: Any, test: direct_build.DirectTest) -> NodeOutcome:
        return run_direct(Reader(con, self.db_path), test.node, test.sql)

    def _build_with_dbt(self, uids: list[str]) -> None:
        """One dbt invocation over the nodes, as a fresh `dbt build` builds them: a node whose materialization
        builds on its existing relation (a seed's table is refilled, an incremental model merged into) has
        that relation moved aside first and dropped once dbt built it (put back when it failed)."""
        nodes = [self.node(u) for u in uids]
        self.run.invocations += 1
        aside = self._move_aside([n for n in nodes if n.resource_type != "test"])
        try:
            self.dbt.build_nodes(
                self.ctx, self.manifest_path, nodes, self._on_dbt_outcome, quiet=self.quiet,
                on_start=self._on_start, dbt_lines=self.log, on_phase=self.phase,
                edges=self.graph.implied_edges(uids),
            )
        finally:
            if aside:
                self._settle_aside(aside)

    def _say_implied_order(self, uids: list[str]) -> None:
        """A node reading a seed's (or model's) table through source() builds after it here, where a plain
        `dbt build` does not know that order (and may fail): said, so that nobody relies on it unawares."""
        for reader, builder in self.graph.implied_edges(uids):
            self._emit("warning", {"message": (
                f"{self.label(reader)} reads {self.label(builder)} through source(): setup builds "
                f"{self.label(builder)} first, a plain `dbt build` does not know that order -- fix: "
                f"write {{{{ ref('{self.node(builder).name}') }}}} in {self.node(reader).path}")})

    def _move_aside(self, nodes: list[Node]) -> dict[str, Key]:
        """Rename the existing relation of each node whose materialization reads it (seeds, incremental and
        custom materializations) to its ``__setup_prev`` name, as if it was not there: what a fresh build
        sees. Returns node -> the relation moved aside."""
        wanted = {n.unique_id: n.relation.key() for n in nodes
                  if n.relation is not None and n.materialized not in FRESH_MATERIALIZATIONS}
        if not wanted:
            return {}
        self.records.set_aside(wanted.values(), True)  # first: a run killed from here on leaves them known
        return self.contents.move_aside(wanted, PREVIOUS)

    def _settle_aside(self, aside: dict[str, Key]) -> None:
        """Drop what was moved aside for nodes dbt built; put it back for the others (they keep what they had)."""
        built = {u for u in aside if self.run.outcomes.get(u, Outcome(u, "x")).ok}
        self.contents.settle_aside({u: (key, u in built) for u, key in aside.items()}, PREVIOUS)
        self.records.set_aside(aside.values(), False)

    def restore_aside(self) -> None:
        """What a run killed while it had relations moved aside left: each put back where its relation is
        missing (the table it had), dropped where dbt had built it meanwhile."""
        if self.records.aside:
            self.contents.restore_aside(sorted(self.records.aside), PREVIOUS)
            self.records.set_aside(list(self.records.aside), False)

    def direct_batch(self, uids: list[str], tests: list[str] = ()) -> tuple[list[direct_build.DirectNode], list[direct_build.DirectTest]] | None:  # type: ignore[assignment]
        """The batch in build order and its tests, when every node of it can be built and every test run
        without dbt (see ``direct_build``, ``direct_tests``); None when dbt builds it
        (``PLANWISE_SETUP_DIRECT=0`` always)."""
        if self.ctx.environ().get(direct_build.DIRECT_ENV, "1") == "0":
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
            sql = self.compiling.sql(uid)
            if sql is None:
                return None
            items.append(direct_build.DirectNode(node, sql=sql))
        environ = self.ctx.environ()
        checks = []
        for uid in tests:
            sql = self.compiling.sql(uid)
            if sql is None or test_not_direct(self.node(uid), self.manifest, environ) is not None:
                return None
            checks.append(direct_build.DirectTest(self.node(uid), sql, tuple(self.graph.built_parents(uid))))
        return items, checks

    def intend(self, nodes: list[Node]) -> None:
        """Write down, before dbt runs, every table it may commit (dbt's intermediate names
        too; a test storing its failures, its audit table) and every schema it may create: a
        run killed at any instant leaves nothing a later run does not know of, and a table
        nothing writes any more (a test that stopped storing failures) is dropped as a leftover."""
        relations = {
            n.unique_id: [key[:2] + (key[2] + suffix,) for suffix in
                          (DBT_INTERMEDIATES if n.resource_type != "test" else ("",))]
            for n in nodes if n.relation is not None for key in [n.relation.key()]
        }
        if not relations:
            return
        existing = self.database_contents().schemas
        schemas = {key[:2] for keys in relations.values() for key in keys} - existing
        self.records.intend(relations, {s for s in schemas if s[1] != "main"})

    def preflight(self) -> list[str]:
        """What would stop setup's next run before it builds anything, found without building (``doit
        status`` asks, so "ready" means the first run can build): the generator's inputs when setup is to
        generate the census, the inputs of each stale node setup builds (a seed that is not UTF-8 or
        is malformed, a missing external file, a census breaking its contract), one line each (what fails
        every build alike, ``build_problem``, is said once beside them)."""
        problems: list[str] = []
        generating = self.census.pending() and any(self.reads_census(u) for u in self.setup_nodes)
        if generating:
            try:
                self.census.request().provenance()  # what the generator reads: the job levels seed
            except CensusError as err:
                problems.append(f"census {self.settings.census.path} cannot be generated: {err.one_line()}")
        for uid in self.setup_nodes:
            if generating and self.reads_census(uid):
                continue  # setup writes its census first
            problem = (self._input_problem(uid) or self.seed_load_problem(uid)) if self.status(uid).stale else None
            if problem:
                problems.append(problem)
        return problems

    def _preflight(self, batch: list[str], tests: list[str]) -> set[str]:
        """Fail nodes whose inputs are unusable before dbt sees them; skip their children, and the nodes
        `dbt build` would not build after a test that failed and is not run again in this batch."""
        failed: dict[str, str] = {}
        for uid in batch:
            problem = self._input_problem(uid)
            if problem:
                failed[uid] = problem
        blocked = set(failed)
        stored = [t for t in self.stored_failures() if t not in tests]
        for uid in batch if stored else ():
            why = self.gate(uid, stored)
            if why is not None and uid not in blocked:
                blocked.add(uid)
                self._set(Outcome(uid, "skipped", why))
        for uid, message in failed.items():
            self._set(Outcome(uid, "error", message))
            for child in sorted(self.graph.descendants([uid]) & set(batch)):
                if child not in blocked:
                    blocked.add(child)
                    self._set(Outcome(child, "skipped", f"not built: {self.label(uid)} failed"))
        return blocked

    def malformed_seed(self, uid: str) -> str | None:
        """Where a seed's CSV has a row of another length than its header (Python's CSV reader, as agate reads
        it), in one line with the fix; None when none has. Said when a load failed: whether a file with such
        a row loads at all is dbt's (DuckDB's) answer, not a pre-check's."""
        node = self.node(uid)
        if node.resource_type != "seed" or not node.path:
            return None
        delimiter = node.config.get("delimiter")
        delimiter = "," if delimiter is None else str(delimiter)
        problem = first_ragged_row(self.ctx.project_dir / node.path, delimiter) if len(delimiter) == 1 else None
        return (f"seed {node.name}: malformed CSV {self.ctx.project_dir / node.path} {problem} -- fix: correct that row "
                "(every row needs the header's number of fields)") if problem else None

    def seed_load_problem(self, uid: str) -> str | None:
        """Why loading the seed as dbt-duckdb loads it would fail now (tried in a database in memory, the way
        ``direct_build`` loads it), in one line; None when it loads (or dbt, not setup, would load it)."""
        node = self.node(uid)
        if node.resource_type != "seed" or not node.path or direct_build.seed_problem(node) is not None:
            return None
        message = direct_build.dry_run_seed(node, self.ctx.project_dir / node.path)
        if message is None:
            return None
        return self.malformed_seed(uid) or f"seed {node.name}: {node.path} does not load: {message} -- fix: correct {node.path}"

    def _input_problem(self, uid: str) -> str | None:
        node = self.node(uid)
        if node.resource_type == "seed" and node.path:
            path = self.ctx.project_dir / node.path
            encoding = not_utf8(path)
            if encoding:
                return (f"seed {node.name}: {path} is not UTF-8 text ({encoding}) -- fix: save {node.path} with UTF-8 "
                        "encoding (it looks like Latin-1 or Windows-1252 text)")
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
        self.compiling.keep(result)
        node = self.manifest.nodes.get(result.unique_id)
        if node is not None and node.resource_type == "test":  # a test of the batch: the dbt_tests check reports it
            self.run.test_outcomes[result.unique_id] = result
            self._emit("test", {"unique_id": result.unique_id})
            return
        status = result.status if result.status in ("success", "error", "skipped") else "error"
        message = result.message if status != "success" else ""
        if status == "skipped":  # dbt skipped it: after a failing test, say which
            failing = [t for t, o in self.run.test_outcomes.items() if o.status in ("fail", "error")]
            message = self.gate(result.unique_id, failing) or message
        if status == "error":
            uid = result.unique_id
            message = self.unbuilt_input(uid, result.message) or self.malformed_seed(uid) or explain(self.failure(uid, result.message), self.ctx,
                                                                         self.db_path)
        self._set(Outcome(result.unique_id, status, message, result.seconds, result.rows))

    def _compile_with_dbt(self, nodes: Any, on_outcome: Callable[[Any], None]) -> bool:
        """dbt compiles nodes whose compile key changed (``compiling``). Not on a first build: there
        dbt compiles each node as it builds it, and keeps its SQL then."""
        if not self.records.records:
            return False
        self.db.close_reader()
        self.step(f"compiling {len(nodes)} model(s) and test(s) whose compile context changed")
        try:
            self.dbt.compile_nodes(self.ctx, self.manifest_path, list(nodes), on_outcome, quiet=self.quiet,
                                   dbt_lines=self.log, on_phase=self.phase)
        finally:
            self.step(None)
        self.run.compiles += len(nodes)
        return True

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
                built = {u: rec.fingerprint for u, o in self.run.outcomes.items() if o.ok and (rec := self.records.get(u))}
                fp = self.staleness.rebuilt(outcome.unique_id, built)
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
        self.staleness.invalidate()  # their readers read nothing current either
        for uid, parts in sorted(changed.items()):
            files = ", ".join(part.partition(":")[2] for part in parts)
            self._emit("warning", {"message": f"{self.label(uid)}: {files} changed while it was being built; the next setup builds it again"})

    def _input_changed(self, part: str) -> bool:
        kind, _, what = part.partition(":")
        if kind == "file":
            return self.hasher.changed_since_hashed(self.ctx.project_dir / what)
        if kind == "external":  # named relative to the project (FingerprintCalculator._display)
            return self.hasher.changed_since_hashed(Path(what) if Path(what).is_absolute() else self.ctx.project_dir / what)
        return False

    def _sign(self, uids: list[str]) -> None:
        """Remember each fresh table's content signature, to notice edits made outside setup."""
        keys = {self.node(u).relation.key(): u for u in uids if self.node(u).relation}  # type: ignore[union-attr]  # node(u).relation checked in the condition
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
