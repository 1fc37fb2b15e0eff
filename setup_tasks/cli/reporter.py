"""Terminal output of a setup run: what was built, ran or failed (a line each), a live line, a closing tally.

A doit reporter (doit's own extension point, so ``--reporter json`` still replaces
it). Verbosity follows doit's ``-v``: 0 prints errors and the summary of a failed
run only, 1 (default) a line per task that did something plus one tally of what was
up to date, 2 also every up-to-date task, offending rows and dbt's own lines. Colour,
word wrapping and the live line only on a terminal; piped output is plain text.

No terminal library: the reporter is imported on every run, including the
no-op runs people make most, and a library import would cost more than the run.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from typing import Any, Mapping, Sequence

from doit.exceptions import TaskFailed, UnmetDependency

from ..engine.engine import Engine
from ..engine.run_state import Outcome
from ..naming import VALIDATE_TASK
from ..validation.results import DEFAULT_FAIL_ON, CheckResult, closing_lines, plural
from .app import App
from .exit_status import end_run
from .json_reporter import JsonReporter
from .live import LiveLine, Style, seconds, summary_lines, terminal_width, wrap
from .pipes import pipe_safe
from .notes import cli_verbosity

__all__ = ["JsonReporter", "SetupReporter", "cli_verbosity", "reporter_for"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PIPED_NAME_WIDTH = 64  # no terminal to fit: long names keep the column up to this width
MARKS: Mapping[str, tuple[str, str]] = {
    "pass": ("✓", "green"),
    "fail": ("✗", "red"),
    "warn": ("!", "yellow"),
    "not run": ("-", "dim"),
    "skipped": ("·", "dim"),
}


def exception_line(fail: Any) -> str:
    """The last line of an unexpected exception's traceback (``ValueError: ...``): a task that crashed says why."""
    if isinstance(fail, TaskFailed):
        return ""
    lines = "".join(getattr(fail, "traceback", None) or ()).strip().splitlines()
    return lines[-1].strip() if lines else ""


def counted_up_to_date(task: Any) -> bool:
    """A task the tally counts when it is up to date: neither a helper (``_``) nor a group (no actions)."""
    return not task.name.startswith("_") and bool(task.actions)


def counted_when_run(task: Any) -> bool:
    """A task the tally counts when it runs: the summary (printed at the end) is no work to list either."""
    return counted_up_to_date(task) and task.name != VALIDATE_TASK


def reporter_for(app: App) -> type:
    """The reporter class doit instantiates, bound to this app (doit passes only stream and options)."""
    return type("SetupReporter", (SetupReporter,), {"app": app})


