"""Runs dbt tests for the dbt-tests check: straight in DuckDB from the SQL dbt compiled where dbt's verdict
is known to be the same, the others in one dbt invocation; outcomes kept with their inputs' state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..dbt.client import DbtClient
from ..errors import PlanwiseError
from ..store.database import Reader
from .direct_tests import run_direct, why_not_direct
from .events import Events
from .intents import WriteIntents
from .recording import BuildRecorder
from .view import StateView


class TestRunner:
    """What a check may ask of the engine about dbt tests: run these, and say how each ended."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(
        self, view: StateView, dbt: DbtClient, events: Events, intents: WriteIntents, recorder: BuildRecorder
    ) -> None:
        self.view, self.dbt, self.events, self.intents, self.recorder = view, dbt, events, intents, recorder

    def run(self, uids: list[str], what: str, manifest_path: Path) -> dict[str, Any]:
        """Each test's outcome (dbt's result shape) by unique id; those missing were not reported. Raises
        what stopped dbt from running at all (the caller fails every test with it)."""
        view, events = self.view, self.events
        outcomes: dict[str, Any] = {}

        def finished(outcome: Any) -> None:
            outcomes[outcome.unique_id] = outcome
            events.progress(what, len(outcomes), len(uids))

        environ = view.ctx.environ()
        allowed = [u for u in uids if why_not_direct(view.node(u), view.manifest, environ) is None]
        direct = {u: sql for u in allowed if (sql := view.compiling.sql(u)) is not None}
        through_dbt = [u for u in uids if u not in direct]
        events.step(what)
        try:
            if direct:
                try:  # on a connection configured as dbt-duckdb's (the profile's settings change results)
                    through_dbt = self._run_direct(direct, through_dbt, finished)
                except PlanwiseError:  # the database cannot be read here: dbt runs them, and says why
                    through_dbt = list(uids)
                    outcomes.clear()
            if through_dbt:
                self._run_with_dbt(through_dbt, finished, manifest_path)
        finally:
            events.step(None)
            for outcome in outcomes.values():
                view.compiling.keep(outcome)
            view.kept_sql.save()
            self.recorder.note_tests(o for o in outcomes.values() if o.status in ("pass", "warn", "fail", "error"))
        return outcomes

    def _run_direct(self, direct: dict[str, str], through_dbt: list[str], finished: Callable[[Any], None]) -> list[str]:
        view = self.view
        assert view.manifest.profile is not None
        with view.db.dbt_session(view.manifest.profile.connection, read_only=True) as con:
            reader = Reader(con, view.db_path)
            for uid, sql in direct.items():
                outcome = run_direct(reader, view.node(uid), sql)
                if outcome.status == "error":  # the shortcut's failure until dbt says otherwise
                    through_dbt.append(uid)
                    continue
                view.run.direct_tests += 1
                finished(outcome)
        return through_dbt

    def _run_with_dbt(self, uids: list[str], finished: Callable[[Any], None], manifest_path: Path) -> None:
        view, events = self.view, self.events
        view.run.invocations += 1
        nodes = [view.node(u) for u in uids]
        self.intents.intend(nodes)  # the tables tests storing failures write
        view.db.close_reader()  # dbt opens the file, here or in the worker
        self.dbt.run_tests(
            view.ctx, manifest_path, nodes, finished, quiet=events.quiet, dbt_lines=events.log, on_phase=events.phase
        )
