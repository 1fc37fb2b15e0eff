"""The dbt project's own tests as the check ``dbt_tests``: one dbt invocation for the tests whose inputs changed.

Every test on the selected nodes is a result ``dbt_tests.<test name>`` with its dbt
severity (warn -> warning, error -> error). A test whose definition and tables are
unchanged since the last run keeps its stored result, so editing one seed re-runs
only the tests that read what it feeds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from ...config import ValidationSettings
from ...engine.engine import Engine
from ..framework import REGISTRY, Check, Environment
from ..project import Project, input_state
from ..results import FAILED, PASSED, SKIPPED, CheckResult

SEVERITY = {"warn": "warning", "error": "error"}
STATUS = {"pass": PASSED, "success": PASSED, "fail": FAILED, "warn": FAILED, "error": FAILED, "skipped": SKIPPED}


def _test_parents(project: Project, validation: ValidationSettings) -> list[str]:
    parents = {p for uid in project.tests for p in project.nodes[uid].depends_on if p in project.nodes}
    return [u for u in project.setup_nodes if u in parents]


@dataclass(frozen=True)
class DbtTestsCheck(Check):
    """Runs the stale dbt tests through the engine's runner (one dbt invocation) and reuses the others' stored results."""

    def input_parts(self, engine: Engine, project: Project) -> dict[str, str]:
        fingerprints = engine.fingerprints()
        parts = {}
        for uid in project.tests:
            parents = ",".join(input_state(engine, p, fingerprints) for p in engine.graph.built_parents(uid))
            parts[f"test:{uid}"] = f"{input_state(engine, uid, fingerprints)}|{parents}"
        return parts

    def run(self, env: Environment) -> list[CheckResult]:
        engine, project = env.engine, env.project
        if engine is None or project is None:
            return [CheckResult(self.name, SKIPPED, self.severity, "dbt tests run only inside a setup run")]
        if not project.tests and not project.unresolved_tests:
            return [CheckResult(self.name, SKIPPED, self.severity, "no dbt tests on the selected nodes")]
        kept = self.reusable(engine, project, env.previous)
        stale = [uid for uid in project.tests if uid not in kept]
        fresh = self.run_tests(engine, stale) if stale else {}
        unrunnable = [self.unresolved(engine, uid) for uid in project.unresolved_tests]
        return [kept.get(uid) or fresh[uid] for uid in project.tests] + unrunnable

    def unresolved(self, engine: Engine, uid: str) -> CheckResult:
        """A test whose ref() names no node: dbt's warning, never a failure."""
        node = engine.node(uid)
        missing = ", ".join(node.unresolved)
        return replace(self.result(engine, uid, "skipped", "", None),
                       message=f"not run: it depends on {missing}, which the project does not define (dbt warns and skips it)")

    def reusable(self, engine: Engine, project: Project, previous: Mapping[str, Any]) -> dict[str, CheckResult]:
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

    def run_tests(self, engine: Engine, uids: list[str]) -> dict[str, CheckResult]:
        outcomes: dict[str, Any] = {}
        engine.run.invocations += 1
        engine.db.close_reader()  # dbt opens the file, here or in the worker
        try:
            engine.dbt.run_tests(engine.ctx, engine.manifest_path, [engine.node(u) for u in uids],
                                 lambda outcome: outcomes.__setitem__(outcome.unique_id, outcome), quiet=engine.quiet)
        except Exception as exc:  # dbt could not run at all: every test is failed with the cause
            message = f"dbt could not run the tests: {type(exc).__name__}: {exc}"
            return {u: replace(self.result(engine, u, "error", message, None), incomplete=True) for u in uids}
        return {
            u: self.result(engine, u, o.status, o.message, o.failures) if (o := outcomes.get(u))
            else replace(self.result(engine, u, "error", "dbt did not report this test", None), incomplete=True)
            for u in uids
        }

    def result(self, engine: Engine, uid: str, dbt_status: str, message: str, failures: int | None) -> CheckResult:
        node = engine.node(uid)
        status = STATUS.get(dbt_status, FAILED)
        severity = "warning" if dbt_status == "warn" else SEVERITY.get(node.test_severity or "error", "error")
        if dbt_status == "error":
            severity = "error"
        parents = [engine.node(p).name for p in engine.graph.built_parents(uid)]
        details = {"unique_id": uid, "dbt_status": dbt_status, "failures": failures, "path": node.path,
                   "reads": parents}
        text = message or ("passed" if status == PASSED else dbt_status)
        guidance = f"see the offending rows with `dbt test --select {node.name}` (defined in {node.path})"
        return CheckResult(f"{self.name}.{node.name}", status, severity, text, details,
                           guidance if status == FAILED else "")


REGISTRY.add(DbtTestsCheck(
    name="dbt_tests", severity="error", function=None, reads=_test_parents,
    description="The dbt project's own tests on the selected nodes, each with its dbt severity",
    origin="setup_tasks.validation.builtin.dbt_tests",
    definition=hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:20],
))
