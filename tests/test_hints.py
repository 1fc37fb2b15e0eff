"""Hints that name the real cause (issue 13): each failure's one line points at the file or key to change.

The slow tests break a fresh 'shop' project (nothing built) one way and run setup once through
the Python API, in this process (dbt is imported once for the module): the failed task's message
and the result's error are the lines the console prints (tests/test_operator.py drives the console).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from factories import Workspace
from operator_support import set_config
from setup_tasks.api import SetupResult, get_system_status, run_setup
from setup_tasks.engine.hints import NodeFailure, SeedFile, database_name_problem, explain
from setup_tasks.project.context import DbtContext
from setup_tasks.project.manifest import why_parse
from setup_tasks.store.database import Database

slow = pytest.mark.slow
CTX = DbtContext(Path("/repo/dbt"), Path("/repo/dbt"), "dev", {}, None, Path("/repo/simulation.duckdb"))


def said(failure: NodeFailure, ctx: DbtContext) -> str:
    """What the user reads of a node's failure: its explanation in one line."""
    return explain(failure, ctx).one_line()


def test_a_node_failure_names_the_node_file_only_when_it_is_the_nodes() -> None:
    sql = said(NodeFailure("model stg_x", "models/stg_x.sql", 'Parser Error: syntax error at or near "frm"'), CTX)
    assert (
        sql.startswith("model stg_x (models/stg_x.sql) failed: Parser Error") and "fix: correct models/stg_x.sql" in sql
    )
    disk = said(NodeFailure("model stg_x", "models/stg_x.sql", "IO Error: No space left on device"), CTX)
    assert "the disk is full" in disk and "free disk space" in disk and "correct models/stg_x.sql" not in disk
    profile = said(NodeFailure("seed s", "seeds/s.csv", 'Catalog Error: unrecognized configuration parameter "x"'), CTX)
    assert "/repo/dbt/profiles.yml" in profile and "outputs.dev" in profile and "correct seeds/s.csv" not in profile
    locked = said(
        NodeFailure(
            "seed s",
            "seeds/s.csv",
            'IO Error: Could not set lock on file "w": Conflicting lock is held in /usr/bin/python3 (PID 42)',
        ),
        CTX,
    )
    assert locked.startswith("database /repo/simulation.duckdb is locked by python3 (PID 42)")
    extension = said(
        NodeFailure(
            "seed s",
            "seeds/s.csv",
            'IO Error: Failed to download extension "httpfs" at URL '
            '"http://extensions.duckdb.org/x" (ERROR Could not establish connection)',
        ),
        CTX,
    )
    assert "extension httpfs" in extension and "/repo/dbt/profiles.yml" in extension and "outputs.dev" in extension
    assert "correct seeds/s.csv" not in extension


def test_a_node_failing_on_a_lock_of_setups_own_worker_names_the_worker() -> None:
    """Issue 24: never 'close that connection (notebook, IDE, another dbt run)' for setup's own worker."""
    import subprocess
    import sys

    if not Path("/proc/self/cmdline").exists():
        pytest.skip("a process's command line cannot be read here (no /proc)")
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)", "setup_tasks.dbt.worker"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"  # its command line is set
        locked = said(
            NodeFailure(
                "seed s",
                "seeds/s.csv",
                'IO Error: Could not set lock on file "w": Conflicting '
                f"lock is held in /usr/bin/python3 (PID {worker.pid})",
            ),
            CTX,
        )
    finally:
        worker.kill()
        worker.wait()
    assert f"locked by setup's dbt worker (PID {worker.pid})" in locked and f"kill {worker.pid}" in locked, locked
    assert "notebook" not in locked


def test_a_database_file_name_dbt_duckdb_cannot_quote_is_named() -> None:
    assert database_name_problem(Path("/x/simulation.duckdb")) is None
    assert "ware'house.duckdb" in str(database_name_problem(Path("/x/ware'house.duckdb")))


def test_why_dbt_parses_again_in_words() -> None:
    old = {"file:models/a.sql": "1", "file:models/b.sql": "2", "var:fx_rate": "2", "target": "dev"}
    new = {"file:models/a.sql": "9", "file:models/c.sql": "3", "var:fx_rate": "3", "target": "dev"}
    assert why_parse(old, new) == "files changed: models/a.sql, models/b.sql, models/c.sql; vars changed: fx_rate"
    assert why_parse(None, new) == "no earlier parse"
    assert why_parse({**new, "target": "ci"}, new) == "changed: target"


