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
from setup_tasks.engine.kept_sql import KEPT_FILE, KeptSql, definition_key
from setup_tasks.engine.engine import Engine
from setup_tasks.project.manifest import manifest_from_dict

# Every way a test's verdict is configured, passing and failing, generic (built-in and the
# project's own) and singular: dbt runs them once, then the kept SQL must give the same.
SCHEMA = {
    "version": 2,
    "models": [
        {"name": "stg_customers", "columns": [
            {"name": "id", "data_tests": ["unique", "not_null"]},
            {"name": "region", "data_tests": [
                {"accepted_values": {"name": "region_north", "arguments": {"values": ["north"]},
                                     "config": {"severity": "warn"}}},
                {"accepted_values": {"name": "region_known_after_1", "arguments": {"values": ["north", "south"]},
                                     "config": {"where": "id > 1"}}},
            ]},
        ]},
        {"name": "stg_orders", "columns": [
            {"name": "customer_id", "data_tests": [
                {"relationships": {"arguments": {"to": "ref('stg_customers')", "field": "id"}}},
                {"accepted_values": {"name": "customer_1_warn_from_1", "arguments": {"values": [1]},
                                     "config": {"warn_if": ">= 1", "error_if": "> 2"}}},
                {"accepted_values": {"name": "customer_1_limited", "arguments": {"values": [1]},
                                     "config": {"error_if": "> 1", "limit": 1}}},
                {"accepted_values": {"name": "customer_2_summed", "arguments": {"values": [2]},
                                     "config": {"fail_calc": "sum(n_records)", "warn_if": "> 3", "error_if": "> 100"}}},
            ]},
            {"name": "amount_usd", "data_tests": [
                {"at_most": {"name": "amount_at_most_30", "arguments": {"limit_value": 30}}},
                {"at_most": {"name": "amount_at_most_5", "arguments": {"limit_value": 5}, "config": {"severity": "warn"}}}]},
        ]},
    ],
}
AT_MOST = """{% test at_most(model, column_name, limit_value) %}
select {{ column_name }} from {{ model }} where {{ column_name }} > {{ limit_value }}
{% endtest %}
"""
SINGULAR = {"no_big_orders": "select * from {{ ref('stg_orders') }} where amount_usd > 1000",
            "a_small_order": "select * from {{ ref('stg_orders') }} where amount_usd < {{ var('fx_rate') }} * 4"}


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
    engine = Engine(load_settings(ws.config_path))
    try:
        tests = sorted(u for u in engine.manifest.nodes if u.startswith("test."))
        assert len(tests) >= 12, tests
        by_dbt: dict[str, object] = {}
        engine.dbt.run_tests(engine.ctx, engine.manifest_path, [engine.node(u) for u in tests],
                             lambda outcome: by_dbt.__setitem__(outcome.unique_id, outcome))
        assert {o.status for o in by_dbt.values()} >= {"pass", "warn", "fail"}, by_dbt
        fingerprints = engine.fingerprints()
        kept = KeptSql(engine.manifest_path.parent / KEPT_FILE)
        with engine.db.read_only() as reader:
            for uid in tests:
                node = engine.node(uid)
                assert why_not_direct(node, engine.manifest, {}) is None, uid
                sql = kept.sql(uid, definition_key(fingerprints[uid].parts, engine.manifest, node))
                assert sql is not None, f"the first run kept no SQL for {uid}"
                mine, theirs = run_direct(reader, node, sql), by_dbt[uid]
                assert (mine.status, mine.failures, mine.message) == (theirs.status, theirs.failures, theirs.message), uid
    finally:
        engine.close()
    # the second run's tests (a seed edit re-runs what reads it) went straight to DuckDB: no dbt test run
    ws.seed("orders", "id,customer_id,amount\n10,1,20.5\n11,2,7.25\n12,1,3.0\n13,3,12.0\n14,1,1.0\n")
    second = ws.doit("setup")
    report = json.loads((ws.root / "warehouse.setup_report.json").read_text())
    assert report["dbt_invocations"] == 0 and report["direct_tests"] > 0, report["dbt_invocations"]
    assert second.returncode == 1 and "dbt_tests" in second.stdout


