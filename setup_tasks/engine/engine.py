"""The setup engine of one run: the project view, the builder and retirement over one database, made once.

``Engine.open`` loads the project (definitions, computed when it changed and never running
dbt otherwise) and the database file dbt's profile writes; what the engine answers and does
is its parts': ``view`` (what exists, what is stale and why: reads only), ``builder``
(batched builds, straight in DuckDB or with dbt, recorded the moment each node is done) and
``retirement`` (tables no node builds any more). The database is read once, lazily, before
anything is built. The engine knows nothing of doit: the ``cli`` layer drives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from ..config import Settings
from ..dbt.client import DbtClient
from ..errors import ProjectError, PlanwiseError
from ..files import write_json_atomic
from ..project.context import DbtContext, DbtProfile, dbt_context, with_project_census
from ..store.database import Database, DbRelation, DropResult
from ..store.lock import RunLock
from .builder import Builder
from .definitions import Definitions
from .events import Events, Listener
from .retirement import Retirement
from .run_state import EngineOptions, RunState
from .test_runner import TestRunner
from .view import StateView


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
    """One run's doors to its project and database: the view, the builder and retirement, composed."""

    @classmethod
    def open(
        cls, settings: Settings, listeners: Iterable[Listener] = (), options: EngineOptions = EngineOptions()
    ) -> "Engine":
        """The engine of ``settings``' project: dbt parses it when it changed; its settings name the project's
        census (unless census.path is set) and the database file dbt's profile writes."""
        settings = with_project_census(settings)
        ctx = dbt_context(settings)
        dbt = DbtClient(settings.dbt.worker_idle_seconds)
        events = Events(listeners, dbt.starting_words)
        definitions = Definitions.load(settings, ctx, dbt, events.step)
        return cls(database_settings(settings, definitions.manifest.profile), ctx, dbt, definitions, events, options)

    def __init__(
        self,
        settings: Settings,
        ctx: DbtContext,
        dbt: DbtClient,
        definitions: Definitions,
        events: Events,
        options: EngineOptions = EngineOptions(),
    ) -> None:
        self.settings, self.ctx, self.dbt, self.definitions, self.events = settings, ctx, dbt, definitions, events
        self.step = events.step
        self.db_path: Path = settings.database.path  # type: ignore[assignment]  # database_settings resolved database.path
        # SQL's relative paths resolve where dbt runs; a lock held by setup's own worker is freed, not blamed
        # one building run per database file, and none while another run has it open
        lock = RunLock(settings.state_dir / "run.lock", self.db_path)
        self.db = Database(
            self.db_path, ctx.duckdb_config(), files_from=ctx.cwd, locked_by=dbt.free_database, before_open=lock.share
        )
        self.run = RunState()
        self.view = view = StateView(
            settings,
            ctx,
            definitions,
            self.db,
            lock,
            self.run,
            lambda nodes, on_outcome: self.builder.compile_with_dbt(nodes, on_outcome),
        )
        # A command that only looks at a database not built yet writes no state beside it.
        self.keep_state = not (options.looks_only and not self.db_path.exists())
        self.builder = Builder(view, dbt, events, bool(settings.setup.fail_fast) and not options.keep_going)
        self.retirement = Retirement(view, self.builder.intents, events)
        self.tests = TestRunner(view, dbt, events, self.builder.intents, self.builder.recorder)
        # The parts callers read (what the project and this project's state for the database are).
        self.root: Path = settings.root
        self.manifest, self.graph = definitions.manifest, definitions.graph
        self.setup_nodes, self.foundation_nodes, self.task_nodes = (
            definitions.setup_nodes,
            definitions.foundation_nodes,
            view.task_nodes,
        )
        self.project, self.state_dir, self.lock, self.records = view.project, view.state_dir, view.lock, view.records
        self.hasher, self.census = view.hasher, view.census
        # The view's answers: what the project and the database hold, what is stale and why.
        self.node, self.label, self.names, self.reads_census = view.node, view.label, view.names, view.reads_census
        self.status, self.fingerprints, self.database_contents = view.status, view.fingerprints, view.database_contents
        self.test_state = view.test_state
        self.leftover_tables, self.leftover_label = view.leftover_tables, view.leftover_label
        self.built_by_others, self.other_projects_tables = view.built_by_others, view.other_projects_tables
        self.build_problem, self.preflight = view.build_problem, view.preflight
        # What changes them (the rest is the builder's and retirement's): what a check needs built.
        self.ensure = self.builder.ensure

    def close(self) -> None:
        """Keep what this run learnt, and let other runs build this database again."""
        try:
            self.save_caches()  # may read the database once more (its contents, to save)
        finally:
            self.db.close_reader()  # last: a library caller opens the file next, maybe read-write
            self.lock.release()

    def save_caches(self) -> None:
        """Signatures of builds, the database contents, graph answers and file hashes, at the end of a run."""
        view = self.view
        self.definitions.save()  # beside the manifest, not the database
        view.kept_sql.save()
        if not self.keep_state:
            return
        try:
            self.records.flush()
            view.contents.save()
            view.test_outcomes.save()
        except (OSError, PlanwiseError):
            pass  # a lost signature costs a rebuild, a lost copy of the contents a read
        if self.hasher.dirty:
            try:
                write_json_atomic(self.view.hash_cache_path, self.hasher.cache)
                self.hasher.dirty = False
            except OSError:
                pass

    # -- who watches the run, and what changes the database's state beyond builds --------------------

    def listen(self, listener: Listener, dbt_lines: Callable[[str], None] | None = None) -> None:
        self.events.listen(listener, dbt_lines)

    @property
    def quiet(self) -> bool:
        return self.events.quiet

    @property
    def log(self) -> Callable[[str], None] | None:
        return self.events.log

    def run_tests(self, uids: list[str], what: str) -> dict[str, Any]:
        """The dbt-tests check's door: run these tests (``TestRunner``), each outcome by unique id."""
        return self.tests.run(uids, what, self.definitions.manifest_path)

    def refresh_compiled(self) -> list[str]:
        """dbt compiled nodes of this run whose ``sql`` part was unknown: fingerprints say what it compiled."""
        return self.view.staleness.refresh_compiled()

    def census_written(self) -> None:
        """The census task wrote the file: fingerprints that hashed the old one are void."""
        self.census.written()
        self.view.staleness.invalidate()

    def force(self, uids: Iterable[str]) -> list[str]:
        """`doit forget`: these nodes are rebuilt by the next setup. Returns those that had been built."""
        return self.records.force([u for u in uids if u in self.manifest.nodes])

    def drop_tables(self, wanted: Callable[[DbRelation], bool]) -> DropResult:
        return self.view.contents.drop(wanted)
