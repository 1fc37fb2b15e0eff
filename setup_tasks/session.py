"""The settings and engine one doit process shares, and how that process ends.

doit imports dodo.py, reads DOIT_CONFIG, then calls the task functions: settings are
loaded at import (doit's own state file lives beside the database), the engine when
the first task function needs it. Ctrl-C ends the process with status 130 and one
line, after doit has saved the state of every task completed so far.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from pathlib import Path
from typing import Any

from doit import get_var
from doit.exceptions import InvalidDodoFile

from .config import Settings, load_settings
from .engine import Engine
from .errors import SetupError

EXIT_INTERRUPTED = 130
STARTED = time.perf_counter()  # the run's clock starts when doit imports dodo.py

_settings: Settings | None = None
_engine: Engine | None = None
# "cli" when doit runs from the command line; the Python API sets "api", where
# Ctrl-C must reach the caller as KeyboardInterrupt instead of ending the process.
mode = "cli"
interrupted = False
# Set by our reporter when doit's run ends: whether any task failed (doit then exits 1).
run_failed: bool | None = None


class Interrupted(SystemExit):
    """Ends a command-line run on Ctrl-C: doit still saves its state on the way out."""

    def __init__(self) -> None:
        super().__init__(EXIT_INTERRUPTED)


def on_keyboard_interrupt() -> None:
    """Called by task actions that caught Ctrl-C (after dbt cancelled its queries)."""
    global interrupted
    interrupted = True
    if mode == "cli":
        raise Interrupted() from None
    raise KeyboardInterrupt


def settings() -> Settings:
    global _settings
    if _settings is None:
        try:
            _settings = load_settings(get_var("config"), root=Path.cwd())
        except SetupError as err:
            raise InvalidDodoFile(err.one_line()) from None
    return _settings


_load_error: InvalidDodoFile | None = None


def engine() -> Engine:
    """The engine; when the project cannot be loaded, doit's one-line stop (InvalidDodoFile)."""
    global _engine, _load_error
    if _engine is None:
        if _load_error is not None:
            raise _load_error
        try:
            _engine = Engine(settings())
        except SetupError as err:
            _load_error = InvalidDodoFile(err.one_line())
            raise _load_error from None
    return _engine


def task_engine() -> Engine | None:
    """For task functions: the engine, or None when the project cannot be loaded.

    Tasks are then defined anyway and fail with the reason when run, so `doit status`
    can still report (exit 1) and every other command names the cause.
    """
    try:
        return engine()
    except InvalidDodoFile:
        return None


def load_error() -> str:
    return str(_load_error) if _load_error is not None else ""


def current_settings() -> Settings | None:
    return _settings


def current_engine() -> Engine | None:
    return _engine


def reset(new_settings: Settings | None = None) -> None:
    """End the process's engine (the Python API runs doit more than once per process)."""
    global _settings, _engine
    global _load_error, run_failed
    if _engine is not None:
        _engine.close()
    _settings, _engine, _load_error, run_failed = new_settings, None, None, None


def interrupted_message() -> str:
    done = 0 if _engine is None else sum(o.ok for o in _engine.run.outcomes.values())
    return f"interrupted: {done} node(s) built in this run are kept; run the same command again to finish"


def write_report(exit_code: int | None = None) -> None:
    """Write the run report of a process that ran tasks (not of `list`, `info`, ...)."""
    engine = _engine
    if engine is None or not (engine.run.scope or engine.run.outcomes or engine.run.checks):
        return
    from .report import write_run_report

    try:
        write_run_report(engine, interrupted=interrupted, exit_code=exit_code)
    except SetupError as err:
        sys.stderr.write(f"warning: {err.one_line()}\n")


def _interrupted(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    """Last resort for a Ctrl-C outside any task action: one line, status 130."""
    if not issubclass(exc_type, KeyboardInterrupt):
        _previous_hook(exc_type, exc, tb)
        return
    global interrupted
    interrupted = True
    write_report(EXIT_INTERRUPTED)
    sys.stdout.flush()
    sys.stderr.write(f"\n{interrupted_message()}\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


_previous_hook = sys.excepthook


def _cli_exit_code() -> int:
    """doit's exit status, which atexit cannot see: from our reporter, else from what the engine saw fail."""
    if interrupted:
        return EXIT_INTERRUPTED
    if run_failed is not None:
        return int(run_failed)
    engine = _engine
    if engine is None:
        return 0
    fail_on = engine.settings.validation.fail_on
    failed = any(not o.ok for o in engine.run.outcomes.values()) or any(
        c.blocking(fail_on) for c in engine.run.checks.values())
    return int(failed)


def _at_exit() -> None:
    if mode != "cli":
        return
    write_report(_cli_exit_code())
    if _engine is not None:
        _engine.save_caches()  # after the report: it asks the graph too
    from . import database

    database.close_shared()


def doit_config() -> dict[str, Any]:
    """DOIT_CONFIG for dodo.py: default task, and doit's state kept per database."""
    state_dir = settings().state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidDodoFile(
            f"cannot create the setup state directory {state_dir}: {exc.strerror} -- "
            "fix: set database.path (or DUCKDB_PATH) to a writable location"
        ) from None
    if mode == "cli" and sys.excepthook is not _interrupted:
        sys.excepthook = _interrupted
        atexit.register(_at_exit)
    from .reporting import SetupReporter

    return {
        "default_tasks": ["setup"],
        "reporter": SetupReporter,
        "dep_file": str(state_dir / "doit.sqlite"),
        "backend": "sqlite3",
        "verbosity": 1,
        # setup.fail_fast: false keeps building what does not depend on a failure (doit --continue).
        "continue": not settings().setup.fail_fast,
    }
