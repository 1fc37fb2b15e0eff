"""How one run ends: Ctrl-C and SIGTERM inside a task action or outside any (status 130 or 143 and one line, after
doit saved the state of every task completed so far), a run nothing more of which can work halted, the process
hooks of a command-line run (excepthook, SIGTERM, notes, atexit), and the exit status."""

from __future__ import annotations

import atexit
import inspect
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterable

from ..engine.run_state import RunState
from ..validation.results import CheckResult
from .exit_status import ExitStatus
from .notes import cli_verbosity, show_notes

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Interrupted(SystemExit):
    """Ends a command-line run on Ctrl-C (130) or SIGTERM (143): doit still saves its state on the way out."""

    def __init__(self, code: int = EXIT_INTERRUPTED) -> None:
        super().__init__(code)


class RunHalted(SystemExit):
    """Ends a run nothing more of which can work (the database is locked): after the failure that said why.

    doit runs on after a failed task (see ``cli.app``), and would try every other task
    against the same lock; doit still saves its state on the way out. The Python API
    catches it (``api.run_setup``).
    """

    def __init__(self) -> None:
        super().__init__(1)


class RunLifecycle:
    """Ends the run when it is interrupted or can go no further, and says with which status it ended."""

    def __init__(self, mode: str, run: Callable[[], RunState | None], last_words: Callable[[int], None]) -> None:
        self.mode = mode  # "cli": an interrupt ends the process; "api": it reaches the caller as KeyboardInterrupt
        self.run = run  # what the engine did so far (None before it is open, or when it cannot be)
        self.last_words = last_words  # the live line closed and the report written, before an interrupt ends it
        self.interrupted = False
        self.terminated = False  # the interrupt was SIGTERM
        self.status = ExitStatus()  # what failed, as the reporter saw it
        self._previous_hook: Callable[..., Any] = sys.excepthook

    # -- Ctrl-C and SIGTERM -------------------------------------------------------------------

    def on_keyboard_interrupt(self) -> None:
        """A task action caught Ctrl-C or SIGTERM (after dbt cancelled its queries): end the run."""
        self.interrupted = True
        if self.mode == "cli":
            raise Interrupted(self.interrupt_status()) from None
        raise KeyboardInterrupt

    def interrupt_status(self) -> int:
        return EXIT_TERMINATED if self.terminated else EXIT_INTERRUPTED

    def interrupted_message(self) -> str:
        run = self.run()
        done = 0 if run is None else sum(o.ok for o in run.outcomes.values())
        how = "terminated" if self.terminated else "interrupted"
        return f"{how}: {done} node(s) built in this run are kept; run the same command again to finish"

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        """SIGTERM ends the run as Ctrl-C does (dbt cancelled, work kept), with its own status."""
        self.terminated = True
        raise KeyboardInterrupt

    def action(self, function: Callable[..., Any], *args: Any) -> tuple[Callable[..., Any], list[Any]]:
        """A doit python-action that turns Ctrl-C into the end of the run: every action goes through it."""
        return (self._guarded, [function, *args])

    def _guarded(self, function: Callable[..., Any], *args: Any, **options: Any) -> Any:
        run = self.run()
        if run is not None and run.fatal is not None:
            raise RunHalted()
        accepted = inspect.signature(function).parameters
        options = {k: v for k, v in options.items() if k in accepted}  # doit's run options on a group are the app's
        try:
            return function(*args, **options)  # options: the task's command-line parameters
        except KeyboardInterrupt:
            self.on_keyboard_interrupt()
            raise

    def excepthook(self, exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        """Last resort for a Ctrl-C outside any task action: one line, status 130."""
        if not issubclass(exc_type, KeyboardInterrupt):
            self._previous_hook(exc_type, exc, tb)
            return
        # A second Ctrl-C while the report is written must not end the process by SIGINT (-2) instead of 130.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.interrupted = True
        self.last_words(self.interrupt_status())
        sys.stdout.flush()
        sys.stderr.write(f"\n{self.interrupted_message()}\n")
        sys.stderr.flush()
        os._exit(self.interrupt_status())

    def install_process_hooks(self, show_note: Callable[[str], None], at_exit: Callable[[], None]) -> None:
        """Command line only: Ctrl-C and SIGTERM outside actions, notes shown, ``at_exit`` when the process ends."""
        if self.mode != "cli" or getattr(sys.excepthook, "__self__", None) is self:
            return
        self._previous_hook = sys.excepthook
        sys.excepthook = self.excepthook
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        show_notes(show_note, cli_verbosity(sys.argv[1:]))
        atexit.register(at_exit)

    # -- the exit status ----------------------------------------------------------------------------

    def exit_status(self, state_saved: bool, fail_on: Any, checks: Iterable[CheckResult]) -> int:
        """The run's status: 130/143 interrupted, 2 crashed, 1 failed (a node, a blocking check, a task, doit's
        state not saved), else 0."""
        if self.interrupted:
            return self.interrupt_status()
        if self.status.code():
            return self.status.code()
        if not state_saved:
            return 1  # doit's state was not saved (its line is printed): not a success
        run = self.run()
        if run is None:
            return 0
        failed = any(o.status == "error" for o in run.outcomes.values()) or any(c.blocking(fail_on) for c in checks)
        return int(failed)
