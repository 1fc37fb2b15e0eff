"""How dbt sees the project: paths, profile, target, vars, the database file its profile writes; why a parse failed."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


from ..config import PROFILES_FILE, Settings, profiles_candidates
from ..config.yaml_cache import parsed
from ..errors import DatabaseError, ProjectError, PlanwiseError, cannot_write

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
    # The folders whose profiles.yml was looked for, in order (one when dbt.profiles_dir is set).
    profiles_searched: tuple[Path, ...] = ()

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
        key = json.dumps(
            [str(self.database_path), self.target, str(self.profiles_dir), dict(self.vars), str(self.cwd)],
            sort_keys=True,
            default=str,
        )
        return (
            target_dir(self.project_dir, read_project_yaml(self.project_dir))
            / f"ctx-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        )

    def duckdb_config(self) -> dict[str, str]:
        """The same settings for the engine's own connections."""
        return {
            "threads": self.env_overrides()["PLANWISE_DUCKDB_THREADS"],
            "memory_limit": self.env_overrides()["PLANWISE_DUCKDB_MEMORY_LIMIT"],
        }

    def described(self, command: str = "...") -> str:
        """What setup passes to dbt, in one line: where dbt runs, its options and the variables setup exports."""
        args = " ".join(shlex.quote(a) for a in self.cli_args(own_target=False))
        exported = {k: v for k, v in self.env_overrides().items() if not k.startswith("PLANWISE_")}
        env = "".join(f" {k}={shlex.quote(v)}" for k, v in sorted(exported.items()))
        return f"in {self.cwd}:{env} dbt {command} {args}"

    def missing_profile(self, profile: str) -> ProjectError:
        """dbt found no profile ``profile``: say where it was looked for, in order, and what each place holds."""
        places = []
        for folder in self.profiles_searched or (self.profiles_dir,):
            path = folder / PROFILES_FILE
            places.append(f"{path} ({_profiles_in(path)})")
        chosen = self.profiles_dir / PROFILES_FILE
        return ProjectError(
            f"dbt found no profile named '{profile}' in {', '.join(places)}",
            f"add it to {chosen}, or correct profile: in dbt_project.yml, or set dbt.profiles_dir (DBT_PROFILES_DIR)",
        )

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

    ``config``: DuckDB's connect options (``config_options``); ``extensions``: those it installs and
    loads; ``attach``: the statements attaching databases; ``settings``: the ``SET`` of each cursor.
    ``unsupported``: profile keys setup cannot reproduce (secrets, plugins, filesystems...): with any,
    only dbt builds and tests.
    """

    config: Mapping[str, Any] = field(default_factory=dict)
    extensions: tuple[str, ...] = ()
    attach: tuple[str, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()

    @property
    def setup(self) -> tuple[str, ...]:
        """What dbt-duckdb runs on a new connection, in its order: extensions, then attached databases."""
        return (*(f"{verb} {name}" for name in self.extensions for verb in ("INSTALL", "LOAD")), *self.attach)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config),
            "extensions": list(self.extensions),
            "attach": list(self.attach),
            "settings": dict(self.settings),
            "unsupported": list(self.unsupported),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Connection":
        data = data or {}
        return cls(
            dict(data.get("config") or {}),
            tuple(data.get("extensions") or ()),
            tuple(data.get("attach") or ()),
            {str(k): str(v) for k, v in (data.get("settings") or {}).items()},
            tuple(data.get("unsupported") or ()),
        )


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
    def rendered(
        cls,
        name: str,
        target: str,
        adapter: str,
        written: str | None,
        cwd: Path,
        context: str = "",
        connection: Connection | None = None,
    ) -> "DbtProfile":
        path = os.path.normpath(cwd / written) if written and is_database_file(written) else written
        return cls(name, target, adapter, written, path, context, connection or Connection())

    @property
    def label(self) -> str:
        return f"dbt's profile {self.name} (target {self.target})"

    # What dbt-duckdb applies to every connection: checked before a build (store.database.profile_problem).
    @property
    def settings(self) -> Mapping[str, str]:
        return self.connection.settings

    @property
    def extensions(self) -> tuple[str, ...]:
        return self.connection.extensions

    @property
    def config_options(self) -> Mapping[str, Any]:
        return self.connection.config

    def database_file(self, configured: Path | None) -> Path:
        """The one database setup inspects: the profile's file; ``configured`` (database.path) must agree."""
        if self.adapter != "duckdb":
            raise DatabaseError(
                f"{self.label} uses the {self.adapter} adapter; setup builds DuckDB files",
                "choose a duckdb target with dbt.target (or DBT_TARGET)",
            )
        if not self.path or not is_database_file(self.path):
            raise DatabaseError(
                f"{self.label} writes to {self.path or ':memory:'}, not a database file",
                "set path: in profiles.yml to a DuckDB file",
            )
        written = Path(self.path)
        if configured is not None and os.path.realpath(configured) != os.path.realpath(written):
            raise DatabaseError(
                f"database.path is {configured} but {self.label} writes {written}",
                f"remove database.path / {DATABASE_ENV} to build the profile's file, or let the profile read it: "
                f"path: \"{{{{ env_var('{DATABASE_ENV}', '{self.written}') }}}}\"",
            )
        return written

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "adapter": self.adapter,
            "written": self.written,
            "path": self.path,
            "context": self.context,
            "connection": self.connection.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DbtProfile":
        return cls(
            str(data["name"]),
            str(data["target"]),
            str(data["adapter"]),
            data.get("written"),
            data.get("path"),
            str(data.get("context") or ""),
            Connection.from_dict(data.get("connection")),
        )


