"""The census has an owner, and `doit status` / `doit info census` say what setup will do with it.

The shop project gains a model that reads the census parquet (a source whose external
location is the ``census_parquet_path`` var, set from ``census.path``), with generation on
and a tiny census. Builds run in this process. Which nodes the next setup builds after an
override, and that a user's census is never written, are also held by the property test
(tests/test_property.py) at every step; these tests check the words.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from factories import Workspace
from setup_tasks.api import get_system_status, run_doit, run_setup
from setup_tasks.engine.census import generate_census, read_census_provenance

pytestmark = pytest.mark.slow

EMPLOYEES = 200
# Words by which `doit status` / `doit info census` may say the file is the user's, not setup's.
USERS_FILE = re.compile(r"user'?s|your own|not written by (this )?setup|never (re)?generated|never overwritten", re.I)


def census_shop(ws: Workspace) -> Path:
    """stg_census reads the census through a source; setup generates a 200-employee census."""
    sources = yaml.safe_load((ws.project / "models" / "staging" / "sources.yml").read_text())
    sources["sources"][0]["tables"].append(
        {"name": "census", "meta": {"external_location": "{{ var('census_parquet_path') }}"}}
    )
    (ws.project / "models" / "staging" / "sources.yml").write_text(yaml.safe_dump(sources, sort_keys=False))
    ws.model(
        "stg_census",
        "select count(*) as employees, count(distinct employee_id) as ids, "
        "sum(employee_gross_compensation) as pay from {{ source('raw', 'census') }}",
    )
    ws.write_config(census={"path": "census.parquet", "generate": True, "employees": EMPLOYEES, "seed": 42})
    return ws.root / "census.parquet"


def census_line(ws: Workspace) -> str:
    return next(line for line in get_system_status(ws.config_path).lines() if line.startswith("census"))


def test_overrides_are_for_one_run_and_status_says_the_census_will_be_regenerated(shop: Workspace) -> None:
    path = census_shop(shop)
    assert run_doit(["setup", "employees=300"], shop.config_path) == 0
    assert read_census_provenance(path)["employees"] == 300
    line = census_line(shop)
    assert "will be regenerated before setup: parameters changed: employees 300 -> 200" in line, line
    assert [n.task for n in get_system_status(shop.config_path).nodes if n.stale] == ["model:stg_census"]

    result = run_setup(shop.config_path)
    assert result.success and "census" in result.built and "model:stg_census" in result.built
    assert read_census_provenance(path)["employees"] == EMPLOYEES
    assert "written by setup, current" in census_line(shop)

    # `doit census employees=300` then setup: the file setup wrote for 200 comes back, byte for
    # byte, and the model built from it is up to date -- as status says beforehand.
    assert run_doit(["census", "employees=300"], shop.config_path) == 0
    assert "employees 300 -> 200" in census_line(shop)
    assert not [n.task for n in get_system_status(shop.config_path).nodes if n.stale]
    result = run_setup(shop.config_path)
    assert "census" in result.built and "model:stg_census" not in result.built


def test_a_census_the_generator_wrote_with_other_parameters_is_the_users(
    shop: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    path = census_shop(shop)
    assert run_doit(["census"], shop.config_path) == 0 and read_census_provenance(path)["seed"] == 42
    theirs = shop.root / "elsewhere" / "census.parquet"
    generate_census(theirs, EMPLOYEES, seed=101)
    os.replace(theirs, path)
    before = path.read_bytes()

    assert run_setup(shop.config_path).success
    assert run_doit(["census"], shop.config_path) == 0
    assert path.read_bytes() == before  # neither setup nor `doit census` wrote it
    assert USERS_FILE.search(census_line(shop))
    capsys.readouterr()
    run_doit(["info", "census"], shop.config_path)
    info = capsys.readouterr().out
    assert USERS_FILE.search(info) and "status     up to date" in info, info


def test_an_explicit_request_for_a_users_census_says_it_cannot_apply(shop: Workspace) -> None:
    """Once the census counts as the user's (setup's state folder deleted), `doit census employees=500`
    must not answer 'up to date': the file is never regenerated, and the run says so and fails."""
    path = census_shop(shop)
    assert run_doit(["census"], shop.config_path) == 0
    import shutil

    shutil.rmtree(shop.root / ".planwise")  # what setup wrote is forgotten: the file is now the user's
    before = path.read_bytes()
    proc = shop.doit("census", "employees=500", json_report=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in text, text
    assert "your own file" in text and "employees=500 cannot apply" in text and f"fix: delete {path}" in text, text
    assert path.read_bytes() == before
    assert shop.doit("census", json_report=False).returncode == 0  # without a request: used as it is
