"""dbt's data tests run straight in DuckDB, from the SQL dbt compiled for them in an earlier run.

A dbt data test is a query: dbt compiles it, wraps it (``get_test_sql``: ``fail_calc``,
``warn_if``, ``error_if``, ``limit``) and turns the one row it returns into pass, warn or
fail with a fixed message. The compiled SQL of a test whose Jinja (its own and that of
every macro it calls) neither queries the database nor reads the run's time, id or graph
depends only on its definition, those macros, the vars and env vars it reads and the
names of the tables it reads -- never on their data. So the SQL dbt compiled earlier,
kept under a key of exactly those (``definition_key``), is what dbt would compile now,
and running it here gives dbt's own verdict without dbt's start-up and per-test overhead
(about 0.5 s an invocation; 2-4 s to import dbt in a session's first run).

Anything outside what this proves goes through dbt (``why_not_direct``): unit tests, a
test with ``store_failures`` or ``sql_header``, Jinja that may introspect, a dispatched
macro more than one package implements, a project overriding dbt's wrapping of tests,
``--warn-error`` / ``--store-failures`` in the environment, and a test whose SQL is not
kept yet (its run through dbt keeps it).
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from ..dbt.invoke import NodeOutcome
from ..errors import PlanwiseError
from ..project.manifest import Manifest, Node
from .direct_build import DIRECT_ENV, how_dbt_builds_problem

UNSUPPORTED_CONFIG = ("store_failures", "store_failures_as", "sql_header")
# Flags that change a test's verdict or what it stores, when set in the environment.
FLAG_ENV = ("DBT_WARN_ERROR", "DBT_WARN_ERROR_OPTIONS", "DBT_STORE_FAILURES")


def why_not_direct(node: Node, manifest: Manifest, environ: Mapping[str, str]) -> str | None:
    """Why dbt must run this test itself; None when SQL compiled for its definition gives dbt's result."""
    if node.resource_type != "test":
        return "not a data test"
    if any(node.config.get(key) for key in UNSUPPORTED_CONFIG):
        return "it stores its failures or has a SQL header"
    if environ.get(DIRECT_ENV, "1") == "0":
        return f"{DIRECT_ENV}=0"
    if any(environ.get(name) not in (None, "", "false", "False", "0") for name in FLAG_ENV):
        return "--warn-error or --store-failures is set"
    return how_dbt_builds_problem(manifest)


def test_query(sql: str, config: Mapping[str, Any]) -> str:
    """dbt's ``get_test_sql`` around ``get_limit_sql`` (their default and DuckDB implementations)."""
    fail_calc = config.get("fail_calc") or "count(*)"
    warn_if = config.get("warn_if") or "!= 0"
    error_if = config.get("error_if") or "!= 0"
    limit = config.get("limit")
    main = f"{sql}\n  limit {limit}" if limit is not None else sql
    return (
        f"select\n  {fail_calc} as failures,\n  {fail_calc} {warn_if} as should_warn,\n"
        f"  {fail_calc} {error_if} as should_error\nfrom (\n{main}\n) dbt_internal_test"
    )


def _results(count: int) -> str:
    return f"{count} result{'' if count == 1 else 's'}"


def outcome_of(uid: str, node: Node, row: tuple[Any, ...] | None, seconds: float, sql: str) -> NodeOutcome:
    """dbt's verdict on the one row of the wrapped query (``TestTask.build_test_run_result``)."""
    if row is None or row[0] is None:
        return NodeOutcome(uid, "error", "the test query returned no failure count", seconds, sql=sql)
    if isinstance(row[0], bool) or int(row[0]) != row[0]:  # dbt stops at a fail_calc that is no whole number
        return NodeOutcome(uid, "error", f"the failure count {row[0]!r} is not a whole number", seconds, sql=sql)
    failures, should_warn, should_error = int(row[0]), bool(row[1]), bool(row[2])
    severity = str(node.config.get("severity") or "ERROR").upper()
    if severity == "ERROR" and should_error:
        message = f"Got {_results(failures)}, configured to fail if {node.config.get('error_if') or '!= 0'}"
        return NodeOutcome(uid, "fail", message, seconds, failures=failures, sql=sql)
    if should_warn:
        message = f"Got {_results(failures)}, configured to warn if {node.config.get('warn_if') or '!= 0'}"
        return NodeOutcome(uid, "warn", message, seconds, failures=failures, sql=sql)
    return NodeOutcome(uid, "pass", "", seconds, failures=None, sql=sql)


def run_direct(reader: Any, node: Node, sql: str) -> NodeOutcome:
    """One test on an open read-only Reader: its outcome as dbt would report it."""
    started = time.perf_counter()
    try:
        result = reader.query(test_query(sql, node.config))
    except PlanwiseError as err:
        return NodeOutcome(node.unique_id, "error", err.one_line(), time.perf_counter() - started, sql=sql)
    row = result.rows[0] if len(result.rows) == 1 else None
    return outcome_of(node.unique_id, node, row, time.perf_counter() - started, sql)
