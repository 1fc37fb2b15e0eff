"""What one project and its database hold, and what is stale and why: the engine's state, read without building.

The view loads this project's state for the database (build records, file hashes, the last
outcome of each test, the saved copy of the database's contents, the census it expects, the
SQL dbt compiled) and answers from it: a node's status and fingerprint, the state its readers
and tests depend on, the tables no node builds any more and those other projects claim, the
files a run reads, and what would stop the next build (``preflight``, ``build_problem``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping

from ..config import Settings
from ..errors import CensusError, DatabaseError, PlanwiseError
from ..files import read_text, write_text_atomic
from ..keys import key_path
from ..project.context import DbtContext
from ..project.fingerprints import FileHasher, Fingerprint
from ..project.inputs import searched_folders
from ..project.manifest import Node, watched_project_paths
from ..store.database import Database, DatabaseContents, profile_digest, profile_problem
from ..store.lock import RunLock
from ..store.records import PROJECT_STATE, RECORDS_FILE, BuildRecords, WrittenFiles, other_projects, project_state_dir
from .census_owner import CensusOwner
from .compiling import CompileWithDbt, Compiling
from .contents import ContentsView, Key
from .definitions import Definitions
from .hints import database_name_problem, profile_error
from .input_problems import InputProblems
from .kept_sql import KEPT_FILE, KeptSql
from .run_state import RunState, input_state_of
from .staleness import NodeStatus, Staleness
from .test_gate import OUTCOMES_FILE, TestOutcomes, gating_tests

# doit's state (watched by its own rule: see cli.witnessing) and caches, which cost time, never correctness.
CACHE_STATE = ("doit.sqlite", "file_hashes.json", "db_contents.json")


PROFILE_ACCEPTED = "profile_accepted"  # the digest of the dbt profile's DuckDB settings DuckDB last accepted


class StateView:
    """Answers what exists and what is stale (and why) for one project's nodes in one database; changes nothing."""

    def __init__(
        self,
        settings: Settings,
        ctx: DbtContext,
        definitions: Definitions,
        db: Database,
        lock: RunLock,
        run: RunState,
        compile_with_dbt: CompileWithDbt,
    ) -> None:
        self.settings, self.ctx, self.definitions, self.db, self.run = settings, ctx, definitions, db, run
        self.manifest, self.graph = definitions.manifest, definitions.graph
        # Nodes that get a task: what setup builds and what the foundation needs.
        self.task_nodes = self.graph.buildable({*definitions.setup_nodes, *definitions.foundation_nodes})
        self.db_path: Path = db.path
        self.project = self.manifest.project_name
        # This project's records and doit state for the database; the lock and the census are the database's.
        self.state_dir = state_dir = project_state_dir(settings.state_dir, self.project)
        packages = {n.package for n in self.manifest.nodes.values()} | {m.split(".")[1] for m in self.manifest.macros}
        self.records = BuildRecords.load(state_dir / RECORDS_FILE, self.project, packages)
        self.lock = lock
        self.hash_cache_path = state_dir / "file_hashes.json"
        self.hasher = FileHasher.load(self.hash_cache_path)
        # Each test's last outcome with the state of its inputs: a stored failure still gates (test_gate).
        self.test_outcomes = TestOutcomes.load(state_dir / OUTCOMES_FILE)
        self.contents = ContentsView(db, self.lock, state_dir / "db_contents.json", self._signed_keys)
        self.census = CensusOwner(
            settings, definitions, self.hasher, WrittenFiles.load(settings.state_dir / "census.json")
        )
        # SQL dbt compiled for models and tests, by compile key (kept_sql): their ``sql`` fingerprint
        # part, and what setup builds and tests without dbt.
        self.kept_sql = KeptSql(definitions.manifest_path.parent / KEPT_FILE)
        self.compiling = Compiling(definitions, self.kept_sql, run.build_id, compile_with_dbt)
        self.staleness = Staleness(
            definitions, self.contents, self.records, self.hasher, self.census.expected, self.compiling
        )
        self.inputs = InputProblems(settings, ctx, definitions)

    # -- the project's nodes -------------------------------------------------------------------

    def node(self, uid: str) -> Node:
        return self.definitions.node(uid)

    def label(self, uid: str) -> str:
        return self.definitions.label(uid)

    def names(self) -> Mapping[str, str]:
        return self.definitions.names()

    def reads_census(self, uid: str) -> bool:
        return self.definitions.reads_census(uid)

    def _signed_keys(self) -> list[Key]:
        return [
            relation.key()
            for u in self.definitions.tracked()
            if (relation := self.node(u).relation) is not None and self.node(u).resource_type != "test"
        ]

    def database_contents(self, live: bool = False) -> DatabaseContents:
        """What the database holds (``live``: open it even when the saved copy is current)."""
        return self.contents.get(live)

    def fingerprints(self) -> dict[str, Fingerprint]:
        return self.staleness.fingerprints()

    def watched_paths(self) -> list[Path]:
        """Every file and folder this run's checks read or looked for, present or not (``store.witness``):
        the configuration, the dbt project and profile, seeds, the census and other external files,
        the database file and its WAL, this project's records, the user's key."""
        settings, ctx = self.settings, self.ctx
        paths = [
            *watched_project_paths(ctx.project_dir),
            ctx.profiles_dir / "profiles.yml",
            *(folder / "profiles.yml" for folder in ctx.profiles_searched),  # one appearing earlier wins
            Path.home() / ".dbt" / "profiles.yml",
            settings.root / "setup.yaml",
            settings.root / "dbt_project.yml",
        ]
        if settings.source is not None:
            paths.append(settings.source)
        paths += self.hasher.hashed_paths()  # seeds, the census, external files
        paths += [
            settings.census.path,
            self.db_path,
            Path(f"{self.db_path}.wal"),
            key_path(),
            settings.state_dir / "census.json",
        ]
        paths += [self.state_dir / name for name in PROJECT_STATE if name not in CACHE_STATE]
        for uid in self.definitions.tracked():
            node = self.node(uid)
            if node.resource_type == "source" and node.external_location:
                paths += [*self.definitions.external_inputs(uid), *self.definitions.glob_folders(uid)]
            sql = self.compiling.compiled_sql(node) if node.is_compiled else None
            if sql:  # a glob its SQL reads searches folders: a file added there may match it
                paths += searched_folders(self.definitions.reader_paths(sql), ctx.cwd)
        return paths

    # -- what is stale, and what readers and tests depend on ------------------------------------

    def status(self, uid: str) -> NodeStatus:
        """Is the node's table up to date? No side effects."""
        outcome = self.run.outcomes.get(uid)
        if outcome is not None:
            why = "built in this run" if outcome.ok else f"{outcome.status} in this run"
            return NodeStatus(uid, True, (why,))
        return self.staleness.status(uid)

    def input_state(self, uid: str) -> str:
        """A node's inputs and, for a built table, the content it was built with."""
        return input_state_of(self.fingerprints().get(uid), self.records.get(uid))

    def test_state(self, uid: str) -> str:
        """What a test's outcome depends on: its definition and compile, and the tables it reads as they are."""
        return f"{self.input_state(uid)}|{','.join(self.input_state(p) for p in self.graph.built_parents(uid))}"

    def stored_failures(self) -> list[str]:
        """Tests whose last outcome failed with severity error, on inputs still as they were."""
        return sorted(
            uid
            for uid, outcome in self.test_outcomes.outcomes.items()
            if uid in self.manifest.nodes
            and outcome.blocks(self.node(uid))
            and self.test_outcomes.current(uid, self.test_state(uid)) is not None
        )

    def gate(self, uid: str, failing: Iterable[str]) -> str | None:
        """Why `dbt build` would not build ``uid`` after the ``failing`` tests failed (it waits for each
        test whose nodes are all among its ancestors); None when it would."""
        found = gating_tests(self.graph, self.manifest.nodes, uid, failing)
        if not found:
            return None
        return (
            f"not built: test {self.node(found[0]).name} failed (`dbt build` builds nothing downstream "
            f"of a failing test)"
        )

    # -- tables no node builds any more, and tables other projects built --------------------------

    def leftover_tables(self, scope: Iterable[str] | None = None) -> dict[Key, str]:
        """Tables this project built that none of its nodes builds now, and no other project's build record
        (or unsettled intent) claims: another project may build the same table, and built it last."""
        found = self.staleness.leftover_tables(scope)
        claimed = self.claims() if found else {}  # other projects' records are read only when it matters
        return {
            key: uid for key, uid in found.items() if all(project == self.project for project in claimed.get(key, {}))
        }

    def leftover_label(self, uid: str, key: Key) -> str:
        return self.staleness.leftover_label(uid, key)

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
        return {
            key
            for key, by in self.claims().items()
            if max(by, key=lambda p: (by[p], p == self.project)) != self.project
        }

    def other_projects_tables(self) -> dict[str, list[Key]]:
        """Tables of this database that other dbt projects built, by project: kept, never retired here."""
        tables = self.database_contents().tables
        found: dict[str, set[Key]] = {}
        for key, by in self.claims().items():
            for project in by:
                if project != self.project and key in tables:
                    found.setdefault(project, set()).add(key)
        return {project: sorted(keys) for project, keys in sorted(found.items())}

    # -- what would stop the next build ------------------------------------------------------------

    def build_problem(self) -> PlanwiseError | None:
        """What would fail every build alike (``doit status`` asks too, creating nothing): a database file
        DuckDB cannot write or dbt-duckdb cannot name, a part of dbt's profile DuckDB refuses."""
        problem = self.db.write_problem()
        if problem is not None:
            return problem
        name = database_name_problem(self.db_path)
        if name is not None:
            return DatabaseError.of(name)
        profile = self.manifest.profile
        if profile is None:
            return None
        # DuckDB accepted these settings before (a connection costs 50-80 ms): only a change is tried again.
        parts = (profile.config_options, profile.extensions, profile.settings)
        digest, accepted = profile_digest(*parts), self.state_dir / PROFILE_ACCEPTED
        if read_text(accepted) == digest:
            return None
        refused = profile_problem(*parts)
        if refused is None and self.state_dir.is_dir():  # a look at a database never built writes nothing
            try:
                write_text_atomic(accepted, digest)
            except OSError:
                pass  # tried again next time
        return profile_error(profile, refused, self.ctx) if refused is not None else None

    def preflight(self) -> list[str]:
        """What would stop setup's next run before it builds anything, found without building (``doit
        status`` asks, so "ready" means the first run can build): the generator's inputs when setup is to
        generate the census, the inputs of each stale node setup builds (a seed that is not UTF-8 or
        is malformed, a missing external file, a census breaking its contract), one line each (what fails
        every build alike, ``build_problem``, is said once beside them)."""
        problems: list[str] = []
        generating = self.census.pending() and any(self.reads_census(u) for u in self.definitions.setup_nodes)
        if generating:
            try:
                self.census.request().provenance()  # what the generator reads: the job levels seed
            except CensusError as err:
                problems.append(f"census {self.settings.census.path} cannot be generated: {err.one_line()}")
        for uid in self.definitions.setup_nodes:
            if generating and self.reads_census(uid):
                continue  # setup writes its census first
            problem = (self.inputs.of(uid) or self.inputs.seed_load_problem(uid)) if self.status(uid).stale else None
            if problem:
                problems.append(problem.one_line())
        return problems
