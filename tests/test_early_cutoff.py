"""Issue 21, early cutoff: a node rebuilt to the content it had keeps what reads it.

A reader's fingerprint names an up-to-date upstream table by its content signature, so a seed
whose rows were only reordered, or a model whose SQL was only reformatted, is rebuilt alone: its
readers (and their tests and checks) stay as they are, and the run says how many it kept. A
rebuild to other content rebuilds the readers as before. That the database then equals dbt's own
build is proven by the differential cases of tests/test_equal_to_dbt.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from factories import Workspace

pytestmark = pytest.mark.slow

ORDERS_REORDERED = "id,customer_id,amount\n13,3,12.0\n12,1,3.0\n11,2,7.25\n10,1,20.5\n"
ORDERS_CHANGED = "id,customer_id,amount\n10,1,20.5\n11,2,7.25\n12,1,3.0\n13,3,99.0\n"


def report(ws: Workspace) -> dict[str, Any]:
    return json.loads((ws.root / "warehouse.setup_report.json").read_text())


def built(ws: Workspace) -> set[str]:
    return {n["unique_id"] for n in report(ws)["nodes"] if n["status"] == "built"}


def test_a_seed_reordered_is_reloaded_alone_and_its_readers_kept(built_shop: Workspace) -> None:
    ws = built_shop
    before = ws.tables()
    ws.seed("orders", ORDERS_REORDERED)
    run = ws.doit("setup", json_report=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert built(ws) == {"seed.shop.orders"}
    assert report(ws)["kept_unchanged"] == ["model.shop.stg_customer_orders", "model.shop.stg_orders"]
    assert "unchanged: 2 descendants kept" in run.stdout
    assert ws.tables() == before
    again = ws.doit("setup", json_report=False)
    assert again.returncode == 0 and not built(ws), again.stdout


def test_a_model_reformatted_is_rebuilt_alone(built_shop: Workspace) -> None:
    ws = built_shop
    ws.model(
        "stg_orders",
        "-- amounts in dollars\nselect id, customer_id,\n  amount * {{ var('fx_rate') }} as amount_usd\n"
        "from {{ ref('orders') }}",
    )
    run = ws.doit("setup", json_report=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert built(ws) == {"model.shop.stg_orders"}
    assert report(ws)["kept_unchanged"] == ["model.shop.stg_customer_orders"]
    assert "unchanged: 1 descendant kept" in run.stdout


def test_other_content_rebuilds_the_readers(built_shop: Workspace) -> None:
    ws = built_shop
    ws.seed("orders", ORDERS_CHANGED)
    run = ws.doit("setup", json_report=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert built(ws) == {"seed.shop.orders", "model.shop.stg_orders", "model.shop.stg_customer_orders"}
    assert "kept_unchanged" not in report(ws) and "unchanged:" not in run.stdout
    totals = {row[0]: row[3] for row in ws.tables()["stg_customer_orders"]}
    assert totals[3] == 198.0  # 99 at fx_rate 2
    status = ws.doit("status", json_report=False)
    assert status.returncode == 0 and " stale" not in status.stdout.replace("0 stale", ""), status.stdout


def test_status_names_readers_of_a_pending_rebuild_stale(built_shop: Workspace) -> None:
    """Before the run, a reader of a table about to be rebuilt is stale (it may change); the run decides."""
    ws = built_shop
    ws.seed("orders", ORDERS_REORDERED)
    status = ws.doit("status", json_report=False)
    assert "stg_orders" in status.stdout and "upstream changed" in status.stdout, status.stdout


def test_one_model_edited_after_a_cold_build_compiles_that_model_alone(built_shop: Workspace) -> None:
    """dbt reads some of its own environment variables only in a partial parse (DBT_PP_TEST): counted
    unset on one run and not on the next, they changed every compile key, and the first model edit
    after a cold build had dbt compile every model and test again (20 s at 1,000 models)."""
    ws = built_shop
    ws.model(
        "stg_orders",
        "select id, customer_id, amount * {{ var('fx_rate') }} as amount_usd from {{ ref('orders') }} where amount > 0",
    )
    run = ws.doit("setup", json_report=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert report(ws)["compiled"] == 1, report(ws)["compiled"]
