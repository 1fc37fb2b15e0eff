"""The validation framework: results, severity, summary, registry, staleness, doit tasks, and end to end runs."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest
import yaml
from doit.exceptions import InvalidDodoFile, TaskFailed

from factories import Workspace
from setup_tasks.cli import app as cli_app
from setup_tasks.cli import checks as cli_checks
from setup_tasks.cli.uptodate import CheckUpToDate
from setup_tasks.validation import catalog, framework
from setup_tasks.validation import results as vr
from setup_tasks.validation import scope as v_scope
from setup_tasks.config import Settings, load_settings
from setup_tasks.store.database import Database, DatabaseContents
from setup_tasks.engine.run_state import RunState
from setup_tasks.errors import PlanwiseError
from setup_tasks.project.fingerprints import Fingerprint
from setup_tasks.project.graph import SetupGraph
from setup_tasks.project.manifest import manifest_from_dict
from setup_tasks.store.records import BuildRecord

COLA = "configuration_consistency.cola_years"


def result(name: str = "a", status: str = "passed", severity: str = "error", **kw: Any) -> vr.CheckResult:
    return vr.CheckResult(name, status, severity, kw.pop("message", "m"), **kw)


# -- results, severity and the summary ------------------------------------------------------------


def test_result_round_trips_through_json() -> None:
    original = result(
        details=vr.jsonable({"n": decimal.Decimal("1.50"), "when": dt.date(2025, 1, 2), "ids": ("a",)}),
        guidance="fix it",
        seconds=0.5,
    )
    text = json.dumps(original.as_dict())
    back = vr.CheckResult.from_dict(json.loads(text))
    assert back == original
    assert back.details == {"n": 1.5, "when": "2025-01-02", "ids": ["a"]}


def test_one_line_and_blocking_follow_fail_on() -> None:
    failed = result("x.y", "failed", "warning", message="3 rows", guidance="fix rows")
    assert failed.one_line() == "x.y warn: 3 rows -- fix: fix rows"  # dbt's word for a reported failure
    assert failed.one_line(("warning",)) == "x.y fail (warning): 3 rows -- fix: fix rows"
    assert result("x.y", "failed", "error", message="m").one_line() == "x.y fail: m"
    assert not failed.blocking(("critical", "error"))
    assert failed.blocking(("warning",))
    assert not result(status="passed").blocking(("error",))
    assert not result(status="skipped").blocking(("error",))


def test_summary_counts_rate_and_failures() -> None:
    summary = vr.summarize(
        [
            result("p1"),
            result("p2"),
            result("p3"),
            result("c", "failed", "critical", guidance="g"),
            result("w", "failed", "warning"),
            result("s", "skipped", "error", message="table t absent"),
        ]
    )
    assert (summary.run, summary.passed, summary.failed, summary.skipped) == (5, 3, 2, 1)
    assert summary.success_rate == pytest.approx(0.6)
    assert [r.name for r in summary.critical_failures] == ["c"]
    assert [r.name for r in summary.blocking_failures] == ["c"]
    assert not summary.ok
    lines = summary.lines()
    assert lines[0] == "validation: 6 checks, 3 passed, 1 fail, 1 warn, 1 skipped, success rate 60%"
    assert "  c fail (critical): m -- fix: g" in lines
    assert "  w warn: m" in lines
    assert "  skipped (table t absent): s" in lines
    assert summary.tally() == "3 passed, 1 fail, 1 warn, 1 skipped"
    assert summary.as_dict()["critical_failures"] == ["c"]


def test_warnings_alone_do_not_fail_and_fail_on_is_configurable() -> None:
    results = [result("w", "failed", "warning"), result("ok")]
    assert vr.summarize(results).ok
    assert not vr.summarize(results, fail_on=("warning",)).ok
    assert vr.summarize([]).success_rate == 1.0


def test_failure_message_is_one_line_and_counts_the_rest() -> None:
    failures = [result(f"c{i}", "failed", "error", guidance="g") for i in range(5)]
    message = v_scope.CheckRun([], failures, {}).failure_message()
    assert "\n" not in message
    assert message.endswith("; and 2 more blocking failures")


# -- the registry and loading checks ----------------------------------------------------------------


def test_register_check_documents_and_rejects_bad_definitions() -> None:
    registry = framework.CheckRegistry()

    @framework.register_check("team.no_interns", severity="warning", reads=["census"], registry=registry)
    def no_interns(ctx: framework.CheckContext) -> vr.CheckResult:
        """No interns in the baseline."""
        return ctx.passed("none")

    check = registry.get("team.no_interns")
    assert (check.severity, check.reads, check.group, check.description) == (
        "warning",
        ("census",),
        "team",
        "No interns in the baseline.",
    )
    with pytest.raises(PlanwiseError, match="defined twice"):
        framework.register_check("team.no_interns", registry=registry)(lambda ctx: ctx.passed(""))
    with pytest.raises(PlanwiseError, match="is not valid"):
        framework.register_check("Bad Name", registry=registry)(no_interns)
    with pytest.raises(PlanwiseError, match="severity 'fatal'"):
        framework.register_check("ok_name", severity="fatal", registry=registry)(no_interns)


def _settings(tmp_path: Path, text: str = "") -> Settings:
    config = tmp_path / "setup.yaml"
    config.write_text(text)
    return load_settings(config, root=tmp_path, environ={})


def test_load_checks_adds_custom_checks_and_honours_run_dbt_tests(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, "validation:\n  run_dbt_tests: false\n  custom_checks: [{name: mine, sql: select 1 where false}]\n"
    )
    names = [c.name for c in catalog.load_checks(settings.validation, tmp_path)]
    assert "dbt_tests" not in names and names[-1] == "mine"
    assert "baseline_workforce.headcount" in names


def test_disabled_checks_by_name_or_area_are_not_defined(tmp_path: Path) -> None:
    every = {c.name for c in catalog.load_checks(_settings(tmp_path).validation, tmp_path)}
    settings = _settings(
        tmp_path,
        "validation:\n  disabled_checks: [census_data_quality, configuration_consistency.hazard_bands, dbt_tests]\n",
    )
    names = {c.name for c in catalog.load_checks(settings.validation, tmp_path)}
    assert every - names == {n for n in every if n.startswith("census_data_quality.")} | {
        "configuration_consistency.hazard_bands",
        "dbt_tests",
    }
    assert "configuration_consistency.cola_years" in names


def test_an_unknown_disabled_check_says_the_nearest_name(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "validation:\n  disabled_checks: [census_data_qualty]\n")
    with pytest.raises(
        PlanwiseError,
        match=r"disabled_checks\[0\]: 'census_data_qualty' is no check or area "
        r"\(did you mean 'census_data_quality'\?\)",
    ):
        catalog.load_checks(settings.validation, tmp_path)


def test_custom_check_named_like_a_builtin_is_a_definition_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "validation:\n  custom_checks: [{name: dbt_tests, sql: select 1}]\n")
    with pytest.raises(PlanwiseError, match=r"custom_checks\[0\].name: 'dbt_tests' is already"):
        catalog.load_checks(settings.validation, tmp_path)


def test_check_modules_register_python_checks(tmp_path: Path) -> None:
    (tmp_path / "acme_checks_ok.py").write_text(
        textwrap.dedent("""
        from setup_tasks.validation import register_check

        @register_check("acme.headcount_even", severity="info", reads=["census"])
        def even(ctx):
            \"\"\"Headcount is even.\"\"\"
            return ctx.passed("even")
    """)
    )
    settings = _settings(tmp_path, "validation:\n  check_modules: [acme_checks_ok]\n")
    try:
        names = [c.name for c in catalog.load_checks(settings.validation, tmp_path)]
        assert "acme.headcount_even" in names
    finally:
        framework.REGISTRY.remove("acme.headcount_even")
        sys.modules.pop("acme_checks_ok", None)


def test_unimportable_check_module_names_the_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "validation:\n  check_modules: [acme_missing_checks]\n")
    with pytest.raises(PlanwiseError, match="validation.check_modules: cannot import acme_missing_checks"):
        catalog.load_checks(settings.validation, tmp_path)


def test_a_crashing_check_fails_instead_of_ending_the_run(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    duckdb.connect(str(db)).close()

    def broken(ctx: framework.CheckContext) -> vr.CheckResult:
        raise ZeroDivisionError("boom")

    check = framework.Check("broken", "error", broken, origin="tests.broken")
    [outcome] = check.run(framework.Environment(_settings(tmp_path).validation, Database(db)))
    assert (outcome.status, outcome.message) == ("failed", "check crashed: ZeroDivisionError: boom")
    assert outcome.guidance == "fix the check tests.broken"


# -- staleness and doit tasks, with a stand-in engine ---------------------------------------------------


def _node(uid: str, rtype: str, deps: tuple[str, ...] = ()) -> dict[str, Any]:
    name = uid.rsplit(".", 1)[1]
    return {
        "unique_id": uid,
        "resource_type": rtype,
        "name": name,
        "schema": "main",
        "database": "wh",
        "depends_on": {"nodes": list(deps)},
        "original_file_path": f"seeds/{name}.csv" if rtype == "seed" else None,
        "config": {"materialized": "table"} if rtype == "model" else {},
    }


class FakeEngine:
    """What the validation tasks use of an Engine, without dbt."""

    def __init__(self, tmp_path: Path, settings: Settings, db: Path) -> None:
        nodes = [
            _node("seed.p.cola_seed", "seed"),
            _node("model.p.stg_config_cola_by_year", "model", ("seed.p.cola_seed",)),
            _node("model.p.stg_census_data", "model"),
            _node("model.p.stg_config_job_levels", "model"),
        ]
        self.manifest = manifest_from_dict({"nodes": {n["unique_id"]: n for n in nodes}})
        self.graph = SetupGraph.from_manifest(self.manifest)
        self.settings, self.db_path, self.root = settings, db, tmp_path
        self.state_dir = tmp_path / ".planwise" / "p"
        self.db = Database(db)
        self.ctx = SimpleNamespace(project_dir=tmp_path)
        self.setup_nodes = self.graph.buildable(self.manifest.nodes)
        self.foundation_nodes = ["model.p.stg_census_data", "model.p.stg_config_job_levels"]
        self.digests = {uid: f"fp-{uid}" for uid in self.manifest.nodes}
        self.records = SimpleNamespace(get=lambda uid: BuildRecord("d", {}, 0.0, 0.0, "b", signature=f"sig-{uid}"))
        self.run = RunState()
        self.task_nodes = self.setup_nodes
        self.definitions = SimpleNamespace(
            tests=lambda: self.graph.tests_of(self.setup_nodes), test_scope=lambda: set(self.setup_nodes)
        )
        self.unbuilt: dict[str, str] = {}  # what ensure() answers: the inputs that did not build

    def ensure(self, uids: Any) -> dict[str, str]:
        return {u: why for u, why in self.unbuilt.items() if u in set(uids)}

    def refresh_compiled(self) -> list[str]:
        return []

    def status(self, uid: str) -> Any:
        return SimpleNamespace(stale=False, reason="up to date")

    def label(self, uid: str) -> str:
        return self.names()[uid]

    def fingerprints(self) -> dict[str, Fingerprint]:
        return {uid: Fingerprint(d, {}) for uid, d in self.digests.items()}

    def database_contents(self) -> DatabaseContents:
        return DatabaseContents(self.db_path, True, {})

    def node(self, uid: str) -> Any:
        return self.manifest.nodes[uid]

    def names(self) -> dict[str, str]:
        return {uid: f"{n.resource_type} {n.name}" for uid, n in self.manifest.nodes.items()}


@pytest.fixture
def engine(tmp_path: Path) -> FakeEngine:
    db = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "create table stg_config_cola_by_year as select range as year, 0.02 as cola_rate from range(2024, 2031)"
    )
    con.close()
    return FakeEngine(tmp_path, _settings(tmp_path), db)


def _scope(engine: FakeEngine) -> v_scope.ValidationScope:
    return v_scope.ValidationScope(engine)  # type: ignore[arg-type]


def _run_action(
    engine: FakeEngine, check: framework.Check, scope: v_scope.ValidationScope | None = None
) -> tuple[CheckUpToDate, Any]:
    scope = scope or _scope(engine)
    engine.scope = scope
    target = CheckUpToDate(scope, check, f"validate:{check.name}", scope.reads(check)[0])
    assert target(None, {}) is False
    return target, cli_checks.check_action(scope, check, target)


def _tasks(engine: FakeEngine) -> cli_checks.ValidationTasks:
    app = cli_app.App(engine=engine, mode="api")  # type: ignore[arg-type]
    return cli_checks.ValidationTasks(app, lambda *args: None)


def test_check_is_up_to_date_until_what_it_reads_or_uses_changes(engine: FakeEngine, tmp_path: Path) -> None:
    check = framework.REGISTRY.get(COLA)
    target, saved = _run_action(engine, check)
    assert "no stored result" in repr(target)
    assert saved["results"][0]["status"] == "passed"
    assert engine.scope.results[COLA].passed and not engine.scope.results[COLA].up_to_date

    engine.scope.results.clear()
    assert target(None, saved) is True
    assert repr(target) == f"CheckUpToDate(validate:{COLA}): up to date"
    assert engine.scope.results[COLA].up_to_date  # the stored result stands for this run

    engine.digests["model.p.stg_census_data"] = "other"  # a table it does not read
    assert target(None, saved) is True
    engine.digests["model.p.stg_config_cola_by_year"] = "changed"
    assert target(None, saved) is False
    assert target.reasons == ["input changed: model stg_config_cola_by_year"]

    engine.digests["model.p.stg_config_cola_by_year"] = "fp-model.p.stg_config_cola_by_year"
    engine.settings = _settings(tmp_path, "validation: {simulation_end_year: 2031}\n")
    assert target(None, saved) is False
    assert target.reasons == ["setting changed: validation.simulation_end_year (2029 -> 2031)"]

    engine.settings = _settings(tmp_path, "validation: {fail_on: [critical]}\n")
    assert target(None, saved) is False  # the same failure would no longer block
    assert target(None, {"parts": saved["parts"]}) is False


def test_blocking_failure_fails_the_task_with_one_line(engine: FakeEngine, tmp_path: Path) -> None:
    engine.settings = _settings(tmp_path, "validation: {simulation_end_year: 2033}\n")
    _, outcome = _run_action(engine, framework.REGISTRY.get(COLA))
    assert isinstance(outcome, TaskFailed)
    assert outcome.message == (
        f"{COLA} fail: no COLA rate in stg_config_cola_by_year for 2031, 2032, 2033 "
        "(simulation years 2025-2033) -- fix: add those years to seeds/cola_seed.csv, or change "
        "validation.simulation_start_year / validation.simulation_end_year"
    )
    assert engine.scope.results[COLA].failed


def test_a_reported_failure_is_stored_and_does_not_fail_the_task(engine: FakeEngine, tmp_path: Path) -> None:
    engine.settings = _settings(tmp_path, "validation: {simulation_end_year: 2033, fail_on: [critical]}\n")
    _, saved = _run_action(engine, framework.REGISTRY.get(COLA))
    assert saved["results"][0]["status"] == "failed"


def test_a_check_that_could_not_run_is_not_stored(engine: FakeEngine, tmp_path: Path) -> None:
    def crashes(ctx: framework.CheckContext) -> vr.CheckResult:
        raise RuntimeError("flaky")

    engine.settings = _settings(tmp_path, "validation: {fail_on: [critical]}\n")
    check = framework.Check("flaky", "warning", crashes, reads=("cola",), origin="tests.crashes")
    target, saved = _run_action(engine, check)
    assert engine.scope.results["flaky"].incomplete
    assert "results" not in saved
    assert target(None, saved) is False and target.reasons == ["last result not stored"]


def test_a_check_whose_table_did_not_build_is_not_run_with_the_reason(engine: FakeEngine) -> None:
    engine.unbuilt = {"model.p.stg_config_cola_by_year": "model stg_config_cola_by_year failed"}
    target, outcome = _run_action(engine, framework.REGISTRY.get(COLA))
    result = engine.scope.results[COLA]
    assert result.not_run and result.message == "model stg_config_cola_by_year failed"
    assert result.incomplete and "results" not in outcome  # never reused: the next run checks again
    assert not isinstance(outcome, TaskFailed)  # the node's failure fails the run, not the check
    assert engine.scope.summary().tally() == "1 not run"


def test_a_check_is_stale_while_a_table_it_reads_is(engine: FakeEngine) -> None:
    target, saved = _run_action(engine, framework.REGISTRY.get(COLA))
    assert target(None, saved) is True
    engine.status = lambda uid: SimpleNamespace(stale=True, reason="forced (doit forget)")  # type: ignore[method-assign]
    assert target(None, saved) is False
    assert target.reasons == ["reads model stg_config_cola_by_year, which is stale: forced (doit forget)"]


def test_tasks_dependencies_groups_and_quick(engine: FakeEngine, tmp_path: Path) -> None:
    engine.settings = _settings(
        tmp_path,
        "validation:\n  custom_checks:\n"
        "    - {name: cola_known, sql: select * from stg_config_cola_by_year where cola_rate is null}\n"
        "    - {name: pay_known, sql: select * from stg_census_data where employee_gross_compensation is null}\n",
    )
    vt = _tasks(engine)
    tasks = {t["basename"]: t for t in vt.tasks()}
    cola = tasks[f"validate:{COLA}"]
    # Checks ask the engine for what they read (no doit dependency: a failed input must not hide them).
    assert "task_dep" not in cola and cola["uptodate"][0].inputs == ["model.p.stg_config_cola_by_year"]
    assert vt.task_dep(framework.REGISTRY.get(COLA)) == ["model:stg_config_cola_by_year"]  # for `doit graph`
    assert cola["doc"] == "[error] A COLA rate for every simulation year (reads stg_config_cola_by_year)"
    assert repr(cola["uptodate"][0]) == f"CheckUpToDate(validate:{COLA})"
    assert tasks["validate:cola_known"]["uptodate"][0].inputs == ["model.p.stg_config_cola_by_year"]
    assert f"validate:{COLA}" in tasks["validate:configuration_consistency"]["task_dep"]
    assert tasks["validate"]["task_dep"][0] == "_plan:validate"
    deps = vt.dependencies()
    assert deps["setup"][-1] == "validate" and f"validate:{COLA}" in deps["setup"]
    assert "validate:pay_known" in deps["quick"] and "validate:baseline_workforce.headcount" in deps["quick"]
    assert "validate:cola_known" not in deps["quick"] and f"validate:{COLA}" not in deps["quick"]
    assert deps["quick"][-1] == "_validate:quick"


def test_validate_results_off_adds_nothing_to_setup(engine: FakeEngine, tmp_path: Path) -> None:
    engine.settings = _settings(tmp_path, "setup: {validate_results: false}\n")
    assert _tasks(engine).dependencies() == {"setup": [], "quick": []}


def test_definition_errors_stop_doit_with_one_line(engine: FakeEngine, tmp_path: Path) -> None:
    engine.settings = _settings(tmp_path, "validation:\n  check_modules: [acme_nowhere]\n")
    with pytest.raises(InvalidDodoFile, match="cannot import acme_nowhere"):
        _tasks(engine)


# -- end to end: doit in a subprocess on a tiny PlanWise-shaped project ------------------------------

MINI_SEEDS = {
    "census_raw": "employee_id,active,employee_gross_compensation,employee_birth_date,employee_hire_date,"
    "employee_termination_date\n"
    + "".join(f"E{i},true,{45000 + 9000 * i},19{70 + i}-05-01,20{10 + i}-02-01,\n" for i in range(10))
    + "E10,false,50000,1990-01-01,2015-01-01,2024-03-31\n",
    "config_job_levels": "level_id,min_compensation,max_compensation\n1,40000,75000\n2,75000,110000\n3,110000,160000\n",
    "config_cola_by_year": "year,cola_rate\n" + "".join(f"{y},0.02\n" for y in range(2025, 2030)),
    "scenario_meta": "scenario_id\ndefault\n",
    "comp_levers": "scenario_id,fiscal_year,job_level\ndefault,2025,1\ndefault,2025,2\ndefault,2025,3\n",
    "hazard_age": "age_band,min_age,max_age\nyoung,18,40\nold,40,121\n",
    "hazard_tenure": "tenure_band,min_tenure,max_tenure\nnew,0,5\nlong,5,100\n",
}
MINI_MODELS = {
    "stg_census_data": "census_raw",
    "stg_config_job_levels": "config_job_levels",
    "stg_config_cola_by_year": "config_cola_by_year",
    "stg_scenario_meta": "scenario_meta",
    "stg_comp_levers": "comp_levers",
}
MINI_TESTS = {
    "version": 2,
    "models": [
        {"name": "stg_census_data", "columns": [{"name": "employee_id", "data_tests": ["unique", "not_null"]}]},
        {"name": "stg_config_cola_by_year", "columns": [{"name": "year", "data_tests": ["unique"]}]},
    ],
}
# Wires the validation tasks the way the lead's dodo.py will (only if it does not already).
DODO = """
from setup_tasks.cli import dodo_namespace

