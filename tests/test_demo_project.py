"""End-to-end tests of the demo dbt project (dbt/): ``dbt build`` on a generated census passes.

The project is copied to a temporary folder and built once per module with
dbt in-process. The built database is read with a plain ``duckdb.connect``:
dbt-duckdb keeps the file open in this process, and DuckDB only lets a second
connection share it with the same (default) configuration.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from setup_tasks.engine.census import CensusDefects, generate_census

pytestmark = pytest.mark.slow

DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt"
FOUNDATION_MODELS = {"stg_census_data", "stg_config_job_levels", "stg_comp_levers"}
# Checks the generated defects trip on purpose; they are severity warn. (Hire after termination is
# setup's built-in census_data_quality.hire_after_termination: one check per defect.)
DEFECT_CHECKS = {"not_null_stg_census_data_employee_ssn"}


@dataclass(frozen=True)
class DemoBuild:
    census: Path
    database: Path
    success: bool
    statuses: dict[str, tuple[str, str]]  # unique_id -> (resource type, status)
    manifest: dict[str, Any]

    def names(self, resource_type: str, status: str | None = None) -> set[str]:
        return {
            unique_id.split(".")[2]
            for unique_id, (kind, state) in self.statuses.items()
            if kind == resource_type and status in (None, state)
        }

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(self.database))
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    """The demo project built by ``dbt build`` on a 3,000-employee census with visible defects."""
    from dbt.cli.main import dbtRunner  # 2 s to import: only when the slow tier runs

    root = tmp_path_factory.mktemp("demo")
    project = root / "dbt"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*"))
    census = root / "data" / "census.parquet"
    generate_census(census, 3_000, seed=7, defects=CensusDefects(0.01, 0.01, 0.005))
    database = root / "simulation.duckdb"
    arguments = ["build", "--project-dir", str(project), "--profiles-dir", str(project), "--quiet"]
    arguments += ["--vars", json.dumps({"census_parquet_path": str(census)})]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DUCKDB_PATH", str(database))
        env.setenv("DBT_THREADS", "2")
        result = dbtRunner().invoke(arguments)
    statuses = {r.node.unique_id: (str(r.node.resource_type), str(r.status)) for r in result.result.results}
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    return DemoBuild(census, database, result.success, statuses, manifest)


def test_build_succeeds_with_no_failed_test(demo_build: DemoBuild) -> None:
    assert demo_build.success
    assert Counter(status for kind, status in demo_build.statuses.values() if kind == "test").keys() <= {"pass", "warn"}


def test_builds_14_seeds_and_14_staging_models(demo_build: DemoBuild) -> None:
    assert len(demo_build.names("seed", "success")) == 14
    models = demo_build.names("model", "success")
    assert len(models) == 14 and all(name.startswith("stg_") for name in models)


def test_only_the_deliberate_defects_warn(demo_build: DemoBuild) -> None:
    assert demo_build.names("test", "warn") == DEFECT_CHECKS


def test_duplicates_audit_lists_every_duplicated_id(demo_build: DemoBuild) -> None:
    ((raw_duplicated_ids,),) = demo_build.query(
        f"SELECT count(*) FROM (SELECT employee_id FROM read_parquet('{demo_build.census}')"
        " GROUP BY employee_id HAVING count(*) > 1)"
    )
    ((audited_ids, kept),) = demo_build.query(
        "SELECT count(DISTINCT employee_id), count(*) FILTER (WHERE is_kept_record) FROM stg_census_duplicates_audit"
    )
    assert raw_duplicated_ids > 0
    assert audited_ids == kept == raw_duplicated_ids


def test_annualized_pay_recovers_the_annual_rate(demo_build: DemoBuild) -> None:
    # The generator prorates the annual rate over days employed; staging grosses it back up.
    ((largest_gap, partial_year_workers),) = demo_build.query(
        """SELECT max(abs(employee_annualized_compensation - employee_gross_compensation)),
                  count(*) FILTER (WHERE employee_plan_year_compensation < employee_gross_compensation - 1)
           FROM stg_census_data
           WHERE employee_termination_date IS NULL OR employee_termination_date >= employee_hire_date"""
    )
    assert partial_year_workers > 100
    assert largest_gap < 2


def test_census_location_is_rendered_into_the_manifest(demo_build: DemoBuild) -> None:
    source = demo_build.manifest["sources"]["source.planwise_navigator.census.census_raw"]
    assert source["config"]["meta"]["external_location"] == str(demo_build.census)
    assert source["relation_name"] == f"'{demo_build.census}'"


def test_foundation_models_are_tagged(demo_build: DemoBuild) -> None:
    tagged = {node["name"] for node in demo_build.manifest["nodes"].values() if "foundation" in node.get("tags", [])}
    assert tagged == FOUNDATION_MODELS
