"""Teams' own dbt repositories, made in temporary folders, and ways to run setup inside them (issue 14).

Unlike ``factories.Workspace`` (a fixture project driven from this repository), each
``TeamRepo`` is a dbt project as a team keeps it: its own ``profiles.yml`` (which may
ignore ``DUCKDB_PATH``), packages, sources. ``TeamRepo.init`` / ``TeamRepo.doit`` run
the interface a team uses, in its repository (subprocesses); ``TeamRepo.setup`` runs
the same tasks in this process through ``setup_tasks.api`` (dbt imported once per test
session), for the steps whose point is the engine rather than the command line.

    jaffle_shop   raw_customers -> stg_customers (view) --------------------> customers
                  raw_orders    -> stg_orders    (view) --+-> orders ---------^
                  raw_payments  -> stg_payments  (view) --/
                  profile: path 'jaffle_shop.duckdb' (fixed: ignores DUCKDB_PATH)

    analytics     raw_payments -> stg_payments (calls my_pkg.cents_to_dollars) -> payment_totals
                  raw_methods  -> stg_methods
                  packages.yml: - local: ../my_pkg

    shop_src      raw_orders    ~> source raw.raw_orders    -> stg_orders    --+-> orders_incremental
                  raw_customers ~> source raw.raw_customers -> stg_customers --/   (incremental)
                  (~> : no ref(): dbt's graph has no seed -> model edge)

    sales, hr     two projects, one database file (../shared.duckdb)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import duckdb
import yaml

from factories import REPO, DoitRun, clean_env, parse_json_report

NO_REPORTER = ("list", "info", "forget", "help")


def team_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a user in their own repository, importing this checkout's code.

    PYTHONPATH puts this worktree first: the package is also installed (editable) from
    the main checkout, and a subprocess whose cwd is the team's repository would import that.
    """
    env = clean_env(extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    return env


@dataclass
class TeamRepo:
    """A team's repository (``root``) holding a dbt project (``project``, may be ``root`` itself)."""

    root: Path
    project: Path
    profile_db: str  # the database file the team's profile names, relative to the project
    runs_in: Path | None = None  # where the team runs dbt (--project-dir from there), when not the project

    @property
    def home(self) -> Path:
        """Where the team runs dbt, and init writes dodo.py and setup.yaml."""
        return self.runs_in or self.project

    # -- the project ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return yaml.safe_load((self.project / "dbt_project.yml").read_text())["name"]

    @property
    def db_path(self) -> Path:
        """The database the team's own profile writes to (dbt resolves it from the project dir)."""
        return Path(os.path.normpath(self.project / self.profile_db))

    def seed(self, name: str, text: str) -> None:
        (self.project / "seeds" / f"{name}.csv").write_text(text)

    def write(self, relative: str, text: str) -> Path:
        path = self.project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    # -- the interface of issue 14 ---------------------------------------------------------------

    def init(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`python -m setup_tasks init` in the team's repository (or ``cwd``)."""
        return subprocess.run(
            [sys.executable, "-m", "setup_tasks", "init", *args],
            cwd=cwd or self.root,
            env=team_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def doit(
        self,
        *args: str,
        json_report: bool = True,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 300,
    ) -> DoitRun:
        """`doit ...` as the team runs it: where the team runs dbt, and `init` put dodo.py."""
        return _doit([], args, cwd or self.home, json_report, env, timeout)

    # -- the same tasks in this process ------------------------------------------------------------

    def setup(self, *tasks: str) -> Any:
        """`doit setup` (or ``tasks``) through the Python API, with the setup.yaml init wrote."""
        from setup_tasks.api import run_setup

        return run_setup(self.home / "setup.yaml", tasks=list(tasks) or None)

    # -- what dbt itself builds --------------------------------------------------------------------

    def dbt_reference(self, dest: Path, commands: tuple[tuple[str, ...], ...] = (("build",),)) -> Path:
        """Copy the project (and the local packages it names) under ``dest`` and build it as the team does:
        ``dbt deps`` first when it has packages, then ``commands`` (default ``dbt build``).

        dbt runs through its Python entry point in this process (what the CLI runs, without a
        second start-up per command), where the team runs it (``runs_in``, copied whole: dbt runs there
        with ``--project-dir``). Returns the database the copy's profile wrote.
        """
        ignored = shutil.ignore_patterns(
            "target",
            "logs",
            "dbt_packages",
            "*.duckdb",
            "*.duckdb.wal",
            ".planwise",
            "dodo.py",
            "setup.yaml",
            "__pycache__",
            "*.setup_report.json",
            "*.setup_history.jsonl",
        )
        home = dest / self.home.name
        shutil.copytree(self.home, home, ignore=ignored)  # runs_in holds the project, and what dbt reads there
        project = home / os.path.relpath(self.project, self.home)
        for package in local_packages(self.project):
            target = Path(os.path.normpath(project / package))
            if not target.exists():
                shutil.copytree(self.project / package, target)
        steps = ((("deps",),) if (project / "packages.yml").exists() else ()) + tuple(commands)
        for step in steps:
            run_dbt(home, *step, project_dir=os.path.relpath(project, home))
        return Path(os.path.normpath(project / self.profile_db))


def run_dbt(cwd: Path, *args: str, project_dir: str = ".") -> None:
    """``dbt <args> --project-dir <project_dir> --profiles-dir .`` in ``cwd``, as its team types it (in process)."""
    from dbt.cli.main import dbtRunner

    from setup_tasks.dbt.invoke import release_database

    saved = os.getcwd()
    os.chdir(cwd)
    try:
        result = dbtRunner().invoke(
            [*args, "--profiles-dir", ".", "--project-dir", project_dir, "--quiet", "--no-send-anonymous-usage-stats"]
        )
    finally:
        os.chdir(saved)
        release_database()  # dbt-duckdb keeps the file open in this process; tables() opens it read-only
    assert result.success, f"dbt {' '.join(args)} failed in {cwd}: {result.exception}"


def local_packages(project: Path) -> list[str]:
    """The ``local:`` entries of the project's packages.yml (paths relative to the project)."""
    path = project / "packages.yml"
    if not path.exists():
        return []
    return [p["local"] for p in (yaml.safe_load(path.read_text()) or {}).get("packages") or [] if "local" in p]


def _doit(
    loader: list[str],
    args: tuple[str, ...],
    cwd: Path,
    json_report: bool,
    env: Mapping[str, str] | None,
    timeout: float,
) -> DoitRun:
    command = args[0] if args else ""
    if command in NO_REPORTER:
        cmd = [sys.executable, "-m", "doit", command, *loader, *args[1:]]
        reporter = False
    else:
        reporter = json_report
        cmd = [sys.executable, "-m", "doit", *loader, *(["--reporter", "json"] if reporter else []), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=team_env(env), capture_output=True, text=True, timeout=timeout)
    run = DoitRun(proc.returncode, proc.stdout, proc.stderr)
    if reporter:
        run.results = parse_json_report(proc.stdout)
    return run


def tables(db_path: Path, schema: str = "main") -> dict[str, list[tuple[Any, ...]]]:
    """Every table's and view's rows, sorted: two databases built alike are equal when these are."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = ? order by 1", [schema]
            ).fetchall()
        ]
        return {n: sorted(con.execute(f'select * from "{schema}"."{n}"').fetchall(), key=repr) for n in names}
    finally:
        con.close()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _yaml(path: Path, data: Any) -> None:
    _write(path, yaml.safe_dump(data, sort_keys=False))


def _project(
    project: Path, name: str, profile_path: str, extra: Mapping[str, Any] | None = None, threads: int = 2
) -> None:
    _yaml(
        project / "dbt_project.yml",
        {
            "name": name,
            "version": "1.0.0",
            "config-version": 2,
            "profile": name,
            "model-paths": ["models"],
            "seed-paths": ["seeds"],
            "macro-paths": ["macros"],
            "test-paths": ["tests"],
            "target-path": "target",
            "clean-targets": ["target", "dbt_packages"],
            **(extra or {}),
        },
    )
    _yaml(
        project / "profiles.yml",
        {name: {"target": "dev", "outputs": {"dev": {"type": "duckdb", "path": profile_path, "threads": threads}}}},
    )


# -- jaffle_shop: seeds, staging views, marts; a profile with a fixed path ---------------------------------

JAFFLE_SEEDS = {
    "raw_customers": "id,first_name,last_name\n1,Michael,P.\n2,Shawn,M.\n3,Kathleen,P.\n4,Jimmy,C.\n",
    "raw_orders": (
        "id,user_id,order_date,status\n1,1,2018-01-01,returned\n2,3,2018-01-02,completed\n"
        "3,2,2018-01-04,completed\n4,1,2018-01-05,placed\n5,4,2018-01-07,shipped\n"
    ),
    "raw_payments": (
        "id,order_id,payment_method,amount\n1,1,credit_card,1000\n2,2,credit_card,2000\n"
        "3,3,coupon,100\n4,4,bank_transfer,2500\n5,4,coupon,500\n6,5,gift_card,1700\n"
    ),
}
JAFFLE_MODELS = {
    "models/staging/stg_customers.sql": (
        "select id as customer_id, first_name, last_name from {{ ref('raw_customers') }}\n"
    ),
    "models/staging/stg_orders.sql": (
        "select id as order_id, user_id as customer_id, order_date, status from {{ ref('raw_orders') }}\n"
    ),
    "models/staging/stg_payments.sql": (
        "select id as payment_id, order_id, payment_method,\n"
        "    -- amount is stored in cents, convert it to dollars\n"
        "    amount / 100 as amount\nfrom {{ ref('raw_payments') }}\n"
    ),
    "models/customers.sql": """
with customers as (select * from {{ ref('stg_customers') }}),
orders as (select * from {{ ref('stg_orders') }}),
payments as (select * from {{ ref('stg_payments') }}),
customer_orders as (
    select customer_id, min(order_date) as first_order, max(order_date) as most_recent_order,
           count(order_id) as number_of_orders
    from orders group by customer_id
),
customer_payments as (
    select orders.customer_id, sum(amount) as total_amount
    from payments left join orders on payments.order_id = orders.order_id
    group by orders.customer_id
)
select customers.customer_id, customers.first_name, customers.last_name,
       customer_orders.first_order, customer_orders.most_recent_order, customer_orders.number_of_orders,
       customer_payments.total_amount as customer_lifetime_value
from customers
left join customer_orders on customers.customer_id = customer_orders.customer_id
left join customer_payments on customers.customer_id = customer_payments.customer_id
""",
    "models/orders.sql": """
{% set payment_methods = ['credit_card', 'coupon', 'bank_transfer', 'gift_card'] %}
with orders as (select * from {{ ref('stg_orders') }}),
payments as (select * from {{ ref('stg_payments') }}),
order_payments as (
    select order_id,
        {% for payment_method in payment_methods -%}
        sum(case when payment_method = '{{ payment_method }}' then amount else 0 end) as {{ payment_method }}_amount,
        {% endfor -%}
        sum(amount) as total_amount
    from payments group by order_id
)
select orders.order_id, orders.customer_id, orders.order_date, orders.status,
    {% for payment_method in payment_methods -%}
    order_payments.{{ payment_method }}_amount,
    {% endfor -%}
    order_payments.total_amount as amount
from orders left join order_payments on orders.order_id = order_payments.order_id
""",
}
JAFFLE_SCHEMA = {
    "version": 2,
    "models": [
        {"name": "customers", "columns": [{"name": "customer_id", "data_tests": ["unique", "not_null"]}]},
        {
            "name": "orders",
            "columns": [
                {"name": "order_id", "data_tests": ["unique", "not_null"]},
                {
                    "name": "status",
                    "data_tests": [
                        {
                            "accepted_values": {
                                "arguments": {
                                    "values": ["placed", "shipped", "completed", "return_pending", "returned"]
                                }
                            }
                        }
                    ],
                },
            ],
        },
    ],
}
JAFFLE_NODES = {
    "seed:raw_customers",
    "seed:raw_orders",
    "seed:raw_payments",
    "model:stg_customers",
    "model:stg_orders",
    "model:stg_payments",
    "model:customers",
    "model:orders",
}


def write_jaffle_shop(parent: Path) -> TeamRepo:
    """dbt-labs' jaffle_shop_duckdb, in small: its profile names a fixed 'jaffle_shop.duckdb'."""
    root = parent / "jaffle_shop"
    _project(
        root,
        "jaffle_shop",
        "jaffle_shop.duckdb",
        {
            "models": {"jaffle_shop": {"+materialized": "table", "staging": {"+materialized": "view"}}},
        },
    )
    for name, text in JAFFLE_SEEDS.items():
        _write(root / "seeds" / f"{name}.csv", text)
    for rel, sql in JAFFLE_MODELS.items():
        _write(root / rel, sql)
    _yaml(root / "models" / "schema.yml", JAFFLE_SCHEMA)
    _write(root / ".gitignore", "target/\ndbt_packages/\nlogs/\n*.duckdb\n")
    return TeamRepo(root, root, "jaffle_shop.duckdb")


# -- a project with a local package whose macro a model calls ----------------------------------------------

CENTS_MACRO = "{% macro cents_to_dollars(column) %}({{ column }} / 100.0){% endmacro %}\n"
CENTS_MACRO_ROUNDED = "{% macro cents_to_dollars(column) %}round({{ column }} / 100.0, 0){% endmacro %}\n"
PACKAGE_NODES = {
    "seed:raw_payments",
    "seed:raw_methods",
    "model:stg_payments",
    "model:payment_totals",
    "model:stg_methods",
}


def write_local_package(parent: Path, name: str, macros: Mapping[str, str]) -> Path:
    package = parent / name
    _yaml(
        package / "dbt_project.yml", {"name": name, "version": "1.0.0", "config-version": 2, "macro-paths": ["macros"]}
    )
    for macro, text in macros.items():
        _write(package / "macros" / f"{macro}.sql", text)
    return package


def write_package_project(parent: Path) -> TeamRepo:
    """A project with `packages.yml` naming a local package; a model calls the package's macro."""
    write_local_package(parent, "my_pkg", {"cents_to_dollars": CENTS_MACRO})
    root = parent / "analytics"
    _project(root, "analytics", "analytics.duckdb", {"models": {"analytics": {"+materialized": "table"}}})
    _yaml(root / "packages.yml", {"packages": [{"local": "../my_pkg"}]})
    _write(root / "seeds" / "raw_payments.csv", "id,method,amount_cents\n1,card,1050\n2,cash,250\n3,card,799\n")
    _write(root / "seeds" / "raw_methods.csv", "method,label\ncard,Credit card\ncash,Cash\n")
    _write(
        root / "models" / "stg_payments.sql",
        "select id, method, {{ my_pkg.cents_to_dollars('amount_cents') }} as amount from {{ ref('raw_payments') }}\n",
    )
    _write(
        root / "models" / "payment_totals.sql",
        "select method, sum(amount) as total from {{ ref('stg_payments') }} group by method\n",
    )
    _write(root / "models" / "stg_methods.sql", "select method, upper(label) as label from {{ ref('raw_methods') }}\n")
    return TeamRepo(root, root, "analytics.duckdb")


def add_local_package(repo: TeamRepo, name: str) -> None:
    """A second local package in packages.yml (dbt deps must run again)."""
    write_local_package(repo.root.parent, name, {f"{name}_noop": f"{{% macro {name}_noop() %}}1{{% endmacro %}}\n"})
    packages = yaml.safe_load((repo.project / "packages.yml").read_text())
    packages["packages"].append({"local": f"../{name}"})
    _yaml(repo.project / "packages.yml", packages)


UNREACHABLE_GIT = "https://packages.invalid/dbt-labs/dbt-utils.git"  # .invalid never resolves (RFC 2606)


def write_unreachable_package_project(parent: Path) -> TeamRepo:
    """Needs a package host that cannot be reached: `dbt deps` fails on the network, anywhere."""
    root = parent / "far_team"
    _project(root, "far_team", "far_team.duckdb")
    _yaml(root / "packages.yml", {"packages": [{"git": UNREACHABLE_GIT, "revision": "1.3.0"}]})
    _write(root / "seeds" / "raw_items.csv", "id\n1\n2\n")
    _write(root / "models" / "items.sql", "select id from {{ ref('raw_items') }}\n")
    return TeamRepo(root, root, "far_team.duckdb")


# -- a project reading its seeds through source(), with an incremental model downstream ---------------------

SOURCE_SEEDS = {
    "raw_orders": "id,customer_id,order_date,amount\n1,1,2024-01-01,10.0\n2,2,2024-01-02,20.0\n3,1,2024-01-03,5.5\n",
    "raw_customers": "id,name\n1,Ada\n2,Brian\n",
}
SOURCE_SOURCES = {
    "version": 2,
    "sources": [
        {
            "name": "raw",
            "schema": "main",
            "description": "Loaded by `dbt seed`",
            "tables": [{"name": "raw_orders"}, {"name": "raw_customers"}],
        }
    ],
}
INCREMENTAL_SQL = """{{ config(materialized='incremental', unique_key='order_id') }}
select o.order_id, o.order_date, o.amount, c.name as customer
from {{ ref('stg_orders') }} o join {{ ref('stg_customers') }} c on c.customer_id = o.customer_id
{% if is_incremental() %}
where o.order_date > (select max(order_date) from {{ this }})
{% endif %}
"""
SOURCE_NODES = {
    "seed:raw_orders",
    "seed:raw_customers",
    "model:stg_orders",
    "model:stg_customers",
    "model:orders_incremental",
}


def write_source_seed_project(parent: Path) -> TeamRepo:
    """Seeds read through `source()` (sources.yml lists the seed tables), an incremental model downstream."""
    root = parent / "shop_src"
    _project(
        root,
        "shop_src",
        "{{ env_var('DUCKDB_PATH', 'shop_src.duckdb') }}",
        {"models": {"shop_src": {"+materialized": "table"}}},
        threads=1,
    )
    for name, text in SOURCE_SEEDS.items():
        _write(root / "seeds" / f"{name}.csv", text)
    _yaml(root / "models" / "sources.yml", SOURCE_SOURCES)
    _write(
        root / "models" / "stg_orders.sql",
        "select id as order_id, customer_id, cast(order_date as date) as order_date, amount\n"
        "from {{ source('raw', 'raw_orders') }}\n",
    )
    _write(
        root / "models" / "stg_customers.sql",
        "select id as customer_id, name from {{ source('raw', 'raw_customers') }}\n",
    )
    _write(root / "models" / "orders_incremental.sql", INCREMENTAL_SQL)
    return TeamRepo(root, root, "shop_src.duckdb")


# -- two projects, one database -------------------------------------------------------------------------------

SHARED_DB = "../shared.duckdb"


def write_shared_projects(parent: Path) -> tuple[TeamRepo, TeamRepo]:
    """Projects 'sales' and 'hr' whose profiles both write ``<parent>/shared.duckdb``."""
    repos = []
    for name, seed, csv_text, model, sql in (
        (
            "sales",
            "sales_raw",
            "id,amount\n1,10\n2,32\n",
            "sales_total",
            "select count(*) as orders, sum(amount) as amount from {{ ref('sales_raw') }}\n",
        ),
        (
            "hr",
            "hr_raw",
            "id,dept\n1,ops\n2,ops\n3,it\n",
            "hr_headcount",
            "select dept, count(*) as people from {{ ref('hr_raw') }} group by dept\n",
        ),
    ):
        root = parent / name
        _project(
            root,
            name,
            f"{{{{ env_var('DUCKDB_PATH', '{SHARED_DB}') }}}}",
            {"models": {name: {"+materialized": "table"}}},
        )
        _write(root / "seeds" / f"{seed}.csv", csv_text)
        _write(root / "models" / f"{model}.sql", sql)
        repos.append(TeamRepo(root, root, SHARED_DB))
    return repos[0], repos[1]


# -- a PlanWise-shaped project: the demo, plus a mart the simulation builds ----------------------------------------


def write_planwise_project(parent: Path) -> TeamRepo:
    """A copy of this repository's demo project (staging folder, PlanWise tables) with one mart outside staging."""
    root = parent / "planwise_team"
    shutil.copytree(REPO / "dbt", root, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb", "dbt_packages"))
    _write(
        root / "models" / "marts" / "fct_workforce_snapshot.sql",
        "select * from {{ ref('stg_census_data') }} where {{ var('simulation_year', 2025) }} > 0\n",
    )
    return TeamRepo(root, root, "../simulation.duckdb")


# -- the PlanWise team's own repository: its own census, its own var, job levels without the generator's column ---

OWN_CENSUS = "data/census_preprocessed.parquet"  # where the team keeps its extract (relative to where dbt runs)
OWN_CENSUS_EMPLOYEES = 1500


def write_planwise_own_census(parent: Path) -> TeamRepo:
    """A PlanWise project as its team keeps it (issue 25, item 1): dbt_project.yml sets
    ``census_parquet_path: 'data/census_preprocessed.parquet'``, the repository ships that parquet (no
    provenance: not the generator's file), the census source reads ``{{ var('census_parquet_path') }}``,
    and config_job_levels has no target_distribution column (the generator cannot draw from it)."""
    from setup_tasks.engine.census import generate_census

    repo = write_planwise_project(parent)
    root = repo.project
    (root / "models" / "marts" / "fct_workforce_snapshot.sql").unlink()
    (root / "models" / "marts").rmdir()
    project_yml = (root / "dbt_project.yml").read_text()
    project_yml = project_yml.replace("vars:\n", f"vars:\n  census_parquet_path: '{OWN_CENSUS}'\n", 1)
    _write(root / "dbt_project.yml", project_yml)
    sources = yaml.safe_load((root / "models" / "staging" / "sources.yml").read_text())
    sources["sources"][0]["tables"][0]["config"]["meta"]["external_location"] = "{{ var('census_parquet_path') }}"
    _yaml(root / "models" / "staging" / "sources.yml", sources)
    _drop_target_distribution(root)
    scratch = parent / "generated_census.parquet"
    generate_census(scratch, employees=OWN_CENSUS_EMPLOYEES, seed=11)
    (root / "data").mkdir()
    con = duckdb.connect()
    try:  # the team's extract: the same columns, without the generator's provenance
        con.execute(f"COPY (SELECT * FROM read_parquet('{scratch}')) TO '{root / OWN_CENSUS}' (FORMAT parquet)")
    finally:
        con.close()
    scratch.unlink()
    return TeamRepo(root, root, "simulation.duckdb")


def _drop_target_distribution(root: Path) -> None:
    """config_job_levels without target_distribution: the seed, its column types, its model and its tests."""
    seed = root / "seeds" / "config_job_levels.csv"
    lines = [line.rsplit(",", 1)[0] for line in seed.read_text().splitlines()]
    assert lines[0].endswith("target_bonus_percent"), lines[0]
    _write(seed, "\n".join(lines) + "\n")
    properties = root / "seeds" / "properties.yml"
    _write(properties, properties.read_text().replace("        target_distribution: decimal(8,4)\n", ""))
    model = root / "models" / "staging" / "stg_config_job_levels.sql"
    _write(model, model.read_text().replace(",\n    target_distribution", ""))
    schema_path = root / "models" / "staging" / "schema.yml"
    schema = yaml.safe_load(schema_path.read_text())
    for entry in schema["models"]:
        entry["columns"] = [c for c in entry.get("columns") or [] if c["name"] != "target_distribution"]
    _yaml(schema_path, schema)


# -- a repository with its dbt project in a subfolder, profiles.yml and data at the root --------------------------
# (khozzy/dbt-duckdb-recipies, in small: `dbt build --project-dir dbt_project` from the root)

SUBFOLDER_DATA = {
    "data/returns.csv": "return_id,sale_id,return_date,qty_returned\n1,2,2024-02-03,1\n2,4,2024-02-10,2\n",
    "data/sales.csv": (
        "sale_id,sale_date,product_id,qty_sold\n1,2024-01-05,1,3\n2,2024-01-06,2,1\n"
        "3,2024-01-07,1,5\n4,2024-01-09,3,2\n"
    ),
    "data/products/products_1.json": (
        '[{"id": 1, "name": "kettle", "sku": "K-1"}, {"id": 2, "name": "pan", "sku": "P-2"}]\n'
    ),
    "data/products/products_2.json": '[{"id": 3, "name": "wok", "sku": "W-3"}]\n',
    "data/regions.csv": "region_id,name\n1,north\n2,south\n",
}
SUBFOLDER_SOURCES = {
    "version": 2,
    "sources": [
        {
            "name": "csv_files",
            "tables": [
                {
                    "name": "returns",
                    "meta": {
                        "formatter": "oldstyle",
                        "external_location": (
                            "read_csv('data/returns.csv', columns={'return_id': 'integer', 'sale_id': 'integer', "
                            "'return_date': 'date', 'qty_returned': 'integer'}, header=true)"
                        ),
                    },
                },
                {
                    "name": "sales",
                    "meta": {
                        "formatter": "oldstyle",
                        "external_location": (
                            "read_csv('data/sales.csv', columns={'sale_id': 'integer', 'sale_date': 'date', "
                            "'product_id': 'integer', 'qty_sold': 'integer'}, header=true)"
                        ),
                    },
                },
            ],
        },
        {
            "name": "json_files",
            "tables": [
                {
                    "name": "products",
                    "meta": {
                        "formatter": "oldstyle",
                        "external_location": (
                            "read_json('data/products/*.json', "
                            "columns={id: 'integer', name: 'varchar', sku: 'varchar'})"
                        ),
                    },
                },
            ],
        },
    ],
}
SUBFOLDER_MODELS = {
    "macros/surrogate_key.sql": (
        "{% macro surrogate_key(name, columns) %}"
        "md5(concat_ws('|', {{ columns | join(', ') }})) as _KEY_{{ name }}{% endmacro %}\n"
    ),
    "models/raw/returns.sql": "SELECT * FROM {{ source('csv_files', 'returns') }}\n",
    "models/raw/sales.sql": "SELECT * FROM {{ source('csv_files', 'sales') }}\n",
    "models/raw/products.sql": "SELECT * FROM {{ source('json_files', 'products') }}\n",
    # a model reading a file itself, with a columns map (issue 25, item 3)
    "models/raw/regions.sql": (
        "SELECT * FROM read_csv('data/regions.csv', columns={'region_id': 'INTEGER', 'name': 'VARCHAR'}, header=true)\n"
    ),
    "models/staging/stg_returns.sql": (
        "select {{ surrogate_key('Return', ['return_id']) }}, {{ surrogate_key('Sale', ['sale_id']) }}, *\n"
        "from {{ ref('returns') }}\n"
    ),
    "models/staging/stg_sales.sql": (
        "select {{ surrogate_key('Sale', ['sale_id']) }}, {{ surrogate_key('Product', ['product_id']) }}, *\n"
        "from {{ ref('sales') }}\n"
    ),
    "models/staging/stg_products.sql": (
        "select {{ surrogate_key('Product', ['id']) }}, * from {{ ref('products') }}\n"
    ),
    "models/marts/returns_bridge.sql": (
        "select 'stg_sales' as stage, _KEY_Sale, null as _KEY_Return, _KEY_Product, qty_sold, null as qty_returned\n"
        "from {{ ref('stg_sales') }}\n"
        "union all by name\n"
        "select 'stg_returns' as stage, _KEY_Sale, _KEY_Return, null as _KEY_Product, null as qty_sold, qty_returned\n"
        "from {{ ref('stg_returns') }}\n"
    ),
}
SUBFOLDER_NODES = {
    "model:returns",
    "model:sales",
    "model:products",
    "model:regions",
    "model:stg_returns",
    "model:stg_sales",
    "model:stg_products",
    "model:returns_bridge",
}


def write_subfolder_project(parent: Path) -> TeamRepo:
    """The dbt project in ``dbt_project/``; profiles.yml (a relative ``path: dev.duckdb``) and the data
    its sources and a model read (relative paths) at the repository root, where the team runs dbt. No seeds."""
    root = parent / "recipes"
    project = root / "dbt_project"
    _yaml(
        project / "dbt_project.yml",
        {
            "name": "uss_duckdb",
            "version": "1.0.0",
            "config-version": 2,
            "profile": "uss_duckdb",
            "model-paths": ["models"],
            "seed-paths": ["seeds"],
            "macro-paths": ["macros"],
            "test-paths": ["tests"],
            "clean-targets": ["target", "dbt_packages"],
            "models": {"uss_duckdb": {"raw": {"+materialized": "table"}}},
        },
    )
    _yaml(
        root / "profiles.yml",
        {
            "uss_duckdb": {
                "target": "dev",
                "outputs": {"dev": {"type": "duckdb", "path": "dev.duckdb", "schema": "main", "threads": 1}},
            }
        },
    )
    _yaml(project / "models" / "properties.yml", SUBFOLDER_SOURCES)
    for rel, text in SUBFOLDER_MODELS.items():
        _write(project / rel, text)
    for rel, text in SUBFOLDER_DATA.items():
        _write(root / rel, text)
    return TeamRepo(root, project, "../dev.duckdb", runs_in=root)


def described(
    db_path: Path, schema: str = "main"
) -> dict[str, tuple[tuple[tuple[str, str], ...], list[tuple[Any, ...]]]]:
    """Every table and view: its columns with their types, in order, and its rows, sorted. Two databases
    built alike (names, columns, types, rows) are equal when these are."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = ? order by 1", [schema]
            ).fetchall()
        ]
        found = {}
        for name in names:
            columns = tuple(
                con.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = ? and table_name = ? order by ordinal_position",
                    [schema, name],
                ).fetchall()
            )
            rows = sorted(con.execute(f'select * from "{schema}"."{name}"').fetchall(), key=repr)
            found[name] = (columns, rows)
        return found
    finally:
        con.close()
