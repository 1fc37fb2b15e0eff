"""How dbt sees the project: paths, profile, target, vars and the database file its profile writes."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import DatabaseError, ProjectError

CENSUS_VAR = "census_parquet_path"
# What any process needs of the environment to run (the warm worker starts with only these).
PROCESS_ENV = ("PATH", "HOME", "TZ", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "NO_COLOR", "DO_NOT_TRACK")
DATABASE_ENV = "DUCKDB_PATH"  # what setup exports when database.path is set; a profile may read it


@dataclass(frozen=True)
class DbtContext:
    """Everything that decides how dbt sees the project: paths, target, vars, database."""

    project_dir: Path
    profiles_dir: Path
    target: str | None
    vars: Mapping[str, Any]
    threads: int | None
    database_path: Path | None  # database.path when set; None: the profile alone names the file
    duckdb_threads: int | None = None
    duckdb_memory_limit: str | None = None
    root: Path | None = None  # the folder setup runs from: of setup.yaml (beside dodo.py), else of dodo.py

    @property
    def cwd(self) -> Path:
        """Where dbt runs: the root (in a repository set up by `init`, the project directory
        itself; in this one, the folder above dbt/), as a person runs dbt there; a configuration
        named with ``config=`` elsewhere moves it to that file's folder. A relative
        ``path:`` in the profile or external location means the same file to setup and to them."""
        return self.root or self.project_dir

    def env_overrides(self) -> dict[str, str]:
        """What setup adds to dbt's environment: a profile may read the database path and settings from it."""
        env = {
            "PLANWISE_DUCKDB_THREADS": str(self.duckdb_threads or os.cpu_count() or 1),
            "PLANWISE_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit or "80%",
        }
        if self.database_path is not None:
            env[DATABASE_ENV] = str(self.database_path)
        if self.target:
            env["DBT_TARGET"] = self.target
        return env

    def environ(self) -> dict[str, str]:
        """The whole environment dbt sees: this process's, with ``env_overrides()`` on top."""
        return {**os.environ, **self.env_overrides()}

    def target_path(self) -> Path:
        """dbt's target path for this context: one folder per database, target, profiles and vars,
        so that runs on two databases never read each other's manifest."""
        key = json.dumps([str(self.database_path), self.target, str(self.profiles_dir), dict(self.vars), str(self.cwd)],
                         sort_keys=True, default=str)
        return target_dir(self.project_dir, read_project_yaml(self.project_dir)) / f"ctx-{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    def duckdb_config(self) -> dict[str, str]:
        """The same settings for the engine's own connections."""
        return {"threads": self.env_overrides()["PLANWISE_DUCKDB_THREADS"], "memory_limit": self.env_overrides()["PLANWISE_DUCKDB_MEMORY_LIMIT"]}

    def cli_args(self, own_target: bool = True) -> list[str]:
        """dbt's options for this context; ``own_target``: setup's own target folder (else dbt's usual one)."""
        args = ["--project-dir", str(self.project_dir), "--profiles-dir", str(self.profiles_dir)]
        if self.target:
            args += ["--target", self.target]
        if self.vars:
            args += ["--vars", json.dumps(dict(self.vars), sort_keys=True, default=str)]
        if self.threads:
            args += ["--threads", str(self.threads)]
        if own_target:
            args += ["--target-path", str(self.target_path())]
        return args


@dataclass(frozen=True)
class Connection:
    """How dbt-duckdb configures its connection from the profile, as far as setup opens DuckDB the same way.

    ``config``: DuckDB's connect options (``config_options``); ``setup``: the statements it runs on a
    new connection (extensions loaded, databases attached) and ``settings``: the ``SET`` of each cursor.
    ``unsupported``: profile keys setup cannot reproduce (secrets, plugins, filesystems...): with any,
    only dbt builds and tests.
    """

    config: Mapping[str, Any] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"config": dict(self.config), "setup": list(self.setup), "settings": dict(self.settings),
                "unsupported": list(self.unsupported)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Connection":
        data = data or {}
        return cls(dict(data.get("config") or {}), tuple(data.get("setup") or ()),
                   {str(k): str(v) for k, v in (data.get("settings") or {}).items()},
                   tuple(data.get("unsupported") or ()))


