"""One setup run as an object: its settings, engine, translator and validation scope, and how it ends.

doit imports dodo.py, which makes one ``App`` (``cli.dodo_namespace``); the task
creators, the reporter and every action hang off it, so nothing lives in module
globals. The Python API makes its own ``App`` per call. Settings and the engine load
in ``App.open``, the first step of making the dodo namespace, before DOIT_CONFIG: doit's
own state file lives with the project's build records for the database, and the database
is the file dbt's profile names. Ctrl-C ends a command-line run with status
130 and one line, SIGTERM with 143, after doit has saved the state of every task
completed so far. Notes of the layers below (the ``setup_tasks`` logger) are shown as
dim lines, and a state file the disk refuses to write is one line and exit 1, never a
traceback.

doit always runs on after a failed task (its --continue): ``setup.fail_fast`` is the
engine's rule (no further dbt run after a failed node), so every check still runs and
reports. The exit status is the app's, not doit's (which says 2 for a task whose
dependency failed): 1 when a node, a check of a ``validation.fail_on`` severity or
another task failed, with or without --continue; 0 otherwise.
"""

from __future__ import annotations

import os
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

from doit.exceptions import InvalidDodoFile

from ..config import Settings
from ..engine.engine import Engine
from ..engine.run_state import EngineOptions
from ..errors import PlanwiseError
from ..naming import Translator
from ..validation.scope import ValidationScope
from .command_line import CommandLine, check_reporter
from .ending import at_exit, last_words, write_report
from .lifecycle import RunLifecycle
from .live import LiveLine
from .loading import ProjectLoader
from .notes import cli_verbosity
from .state_file import DoitStateFile
from .witnessing import WitnessKeeper


