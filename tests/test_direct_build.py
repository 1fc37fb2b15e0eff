"""Seeds, tables and views setup builds without dbt are dbt-duckdb's, type for type and row for row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from factories import REPO, Workspace, write_shop_project
from setup_tasks.engine.direct_build import plain_seed_columns, seed_columns, why_not_direct
from setup_tasks.project.context import Connection, DbtProfile
from setup_tasks.project.manifest import manifest_from_dict

# Every type dbt infers for a seed column, nulls, a BOM, a delimiter, a forced type, odd names.
SEEDS = {
    "kinds": (
        "id,price,qty,flag,day,at_time,iso_at,label,empty_col,maybe\n"
        "1,1.5,3,true,2024-01-31,2024-01-31 10:00:00,2024-01-31T10:00:00,a,,x\n"
        "2,2,4,false,2024-02-29,2024-02-29 23:59:59,2024-02-29T23:59:59Z,b,,\n"
    ),
    "big_numbers": "n,amount,ratio\n1,1000,0.125\n2,25000000,-3\n",
    "UpperNames": "Customer ID,Full Name\n1,Ada Lovelace\n2,Brian\n",
    "forced": "code,zip\n007,01234\n008,99999\n",
    "bom": "\ufeffid,name\n1,x\n",
    "semicolons": "a;b\n1;x\n2;y\n",
}
SEED_CONFIG = {"forced": {"column_types": {"code": "varchar"}}, "semicolons": {"delimiter": ";"}}
MODELS = {
    "stg_kinds": (
        "{{ config(materialized='view') }}\n"
        "select id, price * qty as total, flag, day, at_time, label from {{ ref('kinds') }}"
    ),
    "kinds_by_flag": "select flag, count(*) as n, sum(total) as total from {{ ref('stg_kinds') }} group by flag",
    "kinds_view_of_view": "{{ config(materialized='view') }}\nselect * from {{ ref('stg_kinds') }} where flag",
    "people": (
        "{{ config(alias='People', schema='people') }}\n"
        'select "Customer ID" as id, "Full Name" as name from {{ ref(\'UpperNames\') }}'
    ),
    "forced_codes": "select code, zip, length(code) as n from {{ ref('forced') }}",
}


def direct_project(root: Path) -> Workspace:
    ws = write_shop_project(root)
    for name, text in SEEDS.items():
        (ws.project / "seeds" / f"{name}.csv").write_bytes(text.encode("utf-8"))
    (ws.project / "seeds" / "properties.yml").write_text(
        yaml.safe_dump({"version": 2, "seeds": [{"name": n, "config": c} for n, c in SEED_CONFIG.items()]})
    )
    for name, sql in MODELS.items():
        ws.model(name, sql)
    ws.write_config(dbt={"setup_selection": "resource_type:seed resource_type:model"})
    return ws


def dump(db: Path) -> dict[tuple[str, str], Any]:
    """Every relation: its kind, columns with their types, and rows."""
    with duckdb.connect(str(db), read_only=True) as con:
        relations = con.execute(
            "select table_schema, table_name, table_type from information_schema.tables "
            "where table_catalog = current_database() order by all"
        ).fetchall()
        return {
            (s, n): (
                kind,
                con.execute(f'describe "{s}"."{n}"').fetchall(),
                sorted(con.execute(f'select * from "{s}"."{n}"').fetchall(), key=repr),
            )
            for s, n, kind in relations
        }


def report(ws: Workspace) -> dict[str, Any]:
    return json.loads((ws.root / "warehouse.setup_report.json").read_text())


@pytest.mark.slow
def test_a_rebuild_without_dbt_equals_dbts_build(tmp_path: Path) -> None:
    ws = direct_project(tmp_path)
    first = ws.doit("setup")
    assert first.returncode == 0, first.stdout[-3000:]
    assert report(ws)["direct_builds"] == 0  # nothing kept yet: dbt builds, and its SQL is kept
    by_dbt = dump(ws.db_path)
    reference = tmp_path / "by_dbt.duckdb"
    shutil.copy(ws.db_path, reference)
    ws.db_path.unlink()
    shutil.rmtree(ws.root / ".planwise")
    again = ws.doit("setup")
    assert again.returncode == 0, again.stdout[-3000:]
    done = report(ws)
    built = [name for name in again.results if name.startswith(("seed:", "model:"))]
    assert done["direct_builds"] == len(built) > 10 and done["dbt_invocations"] == 0, (done["dbt_invocations"], built)
    assert dump(ws.db_path) == by_dbt
    # one seed edited: its subtree without dbt, equal to what dbt builds from the same files
    (ws.project / "seeds" / "kinds.csv").write_text(
        SEEDS["kinds"] + "3,0.25,8,true,2024-03-01,2024-03-01 00:00:00,2024-03-01T00:00:00,c,,\n"
    )
    edited = ws.doit("setup")
    assert edited.returncode == 0 and report(ws)["dbt_invocations"] == 0, edited.stdout[-3000:]
    assert edited.ran() >= {"seed:kinds", "model:stg_kinds", "model:kinds_by_flag"}, edited.ran()
    mine = dump(ws.db_path)
    ws.db_path.unlink()
    shutil.rmtree(ws.root / ".planwise")
    shutil.rmtree(ws.project / "target")  # nothing kept: dbt builds everything
    assert ws.doit("setup").returncode == 0 and report(ws)["direct_builds"] == 0
    assert dump(ws.db_path) == mine


@pytest.mark.slow
def test_a_batch_with_a_node_setup_cannot_build_goes_to_dbt_whole(tmp_path: Path) -> None:
    ws = direct_project(tmp_path)
    assert ws.doit("setup").returncode == 0
    ws.model(
        "kinds_incremental",
        "{{ config(materialized='incremental', unique_key='id') }}\nselect id, label from {{ ref('kinds') }}",
    )
    (ws.project / "seeds" / "kinds.csv").write_text(SEEDS["kinds"].replace("a,,x", "z,,x"))
    run = ws.doit("setup")
    assert run.returncode == 0, run.stdout[-3000:]
    # One dbt run, what waits for the seed's content (early cutoff) included: a second would cost more.
    assert report(ws)["direct_builds"] == 0 and report(ws)["dbt_invocations"] == 1
    assert {"seed:kinds", "model:kinds_incremental", "model:stg_kinds", "model:kinds_by_flag"} <= run.ran()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_column_types_are_the_ones_dbt_infers(tmp_path: Path, name: str) -> None:
    from dbt.adapters.duckdb import DuckDBAdapter
    from dbt_common.clients.agate_helper import from_csv

    path = tmp_path / f"{name}.csv"
    path.write_bytes(SEEDS[name].encode("utf-8"))
    config = SEED_CONFIG.get(name, {})
    overrides = config.get("column_types", {})
    delimiter = config.get("delimiter", ",")
    table = from_csv(str(path), list(overrides), delimiter=delimiter)
    dbts = [
        (str(column), overrides.get(str(column), DuckDBAdapter.convert_type(table, i)))
        for i, column in enumerate(table.column_names)
    ]
    assert seed_columns(path, overrides, delimiter) == dbts


# Values near every edge of dbt's type tests: what the plain reading must decide as agate does, or leave to it.
PLAIN_LOOKING = (
    *("", "null", "NULL", "0", "7", "-3", "007", "1.5", "2.0", "-0.50", "1.000", "123456789012345", "3.14159"),
    *("true", "false", "True", "FALSE", "abc", "Ada Lovelace", "x", "T", "Tokyo", "high", "N/A", "ünïcode"),
    *("<25", ">=65", "25-34", "65+", "1-2", "1.5-2.5", "2024-2025", "<1", "2024-01", "USD 5", "e5", "E1"),
)
EDGES = (
    *(" null", "Null ", "1234567890123456", ".5", "5.", "+5", "1e5", "1E-3", "1,000", "$5", "5%", "-$5", " 5"),
    *("5 ", "1_000", "tr,ue", " true", "yes", "t", "inf", "Infinity", "NaN", "nan1", "sNaN", "Inf%", "In,f"),
    *("a,b", "50%", "abc ", "-5-3", "2024-01-31", "2024-02-30", "2024-01-31 10:00:00", "2024-01-31T10:00:00"),
    *("2024-01-31T10:00:00Z", "10:00"),
)


def test_the_plain_reading_of_a_seed_is_dbts_inference() -> None:
    """For random CSVs over values at every edge of agate's tests, the reading without agate either defers
    to agate or gives the column types dbt's own seed loader infers (dbt_common's from_csv)."""
    import random
    import tempfile

    from dbt.adapters.duckdb import DuckDBAdapter
    from dbt_common.clients.agate_helper import from_csv

    rng = random.Random(20261206)
    answered = deferred = 0
    for draw in range(500):
        columns = rng.randint(1, 4)
        pools = [
            rng.sample(PLAIN_LOOKING, 3) + (rng.sample(EDGES, 1) if rng.random() < 0.1 else []) for _ in range(columns)
        ]
        rows = [[rng.choice(pool) for pool in pools] for _ in range(rng.randint(1, 5))]
        header = [f"c{i}" for i in range(columns)]
        text = "\n".join(",".join(f'"{v}"' if "," in v else v for v in row) for row in [header, *rows]) + "\n"
        forced = {"c0": "varchar"} if draw % 7 == 0 else {}
        plain = plain_seed_columns(text, forced, ",")
        if plain is None:
            deferred += 1
            continue
        answered += 1
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "seed.csv"
            path.write_text(text, encoding="utf-8")
            table = from_csv(str(path), list(forced), delimiter=",")
        dbts = [
            (str(column), forced.get(str(column), DuckDBAdapter.convert_type(table, i)))
            for i, column in enumerate(table.column_names)
        ]
        assert plain == dbts, text
    assert answered > 300 and deferred > 20  # it compares most drawings, and defers where it must


def test_the_demos_seeds_are_read_without_agate() -> None:
    """Every seed of the demo is plain: a seed edit costs no agate (its import and babel's locale, ~0.1 s)."""
    seeds = sorted((REPO / "dbt" / "seeds").glob("*.csv"))
    assert seeds and [p.name for p in seeds if plain_seed_columns(p.read_text(), {}, ",") is None] == []


def _node(
    kind: str = "model",
    materialized: str = "table",
    config: dict | None = None,
    raw_code: str = "select 1",
    path: str = "models/m.sql",
    macros: dict[str, str] | None = None,
    package: str = "p",
    connection: Connection | None = None,
):
    uid = f"{kind}.{package}.m"
    raw = {
        "metadata": {"project_name": "p"},
        "nodes": {
            uid: {
                "unique_id": uid,
                "resource_type": kind,
                "name": "m",
                "package_name": package,
                "original_file_path": path,
                "database": "w",
                "schema": "main",
                "alias": "m",
                "raw_code": raw_code,
                "config": {"materialized": materialized, **(config or {})},
                "depends_on": {"macros": list(macros or ())},
            }
        },
        "macros": {uid: {"macro_sql": sql, "depends_on": {"macros": []}} for uid, sql in (macros or {}).items()},
    }
    raw["macros"].update(
        {f"macro.{package}.{name}": {"macro_sql": "x", "depends_on": {"macros": []}} for package, name in DBT_MACROS}
    )
    manifest = manifest_from_dict(
        raw, profile=DbtProfile("p", "dev", "duckdb", "w.duckdb", "/w.duckdb", connection=connection or Connection())
    )
    return manifest.nodes[uid], manifest


# dbt's own macros a project may override, as a parse lists them.
DBT_MACROS = [
    ("dbt_duckdb", "materialization_table_duckdb"),
    ("dbt", "default__create_table_as"),
    ("dbt", "generate_schema_name"),
    ("dbt", "default__test_unique"),
]


@pytest.mark.parametrize(
    "node_args, builds_here",
    [
        ({}, True),
        ({"materialized": "view"}, True),
        ({"kind": "seed", "materialized": "seed", "path": "seeds/m.csv"}, True),
        (
            {"kind": "seed", "materialized": "seed", "path": "seeds/m.csv", "config": {"column_types": {"a": "text"}}},
            True,
        ),
        ({"materialized": "incremental"}, False),
        ({"materialized": "ephemeral"}, False),
        ({"materialized": "external"}, False),
        ({"kind": "snapshot", "materialized": "snapshot"}, False),
        ({"path": "models/m.py"}, False),
        ({"config": {"post-hook": [{"sql": "select 1"}]}}, False),
        ({"config": {"pre-hook": ["select 1"]}}, False),
        ({"config": {"grants": {"select": ["analyst"]}}}, False),
        ({"config": {"contract": {"enforced": True}}}, False),
        ({"config": {"persist_docs": {"relation": True}}}, False),
        ({"config": {"sql_header": "set x = 1"}}, False),
        ({"config": {"indexes": [{"columns": ["a"]}]}}, False),
        ({"macros": {"macro.p.materialization_table_duckdb": "x"}}, False),
        ({"macros": {"macro.p.duckdb__create_table_as": "x"}}, False),
        ({"macros": {"macro.p.generate_schema_name": "x"}}, True),  # acts while dbt parses: in the node's relation
        ({"macros": {"macro.p.test_unique": "x"}}, True),  # compiled into a test's SQL
        ({"kind": "seed", "materialized": "seed", "path": "seeds/m.csv", "package": "a_package"}, False),
        ({"kind": "seed", "materialized": "seed", "path": "seeds/m.csv", "config": {"fast": False}}, False),
        ({"kind": "seed", "materialized": "seed", "path": "seeds/m.csv", "config": {"delimiter": "::"}}, False),
        ({"kind": "seed", "materialized": "seed", "path": "seeds/m.csv", "config": {"delimiter": "'"}}, False),
        ({"kind": "seed", "materialized": "seed", "path": "seeds/o'brien.csv"}, False),
        ({"kind": "seed", "materialized": "seed", "path": "seeds/m.csv", "config": {"delimiter": ";"}}, True),
        (
            {"connection": Connection(settings={"TimeZone": "UTC"}, extensions=("icu",))},
            True,
        ),  # set as dbt-duckdb sets them
        ({"connection": Connection(unsupported=("secrets",))}, False),
    ],
)
def test_what_setup_builds_itself_and_what_goes_to_dbt(node_args: dict, builds_here: bool) -> None:
    node, manifest = _node(**node_args)
    why = why_not_direct(node, manifest)
    assert (why is None) == builds_here, why


def test_a_batch_reads_the_catalog_once_and_follows_its_own_changes(tmp_path: Path) -> None:
    """Issue 21: each node asked DuckDB's catalog for its relations four times (5-15 ms each at 1,000
    tables: 15 of 25 s of a root seed edit). The batch reads it once and keeps it as it creates, renames
    and drops, a failed node's changes undone with its transaction."""
    from contextlib import contextmanager

    from factories import make_manifest, manifest_node
    from setup_tasks.engine import direct_build

    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        for i in range(300):
            con.execute(f"create table other_{i} as select {i} as x")
        con.execute("create table a as select 1 as x")  # a table becoming a view
        con.execute("create view b as select 1 as x")  # a view whose rebuild fails: it stays
    manifest = manifest_from_dict(
        make_manifest(
            manifest_node("model.p.a", materialized="view"),
            manifest_node("model.p.b", ("model.p.a",)),
            manifest_node("model.p.c", ("model.p.a",)),
        )
    )
    for node in manifest.nodes.values():
        object.__setattr__(node.relation, "database", "w")
    sql = {"model.p.a": "select 2 as x", "model.p.b": "select * from nowhere", "model.p.c": "select x + 1 as y from a"}
    items = [
        direct_build.DirectNode(manifest.nodes[uid], sql=sql[uid]) for uid in ("model.p.a", "model.p.b", "model.p.c")
    ]
    catalog_reads: list[str] = []

    class Counting:
        def __init__(self, con: Any) -> None:
            self.con = con

        def execute(self, query: str, *args: Any) -> Any:
            if "information_schema" in query or "duckdb_tables" in query:
                catalog_reads.append(query)
            return self.con.execute(query, *args)

    @contextmanager
    def connect() -> Any:
        with duckdb.connect(str(path)) as con:
            yield Counting(con)

    outcomes: dict[str, str] = {}
    direct_build.build(
        connect,
        items,
        {"model.p.b": ["model.p.a"], "model.p.c": ["model.p.a"]},
        lambda o: outcomes.__setitem__(o.unique_id, o.status),
    )
    assert outcomes == {"model.p.a": "success", "model.p.b": "error", "model.p.c": "success"}
    assert len(catalog_reads) == 1
    with duckdb.connect(str(path), read_only=True) as con:
        kinds = dict(
            con.execute(
                "select table_name, table_type from information_schema.tables "
                "where table_name in ('a', 'b', 'c') or table_name like '%dbt%'"
            ).fetchall()
        )
        assert kinds == {"a": "VIEW", "b": "VIEW", "c": "BASE TABLE"}
        assert con.execute("select * from c").fetchall() == [(3,)]
