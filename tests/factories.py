"""Tiny, real dbt-duckdb projects in temporary folders, and ways to run setup on them.

The "shop" project is deliberately not PlanWise-shaped: the engine must be generic.

    customers.csv -> stg_customers --\\
                                       > stg_customer_orders
    orders.csv    -> stg_orders -----/        (stg_orders reads var fx_rate)
    regions.csv   -> stg_regions
    events.csv (external source, path from var events_path) -> stg_events
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import duckdb
import yaml

REPO = Path(__file__).resolve().parent.parent
OVERRIDE_ENV = ("DUCKDB_PATH", "DBT_TARGET", "DBT_PROFILES_DIR", "DBT_PROJECT_DIR", "CENSUS_PATH", "SETUP_CONFIG")

SHOP_SEEDS = {
    "customers": "id,name,region\n1,Ada,north\n2,Brian,south\n3,Chen,north\n",
    "orders": "id,customer_id,amount\n10,1,20.5\n11,2,7.25\n12,1,3.0\n13,3,12.0\n",
    "regions": "region,tax_rate\nnorth,0.2\nsouth,0.1\n",
}
SHOP_MODELS = {
    "stg_customers": "select id, upper(name) as name, region from {{ ref('customers') }}",
    "stg_orders": "select id, customer_id, amount * {{ var('fx_rate') }} as amount_usd from {{ ref('orders') }}",
    "stg_customer_orders": (
        "select c.id, c.name, count(o.id) as orders, coalesce(sum(o.amount_usd), 0) as total\n"
        "from {{ ref('stg_customers') }} c left join {{ ref('stg_orders') }} o on o.customer_id = c.id\n"
        "group by c.id, c.name"
    ),
    "stg_regions": "select region, tax_rate * 100 as tax_percent from {{ ref('regions') }}",
    "stg_events": "select kind, count(*) as n from {{ source('raw', 'events') }} group by kind",
}
# Every task the shop builds: what a full build of it runs.
SHOP_TASKS = frozenset({*(f"seed:{name}" for name in SHOP_SEEDS), *(f"model:{name}" for name in SHOP_MODELS)})
SHOP_SOURCES = {
    "version": 2,
    "sources": [
        {
            "name": "raw",
            "tables": [{"name": "events", "meta": {"external_location": "{{ var('events_path') }}"}}],
        }
    ],
}
EVENTS_CSV = "kind,at\nclick,2024-01-01\nview,2024-01-02\nclick,2024-01-03\n"


@dataclass
class DoitRun:
    returncode: int
    stdout: str
    stderr: str
    results: dict[str, str] = field(default_factory=dict)

    def ran(self, prefix: tuple[str, ...] = ("seed:", "model:")) -> set[str]:
        return {name for name, result in self.results.items() if result == "success" and name.startswith(prefix)}


@dataclass
class Workspace:
    """A fixture dbt project, its setup config and its database, all under ``root``."""

    root: Path

    @property
    def project(self) -> Path:
        return self.root / "proj"

    @property
    def config_path(self) -> Path:
        return self.root / "setup.yaml"

    @property
    def db_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def seed(self, name: str, text: str) -> None:
        (self.project / "seeds" / f"{name}.csv").write_text(text)

    def model(self, name: str, sql: str) -> None:
        (self.project / "models" / "staging" / f"{name}.sql").write_text(sql)

    def remove(self, relative: str) -> None:
        (self.project / relative).unlink()

    def write_config(self, **sections: Mapping[str, Any]) -> None:
        config: dict[str, Any] = {
            "database": {"path": "warehouse.duckdb"},
            "dbt": {
                "project_dir": "proj",
                "vars": {"fx_rate": 2, "events_path": str(self.root / "events.csv")},
                "foundation_selection": "stg_customer_orders",
            },
            "census": {"path": "census.parquet", "generate": False},
        }
        for section, values in sections.items():
            config.setdefault(section, {}).update(values)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def set_vars(self, **values: Any) -> None:
        config = yaml.safe_load(self.config_path.read_text())
        config["dbt"]["vars"].update(values)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def doit(
        self, *args: str, json_report: bool = True, env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> DoitRun:
        """Run doit as a user does, in a subprocess, from the repository root."""
        reporter = ["--reporter", "json"] if json_report and args and args[0] not in ("list", "info", "forget") else []
        cmd = [sys.executable, "-m", "doit", *reporter, *args, f"config={self.config_path}"]
        if args and args[0] in ("list", "info", "forget"):
            cmd = [sys.executable, "-m", "doit", args[0], *reporter, *args[1:], f"config={self.config_path}"]
        proc = subprocess.run(cmd, cwd=REPO, env=clean_env(env), capture_output=True, text=True, timeout=timeout)
        run = DoitRun(proc.returncode, proc.stdout, proc.stderr)
        if reporter:
            run.results = parse_json_report(proc.stdout)
        return run

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows, sorted: two databases are equal when these are."""
        return database_tables(self.db_path)

    def execute(self, sql: str) -> None:
        con = duckdb.connect(str(self.db_path))
        try:
            con.execute(sql)
        finally:
            con.close()


