"""How dbt sees the project: paths, profile, target, vars and the database file its profile writes; why a parse failed."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import DatabaseError, ProjectError, SetupError, cannot_write

CENSUS_VAR = "census_parquet_path"
# What a dbt process needs of the environment besides the env_var() names the project
# reads: dbt's own flags (never a credential), and what any process needs to run.
PROCESS_ENV = ("PATH", "HOME", "TZ", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "NO_COLOR", "DO_NOT_TRACK")
DBT_FLAG_ENV = frozenset(f"DBT_{name}" for name in (
    "ARTIFACT_STATE_PATH", "CACHE_SELECTED_ONLY", "DEBUG", "DEFER", "DEFER_STATE", "EMPTY", "FAIL_FAST",
    "FAVOR_STATE", "INDIRECT_SELECTION", "INTROSPECT", "LOG_CACHE_EVENTS", "LOG_FILE_MAX_BYTES", "LOG_FORMAT",
    "LOG_FORMAT_FILE", "LOG_LEVEL", "LOG_LEVEL_FILE", "LOG_PATH", "MACRO_DEBUGGING", "NO_PRINT", "PARTIAL_PARSE",
    "PARTIAL_PARSE_FILE_DIFF", "POPULATE_CACHE", "PRINTER_WIDTH", "PROFILE", "QUIET", "SEND_ANONYMOUS_USAGE_STATS",
    "SINGLE_THREADED", "STATE", "STATIC_PARSER", "STORE_FAILURES", "USE_COLORS", "USE_COLORS_FILE",
    "USE_EXPERIMENTAL_PARSER", "USE_FAST_TEST_EDGES", "VERSION_CHECK", "WARN_ERROR", "WARN_ERROR_OPTIONS",
))
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

    def dbt_environment(self, env_var_names: set[str]) -> dict[str, str]:
        """What dbt needs of ``environ()`` to build this project, and nothing else (no stray secrets):
        the variables it reads with env_var(), dbt's flags, and the basics of any process."""
        env = self.environ()
        wanted = {*PROCESS_ENV, *DBT_FLAG_ENV, *env_var_names, *self.env_overrides()}
        return {k: v for k, v in env.items() if k in wanted or k.startswith("DBT_ENV_CUSTOM_ENV_")}

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
class DbtProfile:
    """The profile dbt rendered for the project: its name, target, adapter and the database it writes.

    ``written`` is the profile's ``path:`` as rendered; ``path`` is that file made absolute
    against the folder dbt runs in (``DbtContext.cwd``), or as written when it is no file
    (``:memory:``, ``md:...``).
    """

    name: str
    target: str
    adapter: str
    written: str | None
    path: str | None
    # What dbt-duckdb applies to every connection: checked before a build (store.database.profile_problem).
    settings: Mapping[str, Any] = field(default_factory=dict)
    extensions: tuple[Any, ...] = ()
    config_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def rendered(cls, name: str, target: str, adapter: str, written: str | None, cwd: Path,
                 credentials: Any = None) -> "DbtProfile":
        path = os.path.normpath(cwd / written) if written and is_database_file(written) else written
        return cls(name, target, adapter, written, path, dict(getattr(credentials, "settings", None) or {}),
                   tuple(getattr(credentials, "extensions", None) or ()),
                   dict(getattr(credentials, "config_options", None) or {}))

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
                "path": self.path, "settings": dict(self.settings), "extensions": list(self.extensions),
                "config_options": dict(self.config_options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DbtProfile":
        return cls(str(data["name"]), str(data["target"]), str(data["adapter"]), data.get("written"), data.get("path"),
                   dict(data.get("settings") or {}), tuple(data.get("extensions") or ()),
                   dict(data.get("config_options") or {}))


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


OS_ERROR_RE = re.compile(r"\[Errno (\d+)\] ([^:\]]+): '([^']+)'")
MISSING_PROFILE_RE = re.compile(r"Could not find profile named '([^']+)'")
MISSING_PATH_RE = re.compile(r"Path '([^']+)' does not exist")
MISSING_ENV_RE = re.compile(r"Env var required but not provided: '([^']+)'")
PROJECT_FILE_RE = re.compile(r"[\w./-]+\.(?:ya?ml|sql|csv|py|md)\b")


def parse_failure(ctx: DbtContext, message: str) -> SetupError:
    """Why dbt could not parse the project, in one line whose fix names the file or setting to change:
    a folder dbt cannot write, the profiles.yml it looked in, the variable it lacks, the file it names."""
    cause = f"dbt could not parse the project in {ctx.project_dir}: {message}"
    failed_os = OS_ERROR_RE.search(message)
    if failed_os:
        error = OSError(int(failed_os[1]), failed_os[2], failed_os[3])
        return cannot_write("dbt's files", Path(failed_os[3]), error,
                            "run setup from a copy of the project in a folder you can write")
    folder = MISSING_PATH_RE.search(message)
    if folder and Path(folder[1]) == ctx.profiles_dir:
        return ProjectError(f"the folder dbt reads profiles.yml from, {ctx.profiles_dir}, does not exist",
                            f"create {ctx.profiles_dir / 'profiles.yml'} with the project's profile, or set "
                            "dbt.profiles_dir (or DBT_PROFILES_DIR) to the folder that holds yours")
    profile = MISSING_PROFILE_RE.search(message)
    if profile:
        profiles = ctx.profiles_dir / "profiles.yml"
        if not profiles.is_file():
            return ProjectError(f"dbt found no profile named '{profile[1]}': {profiles} does not exist",
                                f"create {profiles} with a profile '{profile[1]}' (the profile: of dbt_project.yml), or "
                                "set dbt.profiles_dir (or DBT_PROFILES_DIR) to the folder that holds yours")
        return ProjectError(f"dbt found no profile named '{profile[1]}' in {profiles}",
                            f"add it to {profiles}, or correct profile: in {ctx.project_dir / 'dbt_project.yml'}")
    variable = MISSING_ENV_RE.search(message)
    if variable:
        return ProjectError(cause, f"set the environment variable {variable[1]}, or give env_var('{variable[1]}', ...) "
                                   "a default where the project reads it")
    named = PROJECT_FILE_RE.search(message)
    if named:
        return ProjectError(cause, f"correct {named[0]} as dbt's message says, then run again")
    return ProjectError(cause, "correct the project as dbt's message says (doit dbt args=\"parse\" shows all of "
                               "dbt's output), then run again")