@dataclass(frozen=True)
class DbtProfile:
    """The profile dbt rendered for the project: its name, target, adapter and the database it writes.

    ``written`` is the profile's ``path:`` as rendered; ``path`` is that file made absolute
    against the folder dbt runs in (``DbtContext.cwd``), or as written when it is no file
    (``:memory:``, ``md:...``). ``context``: a digest of everything the target renders (name,
    schema, threads, settings...: what ``{{ target.* }}`` can read); ``connection``: how
    dbt-duckdb opens the database from it.
    """

    name: str
    target: str
    adapter: str
    written: str | None
    path: str | None
    context: str = ""
    connection: Connection = field(default_factory=Connection)

    @classmethod
    def rendered(cls, name: str, target: str, adapter: str, written: str | None, cwd: Path,
                 context: str = "", connection: Connection | None = None) -> "DbtProfile":
        path = os.path.normpath(cwd / written) if written and is_database_file(written) else written
        return cls(name, target, adapter, written, path, context, connection or Connection())

    @property
    def label(self) -> str:
        return f"dbt's profile {self.name} (target {self.target})"

    def database_file(self, configured: Path | None) -> Path:
        """The one database setup inspects: the profile's file; ``configured`` (database.path) must agree."""
        if self.adapter != "duckdb":
            raise DatabaseError(f"{self.label} uses the {self.adapter} adapter; setup builds DuckDB files",
                                "choose a duckdb target with dbt.target (or DBT_TARGET)")
        if not self.path or not is_database_file(self.path):
            raise DatabaseError(f"{self.label} writes to {self.path or ':memory:'}, not a database file",
                                "set path: in profiles.yml to a DuckDB file")
        written = Path(self.path)
        if configured is not None and os.path.realpath(configured) != os.path.realpath(written):
            raise DatabaseError(
                f"database.path is {configured} but {self.label} writes {written}",
                f"remove database.path / {DATABASE_ENV} to build the profile's file, or let the profile read it: "
                f"path: \"{{{{ env_var('{DATABASE_ENV}', '{self.written}') }}}}\"",
            )
        return written

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target, "adapter": self.adapter, "written": self.written,
                "path": self.path, "context": self.context, "connection": self.connection.as_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DbtProfile":
        return cls(str(data["name"]), str(data["target"]), str(data["adapter"]), data.get("written"), data.get("path"),
                   str(data.get("context") or ""), Connection.from_dict(data.get("connection")))


def is_database_file(path: str) -> bool:
    """Is a profile's ``path`` a file on this machine (not in memory, MotherDuck or a URL)?"""
    return path != ":memory:" and not path.startswith(("md:", "motherduck:")) and "://" not in path


def dbt_context(settings: Any) -> DbtContext:
    """The context of a setup configuration: its dbt section, database and census path."""
    variables = dict(settings.dbt.vars_dict())
    variables.setdefault(CENSUS_VAR, str(settings.census.path))
    return DbtContext(
        project_dir=settings.dbt.project_dir,
        profiles_dir=settings.dbt.profiles_dir,
        target=settings.dbt.target,
        vars=variables,
        threads=settings.dbt.threads,
        database_path=settings.database.path,
        duckdb_threads=settings.database.threads,
        duckdb_memory_limit=settings.database.memory_limit,
        # dbt runs where the configuration is (setup.yaml: beside dodo.py unless config= names another)
        root=settings.source.parent if settings.source is not None else settings.root,
    )


def read_project_yaml(project_dir: Path) -> dict[str, Any]:
    """dbt_project.yml as data (parsed once per file version: it is asked for often)."""
    path = project_dir / "dbt_project.yml"
    try:
        version = path.stat().st_mtime_ns
    except OSError:
        version = -1
    return _read_project_yaml(path, project_dir, version)


@functools.lru_cache(maxsize=8)
def _read_project_yaml(path: Path, project_dir: Path, version: int) -> dict[str, Any]:
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
    """The engine's own dbt folder: ``<target-path>/planwise``, holding one target path per context.

    Kept apart from the project's target folder, so that a `dbt build` someone runs by
    hand (which rewrites target/manifest.json) does not cost the next setup a re-parse,
    and setup's parses do not replace what the hand-run dbt left there. Private (0700):
    dbt writes rendered SQL and env_var() values into it.
    """
    target = project_yaml.get("target-path", "target")
    if "{{" in str(target):
        target = "target"
    return project_dir / target / "planwise"
