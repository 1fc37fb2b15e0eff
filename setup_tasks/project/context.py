"""How dbt sees the project: paths, profile, target, vars and the database it writes."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import ProjectError

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

    def env_overrides(self) -> dict[str, str]:
        """What setup adds to dbt's environment: the profile reads the database path and settings from it."""
        env = {
            "DUCKDB_PATH": str(self.database_path),
            "PLANWISE_DUCKDB_THREADS": str(self.duckdb_threads or os.cpu_count() or 1),
            "PLANWISE_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit or "80%",
        }
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
        key = json.dumps([str(self.database_path), self.target, str(self.profiles_dir), dict(self.vars)],
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
