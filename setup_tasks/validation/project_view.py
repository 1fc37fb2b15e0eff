"""The dbt project as checks see it: its nodes, what setup builds, the tests on them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from .engine_port import CheckEngine
from ..engine.run_state import input_state_of
from ..project.manifest import Node


@dataclass(frozen=True)
class ProjectView:
    """The parts of the dbt project checks need: where it is, its nodes, what setup builds."""

    project_dir: Path
    nodes: Mapping[str, Node]
    setup_nodes: tuple[str, ...] = ()
    foundation_nodes: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()  # the dbt tests setup runs (``engine.definitions.Definitions.tests``)
    unresolved_tests: tuple[str, ...] = ()  # tests dbt warns about and never runs (a ref() to no node)

    @classmethod
    def from_engine(cls, engine: CheckEngine) -> "ProjectView":
        """The engine's project (make it once per engine: ``validation.scope.ValidationScope`` does)."""
        return cls(
            engine.ctx.project_dir,
            engine.manifest.nodes,
            tuple(engine.setup_nodes),
            tuple(engine.foundation_nodes),
            tuple(engine.definitions.tests()),
            tuple(
                u
                for u in engine.graph.unresolved_tests(engine.definitions.test_scope())
                if engine.node(u).package == engine.manifest.project_name
            ),
        )

    def selected(self, *resource_types: str) -> list[Node]:
        """Nodes setup builds, of the given types, in build order."""
        return [self.nodes[u] for u in self.setup_nodes if self.nodes[u].resource_type in resource_types]

    @cached_property
    def _tables(self) -> dict[tuple[str, ...], list[Node]]:
        """Each name a table answers to ('t', 's.t', 'db.s.t' as parts, lower case) -> its nodes, builders first."""
        index: dict[tuple[str, ...], list[Node]] = {}
        for n in sorted(self.nodes.values(), key=lambda n: (not n.is_buildable, n.unique_id)):
            if n.relation is not None and (n.is_buildable or n.resource_type == "source"):
                key = n.relation.key()
                for size in (1, 2, 3):
                    index.setdefault(tuple(key[3 - size :]), []).append(n)
        return index

    def node_for_table(self, name: str) -> Node | None:
        """The seed, model, snapshot or source whose relation (or unique id) is ``name`` (see ``names_table``)."""
        if name in self.nodes:
            return self.nodes[name]
        found = self._tables.get(tuple(p.lower() for p in name.split(".")))
        return found[0] if found else None

    def seed_files_behind(self, uid: str) -> list[str]:
        """CSV files of the seeds a node is built from (itself included): where a fix goes."""
        seen: set[str] = set()
        stack, files = [uid], []
        while stack:
            current = stack.pop()
            if current in seen or current not in self.nodes:
                continue
            seen.add(current)
            node = self.nodes[current]
            if node.resource_type == "seed" and node.path:
                files.append(node.path)
            stack.extend(node.depends_on)
        return sorted(files)


def names_table(key: tuple[str, str, str], name: str) -> bool:
    """Does 'table', 'schema.table' or 'db.schema.table' (any case) name the relation ``key``?"""
    parts = [p.lower() for p in name.split(".")]
    return list(key[3 - len(parts) :]) == parts


def input_state(engine: CheckEngine, uid: str, fingerprints: Mapping[str, Any]) -> str:
    """A node's inputs and, for a built table, the content it was built with (``StateView.input_state``)."""
    return input_state_of(fingerprints.get(uid), engine.records.get(uid))
