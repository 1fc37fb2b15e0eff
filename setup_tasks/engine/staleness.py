"""Is a node's table up to date, and if not, why (in words)? Also: tables no current node builds.

A node is up to date when its table exists, the fingerprint recorded at its last
build equals the current one, the table's content signature is unchanged since
(nobody edited it outside setup), and `doit forget` has not named it since. Asking
never changes anything.

A reader's fingerprint names an up-to-date upstream table by its content (``settled``):
a node stale only because something upstream will be rebuilt first (``waits_on``) may
find, once it is, that the content it reads is what it was built from (early cutoff).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol

from ..errors import PlanwiseError
from ..project.fingerprints import (
    PENDING_PREFIX,
    CHANGED_DURING_BUILD,
    CONTENT_PREFIX,
    FileHasher,
    Fingerprint,
    FingerprintCalculator,
    digest_of,
    explain,
)
from ..project.manifest import Node
from ..store.records import ASIDE_SUFFIX, BuildRecords
from .contents import ContentsView, Key
from .definitions import Definitions


@dataclass(frozen=True)
class NodeStatus:
    """Whether a node's table is up to date, and if not, why (in words)."""

    unique_id: str
    stale: bool
    reasons: tuple[str, ...] = ()
    error: PlanwiseError | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "up to date"


class CompiledParts(Protocol):
    """What dbt compiles for nodes (``engine.compiling.Compiling``): the parts fingerprints read of it."""

    def part(self, node: Node) -> str: ...

    def build_context(self) -> str: ...

    def compiled_sql(self, node: Node) -> str | None: ...

    def compile(self, uids: list[str]) -> bool:
        """Have dbt compile these nodes (their key changed); False when it cannot now."""
        ...

    def known(self, uid: str) -> bool:
        """Has dbt compiled the node under its current key?"""
        ...


