"""`doit status` and get_system_status: the readiness rule, the facts shown, never building."""

from __future__ import annotations

import subprocess
import sys
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import duckdb
import pytest

from factories import REPO, FakeEngine, Workspace, clean_env
from setup_tasks.engine.staleness import NodeStatus
from setup_tasks.errors import ProjectError
from setup_tasks.naming import Translator
from setup_tasks.ops.status import (
    CensusState,
    DatabaseState,
    NodeState,
    SystemStatus,
    census_state,
    collect_status,
    node_statuses,
    readiness,
    render,
)

REACHABLE = DatabaseState("w.duckdb", "reachable", "", 3)
CENSUS_OK = CensusState("c.parquet", True, False, 10)
CENSUS_MISSING = CensusState("c.parquet", True, False, problem="missing")


def status(**facts: object) -> SystemStatus:
    return SystemStatus(ready=False, **{"database": REACHABLE, "census": CENSUS_OK, **facts})


# -- the rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "facts, why",
    [
        ({}, ""),
        ({"database": DatabaseState("w.duckdb", "absent", "does not exist yet")}, ""),
        ({"nodes": ()}, ""),
        ({"project_problem": "cycle a --> b --> a"}, "dbt project unusable: cycle a --> b --> a"),
        (
            {"database": DatabaseState("w.duckdb", "locked", "locked by python (PID 7)")},
            "database w.duckdb: locked by python (PID 7)",
        ),
        (
            {"database": DatabaseState("w.duckdb", "in-use", "a setup run is in progress (PID 8)")},
            "in progress (PID 8)",
        ),
        ({"database": DatabaseState("w.duckdb", "unreadable", "not a DuckDB file")}, "not a DuckDB file"),
        ({"census": CENSUS_MISSING}, "census c.parquet: missing (and census.generate is false)"),
        (
            {"census": CensusState("c.parquet", True, False, 10, ("active",), "lacks required columns: active")},
            "lacks required columns",
        ),
        ({"census": CensusState("c.parquet", True, True, problem="missing")}, ""),  # setup generates it
        ({"census": CensusState("c.parquet", False, False, problem="missing")}, ""),  # the project does not read it
    ],
)
def test_readiness_rule(facts: dict[str, object], why: str) -> None:
    reason = readiness(status(**facts))
    assert (reason == "") if not why else (why in reason)


def test_stale_nodes_do_not_make_it_unready() -> None:
    facts = status(nodes=(NodeState("seed:a", "seed.p.a", True, "never built"),))
    assert readiness(facts) == "" and facts.stale == ["seed:a"]


# -- the facts ----------------------------------------------------------------------------


def test_collect_reports_nodes(tmp_path: Path) -> None:
    stale = {"model.shop.stg_orders": NodeStatus("model.shop.stg_orders", True, ("forced (doit forget)",))}
    engine = FakeEngine(tmp_path, stale)
    result = collect_status(engine.settings, lambda: engine, Translator())
    assert result.ready, result.reason
    assert result.database is not None and result.database.state == "absent"
    assert result.seeds == ("customers", "orders")
    assert result.models == ("stg_customers", "stg_orders", "stg_customer_orders", "stg_events")
    assert result.stale == ["model:stg_orders"]
    assert {n.task: n.reason for n in result.nodes}["model:stg_orders"] == "forced (doit forget)"
    assert result.census is None  # shop reads events, not the census: no census line (issue 25)
    assert not any(line.startswith("census") for line in result.lines())
    assert set(result.versions) == {"dbt-core", "dbt-duckdb", "duckdb"}


def test_what_would_stop_setups_first_build_makes_it_unready(tmp_path: Path) -> None:
    """Issue 25: `doit status` said "ready to set up" and the census generator stopped the run (0 of 28 built):
    status runs setup's own pre-flight (``Engine.preflight``) and shows each problem."""
    engine = FakeEngine(tmp_path)
    engine.problems = [
        "census c.parquet cannot be generated: job levels seeds/config_job_levels.csv lack a usable "
        "column ('target_distribution') -- fix: give ...",
        "seed orders: malformed CSV -- fix: ...",
    ]
    result = collect_status(engine.settings, lambda: engine, Translator())
    assert not result.ready
    assert (
        result.reason.startswith("setup would fail: census c.parquet cannot be generated") and "1 more" in result.reason
    )
    text = "\n".join(result.lines())
    assert all(f"problem    {p}" in text for p in engine.problems), text


def test_observing_leaves_the_run_report_alone(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path)
    engine.run.checked["seed.shop.orders"] = NodeStatus("seed.shop.orders", True, ("never built",))
    before = dict(engine.run.checked)
    assert len(node_statuses(engine)) == len(engine.setup_nodes)
    assert engine.run.checked == before


def test_unusable_project_is_not_ready(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path)

    def broken() -> FakeEngine:
        raise ProjectError("dbt cannot parse the project: bad yaml", "fix models/schema.yml")

    result = collect_status(engine.settings, broken, Translator())
    assert not result.ready
    assert result.reason.startswith("dbt project unusable: dbt cannot parse the project")
    assert result.nodes == () and result.census is not None


