"""The growth benchmark's generated projects (benchmarks/generated.py, issue 21), at a small size: their shape, and
that setup rebuilds what the benchmark says each edit rebuilds. The benchmark itself (N = 300, 1000) is no test."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from factories import REPO
from team_projects import TeamRepo

sys.path.insert(0, str(REPO / "benchmarks"))
from generated import (
    descendants,
    edit_leaf_seed,
    edit_model,
    edit_root_seed,
    generate,  # noqa: E402
    reorder_root_seed,
)


def test_a_generated_project_has_ten_layers_a_third_views_a_tenth_seeds_and_two_tests_per_model(tmp_path: Path) -> None:
    project = generate(tmp_path / "gen", 300)
    models = sorted((tmp_path / "gen" / "models").rglob("*.sql"))
    assert len(models) == 300 and len({m.parent.name for m in models}) == 10
    views = [m for m in models if "materialized='view'" in m.read_text()]
    assert len(views) == 100
    assert len(list((tmp_path / "gen" / "seeds").glob("*.csv"))) == 30 == project.seeds
    assert all(len(s.read_text().splitlines()) == 51 for s in (tmp_path / "gen" / "seeds").glob("*.csv"))
    schema = yaml.safe_load((tmp_path / "gen" / "models" / "schema.yml").read_text())
    assert {tuple(c["data_tests"]) for m in schema["models"] for c in m["columns"]} == {("not_null", "unique")}
    assert descendants(project) == {"root seed": 156, "leaf seed": 2, "model SQL": 10}


@pytest.mark.slow
def test_setup_rebuilds_what_each_benchmark_edit_says_it_rebuilds(tmp_path: Path) -> None:
    project = generate(tmp_path / "gen", 40)
    repo = TeamRepo(project.root, project.root, "gen.duckdb")
    assert repo.init().returncode == 0
    first = repo.doit("setup")
    assert first.returncode == 0, first.stderr[-2000:]
    expected = descendants(project)
    for name, edit in (("leaf seed", edit_leaf_seed), ("root seed", edit_root_seed), ("model SQL", edit_model)):
        edit(project, 1)
        run = repo.doit("setup")
        assert run.returncode == 0, run.stderr[-2000:]
        report = json.loads((project.root / "gen.setup_report.json").read_text())
        assert report["counts"].get("built") == expected[name], (name, report["counts"])
    reorder_root_seed(project, 1)
    run = repo.doit("setup")
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((project.root / "gen.setup_report.json").read_text())["counts"].get("built", 0) >= 1
