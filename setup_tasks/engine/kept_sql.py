"""SQL dbt compiled, kept for the next run under a key of exactly what it depends on.

The compiled SQL of a node whose Jinja (its own and that of every macro it calls) neither
queries the database nor reads the run's time, id or graph depends only on its definition,
the macros, vars and env vars it reads (all fingerprint parts) and the names of the tables
it reads -- never on their data. So the SQL dbt compiled for it earlier, kept under a key of
exactly those (``definition_key``), is what dbt would compile now: ``direct_tests`` runs
tests with it, ``direct_build`` builds tables and views. ``jinja_problem`` says when a node's
SQL cannot be trusted that way.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Mapping

from ..files import discarded, write_bytes_atomic
from ..keys import seal, unseal
from ..project.manifest import Manifest, Node

DBT_PACKAGES = frozenset({"dbt", "dbt_duckdb"})  # dbt's own macros (their code changes only with dbt's version)
# What in a test's Jinja (its own, or a macro's it calls) could make its compiled SQL depend on
# anything but its definition, the macros, vars and env vars it reads and the names of its tables:
# queries while compiling, the run's time or id, the project graph.
INTROSPECTIVE = re.compile(
    r"\b(run_query|load_result|statement|execute|graph|run_started_at|invocation_id|load_relation|"
    r"get_columns_in_relation|get_relation|set_sql_header)\b|modules\.datetime|adapter\.(?!dispatch\b)"
)
DISPATCH = re.compile(r"adapter\.dispatch\(\s*['\"](\w+)['\"]")
KEPT_FILE = "compiled_sql.sealed"  # beside the context's manifest
KEPT_VERSION = 2  # 2: sealed
KEPT_PURPOSE = "kept-compiled-sql"


def _macro_name(uid: str) -> tuple[str, str]:
    """'macro.dbt.test_unique' -> ('dbt', 'test_unique')."""
    _, package, name = (uid.split(".", 2) + ["", ""])[:3]
    return package, name


def _closure(manifest: Manifest, macros: tuple[str, ...]) -> set[str]:
    found: set[str] = set()
    stack = [m for m in macros if m in manifest.macros]
    while stack:
        uid = stack.pop()
        if uid not in found:
            found.add(uid)
            stack.extend(d for d in manifest.macros[uid][1] if d in manifest.macros and d not in found)
    return found


def definers(manifest: Manifest) -> dict[str, set[str]]:
    """Macro name -> the packages defining it."""
    by_name: dict[str, set[str]] = {}
    for uid in manifest.macros:
        package, name = _macro_name(uid)
        by_name.setdefault(name, set()).add(package)
    return by_name


def jinja_problem(node: Node, manifest: Manifest, dispatched: tuple[str, ...] = ()) -> str | None:
    """Why SQL dbt compiled for ``node`` earlier may differ from what it would compile now; None when it cannot.

    ``dispatched``: dbt's own macros the node goes through, which a project or package may override.
    """
    by_name = definers(manifest)
    for name in dispatched:
        if any(by_name.get(f"{prefix}{name}", set()) - DBT_PACKAGES for prefix in ("", "default__", "duckdb__")):
            return f"{name} is overridden by the project or a package"
    closure = _closure(manifest, node.macros)
    codes = [node.raw_code, *(manifest.macros[m][0] for m in closure)]
    if any(INTROSPECTIVE.search(code) for code in codes):
        return "its SQL may query the database or the run while it compiles"
    for code in codes:
        for name in DISPATCH.findall(code):  # dbt picks the implementation when it runs: one package only
            packages = set().union(*(by_name.get(f"{prefix}{name}", set()) for prefix in ("", "default__", "duckdb__")))
            if len(packages - DBT_PACKAGES) > (0 if packages & DBT_PACKAGES else 1):
                return f"{name} is overridden"
    return None


def definition_key(parts: Mapping[str, str], manifest: Manifest, node: Node) -> str:
    """What the compiled SQL depends on: the test's fingerprint parts but the data of what it reads
    (``upstream:*``, files named by vars), and the names of the tables it reads."""
    own = {k: v for k, v in parts.items() if not k.startswith(("upstream:", "external:"))}
    read = {uid: str(manifest.nodes[uid].relation) for uid in node.depends_on if uid in manifest.nodes}
    return hashlib.sha256(json.dumps([own, read], sort_keys=True).encode()).hexdigest()


class KeptSql:
    """The SQL dbt compiled for each node, by definition key, beside the context's manifest.

    Setup runs this SQL against the database, so the file is sealed with the user's key
    (``keys.seal``), like the pickled manifest: one written by anyone else, or changed since,
    is never used (dbt then builds or tests the node, and its SQL is kept again).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.nodes: dict[str, dict[str, str]] = {}
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
            discarded(path, "wrong shape")
            return
        self.nodes = {uid: entry for uid, entry in entries.items()
                      if isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(entry.get("sql"), str)}

    def sql(self, uid: str, key: str) -> str | None:
        entry = self.nodes.get(uid)
        return entry["sql"] if entry is not None and entry["key"] == key else None

    def keep(self, uid: str, key: str, sql: str) -> None:
        if self.nodes.get(uid) != {"key": key, "sql": sql}:
            self.nodes[uid] = {"key": key, "sql": sql}
            self.dirty = True

    def save(self) -> None:
        """Best effort: a lost entry costs a dbt run of its node, never a wrong result."""
        if not self.dirty:
            return
        payload = json.dumps({"version": KEPT_VERSION, "nodes": self.nodes}, sort_keys=True).encode()
        try:
            write_bytes_atomic(self.path, seal(KEPT_PURPOSE, payload))
            self.dirty = False
        except OSError:
            pass
