"""Hints that name the real cause (issue 13): each failure's one line points at the file or key to change.

The slow tests break a fresh 'shop' project (nothing built) one way and run setup once through
the Python API, in this process (dbt is imported once for the module): the failed task's message
and the result's error are the lines the console prints (tests/test_operator.py drives the console).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from factories import Workspace
from operator_support import set_config
from setup_tasks.api import SetupResult, run_setup
from setup_tasks.engine.hints import NodeFailure, database_name_problem, explain
from setup_tasks.project.context import DbtContext
from setup_tasks.project.manifest import why_parse

slow = pytest.mark.slow
CTX = DbtContext(Path("/repo/dbt"), Path("/repo/dbt"), "dev", {}, None, Path("/repo/simulation.duckdb"))


def test_a_node_failure_names_the_node_file_only_when_it_is_the_nodes() -> None:
    sql = explain(NodeFailure("model stg_x", "models/stg_x.sql", "Parser Error: syntax error at or near \"frm\""), CTX)
    assert sql.startswith("model stg_x (models/stg_x.sql) failed: Parser Error") and "fix: correct models/stg_x.sql" in sql
    disk = explain(NodeFailure("model stg_x", "models/stg_x.sql", "IO Error: No space left on device"), CTX)
    assert "the disk is full" in disk and "free disk space" in disk and "correct models/stg_x.sql" not in disk
    profile = explain(NodeFailure("seed s", "seeds/s.csv", 'Catalog Error: unrecognized configuration parameter "x"'), CTX)
    assert "/repo/dbt/profiles.yml" in profile and "outputs.dev" in profile and "correct seeds/s.csv" not in profile
    locked = explain(NodeFailure("seed s", "seeds/s.csv", 'IO Error: Could not set lock on file "w": Conflicting lock '
                                                           "is held in /usr/bin/python3 (PID 42)"), CTX)
    assert locked.startswith("database /repo/simulation.duckdb is locked by python3 (PID 42)")
    extension = explain(NodeFailure("seed s", "seeds/s.csv", 'IO Error: Failed to download extension "httpfs" at URL '
                                    '"http://extensions.duckdb.org/x" (ERROR Could not establish connection)'), CTX)
    assert "extension httpfs" in extension and "/repo/dbt/profiles.yml" in extension and "outputs.dev" in extension
    assert "correct seeds/s.csv" not in extension


def test_a_node_failing_on_a_lock_of_setups_own_worker_names_the_worker() -> None:
    """Issue 24: never 'close that connection (notebook, IDE, another dbt run)' for setup's own worker."""
    import subprocess
    import sys

    if not Path("/proc/self/cmdline").exists():
        pytest.skip("a process's command line cannot be read here (no /proc)")
    worker = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)",
                               "setup_tasks.dbt.worker"], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"  # its command line is set
        locked = explain(NodeFailure("seed s", "seeds/s.csv", 'IO Error: Could not set lock on file "w": Conflicting '
                                     f"lock is held in /usr/bin/python3 (PID {worker.pid})"), CTX)
    finally:
        worker.kill()
        worker.wait()
    assert f"locked by setup's dbt worker (PID {worker.pid})" in locked and f"kill {worker.pid}" in locked, locked
    assert "notebook" not in locked


def test_a_database_file_name_dbt_duckdb_cannot_quote_is_named() -> None:
    assert database_name_problem(Path("/x/simulation.duckdb")) is None
    assert "ware'house.duckdb" in (database_name_problem(Path("/x/ware'house.duckdb")) or "")


def test_why_dbt_parses_again_in_words() -> None:
    old = {"file:models/a.sql": "1", "file:models/b.sql": "2", "var:fx_rate": "2", "target": "dev"}
    new = {"file:models/a.sql": "9", "file:models/c.sql": "3", "var:fx_rate": "3", "target": "dev"}
    assert why_parse(old, new) == "files changed: models/a.sql, models/b.sql, models/c.sql; vars changed: fx_rate"
    assert why_parse(None, new) == "no earlier parse"
    assert why_parse({**new, "target": "ci"}, new) == "changed: target"


def failed(ws: Workspace) -> tuple[SetupResult, str]:
    """The run's result, and every line it has to say about what failed."""
    result = run_setup(ws.config_path)
    assert not result.success, result
    lines = [result.error, *(f"{t.name} {t.message}" for t in result.tasks if t.status == "failed")]
    text = "\n".join(line for line in lines if line)
    assert "Traceback" not in text, text
    return result, text


def first_failure(result: SetupResult) -> str:
    return next((t.message for t in result.tasks if t.status == "failed"), result.error)


def failure_not_blamed_on_a_seed(ws: Workspace, what: str) -> str:
    """The first failure of a run broken by ``what`` (not a seed): exit 1, and no seed file to correct."""
    result, _ = failed(ws)
    failure = first_failure(result)
    assert result.exit_code == 1 and "correct seeds/" not in failure, f"{what} blamed on a seed file:\n{failure}"
    return failure


