"""Terminal output of a setup run: live progress, one line per task, a closing summary.

A doit reporter (doit's own extension point, so ``--reporter json`` still replaces
it). Verbosity follows doit's ``-v``: 0 prints errors and the summary of a failed
run only, 1 (default) a line per task, 2 also dbt's own log lines. Colour and the
live progress line only on a terminal; piped output is plain text.

No terminal library: the reporter is imported on every run, including the
no-op runs people make most, and a library import would cost more than the run.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Any

from doit.exceptions import TaskFailed, UnmetDependency

from ..engine.engine import Engine, Outcome
from .app import App
from .notes import cli_verbosity

__all__ = ["SetupReporter", "cli_verbosity", "reporter_for"]


def exception_line(fail: Any) -> str:
    """The last line of an unexpected exception's traceback (``ValueError: ...``): a task that crashed says why."""
    if isinstance(fail, TaskFailed):
        return ""
    lines = "".join(getattr(fail, "traceback", None) or ()).strip().splitlines()
    return lines[-1].strip() if lines else ""


class Style:
    """ANSI styling, or none when the output is not a terminal (or NO_COLOR is set)."""

    CODES = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1"}

    def __init__(self, stream: Any) -> None:
        self.enabled = bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ

    def __call__(self, text: str, style: str) -> str:
        return f"\033[{self.CODES[style]}m{text}\033[0m" if self.enabled else text


def _seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 60 else f"{int(value // 60)}m{value % 60:04.1f}s"


def reporter_for(app: App) -> type:
    """The reporter class doit instantiates, bound to this app (doit passes only stream and options)."""
    return type("SetupReporter", (SetupReporter,), {"app": app})


