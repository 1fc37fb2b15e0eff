"""One setup run as an object: its settings, engine, translator and validation scope, and how it ends.

doit imports dodo.py, which makes one ``App`` (``cli.dodo_namespace``); the task
creators, the reporter and every action hang off it, so nothing lives in module
globals. The Python API makes its own ``App`` per call. Settings load when doit
reads DOIT_CONFIG (doit's own state file lives beside the database), the engine
when the first task creator needs it. Ctrl-C ends a command-line run with status
130 and one line, after doit has saved the state of every task completed so far.
Notes of the layers below (the ``setup_tasks`` logger) are shown as dim lines, and a
state file the disk refuses to write is one line and exit 1, never a traceback.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

from doit.exceptions import InvalidDodoFile

from ..config import Settings, load_settings
from ..engine.engine import Engine
from ..errors import SetupError, cannot_write
from ..files import log, make_private_dir, sweep_temps
from ..naming import Translator
from ..ops.run_report import write_run_report
from ..validation.scope import ValidationScope
from .doit_state import as_os_error, damage, guard_writes, move_aside
from .notes import cli_verbosity, show_notes

EXIT_INTERRUPTED = 130
# doit commands and setup tasks that only look: on a database that does not exist yet they
# leave nothing behind (no state folder, no doit state file, no caches, no report).
READ_ONLY_COMMANDS = frozenset({"list", "info", "help", "dumpdb", "tabcompletion"})
READ_ONLY_TASKS = frozenset({"status", "graph"})
# doit options (and the graph task's) that take the next argument as their value.
VALUE_OPTIONS = frozenset({"-v", "--verbosity", "-n", "--process", "-P", "--parallel-type", "--reporter", "-r",
                           "-o", "--output-file", "-f", "--file", "-d", "--dir", "--db-file", "--backend",
                           "--dep-file", "--check_file_uptodate", "--seek-file"})


def only_looks(args: Sequence[str]) -> bool:
    """Does this doit command line only look (list, info, status, graph), never build or forget?"""
    words = [a for a in args if a.startswith("-") or "=" not in a]  # name=value are doit's variables
    if words and words[0] in READ_ONLY_COMMANDS:
        return True
    if words and words[0] == "run":
        words = words[1:]
    tasks, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in VALUE_OPTIONS
        else:
            tasks.append(word)
    return bool(tasks) and set(tasks) <= READ_ONLY_TASKS


class Interrupted(SystemExit):
    """Ends a command-line run on Ctrl-C: doit still saves its state on the way out."""

    def __init__(self) -> None:
        super().__init__(EXIT_INTERRUPTED)


class App:
    """Everything one run of the setup tasks shares.

    ``mode`` is "cli" when doit runs from the command line; the Python API uses
    "api", where Ctrl-C must reach the caller as KeyboardInterrupt instead of
    ending the process.
    """

    def __init__(self, config: str | Path | None = None, *, settings: Settings | None = None,
                 translator: Translator | None = None, mode: str = "cli", root: Path | None = None,
                 engine: Engine | None = None, read_only: bool = False) -> None:
        self.config = config
        self.root = root or Path.cwd()
        self.translator = translator or Translator()
        self.mode = mode
        self.read_only = read_only  # the command only looks (list, info, status, graph)
        self._scratch: Path | None = None  # doit's state file of a look at a database not built yet
        self.started = time.perf_counter()  # the run's clock starts when dodo.py is imported
        self.interrupted = False
        self.run_failed: bool | None = None  # set by the reporter when doit's run ends
        self._settings = settings if settings is not None or engine is None else engine.settings
        self._engine: Engine | None = engine
        self._load_error: SetupError | None = None
        self._validation: ValidationScope | None = None
        self.note_sink: Callable[[str], None] | None = None  # the reporter, once it runs
        self.state_error: SetupError | None = None  # doit's state could not be written
        self.dep_file: Path | None = None

    # -- what the run works on --------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings; a configuration problem is doit's one-line stop (InvalidDodoFile)."""
        if self._settings is None:
            try:
                self._settings = load_settings(self.config, root=self.root)
            except SetupError as err:
                raise InvalidDodoFile(err.one_line()) from None
        return self._settings

    def engine(self) -> Engine:
        """The engine; raises the SetupError that keeps the project from loading."""
        if self._engine is None:
            if self._load_error is not None:
                raise self._load_error
            try:
                self._engine = Engine(self.settings, keep_state=not self.leaves_no_files)
            except SetupError as err:
                self._load_error = err
                raise
        return self._engine

    def task_engine(self) -> Engine | None:
        """For task creators: the engine, or None when the project cannot be loaded.

        Tasks are then defined anyway and fail with the reason when run, so `doit status`
        can still report (exit 1) and every other command names the cause.
        """
        self.guard_state()
        try:
            return self.engine()
        except SetupError:
            return None

    @property
    def leaves_no_files(self) -> bool:
        """A look at a database that does not exist: nothing may appear beside it."""
        return self.read_only and not self.settings.database.path.exists()

    @property
    def current_engine(self) -> Engine | None:
        return self._engine

    @property
    def load_error(self) -> str:
        return self._load_error.one_line() if self._load_error is not None else ""

    def validation(self) -> ValidationScope:
        """The run's checks and their results (one per engine); InvalidDodoFile when they cannot load."""
        if self._validation is None:
            try:
                self._validation = ValidationScope(self.engine())
            except SetupError as err:
                raise InvalidDodoFile(err.one_line()) from None
        return self._validation

    @property
    def check_results(self) -> dict[str, Any]:
        return dict(self._validation.results) if self._validation is not None else {}

    @cached_property
    def node_task_names(self) -> frozenset[str]:
        """Task names of the seeds, models and snapshots (built, not ran)."""
        engine = self._engine
        if engine is None:
            return frozenset()
        return frozenset(self.translator.task_names(n for n in engine.manifest.nodes.values() if n.is_buildable).values())

    # -- Ctrl-C ------------------------------------------------------------------------------

    def on_keyboard_interrupt(self) -> None:
        """A task action caught Ctrl-C (after dbt cancelled its queries): end the run."""
        self.interrupted = True
        if self.mode == "cli":
            raise Interrupted() from None
        raise KeyboardInterrupt

    def action(self, function: Callable[..., Any], *args: Any) -> tuple[Callable[..., Any], list[Any]]:
        """A doit python-action that turns Ctrl-C into the end of the run: every action goes through it."""
        return (self._guarded, [function, *args])

    def _guarded(self, function: Callable[..., Any], *args: Any, **options: Any) -> Any:
        try:
            return function(*args, **options)  # options: the task's command-line parameters
        except KeyboardInterrupt:
            self.on_keyboard_interrupt()
            raise

    def interrupted_message(self) -> str:
        engine = self._engine
        done = 0 if engine is None else sum(o.ok for o in engine.run.outcomes.values())
        return f"interrupted: {done} node(s) built in this run are kept; run the same command again to finish"

    # -- the end of the run ---------------------------------------------------------------------

    def write_report(self, exit_code: int | None = None) -> None:
        """Write the run report of a process that ran tasks (not of `list`, `info`, ...)."""
        engine = self._engine
        if engine is None or self.read_only:
            return
        try:
            write_run_report(engine, self.check_results, self.translator, interrupted=self.interrupted,
                             exit_code=exit_code)
        except SetupError as err:
            sys.stderr.write(f"warning: {err.one_line()}\n")

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def exit_code(self) -> int:
        """doit's exit status, which atexit cannot see: from our reporter, else from what the engine saw fail."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.run_failed is not None:
            return int(self.run_failed or self.state_error is not None)
        engine = self._engine
        if engine is None:
            return 0
        fail_on = engine.settings.validation.fail_on
        failed = any(not o.ok for o in engine.run.outcomes.values()) or any(
            c.blocking(fail_on) for c in self.check_results.values())
        return int(failed or self.state_error is not None)

    def _at_exit(self) -> None:
        self.write_report(self.exit_code())
        if self._engine is not None:
            self._engine.save_caches()  # after the report: it asks the graph too
            self._engine.db.close_reader()
        self._remove_scratch()

    def _excepthook(self, exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        """Last resort for a Ctrl-C outside any task action: one line, status 130."""
        if not issubclass(exc_type, KeyboardInterrupt):
            self._previous_hook(exc_type, exc, tb)
            return
        self.interrupted = True
        self.write_report(EXIT_INTERRUPTED)
        sys.stdout.flush()
        sys.stderr.write(f"\n{self.interrupted_message()}\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    def install_process_hooks(self) -> None:
        """Command line only: Ctrl-C outside actions, notes shown, the report written when the process ends."""
        if self.mode != "cli" or getattr(sys.excepthook, "__self__", None) is self:
            return
        self._previous_hook = sys.excepthook
        sys.excepthook = self._excepthook
        show_notes(self.show_note, cli_verbosity(sys.argv[1:]))
        atexit.register(self._at_exit)

    def show_note(self, text: str) -> None:
        """One of setup's notes: through the reporter when it runs, else on stderr."""
        if self.note_sink is not None:
            self.note_sink(text)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    # -- doit's state file ------------------------------------------------------------------------

    def guard_state(self) -> None:
        """Inside a doit command: a write of doit's state the disk refuses becomes ``state_error``."""
        guard_writes(self.state_write_failed)

    def state_write_failed(self, exc: Exception) -> None:
        """doit could not write its state (disk full, read-only): one line, and the run ends with exit 1."""
        if self.state_error is not None:
            return
        path = self.dep_file or self.settings.state_dir / "doit.sqlite"
        self.state_error = cannot_write("doit's state", path, as_os_error(exc, path),
                                        "set database.path (or DUCKDB_PATH) to a writable location")
        sys.stdout.flush()
        sys.stderr.write(f"error: {self.state_error.one_line()}\n")
        sys.stderr.flush()

    def _dep_file(self, state_dir: Path) -> Path:
        """doit's state file, moved aside first when it is damaged (its tasks then count as forgotten)."""
        path = state_dir / "doit.sqlite"
        problem = damage(path)
        if problem is None:
            return path
        try:
            aside = move_aside(path)
        except OSError as exc:
            scratch = tempfile.mkdtemp(prefix="planwise-doit-")
            atexit.register(shutil.rmtree, scratch, True)
            fresh = Path(scratch) / "doit.sqlite"
            log.warning("doit's state %s is damaged (%s) and cannot be moved aside (%s): this run uses an empty one, "
                        "so every task counts as forgotten", path, problem, exc.strerror)
            return fresh
        log.warning("doit's state %s was damaged (%s): moved aside to %s; its tasks count as forgotten and rebuild",
                    path, problem, aside.name)
        return path

    # -- doit ---------------------------------------------------------------------------------

    def doit_config(self, reporter: type) -> dict[str, Any]:
        """DOIT_CONFIG: default task, the reporter, and doit's state kept per database (private: 0700)."""
        self.dep_file = self._state_file()
        self.install_process_hooks()
        return {
            "default_tasks": ["setup"],
            "reporter": reporter,
            "dep_file": str(self.dep_file),
            "backend": "sqlite3",
            "verbosity": 1,
            # setup.fail_fast: false keeps building what does not depend on a failure (doit --continue).
            "continue": not self.settings.setup.fail_fast,
        }

    def _state_file(self) -> Path:
        """doit's state file: beside the database, or (a look at a database not built yet, whose
        state file does not exist either) in a scratch folder removed when the run ends."""
        state_dir = self.settings.state_dir
        if self.leaves_no_files and not (state_dir / "doit.sqlite").exists():
            self._scratch = Path(tempfile.mkdtemp(prefix="planwise-look-"))
            return self._scratch / "doit.sqlite"
        try:
            make_private_dir(state_dir.parent)
            make_private_dir(state_dir)
        except OSError as exc:
            raise InvalidDodoFile(
                f"cannot create the setup state directory {state_dir}: {exc.strerror} -- "
                "fix: set database.path (or DUCKDB_PATH) to a writable location"
            ) from None
        sweep_temps(state_dir)  # left by a run killed while writing
        return self._dep_file(state_dir)