class SetupReporter:
    """doit reporter for people at a terminal and for CI logs."""

    desc = "planwise-setup progress and summary"
    app: App

    def __init__(self, outstream: Any, options: dict[str, Any]) -> None:
        outstream = pipe_safe(outstream)  # `doit setup | head -1`
        self.out = outstream
        self.style = Style(outstream)
        self.verbosity = options.get("verbosity", cli_verbosity(sys.argv[1:]))
        live = self.app.live
        self.live = (
            live
            if live.stream is outstream and live.enabled
            else LiveLine(outstream, self.style.enabled and self.verbosity > 0, colour=self.style.enabled)
        )
        self.started = self.app.started
        self.task_started: dict[str, float] = {}
        self.counts: Counter[str] = Counter()
        self.printed: set[str] = set()
        self.batch: list[str] = []
        self.batch_done = 0
        self.batch_tests: list[str] = []  # tests the batch runs, right after what they read
        self.tests_done = 0
        self.batch_started = 0.0
        self.causes: dict[str, str] = {}  # a failure's cause -> the first task shown failing with it
        self.width = PIPED_NAME_WIDTH
        self.written = 0  # outputs so far: a no-op at the default verbosity prints only its summary
        self.engine: Engine | None = None

    # -- doit's reporter protocol -----------------------------------------------------------

    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        self.app.console = True
        self.engine = self.app.current_engine
        self.app.note_sink = self.note
        if self.engine is not None:
            # -v 2: dbt's own lines too
            self.engine.listen(self.on_engine_event, self.dbt_line if self.verbosity >= 2 else None)
        self.width = self._name_width(tasks, selected_tasks)

    def get_status(self, task: Any) -> None:
        # Every task doit looks at, once: what a run finding them all up to date would say (cli.witnessing).
        checked = bool(getattr(task, "uptodate", None))
        self.app.witness.task_considered(task.name, checked, counted_up_to_date(task), counted_when_run(task))

    def execute_task(self, task: Any) -> None:
        self.task_started[task.name] = time.perf_counter()
        self.app.witness.task_executed(task.name, bool(getattr(task, "uptodate", None)))
        if task.name in self.app.check_names and self.verbosity > 0:
            self.live.show(f"checking {task.name}")  # a check's query may take a while; dbt_tests says more

    def add_success(self, task: Any) -> None:
        self._task_done(task)
        if not counted_when_run(task):
            return  # helpers, groups and the summary (printed at the end) are no work to list
        if self._check_lines(task.name):
            return
        self.counts["built" if task.name in self.app.node_task_names else "ran"] += 1
        if task.name in self.printed:
            return
        self._line("pass", task.name, seconds(self._elapsed(task.name)))

    def add_failure(self, task: Any, fail: Any) -> None:
        self._task_done(task)
        self.app.note_failure(task.name, fail)
        if isinstance(fail, UnmetDependency):
            if task.name in self.app.node_task_names:
                self.counts["not run"] += 1
                self._line("not run", task.name, f"not run: {self._unmet(fail)}", always=True)
            return
        outcome = self._outcome_of(task.name)
        if outcome is not None and outcome.status == "skipped":  # setup.fail_fast stopped it
            self.counts["not run"] += 1
            self._line("not run", task.name, outcome.message.replace("not built:", "not run:", 1), always=True)
            return
        if self._check_lines(task.name, failed=True):
            return
        self.counts["failed"] += 1
        message = " ".join(str(getattr(fail, "message", fail)).split())
        cause = exception_line(fail)
        if cause:
            message = f"{message}: {cause}"
        self._line("fail", task.name, self._once(task.name, message), always=True)

    def _once(self, task_name: str, message: str) -> str:
        """A cause every node of the batch failed with (a full disk, a profile DuckDB rejects) is said once."""
        head, sep, cause = message.partition(" failed: ")
        if not sep or task_name not in self.app.node_task_names:
            return message
        first = self.causes.setdefault(cause, task_name)
        return message if first == task_name else f"{head} failed: the same cause as {first} (above)"

    def _task_done(self, task: Any) -> None:
        if task.name in self.app.check_names:
            self.live.clear()

    def skip_uptodate(self, task: Any) -> None:
        if not counted_up_to_date(task):
            return
        self.counts["up to date"] += 1
        if self.verbosity >= 2:
            self._line("skipped", task.name, "up to date")

    def skip_ignore(self, task: Any) -> None:
        self.app.witness.task_ignored(task.name)
        self.counts["ignored"] += 1
        self._line("skipped", task.name, "ignored")

    def cleanup_error(self, exception: Any) -> None:
        self.app.note_doit_error(exception.get_msg())
        self._write(f"cleanup error: {exception.get_msg()}\n", always=True)

    def runtime_error(self, msg: str) -> None:
        self.app.note_doit_error(msg)

    def teardown_task(self, task: Any) -> None:
        pass

    def complete_run(self) -> None:
        self.live.close()
        if self.app.interrupted:
            self._write(self.app.lifecycle.interrupted_message() + "\n", always=True)
        elif not isinstance(sys.exc_info()[1], KeyboardInterrupt):  # Ctrl-C while doit checked: no tally to give
            self._closing()
        if self.app.mode == "cli":
            # doit would say 2 for tasks whose dependency failed: the app's status is the run's (see cli.app).
            end_run(self.app.exit_status())

    def _closing(self) -> None:
        failed = bool(self.app.failures)
        if self.verbosity == 0 and not failed and self.app.state_error is None:
            return
        for name, message in self.app.failures:
            if name == "doit":
                self._write(f"error: {message}\n", always=True)
        said_nothing = self.written == 0
        tally, lines = self.summary_parts()
        self.app.tally = tally  # the run report keeps it: `doit status` repeats the run's own words
        self._write(self.summary(tally, lines) + "\n", always=True)
        if said_nothing and self.verbosity == 1 and {k for k, n in self.counts.items() if n} <= {"up to date"}:
            self.app.witness.said = {"tally": tally, "lines": lines}  # all a no-op says: its witness repeats it

    def note(self, text: str) -> None:
        """One of setup's notes (``cli.notes``), dim."""
        self._write(self.style(text, "dim") + "\n", always=True)

    # -- engine events: progress inside one batched dbt invocation -----------------

    def on_engine_event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "batch":
            self.batch = list(payload["nodes"])
            self.batch_tests = list(payload.get("tests") or [])
            self.tests_done = 0
            self.batch_done = 0
            self.batch_started = time.perf_counter()
            if self.batch:
                how = "without dbt (as dbt-duckdb builds them)" if payload.get("without_dbt") else "in one dbt run"
                self._write(self.style(f"building {plural(len(self.batch), 'stale nodes')} {how}\n", "dim"))
        elif kind == "start":
            self._progress(payload["unique_id"])
        elif kind == "test":
            self.tests_done += 1
        elif kind == "node":
            self._node_done(payload["outcome"])
        elif kind == "retired":
            for table in payload["tables"]:
                self._line("not run", table, "dropped: no node of the project builds it now", mark_style="yellow")
        elif kind == "warning":
            self._write(self.style(f"warning: {payload['message']}\n", "yellow"), always=True)

    def _node_done(self, outcome: Outcome) -> None:
        if self.engine is None:
            return
        if outcome.unique_id in self.batch:
            self.batch_done += 1
            if self.batch_done >= len(self.batch):
                self.live.clear()  # the last node of the batch: nothing is being built any more
        name = self._task_name(outcome.unique_id)
        if outcome.ok:
            rows = f"  {plural(outcome.rows, 'rows')}" if outcome.rows is not None else ""
            self._line("pass", name, seconds(outcome.seconds) + rows)
            self.printed.add(name)

    def _progress(self, uid: str) -> None:
        if self.verbosity == 0 or not self.batch:
            return
        if uid in self.batch_tests:  # a test of the batch, right after what it reads
            total = len(self.batch_tests)
            self.live.show(
                f"running {plural(total, 'dbt tests')} ({min(self.tests_done + 1, total)} of {total})",
                since=self.batch_started,
            )
            return
        position = min(self.batch_done + 1, len(self.batch))
        self.live.show(f"building {self._task_name(uid)} ({position} of {len(self.batch)})", since=self.batch_started)

    def dbt_line(self, message: str) -> None:
        """One of dbt's own lines (-v 2), timed as dbt times them, above the live line."""
        text = message if self.style.enabled else ANSI.sub("", message)
        self._write(f"{time.strftime('%H:%M:%S')}  {text}\n")

    # -- checks -------------------------------------------------------------------------------

    def _check_lines(self, task_name: str, failed: bool = False) -> bool:
        """A check task's results, a line each that matters; False when this is no check of this run."""
        scope = self.app.current_validation
        check = self.app.check_names.get(task_name)
        run = scope.runs.get(check) if scope is not None and check else None
        if scope is None or run is None:
            return False
        fail_on = scope.validation.fail_on
        verdicts = [r.verdict(fail_on) for r in run.results]
        fresh = [v for r, v in zip(run.results, verdicts) if not r.up_to_date]  # a reused warning is no news
        worst = next((v for v in ("fail", "warn", "not run", "pass", "skipped") if v in fresh), "pass")
        self.counts["failed" if failed else "not run" if worst == "not run" else "ran"] += 1
        elapsed = seconds(self._elapsed(task_name))
        if len(run.results) == 1:
            self._one_result_lines(task_name, run.results[0], worst, elapsed, fail_on, own=run.results[0].name == check)
        else:
            self._results_lines(task_name, run.results, verdicts, worst, elapsed, fail_on)
        return True

    def _one_result_lines(
        self, task_name: str, result: CheckResult, worst: str, elapsed: str, fail_on: Sequence[str], own: bool
    ) -> None:
        """A check of one result: its line (a pass is its time, a skip is said at -v 2), and its sample."""
        if worst in ("pass", "skipped"):
            if worst == "pass" or self.verbosity >= 2:
                self._line(worst, task_name, elapsed if worst == "pass" else f"skipped: {result.message}")
            return
        self._line(worst, task_name, self._result_text(result, fail_on, with_name=not own), always=worst == "fail")
        self._sample(result)

    def _results_lines(
        self,
        task_name: str,
        results: Sequence[CheckResult],
        verdicts: list[str],
        worst: str,
        elapsed: str,
        fail_on: Sequence[str],
    ) -> None:
        """A check of several results: the tally, then a line for each new one that failed or did not run."""
        counted = ", ".join(f"{n} {'passed' if v == 'pass' else v}" for v, n in Counter(verdicts).items())
        self._line(worst if worst != "skipped" else "pass", task_name, f"{elapsed}  {counted}", always=worst == "fail")
        for result in results:
            if (result.failed or result.not_run) and not result.up_to_date:
                self._write(
                    self._indented(self._result_text(result, fail_on, with_name=True)), always=result.blocking(fail_on)
                )
                self._sample(result)

    @staticmethod
    def _result_text(result: CheckResult, fail_on: Sequence[str], with_name: bool) -> str:
        text = result.one_line(fail_on)
        return text if with_name else text[len(result.name) + 1 :]

    def _sample(self, result: CheckResult) -> None:
        line = result.sample_line()
        if line and self.verbosity >= 2:
            self._write(self._indented(line))

    def _indented(self, text: str) -> str:
        return self._wrap(text, "    ", "      ") + "\n"

    # -- output -------------------------------------------------------------------------------

    def summary(self, tally: str, lines: list[str]) -> str:
        """The closing lines (``summary_parts``), timed now and wrapped to the terminal."""
        elapsed = time.perf_counter() - self.started
        return "\n".join(self._wrap(line, "", "  ") for line in summary_lines(tally, elapsed, lines))

    def summary_parts(self) -> tuple[str, list[str]]:
        """The tally of tasks ("3 built, 45 up to date") and the validation lines under it."""
        if self.engine is not None:  # nodes built inside a batch finish before doit reaches their task
            self.counts["built"] = max(self.counts["built"], sum(o.ok for o in self.engine.run.outcomes.values()))
        order = ("built", "ran", "failed", "not run", "up to date")
        parts = [f"{self.counts[k]} {k}" for k in order if self.counts[k]]
        if self.engine is not None and self.engine.run.retired:
            parts.append(f"{plural(len(self.engine.run.retired), 'leftover tables')} dropped")
        kept = self.engine.run.kept if self.engine is not None else []
        if kept:  # early cutoff: what they read was rebuilt with the content they were built from
            parts.append(f"unchanged: {plural(len(kept), 'descendants')} kept")
        return ", ".join(parts) or "nothing to do", self._validation_lines()

    def _validation_lines(self) -> list[str]:
        scope = self.app.current_validation
        held, since = scope.held_on_rebuilt() if scope is not None else (0, 0.0)
        return closing_lines(self.app.check_results.values(), self._fail_on(), held, since)

    def _fail_on(self) -> Sequence[str]:
        validation = getattr(getattr(self.engine, "settings", None), "validation", None)
        return tuple(validation.fail_on) if validation is not None else DEFAULT_FAIL_ON

    def _outcome_of(self, task_name: str) -> Outcome | None:
        if self.engine is None or task_name not in self.app.node_task_names:
            return None
        uid = next((u for u, o in self.engine.run.outcomes.items() if self._task_name(u) == task_name), None)
        return self.engine.run.outcomes.get(uid) if uid else None

    def _unmet(self, fail: UnmetDependency) -> str:
        """'model:stg_orders failed' (doit names the tasks that failed before this one)."""
        names = str(getattr(fail, "message", "") or "").split()
        return f"{', '.join(names)} failed" if names else "a task it needs failed"

    def _task_name(self, uid: str) -> str:
        node = self.engine.node(uid) if self.engine else None
        return self.app.translator.task_name(node) if node else uid

    def _elapsed(self, name: str) -> float:
        return time.perf_counter() - self.task_started.get(name, time.perf_counter())

    def _name_width(self, tasks: dict[str, Any], selected: list[str]) -> int:
        """The name column: as wide as the longest name this run may print, within the terminal."""
        names, stack = set(), list(selected)
        while stack:
            name = stack.pop()
            task = tasks.get(name)
            if task is None or name in names:
                continue
            names.add(name)
            stack.extend(task.task_dep)
        shown = [n for n in names if not n.startswith("_") and tasks[n].actions]
        longest = max((len(n) for n in shown), default=20)
        cap = max(20, terminal_width() - 28) if self.style.enabled else PIPED_NAME_WIDTH
        return min(longest, cap)

    def _line(self, verdict: str, name: str, detail: str, always: bool = False, mark_style: str | None = None) -> None:
        mark, colour = MARKS[verdict]
        if len(name) > self.width:
            name = name[: self.width - 1] + "…"
        head = f"{self.style(mark, mark_style or colour)} {name:<{self.width}} "
        plain_head = 2 + self.width + 1
        self._write(self._wrap(detail, head, " " * plain_head, first_width=plain_head) + "\n", always)

    def _wrap(self, text: str, first: str, rest: str, first_width: int | None = None) -> str:
        """``first`` + ``text``, wrapped at word boundaries to the terminal's width (piped: one line)."""
        return wrap(text, first, rest, terminal_width() if self.style.enabled else None, first_width)

    def _write(self, text: str, always: bool = False) -> None:
        if self.verbosity == 0 and not always:
            return
        self.written += 1
        self.live.write(text)
