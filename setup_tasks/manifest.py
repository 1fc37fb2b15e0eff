"""The dbt manifest: when it must be re-parsed, and its nodes as plain, typed data.

Reading the manifest is pure and cheap (JSON); parsing the project needs dbt and
happens only when a project file changed since the last parse (see ``ProjectStamp``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ProjectError

STAMP_VERSION = 2
CACHE_FILE = "setup_cache.json"
# Default folders of a dbt project (dbt_project.yml may rename them).
PATH_KEYS = {
    "model-paths": ["models"],
    "seed-paths": ["seeds"],
    "macro-paths": ["macros"],
    "snapshot-paths": ["snapshots"],
    "test-paths": ["tests"],
    "analysis-paths": ["analyses"],
}
SOURCE_SUFFIXES = {".sql", ".yml", ".yaml", ".py", ".md", ".csv"}
ENV_VAR_RE = re.compile(r"""env_var\(\s*['"]([^'"]+)['"]""")
BUILDABLE = ("seed", "model", "snapshot")


@dataclass(frozen=True)
class DbtContext:
    """Everything that decides how dbt sees the project: paths, target, vars, database."""

    project_dir: Path
    profiles_dir: Path
    target: str | None
    vars: Mapping[str, Any]
    threads: int | None
    database_path: Path
    duckdb_threads: int | None = None
    duckdb_memory_limit: str | None = None

    def env(self) -> dict[str, str]:
        """Environment dbt runs with: the profile reads the database path and settings from it."""
        env = {
            "DUCKDB_PATH": str(self.database_path),
            "PLANWISE_DUCKDB_THREADS": str(self.duckdb_threads or os.cpu_count() or 1),
            "PLANWISE_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit or "80%",
        }
        if self.target:
            env["DBT_TARGET"] = self.target
        return env

    def environ(self) -> dict[str, str]:
        """The whole environment dbt sees: this process's, with ``env()`` on top."""
        return {**os.environ, **self.env()}

    def duckdb_config(self) -> dict[str, str]:
        """The same settings for the engine's own connections."""
        return {"threads": self.env()["PLANWISE_DUCKDB_THREADS"], "memory_limit": self.env()["PLANWISE_DUCKDB_MEMORY_LIMIT"]}

    def cli_args(self) -> list[str]:
        args = ["--project-dir", str(self.project_dir), "--profiles-dir", str(self.profiles_dir)]
        if self.target:
            args += ["--target", self.target]
        if self.vars:
            args += ["--vars", json.dumps(dict(self.vars), sort_keys=True, default=str)]
        if self.threads:
            args += ["--threads", str(self.threads)]
        args += ["--target-path", str(target_dir(self.project_dir, read_project_yaml(self.project_dir)))]
        return args


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
    test_severity: str | None = None
    attached_node: str | None = None
    test_name: str | None = None
    test_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_buildable(self) -> bool:
        """Does dbt materialise this node into a relation that setup builds?"""
        return self.resource_type in BUILDABLE and self.materialized != "ephemeral"

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


def _relation(raw: Mapping[str, Any]) -> Relation | None:
    identifier = raw.get("alias") or raw.get("identifier") or raw.get("name")
    if not identifier:
        return None
    return Relation(raw.get("database"), raw.get("schema"), identifier)


def _node_from_dict(raw: Mapping[str, Any]) -> Node:
    config = raw.get("config") or {}
    rtype = raw["resource_type"]
    materialized = config.get("materialized") if rtype != "source" else None
    meta = {**(raw.get("source_meta") or {}), **(raw.get("meta") or {})}
    external = (raw.get("config") or {}).get("external_location") or meta.get("external_location")
    test_meta = raw.get("test_metadata") or {}
    return Node(
        unique_id=raw["unique_id"],
        resource_type=rtype,
        name=raw["name"],
        package=raw.get("package_name", ""),
        path=raw.get("original_file_path"),
        fqn=tuple(raw.get("fqn") or ()),
        relation=_relation(raw) if rtype in ("seed", "model", "snapshot", "source") else None,
        materialized=materialized,
        tags=tuple(sorted(set(raw.get("tags") or ()) | set(config.get("tags") or ()))),
        depends_on=tuple(sorted((raw.get("depends_on") or {}).get("nodes") or ())),
        macros=tuple(sorted((raw.get("depends_on") or {}).get("macros") or ())),
        raw_code=raw.get("raw_code") or "",
        config=config,
        columns={
            name: {"data_type": col.get("data_type"), "constraints": col.get("constraints") or []}
            for name, col in (raw.get("columns") or {}).items()
        },
        description=raw.get("description") or "",
        external_location=external,
        test_severity=(config.get("severity") or "ERROR").lower() if rtype == "test" else None,
        attached_node=raw.get("attached_node"),
        test_name=test_meta.get("name") if rtype == "test" else None,
        test_kwargs=test_meta.get("kwargs") or {},
    )


def manifest_from_dict(raw: Mapping[str, Any], selections: Mapping[str, tuple[str, ...]] | None = None) -> Manifest:
    """Turn manifest.json content into a ``Manifest`` (pure; no dbt import)."""
    nodes = {uid: _node_from_dict(n) for uid, n in raw.get("nodes", {}).items()}
    nodes.update({uid: _node_from_dict(s) for uid, s in raw.get("sources", {}).items()})
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
    )


