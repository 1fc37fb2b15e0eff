"""SQL dbt compiled, kept for the next run under its compile key, with what the compile read.

Each model and test dbt compiles (to build or test it, or in setup's compile step) leaves its SQL
and what its Jinja read (``dbt.invoke.recorded_reads``) here, under its compile key
(``project.compile_context``). A later run finds it only under the same key: the same definition,
the same context. What the compile read says whether the SQL may be reused (``Compiled.kind``):
only a pure node's SQL is built or tested without dbt (``direct_build``, ``direct_tests``), and
its digest is the node's ``sql`` fingerprint part, so a node is rebuilt exactly when the SQL dbt
compiles for it changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..files import discarded, write_bytes_atomic
from ..keys import seal, unseal
from ..project.compile_context import PURE, env_names, kind

KEPT_FILE = "compiled_sql.sealed"  # beside the context's manifest
KEPT_VERSION = 3  # 3: by compile key, with what each compile read
KEPT_PURPOSE = "kept-compiled-sql"


@dataclass(frozen=True)
class Compiled:
    """What dbt compiled for a node under its current key."""

    sql: str | None  # None: dbt could not compile it (without querying the database)
    reads: tuple[str, ...]

    @property
    def kind(self) -> str:
        return kind(self.reads, self.sql is not None)[0]

    @property
    def why(self) -> str:
        return kind(self.reads, self.sql is not None)[1]

    @property
    def reusable(self) -> bool:
        """May this SQL be built or tested without dbt?"""
        return self.sql is not None and self.kind == PURE


class KeptSql:
    """The SQL dbt compiled for each node, by compile key, beside the context's manifest.

    Setup runs this SQL against the database, so the file is sealed with the user's key
    (``keys.seal``), like the pickled manifest: one written by anyone else, or changed since,
    is never used (dbt then compiles the node again).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.nodes: dict[str, dict[str, Any]] = {}  # JSON entries of the shape load checks
        self.env: set[str] = set()  # environment variables compiles looked up (a name computed in Jinja too)
        self.dirty = False
        try:
            data = path.read_bytes()
        except OSError:
            return
        payload = unseal(KEPT_PURPOSE, data)
        if payload is None:
            discarded(path, "not sealed with your key (its SQL is never run)")
            return
        try:
            stored = json.loads(payload)
        except ValueError:
            stored = None
        entries = stored.get("nodes") if isinstance(stored, dict) and stored.get("version") == KEPT_VERSION else None
        if not isinstance(entries, dict):
            discarded(path, "wrong shape or another version")
            return
        self.nodes = {
            uid: entry
            for uid, entry in entries.items()
            if isinstance(entry, dict)
            and isinstance(entry.get("key"), str)
            and isinstance(entry.get("sql"), (str, type(None)))
            and isinstance(entry.get("reads"), list)
        }
        self.env = {str(name) for name in stored.get("env") or () if isinstance(name, str)}

    def get(self, uid: str, key: str) -> Compiled | None:
        """What dbt compiled for the node under ``key``; None when it did not (yet)."""
        entry = self.nodes.get(uid)
        if entry is None or entry["key"] != key:
            return None
        return Compiled(entry["sql"], tuple(map(str, entry["reads"])))

    def sql(self, uid: str, key: str) -> str | None:
        """The node's SQL under ``key`` when it may be run without dbt (a pure compile)."""
        compiled = self.get(uid, key)
        return compiled.sql if compiled is not None and compiled.reusable else None

    def keep(self, uid: str, key: str, sql: str | None, reads: Iterable[str]) -> None:
        """What a compile of the node under ``key`` gave (``sql`` None: it failed) and read."""
        entry = {"key": key, "sql": sql, "reads": sorted(set(reads))}
        if self.nodes.get(uid) != entry:
            self.nodes[uid] = entry
            self.dirty = True
        new = env_names(entry["reads"]) - self.env  # type: ignore[arg-type]
        if new:
            self.env |= new
            self.dirty = True

    def save(self) -> None:
        """Best effort: a lost entry costs a compile of its node, never a wrong result."""
        if not self.dirty:
            return
        payload = json.dumps(
            {"version": KEPT_VERSION, "nodes": self.nodes, "env": sorted(self.env)}, sort_keys=True
        ).encode()
        try:
            write_bytes_atomic(self.path, seal(KEPT_PURPOSE, payload))
            self.dirty = False
        except OSError:
            pass
