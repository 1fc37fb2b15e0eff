"""Property: whatever a user does between runs, the next setup equals a clean build.

The vocabulary is what real use did: edit seeds, SQL, vars and external files, drop a table,
add and remove a model, a seed that gains a column; rename a model and back, move a file
between folders, a custom schema and back, switch a model to ephemeral; forget one task or
all (and under --continue); Ctrl-C then forget; an edit during a build, then reverted; a
same-length edit with the mtime restored; census overrides on the command line; replace the
census with a file the generator wrote with other parameters; kill -9 at a random instant of
a build, the commit window included. Each is in an explicit example and in the random draws.

After the sequence, tables, schemas AND the checks and dbt tests run (with their outcomes)
equal a clean build's (database, state and dbt's target deleted: a fresh parse too). Each
step also keeps what it promises: `doit status` beforehand predicts exactly the nodes setup
builds and the leftovers it drops, every stale node builds in one dbt run, a forgotten task
is rebuilt, no dbt test goes unreported, and a census the user supplied is never written.

Run time is bounded: builds run in this process (dbt imported once), only interrupts and
kills use a doit subprocess, no shrinking, and random draws stop once BUDGET_SECONDS of
drawing are spent (the explicit examples always run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

from factories import REPO, SHOP_MODELS, Workspace, clean_env, write_shop_project
from setup_tasks.api import get_system_status, run_doit, run_setup
from setup_tasks.engine.census import generate_census

pytestmark = pytest.mark.slow

EMPLOYEES = 50
# Seconds of random draws (the explicit examples always run): the suite has a time limit.
BUDGET_SECONDS = float(os.environ.get("PLANWISE_PROPERTY_BUDGET", "25"))
MARK_ENV = "PW_COMMIT_MARK"
EDIT_ENV = "PW_EDIT_DURING_BUILD"

# -- the project -------------------------------------------------------------------------------

SCHEMA_TESTS = {
    "version": 2,
    "models": [
        {"name": "stg_regions", "columns": [{"name": "region", "tests": ["not_null", "unique"]}]},
        {
            "name": "stg_customers",
            "columns": [
                {"name": "id", "tests": ["not_null"]},
                # two parents: when stg_regions is renamed away, dbt keeps it and warns, and never runs it
                {"name": "region", "tests": [{"relationships": {"to": "ref('stg_regions')", "field": "region"}}]},
            ],
        },
    ],
}
# After dbt committed a model's table and before it reports the node done: mark the moment, then
# hold it, when MARK_ENV names a file (so a kill lands in the commit window deterministically).
COMMIT_HOOKS = [
    {
        "sql": "{% if env_var('" + MARK_ENV + "', '') %}COPY (SELECT '{{ this.identifier }}' AS committed) "
        "TO '{{ env_var('" + MARK_ENV + "') }}' (HEADER){% endif %}",
        "transaction": False,
    },
    {
        "sql": "{% if env_var('" + MARK_ENV + "', '') %}SELECT count(*) FROM range(60000) a, range(60000) b "
        "WHERE a.range * b.range = -1{% endif %}",
        "transaction": False,
    },
]
# dbt runs on-run-start hooks after setup fingerprinted the inputs and before any seed is
# loaded: with EDIT_ENV set, this one rewrites orders.csv during the build, deterministically.
EDIT_DURING_BUILD = (
    "{% if env_var('" + EDIT_ENV + "', '') %}"
    "COPY (SELECT 10 AS id, 1 AS customer_id, 99.5 AS amount) TO '{{ env_var('" + EDIT_ENV + "') }}' (HEADER)"
    "{% else %}SELECT 1{% endif %}"
)
CENSUS_MODEL = (
    "select count(*) as employees, count(distinct employee_id) as ids, "
    "round(sum(employee_gross_compensation), 2) as pay from {{ source('raw', 'census') }}"
)
ORDERS_SQL = [
    "select id, customer_id, amount * {{ var('fx_rate') }} as amount_usd from {{ ref('orders') }}",
    "select id, customer_id, amount * {{ var('fx_rate') }} + 1 as amount_usd from {{ ref('orders') }}",
    "select id, customer_id, round(amount) as amount_usd from {{ ref('orders') }}",
]


def make_project(root: Path, hooks: bool = True) -> Workspace:
    """The shop project with tests, views and a census; ``hooks``: the hooks that let a kill or an edit
    land at a chosen instant of dbt's build (without them, setup builds what it can without dbt)."""
    ws = write_shop_project(root)
    project = yaml.safe_load((ws.project / "dbt_project.yml").read_text())
    # models/staging/core/ builds views: moving a file there changes what dbt builds.
    project["models"] = {"shop": {"+materialized": "table", "staging": {"core": {"+materialized": "view"}}}}
    if hooks:
        project["models"]["shop"]["+post-hook"] = COMMIT_HOOKS
        project["on-run-start"] = [EDIT_DURING_BUILD]
    (ws.project / "dbt_project.yml").write_text(yaml.safe_dump(project, sort_keys=False))
    (ws.project / "models" / "staging" / "core").mkdir()
    (ws.project / "models" / "staging" / "schema.yml").write_text(yaml.safe_dump(SCHEMA_TESTS, sort_keys=False))
    (ws.project / "tests").mkdir()
    (ws.project / "tests" / "assert_regions_are_non_negative.sql").write_text(
        "select * from {{ ref('stg_regions') }} where tax_percent < 0"
    )
    sources = yaml.safe_load((ws.project / "models" / "staging" / "sources.yml").read_text())
    sources["sources"][0]["tables"].append(
        {"name": "census", "meta": {"external_location": "{{ var('census_parquet_path') }}"}}
    )
    (ws.project / "models" / "staging" / "sources.yml").write_text(yaml.safe_dump(sources, sort_keys=False))
    ws.model("stg_census", CENSUS_MODEL)
    # Checks are compared with a clean build's, not required to pass (an edit may empty a table).
    ws.write_config(
        census={"path": "census.parquet", "generate": True, "employees": EMPLOYEES, "seed": 42},
        validation={"fail_on": []},
    )
    return ws


