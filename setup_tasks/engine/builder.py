"""Builds stale nodes in batches: once per run the checks every build needs, then each batch straight in DuckDB
or in one dbt invocation (its tests right after what they read), recorded node by node as each is done."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ..dbt.client import DbtClient
from ..dbt.invoke import NodeOutcome
from ..errors import (
    DatabaseError,
    DatabaseLockedError,
    DatabaseUnopenable,
    PlanwiseError,
    RunInProgressError,
    one_line,
)
from ..files import log
from ..store.database import Reader
from . import direct_build
from .batching import BatchPlanner
from .contents import Key
from .direct_tests import run_direct
from .events import Events
from .intents import WriteIntents
from .recording import BuildRecorder
from .run_state import Outcome
from .view import StateView


Direct = tuple[list[direct_build.DirectNode], list[direct_build.DirectTest]]  # a batch DuckDB builds without dbt


class Builder:
    """Makes stale nodes' tables up to date: one batch of every stale node in scope per build."""

    def __init__(self, view: StateView, dbt: DbtClient, events: Events, fail_fast: bool) -> None:
        self.view, self.dbt, self.events = view, dbt, events
        self.run = view.run
        # setup.fail_fast (unless doit --continue): after a failed node no further dbt run starts.
        self.fail_fast = fail_fast
        self.batches = BatchPlanner(view)
        self.recorder = BuildRecorder(view, events)
        self.intents = WriteIntents(view)

    def add_scope(self, uids: Iterable[str]) -> None:
        """Nodes doit will run in this invocation: one stale node builds them all at once."""
        self.run.scope.update(uids)

    def build(self, uid: str) -> Outcome:
        """Make the node's table up to date, building with it every stale node in scope."""
        if uid not in self.run.outcomes:
            failed = self.first_failure()
            if (
                self.fail_fast and failed is not None and uid not in self.run.deferred
            ):  # deferred: of a batch begun before
                self.recorder.set(
                    Outcome(
                        uid, "skipped", f"not built: stopped after {self.view.label(failed)} failed (setup.fail_fast)"
                    )
                )
                return self.run.outcomes[uid]
            try:
                self._ready_to_build()
                self._build_batch(uid)
            except PlanwiseError as err:
                if isinstance(err, (RunInProgressError, DatabaseLockedError)) or not self.run.ready:
                    self.run.fatal = err  # nothing else of this run can work: the app stops it
                self.recorder.set(Outcome(uid, "error", err.one_line()))
        return self.run.outcomes[uid]

    def _ready_to_build(self) -> None:
        """Once per run, before its first build: what fails every node alike -- this run's lock, a database
        file dbt-duckdb cannot name or DuckDB cannot write, a profile setting or extension DuckDB refuses --
        is the run's one failure, naming the file and setting, not each node's."""
        if self.run.ready:
            return
        self.view.lock.acquire()
        self.view.db.check_writable()
        problem = self.view.build_problem()
        if problem is not None:
            raise problem
        self.run.ready = True

    def first_failure(self) -> str | None:
        """The first node that failed in this run, if any."""
        return next((u for u, o in self.run.outcomes.items() if o.status == "error"), None)

    def ensure(self, uids: Iterable[str]) -> dict[str, str]:
        """Build what is stale among ``uids`` (nodes setup builds) and what they need; why each unbuilt one is not.

        Returns unique id -> reason ('model stg_orders failed') for the nodes among
        ``uids`` without a good table from this run: a check of them cannot run.
        """
        view = self.view
        wanted = [u for u in uids if u in view.task_nodes]
        self.add_scope(u for u in view.graph.buildable(view.graph.with_ancestors(wanted)) if u in view.task_nodes)
        for uid in wanted:
            if uid not in self.run.outcomes and view.status(uid).stale:
                self.build(uid)
        return {u: self.unbuilt_reason(u) for u in wanted if u in self.run.outcomes and not self.run.outcomes[u].ok}

    def unbuilt_reason(self, uid: str) -> str:
        """'model stg_orders failed', 'model stg_x was not built (model stg_orders failed)'."""
        label = self.view.label
        outcome = self.run.outcomes[uid]
        if outcome.status == "error":
            return f"{label(uid)} failed"
        failed = [u for u in self.view.graph.ancestors([uid]) if self.run.outcomes.get(u, outcome).status == "error"]
        cause = (
            f"{', '.join(label(u) for u in sorted(failed))} failed"
            if failed
            else outcome.message.removeprefix("not built: ")
        )
        return f"{label(uid)} was not built ({cause})"

    def _build_batch(self, uid: str) -> None:
        view, recorder = self.view, self.recorder
        status = view.status(uid)
        if status.error is not None:
            raise status.error
        view.lock.acquire()
        view.fingerprints()  # read the database and inputs before dbt holds the file
        runnable, tests, blocked, direct = self._batch_plan(uid)
        self.events.emit(
            "batch", {"nodes": runnable, "blocked": sorted(blocked), "without_dbt": direct is not None, "tests": tests}
        )
        if runnable and direct is None:  # dbt builds: is the file free? (a saved copy cannot tell; dbt's words
            view.database_contents(live=True)  # for a lock are not ours). Setup's own session opens it first.
        if runnable:
            self.intents.intend([view.node(u) for u in [*runnable, *tests]])
            self.intents.restore_aside()  # what a run killed while it had relations moved aside left: back first
            self._say_implied_order(runnable)
            view.db.close_reader()  # dbt writes the file, here or in the worker
            read, written = False, self._written(runnable)  # read: in the batch's own session, before it closed
            try:
                retry = self._build_direct(*direct, written) if direct is not None else [*runnable, *tests]
                if retry:
                    self._build_with_dbt(retry)
                read = not retry and view.contents.adopt_taken()
            finally:  # dbt did not start skipped nodes; a failed one may have committed (a post-hook failed)
                view.records.settle(
                    u for u in runnable if u in self.run.outcomes and self.run.outcomes[u].status == "skipped"
                )
                if not read:
                    view.contents.invalidate(written)  # the next question reads what it holds now
            self._record_batch(runnable, tests)
        for u in runnable:
            if u not in self.run.outcomes:
                recorder.set(Outcome(u, "skipped", "not built: an upstream node failed"))

    def _batch_plan(self, uid: str) -> tuple[list[str], list[str], set[str], Direct | None]:
        """``_plan`` with what waits for the batch's content deferred, unless dbt builds the batch: one dbt run
        costs more than what waits for it, so then it goes along."""
        before = set(self.run.deferred)
        runnable, tests, blocked, direct = self._plan(uid, defer=True)
        if direct is None and runnable and self.run.deferred - before:
            self.run.deferred = before
            runnable, tests, more, direct = self._plan(uid, defer=False)
            blocked |= more  # the first plan's preflight failed or skipped them: not in this plan
            tests = [t for t in tests if not set(self.view.graph.built_parents(t)) & blocked]
        return runnable, tests, blocked, direct

    def _record_batch(self, runnable: list[str], tests: list[str]) -> None:
        """After a batch: what was built signed and settled, the inputs that changed meanwhile, tests' outcomes."""
        view, recorder = self.view, self.recorder
        built = [u for u in runnable if self.run.outcomes.get(u, Outcome(u, "x")).ok]
        recorder.sign(built)
        view.staleness.settle(built)  # records and fingerprints name the content built now
        recorder.check_inputs(built)  # first: it compares files with what this run hashed
        view.staleness.refresh_compiled()  # later batches and checks see what dbt compiled for these
        recorder.note_tests(self.run.test_outcomes[t] for t in tests if t in self.run.test_outcomes)

    def _plan(self, uid: str, defer: bool) -> tuple[list[str], list[str], set[str], Direct | None]:
        """The batch for ``uid``: the nodes that can run, their tests, those its preflight blocked, and how to
        build it without dbt (None: dbt builds it)."""
        stopping = self.fail_fast and self.first_failure() is not None
        batch = self.batches.batch_for(uid, defer, stopping)
        tests = self.batches.batch_tests(batch)
        blocked = self._preflight(batch, tests)
        runnable = [u for u in batch if u not in blocked]
        tests = [t for t in tests if not set(self.view.graph.built_parents(t)) & blocked]
        return runnable, tests, blocked, self.batches.direct_batch(runnable, tests) if runnable else None

    def _preflight(self, batch: list[str], tests: list[str]) -> set[str]:
        """Fail nodes whose inputs are unusable before dbt sees them; skip their children, and the nodes
        `dbt build` would not build after a test that failed and is not run again in this batch."""
        view = self.view
        failed: dict[str, str] = {}
        for uid in batch:
            problem = view.inputs.of(uid)
            if problem:
                failed[uid] = problem.one_line()
        blocked = set(failed)
        stored = [t for t in view.stored_failures() if t not in tests]
        for uid in batch if stored else ():
            why = view.gate(uid, stored)
            if why is not None and uid not in blocked:
                blocked.add(uid)
                self.recorder.set(Outcome(uid, "skipped", why))
        for uid, message in failed.items():
            self.recorder.set(Outcome(uid, "error", message))
            for child in sorted(view.graph.descendants([uid]) & set(batch)):
                if child not in blocked:
                    blocked.add(child)
                    self.recorder.set(Outcome(child, "skipped", f"not built: {view.label(uid)} failed"))
        return blocked

    def _written(self, uids: list[str]) -> list[Key] | None:
        """The tables a build of these nodes writes: theirs, unless a hook (on-run-start/end, a node's pre- or
        post-hook) may write any other (None)."""
        nodes = [self.view.node(u) for u in uids]
        if any(n.resource_type == "operation" for n in self.view.manifest.nodes.values()) or any(
            n.config.get(hook) for n in nodes for hook in ("pre-hook", "post-hook", "pre_hook", "post_hook")
        ):
            return None
        return [n.relation.key() for n in nodes if n.relation is not None]

    def _on_start(self, uid: str) -> None:
        self.events.emit("start", {"unique_id": uid})

    def _build_direct(
        self, items: list[direct_build.DirectNode], tests: list[direct_build.DirectTest], written: list[Key] | None
    ) -> list[str]:
        """Build the batch straight in DuckDB, each test right after what it reads; returns what dbt must
        build or run after all: the nodes that failed here and what depends on them, and what a test's
        failing query handed over. A shortcut's failure is never reported as the node's: dbt builds it,
        and its outcome is the node's."""
        view = self.view
        uids = [item.node.unique_id for item in items]
        test_ids = [t.node.unique_id for t in tests]
        parents = {u: view.graph.built_parents(u) for u in [*uids, *test_ids]}
        missed: set[str] = set()  # dbt's to build: failed here, or skipped for what failed here

        def outcome(result: NodeOutcome) -> None:
            uid = result.unique_id
            if result.status == "success" or (result.status != "error" and not set(parents[uid]) & missed):
                self.recorder.on_dbt_outcome(result)  # built, a test's outcome, or skipped after a failing test
            else:
                missed.add(uid)

        profile = view.manifest.profile
        connection = profile.connection if profile is not None else None
        # Read in the session, before it closes, what the batch left (``written``: the tables it may write; None:
        # any): the checks' reader opens once after, not once more per batch. Not with attached databases:
        # setup's reader does not attach them.
        taken = written if connection is not None and not connection.attach else None
        try:
            assert connection is not None
            handed = direct_build.build(
                lambda: view.db.dbt_session(connection),
                items,
                parents,
                outcome,
                self._on_start,
                tests,
                self._run_test,
                view.gate,
                lambda con: view.contents.take_in(con, taken),
            )
        except DatabaseUnopenable:  # locked, not a database: dbt could not build it either (the run's failure)
            raise
        except DatabaseError as err:  # the connection cannot be made as dbt-duckdb makes it: dbt builds all
            log.info("dbt builds %s: %s", ", ".join(uids), err.cause)
            return [u for u in [*uids, *test_ids] if u not in self.run.outcomes and u not in self.run.test_outcomes]
        self.run.direct_builds += sum(1 for u in uids if u in self.run.outcomes)
        self.run.direct_tests += sum(1 for t in test_ids if t in self.run.test_outcomes)
        retry = missed | set(handed)
        return [u for u in [*uids, *test_ids] if u in retry]

    def _run_test(self, con: Any, test: direct_build.DirectTest) -> NodeOutcome:
        return run_direct(Reader(con, self.view.db_path), test.node, test.sql)

    def _build_with_dbt(self, uids: list[str]) -> None:
        """One dbt invocation over the nodes, as a fresh `dbt build` builds them: a node whose materialization
        builds on its existing relation (a seed's table is refilled, an incremental model merged into) has
        that relation moved aside first and dropped once dbt built it (put back when it failed)."""
        view = self.view
        nodes = [view.node(u) for u in uids]
        self.run.invocations += 1
        aside = self.intents.move_aside([n for n in nodes if n.resource_type != "test"])
        try:
            self.dbt.build_nodes(
                view.ctx,
                view.definitions.manifest_path,
                nodes,
                self.recorder.on_dbt_outcome,
                quiet=self.events.quiet,
                on_start=self._on_start,
                dbt_lines=self.events.log,
                on_phase=self.events.phase,
                edges=view.graph.implied_edges(uids),
            )
        finally:
            if aside:
                self.intents.settle_aside(aside)

    def _say_implied_order(self, uids: list[str]) -> None:
        """A node reading a seed's (or model's) table through source() builds after it here, where a plain
        `dbt build` does not know that order (and may fail): said, so that nobody relies on it unawares."""
        label, node = self.view.label, self.view.node
        for reader, builder in self.view.graph.implied_edges(uids):
            self.events.emit(
                "warning",
                {
                    "message": one_line(
                        f"{label(reader)} reads {label(builder)} through source(): setup builds {label(builder)} "
                        "first, a plain `dbt build` does not know that order",
                        f"write {{{{ ref('{node(builder).name}') }}}} in {node(reader).path}",
                    )
                },
            )

    def compile_with_dbt(self, nodes: Any, on_outcome: Callable[[Any], None]) -> bool:
        """dbt compiles nodes whose compile key changed (``compiling``). Not on a first build: there
        dbt compiles each node as it builds it, and keeps its SQL then."""
        view = self.view
        if not view.records.records:
            return False
        view.db.close_reader()
        self.events.step(f"compiling {len(nodes)} model(s) and test(s) whose compile context changed")
        try:
            self.dbt.compile_nodes(
                view.ctx,
                view.definitions.manifest_path,
                list(nodes),
                on_outcome,
                quiet=self.events.quiet,
                dbt_lines=self.events.log,
                on_phase=self.events.phase,
            )
        finally:
            self.events.step(None)
        self.run.compiles += len(nodes)
        return True