def is_database_file(path: str) -> bool:
    """Is a profile's ``path`` a file on this machine (not in memory, MotherDuck or a URL)?"""
    return path != ":memory:" and not path.startswith(("md:", "motherduck:")) and "://" not in path


def _profiles_in(path: Path) -> str:
    """'absent', 'holds a, b' or why it cannot be read: what a profiles.yml offers, for a missing profile's message."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return "absent"
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return f"unreadable: {type(exc).__name__}"
    names = sorted(k for k in data if k != "config") if isinstance(data, dict) else []
    return f"holds {', '.join(names)}" if names else "holds no profile"


def run_dir(settings: Settings) -> Path:
    """Where dbt runs: the folder of the configuration (setup.yaml, beside dodo.py, unless config= names
    another), else the root (the folder of dodo.py). A relative path in the profile, a source's external
    location or a var resolves there, for setup as for the team running dbt by hand."""
    return settings.source.parent if settings.source is not None else settings.root


def _dbt_dirs(settings: Settings) -> tuple[Path, Path]:
    """The project and profiles folders: ``load_settings`` resolves both (their null means "look for it"),
    so settings made any other way are refused here."""
    project_dir, profiles_dir = settings.dbt.project_dir, settings.dbt.profiles_dir
    if project_dir is None or profiles_dir is None:
        raise ValueError("dbt.project_dir and dbt.profiles_dir are not resolved: settings come from load_settings")
    return project_dir, profiles_dir


def effective_vars(project_yaml: Mapping[str, Any], project_name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Vars as dbt resolves them for the root project: global < project-scoped < command line."""
    declared = project_yaml.get("vars") or {}
    result = {k: v for k, v in declared.items() if not (k == project_name and isinstance(v, dict))}
    scoped = declared.get(project_name)
    if isinstance(scoped, dict):
        result.update(scoped)
    result.update(overrides)
    return result


def project_vars(project_dir: Path) -> dict[str, Any]:
    """The vars the project's dbt_project.yml sets (global and its own scope); none when it cannot be read
    (dbt says why when it parses)."""
    try:
        data = read_project_yaml(project_dir)
    except ProjectError:
        return {}
    return effective_vars(data, str(data.get("name") or ""), {})


def with_project_census(settings: Settings) -> Settings:
    """The settings with ``census.path`` the file the project reads when the user did not set census.path:
    the census var's value from setup.yaml's dbt.vars, else from dbt_project.yml, relative to where dbt
    runs. Unchanged when neither sets it, or its value is Jinja (only dbt renders that)."""
    if settings.set_by_user("census.path"):
        return settings
    value = {**project_vars(_dbt_dirs(settings)[0]), **settings.dbt.vars_dict()}.get(CENSUS_VAR)
    if not isinstance(value, str) or not value.strip() or "{{" in value or "{%" in value:
        return settings
    return settings.with_census(Path(os.path.normpath(run_dir(settings) / os.path.expanduser(value))))