class User:
    """The project as the edits left it, and what the next setup must honour."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.regions_name = "stg_regions"
        self.regions_ephemeral = False
        self.regions_schema = False
        self.user_census: bytes | None = None  # the user's own census, never to be written
        self.forced: set[str] = set()  # tasks the next setup must run (forgotten)
        self.keep_going = False  # setup runs with --continue
        self.order_rows = 0
        self.new_nodes = 0

    @property
    def staging(self) -> Path:
        return self.ws.project / "models" / "staging"

    def write_regions(self) -> None:
        for name in ("stg_regions", "stg_regions_v2"):
            (self.staging / f"{name}.sql").unlink(missing_ok=True)
        config = [
            *(["materialized='ephemeral'"] if self.regions_ephemeral else []),
            *(["schema='extra'"] if self.regions_schema else []),
        ]
        head = f"{{{{ config({', '.join(config)}) }}}}\n" if config else ""
        (self.staging / f"{self.regions_name}.sql").write_text(head + SHOP_MODELS["stg_regions"])

    def touch_orders(self) -> None:
        """Make seed:orders (and what reads it) stale, so a build has work to interrupt."""
        self.order_rows += 1
        path = self.ws.project / "seeds" / "orders.csv"
        path.write_text(path.read_text() + f"{900 + self.order_rows},1,{self.order_rows}.5\n")

    def forget(self, task: str) -> None:
        every = {n.task for n in get_system_status(self.ws.config_path).nodes} if task == "-a" else {task}
        assert run_doit(["forget", task], self.ws.config_path) == 0
        self.forced |= every

    def doit_subprocess(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "doit", "setup", f"config={self.ws.config_path}"]
        return subprocess.Popen(cmd, cwd=REPO, env=clean_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def interrupt(self, delay: float | None, sig: int) -> None:
        """Run `doit setup` and send ``sig`` after ``delay`` seconds, or (None) in a commit window:
        after dbt committed a model's table and before it reported the model done."""
        if delay is None:
            return self.interrupt_in_commit_window(sig)
        proc = self.doit_subprocess()
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
        proc.wait(timeout=120)

    def interrupt_in_commit_window(self, sig: int) -> None:
        marker = self.ws.root / "committed.csv"
        marker.unlink(missing_ok=True)
        proc = self.doit_subprocess({MARK_ENV: str(marker)})
        deadline = time.time() + 120
        while proc.poll() is None and not marker.exists() and time.time() < deadline:
            time.sleep(0.05)
        hit = marker.exists() and proc.poll() is None
        proc.send_signal(sig)
        proc.wait(timeout=120)
        marker.unlink(missing_ok=True)
        assert hit, "the build ended before any model committed: the edit left nothing stale to interrupt"

    def apply(self, edit: tuple[str, Any]) -> None:
        kind, arg = edit
        getattr(self, f"edit_{kind}")(arg)

    # -- the vocabulary ----------------------------------------------------------------------

    def edit_orders_csv(self, rows: list[tuple[int, Decimal]]) -> None:
        self.ws.seed(
            "orders", "id,customer_id,amount\n" + "".join(f"{20 + i},{c},{a}\n" for i, (c, a) in enumerate(rows))
        )

    def edit_orders_sql(self, sql: str) -> None:
        self.ws.model("stg_orders", sql)

    def edit_fx_rate(self, rate: int) -> None:
        self.ws.set_vars(fx_rate=rate)

    def edit_events(self, kinds: list[str]) -> None:
        (self.ws.root / "events.csv").write_text(
            "kind,at\n" + "".join(f"{k},2024-01-0{i + 1}\n" for i, k in enumerate(kinds))
        )

    def edit_drop(self, table: str) -> None:
        self.ws.execute(f'drop table if exists "{table}"')

    def edit_regions_columns(self, extra: bool) -> None:  # a seed gains or loses a column
        self.ws.seed(
            "regions",
            "region,tax_rate,label\nnorth,0.2,N\nsouth,0.1,S\n" if extra else "region,tax_rate\nnorth,0.2\nsouth,0.1\n",
        )

    def edit_extra_model(self, present: bool) -> None:
        path = self.staging / "stg_big_orders.sql"
        if present:
            path.write_text("select * from {{ ref('stg_orders') }} where amount_usd > 10")
        else:
            path.unlink(missing_ok=True)

    def edit_rename_regions(self, renamed: bool) -> None:
        self.regions_name = "stg_regions_v2" if renamed else "stg_regions"
        self.write_regions()

    def edit_ephemeral_regions(self, ephemeral: bool) -> None:
        self.regions_ephemeral = ephemeral
        self.write_regions()

    def edit_regions_schema(self, custom: bool) -> None:
        self.regions_schema = custom
        self.write_regions()

    def edit_move_customers(self, moved: bool) -> None:
        here, there = self.staging / "stg_customers.sql", self.staging / "core" / "stg_customers.sql"
        if moved and here.exists():
            here.rename(there)
        elif not moved and there.exists():
            there.rename(here)

    def edit_forget(self, task: str) -> None:
        self.forget(task)

    def edit_keep_going(self, on: bool) -> None:
        self.keep_going = on

    def edit_ctrl_c_forget(self, arg: tuple[float | None, str]) -> None:
        delay, task = arg
        self.touch_orders()
        self.interrupt(delay, signal.SIGINT)
        self.forget(task)

    def edit_census_user(self, seed: int) -> None:
        theirs = self.ws.root / "elsewhere" / "census.parquet"
        generate_census(theirs, EMPLOYEES, seed=seed)
        os.replace(theirs, self.ws.root / "census.parquet")
        self.user_census = (self.ws.root / "census.parquet").read_bytes()

    def edit_census_override(self, arg: tuple[str, int]) -> None:
        """`doit census employees=N` or `doit setup employees=N`: that run's census; the next follows the config."""
        task, employees = arg
        assert run_doit([task, f"employees={employees}"], self.ws.config_path) == 0
        self.check_user_census()

    def edit_same_length(self, digit: int) -> None:
        path = self.ws.project / "seeds" / "orders.csv"
        before = path.stat()
        header, *rows = path.read_text().splitlines(keepends=True)
        for i, row in enumerate(rows):
            digits = [j for j, ch in enumerate(row) if ch.isdigit()]
            if digits and row[digits[-1]] != str(digit):
                rows[i] = row[: digits[-1]] + str(digit) + row[digits[-1] + 1 :]
                break
        path.write_text(header + "".join(rows))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `touch -r` would

    def edit_during_build(self, _: Any) -> None:
        """A hook rewrites orders.csv while setup builds it from what it fingerprinted; afterwards
        the user reverts the file to just that."""
        path = self.ws.project / "seeds" / "orders.csv"
        original = path.read_text()
        assert run_doit(["forget", "seed:orders"], self.ws.config_path) == 0  # built again from the same file
        os.environ[EDIT_ENV] = str(path)
        try:
            assert run_setup(self.ws.config_path).success
        finally:
            del os.environ[EDIT_ENV]
        assert "99.5" in path.read_text(), "the hook did not edit the seed during the build"
        path.write_text(original)

    def edit_kill9(self, arg: tuple[float | None, bool, bool]) -> None:
        """kill -9 at an instant of a build (None: in the commit window of the first model it commits),
        optionally of a new node, which the user may then remove before the next setup."""
        delay, new_node, undo = arg
        self.new_nodes += 1
        path = self.staging / f"stg_new_{self.new_nodes}.sql"
        if new_node:
            path.write_text("select id, amount_usd * 2 as doubled from {{ ref('stg_orders') }}")
        else:
            self.touch_orders()
        self.interrupt(delay, signal.SIGKILL)
        if new_node and undo:
            path.unlink()

    def check_user_census(self) -> None:
        if self.user_census is not None:
            assert (self.ws.root / "census.parquet").read_bytes() == self.user_census, "setup wrote the user's census"