class App:
    """One run of the setup tasks: what its tasks, actions and reporter share, over its loader, lifecycle and state.

    ``mode`` is "cli" when doit runs from the command line; the Python API uses
    "api", where Ctrl-C must reach the caller as KeyboardInterrupt instead of
    ending the process.
    """

    def __init__(
        self,
        config: str | Path | None = None,
        *,
        settings: Settings | None = None,
        translator: Translator | None = None,
        mode: str = "cli",
        root: Path | None = None,
        engine: Engine | None = None,
        read_only: bool = False,
        argv: Sequence[str] | None = None,
        keep_going: bool = False,
    ) -> None:
        self.config = config
        self.root = root or Path.cwd()
        self.translator = translator or Translator()
        self.mode = mode
        self.command_line = CommandLine.parse(sys.argv[1:] if argv is None and mode == "cli" else argv or ())
        self.read_only = read_only  # the command only looks (list, info, status, graph)
        self.started = time.perf_counter()  # the run's clock starts when dodo.py is imported
        self.console = False  # the console reporter shows check results itself (set when it starts)
        self._validation: ValidationScope | None = None
        self.note_sink: Callable[[str], None] | None = None  # the reporter, once it runs
        self.notes_shown = 0
        self.report: dict[str, Any] | None = None  # as written at the end of the run
        self.tally: str | None = None  # what the console reporter's summary said ("1 built, 3 ran, ...")
        # What changed after this is not witnessed: the run's checks may have read it before (cli.witnessing).
        self.witness = WitnessKeeper(self.root, time.time_ns())
        live = mode == "cli" and self.command_line.reporter in (None, "") and cli_verbosity(sys.argv[1:]) > 0
        self.live = LiveLine(sys.stdout, live and sys.stdout.isatty(), colour="NO_COLOR" not in os.environ)
        # --continue (or the API's continue_on_failure): setup.fail_fast off for this run.
        options = EngineOptions(keep_going=keep_going or self.command_line.keep_going, looks_only=read_only)
        self.loader = ProjectLoader(config, self.root, settings, engine, options, self.on_engine_event, self.live.clear)
        self.doit_state = DoitStateFile(self.loader.state_dir)  # with the loaded project's records
        # How the run ends: interrupts, a halt, the exit status (cli.lifecycle).
        self.lifecycle = RunLifecycle(
            mode,
            lambda: None if self.current_engine is None else self.current_engine.run,
            lambda status: last_words(self, status),
        )
        self.action, self.on_keyboard_interrupt = self.lifecycle.action, self.lifecycle.on_keyboard_interrupt

    # -- what the run works on --------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings (``ProjectLoader.settings``): once the engine exists, the very object it uses."""
        return self.loader.settings

    def engine(self) -> Engine:
        """The engine, made on first use; raises the PlanwiseError that keeps the project from loading."""
        return self.loader.engine()

    def on_engine_event(self, kind: str, payload: dict[str, Any]) -> None:
        """Steps that take a while (starting dbt, parsing, running tests) on the live line."""
        if kind == "step":
            if payload["text"] is None:
                self.live.clear()
            else:
                self.live.show(payload["text"])
        elif kind == "progress":
            self.live.show(f"{payload['text']} ({payload['done']} of {payload['total']})", since=self.live.since)

    def open(self) -> Engine | None:
        """The run's first step, where the dodo namespace is made (``cli.dodo.namespace``): the process hooks
        (command line), the --reporter checked, then the project loaded into its engine -- dbt parses it when
        it changed, and its profile names the database, beside which doit's state file goes.

        None when the project cannot be loaded (``load_error`` says why): tasks are then defined
        anyway and fail with the reason when run, so `doit status` can still report (exit 1) and
        every other command names the cause.
        """
        self.install_process_hooks()  # first: loading the project may already note things
        check_reporter(self.command_line.reporter)
        return self.task_engine()

    def task_engine(self) -> Engine | None:
        """For task creators: the engine ``open`` made, or None when the project cannot be loaded."""
        self.guard_state()
        return self.loader.engine_or_none()

    @property
    def current_engine(self) -> Engine | None:
        return self.loader.current

    @property
    def load_error(self) -> str:
        return self.loader.error.one_line() if self.loader.error is not None else ""

    def validation(self) -> ValidationScope:
        """The run's checks and their results (one per engine); InvalidDodoFile when they cannot load."""
        if self._validation is None:
            try:
                self._validation = ValidationScope(self.engine())
            except PlanwiseError as err:
                raise InvalidDodoFile(err.one_line()) from None
        return self._validation

    @property
    def current_validation(self) -> ValidationScope | None:
        return self._validation

    @property
    def check_results(self) -> dict[str, Any]:
        return dict(self._validation.results) if self._validation is not None else {}

    @cached_property
    def check_names(self) -> dict[str, str]:
        """Task name -> check name, for every check of this run (as the translator names them)."""
        scope = self._validation
        return {self.translator.check_task_name(c.name): c.name for c in scope.checks} if scope is not None else {}

    @cached_property
    def node_task_names(self) -> frozenset[str]:
        """Task names of the seeds, models and snapshots (built, not ran)."""
        engine = self.current_engine
        if engine is None:
            return frozenset()
        return frozenset(
            self.translator.task_names(n for n in engine.manifest.nodes.values() if n.is_buildable).values()
        )

    # -- how the run ends ---------------------------------------------------------------------

    @property
    def interrupted(self) -> bool:
        return self.lifecycle.interrupted

    @property
    def failures(self) -> list[tuple[str, str]]:
        return self.lifecycle.status.failures

    def note_failure(self, task: str, fail: Any) -> None:
        """A reporter saw a task fail (doit's TaskFailed, TaskError or UnmetDependency)."""
        self.lifecycle.status.note_failure(task, fail)

    def note_doit_error(self, message: str) -> None:
        self.lifecycle.status.note_doit_error(message)

    def exit_status(self) -> int:
        """The run's status: 130/143 interrupted, 2 crashed, 1 failed (a node, a blocking check, a task), else 0."""
        engine = self.current_engine
        fail_on = engine.settings.validation.fail_on if engine is not None else ()
        return self.lifecycle.exit_status(self.state_error is None, fail_on, self.check_results.values())

    # -- the end of the run ---------------------------------------------------------------------

    def write_report(self, exit_code: int | None = None) -> None:
        """Write the run report of a process that ran tasks (not of `list`, `info`, ...)."""
        write_report(self, exit_code)

    def close(self) -> None:
        if self.current_engine is not None:
            self.current_engine.close()
        self.doit_state.remove_scratch()

    def install_process_hooks(self) -> None:
        """Command line only: Ctrl-C and SIGTERM outside actions, notes shown, the report written at the end."""
        self.lifecycle.install_process_hooks(self.show_note, lambda: at_exit(self))

    def show_note(self, text: str) -> None:
        """One of setup's notes: through the reporter when it runs, else on stderr."""
        self.notes_shown += 1
        if self.note_sink is not None:
            self.note_sink(text)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    # -- doit ---------------------------------------------------------------------------------

    def doit_config(self, reporter: type) -> dict[str, Any]:
        """DOIT_CONFIG: default task, the reporter, and doit's state kept per project and database (private: 0700).

        After ``open``: the state folder is the loaded project's.
        """
        if self.current_engine is None and self.loader.error is None:
            raise RuntimeError("App.open() first: doit's state file lives with the loaded project's records")
        halt = self._halt if not self.read_only and self.current_engine is not None else None
        dep_file = self.doit_state.place(self.loader.leaves_no_files, halt)
        self.witness.begin(self, dep_file)
        line = self.command_line
        return {
            "default_tasks": ["setup"],
            # Options after the task name reach doit only as task options: they become the defaults here.
            "reporter": line.reporter or reporter,
            "dep_file": str(dep_file),
            "backend": "sqlite3",
            "verbosity": 1 if line.verbosity is None else line.verbosity,
            # Checks run after a failure too; setup.fail_fast is the engine's (see the module docstring).
            "continue": True,
        }

    def _halt(self, error: PlanwiseError) -> None:
        """Nothing of this run can work (its state folder refuses): its first task ends it, after this line."""
        assert self.current_engine is not None  # halt is given only then (doit_config)
        self.current_engine.run.fatal = error
        sys.stderr.write(f"error: {error.one_line()}\n")

    # -- doit's state file ------------------------------------------------------------------------

    @property
    def dep_file(self) -> Path | None:
        return self.doit_state.path

    @property
    def state_error(self) -> PlanwiseError | None:
        return self.doit_state.error

    def guard_state(self) -> None:
        """Inside a doit command: a write of doit's state the disk refuses becomes ``state_error``."""
        self.doit_state.guard()
