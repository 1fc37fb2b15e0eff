"""Bad input and interruptions: one line with cause and fix, non-zero exit, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from factories import REPO, Workspace, clean_env

pytestmark = pytest.mark.slow


@pytest.fixture
def built(built_shop: Workspace) -> Workspace:
    return built_shop


def last_report(ws: Workspace) -> dict:
    import json

    return json.loads((ws.root / "warehouse.setup_report.json").read_text())


def assert_clean_failure(run, *needles: str) -> None:
    text = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, text


def test_ragged_csv_row_names_file_and_line_and_keeps_every_table(built: Workspace) -> None:
    before = built.tables()
    built.seed("orders", "id,customer_id,amount\n10,1,20.5\n11,2\n12,1,3.0\n")
    run = built.doit("setup", json_report=False)
    assert_clean_failure(run, "seeds/orders.csv line 3", "2 fields, expected 3", "fix:")
    assert built.tables() == before


def test_sql_error_names_model_and_file_and_keeps_previous_table(built: Workspace) -> None:
    before = built.tables()
    built.model("stg_regions", "select region, tax_rate frm {{ ref('regions') }}")
    run = built.doit("--continue", "setup", json_report=False)
    assert_clean_failure(run, "model stg_regions (models/staging/stg_regions.sql) failed", "Parser Error")
    assert built.tables() == before
    assert last_report(built)["exit_code"] == 1


def test_failed_node_skips_descendants_but_builds_unrelated_under_continue(built: Workspace) -> None:
    built.model("stg_orders", "select nope from {{ ref('orders') }}")
    built.seed("regions", "region,tax_rate\nnorth,0.3\nsouth,0.1\n")
    run = built.doit("--continue", "setup")
    assert run.returncode != 0
    assert run.results["model:stg_orders"] == "fail"
    assert last_report(built)["exit_code"] == 1  # with doit's json reporter too
    assert "model:stg_customer_orders" not in run.ran()
    assert run.ran() == {"seed:regions", "model:stg_regions"}
    # the fix builds exactly what is still stale
    built.model("stg_orders", "select id, customer_id, amount as amount_usd from {{ ref('orders') }}")
    assert built.doit("setup").ran() == {"model:stg_orders", "model:stg_customer_orders"}
    assert last_report(built)["exit_code"] == 0


@contextmanager
def _holding(db_path: Path, read_only: bool = False) -> Iterator[int]:
    """Another program with the database open (read-only or not) while the block runs; yields its PID."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, time; "
            f"c = duckdb.connect({str(db_path)!r}, read_only={read_only}); print('ok', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_reader_holding_the_database_stops_a_build_without_dbt(built: Workspace) -> None:
    """Another program holds the file read-only: setup reads it, but its own build session cannot write it.
    The run's one failure names the holder, and dbt is not started for what it could not build either."""
    with _holding(built.db_path, read_only=True) as pid:
        built.seed("regions", "region,tax_rate\nnorth,0.3\n")
        run = built.doit("setup", json_report=False)
        assert_clean_failure(run, "is locked by", f"PID {pid}", "close that connection")
        assert run.returncode == 1
        assert last_report(built)["dbt_invocations"] == 0
    assert built.doit("setup").ran() >= {"seed:regions"}


def test_database_locked_by_another_process_names_the_holder(built: Workspace) -> None:
    with _holding(built.db_path) as pid:
        built.seed("regions", "region,tax_rate\nnorth,0.3\n")
        run = built.doit("setup", json_report=False)
        assert_clean_failure(run, f"is locked by", f"PID {pid}", "close that connection")
        assert run.returncode == 1
        built.remove("models/staging/stg_events.sql")  # its table is now a leftover to drop: same answer
        run = built.doit("setup", json_report=False)
        assert_clean_failure(run, f"is locked by", f"PID {pid}", "close that connection")
        assert run.returncode == 1
    assert built.doit("setup").returncode == 0
    assert "stg_events" not in built.tables()


def test_invalid_config_is_one_line_without_traceback(shop: Workspace) -> None:
    shop.config_path.write_text("database:\n  thraeds: 2\ncensus:\n  employees: -5\n")
    run = shop.doit("setup", json_report=False)
    assert_clean_failure(run, "database.thraeds", "did you mean 'threads'", "census.employees")
    # A check name is known only once the checks are loaded: same kind of answer.
    shop.write_config(validation={"disabled_checks": ["baseline_workfrce"]})
    run = shop.doit("setup", json_report=False)
    assert_clean_failure(
        run,
        "validation.disabled_checks[0]: 'baseline_workfrce' is no check or area",
        "did you mean 'baseline_workforce'",
    )


def test_unwritable_database_location_is_reported(shop: Workspace) -> None:
    (shop.root / "blocker").write_text("a file where a directory should be")
    shop.write_config(database={"path": "blocker/warehouse.duckdb"})
    run = shop.doit("setup", json_report=False)
    assert_clean_failure(run, "blocker", "fix:")