# -- what a build leaves, and what each step promises ------------------------------------------


def contents(ws: Workspace) -> dict[str, Any]:
    """Every relation (schema, name, type) with its rows, and the schemas of the database."""
    with duckdb.connect(str(ws.db_path), read_only=True) as con:
        relations = con.execute(
            "select table_schema, table_name, table_type from information_schema.tables "
            "where table_catalog = current_database() order by 1, 2"
        ).fetchall()
        tables = {
            (s, n, t): sorted(con.execute(f'select * from "{s}"."{n}"').fetchall(), key=repr) for s, n, t in relations
        }
        schemas = {
            r[0]
            for r in con.execute(
                "select schema_name from information_schema.schemata where catalog_name = current_database()"
            ).fetchall()
        }
    return {"tables": tables, "schemas": schemas}


def report(ws: Workspace) -> dict[str, Any]:
    return json.loads((ws.root / "warehouse.setup_report.json").read_text())


def checks_run(ws: Workspace) -> dict[str, str]:
    """Every check and dbt test of the last run, with its outcome."""
    return {name: check["status"] for name, check in report(ws)["validation"]["checks"].items()}


def build(user: User) -> dict[str, Any]:
    """`doit setup`, holding it to what `doit status` predicted just before; its run report."""
    ws = user.ws
    status = get_system_status(ws.config_path)
    assert status.ready, status.reason
    predicted = {n.task: n.reason for n in status.nodes if n.stale}
    leftovers = {label.split(" ")[0] for label in status.leftovers}
    result = run_setup(ws.config_path, continue_on_failure=user.keep_going)
    assert result.success, (result.error, result.failed)
    built = {t for t in result.built if t.startswith(("seed:", "model:"))}
    done = report(ws)
    # What a rebuild upstream left with the content it read is kept (early cutoff): status could not know.
    task_of = {n["unique_id"]: n["task"] for n in done["nodes"]}
    kept = {task_of[u] for u in done.get("kept_unchanged", [])}
    assert built | kept == set(predicted) and not built & kept, (
        f"doit status predicted {predicted}, setup built {sorted(built)}, kept {sorted(kept)}"
    )
    assert all(predicted[t].startswith("upstream changed") for t in kept), (predicted, kept)
    missed = user.forced - built
    assert not missed, f"forgotten tasks not rebuilt: {sorted(missed)}"
    user.forced.clear()
    assert set(done.get("dropped_leftovers", [])) == leftovers, "doit status predicted other leftovers"
    assert done["dbt_invocations"] <= 2, "stale nodes built in more than one dbt run (plus one for the tests)"
    unreported = [c for c in done["validation"]["checks"].values() if c.get("incomplete")]
    assert not unreported, f"checks that could not run: {unreported}"
    user.check_user_census()
    return done