# --- freshness -------------------------------------------------------------------


_project_yaml_cache: dict[tuple[str, int], dict[str, Any]] = {}


def read_project_yaml(project_dir: Path) -> dict[str, Any]:
    """dbt_project.yml as data (read once per content version: it is asked for often)."""
    path = project_dir / "dbt_project.yml"
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        key = (str(path), -1)
    if key not in _project_yaml_cache:
        _project_yaml_cache[key] = _read_project_yaml(path, project_dir)
    return _project_yaml_cache[key]


def _read_project_yaml(path: Path, project_dir: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ProjectError(
            f"no dbt project at {project_dir} (dbt_project.yml missing)",
            "set dbt.project_dir in the setup config or DBT_PROJECT_DIR",
        ) from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path} is not valid YAML: {exc}", "fix the file") from None
    if not isinstance(data, dict):
        raise ProjectError(f"{path} is not a mapping", "fix the file")
    return data


def target_dir(project_dir: Path, project_yaml: Mapping[str, Any]) -> Path:
    """The engine's own dbt target path: ``<target-path>/planwise``.

    Kept apart from the project's target folder, so that a `dbt build` someone runs by
    hand (which rewrites target/manifest.json) does not cost the next setup a re-parse,
    and setup's parses do not replace what the hand-run dbt left there.
    """
    target = project_yaml.get("target-path", "target")
    if "{{" in str(target):
        target = "target"
    return project_dir / target / "planwise"


def project_files(project_dir: Path, project_yaml: Mapping[str, Any]) -> list[Path]:
    """Every file whose content or presence can change what dbt parses."""
    files = [project_dir / "dbt_project.yml"]
    for key, defaults in PATH_KEYS.items():
        for rel in project_yaml.get(key, defaults) or []:
            root = project_dir / str(rel)
            if root.is_dir():
                files.extend(
                    p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()
                )
    for extra in ("packages.yml", "dependencies.yml", "selectors.yml"):
        if (project_dir / extra).is_file():
            files.append(project_dir / extra)
    return sorted(set(files))


def _dbt_version() -> str:
    try:
        return metadata.version("dbt-core") + "/" + metadata.version("dbt-duckdb")
    except metadata.PackageNotFoundError:  # pragma: no cover - dbt is a dependency
        return "unknown"


def project_stamp(ctx: DbtContext, selections: Mapping[str, str]) -> str:
    """A digest that changes exactly when dbt's parse of the project could change.

    Seed CSVs count by path only: their content does not change the parse (the
    engine fingerprints it separately), so editing a seed costs no re-parse.
    """
    project_yaml = read_project_yaml(ctx.project_dir)
    digest = hashlib.sha256()
    env_names: set[str] = set()
    profiles = ctx.profiles_dir / "profiles.yml"
    for path in [*project_files(ctx.project_dir, project_yaml), profiles]:
        digest.update(str(path).encode() + b"\0")
        if path.suffix == ".csv" or not path.is_file():
            continue
        content = path.read_bytes()
        digest.update(hashlib.sha256(content).digest())
        env_names.update(ENV_VAR_RE.findall(content.decode("utf-8", "replace")))
    env = ctx.environ()
    context = {
        "version": STAMP_VERSION,
        "dbt": _dbt_version(),
        "target": ctx.target,
        "vars": ctx.vars,
        "database": str(ctx.database_path),
        "profiles_dir": str(ctx.profiles_dir),
        "env": {name: env.get(name) for name in sorted(env_names)},
        "selections": dict(selections),
    }
    digest.update(json.dumps(context, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ManifestCache:
    """What the last parse left behind: its stamp and the selections dbt resolved."""

    path: Path
    manifest_path: Path

    def load(self, stamp: str) -> Manifest | None:
        """The cached manifest when its stamp matches, else None (re-parse needed)."""
        try:
            cache = json.loads(self.path.read_text())
            if cache.get("stamp") != stamp:
                return None
            raw = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None
        if raw.get("metadata", {}).get("invocation_id") != cache.get("invocation_id"):
            return None  # manifest.json rewritten by someone else's dbt run
        selections = {k: tuple(v) for k, v in cache.get("selections", {}).items()}
        return manifest_from_dict(raw, selections)

    def save(self, stamp: str, raw: Mapping[str, Any], selections: Mapping[str, tuple[str, ...]]) -> None:
        payload = {
            "stamp": stamp,
            "invocation_id": raw.get("metadata", {}).get("invocation_id"),
            "selections": {k: list(v) for k, v in selections.items()},
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, self.path)


def manifest_cache(ctx: DbtContext) -> ManifestCache:
    tdir = target_dir(ctx.project_dir, read_project_yaml(ctx.project_dir))
    return ManifestCache(tdir / CACHE_FILE, tdir / "manifest.json")


def load_manifest(ctx: DbtContext, selections: Mapping[str, str], runner: Any = None) -> Manifest:
    """The project's manifest, parsed by dbt only when a project file changed."""
    stamp = project_stamp(ctx, selections)
    cache = manifest_cache(ctx)
    cached = cache.load(stamp)
    if cached is not None:
        return cached
    if runner is None:
        from . import execution as runner  # imports dbt: only on this path

    raw, resolved = runner.parse_project(ctx, selections)
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    cache.save(stamp, raw, resolved)
    return manifest_from_dict(raw, resolved)
