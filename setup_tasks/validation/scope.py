"""The validation side of one setup run: its project view, its checks, when each must run again, its results.

One ``ValidationScope`` per engine (the ``cli`` app makes it), so the checks, the
project view and the run's results are computed once and shared by every task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from ..config import ValidationSettings, thaw
from ..engine.engine import Engine
from ..project.fingerprints import explain
from .catalog import load_checks
from ..files import discarded, read_json, write_json_atomic
from .framework import Check, Environment
from .project import Project, input_state, names_table
from .results import CheckResult, ValidationSummary, summarize


def _read_memo(path: Path) -> dict[str, Any]:
    """The passing results a check's last failed run kept, or {} when the file is missing or of the wrong shape."""
    memo = read_json(path, {})
    results = memo.get("results", [])
    if memo and not (isinstance(memo.get("parts", {}), dict) and isinstance(results, list)
                     and all(isinstance(r, dict) for r in results)):
        discarded(path, "wrong shape")
        return {}
    return memo


def setting_value(validation: ValidationSettings, dotted: str) -> Any:
    """The value of a dotted ``validation`` setting, e.g. 'columns.census'."""
    value: Any = validation
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
    return thaw(value)


def resolve_reads(check: Check, engine: Engine, project: Project) -> tuple[list[str], list[str]]:
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


def fingerprint_parts(check: Check, engine: Engine, project: Project) -> dict[str, str]:
    """Everything a check's result depends on, by name: a change in any part re-runs it."""
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
    uids, untracked = resolve_reads(check, engine, project)
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
        self.project = Project.from_engine(engine)
        self.checks = checks if checks is not None else load_checks(self.validation, engine.root)
        self.results: dict[str, CheckResult] = {}  # this run's results, by result name

    @property
    def validation(self) -> ValidationSettings:
        return self.engine.settings.validation

    def reads(self, check: Check) -> tuple[list[str], list[str]]:
        return resolve_reads(check, self.engine, self.project)

    def parts(self, check: Check) -> dict[str, str]:
        return fingerprint_parts(check, self.engine, self.project)

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

    # -- running a check -------------------------------------------------------------------

    def run_check(self, check: Check, previous: Mapping[str, Any]) -> "CheckRun":
        """Run one check (``previous``: what its last run stored) and record its results.

        doit keeps no values of a failed task, so the passing results of a run with a
        blocking failure are kept beside the state: a check made of many results
        (dbt_tests) then re-runs only the failed ones and those whose inputs changed.
        """
        parts = self.parts(check)
        memo = self.failed_run_memo(check)
        env = Environment(self.validation, self.engine.db, self.project, self.engine,
                          previous or _read_memo(memo))
        results = check.run(env)
        self.record(results)
        blocking = [r for r in results if r.blocking(self.validation.fail_on)]
        if blocking:
            kept = [r.as_dict() for r in results if r.passed and not r.incomplete]
            write_json_atomic(memo, {"parts": parts, "results": kept})
            return CheckRun(results, blocking, {})
        memo.unlink(missing_ok=True)
        if any(r.incomplete for r in results):
            return CheckRun(results, [], {"parts": parts})  # no result stored: the next run checks again
        return CheckRun(results, [], {"parts": parts, "results": [r.as_dict() for r in results],
                                      "build_id": self.engine.run.build_id})

    def reuse(self, stored: Mapping[str, Any]) -> None:
        """An up-to-date check: its stored results are this run's results."""
        self.record([replace(CheckResult.from_dict(r), up_to_date=True) for r in stored.get("results") or []])


@dataclass(frozen=True)
class CheckRun:
    """One run of one check: its results, those that block the setup, and what to store for next time."""

    results: list[CheckResult]
    blocking: list[CheckResult]
    values: dict[str, Any]

    def lines(self) -> list[str]:
        return [f"{r.status.upper():<7} [{r.severity}] {r.name}: {r.message}" for r in self.results]

    def failure_message(self, shown: int = 3) -> str:
        """One line: each blocking failure with its fix, the rest counted."""
        text = "; ".join(r.one_line() for r in self.blocking[:shown])
        more = len(self.blocking) - shown
        return text + (f"; and {more} more blocking failure{'s' * (more != 1)}" if more > 0 else "")