def set_profile(ws: Workspace, **values: object) -> None:
    """Set keys of the shop's dev output in its profiles.yml."""
    profiles = ws.project / "profiles.yml"
    profile = yaml.safe_load(profiles.read_text())
    profile["shop"]["outputs"]["dev"].update(values)
    profiles.write_text(yaml.safe_dump(profile))


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
    failures = [t.message for t in result.tasks if t.status == "failed"]
    assert len(failures) <= 1, f"{what} failed each node alike, not the run once:\n" + "\n".join(failures)
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
@pytest.mark.parametrize("name", ["ware'house.duckdb", "ware;house.duckdb"])
def test_a_database_file_name_dbt_duckdb_cannot_use_points_at_the_database_path(shop: Workspace, name: str) -> None:
    """A quote breaks dbt-duckdb's statements, a ; ends them: the run's one failure, not each seed's."""
    set_config(shop, "database", path=name)
    failure = failure_not_blamed_on_a_seed(shop, "a database problem")
    assert "database.path" in failure and f"{name} holds" in failure, failure


@slow
def test_a_bad_duckdb_setting_points_at_the_profile(shop: Workspace) -> None:
    set_profile(shop, settings={"not_a_real_setting": 1})
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
    shop.model(
        "stg_disk",
        "{{ config(pre_hook=\"COPY (SELECT range AS x FROM range(1000)) TO '/dev/full' (FORMAT csv)\") }}\n"
        "select 1 as x",
    )
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


# -- issue 22: every failure of a seed, model, profile or database names its file and setting -------------

COLA = "year,cola_rate\n2024,0.0300\n2025,0.0250\n2030,abc\n"


def seed_file(tmp_path: Path, name: str, text: str, **column_types: str) -> SeedFile:
    path = tmp_path / f"{name}.csv"
    path.write_text(text)
    return SeedFile(name, f"seeds/{name}.csv", path, ",", column_types)


def test_a_seed_cell_its_column_type_cannot_hold_is_one_line_with_line_column_and_value(tmp_path: Path) -> None:
    """DuckDB's CSV error is 59 lines at 80 columns, most of them the reader's settings: the cell is what matters."""
    dump = (
        'Conversion Error: CSV Error on Line: 4 Original Line: 2030,abc Error when converting column "cola_rate". '
        "Could not convert string \"abc\" to 'DECIMAL' * Check whether the null string value is set correctly "
        "file = /x/cola.csv delimiter = , (Set By User) quote = (empty) (Auto-Detected) sample_size = 20480"
    )
    seed = seed_file(tmp_path, "cola", COLA, year="integer", cola_rate="decimal(8,4)")
    line = said(NodeFailure("seed cola", "seeds/cola.csv", dump, seed=seed), CTX)
    assert line.startswith("seed cola (seeds/cola.csv) failed: line 4, column cola_rate holds 'abc'"), line
    assert "decimal(8,4)" in line and "fix: correct that value in seeds/cola.csv" in line, line
    assert "sample_size" not in line and "delimiter" not in line, line
    # Without column types, dbt reads the column as text: nothing to say of a cell, DuckDB's cause kept short.
    untyped = said(NodeFailure("seed cola", "seeds/cola.csv", dump, seed=seed_file(tmp_path, "cola", COLA)), CTX)
    assert "Could not convert string" in untyped and "sample_size" not in untyped, untyped


