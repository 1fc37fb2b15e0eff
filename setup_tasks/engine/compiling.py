"""What dbt compiles for each node, under its compile key: the ``sql`` and ``build`` fingerprint parts.

A node's table is rebuilt (and a test re-run) exactly when what dbt would compile for it now
differs from what it compiled for the build on record, or when how dbt builds changed. The SQL
comes from ``KeptSql`` under the node's compile key (``project.compile_context``); a node whose
key has no SQL yet (its definition or the project's compile context changed) is compiled by dbt
first, in one invocation for all of them, in the run that needs it -- a change of data only (a seed,
the census) keeps every key, and needs no dbt at all.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable, Iterable, Sequence

from ..dbt.invoke import NodeOutcome
from ..keys import keyed_digest
from ..project.compile_context import CONTEXT, PURE, VOLATILE, compile_key, context_digest, graph_digest, node_key
from ..project.manifest import Node
from .definitions import Definitions
from .kept_sql import Compiled, KeptSql

# Compiles ``nodes`` with dbt, each outcome to the callback: False when dbt cannot compile now.
CompileWithDbt = Callable[[Sequence[Node], Callable[[NodeOutcome], None]], bool]


def _sha(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


class Compiling:
    """Compile keys and kept SQL of one run's project, and dbt's compile of the nodes that lack it."""

    def __init__(self, definitions: Definitions, kept: KeptSql, run_id: str, compile_with_dbt: CompileWithDbt) -> None:
        self.definitions = definitions
        self.manifest = definitions.manifest
        self.kept = kept
        self.run_id = run_id
        self.compile_with_dbt = compile_with_dbt
        self._context: str | None = None
        self._node_keys: dict[str, str] = {}
        self.compiled_now: list[str] = []  # nodes dbt compiled in this run's compile step

    # -- keys ------------------------------------------------------------------------------------

    def context(self) -> str:
        """The project-wide part of every key, once per run."""
        if self._context is None:
            environ = self.definitions.ctx.environ()
            counted = self.definitions.stamp_parts  # the parse's environment variables are in it already
            # Only those set count (as in the parse's stamp): the names compiles looked up grow as dbt
            # compiles more nodes, and one unset is what it was before anything looked it up.
            env = {
                name: keyed_digest("env", name, environ[name])
                for name in sorted(self.kept.env)
                if f"env:{name}" not in counted and environ.get(name) is not None
            }
            self._context = context_digest(self.manifest, self.definitions.stamp_parts, env)
        return self._context

    def key(self, uid: str) -> str:
        return compile_key(self.context(), node_key(self.manifest, uid, self._node_keys))

    def get(self, uid: str) -> Compiled | None:
        """What dbt compiled for the node under its current key (None: not yet)."""
        return self.kept.get(uid, self.key(uid))

    def known(self, uid: str) -> bool:
        return self.get(uid) is not None

    def sql(self, uid: str) -> str | None:
        """The node's SQL, when dbt compiled it under its current key and it may run without dbt."""
        return self.kept.sql(uid, self.key(uid))

    # -- fingerprint parts --------------------------------------------------------------------------

    def part(self, node: Node) -> str:
        """The ``sql`` part: what dbt compiles for the node (see ``project.fingerprints``)."""
        key = self.key(node.unique_id)
        compiled = self.kept.get(node.unique_id, key)
        if compiled is None:
            return f"unknown:{key[:20]}"
        kind = compiled.kind
        if kind == PURE and compiled.sql is not None:
            return f"sql:{_sha(compiled.sql)}"
        if kind == VOLATILE:
            return f"volatile:{compiled.why} ({self.run_id})"
        graph = graph_digest(self.manifest) if "graph" in compiled.reads else ""
        return f"{CONTEXT}:{_sha([key, graph])}"

    def compiled_sql(self, node: Node) -> str | None:
        """The SQL dbt compiled for the node under its current key, whatever its kind (the files it reads)."""
        compiled = self.get(node.unique_id)
        return compiled.sql if compiled is not None else None

    def build_context(self) -> str:
        """The ``build`` part: the profile's connection (settings, extensions, attached databases), the
        macros of the project or its packages that override dbt's (how dbt materializes and tests), and the
        project's on-run-start / on-run-end hooks with what they render from (a hook added or changed is
        run by dbt in a build of every node, as a fresh `dbt build` runs it after all of them)."""
        profile = self.manifest.profile
        connection = profile.connection.as_dict() if profile is not None else {}
        overrides = {
            uid: self.manifest.macros[uid][0] for uid in self.manifest.overrides if uid in self.manifest.macros
        }
        hooks = {uid: node.definition for uid, node in self.manifest.nodes.items() if node.resource_type == "operation"}
        return _sha(
            {
                "connection": connection,
                "overrides": overrides,
                "hooks": hooks,
                "context": self.context() if hooks else "",
            }
        )

    # -- compiling --------------------------------------------------------------------------------

    def compile(self, uids: list[str]) -> bool:
        """dbt compiles these nodes (their key has no SQL); False when it did not."""
        nodes = [self.manifest.nodes[u] for u in uids]
        if not nodes or not self.compile_with_dbt(nodes, self.keep):
            return False
        self.compiled_now = list(uids)
        return True

    def keep(self, outcome: NodeOutcome) -> None:
        """Keep what dbt compiled for a node in any invocation (build, test or compile) under its key."""
        uid = outcome.unique_id
        if outcome.reads is None or uid not in self.manifest.nodes or not self.manifest.nodes[uid].is_compiled:
            return
        self.kept.keep(uid, self.key(uid), outcome.sql, outcome.reads)

    def kinds(self, uids: Iterable[str]) -> dict[str, Compiled]:
        """What dbt compiled of each node that has it under its current key (for `doit info`)."""
        return {u: c for u in uids if (c := self.get(u)) is not None}