class SetupReporter:
    """doit reporter for people at a terminal and for CI logs."""

    desc = "planwise-setup progress and summary"
    app: App

    def __init__(self, outstream: Any, options: dict[str, Any]) -> None:
        self.out = outstream
        self.style = Style(outstream)
        self.verbosity = options.get("verbosity", cli_verbosity(sys.argv[1:]))
        self.started = self.app.started
        self.task_started: dict[str, float] = {}
        self.counts: Counter[str] = Counter()
        self.failures: list[tuple[str, str]] = []
        self.printed: set[str] = set()
        self.batch: list[str] = []
        self.batch_done = 0
        self.building: str | None = None
        self.live = False
        self.engine: Engine | None = None

    # -- doit's reporter protocol -----------------------------------------------------------

    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        self.engine = self.app.current_engine
        self.app.note_sink = self.note
        if self.engine is not None:
            self.engine.quiet = self.verbosity < 2
            self.engine.listeners.append(self.on_engine_event)

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        self.task_started[task.name] = time.perf_counter()

    def add_success(self, task: Any) -> None:
        if task.name.startswith("_") or not task.actions:
            return
        self.counts["built" if task.name in self.app.node_task_names else "ran"] += 1
        if task.name in self.printed:
            return
        elapsed = time.perf_counter() - self.task_started.get(task.name, time.perf_counter())
        self._line(self.style("✓", "green"), task.name, _seconds(elapsed))

    def add_failure(self, task: Any, fail: Any) -> None:
        if isinstance(fail, UnmetDependency):
            self.counts["not run"] += 1
            self._line(self.style("-", "dim"), task.name, "not run: a task it needs failed", always=True)
            return
        self.counts["failed"] += 1
        message = " ".join(str(getattr(fail, "message", fail)).split())
        cause = exception_line(fail)
        if cause:
            message = f"{message}: {cause}"
        self.failures.append((task.name, message))
        self._line(self.style("✗", "red"), task.name, self.style(message, "red"), always=True)

    def skip_uptodate(self, task: Any) -> None:
        if task.name.startswith("_"):
            return
        self.counts["up to date"] += 1
        self._line(self.style("·", "dim"), task.name, self.style("up to date", "dim"))

    def skip_ignore(self, task: Any) -> None:
        self.counts["ignored"] += 1
        self._line("!", task.name, "ignored")

    def cleanup_error(self, exception: Any) -> None:
        self._write(f"cleanup error: {exception.get_msg()}\n", always=True)

    def runtime_error(self, msg: str) -> None:
        self.failures.append(("doit", " ".join(msg.split())))

    def teardown_task(self, task: Any) -> None:
        pass

    def complete_run(self) -> None:
        self._clear_live()
        self.app.run_failed = bool(self.failures)
        if self.app.interrupted:
            self._write(self.app.interrupted_message() + "\n", always=True)
            return
        failed = bool(self.failures)
        if self.verbosity == 0 and not failed and self.app.state_error is None:
            return
        for name, message in self.failures:
            if name == "doit":
                self._write(f"error: {message}\n", always=True)
        self._write(self.summary() + "\n", always=True)
        if self.app.state_error is not None and not failed and self.app.mode == "cli":
            raise SystemExit(1)  # the state was not saved (its line is above): not a success

    def note(self, text: str) -> None:
        """One of setup's notes (``cli.notes``), dim."""
        self._write(self.style(text, "dim") + "\n", always=True)

    # -- engine events: progress inside one batched dbt invocation -----------------

    def on_engine_event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "batch":
            self.batch = list(payload["nodes"])
            self.batch_done = 0
            if self.batch:
                n = len(self.batch)
                self._write(self.style(f"building {n} stale node{'s' * (n != 1)} in one dbt run\n", "dim"))
        elif kind == "start":
            self.building = payload["unique_id"]
            self._progress()
        elif kind == "node":
            self._node_done(payload["outcome"])
        elif kind == "retired":
            for table in payload["tables"]:
                self._line(self.style("-", "yellow"), table, "dropped: no node of the project builds it now")
        elif kind == "warning":
            self._write(self.style(f"warning: {payload['message']}\n", "yellow"), always=True)

    def _node_done(self, outcome: Outcome) -> None:
        if self.engine is None:
            return
        if outcome.unique_id in self.batch:
            self.batch_done += 1
        name = self._task_name(outcome.unique_id)
        if outcome.ok:
            rows = f"  {outcome.rows} rows" if outcome.rows is not None else ""
            self._line(self.style("✓", "green"), name, _seconds(outcome.seconds) + rows)
            self.printed.add(name)
        self._progress()

    def _task_name(self, uid: str) -> str:
        node = self.engine.node(uid) if self.engine else None
        return self.app.translator.task_name(node) if node else uid

    # -- output -------------------------------------------------------------------------------

    def summary(self) -> str:
        total = _seconds(time.perf_counter() - self.started)
        if self.engine is not None:  # nodes built inside a batch finish before doit reaches their task
            self.counts["built"] = max(self.counts["built"], sum(o.ok for o in self.engine.run.outcomes.values()))
        parts = [f"{self.counts[k]} {k}" for k in ("built", "up to date", "failed", "not run", "ran") if self.counts[k]]
        if self.engine is not None and self.engine.run.retired:
            parts.append(f"{len(self.engine.run.retired)} leftover table(s) dropped")
        line = "summary: " + (", ".join(parts) or "nothing to do") + f" in {total}"
        checks = self._checks_line()
        return line + (f"\n{checks}" if checks else "")

    def _checks_line(self) -> str:
        results = self.app.check_results
        if not results:
            return ""
        tally: Counter[str] = Counter()
        for result in results.values():
            tally["passed" if result.passed else f"failed ({result.severity})" if result.failed else result.status] += 1
        parts = [f"{n} {k}" for k, n in sorted(tally.items())]
        return "validations: " + ", ".join(parts)

    def _progress(self) -> None:
        if not self.style.enabled or self.verbosity == 0 or not self.batch or self.building is None:
            return
        elapsed = _seconds(time.perf_counter() - self.started)
        label = self._task_name(self.building)
        position = min(self.batch_done + 1, len(self.batch))
        self.out.write(f"\r\033[K{self.style('…', 'yellow')} building {label} ({position} of {len(self.batch)}) {elapsed}")
        self.out.flush()
        self.live = True

    def _clear_live(self) -> None:
        if self.live:
            self.out.write("\r\033[K")
            self.live = False

    def _line(self, mark: str, name: str, detail: str, always: bool = False) -> None:
        self._write(f"{mark} {name:<40} {detail}\n", always)

    def _write(self, text: str, always: bool = False) -> None:
        if self.verbosity == 0 and not always:
            return
        self._clear_live()
        self.out.write(text)
        self.out.flush()
