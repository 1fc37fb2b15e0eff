"""The dependency graph of the dbt project: the only module that speaks networkx.

Everything else talks in node unique ids. Methods are verbs on the graph;
order is topological with ties broken by unique id, so a project always
builds in the same order.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import networkx as nx

from .errors import GraphCycleError
from .manifest import Manifest, Node


class SetupGraph:
    """A directed graph of seeds, models, snapshots, sources and tests (parent -> child)."""

    def __init__(self, nodes: Mapping[str, Node]) -> None:
        self.nodes = dict(nodes)
        self._g = nx.DiGraph()
        self._g.add_nodes_from(sorted(self.nodes))
        for uid in sorted(self.nodes):
            for parent in self.nodes[uid].depends_on:
                if parent in self.nodes:
                    self._g.add_edge(parent, uid)
        self._check_acyclic()

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "SetupGraph":
        return cls(manifest.nodes)

    def _check_acyclic(self) -> None:
        try:
            cycle = nx.find_cycle(self._g)
        except nx.NetworkXNoCycle:
            return
        path = [edge[0] for edge in cycle] + [cycle[0][0]]
        raise GraphCycleError(path)

    # -- neighbourhoods ------------------------------------------------------------

    def parents(self, uid: str) -> list[str]:
        return sorted(self._g.predecessors(uid))

    def children(self, uid: str) -> list[str]:
        return sorted(self._g.successors(uid))

    def ancestors(self, uids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for uid in uids:
            found |= nx.ancestors(self._g, uid)
        return found

    def descendants(self, uids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for uid in uids:
            found |= nx.descendants(self._g, uid)
        return found

    def with_ancestors(self, uids: Iterable[str]) -> set[str]:
        """The selection plus everything it needs."""
        selected = {u for u in uids if u in self.nodes}
        return selected | self.ancestors(selected)

    def built_parents(self, uid: str) -> list[str]:
        """Nearest parents that are tables of their own, walking through ephemeral models.

        Sources count as parents: they are inputs, though setup does not build them.
        """
        found: set[str] = set()
        stack = self.parents(uid)
        seen: set[str] = set()
        while stack:
            parent = stack.pop()
            if parent in seen:
                continue
            seen.add(parent)
            node = self.nodes[parent]
            if node.is_buildable or node.resource_type == "source":
                found.add(parent)
            else:
                stack.extend(self.parents(parent))
        return sorted(found)

    # -- selections ----------------------------------------------------------------

    def buildable(self, uids: Iterable[str]) -> list[str]:
        """The nodes of a selection that setup materialises, in build order."""
        return [u for u in self.topological(uids) if self.nodes[u].is_buildable]

    def tests_of(self, uids: Iterable[str]) -> list[str]:
        """Tests whose every parent lies in the given set (dbt's 'eager' rule, made strict)."""
        scope = set(uids)
        tests = {
            child
            for uid in scope
            for child in self._g.successors(uid)
            if self.nodes[child].resource_type == "test"
        }
        return sorted(t for t in tests if set(self.parents(t)) <= scope)

    def topological(self, uids: Iterable[str] | None = None) -> list[str]:
        """Deterministic topological order of the given nodes (all when None)."""
        graph = self._g if uids is None else self._g.subgraph(set(uids))
        return list(nx.lexicographical_topological_sort(graph))

    def edges(self, uids: Iterable[str]) -> list[tuple[str, str]]:
        scope = set(uids)
        return sorted((a, b) for a, b in self._g.edges if a in scope and b in scope)
