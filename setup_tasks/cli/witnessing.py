"""How a full run leaves the no-op's witness (``store.witness``) for ``cli.shortcut`` to answer from.

One ``WitnessKeeper`` per command-line run (``App.witness``): before doit opens its state
it clears the folder's witnesses (this run may change what they saw) and notes doit's
saved values; the reporter tells it which tasks ran and what the run said; when the
process ends, a run that was a no-op in every respect leaves its witness, and a run
that built or checked leaves the witness of the no-op after it when it can tell what
that run would say (``next_no_op``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Protocol

from ..files import json_text
from ..engine.run_state import RunState
from ..engine.staleness import NodeStatus
from ..naming import Translator
from ..ops.history import history_entry
from ..ops.run_report import build_report
from ..proofs import DATABASE, FILE, kind_of, proof_of
from ..validation.results import closing_lines
from ..store.witness import (
    RUN_SLOTS,
    Key,
    Witness,
    WitnessStore,
    environment_digest,
    keys_of,
    racy_paths,
    run_context,
    slot,
)
from .doit_state import saved_values
from .shortcut import code_paths, eligible


class Run(Protocol):
    """What the keeper reads of a run (``cli.app.App``)."""

    translator: Translator
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
        # Each task doit looked at: (has up-to-date checks, counted when up to date, counted when run).
        self.considered: dict[str, tuple[bool, bool, bool]] = {}
        self.checks_run_again = False

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
            # None (not to be compared) when unreadable; no file yet (a first run, a state folder deleted): no rows.
            self._doit_values = saved_values(dep_file) if os.path.lexists(dep_file) else {}

    def task_considered(self, name: str, checked: bool, counted_up_to_date: bool, counted_when_run: bool) -> None:
        """doit looks at a task (once per run): has it up-to-date checks, and would the tally count it up to
        date, or run (``cli.reporter``)?"""
        self.considered[name] = (checked, counted_up_to_date, counted_when_run)

    def task_ignored(self, name: str) -> None:
        """`doit ignore` set it aside: the next run skips it as this one did, uncounted."""
        self.considered.pop(name, None)

    def check_ran(self, runs_again: bool) -> None:
        """A check ran and stored its values: would the next run run it again (``CheckUpToDate.runs_again``)?"""
        self.checks_run_again = self.checks_run_again or runs_again

    def task_executed(self, name: str, checked: bool) -> None:
        """doit runs a task's actions; ``checked``: it has up-to-date checks (it builds or validates)."""
        self.executed.append(name)
        if checked:
            self.worked.append(name)

    def beyond_a_no_op(self, app: Run, report: Mapping[str, Any]) -> str | None:
        """What this run did or said that a no-op does not (its own words are then not the next run's), or None."""
        if self.worked or self.said is None:
            return "a task ran, or the run said more than a tally"
        if set(report["counts"]) - {"up-to-date"} or report["dbt_invocations"] or report["direct_builds"]:
            return "it built or ran dbt"
        if report["direct_tests"] or not all(r.up_to_date for r in app.check_results.values()):
            return "it ran a check"
        return None

    def unsettled(self, app: Run) -> str | None:
        """Why the run leaves no witness at all, whatever it did: it failed, said more than its work, or
        changed what the next run could not be told of; None when it may leave one."""
        engine, report = app.current_engine, app.report
        if engine is None or report is None or not self.witnessed(app):
            return "not a no-op command line"
        if app.interrupted or app.exit_status() != 0 or app.state_error is not None or app.failures:
            return "it did not succeed"
        if app.notes_shown or "dropped_leftovers" in report or "record_errors" in report:
            return "it said more than its work, or dropped a table"
        if engine.definitions.packages_installed is not None:
            return "it installed packages"
        return None

    def next_no_op(self, app: Run) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """What the next run says and reports when it finds everything as this run left it: this run's own
        words when it was a no-op; when it built or checked, those of a run finding everything up to date
        (the same tasks, every one skipped; every check's result the one stored); None when it cannot tell."""
        engine, report = app.current_engine, app.report
        if engine is None or report is None or self.unsettled(app) is not None:
            return None
        if self.beyond_a_no_op(app, report) is None:
            return dict(self.said or {}), {**report}
        if any(not checked and counted for checked, _, counted in self.considered.values()):
            return None  # a task without up-to-date checks that the tally counts runs every time
        if self.checks_run_again:
            return None  # a check that stored no result runs again
        counted = sum(1 for checked, counts, _ in self.considered.values() if checked and counts)
        tally = f"{counted} up to date" if counted else "nothing to do"
        results = {name: replace(result, up_to_date=True) for name, result in app.check_results.items()}  # reused
        said = {"tally": tally, "lines": closing_lines(results.values(), tuple(engine.settings.validation.fail_on))}
        run = engine.run
        skipped = RunState(
            build_id=run.build_id,
            started=run.started,
            checked={uid: NodeStatus(uid, False) for uid in {*run.outcomes, *run.checked}},
        )
        report = build_report(engine, results, app.translator, ended=run.started, exit_code=0, tally=tally, run=skipped)
        return said, report

    def leave(self, app: Run) -> None:
        """A run that leaves everything up to date leaves the keys of everything a check reads, so the next
        one need not check: a no-op, or a building run that can tell what the next run would say."""
        engine, dep_file = app.current_engine, app.dep_file
        next_run = self.next_no_op(app)
        if next_run is None or engine is None or dep_file is None:
            return
        said, report = next_run
        keys = keys_of([*engine.view.watched_paths(), *code_paths(self.root)])
        # doit's state: this run's tasks rewrote their rows; any other row changed meanwhile (a
        # `doit forget` elsewhere) means the checks may not have seen what is there now.
        dep_key = keys_of([dep_file])
        now, before, ran = saved_values(dep_file), self._doit_values, set(self.executed)
        if now is None or before is None or keys_of([dep_file]) != dep_key:
            return
        if {k: v for k, v in now.items() if k not in ran} != {k: v for k, v in before.items() if k not in ran}:
            return
        proofs = self.proofs(engine, keys)
        if proofs is None:
            return  # changed too recently to be proven unchanged later, by its key or its bytes
        keys.update(dep_key)  # rewritten by every run: its rows were compared above (a digest would cost more)
        template = {**report, **{name: slot(name) for name in RUN_SLOTS}}
        argv = sys.argv[1:]
        self.store.put(
            argv,
            Witness(
                context=run_context(argv),
                environment=environment_digest(os.environ),
                keys=keys,
                run_id=str(report["run_id"]),
                said=said,
                report=json_text(template),
                history=history_entry(template),
                report_path=str(engine.settings.report.path),
                history_path=str(engine.settings.report.history_path),
                lock_path=str(engine.lock.path),
                proofs=proofs,
            ),
        )

    def proofs(self, engine: Any, keys: Mapping[str, Key]) -> dict[str, list[str]] | None:
        """The proof by its bytes of each path changed within ``RACY_NS`` of this run's start (its key could
        hide a second change in the same clock tick), or None when one cannot be proven to be what the run
        saw. Provable are the database as the run's view of it last read it; setup's own state (written
        by this run, or by none while it ran: runs take turns by its locks); an input whose bytes are
        those its fingerprint read. Anything else changed that recently (a project file dbt's parse
        reads, a folder of the project) leaves no witness."""
        db, wal, state = str(engine.db_path), f"{engine.db_path}.wal", os.path.join(engine.settings.state_dir, "")
        proofs: dict[str, list[str]] = {}
        for path in racy_paths(keys, self.started_ns):
            if path in (db, wal):
                seen = proofs[db][1] if db in proofs else engine.view.contents.view_proof()  # of both files
                if seen is None:
                    return None
                proofs[db] = [DATABASE, seen]
                continue
            own = path.startswith(state)
            kind, read = (kind_of(path), None) if own else (FILE, engine.hasher.read_digest(Path(path)))
            digest = proof_of(path, kind)
            if digest is None or not (own or digest == read):
                return None
            proofs[path] = [kind, digest]
        return proofs