def _start_slow_setup(ws: Workspace) -> subprocess.Popen:
    # About ten seconds of real work on 2 cores: long enough to interrupt or race.
    ws.model(
        "stg_slow",
        "select sum(a.range * b.range) as s from range(30000) a, range(30000) b, "
        "{{ ref('stg_customers') }} c where c.id = 1",
    )
    cmd = [sys.executable, "-m", "doit", "setup", f"config={ws.config_path}"]
    return subprocess.Popen(cmd, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate(path):
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting on {path}")


def _records(ws: Workspace) -> set[str]:
    from setup_tasks.store.records import BuildRecords

    return set(
        BuildRecords.load(ws.root / ".planwise" / ws.db_path.name / "projects" / "shop" / "records.json").records
    )


def test_ctrl_c_exits_130_and_keeps_completed_work(shop: Workspace) -> None:
    proc = _start_slow_setup(shop)
    _wait_for(shop, lambda ws: "model.shop.stg_customer_orders" in _records(ws))
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert "interrupted" in out + err
    kept = _records(shop)
    assert "model.shop.stg_slow" not in kept and len(kept) == 8
    shop.model("stg_slow", "select 1 as n")
    again = shop.doit("setup")
    assert again.ran() == {"model:stg_slow"}


def test_second_setup_while_one_runs_is_refused(shop: Workspace) -> None:
    proc = _start_slow_setup(shop)
    try:
        _wait_for(shop, lambda ws: "model.shop.stg_customer_orders" in _records(ws))
        run = shop.doit("setup", json_report=False)
        assert_clean_failure(run, "another setup run", f"PID {proc.pid}")
        assert run.returncode == 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert "model.shop.stg_customers" in _records(shop)


def _census_shop(ws: Workspace, census_text_sql: str | None) -> None:
    """Make stg_events read the configured census file (a parquet), generation off."""
    census = ws.root / "census.parquet"
    ws.write_config(
        census={"path": "census.parquet", "generate": False}, dbt={"vars": {"fx_rate": 2, "events_path": str(census)}}
    )
    if census_text_sql:
        import duckdb

        duckdb.connect().execute(f"COPY ({census_text_sql}) TO '{census}' (FORMAT parquet)")


def test_missing_census_says_how_to_generate_one(shop: Workspace) -> None:
    _census_shop(shop, None)
    run = shop.doit("--continue", "setup", json_report=False)
    assert_clean_failure(run, "model stg_events: census file", "does not exist", "doit census")
    assert "stg_customers" in shop.tables()  # everything else was built


def test_census_without_required_columns_lists_them(shop: Workspace) -> None:
    _census_shop(shop, "select 'click' as kind, date '2024-01-01' as at")
    run = shop.doit("setup", json_report=False)
    # The census contract (docs/census.md), checked before dbt reads the file: every missing column named.
    assert_clean_failure(
        run,
        "census.parquet: lacks employee_id, employee_ssn, employee_birth_date",
        "roth_contribution",
        "docs/census.md lists the 15 columns and their types",
    )
    assert run.returncode == 1


def test_an_unparsable_project_fails_every_command_with_the_file_and_status_says_not_ready(shop: Workspace) -> None:
    (shop.project / "models" / "staging" / "broken.yml").write_text("models: [\n")
    run = shop.doit("setup", json_report=False)
    assert_clean_failure(run, "dbt could not parse the project", "staging/broken.yml", "line 2", "fix:")
    assert run.returncode == 1
    status = shop.doit("status", json_report=False)
    assert_clean_failure(status, "NOT READY", "staging/broken.yml")
    assert status.returncode == 1
    listed = shop.doit("list", json_report=False)
    assert listed.returncode == 0
    assert {"setup", "quick", "status", "clear"} <= set(listed.stdout.split())
    assert "nodes" not in listed.stdout.split()  # no empty group where the node tasks would be


def test_a_seed_value_dbt_cannot_load_fails_its_task_and_keeps_the_old_table(built: Workspace) -> None:
    # Caught by dbt (not by the CSV preflight): the rebuild's drop is rolled back with the failed load.
    before = built.tables()
    project = yaml.safe_load((built.project / "dbt_project.yml").read_text())
    project["seeds"] = {"shop": {"regions": {"+column_types": {"tax_rate": "double"}}}}
    (built.project / "dbt_project.yml").write_text(yaml.safe_dump(project))
    built.seed("regions", "region,tax_rate\nnorth,abc\nsouth,0.1\n")
    run = built.doit("setup", json_report=False)
    assert_clean_failure(run, "seed regions (seeds/regions.csv) failed", "fix:")
    assert built.tables() == before


INTERRUPTED_CHECK = """
import sys
import setup_tasks.cli.uptodate as uptodate

checked = uptodate.TableUpToDate.__call__
calls = []

def ctrl_c_on_the_third(self, task, values):  # Ctrl-C while doit asks whether a task is up to date
    calls.append(task.name)
    if len(calls) == 3:
        raise KeyboardInterrupt
    return checked(self, task, values)

uptodate.TableUpToDate.__call__ = ctrl_c_on_the_third
sys.argv = ["doit", *sys.argv[1:]]
from doit.__main__ import main
main()
"""


def test_ctrl_c_while_doit_checks_what_is_up_to_date_exits_130_without_a_tally(built_shop: Workspace) -> None:
    """Outside any action (doit's planning): no traceback, no summary of a run that did not happen, status 130."""
    ws = built_shop
    ws.seed("regions", "region,tax_rate\nnorth,0.3\nsouth,0.1\n")  # something stale too
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_CHECK, "setup", f"config={ws.config_path}"],
        cwd=REPO,
        env=clean_env({"PYTHONPATH": str(REPO)}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "summary:" not in proc.stdout
    assert "interrupted: 0 node(s) built in this run are kept" in proc.stderr
    assert ws.doit("setup").ran() == {"seed:regions", "model:stg_regions"}  # nothing lost, nothing half-done
