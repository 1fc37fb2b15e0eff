"""Property: whatever is edited between two setups, setup's database equals a fresh `dbt build`.

The differential test of issue 20 ("Equal to dbt, by construction and by proof"), drawn at random: a
small project whose nodes read what a compile can read (a var, an environment variable, the target,
a macro, a model's meta, an ephemeral model), compute what the connection settles (integer division,
the time zone), load seeds with their configs, and test with dbt's test configs; then a sequence of
edits from that vocabulary, a setup after each. The last one is compared with a fresh `dbt build` of
the same files through `doit verify`'s comparison: every relation's columns, types and rows, every
test outcome. The explicit examples chain every edit; random draws stop once their budget is spent.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from factories import Workspace, write_shop_project
from setup_tasks.api import run_setup, verify_setup
from test_property import BUDGET_SECONDS as PROPERTY_BUDGET, budget_spent, random_draw

pytestmark = pytest.mark.slow

BUDGET_SECONDS = PROPERTY_BUDGET * 0.6
ENV = "SHOP_CHANNEL"

MODELS = {
    "by_channel": "select '{{ env_var('" + ENV + "', 'web') }}' as channel, "
    "{{ var('fx_rate') }} * 10 as rate, '{{ target.name }}' as target, count(*) as n from {{ ref('orders') }}",
    "halves": "select o.id, amount::int / 2 as half, {{ shout('name') }} as who from {{ ref('stg_customers_e') }} c "
    "join {{ ref('orders') }} o on o.customer_id = c.id",
    "stg_customers_e": "{{ config(materialized='ephemeral') }}\nselect id, name from {{ ref('customers') }}",
    "stamped": "select '{{ config.get('meta', {}).get('owner', 'nobody') }}' as owner, "
    "strftime(timestamptz '2024-01-01 12:00:00+00', '%H') as hour",
}
MACRO = "{% macro shout(x) %}upper({{ x }}){% endmacro %}"
TESTS = {
    "version": 2,
    "models": [
        {"name": "halves", "columns": [{"name": "half", "tests": [{"not_null": {"config": {}}}]}]},
        {"name": "stg_customers", "columns": [{"name": "id", "tests": [{"unique": {"config": {}}}]}]},
    ],
}
SEEDS_CONFIG: dict[str, Any] = {"shop": {"orders": {}}}


class Project:
    """The project of the property and the edits a user makes to it."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.env: dict[str, str] = {}
        for name, sql in MODELS.items():
            ws.model(name, sql)
        (ws.project / "macros").mkdir(exist_ok=True)
        (ws.project / "macros" / "shout.sql").write_text(MACRO)
        self.tests = yaml.safe_load(yaml.safe_dump(TESTS))
        self.meta = "ann"
        self.write_yml()
        self.profile(lambda p: p["outputs"].__setitem__("prod", dict(p["outputs"]["dev"])))

    # -- files -------------------------------------------------------------------------------

    def write_yml(self) -> None:
        data = {
            **self.tests,
            "models": [*self.tests["models"], {"name": "stamped", "config": {"meta": {"owner": self.meta}}}],
        }
        (self.ws.project / "models" / "staging" / "props.yml").write_text(yaml.safe_dump(data, sort_keys=False))

    def project_yaml(self, change: Callable[[dict[str, Any]], None]) -> None:
        path = self.ws.project / "dbt_project.yml"
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def profile(self, change: Callable[[dict[str, Any]], None]) -> None:
        path = self.ws.project / "profiles.yml"
        data = yaml.safe_load(path.read_text())
        change(data["shop"])
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def seed_config(self, **config: Any) -> None:
        self.project_yaml(
            lambda d: (
                d.setdefault("seeds", {})
                .setdefault("shop", {})
                .setdefault("orders", {})
                .update({f"+{k}": v for k, v in config.items()})
            )
        )

    def test_config(self, **config: Any) -> None:
        self.tests["models"][0]["columns"][0]["tests"][0]["not_null"]["config"].update(config)
        self.write_yml()

    # -- the edits -----------------------------------------------------------------------------

    def apply(self, edit: tuple[str, Any]) -> None:
        name, value = edit
        getattr(self, f"edit_{name}")(value)

    def edit_var(self, rate: int) -> None:
        self.ws.set_vars(fx_rate=rate)

    def edit_env(self, channel: str | None) -> None:
        if channel is None:
            self.env.pop(ENV, None)
        else:
            self.env[ENV] = channel

    def edit_target(self, target: str) -> None:
        self.profile(lambda p: p.update(target=target))

    def edit_macro(self, body: str) -> None:
        (self.ws.project / "macros" / "shout.sql").write_text("{% macro shout(x) %}" + body + "{% endmacro %}")

    def edit_meta(self, owner: str) -> None:
        self.meta = owner
        self.write_yml()

    def edit_ephemeral(self, sql: str) -> None:
        self.ws.model("stg_customers_e", "{{ config(materialized='ephemeral') }}\n" + sql)

    def edit_materialized(self, kind: str) -> None:
        text = (self.ws.project / "models" / "staging" / "stg_customers.sql").read_text().split("\n")[-1]
        self.ws.model("stg_customers", f"{{{{ config(materialized='{kind}') }}}}\n{text}")

    def edit_settings(self, settings: dict[str, str]) -> None:
        self.profile(lambda p: p["outputs"]["dev"].update(settings=dict(settings)))

    def edit_orders(self, rows: list[tuple[int, str]]) -> None:
        lines = "".join(f"{10 + i},{1 + i % 3},{amount}\n" for i, (_, amount) in enumerate(rows))
        self.ws.seed("orders", "id,customer_id,amount\n" + lines)

    def edit_seed_fast(self, fast: bool) -> None:
        self.seed_config(fast=fast)

    def edit_column_types(self, kind: str | None) -> None:
        self.seed_config(column_types={"amount": kind} if kind else {})

    def edit_severity(self, severity: str) -> None:
        self.test_config(severity=severity)

    def edit_where(self, where: str | None) -> None:
        self.test_config(where=where)

    def edit_thresholds(self, values: tuple[str, str]) -> None:
        self.test_config(warn_if=values[0], error_if=values[1])