def test_a_model_failing_on_a_seed_value_names_the_seed_line_column_and_value(tmp_path: Path) -> None:
    orders = seed_file(tmp_path, "orders", "id,order_date\n1,2026-01-05\n2,2026-02-30\n3,2026-03-01\n")
    payments = seed_file(tmp_path, "payments", "id,amount\n1,1000\n2,2000\n3,abc\n4,250\n")
    date = said(
        NodeFailure(
            "model fct_orders",
            "models/marts/fct_orders.sql",
            'Conversion Error: date field value out of range: "2026-02-30" when casting from source column order_date',
            upstream_seeds=(payments, orders),
        ),
        CTX,
    )
    assert "fix: correct seeds/orders.csv line 3, column order_date ('2026-02-30')" in date, date
    assert "correct models/marts/fct_orders.sql and" not in date, date
    # No value quoted (a type mismatch): the column that one odd cell made text, named in dbt's message.
    binder = said(
        NodeFailure(
            "model stg_payments",
            "models/stg_payments.sql",
            "Binder Error: No function matches the given name and argument types "
            "'/(VARCHAR, INTEGER_LITERAL)'. LINE 4: amount / 100 as amount",
            upstream_seeds=(orders, payments),
        ),
        CTX,
    )
    assert "fix: correct seeds/payments.csv line 4, column amount ('abc')" in binder, binder
    # A model's own mistake is still the model's.
    own = said(
        NodeFailure(
            "model m",
            "models/m.sql",
            'Binder Error: Referenced column "nope" not found',
            upstream_seeds=(orders, payments),
        ),
        CTX,
    )
    assert "fix: correct models/m.sql" in own, own


def test_a_profile_part_duckdb_refuses_is_named_with_its_value() -> None:
    from setup_tasks.engine.hints import profile_error
    from setup_tasks.project.context import Connection, DbtProfile
    from setup_tasks.store.database import profile_problem

    profile = DbtProfile(
        "shop", "dev", "duckdb", "w.duckdb", "/repo/w.duckdb", connection=Connection(settings={"memory_limit": "lots"})
    )
    problem = profile_problem({}, [], profile.settings)
    assert problem is not None and problem.key == "settings.memory_limit"
    line = profile_error(profile, problem, CTX).one_line()
    assert "/repo/dbt/profiles.yml" in line and "shop.outputs.dev.settings.memory_limit ('lots')" in line, line
    assert "Memory must have a number" in line and "seeds/" not in line, line
    assert profile_problem({}, [], {"memory_limit": "1GB", "TimeZone": "UTC"}) is None
    assert profile_problem({"no_such_option": 1}, [], {}).key == "config_options"


def test_a_database_file_name_with_a_semicolon_or_hash_is_named() -> None:
    for name in ("ja;ffle.duckdb", "ja#ffle.duckdb"):
        assert name in str(database_name_problem(Path(f"/x/{name}"))), name
    assert database_name_problem(Path("/x/jaffle-shop v2.duckdb")) is None  # these dbt-duckdb can use


def test_a_parse_failure_names_the_profiles_file_the_variable_or_the_folder(tmp_path: Path) -> None:
    from setup_tasks.project.context import parse_failure

    ctx = DbtContext(tmp_path, tmp_path / "home" / ".dbt", None, {}, None, None)
    missing = parse_failure(ctx, "Runtime Error Could not find profile named 'jaffle_shop'").one_line()
    assert f"{tmp_path}/home/.dbt/profiles.yml (absent)" in missing and "DBT_PROFILES_DIR" in missing, missing
    assert "file named above" not in missing
    (tmp_path / "home" / ".dbt").mkdir(parents=True)
    (tmp_path / "home" / ".dbt" / "profiles.yml").write_text("other: {}\n")
    absent = parse_failure(ctx, "Runtime Error Could not find profile named 'jaffle_shop'").one_line()
    assert "no profile named 'jaffle_shop' in" in absent and "(holds other)" in absent, absent
    assert "dbt_project.yml" in absent, absent
    variable = parse_failure(ctx, "Parsing Error Env var required but not provided: 'DB_PASS'").one_line()
    assert "fix: set the environment variable DB_PASS" in variable, variable
    folder = parse_failure(ctx, "[Errno 30] Read-only file system: '/p/target/planwise/x/partial_parse.msgpack'")
    assert "cannot write dbt's files /p/target/planwise/x/partial_parse.msgpack: Read-only file system" in str(folder)
    named = parse_failure(ctx, "Parsing Error at path ['models']: models/x.yml line 2").one_line()
    assert "fix: correct models/x.yml" in named, named


