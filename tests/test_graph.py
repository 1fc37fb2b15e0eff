"""The manifest graph: selections, order, ephemeral walk-through, cycles, the memo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from factories import make_manifest, manifest_node as n
from setup_tasks.errors import GraphCycleError
from setup_tasks.project.graph import SetupGraph
from setup_tasks.store.caches import load_graph_memo, save_graph_memo
from setup_tasks.project.manifest import manifest_from_dict, parse_problems


def graph(*nodes, memo=None) -> SetupGraph:
    return SetupGraph.from_manifest(manifest_from_dict(make_manifest(*nodes)), memo)


DIAMOND = (
    n("seed.p.b"),
    n("seed.p.a"),
    n("model.p.left", ("seed.p.a",)),
    n("model.p.right", ("seed.p.a", "seed.p.b")),
    n("model.p.top", ("model.p.left", "model.p.right")),
    n("test.p.not_null_top", ("model.p.top",)),
    n("test.p.rel_left_right", ("model.p.left", "model.p.right")),
)


def test_topological_order_is_deterministic_with_ties_by_id() -> None:
    g = graph(*DIAMOND)
    order = g.topological(["model.p.top", "model.p.left", "model.p.right", "seed.p.a", "seed.p.b"])
    assert order == ["seed.p.a", "model.p.left", "seed.p.b", "model.p.right", "model.p.top"]
    assert graph(*reversed(DIAMOND)).topological(order) == order


def test_selection_with_ancestors_and_buildable() -> None:
    g = graph(*DIAMOND)
    assert g.with_ancestors(["model.p.left"]) == {"model.p.left", "seed.p.a"}
    assert g.buildable(g.with_ancestors(["model.p.top"]))[-1] == "model.p.top"
    assert g.descendants(["seed.p.b"]) == {
        "model.p.right",
        "model.p.top",
        "test.p.not_null_top",
        "test.p.rel_left_right",
    }


def test_tests_of_needs_every_parent_in_scope() -> None:
    g = graph(*DIAMOND)
    assert g.tests_of(["model.p.left"]) == []
    assert g.tests_of(["model.p.left", "model.p.right"]) == ["test.p.rel_left_right"]


def test_a_test_whose_ref_names_no_node_is_dbts_warning_not_a_test_to_run() -> None:
    # stg_regions renamed away: dbt keeps both tests, drops the missing node from depends_on, never runs them.
    relationships = n("test.p.rel_customers_regions", ("model.p.customers",))
    relationships["refs"] = [{"name": "customers", "package": None}, {"name": "regions", "package": None}]
    orphan = n("test.p.not_null_regions", ())
    orphan["refs"] = [{"name": "regions", "package": None}]
    sourced = n("test.p.not_null_raw", ())
    sourced["sources"] = [["raw", "gone"]]
    g = graph(n("model.p.customers"), relationships, orphan, sourced)
    assert g.nodes["test.p.rel_customers_regions"].unresolved == ("regions",)
    assert g.nodes["test.p.not_null_raw"].unresolved == ("raw.gone",)
    assert g.tests_of(["model.p.customers"]) == []
    assert g.unresolved_tests(["model.p.customers"]) == [
        "test.p.not_null_raw",
        "test.p.not_null_regions",
        "test.p.rel_customers_regions",
    ]
    assert g.unresolved_tests([]) == ["test.p.not_null_raw", "test.p.not_null_regions"]


def test_a_parse_that_disagrees_with_the_files_is_found(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "tests" / "generic").mkdir(parents=True)
    (tmp_path / "dbt_project.yml").write_text("name: p\n")
    for rel in ("models/a.sql", "models/b.sql", "tests/check_a.sql", "tests/generic/my_test.sql"):
        (tmp_path / rel).write_text("select 1")
    a, gone = n("model.p.a", path="models/a.sql"), n("model.p.gone", path="models/gone.sql")
    check = n("test.p.check_a", ("model.p.a",), path="tests/check_a.sql")
    for node in (a, gone, check):
        node["package_name"] = "p"
    raw = make_manifest(a, gone, check)
    assert parse_problems(raw, tmp_path) == ["models/gone.sql: no such file", "models/b.sql: no model parsed from it"]
    raw["nodes"].pop("model.p.gone")
    raw["disabled"] = {"model.p.b": [{**n("model.p.b", path="models/b.sql"), "package_name": "p"}]}
    assert parse_problems(raw, tmp_path) == []


def test_ephemeral_models_are_walked_through_to_real_parents() -> None:
    g = graph(
        n("source.p.raw.events", ()),
        n("seed.p.s"),
        n("model.p.eph", ("seed.p.s", "source.p.raw.events"), materialized="ephemeral"),
        n("model.p.out", ("model.p.eph",)),
    )
    assert g.built_parents("model.p.out") == ["seed.p.s", "source.p.raw.events"]
    assert "model.p.eph" not in g.buildable(g.with_ancestors(["model.p.out"]))


def test_cycle_is_reported_with_its_path() -> None:
    with pytest.raises(GraphCycleError) as err:
        graph(n("model.p.a", ("model.p.c",)), n("model.p.b", ("model.p.a",)), n("model.p.c", ("model.p.b",)))
    message = str(err.value)
    assert "-->" in message and message.count("model.p.") == 4


def test_memo_answers_without_recomputing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "memo.json"
    first = graph(*DIAMOND, memo=load_graph_memo(path, "inv"))
    answer = first.topological(None)
    save_graph_memo(path, first.memo)

    def recomputed(*args: object) -> None:
        raise AssertionError("the graph ordered its nodes again")

    # A verified memo answers: nothing is ordered again, networkx is not even imported.
    monkeypatch.setattr(SetupGraph, "_ordered", recomputed)
    monkeypatch.setitem(sys.modules, "networkx", None)
    again = graph(*DIAMOND, memo=load_graph_memo(path, "inv"))
    assert again.topological(None) == answer
    monkeypatch.undo()
    other = graph(*DIAMOND, memo=load_graph_memo(path, "another manifest"))
    assert not other.memo.verified  # a memo of another manifest is not trusted: the graph is checked again
    with pytest.raises(GraphCycleError):
        graph(n("model.p.x", ("model.p.y",)), n("model.p.y", ("model.p.x",)), memo=load_graph_memo(path, "another"))


def test_order_and_closures_are_networkx_answers_without_a_graph_of_the_whole_project() -> None:
    """Issue 21: a batch of 2 nodes built a networkx graph of every node (and checked it for cycles) to order
    them: 0.6 s of an edit at 1,000 models. Walking the nodes asked about gives networkx's answers."""
    import random

    import networkx as nx

    rng = random.Random(21)
    for _ in range(30):
        ids = [f"model.p.m{i:02d}" for i in range(40)]
        nodes = [n(uid, tuple(rng.sample(ids[:i], k=min(i, rng.randint(0, 3))))) for i, uid in enumerate(ids)]
        rng.shuffle(nodes)
        g = graph(*nodes)
        full = nx.DiGraph()
        full.add_nodes_from(ids)
        full.add_edges_from(
            (p, node["unique_id"])
            for node in (make_manifest(*nodes)["nodes"].values())
            for p in node["depends_on"]["nodes"]
        )
        subset = set(rng.sample(ids, k=rng.randint(1, 40)))
        assert g.topological(subset) == list(nx.lexicographical_topological_sort(full.subgraph(subset)))
        assert g.topological() == list(nx.lexicographical_topological_sort(full))
        assert g.ancestors(subset) == set().union(*(nx.ancestors(full, u) for u in subset))
        assert g.descendants(subset) == set().union(*(nx.descendants(full, u) for u in subset))
