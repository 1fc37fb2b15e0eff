"""`doit graph`: the setup DAG as Mermaid and Graphviz DOT files, stale nodes marked.

The diagram holds the seeds and models setup builds, the sources they read and the
validation tasks (``validate:*``), with an edge from each node to what reads it.
Output is sorted, so the same project in the same state always gives the same files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..engine.engine import Engine
from ..engine.staleness import NodeStatus
from ..naming import Translator
from ..files import SHARED, write_text_atomic
from .run_report import task_names

# state -> (Mermaid classDef style, DOT fill colour)
STYLES: Mapping[str, tuple[str, str]] = {
    "stale": ("fill:#fde2e1,stroke:#c0392b,color:#000", "#fde2e1"),
    "fresh": ("fill:#e3f4e1,stroke:#27ae60,color:#000", "#e3f4e1"),
    "unknown": ("fill:#eeeeee,stroke:#888888,color:#000", "#eeeeee"),
    "input": ("fill:#ffffff,stroke:#888888,color:#000", "#ffffff"),
    "check": ("fill:#e8eaf6,stroke:#3949ab,color:#000", "#e8eaf6"),
}


@dataclass(frozen=True)
class DiagramNode:
    name: str  # the doit task name, or source:<name> for inputs
    state: str  # a key of STYLES
    note: str = ""  # why it is stale, shown under the name


@dataclass(frozen=True)
class Diagram:
    nodes: tuple[DiagramNode, ...]
    edges: tuple[tuple[str, str], ...]

    def ids(self) -> dict[str, str]:
        return node_ids(n.name for n in self.nodes)

    def mermaid(self) -> str:
        ids = self.ids()
        lines = ["%% setup DAG, written by `doit graph`", "flowchart LR"]
        lines += [f"  classDef {state} {style}" for state, (style, _) in STYLES.items()]
        for node in self.nodes:
            label = mermaid_text(node.name) + (f"<br/>{mermaid_text(node.note)}" if node.note else "")
            lines.append(f'  {ids[node.name]}["{label}"]:::{node.state}')
        lines += [f"  {ids[a]} --> {ids[b]}" for a, b in self.edges]
        return "\n".join(lines) + "\n"

    def dot(self) -> str:
        ids = self.ids()
        lines = [
            "// setup DAG, written by `doit graph`",
            "digraph setup {",
            "  rankdir=LR;",
            '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        ]
        for node in self.nodes:
            label = dot_text(node.name) + (f"\\n{dot_text(node.note)}" if node.note else "")
            lines.append(
                f'  {ids[node.name]} [label="{label}", fillcolor="{STYLES[node.state][1]}", class="{node.state}"];'
            )
        lines += [f"  {ids[a]} -> {ids[b]};" for a, b in self.edges]
        return "\n".join(lines) + "\n}\n"


def node_ids(names: Iterable[str]) -> dict[str, str]:
    """Identifiers safe in Mermaid and DOT (letters, digits, _), unique, in name order."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted(set(names)):
        base = "n_" + re.sub(r"\W", "_", name, flags=re.ASCII)
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}_{n}", n + 1
        ids[name] = candidate
        taken.add(candidate)
    return ids


def mermaid_text(text: str) -> str:
    for char, entity in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, entity)
    return text


def dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def node_state(status: NodeStatus | None) -> tuple[str, str]:
    if status is None:
        return "unknown", ""
    if status.error is not None:
        return "unknown", status.reason
    return ("stale", status.reason) if status.stale else ("fresh", "")


def setup_diagram(
    engine: Engine,
    statuses: Mapping[str, NodeStatus],
    translator: Translator,
    validations: Iterable[Mapping[str, Any]] = (),
) -> Diagram:
    """The setup nodes, their sources and the validation tasks, with staleness from ``statuses``.

    ``validations`` are the check tasks: ``{"name": ..., "task_dep": [...]}``.
    """
    names = task_names(engine, translator)
    nodes: dict[str, DiagramNode] = {}
    edges: set[tuple[str, str]] = set()
    for uid in engine.setup_nodes:
        nodes[names[uid]] = DiagramNode(names[uid], *node_state(statuses.get(uid)))
        for parent in engine.graph.built_parents(uid):
            node = engine.node(parent)
            parent_name = names.get(parent) or f"{node.resource_type}:{node.name}"
            nodes.setdefault(parent_name, DiagramNode(parent_name, "input"))
            edges.add((parent_name, names[uid]))
    for task in validations:
        nodes[task["name"]] = DiagramNode(task["name"], "check")
        edges.update((dep, task["name"]) for dep in task.get("task_dep", ()))
    known = sorted((a, b) for a, b in edges if a in nodes and b in nodes)  # groups and plans are not drawn
    return Diagram(tuple(nodes[n] for n in sorted(nodes)), tuple(known))


def graph_paths(engine: Engine, out_dir: str = "") -> tuple[Path, Path]:
    """Default: beside the database, named after it (warehouse.setup_graph.mmd / .dot)."""
    stem = engine.db_path.with_suffix(".setup_graph").name
    folder = Path(out_dir) if out_dir else engine.db_path.parent
    return folder / f"{stem}.mmd", folder / f"{stem}.dot"


def write_graph(engine: Engine, diagram: Diagram, out_dir: str = "") -> tuple[Path, Path]:
    mmd, dot = graph_paths(engine, out_dir)
    write_text_atomic(mmd, diagram.mermaid(), SHARED)  # for people to open and share: not private
    write_text_atomic(dot, diagram.dot(), SHARED)
    return mmd, dot
