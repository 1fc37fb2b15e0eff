"""The validation side of one setup run: its project view, its checks, when each must run again, its results.

One ``ValidationScope`` per engine (the ``cli`` app makes it), so the checks, the
project view and the run's results are computed once and shared by every task.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import ValidationSettings, thaw
from ..engine.engine import Engine
from ..project.fingerprints import explain
from .catalog import load_checks, models_area
from .engine_port import CheckEngine
from ..files import discarded, read_json, write_json_atomic
from .framework import Check, Environment
from .project_view import ProjectView, input_state, names_table
from .results import DEFAULT_FAIL_ON, NOT_RUN, CheckResult, ValidationSummary, summarize

LAST_FAILURES_FILE = "check_failures.json"


def last_failures_path(state_dir: Path) -> Path:
    return state_dir / LAST_FAILURES_FILE


def read_last_failures(state_dir: Path) -> dict[str, list[CheckResult]]:
    """The failed results each check had when it last ran (a check that passed since has none)."""
    found: dict[str, list[CheckResult]] = {}
    data = read_json(last_failures_path(state_dir), {})
    for name, results in data.items() if isinstance(data, dict) else ():
        try:
            found[name] = [CheckResult.from_dict(r) for r in results]
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # a damaged entry costs its lines in `doit info`, nothing else
    return found


def _read_memo(path: Path) -> dict[str, Any]:
    """The passing results a check's last failed run kept, or {} when the file is missing or of the wrong shape."""
    memo = read_json(path, {})
    results = memo.get("results", [])
    if memo and not (
        isinstance(memo.get("parts", {}), dict)
        and isinstance(results, list)
        and all(isinstance(r, dict) for r in results)
    ):
        discarded(path, "wrong shape")
        return {}
    return memo


def _keep_memo(path: Path, memo: Mapping[str, Any] | None) -> None:
    """Keep (or, with None, drop) a check's memo: a cache, so a full or read-only disk only costs a re-run."""
    try:
        if memo is None:
            path.unlink(missing_ok=True)
        else:
            write_json_atomic(path, memo)
    except OSError:
        pass


def setting_value(validation: ValidationSettings, dotted: str) -> Any:
    """The value of a dotted ``validation`` setting, e.g. 'columns.census'."""
    value: Any = validation
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
    return thaw(value)


def resolve_reads(check: Check, engine: CheckEngine, project: ProjectView) -> tuple[list[str], list[str]]:
    """(node unique ids, names that are no node of the project) the check reads."""
    validation = engine.settings.validation
    uids: list[str] = []
    untracked: list[str] = []
    for name in check.read_names(project, validation):
        node = project.node_for_table(validation.tables.get(name, name))
        if node is None:
            untracked.append(name)
        elif node.unique_id not in uids:
            uids.append(node.unique_id)
    return uids, untracked


def fingerprint_parts(
    check: Check, engine: CheckEngine, project: ProjectView, reads: tuple[list[str], list[str]] | None = None
) -> dict[str, str]:
    """Everything a check's result depends on, by name: a change in any part re-runs it (``reads``: the
    check's ``resolve_reads``, when known)."""
    validation = engine.settings.validation
    parts = {
        "definition": check.definition_digest(),
        "severity": f"{check.severity}, {'blocking' if validation.is_blocking(check.severity) else 'reported'}",
    }
    for key in check.thresholds:
        parts[f"setting:validation.{key}"] = json.dumps(setting_value(validation, key), sort_keys=True)
    for name in check.read_names(project, validation):
        if name in validation.tables:
            parts[f"setting:validation.tables.{name}"] = validation.tables[name]
        if name in validation.columns:
            parts[f"setting:validation.columns.{name}"] = json.dumps(thaw(validation.columns[name]), sort_keys=True)
    uids, untracked = reads or resolve_reads(check, engine, project)
    fingerprints = engine.fingerprints()
    for uid in uids:
        parts[f"input:{uid}"] = input_state(engine, uid, fingerprints)
    tables = engine.database_contents().tables
    for name in untracked:
        table = validation.tables.get(name, name)
        if any(names_table(key, table) for key in tables):
            parts[f"untracked:{table}"] = "in the database, not a node of the dbt project"
        else:
            parts[f"absent:{table}"] = "not in the database"
    parts.update(check.input_parts(engine, project))
    return parts