AMOUNTS = st.sampled_from(["20.5", "7", "", "null", "NULL", "3.25", "-1", "1e3"])
EDIT_VALUES = {
    "var": st.integers(1, 4),
    "env": st.one_of(st.none(), st.sampled_from(["web", "store", "phone"])),
    "target": st.sampled_from(["dev", "prod"]),
    "macro": st.sampled_from(["upper({{ x }})", "lower({{ x }})", "{{ x }} || '!'"]),
    "meta": st.sampled_from(["ann", "bob", "cy"]),
    "ephemeral": st.sampled_from(
        [
            "select id, name from {{ ref('customers') }}",
            "select id, name || '?' as name from {{ ref('customers') }} where id > 1",
        ]
    ),
    "materialized": st.sampled_from(["table", "view", "ephemeral"]),
    "settings": st.sampled_from(
        [
            {},
            {"integer_division": "true"},
            {"TimeZone": "Asia/Tokyo"},
            {"integer_division": "true", "TimeZone": "America/New_York"},
        ]
    ),
    "orders": st.lists(st.tuples(st.just(0), AMOUNTS), min_size=1, max_size=4),
    "seed_fast": st.booleans(),
    "column_types": st.sampled_from([None, "varchar", "double", "decimal(10,2)"]),
    "severity": st.sampled_from(["warn", "error"]),
    "where": st.sampled_from([None, "id > 10", "half > 1"]),
    "thresholds": st.sampled_from([("!= 0", "!= 0"), (">= 1", "> 2"), ("> 5", "> 10")]),
}
EDITS = st.one_of(*(st.tuples(st.just(name), values) for name, values in EDIT_VALUES.items()))
# Every edit of the vocabulary, in two chains.
EXPLICIT = [
    [
        ("var", 3),
        ("env", "store"),
        ("target", "prod"),
        ("macro", "lower({{ x }})"),
        ("meta", "bob"),
        ("ephemeral", "select id, name || '?' as name from {{ ref('customers') }} where id > 1"),
        ("materialized", "view"),
        ("settings", {"integer_division": "true", "TimeZone": "America/New_York"}),
    ],
    [
        ("orders", [(0, "null"), (0, "7"), (0, "")]),
        ("seed_fast", False),
        ("column_types", "varchar"),
        ("severity", "warn"),
        ("where", "half > 1"),
        ("thresholds", (">= 1", "> 2")),
        ("materialized", "ephemeral"),
    ],
    # Found by a random draw: the seed ends refused by its column type, so dbt's fresh build fails it and
    # skips what reads it and their tests, where setup keeps the tables and their tests' outcomes.
    [("thresholds", ("> 5", "> 10")), ("orders", [(0, "null")])],
]


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    print_blob=True,
)
@given(edits=st.lists(EDITS, min_size=1, max_size=3))
@example(edits=EXPLICIT[2])
@example(edits=EXPLICIT[1])
@example(edits=EXPLICIT[0])
def test_setup_after_any_edits_equals_a_fresh_dbt_build(edits: list[tuple[str, Any]]) -> None:
    if random_draw("dbt", len(EXPLICIT)) and budget_spent("dbt", BUDGET_SECONDS):
        return  # the suite must stay under its time limit: this draw is skipped
    saved = {k: os.environ.get(k) for k in (ENV,)}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project = Project(write_shop_project(Path(tmp) / "ws"))
            first = run_setup(project.ws.config_path)
            assert first.exit_code in (0, 1), first.error
            for edit in edits:
                project.apply(edit)
                for key in saved:
                    os.environ.pop(key, None)
                os.environ.update(project.env)
                result = run_setup(project.ws.config_path)
                assert result.exit_code in (0, 1) and "Traceback" not in result.error, result.error
            verification = verify_setup(project.ws.config_path)
            unexplained = [d for d in verification.differences if d.kind != "kept"]
            assert not unexplained, "\n".join(verification.lines())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
