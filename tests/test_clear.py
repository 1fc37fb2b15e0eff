"""`doit clear` and clearing derived tables: what is dropped, in which order, and what is forgotten."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest

from factories import FakeEngine, Workspace
from setup_tasks.ops.clear import clear, clear_derived_tables
from setup_tasks.naming import Translator
from setup_tasks.store.database import Database, DbRelation, drop_order
from setup_tasks.engine.run_state import Outcome
from setup_tasks.errors import DatabaseError
from setup_tasks.store.records import BuildRecord

ALL_MODELS = {
    "model:stg_customers",
    "model:stg_orders",
    "model:stg_customer_orders",
    "model:stg_regions",
    "model:stg_events",
}


def rel(name: str, kind: str = "BASE TABLE", refs: tuple[str, ...] = ()) -> DbRelation:
    return DbRelation(("w", "main", name), kind, tuple(("w", "main", r) for r in refs))


def names(relations: list[DbRelation]) -> list[str]:
    return [r.name for r in relations]


# -- order ------------------------------------------------------------------------------


def test_views_first_then_referencing_tables_before_referenced() -> None:
    relations = [rel("a"), rel("b", refs=("a",)), rel("c", refs=("b",)), rel("v", "VIEW"), rel("z"), rel("keep")]
    order = names(drop_order(relations, lambda r: r.name != "keep"))
    assert order[0] == "v"
    assert order.index("c") < order.index("b") < order.index("a")
    assert "keep" not in order


def test_order_is_deterministic_and_survives_cycles() -> None:
    relations = [rel("b"), rel("a"), rel("x", refs=("y",)), rel("y", refs=("x",))]
    assert names(drop_order(relations, lambda r: True)) == ["a", "b", "x", "y"]
    assert names(drop_order(list(reversed(relations)), lambda r: True)) == ["a", "b", "x", "y"]


# -- dropping, on a real DuckDB file ------------------------------------------------------------


def make_database(path: Path, *statements: str) -> None:
    con = duckdb.connect(str(path))
    try:
        for sql in statements:
            con.execute(sql)
    finally:
        con.close()


def tables(path: Path) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    finally:
        con.close()


FK_TABLES = (
    "create table stg_parent (id int primary key)",
    "create table stg_child (id int, parent_id int references stg_parent(id))",
    'create table "stg_weird""name" (x int)',
    "create view int_view as select * from stg_parent",
    "create table customers (id int)",
)


def test_drop_retries_when_the_given_order_is_wrong(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    make_database(db, *FK_TABLES)
    result = Database(db).drop_relations(
        lambda rels: sorted((r for r in rels if r.name.startswith("stg")), key=lambda r: r.name != "stg_parent")
    )
    assert result.failed == {}
    assert tables(db) == {"customers", "int_view"}


def test_clear_drops_matching_tables_and_forgets_their_builds(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path)
    make_database(engine.db_path, *FK_TABLES, "create table stg_orders (id int)", "create table orders (id int)")
    for uid in ("model.shop.stg_orders", "seed.shop.orders"):
        engine.records.put(uid, BuildRecord("fp", {}, time.time(), 0.1, "b1"))
    forgotten_in_doit: list[str] = []
    dropped, forgotten = clear(engine, forgotten_in_doit.append, Translator())
    assert set(dropped) == {
        "main.stg_parent",
        "main.stg_child",
        'main.stg_weird"name',
        "main.int_view",
        "main.stg_orders",
    }
    assert tables(engine.db_path) == {"customers", "orders"}
    assert forgotten == forgotten_in_doit == ["model:stg_orders"]
    assert engine.records.get("model.shop.stg_orders") is None
    assert engine.records.get("seed.shop.orders") is not None


def test_a_drop_refused_by_a_foreign_key_names_the_table_and_the_fix(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path)
    make_database(
        engine.db_path,
        "create table stg_orders (id int primary key)",
        "create table audit (order_id int references stg_orders(id))",
        "create table fct_x (id int)",
    )
    engine.records.put("model.shop.stg_orders", BuildRecord("fp", {}, time.time(), 0.1, "b1"))
    with pytest.raises(DatabaseError) as err:
        clear(engine, lambda task: None, Translator())
    assert "cannot drop main.stg_orders" in err.value.cause and "foreign key" in err.value.fix
    assert tables(engine.db_path) == {"stg_orders", "audit"}  # fct_x was still dropped
    assert engine.records.get("model.shop.stg_orders") is not None  # its table is still there


def test_derived_tables_are_dropped_only_when_an_input_was_rebuilt(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path, clear_tables=True)
    make_database(
        engine.db_path,
        "create table stg_orders (id int)",
        "create table fct_x (id int)",
        "create table int_y (id int)",
        "create table stg_legacy (id int)",
        "create table orders (id int)",
    )
    assert clear_derived_tables(engine, lambda task: None, Translator()) == []  # nothing rebuilt in this run
    engine.run.outcomes["seed.shop.orders"] = Outcome("seed.shop.orders", "error", "boom")
    assert clear_derived_tables(engine, lambda task: None, Translator()) == []  # a failure rebuilt nothing either
    engine.run.outcomes["model.shop.stg_orders"] = Outcome("model.shop.stg_orders", "success")
    assert sorted(clear_derived_tables(engine, lambda task: None, Translator())) == [
        "main.fct_x",
        "main.int_y",
        "main.stg_legacy",
    ]
    assert tables(engine.db_path) == {"stg_orders", "orders"}  # setup's own tables stay


# -- end to end -------------------------------------------------------------------------------


@pytest.mark.slow
def test_clearing_end_to_end(built_shop: Workspace) -> None:
    shop = built_shop
    shop.write_config(setup={"clear_tables": True})
    assert shop.doit("setup").returncode == 0
    shop.execute("create table fct_sim as select 1 as x; create view int_v as select * from stg_orders")
    # Setup rebuilt nothing: derived tables are still current and kept.
    assert shop.doit("setup", "_clear_derived").ran() == set()
    assert {"fct_sim", "int_v"} <= set(shop.tables())
    # An input changed: what was derived from the old one is dropped, setup's own tables stay.
    shop.seed("regions", "region,tax_rate\nnorth,0.3\n")
    run = shop.doit("setup", "_clear_derived")
    assert run.ran() == {"seed:regions", "model:stg_regions"}
    assert run.results["_clear_derived"] == "success"
    assert not {"fct_sim", "int_v"} & set(shop.tables()) and "stg_regions" in shop.tables()
    # `doit clear` drops every matching table and forgets it: the next setup rebuilds exactly those.
    shop.execute("create table fct_sim as select 1 as x")
    cleared = shop.doit("clear", json_report=False)
    assert cleared.returncode == 0, cleared.stderr
    assert "forgot 5 task(s)" in cleared.stdout
    assert set(shop.tables()) == {"customers", "orders", "regions"}
    assert shop.doit("setup").ran() == ALL_MODELS