class Staleness:
    """Fingerprints of every tracked node, and each node's status against its build record."""

    def __init__(
        self,
        definitions: Definitions,
        contents: ContentsView,
        records: BuildRecords,
        hasher: FileHasher,
        expected: Callable[[], Mapping[Path, str]] = dict,
        compiled: CompiledParts | None = None,
    ) -> None:
        self.definitions = definitions
        self.contents = contents
        self.records = records
        self.hasher = hasher
        # Input files this run rewrites before their readers build (the census): their digest then.
        self.expected = expected
        # What dbt compiles for each node (the ``sql`` part), and how it builds (the ``build`` part).
        self.compiled = compiled
        self._fingerprints: dict[str, Fingerprint] | None = None
        self._expected_now: Mapping[Path, str] = {}
        self._compile_tried = False  # dbt compiles nodes whose key changed once per run, at the first question
        self._inputs: tuple[Mapping[Key, str], Mapping[Path, str]] = ({}, {})

    def fingerprints(self) -> dict[str, Fingerprint]:
        expected = self.expected()
        if self._fingerprints is None or expected != self._expected_now:
            self._expected_now = expected
            defs = self.definitions
            contents = self.contents.get()
            sources = {
                n.relation.key(): contents.signature(n.relation.key()) or "missing"
                for n in defs.manifest.nodes.values()
                if n.resource_type == "source" and n.relation and not n.external_location
            }
            tracked = defs.tracked()
            self._inputs = (sources, expected)
            self._fingerprints = self._calculator(sources, expected).compute(tracked)
            compiled = self.compiled
            if compiled is not None and not self._compile_tried:
                self._compile_tried = True
                unknown = self.unknown_sql()
                if unknown and compiled.compile(unknown):  # dbt compiled them: their sql parts are known now
                    self._fingerprints = self._calculator(sources, expected).compute(tracked)
        return self._fingerprints

    def settle(self, built: Iterable[str]) -> None:
        """Nodes were built and their tables signed. They were recorded as built from what their upstream
        nodes were before (a table's fingerprint, not yet its content): parents first, each record now
        names what it read as the next run's fingerprints will (a table's content; a view, source or
        ephemeral model over it by its fingerprint now), and so do this run's fingerprints downstream."""
        known = self.fingerprints()
        built = set(built) & set(known)
        calculator = self._calculator(*self._inputs)
        result = dict(known)
        for uid in self.definitions.graph.topological(built | (self.definitions.graph.descendants(built) & set(known))):
            result[uid] = fingerprint = calculator.fingerprint(self.definitions.node(uid), result)
            record = self.records.get(uid) if uid in built else None
            if record is None:
                continue
            parts = {
                **record.parts,
                **{
                    key: value
                    for key, value in fingerprint.parts.items()
                    if key.startswith("upstream:") and record.parts.get(key, value) != CHANGED_DURING_BUILD
                },
            }
            if parts != record.parts:
                self.records.amend({uid: (digest_of(parts), parts)})
        self._fingerprints = result

    def settled(self, uid: str, fingerprint: Fingerprint) -> str | None:
        """What a reader of the node reads, when not its fingerprint: ``content:<signature>`` while its table
        is up to date under ``fingerprint`` (built from it, signed, unchanged since, not forgotten);
        ``pending:<digest>`` while a table it built is to be built again -- its readers may read other
        content then, whatever their records say they read; None otherwise (its fingerprint's digest)."""
        record = self.records.get(uid)
        if record is None:
            return None
        if self._status_for(uid, fingerprint).stale:
            return PENDING_PREFIX + fingerprint.digest
        return CONTENT_PREFIX + record.signature if record.signature else None

    def waits_on(self, uid: str) -> set[str] | None:
        """The upstream nodes whose rebuild alone makes this node stale (their tables' content may come
        out the same: then it is up to date again); None when anything else does (or nothing)."""
        record = self.records.get(uid)
        status = self.status(uid)
        if record is None or not status.stale or status.error is not None:
            return None
        current = self.fingerprints()[uid]
        if self._status_for(uid, Fingerprint(record.fingerprint, record.parts)).stale:
            return None  # stale for another reason too (forgotten, edited outside setup, interrupted)
        changed = {k for k in {*record.parts, *current.parts} if record.parts.get(k) != current.parts.get(k)}
        if not changed or any(
            not k.startswith("upstream:")
            or current.parts.get(k, CONTENT_PREFIX).startswith(CONTENT_PREFIX)
            or not record.parts.get(k, "").startswith(CONTENT_PREFIX)
            for k in changed
        ):
            return None
        return {k.partition(":")[2] for k in changed}

    def rebuilt(self, uid: str, built: Mapping[str, str]) -> Fingerprint:
        """The fingerprint of a node dbt has just built, to record: what dbt compiled for it (kept as it
        built), its parents as this run built them (``built``: their recorded digests)."""
        current = self.fingerprints()[uid]
        parents = self.definitions.graph.parents(uid)
        if not current.parts.get("sql", "").startswith("unknown:") and not any(p in built for p in parents):
            return current
        known = {p: Fingerprint(built[p], {}) if p in built else self.fingerprints()[p] for p in parents}
        # While dbt holds the database, nothing may read it: what the parents built before this run read as
        # is in the fingerprint taken before the build; those built in it are named by their digest until
        # their tables are signed (``settle``).
        calculator = self._calculator(*self._inputs)
        calculator.settled = None
        parts = calculator.parts(self.definitions.node(uid), known)
        parts.update(
            {
                f"upstream:{p}": current.parts[f"upstream:{p}"]
                for p in parents
                if p not in built and f"upstream:{p}" in current.parts
            }
        )
        return Fingerprint(digest_of(parts), parts)

    def unknown_sql(self) -> list[str]:
        """Nodes whose ``sql`` part is unknown (dbt has not compiled them under their current key)."""
        return sorted(
            u for u, fp in (self._fingerprints or {}).items() if fp.parts.get("sql", "").startswith("unknown:")
        )

    def refresh_compiled(self) -> list[str]:
        """dbt compiled (built or tested) nodes whose ``sql`` part was unknown: fingerprints say what it
        compiled from now on. Returns those nodes."""
        known = [u for u in self.unknown_sql() if self.compiled is not None and self.compiled.known(u)]
        if known:
            self.invalidate()
        return known

    def _calculator(self, sources: Mapping[Key, str], expected: Mapping[Path, str]) -> FingerprintCalculator:
        defs, compiled = self.definitions, self.compiled
        return FingerprintCalculator(
            defs.manifest,
            defs.graph,
            defs.ctx.project_dir,
            defs.variables(),
            self.hasher,
            sources,
            environ=defs.ctx.environ(),
            expected=expected,
            cwd=defs.ctx.cwd,
            readers=defs.reader_paths,
            compiled=compiled.part if compiled is not None else None,
            build_context=compiled.build_context() if compiled is not None else "",
            compiled_sql=compiled.compiled_sql if compiled is not None else None,
            settled=self.settled,
        )

    def invalidate(self) -> None:
        """An input changed during this run (the census was written): compute fingerprints again."""
        self._fingerprints = None

    def status(self, uid: str) -> NodeStatus:
        """Is the node's table up to date?"""
        try:
            return self._status(uid)
        except PlanwiseError as err:
            return NodeStatus(uid, True, (f"cannot check: {err.cause}",), err)

    def _status(self, uid: str) -> NodeStatus:
        return self._status_for(uid, self.fingerprints()[uid])

    def _status_for(self, uid: str, current: Fingerprint) -> NodeStatus:
        record = self.records.get(uid)
        if record is None:
            return NodeStatus(uid, True, ("never built",))
        node = self.definitions.node(uid)
        if node.relation is None or not self.contents.has(node.relation.key()):
            return NodeStatus(uid, True, (f"table {node.relation} missing from the database",))
        if record.fingerprint != current.digest:
            reasons = explain(record.parts, current.parts, self.definitions.names()) or ("fingerprint changed",)
            return NodeStatus(uid, True, tuple(reasons))
        if uid in self.records.intents:  # what that build may have committed is not what the record says
            return NodeStatus(uid, True, ("its last build did not complete (failed, interrupted or killed)",))
        if record.signature and self.contents.get().signature(node.relation.key()) != record.signature:
            return NodeStatus(uid, True, (f"table {node.relation} changed outside setup",))
        if record.forced:
            return NodeStatus(uid, True, ("forced (doit forget)",))
        return NodeStatus(uid, False)

    # -- tables setup built that a clean build would not have ---------------------------------

    def retired_nodes(self) -> set[str]:
        """Nodes setup built (or began to) that no longer make a table: removed from the project
        (file deleted or renamed, node disabled) or no longer materialized (ephemeral now)."""
        nodes = self.definitions.manifest.nodes
        return {uid for uid, _ in self.records.relations() if uid not in nodes or not nodes[uid].writes_table}

    def leftover_tables(self, scope: Iterable[str] | None = None) -> dict[Key, str]:
        """Tables setup built that no current node builds, each with the node that left it:
        a clean build has none of them.

        Those of retired nodes, those a killed build may have committed, and those a node
        built under its old name (alias, schema or database changed) -- the latter only for
        nodes in ``scope`` when given (a run drops them when it rebuilds the node).
        """
        nodes = self.definitions.manifest.nodes
        claimed = {n.relation.key() for n in nodes.values() if n.writes_table and n.relation is not None}
        tables = self.contents.get().tables
        wanted = None if scope is None else set(scope)
        retired = self.retired_nodes()
        found: dict[Key, str] = {}
        aside = {
            (k[0], k[1], k[2] + ASIDE_SUFFIX) for k in self.records.aside
        }  # put back or dropped first, not retired
        for uid, key in self.records.relations():
            if (
                key not in claimed
                and key not in aside
                and key in tables
                and (uid in retired or wanted is None or uid in wanted)
            ):
                found.setdefault(key, uid)
        return found

    def leftover_label(self, uid: str, key: Key) -> str:
        """``main.stg_old (from removed model stg_old)``, or what became of the node."""
        name = ".".join(key[1:])
        node = self.definitions.manifest.nodes.get(uid)
        record = self.records.get(uid)
        if record is None or record.relation != key:
            origin = "left by an interrupted build of"
        else:
            origin = "from"
        if node is None:
            kind, _, rest = uid.partition(".")
            return f"{name} ({origin} removed {kind} {rest.rpartition('.')[2]})"
        if not node.is_buildable:
            return f"{name} ({origin} {self.definitions.label(uid)}, now {node.materialized or 'not built'})"
        now = ".".join(node.relation.key()[1:]) if node.relation else "no table"
        return f"{name} ({self.definitions.label(uid)} now builds {now})"

    def empty_schemas(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Schemas setup created: (those now empty and built into by no node, those gone already)."""
        contents = self.contents.get()
        nodes = self.definitions.manifest.nodes.values()
        used = {key[:2] for key in contents.tables} | {
            n.relation.key()[:2] for n in nodes if n.is_buildable and n.relation is not None
        }
        created = sorted(s for s in self.records.schemas if s[1] != "main")
        return (
            [s for s in created if s in contents.schemas and s not in used],
            [s for s in created if s not in contents.schemas],
        )
