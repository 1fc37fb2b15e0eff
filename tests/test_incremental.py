"""End to end through doit, as users run it: only what is stale is rebuilt."""

from __future__ import annotations

import pytest
import yaml

from factories import SHOP_TASKS, Workspace

pytestmark = pytest.mark.slow

ALL = SHOP_TASKS


@pytest.fixture
def built(built_shop: Workspace) -> Workspace:
    return built_shop


def report(ws: Workspace) -> dict:
    import json

    return json.loads((ws.root / "warehouse.setup_report.json").read_text())


def test_a_cold_build_is_one_dbt_invocation(built: Workspace) -> None:
    cold = report(built)  # the report of the cold build the shared workspace was made by
    assert {n["task"] for n in cold["nodes"] if n["status"] == "built"} == ALL
    assert cold["dbt_invocations"] == 1  # all 8 stale nodes at once (shop has no dbt tests)
    built.seed("orders", "id,customer_id,amount\n10,1,1.0\n")
    built.seed("regions", "region,tax_rate\nnorth,0.5\n")
    assert built.doit("setup").ran() == {
        "seed:orders",
        "model:stg_orders",
        "model:stg_customer_orders",
        "seed:regions",
        "model:stg_regions",
    }
    # one batch: built by setup itself (the cold build's dbt run kept the models' SQL), no dbt run
    assert (report(built)["dbt_invocations"], report(built)["direct_builds"]) == (0, 5)


def test_second_setup_runs_nothing(built: Workspace) -> None:
    again = built.doit("setup")
    assert again.returncode == 0
    assert again.ran() == set()
    assert {n for n, r in again.results.items() if r == "up-to-date"} >= ALL


@pytest.mark.parametrize("dbt_runs", ["in the warm worker", "in the doit process"])
def test_editing_a_seed_rebuilds_it_and_its_dependents(built: Workspace, dbt_runs: str) -> None:
    built.seed("customers", "id,name,region\n1,Ada,north\n2,Brian,south\n")
    run = built.doit("setup", env={"PLANWISE_SETUP_WORKER": "1" if dbt_runs == "in the warm worker" else "0"})
    assert run.ran() == {"seed:customers", "model:stg_customers", "model:stg_customer_orders"}
    assert len(built.tables()["stg_customer_orders"]) == 2


def column_types(ws: Workspace, table: str) -> dict[str, str]:
    import duckdb

    with duckdb.connect(str(ws.db_path), read_only=True) as con:
        return dict(
            con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_name = ? order by ordinal_position",
                [table],
            ).fetchall()
        )


def test_a_seed_that_gains_a_column_or_changes_type_is_rebuilt_as_a_clean_build_would(built: Workspace) -> None:
    # dbt refills an existing seed table unless told to rebuild it: a new column used to fail.
    built.seed("regions", "region,tax_rate,label\nnorth,0.2,N\nsouth,0.1,S\n")
    assert built.doit("setup").ran() == {"seed:regions", "model:stg_regions"}
    assert built.tables()["regions"] == [("north", 0.2, "N"), ("south", 0.1, "S")]

    project = yaml.safe_load((built.project / "dbt_project.yml").read_text())
    project["seeds"] = {"shop": {"regions": {"+column_types": {"tax_rate": "decimal(6,3)"}}}}
    (built.project / "dbt_project.yml").write_text(yaml.safe_dump(project))
    run = built.doit("setup")
    assert run.returncode == 0 and "seed:regions" in run.ran()
    assert column_types(built, "regions")["tax_rate"] == "DECIMAL(6,3)"


def test_editing_sql_rebuilds_model_and_downstream(built: Workspace) -> None:
    built.model("stg_orders", "select id, customer_id, amount * 3 as amount_usd from {{ ref('orders') }}")
    run = built.doit("setup")
    assert run.ran() == {"model:stg_orders", "model:stg_customer_orders"}


def test_changing_a_var_rebuilds_only_its_readers(built: Workspace) -> None:
    built.set_vars(fx_rate=5)
    run = built.doit("setup")
    assert run.ran() == {"model:stg_orders", "model:stg_customer_orders"}
    totals = dict((r[0], r[3]) for r in built.tables()["stg_customer_orders"])
    assert totals[1] == pytest.approx((20.5 + 3.0) * 5)


def test_changing_an_environment_variable_a_model_reads_rebuilds_it(built: Workspace) -> None:
    built.model(
        "stg_regions",
        "select region, tax_rate * {{ env_var('SHOP_PERCENT', '100') }} as tax_percent from {{ ref('regions') }}",
    )
    assert built.doit("setup", env={"SHOP_PERCENT": "100"}).ran() == {"model:stg_regions"}
    assert built.doit("setup", env={"SHOP_PERCENT": "100"}).ran() == set()
    info = built.doit("info", "model:stg_regions", json_report=False, env={"SHOP_PERCENT": "1000"})
    assert "environment variable changed: SHOP_PERCENT" in info.stdout
    assert built.doit("setup", env={"SHOP_PERCENT": "1000"}).ran() == {"model:stg_regions"}
    assert built.tables()["stg_regions"] == [("north", 200.0), ("south", 100.0)]