@contextmanager
def another_process(code: str) -> Iterator[int]:
    """Run ``code`` in another Python process until the block ends; yields its PID once it printed 'ok'."""
    proc = subprocess.Popen(
        [sys.executable, "-c", f"{code}; print('ok', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def holding_duckdb(path: Path) -> AbstractContextManager[int]:
    return another_process(f"import duckdb; con = duckdb.connect({str(path)!r})")


def test_locked_database_is_not_ready_and_names_the_holder(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path)
    duckdb.connect(str(engine.db_path)).close()
    with holding_duckdb(engine.db_path) as pid:
        result = collect_status(engine.settings, lambda: engine, Translator())
    assert not result.ready
    assert result.database is not None and result.database.state == "locked"
    assert f"PID {pid}" in result.reason
    assert result.nodes == ()
    assert "not checked: the database cannot be read" in "\n".join(result.lines())


def test_run_in_progress_is_not_ready(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path)
    code = (
        "from pathlib import Path; from setup_tasks.store.lock import RunLock; "
        f"lock = RunLock(Path({str(engine.lock.path)!r}), Path('w')); lock.acquire()"
    )
    with another_process(code) as pid:
        result = collect_status(engine.settings, lambda: engine, Translator())
    assert not result.ready
    assert result.reason.endswith(f"a setup run is in progress (PID {pid})")


def test_census_facts(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path)
    path = engine.settings.census.path
    assert census_state(engine.settings, True).problem == "missing"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 1 AS employee_id, 'x' AS employee_ssn) TO '{path}' (FORMAT parquet)")
    con.close()
    census = census_state(engine.settings, True)
    assert census.rows == 1
    assert "active" in census.missing_columns and "employee_id" not in census.missing_columns
    assert census.problem.startswith("lacks required columns:") and census.blocks_setup


def test_render_shows_every_fact() -> None:
    facts = status(
        seeds=("a",),
        models=("stg_a",),
        last_run={"run_id": "r1", "seconds": 1.5, "exit_code": 0, "counts": {"built": 2}},
        regressions=(("model:stg_a", 3.0, 1.0),),
        census=CENSUS_MISSING,
    )
    lines = "\n".join(render(replace(facts, reason=readiness(facts))))
    assert "NOT READY: census c.parquet: missing" in lines
    assert "seeds      1: a" in lines and "models     1: stg_a" in lines
    assert "last run   r1" in lines and "2 built" in lines
    assert "slower     model:stg_a: 3.00 s, median of earlier runs 1.00 s" in lines


def test_versions_come_without_importing_dbt() -> None:
    code = (
        "import sys; from setup_tasks.ops.status import package_versions; "
        "v = package_versions(); assert 'dbt' not in sys.modules, 'dbt imported'; print(v['dbt-core'])"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=clean_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()[0].isdigit()


# -- end to end ---------------------------------------------------------------------------


@pytest.mark.slow
def test_doit_status_end_to_end(shop: Workspace) -> None:
    fresh = shop.doit("status", json_report=False)
    assert fresh.returncode == 0, fresh.stderr
    assert "ready to set up" in fresh.stdout and "never built" in fresh.stdout
    assert "does not exist yet" in fresh.stdout
    assert not shop.db_path.exists()  # status never builds
    assert not (shop.root / ".planwise").exists()  # nor leaves anything beside a database not built

    assert shop.doit("setup").returncode == 0
    shop.seed("orders", "id,customer_id,amount\n10,1,1.0\n")  # seeds do not cost a re-parse; vars would
    assert shop.doit("forget", "model:stg_regions").returncode == 0
    run = shop.doit("status", json_report=False)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "dbt-core 1.11" in out and "dbt-duckdb 1.11" in out
    assert "seeds      3: customers, orders, regions" in out
    assert "4 stale, 4 up to date" in out
    assert "file changed: seeds/orders.csv" in out
    assert "upstream changed: seed orders" in out
    assert "forced (doit forget)" in out

    from setup_tasks.api import get_system_status

    api = get_system_status(shop.config_path)
    assert api.ready
    assert sorted(api.stale) == ["model:stg_customer_orders", "model:stg_orders", "model:stg_regions", "seed:orders"]
    assert {n.task: n.reason for n in api.nodes}["model:stg_regions"] == "forced (doit forget)"

    with holding_duckdb(shop.db_path) as pid:
        locked = shop.doit("status", json_report=False)
    assert locked.returncode == 1, locked.stderr
    assert "locked by python" in locked.stdout and f"PID {pid}" in locked.stdout
    assert "not ready to set up" in locked.stdout + locked.stderr


@pytest.mark.slow
def test_status_runs_setups_preflight_on_the_nodes_it_would_build(shop: Workspace) -> None:
    """Issue 25: "ready to set up" means the first run can build; a malformed seed would stop it."""
    shop.seed("orders", "id,customer_id,amount\n10,1,20.5\n11,2\n")
    run = shop.doit("status", json_report=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "NOT READY: setup would fail: seed orders: malformed CSV" in run.stdout and "line 3" in run.stdout, (
        run.stdout
    )
    assert "problem    seed orders: malformed CSV" in run.stdout
    assert not shop.db_path.exists()  # still never builds


def test_after_a_failed_run_status_names_the_failed_node_and_repeats_the_runs_own_tally(built_shop: Workspace) -> None:
    built_shop.model("stg_orders", "select nope from {{ ref('orders') }}")
    run = built_shop.doit("setup", json_report=False)
    summary = next(line for line in run.stdout.splitlines() if line.startswith("summary: "))
    tally = summary.removeprefix("summary: ").rsplit(" in ", 1)[0]
    assert run.returncode == 1 and "1 failed" in tally, run.stdout
    shown = built_shop.doit("status", json_report=False)
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("status     ready to set up (the last run failed: model:stg_orders"), lines[0]
    last = next(line for line in lines if line.startswith("last run"))
    assert last.endswith(f"exit 1: {tally}"), (last, tally)
    failed = [line for line in lines if line.startswith("failed ")]
    assert (
        len(failed) == 1 and "model:stg_orders: model stg_orders (models/staging/stg_orders.sql) failed:" in failed[0]
    )
    assert "fix:" in failed[0], failed
