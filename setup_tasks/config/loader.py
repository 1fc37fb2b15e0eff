"""Loading the configuration: the file, the environment variables that override it, and the defaults, into Settings.

This is the only module that reads the configuration file or the environment
variables that override keys. Environment > file > schema defaults; every
problem of the file and the environment is reported at once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .problems import document_problems, env_problems, problems_error
from .schema import ENV_OVERRIDES, document, nulls_as_empty, with_defaults
from .sections import Settings
from .settings import SECTIONS, build
from .yaml_cache import parsed

CONFIG_ENV_VAR = "SETUP_CONFIG"
DEFAULT_CONFIG_NAME = "setup.yaml"
PROJECT_FILE = "dbt_project.yml"
PROFILES_FILE = "profiles.yml"
DEMO_PROJECT_DIR = "dbt"  # this repository's layout: the project in dbt/ beside dodo.py
_DEFAULTS_LABEL = "defaults"


# ---------------------------------------------------------------- files


def _parse_config(text: str) -> Any:
    """PyYAML's safe parse (libyaml's when PyYAML has it: about ten times faster, the same documents and
    marks), keeping dates as strings and rejecting duplicate keys. PyYAML is imported here, when a text is
    parsed for the first time (``yaml_cache``): on a full check it is the largest import setup has."""
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class ConfigLoader(base):
        """PyYAML silently keeps the last of two equal keys, which hides typos and merge mistakes in a file
        people edit by hand; dates stay strings: settings must be JSON-able (digest, dbt --vars)."""

        yaml_implicit_resolvers = {
            first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[str] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"duplicate key '{key_node.value}'",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
            return super().construct_mapping(node, deep=deep)

    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def _display(path: Path, root: Path) -> str:
    """The path as the user should see it: relative to the root when inside it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _absolute(path: Path, base: Path | None = None) -> Path:
    # normpath, not resolve(): a symlinked data directory is the user's choice.
    path = path.expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return Path(os.path.normpath(path))


def _find_config(config_path: str | Path | None, root: Path, environ: Mapping[str, str]) -> Path | None:
    """Explicit path > $SETUP_CONFIG > <root>/setup.yaml if present > none."""
    if config_path is not None:
        return _named_file(str(config_path), root, "")
    if CONFIG_ENV_VAR in environ:
        return _named_file(environ[CONFIG_ENV_VAR], root, f" (named by {CONFIG_ENV_VAR})")
    default = root / DEFAULT_CONFIG_NAME
    return default if default.is_file() else None


def _named_file(value: str, root: Path, named_by: str) -> Path:
    unset_hint = f" or unset {CONFIG_ENV_VAR}" if named_by else ""
    if not value.strip():
        raise ConfigError(f"the config file path{named_by} is empty", f"name a YAML file{unset_hint}")
    path = _absolute(Path(value), root)
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"config file {path}{named_by} {state}",
            f"fix the path{unset_hint}, or create the file (copy setup.example.yaml)",
        )
    return path


def _read_yaml(path: Path, label: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {label}: {exc.strerror}", "check the path and its permissions"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {label} is not UTF-8 text", "save it as UTF-8") from exc
    try:
        data = parsed(text, "setup-config", _parse_config)
    except Exception as exc:
        import yaml  # a text that does not parse: _parse_config imported it

        if isinstance(exc, yaml.MarkedYAMLError):
            mark = exc.problem_mark or exc.context_mark
            where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
            raise ConfigError(
                f"{where}: invalid YAML: {exc.problem or exc.context}", "fix the YAML syntax at that line"
            ) from exc
        if isinstance(exc, yaml.YAMLError):
            raise ConfigError(f"{label}: invalid YAML: {exc}", "fix the YAML syntax") from exc
        raise
    return {} if data is None else data


# ---------------------------------------------------------------- loading