def test_changing_an_external_input_file_rebuilds_its_readers(built: Workspace) -> None:
    (built.root / "events.csv").write_text("kind,at\nclick,2024-01-01\n")
    run = built.doit("setup")
    assert run.ran() == {"model:stg_events"}
    assert built.tables()["stg_events"] == [("click", 1)]


def test_dropped_table_is_rebuilt_alone(built: Workspace) -> None:
    built.execute("drop table stg_regions")
    run = built.doit("setup")
    assert run.ran() == {"model:stg_regions"}


def test_table_edited_outside_setup_is_rebuilt(built: Workspace) -> None:
    built.execute("update regions set tax_rate = 0.9")
    info = built.doit("info", "seed:regions")
    assert "changed outside setup" in info.stdout
    run = built.doit("setup")
    assert run.ran() == {"seed:regions"}
    assert sorted(r[1] for r in built.tables()["regions"]) == [0.1, 0.2]


def test_forget_forces_exactly_that_task(built: Workspace) -> None:
    assert built.doit("forget", "model:stg_regions").returncode == 0
    info = built.doit("info", "model:stg_regions")
    assert "forced (doit forget)" in info.stdout
    run = built.doit("setup")
    assert run.ran() == {"model:stg_regions"}


def test_adding_and_removing_files_updates_tasks(built: Workspace) -> None:
    built.seed("products", "sku,price\na,1.5\nb,2.5\n")
    built.model("stg_products", "select sku, price * 2 as price2 from {{ ref('products') }}")
    listed = built.doit("list")
    assert "seed:products" in listed.stdout and "model:stg_products" in listed.stdout
    run = built.doit("setup")
    assert run.ran() == {"seed:products", "model:stg_products"}
    built.remove("models/staging/stg_products.sql")
    built.remove("seeds/products.csv")
    listed = built.doit("list")
    assert "products" not in listed.stdout
    status = built.doit("status", json_report=False)
    assert "leftover   main.stg_products (from removed model stg_products): the next setup drops it" in status.stdout
    assert built.doit("setup").ran() == set()
    # A clean build would not have them: setup drops the tables of nodes that left the project.
    assert not {"products", "stg_products"} & set(built.tables())
    assert report(built)["dropped_leftovers"] == ["main.products", "main.stg_products"]


def test_a_model_built_under_a_new_name_drops_the_old_table(built: Workspace) -> None:
    built.model("stg_regions", "{{ config(alias='regions_clean') }} select region, tax_rate from {{ ref('regions') }}")
    status = built.doit("status", json_report=False)
    assert "leftover   main.stg_regions (model stg_regions now builds main.regions_clean)" in status.stdout
    # `doit seeds` does not rebuild the model, so it keeps the old table for now.
    assert built.doit("seeds").returncode == 0 and "stg_regions" in built.tables()
    assert built.doit("setup").ran() == {"model:stg_regions"}
    assert "stg_regions" not in built.tables() and built.tables()["regions_clean"] == [("north", 0.2), ("south", 0.1)]
    assert report(built)["dropped_leftovers"] == ["main.stg_regions"]


def test_a_table_another_node_now_builds_is_not_dropped_as_a_leftover(built: Workspace) -> None:
    built.remove("models/staging/stg_regions.sql")
    built.model("stg_regions_v2", "{{ config(alias='stg_regions') }} select region, tax_rate from {{ ref('regions') }}")
    run = built.doit("setup")
    assert run.ran() == {"model:stg_regions_v2"}
    assert built.tables()["stg_regions"] == [("north", 0.2), ("south", 0.1)]
    assert "dropped_leftovers" not in report(built)


def test_quick_builds_only_the_foundation(shop: Workspace) -> None:
    run = shop.doit("quick")
    assert run.returncode == 0, run.stderr
    assert run.ran() == {
        "seed:customers",
        "seed:orders",
        "model:stg_customers",
        "model:stg_orders",
        "model:stg_customer_orders",
    }


def test_nothing_to_do_imports_neither_dbt_nor_networkx_nor_duckdb(built: Workspace) -> None:
    import subprocess
    import sys

    from factories import REPO, clean_env

    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "doit", "setup", f"config={built.config_path}"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m == "dbt" or m.startswith("dbt.")}
    assert "networkx" not in imported and "jsonschema" not in imported
    assert "duckdb" not in imported  # the database file is as the last run left it: its saved snapshot holds


def test_a_cold_rebuild_says_why_the_checks_it_did_not_run_still_hold(built: Workspace) -> None:
    """The database deleted: every table is built again, with the content it had when the checks ran (their
    parts hold each table's content signature), so they are not run again -- and the run says so."""
    built.db_path.unlink()
    run = built.doit("setup", json_report=False)
    assert run.returncode == 0, run.stdout + run.stderr
    said = next((line for line in run.stdout.splitlines() if "not run again" in line), "")
    assert (
        said.strip().endswith(
            "the tables they read were rebuilt with the content they had when checked at " + said.rsplit(" ", 1)[-1]
        )
        and said.strip()[0].isdigit()
    ), run.stdout
    checks = report(built)["validation"]["checks"]
    assert checks and all(c["up_to_date"] for c in checks.values()), checks
    built.seed("regions", "region,tax_rate\nnorth,0.3\nsouth,0.1\n")  # content that changed is checked again
    again = built.doit("setup", json_report=False)
    assert "not run again" not in again.stdout, again.stdout
