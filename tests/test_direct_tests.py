"""dbt tests run straight in DuckDB give dbt's own verdicts; whatever the shortcut cannot prove goes through dbt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from factories import Workspace, write_shop_project
from setup_tasks.config import load_settings
from setup_tasks.engine import direct_tests as direct
from setup_tasks.engine.direct_tests import run_direct, why_not_direct
from setup_tasks.engine.kept_sql import KEPT_FILE, KeptSql
from setup_tasks.engine.engine import Engine
from setup_tasks.project.compile_context import CONTEXT, PURE, VOLATILE, compile_key, kind, node_key
from setup_tasks.project.context import DbtProfile
from setup_tasks.project.manifest import manifest_from_dict

# Every way a test's verdict is configured, passing and failing, generic (built-in and the
# project's own) and singular: dbt runs them once, then the kept SQL must give the same.
SCHEMA = {
    "version": 2,
    "models": [
        {
            "name": "stg_customers",
            "columns": [
                {"name": "id", "data_tests": ["unique", "not_null"]},
                {
                    "name": "region",
                    "data_tests": [
                        {
                            "accepted_values": {
                                "name": "region_north",
                                "arguments": {"values": ["north"]},
                                "config": {"severity": "warn"},
                            }
                        },
                        {
                            "accepted_values": {
                                "name": "region_known_after_1",
                                "arguments": {"values": ["north", "south"]},
                                "config": {"where": "id > 1"},
                            }
                        },
                    ],
                },
            ],
        },
        {
            "name": "stg_orders",
            "columns": [
                {
                    "name": "customer_id",
                    "data_tests": [
                        {"relationships": {"arguments": {"to": "ref('stg_customers')", "field": "id"}}},
                        {
                            "accepted_values": {
                                "name": "customer_1_warn_from_1",
                                "arguments": {"values": [1]},
                                "config": {"warn_if": ">= 1", "error_if": "> 2"},
                            }
                        },
                        {
                            "accepted_values": {
                                "name": "customer_1_limited",
                                "arguments": {"values": [1]},
                                "config": {"error_if": "> 1", "limit": 1},
                            }
                        },
                        {
                            "accepted_values": {
                                "name": "customer_2_summed",
                                "arguments": {"values": [2]},
                                "config": {"fail_calc": "sum(n_records)", "warn_if": "> 3", "error_if": "> 100"},
                            }
                        },
                    ],
                },
                {
                    "name": "amount_usd",
                    "data_tests": [
                        {"at_most": {"name": "amount_at_most_30", "arguments": {"limit_value": 30}}},
                        {
                            "at_most": {
                                "name": "amount_at_most_5",
                                "arguments": {"limit_value": 5},
                                "config": {"severity": "warn"},
                            }
                        },
                    ],
                },
            ],
        },
    ],
}
AT_MOST = """{% test at_most(model, column_name, limit_value) %}
select {{ column_name }} from {{ model }} where {{ column_name }} > {{ limit_value }}
{% endtest %}
"""
SINGULAR = {
    "no_big_orders": "select * from {{ ref('stg_orders') }} where amount_usd > 1000",
    "a_small_order": "select * from {{ ref('stg_orders') }} where amount_usd < {{ var('fx_rate') }} * 4",
}


def shop_with_tests(root: Path) -> Workspace:
    ws = write_shop_project(root)
    (ws.project / "models" / "staging" / "schema.yml").write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    (ws.project / "macros").mkdir()
    (ws.project / "macros" / "at_most.sql").write_text(AT_MOST)
    (ws.project / "tests").mkdir()
    for name, sql in SINGULAR.items():
        (ws.project / "tests" / f"{name}.sql").write_text(sql)
    return ws


@pytest.mark.slow
def test_kept_sql_gives_dbts_verdict_for_every_kind_of_test(tmp_path: Path) -> None:
    ws = shop_with_tests(tmp_path)
    first = ws.doit("setup")
    assert first.returncode == 1, first.stdout[-3000:]  # some of the tests fail on purpose
    engine = Engine.open(load_settings(ws.config_path))
    try:
        tests = sorted(u for u in engine.manifest.nodes if u.startswith("test."))
        assert len(tests) >= 12, tests
        by_dbt: dict[str, object] = {}
        engine.dbt.run_tests(
            engine.ctx,
            engine.definitions.manifest_path,
            [engine.node(u) for u in tests],
            lambda outcome: by_dbt.__setitem__(outcome.unique_id, outcome),
        )
        assert {o.status for o in by_dbt.values()} >= {"pass", "warn", "fail"}, by_dbt
        with engine.db.read_only() as reader:
            for uid in tests:
                node = engine.node(uid)
                assert why_not_direct(node, engine.manifest, {}) is None, uid
                sql = engine.view.compiling.sql(uid)
                assert sql is not None, f"the first run kept no SQL for {uid}"
                mine, theirs = run_direct(reader, node, sql), by_dbt[uid]
                assert (mine.status, mine.failures, mine.message) == (theirs.status, theirs.failures, theirs.message), (
                    uid
                )
    finally:
        engine.close()
    # the second run's tests (a seed edit re-runs what reads it) went straight to DuckDB: no dbt test run
    ws.seed("orders", "id,customer_id,amount\n10,1,20.5\n11,2,7.25\n12,1,3.0\n13,3,12.0\n14,1,1.0\n")
    second = ws.doit("setup")
    report = json.loads((ws.root / "warehouse.setup_report.json").read_text())
    assert report["dbt_invocations"] == 0 and report["direct_tests"] > 0, report["dbt_invocations"]
    assert second.returncode == 1 and "dbt_tests" in second.stdout


def test_the_wrapping_is_dbts_get_test_sql() -> None:
    query = direct.test_query(
        "select 1 as x", {"fail_calc": "count(*)", "warn_if": "!= 0", "error_if": "> 5", "limit": 3}
    )
    assert "count(*) as failures" in query and "count(*) != 0 as should_warn" in query
    assert "count(*) > 5 as should_error" in query and "select 1 as x\n  limit 3\n) dbt_internal_test" in query


# dbt's own macros a project may override, as a parse lists them.
DBT_MACROS = (
    "macro.dbt.test_unique",
    "macro.dbt.default__test_unique",
    "macro.dbt.get_test_sql",
    "macro.dbt.materialization_test_default",
)
PROFILE = DbtProfile("p", "dev", "duckdb", "w.duckdb", "/w.duckdb")


def _manifest(
    macros: dict[str, str],
    test_macros: list[str],
    raw_code: str = "",
    config: dict | None = None,
    nodes: dict | None = None,
):
    builtin = {uid: "x" for uid in DBT_MACROS}
    raw = {
        "metadata": {"project_name": "p"},
        "nodes": {
            "test.p.t": {
                "unique_id": "test.p.t",
                "resource_type": "test",
                "name": "t",
                "package_name": "p",
                "raw_code": raw_code,
                "config": config or {},
                "depends_on": {"macros": test_macros},
            },
            **(nodes or {}),
        },
        "macros": {uid: {"macro_sql": sql, "depends_on": {"macros": []}} for uid, sql in {**builtin, **macros}.items()},
    }
    manifest = manifest_from_dict(raw, profile=PROFILE)
    return manifest.nodes["test.p.t"], manifest


@pytest.mark.parametrize(
    "macros, config, environ, reason",
    [
        ({}, {}, {}, None),
        ({}, {"store_failures": True}, {}, "stores"),
        ({}, {}, {"DBT_WARN_ERROR": "true"}, "warn-error"),
        ({}, {}, {"PLANWISE_SETUP_DIRECT": "0"}, "PLANWISE_SETUP_DIRECT"),
        ({"macro.p.default__test_unique": "select 2"}, {}, {}, None),  # compiled into the test's SQL: it is kept
        ({"macro.p.get_test_sql": "select 3"}, {}, {}, "overrides"),
        ({"macro.p.materialization_test_default": "x"}, {}, {}, "overrides"),
    ],
)
def test_what_the_shortcut_cannot_prove_goes_through_dbt(
    macros: dict, config: dict, environ: dict, reason: str | None
) -> None:
    node, manifest = _manifest(macros, [], "select 1", config)
    why = why_not_direct(node, manifest, environ)
    assert (why is None) if reason is None else (why is not None and reason in why), why


@pytest.mark.parametrize(
    "reads, compiled, expected",
    [
        ({"ref", "var", "adapter", "adapter.dispatch", "flags.STORE_FAILURES", "env:DUCKDB_PATH"}, True, PURE),
        ({"ref", "run_query"}, True, CONTEXT),
        ({"ref", "adapter.get_columns_in_relation"}, True, CONTEXT),
        ({"graph"}, True, CONTEXT),
        ({"flags.WHICH"}, True, CONTEXT),
        ({"ref"}, False, CONTEXT),  # could not compile without the database
        ({"run_started_at"}, True, VOLATILE),
        ({"modules", "ref"}, True, VOLATILE),
        ({"invocation_id"}, False, VOLATILE),
    ],
)
def test_what_a_compile_read_says_of_its_sql(reads: set[str], compiled: bool, expected: str) -> None:
    assert kind(reads, compiled)[0] == expected


def test_compile_keys_follow_definitions_and_the_names_of_what_is_read_not_their_data(tmp_path: Path) -> None:
    model = {
        "unique_id": "model.p.a",
        "resource_type": "model",
        "name": "a",
        "package_name": "p",
        "database": "w",
        "schema": "main",
        "alias": "a",
        "raw_code": "select 1",
        "config": {"materialized": "table"},
    }
    ephemeral = {
        **model,
        "unique_id": "model.p.e",
        "name": "e",
        "alias": "e",
        "raw_code": "select 2",
        "config": {"materialized": "ephemeral"},
    }

    def with_parents(a: dict, e: dict, code: str = "select * from a") -> str:
        test = {
            "unique_id": "test.p.t",
            "resource_type": "test",
            "name": "t",
            "package_name": "p",
            "raw_code": code,
            "config": {},
            "depends_on": {"nodes": ["model.p.a", "model.p.e"]},
        }
        raw = {"metadata": {"project_name": "p"}, "nodes": {"test.p.t": test, "model.p.a": a, "model.p.e": e}}
        return node_key(manifest_from_dict(raw, profile=PROFILE), "test.p.t", {})

    base = with_parents(model, ephemeral)
    assert base == with_parents({**model, "raw_code": "select 99"}, ephemeral), "a parent's code is data, not its name"
    assert base != with_parents({**model, "alias": "a2"}, ephemeral), "the relation a ref() names is read"
    assert base != with_parents(model, {**ephemeral, "raw_code": "select 3"}), "an ephemeral model is inlined"
    assert base != with_parents(model, ephemeral, "select 2 from a"), "its own code"
    assert compile_key("context-1", base) != compile_key("context-2", base)


def test_kept_sql_is_sealed_and_found_only_under_its_key(tmp_path: Path) -> None:
    kept = KeptSql(tmp_path / KEPT_FILE)
    kept.keep("test.p.t", "k1", "select 1", ["ref", "env:SHOP_REGION"])
    kept.keep("model.p.v", "k1", "select now()", ["run_started_at"])
    kept.save()
    again = KeptSql(tmp_path / KEPT_FILE)
    assert again.sql("test.p.t", "k1") == "select 1" and again.env == {"SHOP_REGION"}
    assert again.sql("test.p.t", "another key") is None
    assert again.sql("model.p.v", "k1") is None and again.get("model.p.v", "k1").kind == VOLATILE
    sealed = (tmp_path / KEPT_FILE).read_bytes()
    assert b"select 1" in sealed
    # SQL setup would run: a file not sealed with the user's key, or changed since, is never used
    (tmp_path / KEPT_FILE).write_bytes(sealed.replace(b"select 1", b"select 2"))
    assert KeptSql(tmp_path / KEPT_FILE).sql("test.p.t", "k1") is None
    (tmp_path / KEPT_FILE).write_text(
        json.dumps({"version": 3, "nodes": {"test.p.t": {"key": "k1", "sql": "drop table x", "reads": []}}})
    )
    assert KeptSql(tmp_path / KEPT_FILE).sql("test.p.t", "k1") is None
    (tmp_path / KEPT_FILE).write_text("[not what was written")
    assert KeptSql(tmp_path / KEPT_FILE).sql("test.p.t", "k1") is None  # damaged: dbt compiles it again
