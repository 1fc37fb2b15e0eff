"""The dbt project's own tests as the check ``dbt_tests``: one dbt invocation for the tests whose inputs changed.

dbt's built-in generic tests whose compiled SQL an earlier run kept are run straight in
DuckDB instead (``engine.direct_tests``: dbt's own verdict, without dbt); the others, and
every test the first time, go through dbt, which keeps their SQL for the next run.

Every test on the selected nodes is a result ``dbt_tests.<test name>`` with its dbt
severity (warn -> warning, error -> error). A test whose definition and tables are
unchanged since the last run keeps its stored result, so editing one seed re-runs
only the tests that read what it feeds. A test of a table that did not build in this
run is "not run"; the others still run. A failed test records a sample of the rows
its query selects (dbt reports only their count).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping

from ...config import ValidationSettings
from ...errors import PlanwiseError
from ..engine_port import CheckEngine
from ..framework import REGISTRY, SAMPLE_ROWS, Check, Environment
from ..project_view import ProjectView
from ..results import FAILED, NOT_RUN, PASSED, SKIPPED, CheckResult, jsonable, plural

SEVERITY: Mapping[str, str] = {"warn": "warning", "error": "error"}
STATUS: Mapping[str, str] = {
    "pass": PASSED,
    "success": PASSED,
    "fail": FAILED,
    "warn": FAILED,
    "error": FAILED,
    "skipped": SKIPPED,
}


def _test_parents(project: ProjectView, validation: ValidationSettings) -> list[str]:
    """The tables the tests read: their parents, through ephemeral models (inlined into their SQL)."""
    parents: set[str] = set()
    stack = [p for uid in project.tests for p in project.nodes[uid].depends_on]
    while stack:
        uid = stack.pop()
        node = project.nodes.get(uid)
        if node is None or uid in parents:
            continue
        parents.add(uid)
        if node.resource_type == "model" and not node.is_buildable:
            stack.extend(node.depends_on)
    return [u for u in project.setup_nodes if u in parents]


@dataclass(frozen=True)
class DbtTestsCheck(Check):
    """Runs the stale dbt tests through the engine's runner (one dbt invocation); the others' stored results hold."""

    runs_without_some_inputs: ClassVar[bool] = True

    def input_parts(self, engine: CheckEngine, project: ProjectView) -> dict[str, str]:
        return {f"test:{uid}": engine.test_state(uid) for uid in project.tests}

    def run(self, env: Environment) -> list[CheckResult]:
        engine, project = env.engine, env.project
        if engine is None or project is None:
            return [CheckResult(self.name, SKIPPED, self.severity, "dbt tests run only inside a setup run")]
        if not project.tests and not project.unresolved_tests:
            return [CheckResult(self.name, SKIPPED, self.severity, "no dbt tests on the selected nodes")]
        built = self.built(engine, project)
        kept = {} if len(built) == len(project.tests) else self.reusable(engine, project, env.previous)
        kept = {uid: result for uid, result in kept.items() if uid not in built}
        waiting = [uid for uid in project.tests if uid not in kept and uid not in built]
        blocked = self.blocked(engine, waiting, env.unbuilt)
        stale = [uid for uid in waiting if uid not in blocked]
        fresh = self.run_tests(engine, stale) if stale else {}
        fresh.update(
            {uid: self.result(engine, uid, o.status, o.message, o.failures, o.sql) for uid, o in built.items()}
        )
        fresh.update({uid: self.not_run(engine, uid, reasons) for uid, reasons in blocked.items()})
        unrunnable = [self.unresolved(engine, uid) for uid in project.unresolved_tests]
        return [kept.get(uid) or fresh[uid] for uid in project.tests] + unrunnable

    @staticmethod
    def built(engine: CheckEngine, project: ProjectView) -> dict[str, Any]:
        """Tests the builds of this run ran, right after what they read (as `dbt build` runs them): their outcomes."""
        outcomes = engine.run.test_outcomes
        return {uid: outcomes[uid] for uid in project.tests if uid in outcomes and outcomes[uid].status != "skipped"}

    @staticmethod
    def blocked(engine: CheckEngine, uids: list[str], unbuilt: Mapping[str, str]) -> dict[str, list[str]]:
        """Tests among ``uids`` reading a table that did not build in this run: why each cannot run."""
        return {
            uid: reasons
            for uid in uids
            if (reasons := [unbuilt[p] for p in engine.graph.built_parents(uid) if p in unbuilt])
        }

    def not_run(self, engine: CheckEngine, uid: str, reasons: list[str]) -> CheckResult:
        return CheckResult(
            f"{self.name}.{engine.node(uid).name}",
            NOT_RUN,
            self.severity,
            "; ".join(reasons),
            {"unique_id": uid},
            incomplete=True,
            checked_at=time.time(),
        )

    def unresolved(self, engine: CheckEngine, uid: str) -> CheckResult:
        """A test whose ref() names no node: dbt's warning, never a failure."""
        node = engine.node(uid)
        missing = ", ".join(node.unresolved)
        return replace(
            self.result(engine, uid, "skipped", "", None),
            message=f"not run: it depends on {missing}, which the project does not define (dbt warns and skips it)",
        )

    def reusable(
        self, engine: CheckEngine, project: ProjectView, previous: Mapping[str, Any]
    ) -> dict[str, CheckResult]:
        """Stored results of tests whose definition and inputs are what they were."""
        old_parts = previous.get("parts") or {}
        parts = self.input_parts(engine, project)
        kept = {}
        for stored in previous.get("results") or []:
            uid = (stored.get("details") or {}).get("unique_id")
            key = f"test:{uid}"
            if uid and key in parts and old_parts.get(key) == parts[key]:
                kept[uid] = replace(CheckResult.from_dict(stored), up_to_date=True)
        return kept

    def run_tests(self, engine: CheckEngine, uids: list[str]) -> dict[str, CheckResult]:
        """The engine runs the tests (straight in DuckDB where it may, the others in one dbt run); their results."""
        try:
            outcomes = engine.run_tests(uids, f"running {plural(len(uids), 'dbt tests')}")
        except Exception as exc:  # dbt could not run at all: every test is failed with the cause
            message = f"dbt could not run the tests: {type(exc).__name__}: {exc}"
            return {u: replace(self.result(engine, u, "error", message, None), incomplete=True) for u in uids}
        return {
            u: self.result(engine, u, o.status, o.message, o.failures, o.sql)
            if (o := outcomes.get(u))
            else replace(self.result(engine, u, "error", "dbt did not report this test", None), incomplete=True)
            for u in uids
        }

    def result(
        self, engine: CheckEngine, uid: str, dbt_status: str, message: str, failures: int | None, sql: str | None = None
    ) -> CheckResult:
        node = engine.node(uid)
        status = STATUS.get(dbt_status, FAILED)
        severity = "warning" if dbt_status == "warn" else SEVERITY.get(node.test_severity or "error", "error")
        if dbt_status == "error":
            severity = "error"
        parents = [engine.node(p).name for p in engine.graph.built_parents(uid)]
        details = {
            "unique_id": uid,
            "dbt_status": dbt_status,
            "failures": failures,
            "path": node.path,
            "reads": parents,
            **(offending_rows(engine, sql) if sql and status == FAILED else {}),
        }
        text = message or ("passed" if status == PASSED else dbt_status)
        guidance = (
            f"the offending rows: `doit info validate:{self.name}`; run it by hand: "
            f'`doit dbt args="test --select {node.name}"` (defined in {node.path})'
        )
        return CheckResult(
            f"{self.name}.{node.name}",
            status,
            severity,
            text,
            details,
            guidance if status == FAILED else "",
            checked_at=time.time(),
        )


def offending_rows(engine: CheckEngine, sql: str) -> dict[str, Any]:
    """The first rows a failed test's query selects, and how many it selects (empty when it cannot be read)."""
    body = sql.strip().rstrip(";")
    try:
        with engine.db.read_only(keep_open=True) as reader:
            total = reader.query(f"SELECT count(*) FROM ({body}) AS offending").rows[0][0]
            sample = reader.query(f"SELECT * FROM ({body}) AS offending LIMIT {SAMPLE_ROWS}").records()
    except PlanwiseError:
        return {}
    return {"offending_rows": int(total), "sample": jsonable(sample)}


REGISTRY.add(
    DbtTestsCheck(
        name="dbt_tests",
        severity="error",
        function=None,
        reads=_test_parents,
        description="The dbt project's own tests on the selected nodes, each with its dbt severity",
        origin="setup_tasks.validation.builtin.dbt_tests",
        definition=hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:20],
    )
)
