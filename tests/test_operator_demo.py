"""The operator's experience (issue 13) on the demo project (dbt/) and in a fresh clone.

The demo is copied and built once per module (3,000 employees, hire-after-termination defects made
common enough to see). Tests that change its census put the built one back afterwards. (Census
overrides, `doit status`'s census line and the refusal to overwrite a user's census: issue 12.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pytest

from factories import REPO, DoitRun, Workspace, clean_env
from operator_support import report, text_of, write_config_data

pytestmark = pytest.mark.slow

HIRE_AFTER_TERMINATION = re.compile(r"hire_after_termination|hired_before_terminated")


@dataclass
class Demo:
    ws: Workspace
    cold: DoitRun
    report: dict[str, Any]

    @property
    def census(self) -> Path:
        return self.ws.root / "census.parquet"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(REPO / "dbt", root / "proj", ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    ws = Workspace(root)
    write_config_data(
        ws,
        {
            "database": {"path": "warehouse.duckdb"},
            "dbt": {"project_dir": "proj"},
            "census": {"path": "census.parquet", "employees": 3000, "hire_after_termination_rate": 0.01},
        },
    )
    cold = ws.doit("setup", json_report=False)
    assert cold.returncode == 0, text_of(cold)[-3000:]
    return Demo(ws, cold, report(ws))


# -- each defect counted once, in dbt's words --------------------------------------------------------


def test_the_demo_counts_the_hire_after_termination_defect_once(demo: Demo) -> None:
    failed = [
        name
        for name, check in demo.report["validation"]["checks"].items()
        if check.get("status") != "passed" and check.get("status") != "skipped" and HIRE_AFTER_TERMINATION.search(name)
    ]
    assert len(failed) == 1, f"the same rows reported by several checks: {failed}"


def test_the_demo_words_warnings_as_dbt_does(demo: Demo) -> None:
    text = text_of(demo.cold)
    assert "failed (warning)" not in text, [l for l in text.splitlines() if "failed (warning)" in l][:5]
    assert re.search(r"\bwarn\b", text, re.I), text[-2000:]


# -- the census contract, checked before dbt runs ------------------------------------------------------


@contextmanager
def census_replaced(demo: Demo, select: str) -> Iterator[None]:
    """The census rewritten by ``select`` (over ``census`` = the built one), as a user's own file."""
    saved = demo.ws.root / "census.built.parquet"
    shutil.copy2(demo.census, saved)
    try:
        con = duckdb.connect()
        con.execute(f"CREATE VIEW census AS SELECT * FROM read_parquet('{saved}')")
        con.execute(f"COPY ({select}) TO '{demo.census}' (FORMAT parquet)")
        con.close()
        yield
    finally:
        shutil.copy2(saved, demo.census)
        saved.unlink()


CENSUS_DEFECTS = {
    "missing roth_contribution": ("SELECT * EXCLUDE (roth_contribution) FROM census", "roth_contribution", None),
    # pay as an HR export writes it: text with thousands separators ("85,000.50")
    "text pay": (
        "SELECT * REPLACE (format('{:,.2f}', employee_gross_compensation) AS employee_gross_compensation) FROM census",
        "employee_gross_compensation",
        r"numeric|number|double|decimal|float",
    ),
    "dd/mm/yyyy dates": (
        "SELECT * REPLACE (strftime(employee_hire_date, '%d/%m/%Y') AS employee_hire_date) FROM census",
        "employee_hire_date",
        r"\bdate\b",
    ),
}


@pytest.mark.parametrize("defect", CENSUS_DEFECTS)
def test_a_census_that_breaks_the_contract_is_named_before_dbt_runs(demo: Demo, defect: str) -> None:
    select, column, type_words = CENSUS_DEFECTS[defect]
    with census_replaced(demo, select):
        run = demo.ws.doit("setup", json_report=False)
        rep = report(demo.ws)
    text = text_of(run)
    assert run.returncode == 1, text[-2000:]
    failure = next((l for l in text.splitlines() if column in l and "census" in l), "")
    assert failure, f"no line names the census and its column {column}:\n{text[-3000:]}"
    assert "census.parquet" in failure, failure
    if type_words:
        assert re.search(type_words, failure, re.I), f"the type {column} needs is not named: {failure}"
    assert "stg_census_data.sql" not in text, f"the census blamed on the model:\n{text[-2000:]}"
    assert rep.get("dbt_invocations") == 0, (
        f"dbt ran before the census contract was checked: {rep.get('dbt_invocations')}"
    )


# -- running dbt by hand ----------------------------------------------------------------------------


def test_running_dbt_by_hand_from_the_repository_root_writes_no_database_outside_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "dbt", repo / "dbt", ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    run = subprocess.run(
        ["dbt", "debug", "--project-dir", "dbt", "--profiles-dir", "dbt"],
        cwd=repo,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    outside = [p for p in tmp_path.rglob("*.duckdb") if repo not in p.parents]
    assert not outside, f"`dbt debug` from the repository root created {outside}\n{run.stdout[-1500:]}"


# -- the Python API in a fresh clone --------------------------------------------------------------------


def fresh_clone(tmp_path: Path) -> Path:
    """What a clone has at its root: no setup.yaml (git-ignored), the demo project."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "dbt", clone / "dbt", ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    shutil.copy2(REPO / "setup.example.yaml", clone / "setup.example.yaml")
    return clone


def test_run_setup_with_a_missing_config_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from setup_tasks.api import run_setup

    monkeypatch.chdir(fresh_clone(tmp_path))
    result = run_setup("missing.yaml")
    assert not result.success and result.exit_code == 3
    assert "missing.yaml" in result.error and "does not exist" in result.error, result.error


def test_the_readme_api_example_works_in_a_fresh_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from setup_tasks.api import get_system_status

    readme = (REPO / "docs" / "python-api.md").read_text()  # the README links it
    section = readme.split("## Python API", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    call = re.search(r"get_system_status\([^)]*\)", section)
    assert call and re.search(r"print\(.*result\.error", section), section
    monkeypatch.chdir(fresh_clone(tmp_path))
    status = eval(call.group(0), {"get_system_status": get_system_status})  # noqa: S307 - the README's own line
    assert not re.search(r"config file .* does not exist", status.reason), (
        f"the README's `{call.group(0)}` in a fresh clone: {status.reason}"
    )
    assert status.ready, status.reason
