"""One Translator names tasks everywhere: a subclass renames them in tasks, dependencies, reports, diagrams, status."""

from __future__ import annotations

import json

import pytest

from factories import Workspace
from setup_tasks.api import get_system_status, run_doit, run_setup
from setup_tasks.naming import NamedNode, Translator


class Renamed(Translator):
    """A team's own naming: build-<name> for nodes, check:<name> for checks."""

    def task_name(self, node: NamedNode) -> str:
        return f"build-{node.name}"

    def check_task_name(self, check_name: str) -> str:
        return f"check:{check_name}"


def test_default_names_and_docs() -> None:
    node = type(
        "N",
        (),
        {
            "unique_id": "model.p.stg_x",
            "resource_type": "model",
            "name": "stg_x",
            "path": "models/stg_x.sql",
            "description": "Staged x. More words.",
        },
    )()
    translator = Translator()
    assert translator.task_name(node) == "model:stg_x"
    assert translator.doc(node) == "Build models/stg_x.sql: Staged x"
    assert translator.check_task_name("census_data_quality.duplicates") == "validate:census_data_quality.duplicates"
    assert translator.task_names([node]) == {"model.p.stg_x": "model:stg_x"}


@pytest.mark.slow
def test_a_subclass_renames_tasks_everywhere(shop: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    shop.write_config(
        validation={
            "custom_checks": [{"name": "orders_positive", "sql": "select * from stg_orders where amount_usd <= 0"}]
        }
    )
    result = run_setup(shop.config_path, translator=Renamed())
    assert result.success, result
    names = {t.name for t in result.tasks}
    assert {"build-stg_orders", "build-orders", "check:orders_positive"} <= names
    assert not any(n.startswith(("model:", "seed:", "validate:")) for n in names)

    report = json.loads(shop.db_path.with_suffix(".setup_report.json").read_text())
    assert {n["task"] for n in report["nodes"]} >= {"build-stg_orders", "build-customers"}

    capsys.readouterr()
    assert run_doit(["info", "check:orders_positive"], shop.config_path, translator=Renamed()) == 0
    info = capsys.readouterr().out
    assert "build-stg_orders" in info  # the check depends on the renamed node task

    assert run_doit(["graph"], shop.config_path, translator=Renamed()) == 0
    mermaid = shop.db_path.with_suffix(".setup_graph.mmd").read_text()
    assert "build-stg_orders" in mermaid and "check:orders_positive" in mermaid and "model:" not in mermaid

    status = get_system_status(shop.config_path, translator=Renamed())
    assert {n.task for n in status.nodes} >= {"build-stg_orders", "build-orders"}
