"""Run reports: one JSON document for the latest run, and a bounded JSON-lines history of runs.

The report says what each node did and why (built, up-to-date, failed, skipped),
with timings, row counts, the validation summary and the configuration used. The
history keeps one compact line per run, so `doit status` can show the last run and
steps that became slower than usual.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from ..engine.engine import Engine, Outcome
from ..engine.staleness import NodeStatus
from ..errors import cannot_write
from ..files import discarded, sweep_temps, write_json_atomic, write_text_atomic
from ..naming import Translator
from ..validation.results import CheckResult, summarize

REPORT_VERSION = 1
HISTORY_LIMIT = 200
# Regressions need a baseline: at least this many earlier samples of a step...
MIN_SAMPLES = 3
# ...and times above this (below it, ratios are timer noise)...
TINY_SECONDS = 0.05
# ...and at least this much slower than the median: a 0.1 s node taking 0.2 s on a busy
# laptop is scheduling noise, not something to show anyone.
MIN_SLOWDOWN_SECONDS = 0.25
STATUS_OF_OUTCOME = {"success": "built", "error": "failed", "skipped": "skipped"}


def task_names(engine: Engine, translator: Translator) -> dict[str, str]:
    """unique id -> doit task name, for every node setup could build."""
    return translator.task_names(n for n in engine.manifest.nodes.values() if n.is_buildable)


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


# -- the report -------------------------------------------------------------------------


def node_entry(uid: str, task: str, outcome: Outcome | None, checked: NodeStatus | None) -> dict[str, Any]:
    """One node of the report: what happened to it in this run, and why."""
    if outcome is not None:
        status = STATUS_OF_OUTCOME.get(outcome.status, "failed")
    else:
        status = "skipped" if checked is not None and checked.stale else "up-to-date"
    reason = checked.reason if checked is not None else ("built with its batch" if status == "built" else "")
    message = outcome.message if outcome is not None else ("stale, but the run stopped before it" if status == "skipped" else "")
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
    return {"counts": dict(Counter(r.status for r in summary.results)),
            "checks": {name: checks[name].as_dict() for name in sorted(checks)}}


def build_report(engine: Engine, checks: Mapping[str, CheckResult], translator: Translator, *, ended: float,
                 interrupted: bool = False, exit_code: int | None = None) -> dict[str, Any]:
    """The run report of the engine's current run and the checks it ran, as JSON-able data."""
    run, settings = engine.run, engine.settings
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
        "counts": dict(Counter(n["status"] for n in nodes)),
        "nodes": nodes,
        "validation": validation_section(checks, tuple(settings.validation.fail_on)),
    }
    if run.retired:
        report["dropped_leftovers"] = list(run.retired)
    if run.callback_errors:
        report["record_errors"] = list(run.callback_errors)
    return report


def history_entry(report: Mapping[str, Any]) -> dict[str, Any]:
    """The compact line a run leaves in the history: enough for trends and `doit status`."""
    steps = {n["task"]: n["seconds"] for n in report["nodes"] if n["status"] == "built"}
    for name, check in report["validation"]["checks"].items():
        # A result reused from an earlier run (up_to_date) took no time in this one.
        if isinstance(check.get("seconds"), (int, float)) and not check.get("up_to_date"):
            steps[name if name.startswith("validate:") else f"validate:{name}"] = round(check["seconds"], 3)
    keys = ("run_id", "started", "ended", "seconds", "exit_code", "interrupted", "config_digest", "counts", "dbt_invocations")
    return {
        **{k: report[k] for k in keys},
        "failed": [n["task"] for n in report["nodes"] if n["status"] == "failed"],
        "validation": report["validation"]["counts"],
        "steps": steps,
    }


def write_run_report(engine: Engine, checks: Mapping[str, CheckResult], translator: Translator, *,
                     interrupted: bool = False, exit_code: int | None = None) -> Path | None:
    """Write this run's report and put it in the history; returns the report's path.

    Raises SetupError (one line, with the fix) when a file cannot be written.
    Calling it again in the same run rewrites both (the history keeps one line per
    run id). A process that neither checked, built nor validated anything (`doit
    list`, `status`, `graph`, `clear`) writes nothing and returns None, so such
    commands never push real runs out of the history.
    """
    run = engine.run
    if not (run.checked or run.outcomes or checks):
        return None
    report = build_report(engine, checks, translator, ended=time.time(), interrupted=interrupted, exit_code=exit_code)
    path, history = engine.settings.report.path, engine.settings.report.history_path
    for written in (path, history):
        sweep_temps(written.parent, written.name)  # of a run killed while writing them
    try:
        write_json_atomic(path, report)
    except OSError as exc:
        raise cannot_write("the run report", path, exc, "set report.path to a writable location") from None
    try:
        append_history(history, history_entry(report))
    except OSError as exc:
        raise cannot_write("the run history", history, exc, "set report.history_path to a writable location") from None
    return path


# -- the history ------------------------------------------------------------------------


def read_history(path: Path | None) -> list[dict[str, Any]]:
    """Runs in the history, oldest first; unreadable lines are skipped (and dropped by the next append)."""
    try:
        lines = path.read_bytes().splitlines() if path else []
    except OSError:
        return []
    runs = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            runs.append(entry)
    if len(runs) < len(lines) and path is not None:
        discarded(path, f"{len(lines) - len(runs)} unreadable line(s)")
    return runs


def append_history(path: Path, entry: Mapping[str, Any], limit: int = HISTORY_LIMIT) -> None:
    """Add (or replace, same run id) a run, keeping the last ``limit`` runs."""
    runs = [r for r in read_history(path) if r.get("run_id") != entry["run_id"]]
    runs = [*runs, dict(entry)][-limit:]
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in runs))


def last_run(history_path: Path | None) -> dict[str, Any] | None:
    runs = read_history(history_path)
    return runs[-1] if runs else None


def regressions(history_path: Path | None, factor: float = 1.5) -> list[tuple[str, float, float]]:
    """Steps of the last run slower than ``factor`` times their median in earlier runs.

    Returns (step, seconds, median), slowest relative to its median first. Steps
    with fewer than MIN_SAMPLES earlier samples are ignored (no baseline), and so
    are last times under TINY_SECONDS or less than MIN_SLOWDOWN_SECONDS above the
    median; a median under TINY_SECONDS counts as TINY_SECONDS, so timer noise on
    near-instant steps is never a regression.
    """
    runs = read_history(history_path)
    if not runs:
        return []
    samples: dict[str, list[float]] = {}
    for run in runs[:-1]:
        for step, seconds in (run.get("steps") or {}).items():
            if isinstance(seconds, (int, float)):
                samples.setdefault(step, []).append(float(seconds))
    found = []
    for step, seconds in sorted((runs[-1].get("steps") or {}).items()):
        earlier = samples.get(step, [])
        if len(earlier) < MIN_SAMPLES or not isinstance(seconds, (int, float)):
            continue
        median = statistics.median(earlier)
        slower = seconds > factor * max(median, TINY_SECONDS) and seconds - median >= MIN_SLOWDOWN_SECONDS
        if seconds >= TINY_SECONDS and slower:
            found.append((step, float(seconds), median))
    return sorted(found, key=lambda r: (-r[1] / max(r[2], TINY_SECONDS), r[0]))