def test_the_wrapping_is_dbts_get_test_sql() -> None:
    query = direct.test_query("select 1 as x", {"fail_calc": "count(*)", "warn_if": "!= 0", "error_if": "> 5", "limit": 3})
    assert "count(*) as failures" in query and "count(*) != 0 as should_warn" in query
    assert "count(*) > 5 as should_error" in query and "select 1 as x\n  limit 3\n) dbt_internal_test" in query


def _manifest(macros: dict[str, str], test_macros: list[str], raw_code: str = "", config: dict | None = None):
    raw = {
        "metadata": {"project_name": "p"},
        "nodes": {"test.p.t": {"unique_id": "test.p.t", "resource_type": "test", "name": "t", "package_name": "p",
                               "raw_code": raw_code, "config": config or {}, "depends_on": {"macros": test_macros}}},
        "macros": {uid: {"macro_sql": sql, "depends_on": {"macros": []}} for uid, sql in macros.items()},
    }
    manifest = manifest_from_dict(raw)
    return manifest.nodes["test.p.t"], manifest


@pytest.mark.parametrize("macros, raw_code, config, environ, reason", [
    ({"macro.dbt.test_unique": "{{ adapter.dispatch('test_unique', 'dbt')() }}",
      "macro.dbt.default__test_unique": "select 1"}, "", {}, {}, None),
    ({}, "{% set r = run_query('select 1') %}select {{ r }}", {}, {}, "query"),
    ({}, "select '{{ run_started_at }}'", {}, {}, "query"),
    ({}, "select {{ adapter.get_columns_in_relation(ref('x')) }}", {}, {}, "query"),
    ({}, "select 1", {"store_failures": True}, {}, "stores"),
    ({}, "select 1", {}, {"DBT_WARN_ERROR": "true"}, "warn-error"),
    ({"macro.dbt.test_unique": "{{ adapter.dispatch('test_unique', 'dbt')() }}",
      "macro.dbt.default__test_unique": "select 1", "macro.p.default__test_unique": "select 2"}, "", {}, {}, "overridden"),
    ({"macro.p.get_test_sql": "select 3"}, "select 1", {}, {}, "overridden"),
    ({"macro.p.materialization_test_default": "x"}, "select 1", {}, {}, "materialization"),
])
def test_what_the_shortcut_cannot_prove_goes_through_dbt(macros: dict, raw_code: str, config: dict,
                                                          environ: dict, reason: str | None) -> None:
    node, manifest = _manifest(macros, [m for m in macros if m.startswith("macro.dbt.test_")], raw_code, config)
    why = why_not_direct(node, manifest, environ)
    assert (why is None) if reason is None else (why is not None and reason in why), why


def test_kept_sql_is_keyed_by_the_tables_a_test_reads_not_their_data(tmp_path: Path) -> None:
    node, manifest = _manifest({}, [], "select 1")
    parts = {"config": "c", "upstream:model.p.a": "digest-1", "external:data.csv": "h1"}
    key = definition_key(parts, manifest, node)
    assert key == definition_key({**parts, "upstream:model.p.a": "digest-2", "external:data.csv": "h2"}, manifest, node)
    assert key != definition_key({**parts, "config": "other"}, manifest, node)
    kept = KeptSql(tmp_path / KEPT_FILE)
    kept.keep("test.p.t", key, "select 1")
    kept.save()
    assert KeptSql(tmp_path / KEPT_FILE).sql("test.p.t", key) == "select 1"
    assert KeptSql(tmp_path / KEPT_FILE).sql("test.p.t", "another key") is None
    sealed = (tmp_path / KEPT_FILE).read_bytes()
    assert b"select 1" in sealed
    # SQL setup would run: a file not sealed with the user's key, or changed since, is never used
    (tmp_path / KEPT_FILE).write_bytes(sealed.replace(b"select 1", b"select 2"))
    assert KeptSql(tmp_path / KEPT_FILE).sql("test.p.t", key) is None
    (tmp_path / KEPT_FILE).write_text(json.dumps({"version": 2, "nodes": {"test.p.t": {"key": key, "sql": "drop table x"}}}))
    assert KeptSql(tmp_path / KEPT_FILE).sql("test.p.t", key) is None
    (tmp_path / KEPT_FILE).write_text("[not what was written")
    assert KeptSql(tmp_path / KEPT_FILE).sql("test.p.t", key) is None  # damaged: dbt runs it again
