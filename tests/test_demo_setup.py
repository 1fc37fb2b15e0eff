"""The real job: `doit setup` on a copy of the demo project, as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from factories import REPO, Workspace

pytestmark = pytest.mark.slow

FOUNDATION = {
    "seed:config_job_levels",
    "seed:comp_levers",
    "model:stg_census_data",
    "model:stg_config_job_levels",
    "model:stg_comp_levers",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(REPO / "dbt", root / "proj", ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    ws = Workspace(root)
    ws.config_path.write_text(
        yaml.safe_dump(
            {
                "database": {"path": "warehouse.duckdb"},
                "dbt": {"project_dir": "proj"},
                "census": {"path": "census.parquet", "employees": 3000},
            }
        )
    )
    return ws


def test_cold_setup_generates_the_census_builds_everything_and_validates(demo: Workspace) -> None:
    run = demo.doit("setup")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    built = {name for name, result in run.results.items() if result == "success"}
    assert "census" in built
    assert len({n for n in built if n.startswith("seed:")}) == 14
    assert len({n for n in built if n.startswith("model:")}) == 14
    assert run.results["validate:dbt_tests"] == "success"
    assert run.results["validate:baseline_workforce.headcount"] == "success"
    report = json.loads((demo.root / "warehouse.setup_report.json").read_text())
    assert report["dbt_invocations"] == 1  # every node in one dbt run, each dbt test right after what it reads
    failed = [c for c in report["validation"]["checks"].values() if c["status"] == "failed"]
    assert failed and {c["severity"] for c in failed} == {"warning"}  # the census's deliberate defects


def built(demo: Workspace) -> Workspace:
    """The demo set up: after the cold test, nothing to do; run alone, the whole build."""
    first = demo.doit("setup")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return demo


def test_then_nothing_is_stale(demo: Workspace) -> None:
    run = built(demo).doit("setup")
    assert run.returncode == 0
    assert {n for n, r in run.results.items() if r == "success" and not n.startswith("_")} == {"setup", "validate"}


def test_a_seed_edit_rebuilds_its_chain_and_reruns_its_checks(demo: Workspace) -> None:
    built(demo)
    seed = demo.project / "seeds" / "config_cola_by_year.csv"
    lines = seed.read_text().splitlines()
    year, rate = lines[-1].split(",")[:2]
    lines[-1] = f"{year},{float(rate) + 0.001:.4f}"
    seed.write_text("\n".join(lines) + "\n")
    run = demo.doit("setup")
    assert run.returncode == 0
    assert run.ran() == {"seed:config_cola_by_year", "model:stg_config_cola_by_year"}
    assert run.results["validate:configuration_consistency.cola_years"] == "success"
    assert run.results["validate:baseline_workforce.headcount"] == "up-to-date"


def test_quick_from_scratch_builds_only_the_foundation(demo: Workspace) -> None:
    demo.db_path.unlink(missing_ok=True)
    run = demo.doit("quick")
    assert run.returncode == 0, run.stdout[-2000:]
    assert run.ran() == FOUNDATION