globals().update(dodo_namespace())
"""


def write_mini_project(root: Path, **validation: Any) -> Workspace:
    ws = Workspace(root)
    (ws.project / "seeds").mkdir(parents=True)
    (ws.project / "models" / "staging").mkdir(parents=True)
    (ws.project / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {
                "name": "mini",
                "version": "1.0",
                "profile": "mini",
                "config-version": 2,
                "models": {"mini": {"+materialized": "table"}},
            }
        )
    )
    (ws.project / "profiles.yml").write_text(
        yaml.safe_dump(
            {
                "mini": {
                    "target": "dev",
                    "outputs": {
                        "dev": {"type": "duckdb", "path": "{{ env_var('DUCKDB_PATH', 'mini.duckdb') }}", "threads": 2}
                    },
                }
            }
        )
    )
    for name, text in MINI_SEEDS.items():
        ws.seed(name, text)
    for model, seed in MINI_MODELS.items():
        ws.model(model, f"select * from {{{{ ref('{seed}') }}}}")
    (ws.project / "models" / "staging" / "schema.yml").write_text(yaml.safe_dump(MINI_TESTS, sort_keys=False))
    (root / "dodo.py").write_text(DODO)
    tables = {
        "promotion_age_multipliers": "hazard_age",
        "termination_age_multipliers": "hazard_age",
        "promotion_tenure_multipliers": "hazard_tenure",
        "termination_tenure_multipliers": "hazard_tenure",
    }
    ws.config_path.write_text(
        yaml.safe_dump(
            {
                "database": {"path": "warehouse.duckdb"},
                "dbt": {
                    "project_dir": "proj",
                    "foundation_selection": "stg_census_data stg_config_job_levels stg_comp_levers",
                },
                "census": {"path": "census.parquet", "generate": False},
                "validation": {"min_baseline_workforce_count": 5, "tables": tables, **validation},
            },
            sort_keys=False,
        )
    )
    return ws


def doit(ws: Workspace, *args: str) -> Any:
    return (
        ws.doit(*args[:1], "-f", str(ws.root / "dodo.py"), *args[1:])
        if args[0] in ("list", "info")
        else ws.doit("-f", str(ws.root / "dodo.py"), *args)
    )


GROUPS = {
    "seed_data_integrity",
    "staging_models",
    "baseline_workforce",
    "census_data_quality",
    "configuration_consistency",
}


def checks_run(run: Any) -> set[str]:
    """Check tasks that ran (passed or failed), not group tasks."""
    return {
        n
        for n, r in run.results.items()
        if n.startswith("validate:") and r in ("success", "fail") and n.split(":", 1)[1] not in GROUPS
    }


@pytest.mark.slow
def test_setup_validates_then_reruns_only_checks_whose_inputs_changed(tmp_path: Path) -> None:
    ws = write_mini_project(tmp_path)
    first = doit(ws, "setup")
    assert first.returncode == 0, first.stdout + first.stderr
    all_checks = checks_run(first)
    assert len(all_checks) == 19 and "validate:dbt_tests" in all_checks
    assert first.results["validate"] == "success"

    again = doit(ws, "setup")
    assert again.returncode == 0
    assert checks_run(again) == set()
    assert again.results[f"validate:{COLA}"] == "up-to-date"
    summary = json.loads(again.stdout[again.stdout.find("{") :])
    validate_out = next(t["out"] for t in summary["tasks"] if t["name"] == "validate")
    assert "validation: 21 checks, 21 passed, success rate 100%" in validate_out  # 18 checks + 3 dbt tests

    ws.seed("config_cola_by_year", "year,cola_rate\n2025,0.02\n2026,0.02\n2028,0.02\n2029,0.02\n")
    broken = doit(ws, "setup")
    assert broken.returncode == 1
    assert broken.results[f"validate:{COLA}"] == "fail"
    assert checks_run(broken) == {
        f"validate:{COLA}",
        "validate:seed_data_integrity.present",
        "validate:seed_data_integrity.row_counts",
        "validate:seed_data_integrity.null_columns",
        "validate:staging_models.materialized",
        "validate:staging_models.non_empty",
        "validate:dbt_tests",
    }  # a blocking failure stops no other check
    assert "no COLA rate in stg_config_cola_by_year for 2027 (simulation years 2025-2029)" in broken.stdout
    assert "fix: add those years to seeds/config_cola_by_year.csv" in broken.stdout

    info = doit(ws, "info", f"validate:{COLA}")
    assert "no stored result" in info.stdout


@pytest.mark.slow
def test_quick_runs_foundation_checks_and_custom_checks_fail_by_severity(tmp_path: Path) -> None:
    custom = [
        {
            "name": "no_top_earners",
            "description": "pay above 100k",
            "severity": "warning",
            "sql": "select employee_id from stg_census_data where employee_gross_compensation > 100000",
        },
        {
            "name": "levers_for_2026",
            "description": "no lever for 2026",
            "severity": "error",
            "sql": "select scenario_id from stg_scenario_meta s where not exists"
            " (select 1 from stg_comp_levers l where l.scenario_id = s.scenario_id and fiscal_year = 2026)",
        },
    ]
    ws = write_mini_project(tmp_path, custom_checks=custom, run_dbt_tests=False)
    quick = doit(ws, "quick")
    assert quick.returncode == 0, quick.stdout + quick.stderr
    assert checks_run(quick) == {
        "validate:baseline_workforce.headcount",
        "validate:baseline_workforce.compensation",
        "validate:baseline_workforce.compensation_range",
        "validate:census_data_quality.required_nulls",
        "validate:census_data_quality.hire_after_termination",
        "validate:census_data_quality.implausible_ages",
        "validate:census_data_quality.compensation_outliers",
        "validate:configuration_consistency.job_level_bands",
        "validate:configuration_consistency.active_pay_in_job_level",
        "validate:no_top_earners",
    }
    out = json.loads(quick.stdout[quick.stdout.find("{") :])
    warning = next(t["out"] for t in out["tasks"] if t["name"] == "_validate:quick")
    assert "no_top_earners warn: 3 offending rows (pay above 100k)" in warning

    setup = doit(ws, "setup")
    assert setup.returncode == 1
    assert setup.results["validate:levers_for_2026"] == "fail"
    assert setup.results["validate:no_top_earners"] == "up-to-date"
    assert (
        "levers_for_2026 fail: 1 offending row (no lever for 2026) -- fix: correct the rows "
        "the query of validation.custom_checks[1] (levers_for_2026) selects"
    ) in setup.stdout


@pytest.mark.slow
def test_after_a_failed_dbt_test_only_it_and_tests_with_changed_inputs_run_again(tmp_path: Path) -> None:
    ws = write_mini_project(tmp_path)
    assert doit(ws, "validate:dbt_tests").returncode == 0

    def dbt_tests() -> dict[str, dict]:
        checks = json.loads((ws.root / "warehouse.setup_report.json").read_text())["validation"]["checks"]
        return {name.split(".", 1)[1]: c for name, c in checks.items() if name.startswith("dbt_tests.")}

    ws.seed("config_cola_by_year", "year,cola_rate\n" + "".join(f"{y},0.02\n" for y in (2025, 2025, 2026, 2027)))
    failed = doit(ws, "validate:dbt_tests")
    assert failed.returncode == 1 and failed.results["validate:dbt_tests"] == "fail"
    tests = dbt_tests()
    year = next(name for name in tests if "stg_config_cola_by_year" in name)
    assert tests[year]["status"] == "failed" and not tests[year]["up_to_date"]
    assert all(c["up_to_date"] and c["status"] == "passed" for n, c in tests.items() if n != year)

    # doit keeps nothing of a failed task; the census tests' results still stand, so only the fixed one runs.
    ws.seed("config_cola_by_year", "year,cola_rate\n" + "".join(f"{y},0.02\n" for y in range(2025, 2030)))
    fixed = doit(ws, "validate:dbt_tests")
    assert fixed.returncode == 0, fixed.stdout[-2000:]
    tests = dbt_tests()
    assert tests[year]["status"] == "passed" and not tests[year]["up_to_date"]
    assert all(c["up_to_date"] for n, c in tests.items() if n != year)

    again = ws.doit("forget", "-f", str(ws.root / "dodo.py"), "validate:dbt_tests", json_report=False)
    assert again.returncode == 0
    assert doit(ws, "validate:dbt_tests").returncode == 0
    assert not any(c["up_to_date"] for c in dbt_tests().values())  # forgotten after a success: all run