def stale_reasons(old: Mapping[str, str], new: Mapping[str, str], names: Mapping[str, str]) -> list[str]:
    """Why a check whose last run saw ``old`` must run again now that it sees ``new``."""
    if not old:
        return ["no stored result (never checked, failed last time, or forgotten)"]
    untracked = {key for key in (*old, *new) if key.startswith("untracked:")}
    reasons = [f"reads {k.split(':', 1)[1]}, which setup does not track" for k in new if k in untracked]
    tracked_old = {k: v for k, v in old.items() if k not in untracked}
    tracked_new = {k: v for k, v in new.items() if k not in untracked}
    return reasons + explain(tracked_old, tracked_new, names)


class ValidationScope:
    """Checks, their reads and staleness, and the results of one run, for one engine."""

    def __init__(self, engine: Engine, checks: list[Check] | None = None) -> None:
        self.engine = engine
        self.project = ProjectView.from_engine(engine)
        self.checks = (
            checks if checks is not None else load_checks(self.validation, engine.root, area=models_area(self.project))
        )
        self.results: dict[str, CheckResult] = {}  # this run's results, by result name
        self.runs: dict[str, CheckRun] = {}  # this run's run of each check, by check name
        self.reused: dict[str, tuple[Check, list[CheckResult]]] = {}  # checks up to date in this run
        self._last_failures: dict[str, list[CheckResult]] | None = None
        self._reads: dict[str, tuple[list[str], list[str]]] = {}

    @property
    def validation(self) -> ValidationSettings:
        return self.engine.settings.validation

    def reads(self, check: Check) -> tuple[list[str], list[str]]:
        """``resolve_reads``, once per check and run (the project and settings do not change within one)."""
        if check.name not in self._reads:
            self._reads[check.name] = resolve_reads(check, self.engine, self.project)
        uids, untracked = self._reads[check.name]
        return list(uids), list(untracked)

    def parts(self, check: Check) -> dict[str, str]:
        return fingerprint_parts(check, self.engine, self.project, self.reads(check))

    def stale_reasons(self, old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
        return stale_reasons(old, new, self.engine.names())

    def record(self, results: list[CheckResult]) -> None:
        for result in results:
            self.results[result.name] = result

    def summary(self) -> ValidationSummary:
        return summarize(self.results.values(), self.validation.fail_on)

    def failed_run_memo(self, check: Check) -> Path:
        """Where the passing results of a check's last failed run are kept."""
        return self.engine.state_dir / "failed_checks" / f"{check.name}.json"

    def last_failures(self) -> dict[str, list[CheckResult]]:
        """Check name -> its failed results when it last ran (offending rows included): `doit info`, `doit status`."""
        if self._last_failures is None:
            self._last_failures = read_last_failures(self.engine.state_dir)
        return self._last_failures

    def _remember_failures(self, check: Check, results: list[CheckResult]) -> None:
        failed = [r for r in results if r.failed]
        known = self.last_failures()
        if not failed and check.name not in known:
            return
        if failed:
            known[check.name] = failed
        else:
            known.pop(check.name)
        try:
            write_json_atomic(
                last_failures_path(self.engine.state_dir),
                {name: [r.as_dict() for r in found] for name, found in known.items()},
            )
        except OSError:
            pass  # only `doit info` and `doit status` read it

    # -- running a check -------------------------------------------------------------------

    def run_check(
        self, check: Check, previous: Mapping[str, Any], unbuilt: Mapping[str, str] | None = None
    ) -> "CheckRun":
        """Run one check (``previous``: what its last run stored) and record its results.

        ``unbuilt``: nodes of this run without a good table, and why. A check reading
        one of them is "not run" with that reason (never stored: it runs next time).
        doit keeps no values of a failed task, so the passing results of a run with a
        blocking failure (or with results that could not run) are kept beside the state:
        a check made of many results (dbt_tests) then re-runs only the failed ones, those
        not run and those whose inputs changed.
        """
        unbuilt = dict(unbuilt or {})
        memo = self.failed_run_memo(check)
        env = Environment(
            self.validation,
            self.engine.db,
            self.project,
            self.engine,
            previous if previous.get("results") else _read_memo(memo),
            unbuilt,
        )
        missing = list(dict.fromkeys(unbuilt[u] for u in self.reads(check)[0] if u in unbuilt))
        if missing and not check.runs_without_some_inputs:
            results = [
                CheckResult(
                    check.name, NOT_RUN, check.severity, "; ".join(missing), incomplete=True, checked_at=time.time()
                )
            ]
        else:
            results = check.run(env)
            self._remember_failures(check, results)
        # After the run: what it read is what it ran on (dbt compiled the tests it ran, say).
        self.engine.refresh_compiled()
        parts = self.parts(check)
        self.record(results)
        self.runs[check.name] = run = self._outcome(check, results, parts, memo, env.tables)
        return run

    def _outcome(
        self, check: Check, results: list[CheckResult], parts: dict[str, str], memo: Path, tables: dict[str, Any]
    ) -> "CheckRun":
        measured = {"tables": tables} if tables else {}  # what it measured of each table, for its next run
        blocking = [r for r in results if r.blocking(self.validation.fail_on)]
        if blocking or any(r.incomplete for r in results):
            # Not stored for doit (the next run checks again); its passing parts are kept, to reuse.
            kept = [r.as_dict() for r in results if r.passed and not r.incomplete]
            _keep_memo(memo, {"parts": parts, "results": kept, **measured})
            return CheckRun(results, blocking, {} if blocking else {"parts": parts, **measured})
        _keep_memo(memo, None)
        return CheckRun(
            results,
            [],
            {
                "parts": parts,
                "results": [r.as_dict() for r in results],
                "build_id": self.engine.run.build_id,
                **measured,
            },
        )

    def reuse(self, stored: Mapping[str, Any], check: Check | None = None) -> None:
        """An up-to-date check: its stored results are this run's results."""
        results = [replace(CheckResult.from_dict(r), up_to_date=True) for r in stored.get("results") or []]
        self.record(results)
        if check is not None:
            self.reused[check.name] = (check, results)

    def held_on_rebuilt(self) -> tuple[int, float]:
        """Checks not run again although this run rebuilt a table they read, and when the earliest of them
        ran: their stored results hold, as each input's part is its fingerprint and the content signature
        (row count, order-independent hash) of the table it was checked on, and the rebuilt tables have
        that content (a cold rebuild: the database deleted, every table built again the same)."""
        built = {u for u, outcome in self.engine.run.outcomes.items() if outcome.ok}
        held = [results for check, results in self.reused.values() if built & set(self.reads(check)[0])]
        since = min((r.checked_at for results in held for r in results if r.checked_at), default=0.0)
        return len(held), since


@dataclass(frozen=True)
class CheckRun:
    """One run of one check: its results, those that block the setup, and what to store for next time."""

    results: list[CheckResult]
    blocking: list[CheckResult]
    values: dict[str, Any]

    def lines(self) -> list[str]:
        """Each result, and the offending rows of a failed one."""
        lines = []
        for r in self.results:
            lines.append(f"{r.status.upper():<7} [{r.severity}] {r.name}: {r.message}")
            if r.failed and r.sample_line():
                lines.append(f"        {r.sample_line()}")
        return lines

    def failure_message(self, fail_on: Sequence[str] = DEFAULT_FAIL_ON, shown: int = 3) -> str:
        """One line: each blocking failure with its fix, the rest counted."""
        text = "; ".join(r.one_line(fail_on) for r in self.blocking[:shown])
        more = len(self.blocking) - shown
        return text + (f"; and {more} more blocking failure{'s' * (more != 1)}" if more > 0 else "")
