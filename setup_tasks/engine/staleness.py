"""Is a node's table up to date, and if not, why (in words)? Also: tables no current node builds.

A node is up to date when its table exists, the fingerprint recorded at its last
build equals the current one, the table's content signature is unchanged since
(nobody edited it outside setup), and `doit forget` has not named it since. Asking
never changes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..errors import SetupError
from ..project.fingerprints import FileHasher, Fingerprint, FingerprintCalculator, explain
from ..store.records import BuildRecord, BuildRecords
from .contents import ContentsView, Key
from .definitions import Definitions


@dataclass(frozen=True)
class NodeStatus:
    """Whether a node's table is up to date, and if not, why (in words)."""

    unique_id: str
    stale: bool
    reasons: tuple[str, ...] = ()
    error: SetupError | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "up to date"


class Staleness:
    """Fingerprints of every tracked node, and each node's status against its build record."""

    def __init__(self, definitions: Definitions, contents: ContentsView, records: BuildRecords,
                 hasher: FileHasher) -> None:
        self.definitions = definitions
        self.contents = contents
        self.records = records
        self.hasher = hasher
        self._fingerprints: dict[str, Fingerprint] | None = None

    def fingerprints(self) -> dict[str, Fingerprint]:
        if self._fingerprints is None:
            defs = self.definitions
            contents = self.contents.get()
            sources = {
                n.relation.key(): contents.signature(n.relation.key()) or "missing"
                for n in defs.manifest.nodes.values()
                if n.resource_type == "source" and n.relation and not n.external_location
            }
            calc = FingerprintCalculator(
                defs.manifest, defs.graph, defs.ctx.project_dir, defs.root, defs.variables(), self.hasher, sources,
                environ=defs.ctx.environ(),
            )
            self._fingerprints = calc.compute(defs.tracked())
        return self._fingerprints

    def invalidate(self) -> None:
        """An input changed during this run (the census was written): compute fingerprints again."""
        self._fingerprints = None

    def status(self, uid: str) -> NodeStatus:
        """Is the node's table up to date?"""
        try:
            return self._status(uid)
        except SetupError as err:
            return NodeStatus(uid, True, (f"cannot check: {err.cause}",), err)

    def _status(self, uid: str) -> NodeStatus:
        record = self.records.get(uid)
        if record is None:
            return NodeStatus(uid, True, ("never built",))
        node = self.definitions.node(uid)
        if node.relation is None or not self.contents.has(node.relation.key()):
            return NodeStatus(uid, True, (f"table {node.relation} missing from the database",))
        current = self.fingerprints()[uid]
        if record.fingerprint != current.digest:
            reasons = explain(record.parts, current.parts, self.definitions.names()) or ("fingerprint changed",)
            return NodeStatus(uid, True, tuple(reasons))
        if record.signature and self.contents.get().signature(node.relation.key()) != record.signature:
            return NodeStatus(uid, True, (f"table {node.relation} changed outside setup",))
        if record.forced:
            return NodeStatus(uid, True, ("forced (doit forget)",))
        return NodeStatus(uid, False)

    # -- tables setup built that a clean build would not have ---------------------------------

    def removed_builds(self) -> dict[str, BuildRecord]:
        """Builds recorded for nodes the project no longer has (file deleted or renamed, node disabled)."""
        nodes = self.definitions.manifest.nodes
        return {uid: rec for uid, rec in self.records.records.items() if uid not in nodes}

    def leftover_tables(self, scope: Iterable[str] | None = None) -> dict[str, Key]:
        """Tables setup built that no current node builds: a clean build has none of them.

        Those of nodes removed from the project, and those a node built under its old
        name (alias, schema or database changed) -- the latter only for nodes in
        ``scope`` when given (a run drops them when it rebuilds the node).
        """
        nodes = self.definitions.manifest.nodes
        claimed = {n.relation.key() for n in nodes.values() if n.relation is not None}
        tables = self.contents.get().tables
        wanted = None if scope is None else set(scope)
        return {
            uid: rec.relation for uid, rec in self.records.records.items()
            if rec.relation is not None and rec.relation not in claimed and rec.relation in tables
            and (uid not in nodes or wanted is None or uid in wanted)
        }

    def leftover_label(self, uid: str, key: Key) -> str:
        """``main.stg_old (from removed model stg_old)``, or what the node builds now."""
        name = ".".join(key[1:])
        node = self.definitions.manifest.nodes.get(uid)
        if node is None:
            kind, _, rest = uid.partition(".")
            return f"{name} (from removed {kind} {rest.rpartition('.')[2]})"
        now = ".".join(node.relation.key()[1:]) if node.relation else "no table"
        return f"{name} ({self.definitions.label(uid)} now builds {now})"