@slow
def test_a_bad_setup_selection_names_the_key_with_dbts_message(shop: Workspace) -> None:
    set_config(shop, "dbt", setup_selection="resource_type:seed path:models/stagin")  # a typo
    result, text = failed(shop)
    assert result.exit_code == 1 and "Task dependency" not in text, text
    assert "dbt.setup_selection" in text and "path:models/stagin" in text, text
    assert "does not match any" in text, f"dbt's own message about the selection is missing:\n{text}"


@slow
def test_a_cycle_is_not_blamed_on_the_selection_syntax(shop: Workspace) -> None:
    shop.model("stg_a", "select * from {{ ref('stg_b') }}")
    shop.model("stg_b", "select * from {{ ref('stg_a') }}")
    result, text = failed(shop)
    assert result.exit_code == 1, text
    assert "cycle" in text.lower() and "stg_a" in text and "stg_b" in text, text
    assert "selection syntax" not in text and "setup_selection" not in text, text


@slow
def test_a_quote_in_the_database_file_name_points_at_the_database_path(shop: Workspace) -> None:
    set_config(shop, "database", path="ware'house.duckdb")
    status = shop.doit("status", json_report=False)  # setup's pre-flight says so first (issue 25)
    assert status.returncode == 1 and "NOT READY: setup would fail: the database file name ware'house.duckdb" in status.stdout
    failure = failure_not_blamed_on_a_seed(shop, "a database problem")
    assert "database.path" in failure and "ware'house.duckdb" in failure, failure


@slow
def test_a_bad_duckdb_setting_points_at_the_profile(shop: Workspace) -> None:
    profiles = shop.project / "profiles.yml"
    profile = yaml.safe_load(profiles.read_text())
    profile["shop"]["outputs"]["dev"]["settings"] = {"not_a_real_setting": 1}
    profiles.write_text(yaml.safe_dump(profile))
    failure = failure_not_blamed_on_a_seed(shop, "a profile problem")
    assert "profiles.yml" in failure and "not_a_real_setting" in failure, failure


@slow
def test_a_non_utf8_seed_in_a_new_project_names_the_file_and_the_encoding(shop: Workspace) -> None:
    (shop.project / "seeds" / "regions.csv").write_bytes("region,tax_rate\nnorth,0.2\nsüd,0.1\n".encode("latin-1"))
    result, text = failed(shop)
    assert result.exit_code == 1, text
    assert "seeds/regions.csv" in text, f"the file is not named:\n{text}"
    assert re.search(r"utf-8", text, re.I) and "encoding" in text.lower(), text
    assert "number of fields" not in text, text


@slow
def test_disk_full_during_dbt_points_at_the_space_not_the_sql(shop: Workspace) -> None:
    # The model is fine; the write fails with ENOSPC (/dev/full), as on a full disk.
    shop.model("stg_disk", "{{ config(pre_hook=\"COPY (SELECT range AS x FROM range(1000)) TO '/dev/full' (FORMAT csv)\") }}\n"
                           "select 1 as x")
    result, _ = failed(shop)
    failure = next(t.message for t in result.tasks if t.name == "model:stg_disk")
    assert "correct models/staging/stg_disk.sql" not in failure, f"a full disk blamed on the SQL:\n{failure}"
    assert re.search(r"(disk|device).*(full|space)|free (disk )?space", failure, re.I), failure


def test_a_first_parse_in_a_new_context_says_what_changed_since_the_latest_parse(tmp_path: Path) -> None:
    from setup_tasks.store.caches import ManifestCache

    old = tmp_path / "ctx-old" / "setup_cache.json"
    old.parent.mkdir()
    old.write_text('{"parts": {"var:fx_rate": "2"}}')
    fresh = ManifestCache(tmp_path / "ctx-new" / "setup_cache.json", tmp_path / "ctx-new" / "manifest.json")
    assert why_parse(fresh.parts(), {"var:fx_rate": "3"}) == "vars changed: fx_rate"  # a var change is a new context
    assert ManifestCache(tmp_path / "nowhere" / "x" / "setup_cache.json", tmp_path / "m.json").parts() is None


def test_an_error_the_worker_reports_keeps_its_type_and_words() -> None:
    from setup_tasks.dbt.client import _raise_remote
    from setup_tasks.errors import GraphCycleError

    sent = GraphCycleError(["model.p.a", "model.p.b"])  # made from a path, not from a cause and a fix
    with pytest.raises(GraphCycleError) as raised:
        _raise_remote({"type": "GraphCycleError", "cause": sent.cause, "fix": sent.fix})
    assert raised.value.one_line() == sent.one_line()
