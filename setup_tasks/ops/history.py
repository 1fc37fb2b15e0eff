"""The run history: one compact JSON line per run, bounded, and the report file of the latest run.

Light on purpose (no engine): the no-op shortcut (``cli.shortcut``) writes a run's
report and history line without loading the project.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from ..errors import cannot_write
from ..files import PRIVATE, discarded, read_json, sweep_temps, write_bytes_atomic, write_text_atomic

HISTORY_LIMIT = 200
# Regressions need a baseline: at least this many earlier samples of a step...
MIN_SAMPLES = 3
# ...and times above this (below it, ratios are timer noise)...
TINY_SECONDS = 0.05
# ...and at least this much slower than the median: a 0.1 s node taking 0.2 s on a busy
# laptop is scheduling noise, not something to show anyone.
MIN_SLOWDOWN_SECONDS = 0.25


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def history_entry(report: Mapping[str, Any]) -> dict[str, Any]:
    """The compact line a run leaves in the history: enough for trends and `doit status`."""
    steps = {n["task"]: n["seconds"] for n in report["nodes"] if n["status"] == "built"}
    for name, check in report["validation"]["checks"].items():
        # A result reused from an earlier run (up_to_date) took no time in this one.
        if isinstance(check.get("seconds"), (int, float)) and not check.get("up_to_date"):
            steps[name if name.startswith("validate:") else f"validate:{name}"] = round(check["seconds"], 3)
    keys = (
        "run_id",
        "started",
        "ended",
        "seconds",
        "exit_code",
        "interrupted",
        "config_digest",
        "counts",
        "dbt_invocations",
    )
    return {
        **{k: report[k] for k in keys},
        "tally": report.get("tally"),
        "failed": [n["task"] for n in report["nodes"] if n["status"] == "failed"],
        "validation": report["validation"]["counts"],
        "steps": steps,
    }


def write_report_files(report: str, entry: Mapping[str, Any], path: Path, history: Path) -> None:
    """Write a run's report (its JSON text) to ``path`` and its ``history_entry`` to ``history``;
    PlanwiseError (one line, the fix) when one cannot be."""
    for written in (path, history):
        sweep_temps(written.parent, written.name)  # of a run killed while writing them
    try:
        write_text_atomic(path, report)
    except OSError as exc:
        raise cannot_write("the run report", path, exc, "set report.path to a writable location") from None
    try:
        append_history(history, entry)
    except OSError as exc:
        raise cannot_write("the run history", history, exc, "set report.history_path to a writable location") from None


def _entries(path: Path | None, last: int | None = None) -> list[tuple[bytes, dict[str, Any]]]:
    """The history's readable lines (of the ``last`` ones), each with its run; unreadable ones are noted."""
    try:
        lines = path.read_bytes().splitlines() if path else []
    except OSError:
        return []
    lines = lines[-last:] if last else lines
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            entries.append((line, entry))
    if len(entries) < len(lines) and path is not None:
        discarded(path, f"{len(lines) - len(entries)} unreadable line(s)")
    return entries


def read_history(path: Path | None, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """The last ``limit`` runs in the history, oldest first; unreadable lines are skipped (and dropped when
    the history is next rewritten)."""
    return [entry for _, entry in _entries(path, limit)]


def append_history(path: Path, entry: Mapping[str, Any], limit: int = HISTORY_LIMIT) -> None:
    """Add (or replace, same run id) a run: one line appended, whatever the history holds. It is rewritten,
    with the last ``limit`` runs (earlier lines as they were written), only when it holds twice that many,
    or when the run is in it already (a second report of the same run)."""
    line = json.dumps(dict(entry), sort_keys=True, default=str).encode()
    try:
        data = path.read_bytes()  # counted, not parsed
    except FileNotFoundError:
        data = b""
    known = json.dumps(str(entry["run_id"])).encode() in data
    if not known and data.count(b"\n") + 1 < 2 * limit and (not data or data.endswith(b"\n")):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
        try:
            os.write(fd, line + b"\n")
        finally:
            os.close(fd)
        return
    kept = [old for old, run in _entries(path, limit) if run.get("run_id") != entry["run_id"]]
    lines = [*kept, line][-limit:]
    write_bytes_atomic(path, b"".join(old + b"\n" for old in lines))


def last_run(history_path: Path | None) -> dict[str, Any] | None:
    runs = read_history(history_path)
    return runs[-1] if runs else None


def run_failures(run: Mapping[str, Any], report_path: Path | None) -> list[str]:
    """'model:stg_orders: <its one line>' for each node that failed in ``run`` (a history line): the
    messages from the run report when it is that run's, else the task names alone."""
    report = read_json(report_path, {}) if report_path is not None else {}
    if report.get("run_id") == run.get("run_id"):
        return [f"{n['task']}: {n['message']}" for n in report.get("nodes") or [] if n.get("status") == "failed"]
    return [str(task) for task in run.get("failed") or []]


def regressions(history_path: Path | None, factor: float = 1.5) -> list[tuple[str, float, float]]:
    """Steps of the last run slower than ``factor`` times their median in earlier runs.

    Returns (step, seconds, median), slowest relative to its median first. Steps
    with fewer than MIN_SAMPLES earlier samples are ignored (no baseline), and so
    are last times under TINY_SECONDS or less than MIN_SLOWDOWN_SECONDS above the
    median; a median under TINY_SECONDS counts as TINY_SECONDS, so timer noise on
    near-instant steps is never a regression.
    """
    import statistics  # not at import: the no-op shortcut imports this module, and statistics costs 9 ms

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
