"""The dependency graph of the dbt project: the only module that speaks networkx.

Everything else talks in node unique ids. Methods are verbs on the graph; order is
topological with ties broken by unique id, so a project always builds in the same
order.

Graph queries are pure functions of the manifest, so their answers are memoised
(``GraphMemo``, kept beside the manifest by ``store.caches``): a run over an unchanged
project answers them from the memo and never imports networkx (about 0.15 s of a no-op run).
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ..errors import GraphCycleError
from .manifest import Manifest, Node


@dataclass
class GraphMemo:
    """Answers to graph queries for one manifest (by its invocation id); ``store`` keeps it on disk."""

    manifest_id: str
    answers: dict[str, list[str]] = field(default_factory=dict)
    dirty: bool = False

    @property
    def verified(self) -> bool:
        """A memo exists only for a manifest whose graph was built and found acyclic."""
        return bool(self.answers)


def _key(method: str, uids: Iterable[str] | None) -> str:
    if uids is None:
        return method
    digest = hashlib.sha1("\0".join(sorted(set(uids))).encode()).hexdigest()[:16]
    return f"{method}:{digest}"


class SetupGraph:
    """A directed graph of seeds, models, snapshots, sources and tests (parent -> child).

    Besides dbt's own edges, a source whose table a node of the project builds has that
    node as its parent (``Manifest.source_builders``): a seed read through source() is
    upstream of its readers, for order and for staleness.
    """

    def __init__(
        self, nodes: Mapping[str, Node], memo: GraphMemo | None = None, source_builders: Mapping[str, str] | None = None
    ) -> None:
        self.nodes = dict(nodes)
        self.memo = memo or GraphMemo("")
        self.source_builders = dict(source_builders or {})
        self._parents = {
            uid: sorted(
                {p for p in self.nodes[uid].depends_on if p in self.nodes}
                | ({self.source_builders[uid]} if uid in self.source_builders else set())
            )
            for uid in sorted(self.nodes)
        }
        self._children: dict[str, list[str]] = {uid: [] for uid in self._parents}
        for uid, parents in self._parents.items():
            for parent in parents:
                self._children[parent].append(uid)
        self._nx: Any = None
        if not self.memo.verified and len(self._ordered(set(self._parents))) < len(self._parents):
            self._graph()  # a cycle: networkx finds it, and it is refused before anything is memoised

    @classmethod
    def from_manifest(cls, manifest: Manifest, memo: GraphMemo | None = None) -> "SetupGraph":
        return cls(manifest.nodes, memo, manifest.source_builders)

    def _graph(self) -> Any:
        if self._nx is None:
            import networkx as nx

            graph: nx.DiGraph[str] = nx.DiGraph()
            graph.add_nodes_from(self._parents)
            graph.add_edges_from((p, uid) for uid, parents in self._parents.items() for p in parents)
            try:
                cycle = nx.find_cycle(graph)
            except nx.NetworkXNoCycle:
                cycle = None
            if cycle:
                raise GraphCycleError([edge[0] for edge in cycle] + [cycle[0][0]])
            self._nx = graph
        return self._nx

    def _ask(self, method: str, uids: Iterable[str] | None, compute: Callable[[], Iterable[str]]) -> list[str]:
        uids = None if uids is None else list(uids)
        key = _key(method, uids)
        answer = self.memo.answers.get(key)
        if answer is None:
            answer = list(compute())
            self.memo.answers[key] = answer
            self.memo.dirty = True
        return list(answer)

    # -- neighbourhoods ------------------------------------------------------------

    def parents(self, uid: str) -> list[str]:
        return list(self._parents[uid])

    def children(self, uid: str) -> list[str]:
        return sorted(self._children[uid])

    def ancestors(self, uids: Iterable[str]) -> set[str]:
        uids = list(uids)
        return set(self._ask("ancestors", uids, lambda: sorted(self._closure(uids, "ancestors"))))

    def descendants(self, uids: Iterable[str]) -> set[str]:
        uids = list(uids)
        return set(self._ask("descendants", uids, lambda: sorted(self._closure(uids, "descendants"))))

    def _closure(self, uids: list[str], direction: str) -> set[str]:
        """Every node above (or below) ``uids``, them excluded unless reached from another: one walk over
        the nodes it finds, not a networkx graph of the whole project per question."""
        edges = self._parents if direction == "ancestors" else self._children
        found: set[str] = set()
        stack = [n for uid in uids for n in edges[uid]]
        while stack:
            uid = stack.pop()
            if uid not in found:
                found.add(uid)
                stack.extend(edges[uid])
        return found

    def with_ancestors(self, uids: Iterable[str]) -> set[str]:
        """The selection plus everything it needs."""
        selected = {u for u in uids if u in self.nodes}
        return selected | self.ancestors(selected)

    def built_parents(self, uid: str) -> list[str]:
        """Nearest parents that are tables of their own, walking through ephemeral models.

        Sources count as parents: they are inputs, though setup does not build them; a
        source the project builds brings its builder too.
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
            if not node.is_buildable:  # through ephemeral models, and to the builder of a built source
                stack.extend(self.parents(parent))
        return sorted(found)

    def built_sources(self, uid: str) -> list[tuple[str, str]]:
        """(source, builder) for each source this node reads whose table the project builds."""
        return [(p, self.source_builders[p]) for p in self.built_parents(uid) if p in self.source_builders]

    def implied_edges(self, uids: Iterable[str]) -> list[tuple[str, str]]:
        """(reader, builder) for each of ``uids`` reading a built source: the edges dbt's graph lacks."""
        return sorted({(uid, builder) for uid in uids for _, builder in self.built_sources(uid)})

    # -- selections ----------------------------------------------------------------

    def buildable(self, uids: Iterable[str]) -> list[str]:
        """The nodes of a selection that setup materialises, in build order."""
        return [u for u in self.topological(uids) if self.nodes[u].is_buildable]

    def tests_of(self, uids: Iterable[str]) -> list[str]:
        """Tests whose every parent lies in the given set (dbt's 'eager' rule, made strict).

        A test with a ref() to no node is left out: dbt never runs it (``unresolved_tests``).
        """
        scope = set(uids)
        tests = {child for uid in scope for child in self._children[uid] if self.nodes[child].resource_type == "test"}
        return sorted(t for t in tests if set(self._parents[t]) <= scope and not self.nodes[t].unresolved)

    def unresolved_tests(self, uids: Iterable[str]) -> list[str]:
        """Tests dbt only warns about (a ref() names no node) whose other parents lie in the given set."""
        scope = set(uids)
        return sorted(
            u
            for u, node in self.nodes.items()
            if node.resource_type == "test" and node.unresolved and set(self._parents[u]) <= scope
        )

    def topological(self, uids: Iterable[str] | None = None) -> list[str]:
        """Deterministic topological order of the given nodes (all when None)."""
        uids = None if uids is None else set(uids)

        return self._ask("topological", uids, lambda: self._ordered(set(self._parents) if uids is None else uids))

    def _ordered(self, uids: set[str]) -> list[str]:
        """networkx's lexicographical topological sort of the subgraph of ``uids`` (a ready node with the
        smallest unique id first), in time of the subgraph, not of the project."""
        waiting = {uid: sum(1 for p in self._parents[uid] if p in uids) for uid in uids}
        ready = sorted(uid for uid, count in waiting.items() if count == 0)
        order: list[str] = []
        while ready:
            uid = heapq.heappop(ready)
            order.append(uid)
            for child in self._children[uid]:
                if child in waiting:
                    waiting[child] -= 1
                    if waiting[child] == 0:
                        heapq.heappush(ready, child)
        return order

    def edges(self, uids: Iterable[str]) -> list[tuple[str, str]]:
        scope = set(uids)
        return sorted((p, uid) for uid in scope for p in self._parents[uid] if p in scope)