def load_settings(
    config_path: str | Path | None = None,
    *,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load, validate and merge the configuration: environment > file > schema defaults.

    The file is ``config_path``, else ``environ["SETUP_CONFIG"]``, else
    ``<root>/setup.yaml`` if present, else none (all defaults); a relative name
    is taken from ``root``. Relative paths in the file resolve against its
    directory; those from the environment or defaults against ``root``.
    Raises ConfigError listing every problem found (file and environment) at once.
    """
    root = _absolute(Path.cwd() if root is None else Path(root))
    environ = os.environ if environ is None else environ
    source = _find_config(config_path, root, environ)
    where = _display(source, root) if source else _DEFAULTS_LABEL
    raw = nulls_as_empty(document(), _read_yaml(source, where)) if source else {}
    data = with_defaults(document(), raw if isinstance(raw, dict) else {})
    bases = _path_bases(raw, source.parent if source else root)
    problems = document_problems(raw, data, where) + env_problems(environ)
    if problems:
        raise problems_error(problems)
    _apply_env(data, bases, environ, root)
    return _settings_from(data, root, source, bases)


def _path_bases(raw: Any, file_dir: Path) -> dict[str, Path]:
    """Dotted key -> directory its relative path resolves against (file-set keys only)."""
    if not isinstance(raw, dict):
        return {}
    return {
        f"{section}.{key}": file_dir for section, values in raw.items() if isinstance(values, dict) for key in values
    }


def _apply_env(data: dict[str, Any], bases: dict[str, Path], environ: Mapping[str, str], root: Path) -> None:
    for var, (section, key) in ENV_OVERRIDES.items():
        if var in environ:
            data[section][key] = environ[var]
            bases[f"{section}.{key}"] = root


def _settings_from(data: Mapping[str, Any], root: Path, source: Path | None, bases: Mapping[str, Path]) -> Settings:
    def to_path(key: str, value: str) -> Path:
        return _absolute(Path(value), bases.get(key, root))

    sections: dict[str, Any] = {name: build(cls, data[name], to_path, name) for name, cls in SECTIONS.items()}
    run_dir = source.parent if source is not None else root
    # The user's choices: keys the file or the environment set to a value (null asks for the default).
    explicit = tuple(sorted(k for k in bases if data[k.split(".")[0]].get(k.split(".", 1)[1]) is not None))
    return Settings(root=root, source=source, **_derive_paths(sections, root, run_dir), explicit=explicit)


def profiles_candidates(run_dir: Path, project_dir: Path) -> list[Path]:
    """Where profiles.yml is looked for when dbt.profiles_dir (DBT_PROFILES_DIR) is not set, in order:
    the folder dbt runs in (dbt's current folder), the project folder (where dbt runs when a team runs it
    there, and this repository's demo layout keeps it), then ~/.dbt."""
    found = [run_dir, project_dir, Path.home() / ".dbt"]
    return [p for i, p in enumerate(found) if p not in found[:i]]


def _derive_paths(sections: dict[str, Any], root: Path, run_dir: Path) -> dict[str, Any]:
    """Resolve the null path defaults that depend on other keys or on what is on disk.

    ``database.path`` stays null until dbt's profile names the file (``Settings.with_database``).
    """
    dbt = sections["dbt"]
    project_dir = dbt.project_dir
    if project_dir is None:  # a team's repository (dodo.py beside dbt_project.yml), else the demo layout
        project_dir = root if (root / PROJECT_FILE).is_file() else root / DEMO_PROJECT_DIR
    profiles_dir = dbt.profiles_dir
    if profiles_dir is None:  # the first folder holding profiles.yml (dbt then says what is wrong with it)
        candidates = profiles_candidates(run_dir, project_dir)
        profiles_dir = next((p for p in candidates if (p / PROFILES_FILE).is_file()), project_dir)
    sections["dbt"] = dataclasses.replace(dbt, project_dir=project_dir, profiles_dir=profiles_dir)
    sections["report"] = sections["report"].for_database(sections["database"].path)
    return sections
