"""doit's ``--reporter json`` with setup's exit status, for setup's runs; doit's own for any other dodo.

Registered as the ``json`` reporter: as an entry point (``doit.REPORTER``, so in every
repository once the package is installed) and in pyproject.toml (``[tool.doit.plugins]``,
for a checkout). doit loads every reporter plugin at the start of each run, whatever the
dodo file, so this module imports nothing of setup but the exit status and its pipe, and a run whose
tasks are not setup's (no action of ``setup_tasks``) ends as doit's own json reporter ends it.
"""

from __future__ import annotations

from typing import Any

from doit.reporter import JsonReporter as DoitJsonReporter

from .exit_status import ExitStatus, end_run
from .pipes import pipe_safe

SETUP_PACKAGE = __name__.split(".")[0]


def is_setup_task(task: Any) -> bool:
    """Does one of the task's actions call into setup (every action of setup's tasks does)?"""
    for action in getattr(task, "actions", None) or ():
        module = getattr(getattr(action, "py_callable", None), "__module__", None) or ""
        if module.split(".")[0] == SETUP_PACKAGE:
            return True
    return False


class JsonReporter(DoitJsonReporter):
    """doit's JSON report; a setup run ends with setup's exit status (see ``cli.app``; doit would say 2
    for a task whose dependency failed)."""

    def __init__(self, outstream: Any, options: dict[str, Any]) -> None:
        super().__init__(pipe_safe(outstream), options)
        self.status = ExitStatus()
        self.setup_run = False

    def get_status(self, task: Any) -> None:
        self.setup_run = self.setup_run or is_setup_task(task)
        super().get_status(task)

    def add_failure(self, task: Any, fail: Any) -> None:
        self.setup_run = self.setup_run or is_setup_task(task)
        super().add_failure(task, fail)
        self.status.note_failure(task.name, fail)

    def runtime_error(self, msg: str) -> None:
        super().runtime_error(msg)
        self.status.note_doit_error(msg)

    def complete_run(self) -> None:
        for result in self.t_results.values():
            # A task the run stopped in (``cli.app.RunHalted``: nothing more could work) never got a result:
            # doit's report would fail on its missing end time.
            if result._started_on is not None and result._finished_on is None:
                result.set_result("fail", "not run: the run stopped")
        super().complete_run()
        if self.setup_run:
            end_run(self.status.code())
