"""The validation tasks: one `validate:<check>` per check, a group per area, the `validate` summary.

Validations are the last stage of a run, and all of them run: a check task does not
depend on the node tasks of the tables it reads (doit would then skip it, unreported,
when one of them failed). It asks the engine for them instead: stale ones are built
(in one dbt run with the rest of the scope), and a check whose tables did not build
is "not run", with the reason. Each check runs again only when what it reads, its
definition or the settings it uses changed (otherwise doit shows it up to date and
its last result is reused). A failed check whose severity is in ``validation.fail_on``
fails its task, and so the run (exit 1, with or without --continue: ``App.exit_status``).
"""

from __future__ import annotations

from typing import Any, Iterator

from doit.exceptions import TaskFailed

from ..errors import PlanwiseError
from ..naming import PLAN_PREFIX, QUICK_SUMMARY_TASK, VALIDATE_TASK
from ..validation.framework import Check
from ..validation.scope import ValidationScope
from .app import App
from .command_line import RUN_OPTIONS
from .uptodate import CheckUpToDate

TaskDict = dict[str, Any]
PLAN_TASK = PLAN_PREFIX + VALIDATE_TASK


def check_action(
    scope: ValidationScope, check: Check, target: CheckUpToDate, app: App | None = None
) -> dict[str, Any] | TaskFailed:
    """Task action: build what the check reads if stale, run it, record its results, fail on a blocking failure."""
    try:
        unbuilt = scope.engine.ensure(target.inputs)
        run = scope.run_check(check, target.values, unbuilt)
    except PlanwiseError as err:  # what it reads cannot be looked at (the database is locked, say)
        return TaskFailed(err.one_line())
    if app is None or not app.console:  # the console reporter shows results itself
        for line in run.lines():
            print(line)
    if run.blocking:
        return TaskFailed(run.failure_message(scope.validation.fail_on))
    if app is not None:
        app.witness.check_ran(target.runs_again(run.values))
    return run.values


def summary_action(scope: ValidationScope, app: App | None = None) -> None:
    """Task action of the `validate` group: the summary of every check seen in this run (for doit's JSON report)."""
    if app is None or not app.console:  # the console reporter prints it at the end of the run
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

    def built_reads(self, check: Check) -> list[str]:
        """The nodes a check reads that setup builds (what it asks the engine for before running)."""
        engine = self.engine
        found = []
        for uid in self.scope.reads(check)[0]:
            node = engine.node(uid)
            if not node.is_buildable or uid not in engine.task_nodes:
                continue
            if node.resource_type == "seed" and not engine.settings.setup.load_seeds:
                continue  # seeds are loaded by hand then: check what is there
            found.append(uid)
        return found

    def task_dep(self, check: Check) -> list[str]:
        """The node tasks of what a check reads (for `doit graph`; not doit dependencies, see the module doc)."""
        return [self.translator.task_name(self.engine.node(u)) for u in self.built_reads(check)]

    def is_foundation(self, check: Check) -> bool:
        """Reads only foundation tables (and sources): `quick` runs it."""
        uids, untracked = self.scope.reads(check)
        allowed = set(self.engine.foundation_nodes)
        return (
            bool(uids)
            and not untracked
            and all(u in allowed or self.engine.node(u).resource_type == "source" for u in uids)
        )

    def doc(self, check: Check) -> str:
        uids, untracked = self.scope.reads(check)
        tables = [self.engine.node(u).name for u in uids] + untracked
        reads = f" (reads {', '.join(tables[:4])}{', ...' if len(tables) > 4 else ''})" if tables else ""
        return f"[{check.severity}] {check.description or 'Validation check'}{reads}"

    def check_task(self, check: Check) -> TaskDict:
        target = CheckUpToDate(self.scope, check, self.task_name(check), self.built_reads(check))
        task: TaskDict = {
            "basename": self.task_name(check),
            "doc": self.doc(check),
            "actions": [self.app.action(check_action, self.scope, check, target, self.app)],
            "uptodate": [target],
            "verbosity": 1,
        }
        meta: dict[str, Any] = {}
        reads = self.task_dep(check)
        if reads:  # what `doit info validate:<check>` says in place of doit dependencies (built first when stale)
            meta["reads (built first when stale)"] = reads
        last = self.scope.last_failures().get(check.name)
        if last:  # and its last failures, offending rows included
            fail_on = self.scope.validation.fail_on
            meta["failed last time"] = [
                line for r in last for line in (f"{r.name} {r.verdict(fail_on)}: {r.message}", r.sample_line()) if line
            ]
        if meta:
            task["meta"] = meta
        return task

    def groups(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for check in self.checks:
            if check.group:
                found.setdefault(check.group, []).append(self.task_name(check))
        return found

    def plan_nodes(self) -> list[str]:
        uids = {u for check in self.checks for u in self.built_reads(check)}
        needed = self.engine.graph.with_ancestors(uids)  # once: not once per node (quadratic in the project)
        return [u for u in self.engine.task_nodes if u in needed]

    def tasks(self) -> Iterator[TaskDict]:
        names = [self.task_name(c) for c in self.checks]
        for check in self.checks:
            yield self.check_task(check)
        for group, members in self.groups().items():
            yield {
                "basename": self.translator.check_task_name(group),
                "doc": f"Run the {group} checks",
                "actions": None,
                "task_dep": members,
            }
        yield {
            "basename": PLAN_TASK,
            "doc": "Tell the engine which nodes the checks read, so stale ones build in one dbt run",
            "actions": [self.app.action(self.plan_action, self.engine, self.plan_nodes())],
            "verbosity": 0,
        }
        yield {
            "basename": VALIDATE_TASK,
            "doc": "Run every validation check (each only when what it reads changed) and print the summary",
            "actions": [self.app.action(summary_action, self.scope, self.app)],
            "task_dep": [PLAN_TASK, *names],
            "verbosity": 1,
            "params": list(RUN_OPTIONS),
        }
        yield {
            "basename": QUICK_SUMMARY_TASK,
            "doc": "Run the checks that read only the foundation, print the summary",
            "actions": [self.app.action(summary_action, self.scope, self.app)],
            "task_dep": self.quick_names(),
            "verbosity": 1,
        }

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
        """Each check task with the node tasks it reads, for `doit graph`."""
        return [{"name": self.task_name(c), "task_dep": self.task_dep(c)} for c in self.checks]