def database_tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows of the database file ``db`` (schema main), sorted; opened read-only."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'main' order by 1"
            ).fetchall()
        ]
        return {n: sorted(con.execute(f'select * from "{n}"').fetchall(), key=repr) for n in names}
    finally:
        con.close()


def worker_pids(directory: Path) -> list[int]:
    """Pids of the warm workers started in ``directory``, as their log says (oldest first)."""
    pids = []
    for log in directory.glob("worker-*.log"):
        pids += [int(p) for p in re.findall(r"^worker (\d+) ready", log.read_text(), re.M)]
    return pids


def stop_workers(directory: Path) -> None:
    """Stop the warm workers started in ``directory`` and remove it."""
    for pid in worker_pids(directory):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    shutil.rmtree(directory, ignore_errors=True)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDE_ENV}
    env.update(extra or {})
    return env


def parse_json_report(stdout: str) -> dict[str, str]:
    start = stdout.find("{")
    if start < 0:
        return {}
    try:
        report = json.loads(stdout[start:])
    except ValueError:
        return {}
    return {task["name"]: task["result"] for task in report.get("tasks", [])}


def write_shop_project(root: Path) -> Workspace:
    ws = Workspace(root)
    proj = ws.project
    (proj / "seeds").mkdir(parents=True)
    (proj / "models" / "staging").mkdir(parents=True)
    (proj / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {
                "name": "shop",
                "version": "1.0",
                "profile": "shop",
                "config-version": 2,
                "vars": {"fx_rate": 1},
                "models": {"shop": {"+materialized": "table"}},
            }
        )
    )
    (proj / "profiles.yml").write_text(
        yaml.safe_dump(
            {
                "shop": {
                    "target": "dev",
                    "outputs": {
                        "dev": {"type": "duckdb", "path": "{{ env_var('DUCKDB_PATH', 'shop.duckdb') }}", "threads": 2}
                    },
                }
            }
        )
    )
    for name, text in SHOP_SEEDS.items():
        ws.seed(name, text)
    for name, sql in SHOP_MODELS.items():
        ws.model(name, sql)
    (proj / "models" / "staging" / "sources.yml").write_text(yaml.safe_dump(SHOP_SOURCES, sort_keys=False))
    (root / "events.csv").write_text(EVENTS_CSV)
    ws.write_config()
    return ws


# -- hand-made manifests and a stand-in engine, for pure tests -------------------------------


