"""When SQL dbt compiled earlier is what it would compile now: the compile key, and what a compile read.

dbt compiles a node's Jinja into SQL. What that SQL depends on is everything the compile can
read, split in two:

- the **context** (one digest for the project, ``context_digest``): dbt's version, every macro and
  doc block of the project and its packages, dbt_project.yml (vars, dispatch, quoting), the vars
  setup passes, the rendered target (name, schema, threads, settings: what ``{{ target }}`` reads),
  the environment variables dbt looked up while it parsed or compiled (by any name), dbt's own
  ``DBT_*`` variables, the folders dbt runs in;
- the **node** (``node_key``): its definition as dbt parsed it (code, config, meta, tags,
  description, columns...), the relation each ref() names, each source it reads whole (its location
  and options), and each ephemeral model it inlines, recursively.

The compile key is a digest of both. SQL kept under a key is what dbt compiles for the node as long
as the key is unchanged, provided the compile read nothing else: dbt is watched while it compiles
(``dbt.invoke.recorded_reads``) and ``kind`` sorts nodes by what they read:

- **pure**: nothing but the above -- its kept SQL can be built and tested without dbt;
- **context**: the database (``run_query``, ``adapter.get_columns_in_relation``...), dbt's graph or
  the command being run -- dbt builds it, and any change of its key rebuilds it;
- **volatile**: the clock, the invocation's id, Python's modules -- its SQL is never the same
  twice: dbt builds it every run, as a fresh `dbt build` would.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

from .manifest import Manifest

PURE, CONTEXT, VOLATILE = "pure", "context", "volatile"
# Names of dbt's Jinja context whose value differs from run to run: what they render is never kept.
VOLATILE_READS: Mapping[str, str] = {
    "run_started_at": "the time the run started",
    "invocation_id": "the run's id",
    "modules": "Python's modules (the clock, random numbers)",
    "selected_resources": "what the command selected",
    "thread_id": "the thread that builds it",
}
# Names that read the database, dbt's graph or the command while compiling: kept SQL is not trusted.
CONTEXT_READS: Mapping[str, str] = {
    "run_query": "the database",
    "statement": "the database",
    "load_result": "the database",
    "store_result": "the database",
    "store_raw_result": "the database",
    "load_relation": "the database",
    "load_cached_relation": "the database",
    "write": "files it writes",
    "submit_python_job": "Python",
    "graph": "the project's graph",
    "flags.WHICH": "the dbt command being run",
}
# The adapter's methods that read nothing but the project (dispatching macros, quoting names).
PURE_ADAPTER = frozenset(
    {
        "dispatch",
        "quote",
        "quote_as_configured",
        "quote_seed_column",
        "type",
        "Relation",
        "Column",
        "config",
        "get_binding_char",
        "render_raw_columns_constraints",
    }
)
ENV_READ = "env:"  # a read that is an environment variable dbt looked up in the same invocation


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def kind(reads: Iterable[str], compiled: bool = True) -> tuple[str, str]:
    """What a compile's reads make of its SQL: (PURE | CONTEXT | VOLATILE, why in words)."""
    names = set(reads)
    for name, volatile in VOLATILE_READS.items():
        if name in names:
            return VOLATILE, f"its SQL reads {volatile} ({name}) when dbt compiles it"
    if not compiled:
        return CONTEXT, "dbt could not compile it without querying the database"
    for name in sorted(names):
        what = CONTEXT_READS.get(name)
        if what is None and name.startswith("adapter.") and name[len("adapter.") :] not in PURE_ADAPTER:
            what = "the database"
        if what is not None:
            return CONTEXT, f"its SQL reads {what} ({name}) when dbt compiles it"
    return PURE, ""


def env_names(reads: Iterable[str]) -> set[str]:
    """The environment variables among a compile's reads."""
    return {name[len(ENV_READ) :] for name in reads if name.startswith(ENV_READ)}


def context_digest(manifest: Manifest, stamp: Mapping[str, str], env: Mapping[str, str]) -> str:
    """The project-wide part of every compile key (see the module docstring).

    ``stamp``: the parse stamp's parts (``project.manifest.stamp_parts``: dbt's version, target,
    vars, folders, dbt_project.yml files, environment digests); ``env``: digests of the values of the
    environment variables compiles looked up since (keyed, as the stamp's).
    """
    kept = {
        k: v for k, v in stamp.items() if not k.startswith(("file:", "selection:")) or k.endswith("dbt_project.yml")
    }
    profile = manifest.profile.context if manifest.profile is not None else ""
    return _digest({"manifest": manifest.context, "profile": profile, "stamp": kept, "env": dict(env)})


def node_key(manifest: Manifest, uid: str, memo: dict[str, str] | None = None) -> str:
    """The node's own part of its compile key: its definition, the names of what it refs, the sources
    it reads and the ephemeral models it inlines (theirs recursively)."""
    memo = {} if memo is None else memo
    if uid in memo:
        return memo[uid]
    node = manifest.nodes[uid]
    parts = [node.definition]
    for parent in node.depends_on:
        found = manifest.nodes.get(parent)
        if found is None:
            parts.append(f"{parent}: missing")
        elif found.resource_type == "source":
            parts.append(f"{parent}: {found.definition}")
        elif found.materialized == "ephemeral":
            parts.append(f"{parent}: {node_key(manifest, parent, memo)}")
        else:
            parts.append(f"{parent}: {found.relation}")
    memo[uid] = _digest(parts)
    return memo[uid]


def compile_key(context: str, node: str) -> str:
    return _digest([context, node])


def graph_digest(manifest: Manifest) -> str:
    """Every node's definition: what a compile that reads dbt's ``graph`` depends on."""
    return _digest(sorted((uid, node.definition) for uid, node in manifest.nodes.items()))
