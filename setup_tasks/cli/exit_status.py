"""A run's exit status from what doit reported, and ending a command-line run with it.

Apart from ``app`` so that the plugins doit loads for every run in an environment where
setup is installed (``json_reporter``) import nothing heavy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from doit.exceptions import TaskFailed, UnmetDependency


@dataclass
class ExitStatus:
    """A run's exit status from what doit reported: 2 when a task crashed (or doit failed), 1 when one failed, else 0.

    A task doit did not run because a task it needs failed (UnmetDependency, doit's 2)
    does not count: what it waited for does.
    """

    failures: list[tuple[str, str]] = field(default_factory=list)  # tasks that failed, and why
    crashed: bool = False

    def note_failure(self, task: str, fail: Any) -> None:
        if isinstance(fail, UnmetDependency):
            return
        if not isinstance(fail, TaskFailed):
            self.crashed = True
        self.failures.append((task, " ".join(str(getattr(fail, "message", fail)).split())))

    def note_doit_error(self, message: str) -> None:
        self.crashed = True
        self.failures.append(("doit", " ".join(message.split())))

    def code(self) -> int:
        return 2 if self.crashed else int(bool(self.failures))


def end_run(status: int) -> None:
    """End a command-line run with ``status`` from a reporter's complete_run (unless it is ending already)."""
    if sys.exc_info()[1] is None:  # an interrupt (or a halt) on its way out keeps its own status
        raise SystemExit(status)