def clean_build(user: User) -> tuple[dict[str, Any], dict[str, str]]:
    ws = user.ws
    ws.db_path.unlink()
    shutil.rmtree(ws.root / ".planwise")
    shutil.rmtree(ws.project / "target", ignore_errors=True)  # a fresh `dbt parse` too
    user.keep_going = False
    build(user)
    return contents(ws), checks_run(ws)


# -- the property ----------------------------------------------------------------------------------

ORDER_ROWS = st.lists(st.tuples(st.integers(1, 4), st.decimals(0, 100, places=2)), min_size=0, max_size=4)
FORGETTABLE = st.sampled_from(["seed:orders", "model:stg_customers", "model:stg_customer_orders", "-a"])
INSTANT = st.one_of(st.none(), st.floats(0.5, 8.0))
EDIT_VALUES = {
    "orders_csv": ORDER_ROWS,
    "orders_sql": st.sampled_from(ORDERS_SQL),
    "fx_rate": st.integers(1, 3),
    "events": st.lists(st.sampled_from(["click", "view", "buy"]), max_size=4),
    "drop": st.sampled_from(["customers", "stg_orders", "stg_customer_orders", "stg_events"]),
    "regions_columns": st.booleans(),
    "extra_model": st.booleans(),
    "rename_regions": st.booleans(),
    "move_customers": st.booleans(),
    "ephemeral_regions": st.booleans(),
    "regions_schema": st.booleans(),
    "forget": FORGETTABLE,
    "keep_going": st.booleans(),
    "ctrl_c_forget": st.tuples(INSTANT, FORGETTABLE),
    "census_user": st.integers(0, 10_000).filter(lambda s: s != 42),
    "census_override": st.tuples(st.sampled_from(["census", "setup"]), st.integers(20, 80)),
    "same_length": st.integers(0, 9),
    "during_build": st.none(),
    "kill9": st.tuples(st.one_of(st.none(), st.floats(0.0, 8.0)), st.booleans(), st.booleans()),
}
EDITS = st.one_of(*(st.tuples(st.just(name), values) for name, values in EDIT_VALUES.items()))

