"""The setup DAG as Mermaid and DOT: stale marking, safe ids, validations, determinism."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from factories import FakeEngine, Workspace
from setup_tasks.naming import Translator
from setup_tasks.ops.diagram import Diagram, node_ids, setup_diagram, write_graph
from setup_tasks.engine.staleness import NodeStatus
from setup_tasks.errors import DatabaseLockedError
from setup_tasks.ops.status import node_statuses

STALE_ORDERS = {
    "model.shop.stg_orders": NodeStatus("model.shop.stg_orders", True, ('var changed: fx_rate (1 -> 2) "x"',))
}
SAFE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def diagram_of(engine: FakeEngine, validations: list[dict[str, Any]] | None = None) -> Diagram:
    return setup_diagram(engine, node_statuses(engine), Translator(), validations or [])


def mermaid_nodes(text: str) -> dict[str, str]:
    """Mermaid node id -> class."""
    return dict(re.findall(r"^  (\w+)\[.*\]:::(\w+)$", text, re.M))


def test_mermaid_marks_stale_nodes_and_draws_edges(tmp_path: Path) -> None:
    text = diagram_of(FakeEngine(tmp_path, STALE_ORDERS)).mermaid()
    assert text.startswith("%% setup DAG")
    assert "flowchart LR" in text
    classes = mermaid_nodes(text)
    assert classes["n_model_stg_orders"] == "stale"
    assert classes["n_seed_orders"] == "fresh"
    assert classes["n_source_events"] == "input"
    assert "  n_model_stg_orders --> n_model_stg_customer_orders" in text
    assert "  n_source_events --> n_model_stg_events" in text
    assert "fx_rate (1 -#gt; 2) #quot;x#quot;" in text  # reason shown, escaped


def test_dot_marks_stale_nodes_and_escapes_labels(tmp_path: Path) -> None:
    text = diagram_of(FakeEngine(tmp_path, STALE_ORDERS)).dot()
    assert text.startswith("// setup DAG") and text.rstrip().endswith("}")
    line = next(l for l in text.splitlines() if l.startswith("  n_model_stg_orders ["))
    assert 'class="stale"' in line and 'fillcolor="#fde2e1"' in line
    assert 'label="model:stg_orders\\nvar changed: fx_rate (1 -> 2) \\"x\\""' in line
    assert "  n_seed_orders -> n_model_stg_orders;" in text


def test_output_is_deterministic(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path, STALE_ORDERS)
    statuses = node_statuses(engine)
    first = setup_diagram(engine, statuses, Translator())
    second = setup_diagram(engine, dict(reversed(list(statuses.items()))), Translator())
    assert first.mermaid() == second.mermaid() and first.dot() == second.dot()
    assert [n.name for n in first.nodes] == sorted(n.name for n in first.nodes)


def test_unknown_when_staleness_could_not_be_checked(tmp_path: Path) -> None:
    error = DatabaseLockedError("w.duckdb", "python (PID 1)")
    statuses = {"seed.shop.orders": NodeStatus("seed.shop.orders", True, ("cannot check: locked",), error)}
    classes = mermaid_nodes(diagram_of(FakeEngine(tmp_path, statuses)).mermaid())
    assert classes["n_seed_orders"] == "unknown"


def test_ids_are_safe_and_unique() -> None:
    names = ["seed:a.b", "seed:a-b", "seed:a b", "model:ünï", 'validate:x"y', "end"]
    ids = node_ids(names)
    assert all(SAFE_ID.match(i) for i in ids.values())
    assert len(set(ids.values())) == len(names)
    assert ids["end"] != "end"  # a Mermaid keyword


def test_validation_tasks_are_drawn_after_what_they_check(tmp_path: Path) -> None:
    validations = [
        {"name": "validate:orders_positive", "task_dep": ["model:stg_orders", "setup"]},
        {"name": "validate:census", "task_dep": ["validate:orders_positive"]},
    ]
    diagram = diagram_of(FakeEngine(tmp_path), validations)
    text = diagram.mermaid()
    assert mermaid_nodes(text)["n_validate_orders_positive"] == "check"
    assert "  n_model_stg_orders --> n_validate_orders_positive" in text
    assert "  n_validate_orders_positive --> n_validate_census" in text
    assert "setup" not in {a for a, _ in diagram.edges}  # groups are not drawn


def test_files_go_beside_the_database_by_default(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path)
    mmd, dot = write_graph(engine, diagram_of(engine))
    assert (mmd, dot) == (tmp_path / "warehouse.setup_graph.mmd", tmp_path / "warehouse.setup_graph.dot")
    mmd2, _ = write_graph(engine, diagram_of(engine), str(tmp_path / "out"))
    assert mmd2 == tmp_path / "out" / "warehouse.setup_graph.mmd" and mmd2.read_text() == mmd.read_text()


@pytest.mark.slow
def test_doit_graph_on_a_built_project(built_shop: Workspace) -> None:
    shop = built_shop
    shop.set_vars(fx_rate=7)
    run = shop.doit("graph", json_report=False)
    assert run.returncode == 0, run.stderr
    mmd = shop.root / "warehouse.setup_graph.mmd"
    assert f"wrote {mmd}" in run.stdout
    classes = mermaid_nodes(mmd.read_text())
    assert {i for i, c in classes.items() if c == "stale"} == {"n_model_stg_orders", "n_model_stg_customer_orders"}
    assert classes["n_seed_customers"] == "fresh"
    edges = re.findall(r"^  (n_\w+) -> (n_\w+);$", (shop.root / "warehouse.setup_graph.dot").read_text(), re.M)
    assert len([e for e in edges if not e[1].startswith("n_validate")]) == 6
    assert ("n_model_stg_regions", "n_validate_staging_models_materialized") in edges
    assert sorted(r[2] for r in shop.tables()["stg_orders"]) == [
        6.0,
        14.5,
        24.0,
        41.0,
    ]  # built nothing: still fx_rate 2
