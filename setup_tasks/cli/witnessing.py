"""How a full run leaves the no-op's witness (``store.witness``) for ``cli.shortcut`` to answer from.

One ``WitnessKeeper`` per command-line run (``App.witness``): before doit opens its state
it clears the folder's witnesses (this run may change what they saw) and notes doit's
saved values; the reporter tells it which tasks ran and what the run said; when the
process ends, a run that was a no-op in every respect leaves its witness.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping, Protocol

from ..files import json_text
from ..ops.history import history_entry
from ..store.witness import RUN_SLOTS, Witness, WitnessStore, environment_digest, keys_of, racy_path, run_context, slot
from .doit_state import saved_values
from .shortcut import code_paths, eligible


class Run(Protocol):
    """What the keeper reads of a run (``cli.app.App``)."""

    mode: str
    read_only: bool
    notes_shown: int
    report: dict[str, Any] | None

    @property
    def interrupted(self) -> bool: ...

    @property
    def dep_file(self) -> Path | None: ...

    @property
    def state_error(self) -> Any: ...

    @property
    def current_engine(self) -> Any: ...

    @property
    def failures(self) -> list[tuple[str, str]]: ...

    @property
    def check_results(self) -> Mapping[str, Any]: ...

    def exit_status(self) -> int: ...


class WitnessKeeper:
    """What a run must know to leave a witness, and the leaving."""

    def __init__(self, root: Path, started_ns: int) -> None:
        self.store = WitnessStore.for_root(root)
        self.root = root
        self.started_ns = started_ns  # a path changed after this (or just before) is not witnessed
        self.said: dict[str, Any] | None = None  # the whole output of a no-op: its tally and validation lines
        self.executed: list[str] = []
        self.worked: list[str] = []  # tasks with up-to-date checks that ran: not a no-op
        self._doit_values: dict[str, str] | None = None  # doit's saved values as the run found them

    @staticmethod
    def witnessed(app: Run) -> bool:
        """Is this a command line a witness answers (and may leave one)?"""
        return app.mode == "cli" and not app.read_only and eligible(sys.argv[1:])

    def begin(self, app: Run, dep_file: Path) -> None:
        """Before doit opens its state: no witness holds once this run may change something, and a
        no-op's witness needs doit's state as the run found it."""
        if app.mode != "cli" or app.read_only:
            return
        self.store.clear()
        if self.witnessed(app):
            self._doit_values = saved_values(dep_file)

    def task_executed(self, name: str, checked: bool) -> None:
        """doit runs a task's actions; ``checked``: it has up-to-date checks (it builds or validates)."""
        self.executed.append(name)
        if checked:
            self.worked.append(name)

    def not_a_no_op(self, app: Run) -> str | None:
        """Why this run leaves no witness (it did or said more than a no-op does), or None."""
        engine, report = app.current_engine, app.report
        if engine is None or report is None or not self.witnessed(app):
            return "not a no-op command line"
        if app.interrupted or app.exit_status() != 0 or app.state_error is not None or app.failures:
            return "it did not succeed"
        if self.worked or self.said is None or app.notes_shown:
            return "a task ran, or the run said more than a tally"
        if (
            set(report["counts"]) - {"up-to-date"}
            or report["dbt_invocations"]
            or report["direct_builds"]
            or report["direct_tests"]
            or "dropped_leftovers" in report
            or "record_errors" in report
        ):
            return "it built, ran dbt or dropped a table"
        if engine.definitions.packages_installed is not None or not all(
            r.up_to_date for r in app.check_results.values()
        ):
            return "it installed packages or ran a check"
        return None

    def leave(self, app: Run) -> None:
        """A no-op leaves the keys of everything its checks read, so the next one need not check."""
        engine, report, dep_file = app.current_engine, app.report, app.dep_file
        if self.not_a_no_op(app) is not None or engine is None or report is None or dep_file is None:
            return
        keys = keys_of([*engine.view.watched_paths(), *code_paths(self.root)])
        if racy_path(keys, self.started_ns) is not None:
            return  # changed too recently to be proven unchanged later by its key
        # doit's state: this run's bookkeeping tasks rewrote their rows; any other row changed
        # meanwhile (a `doit forget` elsewhere) means the checks may not have seen what is there now.
        dep_key = keys_of([dep_file])
        now, before, ran = saved_values(dep_file), self._doit_values, set(self.executed)
        if now is None or before is None or keys_of([dep_file]) != dep_key:
            return
        if {k: v for k, v in now.items() if k not in ran} != {k: v for k, v in before.items() if k not in ran}:
            return
        template = {**report, **{name: slot(name) for name in RUN_SLOTS}}
        argv = sys.argv[1:]
        self.store.put(
            argv,
            Witness(
                context=run_context(argv),
                environment=environment_digest(os.environ),
                keys={**keys, **dep_key},
                run_id=str(report["run_id"]),
                said=dict(self.said or {}),
                report=json_text(template),
                history=history_entry(template),
                report_path=str(engine.settings.report.path),
                history_path=str(engine.settings.report.history_path),
                lock_path=str(engine.lock.path),
            ),
        )
