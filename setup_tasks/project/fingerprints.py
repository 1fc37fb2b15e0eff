"""Node fingerprints: a digest of everything a table's content is derived from.

A fingerprint is a set of named parts (the node's file, its dbt config, each var
it reads, each external file it reads, each macro it calls, each upstream node) and a
digest over them. An upstream node is a part by what its reader reads of it: the content
of the table it built (``content:<signature>``) once that table is up to date, else its
own fingerprint's digest. So a change upstream makes every fingerprint downstream differ
until the upstream table is rebuilt; rebuilt with the same content, its readers are up to
date again (early cutoff: a reformatted model, a seed's rows reordered, rebuild nothing
below them). Comparing the parts of two fingerprints explains, in words, why a node is stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet, Any, Callable, Iterable, Mapping

from ..files import RACY_NS, discarded, read_json, stat_key
from ..proofs import file_digest
from ..keys import keyed_digest
from .graph import SetupGraph
from .inputs import ReaderPaths, external_paths, format_location, location_paths, resolved
from .manifest import ENV_VAR_RE, Manifest, Node

VAR_RE = re.compile(r"""\bvar\(\s*['"]([^'"]+)['"]""")
SHOWN_VALUE_LIMIT = 60
# An upstream part that names the content of the table its reader read (not the upstream's inputs).
CONTENT_PREFIX = "content:"
# An upstream part while the upstream table is to be built again (``Staleness.settled``).
PENDING_PREFIX = "pending:"
KEYED_PREFIX = "hmac:"
# The value of a part (and the digest of a record) whose input changed while the node was being
# built: what dbt read is unknown, so nothing current can equal it.
CHANGED_DURING_BUILD = "changed during the build"
# The value of an input file's part while setup has yet to (re)generate the file in this run.
REGENERATED = "regenerated before the build"
# Config keys that do not change a table's content.
VOLATILE_CONFIG: AbstractSet[str] = {"docs", "meta", "tags", "persist_docs", "grants", "group", "access", "event_time"}


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    parts: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "parts": dict(self.parts)}


def _sha(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()[:20]


def env_digest(name: str, value: str | None) -> str:
    """What is kept of an environment variable's value: ``hmac:`` and a digest under the user's key."""
    return "<unset>" if value is None else KEYED_PREFIX + keyed_digest("env", name, value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def digest_of(parts: Mapping[str, str]) -> str:
    """The digest of a fingerprint with these parts."""
    return _sha(_canonical(parts))


class FileHasher:
    """Content hashes of files, cached under a key nothing but a change of the file can change.

    The key is (device, inode, size, mtime, ctime): an edit that keeps the length and
    restores the mtime still changes the ctime. Entries of older versions (keyed by size
    and mtime only) never match, and a file changed in the last ``RACY_NS`` is not cached.
    """

    def __init__(self, cache: dict[str, list[Any]] | None = None) -> None:
        self.cache: dict[str, list[Any]] = cache if cache is not None else {}
        self.dirty = False
        self.seen: dict[str, list[int]] = {}  # the key of each file when this process hashed it
        self.digests: dict[str, str] = {}  # the digest of each file's bytes this process's fingerprints read

    @classmethod
    def load(cls, path: Path) -> "FileHasher":
        """The hashes cached in ``path``; entries of the wrong shape are discarded (and hashed again)."""
        stored = read_json(path, {})
        cache = {
            k: v
            for k, v in stored.items()
            if isinstance(v, list)
            and len(v) == 2
            and isinstance(v[0], list)
            and len(v[0]) == 5
            and all(isinstance(x, int) for x in v[0])
        }
        if len(cache) < len(stored):
            discarded(path, f"{len(stored) - len(cache)} entries of the wrong shape")
        return cls(cache)

    def _remembered(self, key: str, path: Path, compute: Callable[[Path], Any]) -> Any:
        try:
            st = path.stat()
        except OSError:
            return None, False
        stamp = stat_key(st)
        self.seen[key] = stamp
        cached = self.cache.get(key)
        if isinstance(cached, list) and len(cached) == 2 and cached[0] == stamp:
            return cached[1], True
        value = compute(path)
        if time.time_ns() - st.st_ctime_ns > RACY_NS:
            self.cache[key] = [stamp, value]
            self.dirty = True
        return value, True

    def derived(self, path: Path, kind: str, compute: Callable[[Path], Any]) -> Any:
        """Any value computed from a file's content, cached like its hash (JSON-able values)."""
        value, exists = self._remembered(f"{kind}:{path.resolve()}", path, compute)
        return value if exists else compute(path)

    def hash(self, path: Path) -> str:
        key = str(path.resolve())
        value, exists = self._remembered(key, path, file_digest)
        if not exists:
            return "missing"
        self.digests[key] = value
        return str(value)

    def read_digest(self, path: Path) -> str | None:
        """The digest of the bytes this process hashed ``path`` for (None: it did not hash it)."""
        return self.digests.get(str(path.resolve()))

    def hashed_paths(self) -> list[Path]:
        """Every file this process hashed or derived a value from."""
        return [Path(key if key.startswith(os.sep) else key.partition(":")[2]) for key in self.seen]

    def changed_since_hashed(self, path: Path) -> bool:
        """Has the file changed (even if back again) since this process hashed it?"""
        key = str(path.resolve())
        before = self.seen.get(key)
        try:
            now: list[int] | None = stat_key(path.stat())
        except OSError:
            now = None
        return before is not None and before != now


class FingerprintCalculator:
    """Computes fingerprints for every node of a manifest, parents first."""

    def __init__(
        self,
        manifest: Manifest,
        graph: SetupGraph,
        project_dir: Path,
        variables: Mapping[str, Any],
        hasher: FileHasher,
        table_signatures: Mapping[tuple[str, str, str], str] | None = None,
        environ: Mapping[str, str] | None = None,
        expected: Mapping[Path, str] | None = None,
        cwd: Path | None = None,
        compiled: Callable[[Node], str] | None = None,
        build_context: str = "",
        compiled_sql: Callable[[Node], str | None] | None = None,
        *,
        readers: ReaderPaths,
        settled: Callable[[str, Fingerprint], str | None] | None = None,
    ) -> None:
        self.manifest = manifest
        # The files a reader call reads (store.database.reader_paths: DuckDB parses it).
        self.readers = readers
        self.graph = graph
        self.project_dir = project_dir
        # Where dbt runs: a relative external location or file var resolves there.
        self.cwd = cwd or project_dir
        self.vars = variables
        self.hasher = hasher
        self.table_signatures = table_signatures or {}
        self.environ = os.environ if environ is None else environ
        # Files this run rewrites before their readers build (resolved path -> their digest then).
        self.expected = dict(expected or {})
        # The ``sql`` part of a model, snapshot or test: what dbt compiles for it (``engine.kept_sql``).
        self.compiled = compiled
        # The ``build`` part of every node setup builds or tests: how dbt builds (profile connection
        # settings, macros overriding dbt's materializations).
        self.build_context = build_context
        # The SQL dbt compiled for a node under its current key, if any: the files it reads are inputs.
        self.compiled_sql = compiled_sql
        # The content signature of an upstream node's table when that table is up to date under this
        # fingerprint of the node (``Staleness.settled``), else None: the reader's part is then the digest.
        self.settled = settled

    def compute(self, uids: Iterable[str]) -> dict[str, Fingerprint]:
        needed = self.graph.with_ancestors(uids)
        result: dict[str, Fingerprint] = {}
        for uid in self.graph.topological(needed):
            result[uid] = self.fingerprint(self.manifest.nodes[uid], result)
        return result

    def fingerprint(self, node: Node, known: Mapping[str, Fingerprint]) -> Fingerprint:
        """One node's fingerprint, its parents' taken from ``known``."""
        parts = self.parts(node, known)
        return Fingerprint(digest_of(parts), parts)

    def parts(self, node: Node, known: Mapping[str, Fingerprint]) -> dict[str, str]:
        parts: dict[str, str] = {"engine": f"{self.manifest.adapter_type} {self.manifest.dbt_version}"}
        if node.resource_type == "source":
            parts.update(self._source_parts(node))
        else:
            parts.update(self._code_parts(node))
        for parent in self.graph.parents(node.unique_id):
            parts[f"upstream:{parent}"] = self.upstream_part(parent, known[parent])
        return parts

    def upstream_part(self, parent: str, fingerprint: Fingerprint) -> str:
        """What a reader of ``parent`` depends on: its table's content once that is up to date, else its inputs."""
        said = self.settled(parent, fingerprint) if self.settled is not None else None
        return said or fingerprint.digest

    def _code_parts(self, node: Node) -> dict[str, str]:
        parts: dict[str, str] = {}
        if node.path and node.resource_type != "test":
            parts[f"file:{node.path}"] = self._hash(self.project_dir / node.path)
        config = {k: v for k, v in node.config.items() if k not in VOLATILE_CONFIG}
        definition: dict[str, Any] = {"config": config, "relation": str(node.relation), "columns": node.columns}
        if node.resource_type == "test":
            definition.update(code=node.raw_code, kwargs=node.test_kwargs, test=node.test_name)
        parts["config"] = _sha(_canonical(definition))
        if self.build_context:
            parts["build"] = self.build_context
        if self.compiled is not None and node.is_compiled:
            parts["sql"] = self.compiled(node)
            sql = self.compiled_sql(node) if self.compiled_sql is not None else None
            for path in resolved(self.readers(sql), self.cwd) if sql else []:  # read_csv('extra.csv') and the like
                parts[f"external:{self._display(path)}"] = self._hash(path)
        macros = self._macro_closure(node.macros)
        for macro in sorted(macros):
            parts[f"macro:{macro}"] = _sha(self.manifest.macros[macro][0])
        codes = [node.raw_code, *(self.manifest.macros[macro][0] for macro in macros)]
        for name in sorted({name for code in codes for name in VAR_RE.findall(code)}):
            parts.update(self._var_parts(name))
        # env_var() is rendered when dbt runs the node: its value is an input like a var's.
        # Only a keyed digest is kept (values may be credentials; a plain hash of a guessable
        # one would give it away).
        for name in sorted({name for code in codes for name in ENV_VAR_RE.findall(code)}):
            parts[f"env:{name}"] = env_digest(name, self.environ.get(name))
        return parts

    def _var_parts(self, name: str) -> dict[str, str]:
        if name not in self.vars:
            return {f"var:{name}": "<unset>"}
        value = self.vars[name]
        shown = _canonical(value)
        parts = {f"var:{name}": shown if len(shown) <= SHOWN_VALUE_LIMIT else _sha(shown)}
        if isinstance(value, str) and value.strip():
            for path in resolved(location_paths(value, self.readers), self.cwd):
                if path.is_file():
                    parts[f"external:{self._display(path)}"] = self._hash(path)
        return parts

    def _source_parts(self, node: Node) -> dict[str, str]:
        builder = self.manifest.source_builders.get(node.unique_id)
        if builder is not None:
            # The table a node of the project builds: its builder's fingerprint (an upstream part)
            # says when it changes, before the build; its record's signature, an edit outside setup.
            return {f"built_by:{builder}": "the project builds this table"}
        if node.external_location:
            location = format_location(node.external_location, node)
            parts = {"location": location}
            paths = external_paths(node, self.cwd, self.readers)
            for path in paths:
                parts[f"external:{self._display(path)}"] = self._hash(path)
            if not paths and "://" not in location:
                parts["external:<no files>"] = "missing"
            return parts
        key = node.relation.key() if node.relation else ("", "", node.name)
        return {f"table:{node.relation}": self.table_signatures.get(key, "missing")}

    def _hash(self, path: Path) -> str:
        if self.expected and path.resolve() in self.expected:
            return self.expected[path.resolve()]
        return self.hasher.hash(path)

    def _macro_closure(self, macros: Iterable[str]) -> set[str]:
        found: set[str] = set()
        stack = [m for m in macros if m in self.manifest.macros]
        while stack:
            macro = stack.pop()
            if macro in found:
                continue
            found.add(macro)
            stack.extend(m for m in self.manifest.macros[macro][1] if m in self.manifest.macros)
        return found

    def _display(self, path: Path) -> str:
        """An input file's name in a part's key: relative to the project, so it is the same whichever
        folder setup runs from (a dodo file's, a config file's), and after the repository moves."""
        try:
            return os.path.relpath(path.resolve(), self.project_dir.resolve())
        except ValueError:  # another drive
            return str(path)


def _shown_change(before: str | None, after: str | None) -> str:
    """`` (old -> new)`` when both values are short enough to read, else nothing."""
    before, after = before or "unset", after or "unset"
    return f" ({before} -> {after})" if len(before) + len(after) < 2 * SHOWN_VALUE_LIMIT else ""


def _sql_change(after: str | None) -> str:
    """Why the ``sql`` part (``engine.kept_sql``) of a node differs from its record's, in words."""
    kind, _, why = (after or "").partition(":")
    if kind == "volatile":
        return f"{why.rsplit(' (', 1)[0].strip()}: dbt compiles it anew every run"
    if kind == "unknown":
        return "what dbt compiles for it may have changed (its compile context changed)"
    if kind == "context":
        return "its compile context changed (its SQL reads the database or the run when dbt compiles it)"
    return "the SQL dbt compiles for it changed"


def _unkeyed(before: str | None, after: str | None) -> bool:
    """A digest recorded before digests were keyed (plain hex), compared with a keyed one."""
    if before is None or after is None or before == "<unset>":
        return False
    return not before.startswith(KEYED_PREFIX) and after.startswith(KEYED_PREFIX)


# How a changed part reads, by the part's kind (the text before the first ':' of its key).
# Each phrase gets (what, label, before, after); ``label`` is ``what`` with unique ids made readable.
# Node parts (built by Fingerprinter) and check parts (validation.fingerprint_parts) share this table.
_Phrase = Callable[[str, str, "str | None", "str | None"], str]
_PHRASES: Mapping[str, _Phrase] = {
    "file": lambda what, label, b, a: f"file changed: {what}",
    "var": lambda what, label, b, a: f"var changed: {what}{_shown_change(b, a)}",
    "env": lambda what, label, b, a: (
        f"environment variable changed: {what}"
        if not _unkeyed(b, a)
        else f"environment variable {what}: its digest is now keyed (setup upgrade)"
    ),
    "external": lambda what, label, b, a: f"input file changed: {what}",
    "upstream": lambda what, label, b, a: f"upstream changed: {label}",
    "macro": lambda what, label, b, a: f"macro changed: {label}",
    "table": lambda what, label, b, a: f"source table changed: {what}",
    "built_by": lambda what, label, b, a: (
        f"source table now built by {label}" if a else f"source table no longer built by {label}"
    ),
    "config": lambda what, label, b, a: "dbt config changed",
    "engine": lambda what, label, b, a: f"dbt changed: {b} -> {a}",
    "input": lambda what, label, b, a: f"input changed: {label}",
    "test": lambda what, label, b, a: f"dbt test changed: {label}",
    "setting": lambda what, label, b, a: f"setting changed: {what}{_shown_change(b, a)}",
    "definition": lambda what, label, b, a: "check definition changed",
    "sql": lambda what, label, b, a: _sql_change(a),
    "build": lambda what, label, b, a: (
        "how dbt builds changed (the profile's connection settings, or a macro overriding dbt's)"
    ),
    "absent": lambda what, label, b, a: (
        f"table {what} appeared in the database" if a is None else f"table {what} no longer read"
    ),
}
# Kinds whose phrase already covers a part that appeared or disappeared.
_PHRASED_WHEN_ADDED_OR_REMOVED = frozenset(
    {"input", "test", "setting", "absent", "definition", "built_by", "sql", "build"}
)


def explain(old: Mapping[str, str], new: Mapping[str, str], names: Mapping[str, str] | None = None) -> list[str]:
    """Why something whose recorded parts were ``old`` is stale now that its parts are ``new``, in words."""
    names = names or {}
    reasons: list[str] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        kind, _, what = key.partition(":")
        label = names.get(what, what)
        phrase = _PHRASES.get(kind)
        if before == CHANGED_DURING_BUILD:
            reasons.append(f"{label} changed while the last build read it")
        elif after == REGENERATED:
            reasons.append(f"{what} will be regenerated first")
        elif phrase is None:
            reasons.append(f"{key} changed")
        elif (before is None or after is None) and kind not in _PHRASED_WHEN_ADDED_OR_REMOVED:
            reasons.append(f"{'new input' if before is None else 'input removed'}: {kind} {label}".rstrip())
        else:
            reasons.append(phrase(what, label, before, after))
    return reasons