def passes_census_var(settings: Settings) -> bool:
    """Does setup pass census.path to dbt as the census var? Only when the user set census.path, or the
    project leaves the var to setup: never over a value dbt_project.yml (or dbt.vars) sets."""
    if CENSUS_VAR in settings.dbt.vars:
        return False  # the user's own --vars value, passed as given
    return settings.set_by_user("census.path") or CENSUS_VAR not in project_vars(_dbt_dirs(settings)[0])


def dbt_context(settings: Settings) -> DbtContext:
    """The context of a setup configuration: its dbt section, database and census path."""
    variables = dict(settings.dbt.vars_dict())
    if passes_census_var(settings):
        variables[CENSUS_VAR] = str(settings.census.path)
    explicit = settings.set_by_user("dbt.profiles_dir")
    project_dir, profiles_dir = _dbt_dirs(settings)
    return DbtContext(
        project_dir=project_dir,
        profiles_dir=profiles_dir,
        target=settings.dbt.target,
        vars=variables,
        threads=settings.dbt.threads,
        database_path=settings.database.path,
        duckdb_threads=settings.database.threads,
        duckdb_memory_limit=settings.database.memory_limit,
        root=run_dir(settings),
        profiles_searched=(profiles_dir,) if explicit else tuple(profiles_candidates(run_dir(settings), project_dir)),
    )


def read_project_yaml(project_dir: Path) -> dict[str, Any]:
    """dbt_project.yml as data (parsed once per file version: it is asked for often)."""
    path = project_dir / "dbt_project.yml"
    try:
        version = path.stat().st_mtime_ns
    except OSError:
        version = -1
    return _read_project_yaml(path, project_dir, version)


def _parse_safely(text: str) -> Any:
    """PyYAML's safe parse, libyaml's when PyYAML has it (imported only for a text not parsed before)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506


@functools.lru_cache(maxsize=8)
def _read_project_yaml(path: Path, project_dir: Path, version: int) -> dict[str, Any]:
    try:
        data = parsed(path.read_text(), "safe", _parse_safely) or {}
    except FileNotFoundError:
        raise ProjectError(
            f"no dbt project at {project_dir} (dbt_project.yml missing)",
            "set dbt.project_dir in the setup config or DBT_PROJECT_DIR",
        ) from None
    except Exception as exc:
        import yaml

        if isinstance(exc, yaml.YAMLError):
            raise ProjectError(f"{path} is not valid YAML: {exc}", "fix the file") from None
        raise
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


def parse_failure(ctx: DbtContext, message: str) -> PlanwiseError:
    """Why dbt could not parse the project, in one line whose fix names the file or setting to change:
    a folder dbt cannot write, the profiles.yml it looked in, the variable it lacks, the file it names."""
    cause = f"dbt could not parse the project in {ctx.project_dir}: {message}"
    failed_os = OS_ERROR_RE.search(message)
    if failed_os:
        error = OSError(int(failed_os[1]), failed_os[2], failed_os[3])
        return cannot_write(
            "dbt's files", Path(failed_os[3]), error, "run setup from a copy of the project in a folder you can write"
        )
    folder = MISSING_PATH_RE.search(message)
    if folder and Path(folder[1]) == ctx.profiles_dir:
        return ProjectError(
            f"the folder dbt reads profiles.yml from, {ctx.profiles_dir}, does not exist",
            f"create {ctx.profiles_dir / 'profiles.yml'} with the project's profile, or set "
            "dbt.profiles_dir (or DBT_PROFILES_DIR) to the folder that holds yours",
        )
    profile = MISSING_PROFILE_RE.search(message)
    if profile:
        return ctx.missing_profile(profile[1])
    variable = MISSING_ENV_RE.search(message)
    if variable:
        return ProjectError(
            cause,
            f"set the environment variable {variable[1]}, or give env_var('{variable[1]}', ...) "
            "a default where the project reads it",
        )
    named = PROJECT_FILE_RE.search(message)
    if named:
        return ProjectError(cause, f"correct {named[0]} as dbt's message says, then run again")
    return ProjectError(
        cause,
        "correct the project as dbt's message says (doit dbt args=\"parse\" shows all of dbt's output), then run again",
    )