def test_a_database_folder_you_cannot_write_is_named_before_duckdb_fails_on_its_wal() -> None:
    """The file is writable, its folder is not (DuckDB writes <file>.wal beside it): asked as another user."""
    import shutil

    from test_security import as_nobody, needs_root, shared_tmp

    needs_root()
    folder = shared_tmp() / "ro"  # another user can reach it (pytest's folders are root's only)
    try:
        folder.mkdir()
        (folder / "w.duckdb").write_bytes(b"")
        os.chmod(folder / "w.duckdb", 0o666)
        os.chmod(folder, 0o555)
        read, write = os.pipe()

        def ask() -> None:
            problem = Database(folder / "w.duckdb").write_problem()
            os.write(write, (problem.one_line() if problem else "none").encode())

        pid = as_nobody(ask)
        os.close(write)
        said = os.read(read, 4096).decode()
        os.close(read)
        os.waitpid(pid, 0)
        assert f"the database folder {folder} is not writable for you (DuckDB writes w.duckdb.wal there)" in said, said
        assert Database(folder / "w.duckdb").write_problem() is None  # root may write anywhere
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


@slow
def test_a_seed_cell_its_column_type_cannot_hold_fails_in_one_line_whoever_builds_it(
    shop: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = yaml.safe_load((shop.project / "dbt_project.yml").read_text())
    project["seeds"] = {"shop": {"regions": {"+column_types": {"tax_rate": "decimal(8,4)"}}}}
    (shop.project / "dbt_project.yml").write_text(yaml.safe_dump(project))
    assert run_setup(shop.config_path).success
    shop.seed("regions", "region,tax_rate\nnorth,0.2\nsouth,abc\n")
    for builder in ("1", "0"):  # without dbt (kept SQL), then by dbt
        monkeypatch.setenv("PLANWISE_SETUP_DIRECT", builder)
        failure = first_failure(failed(shop)[0])
        assert failure.startswith("seed regions (seeds/regions.csv) failed: line 3, column tax_rate holds 'abc'"), (
            failure
        )
        assert len(failure) < 400 and "fix: correct that value in seeds/regions.csv" in failure, failure


@slow
def test_a_bad_date_in_a_seed_is_blamed_on_the_seed_not_the_model_that_casts_it(shop: Workspace) -> None:
    shop.seed("events", "id,day\n1,2026-01-05\n2,2026-02-30\n3,2026-03-01\n")
    shop.model("stg_events", "select id, cast(day as date) + 1 as next_day from {{ ref('events') }}")
    failure = next(t.message for t in failed(shop)[0].tasks if t.name == "model:stg_events")
    assert "fix: correct seeds/events.csv line 3, column day ('2026-02-30')" in failure, failure


@slow
def test_a_profile_setting_duckdb_rejects_names_the_profile_and_the_setting_and_status_says_not_ready(
    shop: Workspace,
) -> None:
    set_profile(shop, settings={"memory_limit": "lots"})
    result = run_setup(shop.config_path)
    failures = [t.message for t in result.tasks if t.status == "failed"]
    assert result.exit_code == 1 and len(failures) == 1, failures  # the run's one failure, not each seed's
    assert "profiles.yml" in failures[0] and "settings.memory_limit ('lots')" in failures[0], failures
    assert "correct seeds/" not in failures[0], failures
    status = get_system_status(shop.config_path)
    assert not status.ready and "settings.memory_limit" in status.reason, status.reason


@slow
def test_an_extension_duckdb_cannot_load_names_the_profile_and_the_extension(shop: Workspace) -> None:
    set_profile(shop, extensions=["no_such_extension_xyz"])
    failure = failure_not_blamed_on_a_seed(shop, "an extension that cannot load")
    assert "extensions (no_such_extension_xyz)" in failure and "profiles.yml" in failure, failure


@slow
def test_no_profiles_file_names_where_dbt_looked(shop: Workspace, tmp_path: Path) -> None:
    (shop.project / "profiles.yml").unlink()
    set_config(shop, "dbt", profiles_dir=str(tmp_path / "dotdbt"))
    text = failed(shop)[1]
    assert f"the folder dbt reads profiles.yml from, {tmp_path}/dotdbt, does not exist" in text, text
    (tmp_path / "dotdbt").mkdir()  # ~/.dbt without its profiles.yml
    text = failed(shop)[1]
    assert f"{tmp_path}/dotdbt/profiles.yml (absent)" in text and "file named above" not in text, text