# Every piece of the vocabulary in an explicit example, chained in four sequences to bound the time.
EXPLICIT = [
    # the project's files: move a file between folders and back, a custom schema and back, rename a
    # model and back, switch it to ephemeral (a model added then removed: the last sequence). Late
    # edits must not hide early ones: a later change to a model's yml would re-parse its lost tests.
    [
        ("move_customers", True),
        ("move_customers", False),
        ("regions_schema", True),
        ("regions_schema", False),
        ("rename_regions", True),
        ("rename_regions", False),
        ("ephemeral_regions", True),
    ],
    # forget one, forget all under --continue, vars and back, a seed gaining a column, a same-length
    # edit with the mtime restored (last: a later edit of the file would hide a miss)
    [
        ("forget", "model:stg_customers"),
        ("keep_going", True),
        ("forget", "-a"),
        ("fx_rate", 3),
        ("fx_rate", 2),
        ("regions_columns", True),
        ("orders_csv", [(1, Decimal("2.50"))]),
        ("same_length", 9),
    ],
    # census overrides for one run; a file the generator wrote with other parameters; Ctrl-C then
    # forget; an edit during a build, then reverted (last, as it is hidden by a later build of the seed)
    [
        ("census_override", ("setup", 80)),
        ("census_override", ("census", 80)),
        ("census_user", 101),
        ("ctrl_c_forget", (None, "seed:orders")),
        ("during_build", None),
    ],
    # kill -9 in the commit window of a new node the user then removes; kill -9 at another instant; kill -9
    # in the commit window of a seed dbt builds afresh (its old table moved aside meanwhile)
    [("kill9", (None, True, True)), ("kill9", (5.0, False, False)), ("kill9", (None, False, False))],
]
_drawing: dict[str, float] = {}  # per test: when its random draws started
_calls: dict[str, int] = {}  # per test: how many times it was called


def random_draw(test: str = "clean", explicit: int = len(EXPLICIT)) -> bool:
    """Is this call of ``test`` a random draw (its ``explicit`` examples come first)?"""
    _calls[test] = _calls.get(test, 0) + 1
    if _calls[test] > explicit:
        _drawing.setdefault(test, time.monotonic())
    return _calls[test] > explicit


def budget_spent(test: str = "clean", seconds: float = BUDGET_SECONDS) -> bool:
    return test in _drawing and time.monotonic() - _drawing[test] >= seconds


def _with_examples(test: Any) -> Any:
    for edits in reversed(EXPLICIT):
        test = example(edits=edits)(test)
    return test


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    print_blob=True,
)
@given(edits=st.lists(EDITS, min_size=1, max_size=3))
@_with_examples
def test_incremental_build_equals_clean_build(edits: list[tuple[str, Any]]) -> None:
    drawn = random_draw()
    if drawn and budget_spent():
        return  # the suite must stay under its time limit: this draw is skipped
    with tempfile.TemporaryDirectory() as tmp:
        user = User(make_project(Path(tmp)))
        build(user)
        for edit in edits:
            if drawn and budget_spent():
                break  # a shorter sequence is a sequence too
            user.apply(edit)
            build(user)
        incremental = contents(user.ws), checks_run(user.ws)
        clean = clean_build(user)
        assert incremental[0] == clean[0], "tables or schemas differ from a clean build's"
        assert incremental[1] == clean[1], "checks or dbt tests run differ from a clean build's"
