"""What each build did, kept the moment it is known: its outcome, its build record and content signature, the
inputs that changed while it ran, and why it failed (in words naming the file and the fix)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from ..dbt.invoke import NodeOutcome
from ..errors import DatabaseError, Problem, WriteError
from ..project.fingerprints import CHANGED_DURING_BUILD
from ..project.manifest import Node
from ..store.records import BuildRecord
from .events import Events
from .hints import NodeFailure, SeedFile, explain
from .run_state import Outcome
from .staleness import NodeStatus
from .view import StateView

# DuckDB's error for a table that is not there (yet): "Catalog Error: Table with name x does not exist!"
MISSING_TABLE_RE = re.compile(r"Table with name (?P<table>\w+) does not exist", re.I)


class BuildRecorder:
    """Turns what a build reports (dbt's callback, or a build straight in DuckDB) into outcomes and build records."""

    def __init__(self, view: StateView, events: Events) -> None:
        self.view = view
        self.run = view.run
        self.records = view.records
        self.events = events
        self._lock = threading.Lock()

    def set(self, outcome: Outcome) -> None:
        """The node's outcome in this run; a success also writes its build record (durably, now)."""
        with self._lock:
            if outcome.ok:
                built = {
                    u: rec.fingerprint for u, o in self.run.outcomes.items() if o.ok and (rec := self.records.get(u))
                }
                fp = self.view.staleness.rebuilt(outcome.unique_id, built)
                relation = self.view.node(outcome.unique_id).relation
                try:
                    self.records.put(
                        outcome.unique_id,
                        BuildRecord(
                            fp.digest,
                            dict(fp.parts),
                            time.time(),
                            outcome.seconds,
                            self.run.build_id,
                            outcome.rows,
                            relation=relation.key() if relation is not None else None,
                            project=self.view.project,
                        ),
                    )
                except WriteError as err:  # the table is built; without its record the next run builds it again
                    outcome = Outcome(
                        outcome.unique_id, "error", f"built, but {err.one_line()}", outcome.seconds, outcome.rows
                    )
            self.run.outcomes[outcome.unique_id] = outcome
        self.events.emit("node", {"unique_id": outcome.unique_id, "outcome": outcome})

    def on_dbt_outcome(self, result: Any) -> None:
        """dbt's callback, on its worker thread: it must never raise into dbt."""
        try:
            self._record_dbt_outcome(result)
        except Exception as exc:  # a failed record only costs a rebuild next run
            self.run.callback_errors.append(f"{result.unique_id}: {exc}")

    def _record_dbt_outcome(self, result: Any) -> None:
        self.view.compiling.keep(result)
        node = self.view.manifest.nodes.get(result.unique_id)
        if node is not None and node.resource_type == "test":  # a test of the batch: the dbt_tests check reports it
            self.run.test_outcomes[result.unique_id] = result
            self.events.emit("test", {"unique_id": result.unique_id})
            return
        status = result.status if result.status in ("success", "error", "skipped") else "error"
        message = result.message if status != "success" else ""
        if status == "skipped":  # dbt skipped it: after a failing test, say which
            failing = [t for t, o in self.run.test_outcomes.items() if o.status in ("fail", "error")]
            message = self.view.gate(result.unique_id, failing) or message
        if status == "error":
            uid = result.unique_id
            problem = (
                self.unbuilt_input(uid, result.message)
                or self.view.inputs.malformed_seed(uid)
                or explain(self.failure(uid, result.message), self.view.ctx, self.view.db_path)
            )
            message = problem.one_line()
        self.set(Outcome(result.unique_id, status, message, result.seconds, result.rows))

    def note_checked(self, status: NodeStatus) -> None:
        """doit considered this node in this run: its reason goes into the run report."""
        self.run.checked[status.unique_id] = status
        if status.unique_id in self.run.deferred and not status.stale and status.unique_id not in self.run.outcomes:
            self.run.kept.append(status.unique_id)  # early cutoff: what it reads came out the same

    def note_tests(self, outcomes: Iterable[NodeOutcome]) -> None:
        """Tests that ran (in a build or in the dbt_tests check): their outcomes, kept with their inputs' state."""
        for outcome in outcomes:
            self.view.test_outcomes.put(outcome.unique_id, outcome.status, self.view.test_state(outcome.unique_id))

    # -- why a node failed -----------------------------------------------------------------------

    def failure(self, uid: str, message: str) -> NodeFailure:
        """A failed node with the seeds a value it failed on may come from: itself, then upstream, nearest first."""
        view = self.view
        node = view.node(uid)
        upstream, seen, queue = [], {uid}, [uid]
        while queue:
            for parent in sorted(view.graph.built_parents(queue.pop(0))):
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
                    upstream += [parent] if view.node(parent).resource_type == "seed" else []
        return NodeFailure(
            view.label(uid),
            node.path,
            message,
            self.seed_file(node) if node.resource_type == "seed" else None,
            tuple(self.seed_file(view.node(u)) for u in upstream),
        )

    def seed_file(self, node: Node) -> SeedFile:
        return SeedFile(
            node.name,
            str(node.path),
            self.view.ctx.project_dir / str(node.path),
            node.config.get("delimiter") or ",",
            dict(node.config.get("column_types") or {}),
        )

    def unbuilt_input(self, uid: str, dbt_message: str) -> Problem | None:
        """A node that failed reading a table another node builds and has not (yet), with the fix that
        names that node; None for any other failure."""
        view = self.view
        match = MISSING_TABLE_RE.search(dbt_message)
        builder = view.manifest.builder_of(match["table"]) if match else None
        if match is None or builder is None or builder == uid:
            return None
        node = view.node(uid)
        failed = f"{view.label(uid)} ({node.path}) failed: {dbt_message}"
        outcome = view.run.outcomes.get(builder)
        if outcome is not None and not outcome.ok:
            return Problem(failed, f"{view.label(builder)} builds that table and failed in this run: fix it first")
        return Problem(
            failed,
            f"{view.label(builder)} builds {match['table']}, and {node.name} does not read it through ref(): "
            f"write {{{{ ref('{view.node(builder).name}') }}}} in {node.path}, so setup builds {view.label(builder)} "
            "first",
        )

    # -- once a batch is built ---------------------------------------------------------------------

    def sign(self, uids: list[str]) -> None:
        """Remember each fresh table's content signature, to notice edits made outside setup."""
        keys = {self.view.node(u).relation.key(): u for u in uids if self.view.node(u).relation}  # type: ignore[union-attr]  # node(u).relation checked in the condition
        if not keys:
            return
        try:
            # the run's view of the database signs what was written since its last read, through the
            # connection that settling the records and the checks read next (one open, not two)
            tables = self.view.contents.get().tables
            signed = {key: tables[key].signature if key in tables else None for key in keys}  # views: None
            unsigned = [k for k in keys if k in tables and tables[k].kind == "BASE TABLE" and signed[k] is None]
            signed.update(self.view.db.signatures(unsigned) if unsigned else {})
        except DatabaseError:
            return
        self.records.sign({keys[key]: signature for key, signature in signed.items()})

    def check_inputs(self, built: list[str]) -> None:
        """Files a build read that changed while it ran: what dbt read is unknown, so those
        nodes (and what was built from them in the batch) are recorded as built from
        nothing current, and the next setup builds them again."""
        view = self.view
        changed: dict[str, list[str]] = {}
        for uid in built:
            for owner in [uid, *(p for p in view.graph.built_parents(uid) if view.node(p).resource_type == "source")]:
                moved = [part for part in view.fingerprints()[owner].parts if self._input_changed(part)]
                if moved:
                    changed.setdefault(owner, []).extend(moved)
        if not changed:
            return
        tainted = view.graph.descendants(changed) & set(built) | (set(changed) & set(built))
        marks = {uid: {part: CHANGED_DURING_BUILD for part in changed.get(uid, ())} for uid in tainted}
        for uid in tainted:
            marks[uid].update(
                {f"upstream:{p}": CHANGED_DURING_BUILD for p in view.graph.parents(uid) if p in changed or p in tainted}
            )
        self.records.taint(marks, CHANGED_DURING_BUILD)
        self.view.staleness.invalidate()  # their readers read nothing current either
        for uid, parts in sorted(changed.items()):
            files = ", ".join(part.partition(":")[2] for part in parts)
            self.events.emit(
                "warning",
                {
                    "message": f"{view.label(uid)}: {files} changed while it was being built; "
                    "the next setup builds it again"
                },
            )

    def _input_changed(self, part: str) -> bool:
        kind, _, what = part.partition(":")
        project_dir = self.view.ctx.project_dir
        if kind == "file":
            return self.view.hasher.changed_since_hashed(project_dir / what)
        if kind == "external":  # named relative to the project (FingerprintCalculator._display)
            return self.view.hasher.changed_since_hashed(Path(what) if Path(what).is_absolute() else project_dir / what)
        return False
