"""Run reports: one JSON document for the latest run, and a bounded JSON-lines history of runs.

The report says what each node did and why (built, up-to-date, failed, skipped),
with timings, row counts, the validation summary and the configuration used. The
history keeps one compact line per run, so `doit status` can show the last run and
steps that became slower than usual.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from ..engine.engine import Engine
from ..engine.run_state import Outcome, RunState
from ..engine.staleness import NodeStatus
from ..files import json_text
from ..naming import Translator
from ..validation.results import CheckResult, summarize
from .history import (
    HISTORY_LIMIT,
    append_history,
    history_entry,
    iso,
    last_run,
    read_history,
    regressions,
    write_report_files,
)

__all__ = [
    "HISTORY_LIMIT",
    "append_history",
    "build_report",
    "history_entry",
    "last_run",
    "read_history",
    "regressions",
    "report_run",
    "task_names",
    "write_run_report",
]

REPORT_VERSION = 1
STATUS_OF_OUTCOME: Mapping[str, str] = {"success": "built", "error": "failed", "skipped": "skipped"}


def task_names(engine: Engine, translator: Translator) -> dict[str, str]:
    """unique id -> doit task name, for every node setup could build."""
    return translator.task_names(n for n in engine.manifest.nodes.values() if n.is_buildable)


# -- the report -------------------------------------------------------------------------


def node_entry(uid: str, task: str, outcome: Outcome | None, checked: NodeStatus | None) -> dict[str, Any]:
    """One node of the report: what happened to it in this run, and why."""
    if outcome is not None:
        status = STATUS_OF_OUTCOME.get(outcome.status, "failed")
    else:
        status = "skipped" if checked is not None and checked.stale else "up-to-date"
    reason = checked.reason if checked is not None else ("built with its batch" if status == "built" else "")
    message = (
        outcome.message
        if outcome is not None
        else ("stale, but the run stopped before it" if status == "skipped" else "")
    )
    return {
        "unique_id": uid,
        "task": task,
        "status": status,
        "reason": reason,
        "message": message,
        "seconds": round(outcome.seconds, 3) if outcome is not None else 0.0,
        "rows": outcome.rows if outcome is not None else None,
    }


def validation_section(checks: Mapping[str, CheckResult], fail_on: tuple[str, ...]) -> dict[str, Any]:
    """The run's check results: counts by status and each result as data."""
    summary = summarize(checks.values(), fail_on)
    return {
        "counts": dict(Counter(r.status for r in summary.results)),
        "checks": {name: checks[name].as_dict() for name in sorted(checks)},
    }


def build_report(
    engine: Engine,
    checks: Mapping[str, CheckResult],
    translator: Translator,
    *,
    ended: float,
    interrupted: bool = False,
    exit_code: int | None = None,
    tally: str | None = None,
    run: RunState | None = None,
) -> dict[str, Any]:
    """The run report of the engine's current run (or of ``run``) and the checks it ran, as JSON-able data;
    ``tally``: the run's summary as the console said it (`doit status` repeats it), None when no console
    reporter ran."""
    run, settings = run or engine.run, engine.settings
    outcomes, checked = dict(run.outcomes), dict(run.checked)
    names = task_names(engine, translator)
    uids = engine.graph.topological(set(outcomes) | set(checked))
    nodes = [node_entry(u, names.get(u, u), outcomes.get(u), checked.get(u)) for u in uids]
    report = {
        "version": REPORT_VERSION,
        "run_id": run.build_id,
        "started": iso(run.started),
        "ended": iso(ended),
        "seconds": round(ended - run.started, 3),
        "exit_code": exit_code,
        "interrupted": interrupted,
        "database": str(engine.db_path),
        "config_digest": settings.digest(),
        "config": settings.as_dict(),
        "dbt_invocations": run.invocations,
        "direct_tests": run.direct_tests,
        "direct_builds": run.direct_builds,
        "compiled": run.compiles,
        # Set when a no-op answered from the witness of an earlier full check (cli.shortcut).
        "shortcut": None,
        "counts": dict(Counter(n["status"] for n in nodes)),
        "tally": tally,
        "nodes": nodes,
        "validation": validation_section(checks, tuple(settings.validation.fail_on)),
    }
    if run.retired:
        report["dropped_leftovers"] = list(run.retired)
    if run.kept:  # early cutoff: stale at first for an upstream rebuild that came out the same
        report["kept_unchanged"] = sorted(run.kept)
    if run.callback_errors:
        report["record_errors"] = list(run.callback_errors)
    return report


def write_run_report(
    engine: Engine,
    checks: Mapping[str, CheckResult],
    translator: Translator,
    *,
    interrupted: bool = False,
    exit_code: int | None = None,
) -> Path | None:
    """Write this run's report and put it in the history; returns the report's path.

    Raises PlanwiseError (one line, with the fix) when a file cannot be written.
    Calling it again in the same run rewrites both (the history keeps one line per
    run id). A process that neither checked, built nor validated anything (`doit
    list`, `status`, `graph`, `clear`) writes nothing and returns None, so such
    commands never push real runs out of the history.
    """
    report = report_run(engine, checks, translator, interrupted=interrupted, exit_code=exit_code)
    return engine.settings.report.path if report is not None else None


def report_run(
    engine: Engine,
    checks: Mapping[str, CheckResult],
    translator: Translator,
    *,
    interrupted: bool = False,
    exit_code: int | None = None,
    tally: str | None = None,
) -> dict[str, Any] | None:
    """``write_run_report``, returning the report written (None: nothing to report)."""
    run = engine.run
    if not (run.checked or run.outcomes or checks):
        return None
    report = build_report(
        engine, checks, translator, ended=time.time(), interrupted=interrupted, exit_code=exit_code, tally=tally
    )
    write_report_files(
        json_text(report),
        history_entry(report),
        engine.settings.report.path,  # type: ignore[arg-type]  # the engine knows the database, so the report paths
        engine.settings.report.history_path,  # type: ignore[arg-type]  # as above
    )
    return report
