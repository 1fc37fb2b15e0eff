"""Issue 23: one focused test per defence that only the long property tests used to catch.

Each fails when its defence is taken out: forgotten nodes rebuilt in one batch (not one per task), the
table of a model that became ephemeral dropped, a project with run hooks built by dbt (which runs them),
and a renamed model file parsed again in full (the old node gone, the new one built).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from factories import Workspace
from operator_support import add_model_tests

pytestmark = pytest.mark.slow


def report(ws: Workspace) -> dict[str, Any]:
    return json.loads((ws.root / "warehouse.setup_report.json").read_text())


def built(ws: Workspace) -> set[str]:
    return {n["unique_id"] for n in report(ws)["nodes"] if n["status"] == "built"}


def test_forgotten_nodes_rebuild_in_one_batch(built_shop: Workspace) -> None:
    ws = built_shop
    assert ws.doit("forget", "-a").returncode == 0
    run = ws.doit("setup", json_report=False)
    assert run.returncode == 0, run.stdout + run.stderr
    batches = re.findall(r"^building (\d+) stale nodes?", run.stdout, re.M)
    assert batches == [str(len(built(ws)))] and len(built(ws)) >= 8, run.stdout


def test_the_table_of_a_model_made_ephemeral_is_dropped(built_shop: Workspace) -> None:
    ws = built_shop
    assert "stg_regions" in ws.tables()
    ws.model("stg_regions", "{{ config(materialized='ephemeral') }}\nselect region from {{ ref('regions') }}")
    run = ws.doit("setup", json_report=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "stg_regions" not in ws.tables()
    assert report(ws)["dropped_leftovers"] == ["main.stg_regions"]


def test_a_project_with_run_hooks_is_built_by_dbt_which_runs_them(built_shop: Workspace) -> None:
    ws = built_shop
    path = ws.project / "dbt_project.yml"
    project = yaml.safe_load(path.read_text())
    project["on-run-start"] = ["create or replace table hook_ran as select 1 as n"]
    path.write_text(yaml.safe_dump(project, sort_keys=False))
    ws.seed("regions", "region,tax_rate\nnorth,0.25\nsouth,0.1\n")
    run = ws.doit("setup", json_report=False)
    assert run.returncode == 0, run.stdout + run.stderr
    done = report(ws)
    assert done["direct_builds"] == 0 and done["dbt_invocations"] >= 1, done
    assert "seed.shop.regions" in built(ws) and ws.tables()["hook_ran"] == [(1,)]


def test_a_model_moved_or_renamed_and_back_keeps_its_tests(built_shop: Workspace) -> None:
    """dbt's partial parse loses the tests of an unchanged yml when its model file is moved or renamed and
    back: a changed file set is parsed in full."""
    ws = built_shop
    add_model_tests(ws, "regions.yml", {"stg_regions": {"region": ["not_null", "unique"]}})
    tests = {"dbt_tests.not_null_stg_regions_region", "dbt_tests.unique_stg_regions_region"}
    model = ws.project / "models" / "staging" / "stg_regions.sql"
    moved = model.parent / "core" / model.name
    moved.parent.mkdir()
    for step in ("tests added", "moved", "moved back", "renamed", "renamed back"):
        if step == "moved":
            model.rename(moved)
        elif step == "moved back":
            moved.rename(model)
        elif step == "renamed":
            model.rename(model.with_name("stg_regions_v2.sql"))
        elif step == "renamed back":
            model.with_name("stg_regions_v2.sql").rename(model)
        run = ws.doit("setup", json_report=False)
        assert run.returncode == 0, f"{step}: {run.stdout}{run.stderr}"
    assert tests <= set(report(ws)["validation"]["checks"]), sorted(report(ws)["validation"]["checks"])
    assert "stg_regions_v2" not in ws.tables() and "stg_regions" in ws.tables()
