"""Which stale nodes build together in one batch (and which wait, for the census or an upstream rebuild), the
tests each batch runs right after what they read, and whether DuckDB can build the batch without dbt."""

from __future__ import annotations

from typing import Sequence

from . import direct_build
from .direct_tests import why_not_direct as test_not_direct
from .test_gate import batch_tests
from .view import StateView


class BatchPlanner:
    """Plans a batch from this run's scope: its nodes in build order, its tests, and how it is built."""

    def __init__(self, view: StateView) -> None:
        self.view = view
        self.run = view.run

    def batch_for(self, uid: str, defer: bool = True, stopping: bool = False) -> list[str]:
        """This node plus every stale node in scope that can build now.

        Readers of a census that the census task has yet to write wait for their own
        task (after it), with everything downstream of them. With ``defer``, so does a
        node stale only for what this batch rebuilds (``_waits``: early cutoff). ``stopping``
        (a node failed, setup.fail_fast): only what a batch begun before deferred still builds.
        """
        view = self.view
        scope = self.run.scope | {uid}
        waiting: set[str] = set()
        if view.census.pending():
            readers = {u for u in scope if view.reads_census(u)}
            waiting = readers | view.graph.descendants(readers)
        batch: list[str] = []
        later = {u for u in self.run.deferred if u not in self.run.outcomes}
        for u in self.setup_nodes_and(uid):
            if u not in scope or u in self.run.outcomes or (u != uid and u in waiting) or (stopping and u not in later):
                continue
            status = view.status(u)
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
        if set(self.view.graph.parents(uid)) & later:
            return True
        upstream = self.view.staleness.waits_on(uid)
        return upstream is not None and upstream <= {*batch, *later}

    def setup_nodes_and(self, uid: str) -> list[str]:
        task_nodes = self.view.task_nodes
        return task_nodes if uid in task_nodes else self.view.graph.buildable({*task_nodes, uid})

    def batch_tests(self, batch: list[str]) -> list[str]:
        """The tests a batch runs, each right after the nodes it reads: those reading a node of the batch,
        and those a node of it waits for in `dbt build` whose outcome on their inputs as they are is not
        known (a failure there skips what is downstream, as dbt does)."""
        view = self.view
        scope = view.definitions.tests()
        reading = batch_tests(view.graph, scope, batch)
        upstream = view.graph.ancestors(batch)
        known = set(reading)
        gating = [
            t
            for t in scope
            if t not in known
            and view.node(t).depends_on
            and set(view.node(t).depends_on) <= upstream
            and view.test_outcomes.current(t, view.test_state(t)) is None
        ]
        return reading + gating

    def direct_batch(
        self, uids: list[str], tests: Sequence[str] = ()
    ) -> tuple[list[direct_build.DirectNode], list[direct_build.DirectTest]] | None:
        """The batch in build order and its tests, when every node of it can be built and every test run
        without dbt (see ``direct_build``, ``direct_tests``); None when dbt builds it
        (``PLANWISE_SETUP_DIRECT=0`` always)."""
        view = self.view
        if view.ctx.environ().get(direct_build.DIRECT_ENV, "1") == "0":
            return None
        if any(n.resource_type == "operation" for n in view.manifest.nodes.values()):
            return None  # on-run-start / on-run-end hooks: dbt runs them around every build
        fingerprints = view.fingerprints()
        items = []
        for uid in view.graph.topological(uids):
            node = view.node(uid)
            if uid not in fingerprints or direct_build.why_not_direct(node, view.manifest) is not None:
                return None
            if node.resource_type == "seed":
                items.append(direct_build.DirectNode(node, csv=view.ctx.project_dir / str(node.path)))
                continue
            sql = view.compiling.sql(uid)
            if sql is None:
                return None
            items.append(direct_build.DirectNode(node, sql=sql))
        environ = view.ctx.environ()
        checks = []
        for uid in tests:
            sql = view.compiling.sql(uid)
            if sql is None or test_not_direct(view.node(uid), view.manifest, environ) is not None:
                return None
            checks.append(direct_build.DirectTest(view.node(uid), sql, tuple(view.graph.built_parents(uid))))
        return items, checks
