"""The dbt manifest as plain, typed data, and the stamp that says when dbt must parse again.

Reading the manifest is pure and cheap (JSON); parsing the project needs dbt and
happens (in the ``dbt`` layer) only when ``project_stamp`` changed since the last parse.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import AbstractSet, Any, Iterable, Iterator, Mapping, Sequence

from ..keys import keyed_digest
from .context import DbtContext, DbtProfile, read_project_yaml
from .packages import PACKAGE_FILES, installed_project_dirs, packages_dir

STAMP_VERSION = 6  # 6: environment variables dbt looked up, DBT_*; the compile context of the profile
# Default folders of a dbt project (dbt_project.yml may rename them).
PATH_KEYS: Mapping[str, Sequence[str]] = {
    "model-paths": ["models"],
    "seed-paths": ["seeds"],
    "macro-paths": ["macros"],
    "snapshot-paths": ["snapshots"],
    "test-paths": ["tests"],
    "analysis-paths": ["analyses"],
}
SOURCE_SUFFIXES: AbstractSet[str] = {".sql", ".yml", ".yaml", ".py", ".md", ".csv"}
# env_var('NAME') as written in SQL, YAML or Jinja, in single-quoted YAML too (quotes doubled: env_var(''NAME'')).
ENV_VAR_RE = re.compile(r"""env_var\(\s*['"]{1,2}([^'"]+)['"]""")
BUILDABLE = ("seed", "model", "snapshot")
DBT_ENV_PREFIX = "DBT_"  # dbt reads its flags, and DBT_ENV_CUSTOM_ENV_* for every node, from these


@dataclass(frozen=True)
class Relation:
    database: str | None
    schema: str | None
    identifier: str

    def key(self) -> tuple[str, str, str]:
        """Case-insensitive identity, as DuckDB compares identifiers."""
        return ((self.database or "").lower(), (self.schema or "").lower(), self.identifier.lower())

    def __str__(self) -> str:
        return ".".join(p for p in (self.database, self.schema, self.identifier) if p)


@dataclass(frozen=True)
class Node:
    """One manifest node (seed, model, snapshot, source or test) as the engine needs it."""

    unique_id: str
    resource_type: str
    name: str
    package: str
    path: str | None
    fqn: tuple[str, ...]
    relation: Relation | None
    materialized: str | None
    tags: tuple[str, ...]
    depends_on: tuple[str, ...]
    macros: tuple[str, ...]
    raw_code: str
    config: Mapping[str, Any]
    columns: Mapping[str, Any]
    description: str = ""
    external_location: str | None = None
    # What dbt-duckdb formats a source's external location with: its meta, and the config's ``formatter``.
    location_meta: Mapping[str, Any] = field(default_factory=dict)
    test_severity: str | None = None
    test_name: str | None = None
    test_kwargs: Mapping[str, Any] = field(default_factory=dict)
    source_name: str | None = None  # a source's name in sources.yml (its tables are its children)
    # Names a test's ref()/source() calls that no enabled node answers: dbt keeps the test
    # in the manifest (leaving the missing node out of depends_on), warns, and never runs it.
    unresolved: tuple[str, ...] = ()
    # A digest of the node as dbt parsed it (its code, config, meta, tags, description, columns,
    # refs...): everything of its own a compile of it can read (``project.compile_context``).
    definition: str = ""

    @property
    def is_buildable(self) -> bool:
        """Does dbt materialise this node into a relation that setup builds?"""
        return self.resource_type in BUILDABLE and self.materialized != "ephemeral"

    @property
    def writes_table(self) -> bool:
        """Does dbt write a relation for it: one setup builds, or a test's table of failures (store_failures)?"""
        return self.is_buildable or (self.resource_type == "test" and self.relation is not None)

    @property
    def is_compiled(self) -> bool:
        """Does dbt compile SQL for it on its own (a SQL model, snapshot or data test; not a seed, source,
        Python model, or ephemeral model: its SQL is compiled into each node reading it)?"""
        return (
            self.resource_type in ("model", "snapshot", "test")
            and not (self.path or "").endswith(".py")
            and self.materialized != "ephemeral"
        )

    @property
    def in_staging_folder(self) -> bool:
        """A node in a `staging` folder of its project (dbt's fqn: project, folders..., name)."""
        return "staging" in self.fqn[1:-1]

    @property
    def display_name(self) -> str:
        """``raw.raw_orders`` for a source (as source() names it), the name otherwise."""
        return f"{self.source_name}.{self.name}" if self.source_name else self.name

    @property
    def selector(self) -> str:
        """dbt selection syntax that picks exactly this node.

        A seed's or model's file is unique to it; tests share their yml file, so
        they are picked by their full fqn.
        """
        if self.resource_type == "test" or not self.path:
            return "fqn:" + ".".join(self.fqn)
        return f"path:{self.path}"


@dataclass(frozen=True)
class Manifest:
    """Nodes and macros of a parsed project, plus the selections resolved by dbt."""

    nodes: Mapping[str, Node]
    macros: Mapping[str, tuple[str, tuple[str, ...]]]  # unique_id -> (sql, macro deps)
    project_name: str
    dbt_version: str
    adapter_type: str
    selections: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    invocation_id: str = ""
    profile: DbtProfile | None = None  # as dbt rendered it in the parse that wrote this manifest
    # A source whose table a seed, model or snapshot of the project builds -> that node.
    source_builders: Mapping[str, str] = field(default_factory=dict)
    # A digest of what any node's compile can read of the project beyond itself: every macro (the
    # project's and its packages'; dbt's own change with its version) and doc block.
    context: str = ""
    # Macros of the project or a package named like one of dbt's or dbt-duckdb's (create_table_as,
    # default__..., duckdb__...): they change how dbt builds, not only what a node compiles to.
    overrides: tuple[str, ...] = ()

    def builder_of(self, identifier: str) -> str | None:
        """The buildable node whose table is named ``identifier`` (DuckDB compares names case-insensitively)."""
        wanted = identifier.lower()
        found = sorted(
            uid
            for uid, n in self.nodes.items()
            if n.is_buildable and n.relation is not None and n.relation.identifier.lower() == wanted
        )
        return found[0] if found else None


def source_builders(nodes: Mapping[str, Node]) -> dict[str, str]:
    """Sources that are tables the project builds (a seed read through source(), say): source -> builder.

    dbt's graph has no edge from the seed to the source, so without this a seed edit did not
    reach the source's readers and a cold build read the table before the seed wrote it.
    Sources with an external location are files, never a node's table.
    """
    built = {n.relation.key(): uid for uid, n in sorted(nodes.items()) if n.is_buildable and n.relation is not None}
    found = {}
    for uid, node in nodes.items():
        if node.resource_type != "source" or node.external_location or node.relation is None:
            continue
        builder = built.get(node.relation.key())
        if builder is not None and uid not in nodes[builder].depends_on:  # a node reading its own table
            found[uid] = builder
    return found


def _relation(raw: Mapping[str, Any]) -> Relation | None:
    identifier = raw.get("alias") or raw.get("identifier") or raw.get("name")
    if not identifier:
        return None
    return Relation(raw.get("database"), raw.get("schema"), identifier)


def _node_from_dict(raw: Mapping[str, Any]) -> Node:
    config = raw.get("config") or {}
    rtype = raw["resource_type"]
    depends_on = raw.get("depends_on") or {}
    external, location_meta = _external_location(raw, config)
    test_severity, test_name, test_kwargs = _test_fields(raw, config)
    return Node(
        unique_id=raw["unique_id"],
        resource_type=rtype,
        name=raw["name"],
        package=raw.get("package_name", ""),
        path=raw.get("original_file_path"),
        fqn=tuple(raw.get("fqn") or ()),
        relation=_relation(raw) if _writes_table(rtype, config) else None,
        materialized=config.get("materialized") if rtype != "source" else None,
        tags=tuple(sorted(set(raw.get("tags") or ()) | set(config.get("tags") or ()))),
        depends_on=tuple(sorted(depends_on.get("nodes") or ())),
        macros=tuple(sorted(depends_on.get("macros") or ())),
        raw_code=raw.get("raw_code") or "",
        config=config,
        columns=_columns(raw),
        description=raw.get("description") or "",
        external_location=external,
        location_meta=location_meta,
        test_severity=test_severity,
        test_name=test_name,
        test_kwargs=test_kwargs,
        source_name=raw.get("source_name") if rtype == "source" else None,
    )


def _writes_table(rtype: str, config: Mapping[str, Any]) -> bool:
    """Does the node have a table (or view) of its own? A test storing its failures writes one too (in dbt's
    audit schema)."""
    if rtype in ("seed", "model", "snapshot", "source"):
        return True
    return rtype == "test" and bool(config.get("store_failures") or config.get("store_failures_as"))


def _columns(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: {"data_type": col.get("data_type"), "constraints": col.get("constraints") or []}
        for name, col in (raw.get("columns") or {}).items()
    }


def _external_location(raw: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The file a source reads (its config's, else its meta's), and the meta that says how to read it."""
    meta = {**(raw.get("source_meta") or {}), **(raw.get("meta") or {})}
    external = config.get("external_location") or meta.get("external_location")
    if not external:
        return external, {}
    return external, {**meta, **{k: v for k, v in config.items() if k == "formatter"}}


def _test_fields(raw: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[str | None, str | None, dict[str, Any]]:
    """A test's severity, generic test name and arguments (None and None for any other node)."""
    test_meta = raw.get("test_metadata") or {}
    kwargs = test_meta.get("kwargs") or {}
    if raw["resource_type"] != "test":
        return None, None, kwargs
    return (config.get("severity") or "ERROR").lower(), test_meta.get("name"), kwargs


def _ref_name(ref: Any) -> str:
    """A ref as manifest.json writes it: {"name", "package", "version"} (a list before dbt 1.5)."""
    if isinstance(ref, Mapping):
        return str(ref.get("name") or "")
    return str(ref[-1]) if isinstance(ref, (list, tuple)) and ref else str(ref)


def _unresolved(raw: Mapping[str, Any], refs: set[str], sources: set[tuple[str, str]]) -> tuple[str, ...]:
    missing = [name for name in map(_ref_name, raw.get("refs") or ()) if name not in refs]
    missing += [".".join(map(str, s)) for s in raw.get("sources") or () if tuple(s[-2:]) not in sources]
    return tuple(sorted(set(missing)))


# Fields of a parsed node that say nothing of what it compiles to (when, where dbt wrote it).
VOLATILE_FIELDS = frozenset(
    {
        "created_at",
        "compiled_path",
        "build_path",
        "deferred",
        "compiled",
        "compiled_code",
        "extra_ctes",
        "extra_ctes_injected",
    }
)
DBT_PACKAGES = ("dbt", "dbt_duckdb")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Digests:
    """What ``manifest_from_dict`` derives from a parse once (the manifest cache keeps it): each node's
    definition digest, the project-wide compile context, and the macros overriding dbt's."""

    definitions: Mapping[str, str]
    context: str
    overrides: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"definitions": dict(self.definitions), "context": self.context, "overrides": list(self.overrides)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Digests":
        return cls(
            {str(k): str(v) for k, v in data["definitions"].items()},
            str(data["context"]),
            tuple(map(str, data["overrides"])),
        )


def manifest_digests(raw: Mapping[str, Any]) -> Digests:
    """Each node's definition, the compile context of the project, the macros overriding dbt's (see ``Manifest``)."""
    entries = {**raw.get("nodes", {}), **raw.get("sources", {})}
    definitions = {
        uid: _digest({k: v for k, v in entry.items() if k not in VOLATILE_FIELDS}) for uid, entry in entries.items()
    }
    macros = raw.get("macros", {})
    own = {
        uid: m.get("macro_sql") or ""
        for uid, m in macros.items()
        if not uid.startswith(tuple(f"macro.{p}." for p in DBT_PACKAGES))
    }
    docs = {
        uid: d.get("block_contents")
        for uid, d in (raw.get("docs") or {}).items()
        if not uid.startswith(tuple(f"doc.{p}." for p in DBT_PACKAGES))
    }
    meta = raw.get("metadata", {})
    context = _digest(
        {"macros": own, "docs": docs, "dbt": meta.get("dbt_version"), "adapter": meta.get("adapter_type")}
    )
    builtin = {
        _stem(uid.split(".", 2)[2]) for uid in macros if uid.startswith(tuple(f"macro.{p}." for p in DBT_PACKAGES))
    }
    overrides = sorted(
        uid
        for uid in own
        if (stem := _stem(uid.split(".", 2)[2])) in builtin
        and not stem.startswith(COMPILE_TIME_PREFIXES)
        and stem not in COMPILE_TIME_MACROS
    )
    return Digests(definitions, context, tuple(overrides))


# dbt's macros a project may override that act while dbt parses or compiles (their effect is in the
# manifest's nodes, or in the compiled SQL): not how dbt builds a table or runs a test.
COMPILE_TIME_PREFIXES = ("generate_", "test_")
COMPILE_TIME_MACROS = frozenset({"ref", "source", "get_where_subquery"})


def _stem(name: str) -> str:
    """A dispatched macro's name without its adapter prefix: 'duckdb__create_table_as' -> 'create_table_as'."""
    for prefix in ("default__", "duckdb__"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def manifest_from_dict(
    raw: Mapping[str, Any],
    selections: Mapping[str, tuple[str, ...]] | None = None,
    profile: DbtProfile | None = None,
    digests: Digests | None = None,
) -> Manifest:
    """Turn manifest.json content into a ``Manifest`` (pure; no dbt import). ``digests``: what
    ``manifest_digests`` gives for ``raw``, when kept (computed otherwise)."""
    digests = manifest_digests(raw) if digests is None else digests
    nodes = {uid: _node_from_dict(n) for uid, n in raw.get("nodes", {}).items()}
    nodes.update({uid: _node_from_dict(s) for uid, s in raw.get("sources", {}).items()})
    nodes = {uid: replace(node, definition=digests.definitions.get(uid, "")) for uid, node in nodes.items()}
    refs = {n.name for n in nodes.values() if n.resource_type in ("model", "seed", "snapshot")}
    sources = {(str(s.get("source_name")), str(s.get("name"))) for s in raw.get("sources", {}).values()}
    for uid, node in raw.get("nodes", {}).items():
        if node.get("resource_type") == "test":
            missing = _unresolved(node, refs, sources)
            if missing:
                nodes[uid] = replace(nodes[uid], unresolved=missing)
    macros = {
        uid: (m.get("macro_sql") or "", tuple((m.get("depends_on") or {}).get("macros") or ()))
        for uid, m in raw.get("macros", {}).items()
        if not uid.startswith(("macro.dbt.", "macro.dbt_duckdb."))
    }
    meta = raw.get("metadata", {})
    return Manifest(
        nodes=nodes,
        macros=macros,
        project_name=meta.get("project_name", ""),
        dbt_version=meta.get("dbt_version", ""),
        adapter_type=meta.get("adapter_type", ""),
        selections=dict(selections or {}),
        invocation_id=meta.get("invocation_id", ""),
        profile=profile,
        source_builders=source_builders(nodes),
        context=digests.context,
        overrides=digests.overrides,
    )


# --- freshness -------------------------------------------------------------------


def project_files(project_dir: Path, project_yaml: Mapping[str, Any]) -> list[Path]:
    """Every file whose content or presence can change what dbt parses."""
    files = [project_dir / "dbt_project.yml"]
    for key, defaults in PATH_KEYS.items():
        for rel in project_yaml.get(key, defaults) or []:
            root = project_dir / str(rel)
            if root.is_dir():
                files.extend(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file())
    for extra in (*PACKAGE_FILES, "selectors.yml"):
        if (project_dir / extra).is_file():
            files.append(project_dir / extra)
    return sorted(set(files))


def parsed_files(project_dir: Path, project_yaml: Mapping[str, Any]) -> list[Path]:
    """The project's files and those of every installed package: a package upgrade or a
    macro edited in a local package changes the parse like the project's own files do."""
    files = project_files(project_dir, project_yaml)
    for package in installed_project_dirs(project_dir):
        files.extend(project_files(package, read_project_yaml(package)))
    return files


def watched_project_paths(project_dir: Path) -> list[Path]:
    """Every file and folder whose content, entries or presence the parse stamp reads or looks
    for, in the project and each installed package: their files, the folders holding them (a
    file added or removed changes its folder), the files whose absence counts, and the packages
    folder (``store.witness``)."""
    paths: list[Path] = [packages_dir(project_dir)]
    for project in (project_dir, *installed_project_dirs(project_dir)):
        project_yaml = read_project_yaml(project)
        paths += project_files(project, project_yaml)
        paths += [project / name for name in ("dbt_project.yml", *PACKAGE_FILES, "selectors.yml", "profiles.yml")]
        for key, defaults in PATH_KEYS.items():
            for rel in project_yaml.get(key, defaults) or []:
                root = project / str(rel)
                paths.append(root)
                paths += [Path(folder) / name for folder, names, _ in os.walk(root) for name in names]
    return paths


def file_set(ctx: DbtContext) -> str:
    """Which project files exist (names, not content): a file added, removed, renamed or moved
    between folders changes it. dbt's partial parse mishandles exactly those changes."""
    names = sorted(
        os.path.relpath(p, ctx.project_dir) for p in parsed_files(ctx.project_dir, read_project_yaml(ctx.project_dir))
    )
    return hashlib.sha256("\0".join(names).encode()).hexdigest()


# Folders whose files each become a node of the kind named, by suffix.
_NODE_FILES: Mapping[str, tuple[str, AbstractSet[str]]] = {
    "model-paths": ("model", {".sql", ".py"}),
    "seed-paths": ("seed", {".csv"}),
    "test-paths": ("test", {".sql"}),
}


def parse_problems(raw: Mapping[str, Any], project_dir: Path) -> list[str]:
    """Where a parse disagrees with the files on disk: a file without its node, a node without its file.

    A fresh parse never does; a partial one (dbt re-parsing only what changed) sometimes does.
    """
    known = _parsed_files(raw)
    problems = [f"{path}: no such file" for kind, path in sorted(known, key=str) if _lost(kind, path, project_dir)]
    project_yaml = read_project_yaml(project_dir)
    for key, (kind, suffixes) in _NODE_FILES.items():
        for rel in project_yaml.get(key, PATH_KEYS[key]) or []:
            for name in _node_files(project_dir, project_dir / str(rel), kind, suffixes):
                if (kind, name) not in known:
                    problems.append(f"{name}: no {kind} parsed from it")
    return problems


def _parsed_files(raw: Mapping[str, Any]) -> set[tuple[Any, Any]]:
    """(resource type, file) of each node of the project the parse holds, enabled or disabled."""
    project = raw.get("metadata", {}).get("project_name")
    parsed = [n for n in raw.get("nodes", {}).values() if n.get("package_name") == project]
    parsed += [
        n for versions in (raw.get("disabled") or {}).values() for n in versions if n.get("package_name") == project
    ]
    return {(n.get("resource_type"), n.get("original_file_path")) for n in parsed}


def _lost(kind: Any, path: Any, project_dir: Path) -> bool:
    """Is this the file of a parsed node that is not on disk (any more)?"""
    if kind not in BUILDABLE + ("test",) or not path or not path.endswith((".sql", ".py", ".csv")):
        return False
    return not (project_dir / path).is_file()


def _node_files(project_dir: Path, root: Path, kind: str, suffixes: AbstractSet[str]) -> Iterator[str]:
    """The files under ``root`` dbt parses a node of ``kind`` from (generic tests' macros are not nodes)."""
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        generic = kind == "test" and "generic" in path.relative_to(root).parts[:-1]
        if path.suffix in suffixes and path.is_file() and not generic:
            yield str(path.relative_to(project_dir))


def _dbt_version() -> str:
    try:
        return metadata.version("dbt-core") + "/" + metadata.version("dbt-duckdb")
    except metadata.PackageNotFoundError:  # pragma: no cover - dbt is a dependency
        return "unknown"


def _read_project(ctx: DbtContext) -> tuple[dict[str, str], set[str]]:
    """Every file dbt parses, by name, with a digest of its content (seed CSVs by path only), and the
    env_var() names they use."""
    project_yaml = read_project_yaml(ctx.project_dir)
    files: dict[str, str] = {}
    env_names: set[str] = set()
    profiles = ctx.profiles_dir / "profiles.yml"
    for path in [*parsed_files(ctx.project_dir, project_yaml), profiles]:
        name = path.relative_to(ctx.project_dir).as_posix() if path.is_relative_to(ctx.project_dir) else str(path)
        if path.suffix == ".csv" or not path.is_file():
            files[f"file:{name}"] = "present" if path.is_file() else "absent"
            continue
        content = path.read_bytes()
        files[f"file:{name}"] = hashlib.sha256(content).hexdigest()
        env_names.update(ENV_VAR_RE.findall(content.decode("utf-8", "replace")))
    return files, env_names


def stamp_parts(ctx: DbtContext, selections: Mapping[str, str], env_names: Iterable[str] = ()) -> dict[str, str]:
    """What dbt's parse of the project depends on, by named part (``project_stamp`` digests them).

    Seed CSVs count by path only: their content does not change the parse (the
    engine fingerprints it separately), so editing a seed costs no re-parse. The
    environment variables counted are those the project's files name in env_var('...'),
    those dbt looked up in its last parse (``env_names``: a name computed in Jinja too) and
    dbt's own (``DBT_*``: flags, ``DBT_ENV_CUSTOM_ENV_*``); their values enter as keyed
    digests: the parts are kept on disk, and must not let a reader test guesses of a password.
    """
    parts, literal = _read_project(ctx)
    env = ctx.environ()
    # A name dbt looked up in its last parse counts only while it is set: dbt reads some of its own only on
    # some paths (DBT_PP_TEST in a partial parse, not a full one), and an unset one counted on one run and
    # not the next would change the stamp, and so every compile key, for nothing. Set later, it counts.
    names = {
        *literal,
        *(name for name in env_names if env.get(name) is not None),
        *(name for name in env if name.startswith(DBT_ENV_PREFIX)),
    }
    context = {
        "version": STAMP_VERSION,
        "dbt": _dbt_version(),
        "target": ctx.target,
        # No database path: setup exports it as DUCKDB_PATH, so it counts (below) exactly when profiles.yml reads it.
        "profiles_dir": str(ctx.profiles_dir),
        **{f"var:{k}": v for k, v in ctx.vars.items()},
        **{
            f"env:{name}": None if env.get(name) is None else keyed_digest("env", name, env[name])
            for name in sorted(names)
        },
        **{f"selection:{k}": v for k, v in selections.items()},
    }
    parts.update({key: json.dumps(value, sort_keys=True, default=str) for key, value in context.items()})
    parts["project_dir"] = str(ctx.project_dir)  # absolute paths land in dbt's manifest
    parts["cwd"] = str(ctx.cwd)  # where dbt runs: the profile's relative path resolves there
    return parts


def project_stamp(ctx: DbtContext, selections: Mapping[str, str], parts: Mapping[str, str] | None = None) -> str:
    """A digest that changes exactly when dbt's parse of the project could change (see ``stamp_parts``)."""
    parts = stamp_parts(ctx, selections) if parts is None else parts
    return hashlib.sha256(json.dumps(dict(parts), sort_keys=True).encode()).hexdigest()


def why_parse(old: Mapping[str, str] | None, new: Mapping[str, str]) -> str:
    """Why dbt must parse again, in words: 'files changed: models/x.sql; vars changed: fx_rate'."""
    if old is None:
        return "no earlier parse"
    if not old:
        return "the last parse kept no record of its inputs"
    kinds = {
        "file": "files changed",
        "var": "vars changed",
        "env": "environment variables changed",
        "selection": "selections changed",
    }
    found: dict[str, list[str]] = {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        kind, _, name = key.partition(":")
        label = kinds.get(kind, "changed")
        found.setdefault(label, []).append(name or kind)
    if not found:
        return "the last parse was not kept"
    shown = []
    for label, names in found.items():
        listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        shown.append(f"{label}: {listed}")
    return "; ".join(shown)
