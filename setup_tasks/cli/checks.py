"""The validation tasks: one `validate:<check>` per check, a group per area, the `validate` summary.

Each check task depends on the node tasks of the tables it reads and runs again only
when their fingerprints, the check's definition or the settings it uses changed
(otherwise doit shows it up to date and its last result is reused). A failed check
whose severity is in ``validation.fail_on`` fails its task, and so the run.
"""

from __future__ import annotations

from typing import Any, Iterator

from doit.exceptions import TaskFailed

from ..naming import PLAN_PREFIX, QUICK_SUMMARY_TASK, VALIDATE_TASK
from ..validation.framework import Check
from ..validation.scope import ValidationScope
from .app import App
from .uptodate import CheckTarget

TaskDict = dict[str, Any]
PLAN_TASK = PLAN_PREFIX + VALIDATE_TASK


def check_action(scope: ValidationScope, check: Check, target: CheckTarget) -> dict[str, Any] | TaskFailed:
    """Task action: run the check, record its results, fail the task on a blocking failure."""
    run = scope.run_check(check, target.values)
    for line in run.lines():
        print(line)
    return TaskFailed(run.failure_message()) if run.blocking else run.values


def summary_action(scope: ValidationScope) -> None:
    """Task action of the `validate` group: print the summary of every check seen in this run."""
    for line in scope.summary().lines():
        print(line)


class ValidationTasks:
    """The validation tasks of one run: a task per check, a group per area, the summaries."""

    def __init__(self, app: App, plan_action: Any) -> None:
        self.app = app
        self.scope = app.validation()
        self.engine = self.scope.engine
        self.translator = app.translator
        self.checks = self.scope.checks
        self.plan_action = plan_action

    def task_name(self, check: Check) -> str:
        return self.translator.check_task_name(check.name)

    def node_task(self, uid: str) -> str | None:
        node = self.engine.node(uid)
        if not node.is_buildable or uid not in self.engine.setup_nodes:
            return None
        if node.resource_type == "seed" and not self.engine.settings.setup.load_seeds:
            return None  # seeds are loaded by hand then: check what is there
        return self.translator.task_name(node)

    def task_dep(self, check: Check) -> list[str]:
        uids, _ = self.scope.reads(check)
        return [name for name in (self.node_task(u) for u in uids) if name]

    def is_foundation(self, check: Check) -> bool:
        """Reads only foundation tables (and sources): `quick` runs it."""
        uids, untracked = self.scope.reads(check)
        allowed = set(self.engine.foundation_nodes)
        return bool(uids) and not untracked and all(
            u in allowed or self.engine.node(u).resource_type == "source" for u in uids
        )

    def doc(self, check: Check) -> str:
        uids, untracked = self.scope.reads(check)
        tables = [self.engine.node(u).name for u in uids] + untracked
        reads = f" (reads {', '.join(tables[:4])}{', ...' if len(tables) > 4 else ''})" if tables else ""
        return f"[{check.severity}] {check.description or 'Validation check'}{reads}"

    def check_task(self, check: Check) -> TaskDict:
        target = CheckTarget(self.scope, check, self.task_name(check))
        return {
            "basename": self.task_name(check),
            "doc": self.doc(check),
            "actions": [self.app.action(check_action, self.scope, check, target)],
            "uptodate": [target],
            "task_dep": self.task_dep(check),
            "verbosity": 1,
        }

    def groups(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for check in self.checks:
            if check.group:
                found.setdefault(check.group, []).append(self.task_name(check))
        return found

    def plan_nodes(self) -> list[str]:
        uids = {u for check in self.checks for u in self.scope.reads(check)[0]}
        return [u for u in self.engine.setup_nodes if u in self.engine.graph.with_ancestors(uids)]

    def tasks(self) -> Iterator[TaskDict]:
        names = [self.task_name(c) for c in self.checks]
        for check in self.checks:
            yield self.check_task(check)
        for group, members in self.groups().items():
            yield {"basename": self.translator.check_task_name(group), "doc": f"Run the {group} checks",
                   "actions": None, "task_dep": members}
        yield {"basename": PLAN_TASK, "doc": "Tell the engine which nodes the checks read, so stale ones build in one dbt run",
               "actions": [self.app.action(self.plan_action, self.engine, self.plan_nodes())], "verbosity": 0}
        yield {"basename": VALIDATE_TASK,
               "doc": "Run every validation check (each only when what it reads changed) and print the summary",
               "actions": [self.app.action(summary_action, self.scope)], "task_dep": [PLAN_TASK, *names], "verbosity": 2}
        yield {"basename": QUICK_SUMMARY_TASK, "doc": "Run the checks that read only the foundation, print the summary",
               "actions": [self.app.action(summary_action, self.scope)], "task_dep": self.quick_names(), "verbosity": 2}

    def quick_names(self) -> list[str]:
        return [self.task_name(c) for c in self.checks if self.is_foundation(c)]

    def dependencies(self) -> dict[str, list[str]]:
        """Tasks the `setup` and `quick` groups add after their builds (none when setup.validate_results is off)."""
        if not self.engine.settings.setup.validate_results:
            return {"setup": [], "quick": []}
        return {
            "setup": [*(self.task_name(c) for c in self.checks), VALIDATE_TASK],
            "quick": [*self.quick_names(), QUICK_SUMMARY_TASK],
        }

    def diagram_entries(self) -> list[dict[str, Any]]:
        """Each check task with its dependencies, for `doit graph`."""
        return [{"name": self.task_name(c), "task_dep": self.task_dep(c)} for c in self.checks]