def _raw_node(kind: str, name: str, deps: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    folder = {"seed": "seeds", "model": "models/staging"}[kind]
    suffix = ".csv" if kind == "seed" else ".sql"
    return {
        "unique_id": f"{kind}.shop.{name}",
        "resource_type": kind,
        "name": name,
        "package_name": "shop",
        "original_file_path": f"{folder}/{name}{suffix}",
        "fqn": ["shop", name],
        "database": "warehouse",
        "schema": "main",
        "alias": name,
        "config": {"materialized": "seed" if kind == "seed" else "table"},
        "depends_on": {"nodes": list(deps)},
        **extra,
    }


def shop_manifest() -> Any:
    """The shop project's graph as a Manifest, made by hand (no dbt)."""
    from setup_tasks.project.manifest import manifest_from_dict

    nodes = [
        _raw_node("seed", "customers"),
        _raw_node("seed", "orders"),
        _raw_node("model", "stg_customers", ("seed.shop.customers",)),
        _raw_node("model", "stg_orders", ("seed.shop.orders",)),
        _raw_node("model", "stg_customer_orders", ("model.shop.stg_customers", "model.shop.stg_orders")),
        _raw_node("model", "stg_events", ("source.shop.raw.events",)),
    ]
    source = {
        "unique_id": "source.shop.raw.events",
        "resource_type": "source",
        "name": "events",
        "package_name": "shop",
        "fqn": ["shop", "raw", "events"],
        "identifier": "events",
        "meta": {"external_location": "{{ var('events_path') }}"},
    }
    raw = {
        "metadata": {"project_name": "shop", "adapter_type": "duckdb"},
        "nodes": {n["unique_id"]: n for n in nodes},
        "sources": {source["unique_id"]: source},
    }
    return manifest_from_dict(raw)


class FakeEngine:
    """What reports, status and diagrams read from an Engine, over ``shop_manifest()``.

    ``statuses`` (unique id -> NodeStatus) are what ``status()`` answers; nodes not
    in it are up to date. The database is read afresh on every question.
    """

    def __init__(self, root: Path, statuses: Mapping[str, Any] | None = None, **setup: Any) -> None:
        from setup_tasks.config import load_settings
        from setup_tasks.engine.definitions import Definitions
        from setup_tasks.engine.run_state import RunState
        from setup_tasks.project.context import dbt_context
        from setup_tasks.store.database import Database
        from setup_tasks.store.lock import RunLock
        from setup_tasks.store.records import BuildRecords

        config = {
            "database": {"path": "warehouse.duckdb"},
            "dbt": {"project_dir": "proj"},
            "census": {"path": "census.parquet", "generate": False},
            "setup": setup,
        }
        (root / "setup.yaml").write_text(yaml.safe_dump(config))
        self.settings = load_settings(root / "setup.yaml", root=root)
        self.db_path = self.settings.database.path
        self.db = Database(self.db_path)
        self.manifest = shop_manifest()
        self.definitions = Definitions(
            dbt_context(self.settings),
            self.manifest,
            root / "target" / "manifest.json",
            root,
            self.settings.census.path,
        )
        self.graph = self.definitions.graph
        self.setup_nodes = self.graph.buildable(self.manifest.nodes)
        self.run = RunState()
        self.statuses = dict(statuses or {})
        self.problems: list[str] = []  # what preflight() finds
        self.state_dir = self.settings.state_dir / "projects" / self.manifest.project_name
        self.records = BuildRecords.load(self.state_dir / "records.json")
        self.lock = RunLock(self.settings.state_dir / "run.lock", self.db_path)

    def _staleness(self) -> Any:
        from setup_tasks.engine.contents import ContentsView
        from setup_tasks.engine.staleness import Staleness
        from setup_tasks.project.fingerprints import FileHasher

        contents = ContentsView(self.db, self.lock, self.settings.state_dir / "contents.json", lambda: [])
        return Staleness(self.definitions, contents, self.records, FileHasher())

    def node(self, uid: str) -> Any:
        return self.manifest.nodes[uid]

    def label(self, uid: str) -> str:
        return self.definitions.label(uid)

    def leftover_tables(self, scope: Any = None) -> Any:
        return self._staleness().leftover_tables(scope)

    def drop_tables(self, wanted: Any) -> Any:
        return self._staleness().contents.drop(wanted)

    def leftover_label(self, uid: str, key: Any) -> str:
        return self._staleness().leftover_label(uid, key)

    def other_projects_tables(self) -> dict[str, list[Any]]:
        return {}

    def built_by_others(self) -> set[Any]:
        return set()

    def reads_census(self, uid: str) -> bool:
        return False  # shop's only external source is events.csv

    def preflight(self) -> list[str]:
        return list(self.problems)

    def database_contents(self, live: bool = False) -> Any:
        return self.db.contents()

    def build_problem(self) -> Any:
        return self.db.write_problem()

    def status(self, uid: str) -> Any:
        from setup_tasks.engine.staleness import NodeStatus

        return self.statuses.get(uid) or NodeStatus(uid, False)


# -- hand-made manifests for pure tests ------------------------------------------------


def manifest_node(
    uid: str,
    depends_on: tuple[str, ...] = (),
    *,
    materialized: str = "table",
    raw_code: str = "",
    path: str | None = None,
    config: Mapping[str, Any] | None = None,
    external_location: str | None = None,
    macros: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One node of manifest.json as dbt writes it, with only the fields the engine reads."""
    rtype, package, name = uid.split(".", 2)
    node: dict[str, Any] = {
        "unique_id": uid,
        "resource_type": rtype,
        "name": name,
        "package_name": package,
        "original_file_path": path or (f"seeds/{name}.csv" if rtype == "seed" else f"models/{name}.sql"),
        "fqn": [package, name],
        "database": "db",
        "schema": "main",
        "alias": name,
        "config": {"materialized": "seed" if rtype == "seed" else materialized, **(config or {})},
        "depends_on": {"nodes": list(depends_on), "macros": list(macros)},
        "raw_code": raw_code,
    }
    if rtype == "source":
        node.update(
            identifier=name, source_meta={}, meta={"external_location": external_location} if external_location else {}
        )
    if rtype == "test":
        node["test_metadata"] = {"name": "not_null", "kwargs": {"column_name": "id"}}
        node["attached_node"] = depends_on[0] if depends_on else None
    return node


def make_manifest(*nodes: dict[str, Any], macros: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A manifest.json document from nodes made by ``manifest_node``."""
    return {
        "metadata": {"project_name": "p", "dbt_version": "1.11.0", "adapter_type": "duckdb", "invocation_id": "inv"},
        "nodes": {n["unique_id"]: n for n in nodes if n["resource_type"] != "source"},
        "sources": {n["unique_id"]: n for n in nodes if n["resource_type"] == "source"},
        "macros": {uid: {"macro_sql": sql, "depends_on": {"macros": []}} for uid, sql in (macros or {}).items()},
    }
