"""Setup configuration: reading setup.yaml and the environment into typed, immutable Settings.

This is the only module that reads the configuration file or the environment
variables that override it. ``schemas/setup_config.schema.json`` is the single
source of truth for keys, types and defaults: the loader validates against it,
fills defaults from it, and the configuration reference is generated from it.
Adding a key means editing the schema and adding the dataclass field.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import fnmatch
import functools
import hashlib
import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "setup_config.schema.json"
CONFIG_ENV_VAR = "SETUP_CONFIG"
DEFAULT_CONFIG_NAME = "setup.yaml"
# Environment variable -> (section, key) it overrides; env wins over the file.
ENV_OVERRIDES: Mapping[str, tuple[str, str]] = types.MappingProxyType(
    {
        "DUCKDB_PATH": ("database", "path"),
        "DBT_TARGET": ("dbt", "target"),
        "DBT_PROFILES_DIR": ("dbt", "profiles_dir"),
        "DBT_PROJECT_DIR": ("dbt", "project_dir"),
        "CENSUS_PATH": ("census", "path"),
    }
)
REFERENCE_START = "<!-- config-reference:start -->"
REFERENCE_END = "<!-- config-reference:end -->"
REFERENCE_COMMAND = "python -m setup_tasks.config --reference"
GLOB_CHARS = frozenset("*?[")  # a name holding one of these is a glob pattern
_DEFAULTS_LABEL = "defaults"
# Ordered pairs (section, low key, high key) that the schema cannot relate.
_ORDERED_PAIRS = (
    ("validation", "simulation_start_year", "simulation_end_year"),
    ("validation", "min_reasonable_compensation", "max_reasonable_compensation"),
    ("validation", "min_employee_age", "max_employee_age"),
)


# ---------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """The DuckDB warehouse file the setup builds."""

    path: Path
    threads: int | None
    memory_limit: str | None


@dataclass(frozen=True, slots=True)
class DbtSettings:
    """The dbt project, its profile and the selections the setup builds."""

    project_dir: Path
    profiles_dir: Path
    target: str | None
    threads: int | None
    vars: Mapping[str, Any]
    setup_selection: str
    foundation_selection: str
    worker_idle_seconds: int

    def vars_dict(self) -> dict[str, Any]:
        """A plain, mutable deep copy of ``vars`` (for JSON and dbt's --vars)."""
        return thaw(self.vars)


@dataclass(frozen=True, slots=True)
class SetupOptions:
    """Which setup steps run and how."""

    clear_tables: bool
    clear_table_patterns: tuple[str, ...]
    load_seeds: bool
    run_staging_models: bool
    validate_results: bool
    fail_fast: bool

    def matches(self, table_name: str) -> bool:
        """True if ``table_name`` matches one of ``clear_table_patterns``.

        Case-insensitive because DuckDB identifiers are.
        """
        name = table_name.lower()
        return any(_pattern_matches(p.lower(), name) for p in self.clear_table_patterns)


@dataclass(frozen=True, slots=True)
class CustomCheck:
    """A user-defined validation: SQL selecting offending rows; zero rows passes."""

    name: str
    description: str
    severity: str
    sql: str


@dataclass(frozen=True, slots=True)
class ValidationSettings:
    """The checks that decide whether the warehouse is simulation-ready."""

    fail_on: tuple[str, ...]
    min_baseline_workforce_count: int
    required_seed_tables: tuple[str, ...] | None
    min_reasonable_compensation: float
    max_reasonable_compensation: float
    min_employee_age: int
    max_employee_age: int
    compensation_outlier_zscore: float
    simulation_start_year: int
    simulation_end_year: int
    tables: Mapping[str, str]
    # Column names by table (census, job_levels, ...): mapping of mappings.
    columns: Mapping[str, Mapping[str, str]]
    custom_checks: tuple[CustomCheck, ...]
    census_required_columns: tuple[str, ...]
    allow_empty_models: tuple[str, ...]
    run_dbt_tests: bool
    disabled_checks: tuple[str, ...]
    check_modules: tuple[str, ...]

    def is_blocking(self, severity: str) -> bool:
        """True if a failed check of this severity fails the setup."""
        return severity in self.fail_on


@dataclass(frozen=True, slots=True)
class CensusSettings:
    """The baseline census file and its synthetic generator."""

    path: Path
    generate: bool
    employees: int
    seed: int
    duplicate_id_rate: float
    missing_ssn_rate: float
    hire_after_termination_rate: float


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """Where each run writes its report; both paths are resolved when loaded."""

    path: Path | None
    history_path: Path | None


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective setup configuration: file, environment and defaults merged."""

    root: Path
    source: Path | None
    database: DatabaseSettings
    dbt: DbtSettings
    setup: SetupOptions
    validation: ValidationSettings
    census: CensusSettings
    report: ReportSettings

    @property
    def state_dir(self) -> Path:
        """Where run state for this database lives (locks, fingerprints)."""
        return self.database.path.parent / ".planwise" / self.database.path.name

    def as_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict of the effective settings (paths as str)."""
        return thaw(self)

    def digest(self) -> str:
        """A stable sha256 of the effective settings.

        ``root`` and ``source`` are left out: the same values loaded from another
        file are the same settings.
        """
        values = {k: v for k, v in self.as_dict().items() if k not in ("root", "source")}
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _pattern_matches(pattern: str, name: str) -> bool:
    if GLOB_CHARS & set(pattern):
        return fnmatch.fnmatchcase(name, pattern)
    return name.startswith(pattern)


def freeze(value: Any) -> Any:
    """Deep-freeze plain data: mappings to MappingProxyType, lists to tuples."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Undo ``freeze``: plain, mutable, JSON-able data (dataclasses to dicts, paths to str)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: thaw(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [thaw(v) for v in value]
    return value


# ---------------------------------------------------------------- schema


@functools.cache
def _schema() -> dict[str, Any]:
    try:
        return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"configuration schema {SCHEMA_PATH} cannot be read: {exc.strerror}",
            "run from a planwise-setup source checkout (the schema ships in schemas/)",
        ) from exc


def load_schema() -> dict[str, Any]:
    """The configuration JSON Schema (a private copy, safe to modify)."""
    return copy.deepcopy(_schema())


@functools.cache
def _validator() -> Any:
    import jsonschema  # imported only when a document must really be validated

    return jsonschema.Draft202012Validator(_schema())


VALID_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "planwise-setup" / "valid-configs.json"
VALID_CACHE_SIZE = 64


def _document_digest(instance: Any) -> str:
    schema = json.dumps(_schema(), sort_keys=True)
    return hashlib.sha256((schema + json.dumps(instance, sort_keys=True, default=repr)).encode()).hexdigest()


def _known_valid(digest: str) -> bool:
    try:
        return digest in json.loads(VALID_CACHE.read_text())
    except (OSError, ValueError, TypeError):
        return False


def _remember_valid(digest: str) -> None:
    """Validation is a pure function of (schema, document): remember documents that passed."""
    try:
        known = json.loads(VALID_CACHE.read_text()) if VALID_CACHE.exists() else []
        known = [d for d in known if d != digest][-(VALID_CACHE_SIZE - 1):] + [digest]
        VALID_CACHE.parent.mkdir(parents=True, exist_ok=True)
        tmp = VALID_CACHE.with_name(f".{VALID_CACHE.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known))
        tmp.replace(VALID_CACHE)
    except (OSError, ValueError, TypeError):
        pass  # a cache: without it the next load validates again


def _resolve_ref(node: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a local ``#/$defs/...`` reference into the node that uses it."""
    ref = node.get("$ref")
    if not ref:
        return dict(node)
    target: Any = _schema()
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def schema_defaults() -> dict[str, Any]:
    """Every section with every key at its default, as plain data."""
    return _with_defaults(_schema(), {})


def _with_defaults(node: Mapping[str, Any], value: Any) -> Any:
    """``value`` with missing keys filled from the schema; unknown keys dropped."""
    props = node.get("properties")
    if props is not None and isinstance(value, dict):
        return {
            name: _with_defaults(sub, value[name]) if name in value else _default(sub)
            for name, sub in props.items()
        }
    items = node.get("items")
    if items is not None and isinstance(value, list):
        return [_with_defaults(items, v) for v in value]
    return value


def _default(node: Mapping[str, Any]) -> Any:
    # Objects with declared keys take their defaults key by key, so a user
    # who sets one key of such a mapping keeps the defaults of the others.
    if "properties" in node:
        return _with_defaults(node, {})
    return copy.deepcopy(node.get("default"))


def _nulls_as_empty(node: Mapping[str, Any], value: Any) -> Any:
    """Treat a mapping key with no value as empty.

    YAML reads a section whose keys are all commented out as null; that
    should mean "all defaults", not a type error.
    """
    props = node.get("properties")
    if not isinstance(value, dict) or props is None:
        return value
    return {
        k: ({} if v is None and props.get(k, {}).get("type") == "object" else _nulls_as_empty(props.get(k, {}), v))
        for k, v in value.items()
    }


# ---------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class Problem:
    """One configuration problem: where it came from, the key path, the message."""

    where: str
    path: str
    message: str

    def line(self) -> str:
        return f"{self.where}: {self.path}: {self.message}"


def _dotted(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _schema_problems(instance: Any, where: str) -> list[Problem]:
    # An empty document is all defaults; a document that passed before passes
    # again: neither needs jsonschema (whose import alone costs a no-op run 10%).
    if instance == {}:
        return []
    digest = _document_digest(instance)
    if _known_valid(digest):
        return []
    # Unsorted on purpose: jsonschema walks keys in schema order, which is the
    # order of the sample file, so problems read top to bottom.
    problems = [problem for error in _validator().iter_errors(instance) for problem in _describe(error, where)]
    if not problems:
        _remember_valid(digest)
    return list(dict.fromkeys(problems))  # one "required" error per key, each describing all missing keys


def _describe(error: Any, where: str) -> list[Problem]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        return [Problem(where, _dotted([*path, str(k)]), _unknown_key(str(k), allowed)) for k in unknown]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return [Problem(where, _dotted([*path, k]), "required key is missing") for k in missing]
    return [Problem(where, _dotted(path), _message(error))]


def nearest(name: str, options: Iterable[str]) -> str | None:
    """The option a mistyped ``name`` most likely meant, if any is close enough."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return close[0] if close else None


def _unknown_key(key: str, allowed: list[str]) -> str:
    close = nearest(key, allowed)
    if close:
        return f"unknown key (did you mean '{close}'?)"
    return f"unknown key (valid keys: {', '.join(allowed)})"


_TYPE_WORDS = {"object": "mapping", "array": "list"}  # YAML words for JSON Schema types


def _message(error: Any) -> str:
    if "propertyNames" in error.relative_schema_path:
        return f"key {error.instance!r} must be a string (quote it)"
    if error.validator == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in expected)
        return f"expected {words}, got {_kind(error.instance)}"
    examples = error.schema.get("examples") if isinstance(error.schema, Mapping) else None
    if error.validator == "pattern" and examples:
        return f"{error.instance!r} is not valid (expected a value like {' or '.join(map(repr, examples))})"
    return error.message


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    name = {int: "integer", float: "number", str: "string"}.get(type(value), type(value).__name__)
    return f"{name} {value!r}"


def _non_finite_problems(value: Any, where: str, path: tuple[str | int, ...] = ()) -> Iterator[Problem]:
    """YAML's .nan and .inf pass every numeric bound in the schema; catch them here."""
    if isinstance(value, float) and not math.isfinite(value):
        yield Problem(where, _dotted(path), f"{value!r} is not a finite number")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite_problems(v, where, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite_problems(v, where, (*path, i))


def _in_section_order(problems: list[Problem]) -> list[Problem]:
    """Group problems by section, in schema order (the sample file's order); stable within a section."""
    sections = list(_schema()["properties"])

    def position(problem: Problem) -> int:
        section = re.split(r"[.\[]", problem.path, maxsplit=1)[0]
        return sections.index(section) if section in sections else -1

    return sorted(problems, key=position)


def _cross_field_problems(data: Mapping[str, Any], where: str) -> list[Problem]:
    """Rules relating several keys, which JSON Schema cannot express."""
    problems = [p for pair in _ORDERED_PAIRS if (p := _order_problem(data, where, *pair))]
    validation = data.get("validation")
    checks = validation.get("custom_checks") if isinstance(validation, dict) else None
    if isinstance(checks, list):
        problems += _custom_check_problems(checks, where)
    return problems


def _order_problem(data: Mapping[str, Any], where: str, section: str, low_key: str, high_key: str) -> Problem | None:
    values = data.get(section)
    if not isinstance(values, dict):
        return None
    low, high = values.get(low_key), values.get(high_key)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return None  # the schema has reported it
    if high >= low:
        return None
    return Problem(where, f"{section}.{high_key}", f"{high!r} is less than {low_key} ({low!r})")


def _custom_check_problems(checks: list[Any], where: str) -> list[Problem]:
    problems: list[Problem] = []
    first_index: dict[str, int] = {}
    for index, check in enumerate(checks):
        if not isinstance(check, dict):
            continue
        name, sql = check.get("name"), check.get("sql")
        path = f"validation.custom_checks[{index}]"
        if isinstance(name, str) and name in first_index:
            problems.append(
                Problem(where, f"{path}.name", f"duplicate check name '{name}' (first used by custom_checks[{first_index[name]}])")
            )
        elif isinstance(name, str):
            first_index[name] = index
        if isinstance(sql, str) and sql and not sql.strip():
            problems.append(Problem(where, f"{path}.sql", "SQL is blank"))
    return problems


def _env_problems(environ: Mapping[str, str]) -> list[Problem]:
    problems = []
    for var, (section, key) in ENV_OVERRIDES.items():
        if var not in environ:
            continue
        prop = _schema()["properties"][section]["properties"][key]
        for error in _validator().descend(environ[var], prop):
            problems.append(Problem(var, f"{section}.{key}", _message(error)))
    return problems


def _problems_error(problems: list[Problem]) -> ConfigError:
    lines = [p.line() for p in problems]
    sources = list(dict.fromkeys(p.where for p in problems))
    cause = lines[0] if len(lines) == 1 else (
        f"{len(lines)} problems in the setup configuration ({', '.join(sources)}):\n"
        + "\n".join(f"  {line}" for line in lines)
    )
    fixes = []
    if any(p.where not in ENV_OVERRIDES for p in problems):
        fixes.append(f"correct the keys listed (every key, type and default: {REFERENCE_COMMAND})")
    if any(p.where in ENV_OVERRIDES for p in problems):
        fixes.append("correct or unset the environment variables listed")
    return ConfigError(cause, "; ".join(fixes))


# ---------------------------------------------------------------- files


def _resolvers_without_timestamps() -> dict[str, list[Any]]:
    # Dates stay strings: settings must be JSON-able (digest, dbt --vars).
    return {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that keeps dates as strings and rejects duplicate keys.

    PyYAML silently keeps the last of two equal keys, which hides typos and
    merge mistakes in a file people edit by hand.
    """

    yaml_implicit_resolvers = _resolvers_without_timestamps()

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"duplicate key '{key_node.value}'", key_node.start_mark
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


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
        raise ConfigError(f"cannot read config file {label}: {exc.strerror}", "check the path and its permissions") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {label} is not UTF-8 text", "save it as UTF-8") from exc
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}", "fix the YAML syntax at that line") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: invalid YAML: {exc}", "fix the YAML syntax") from exc
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
    raw = _nulls_as_empty(_schema(), _read_yaml(source, where)) if source else {}
    problems = _schema_problems(raw, where) + list(_non_finite_problems(raw, where))
    data = _with_defaults(_schema(), raw if isinstance(raw, dict) else {})
    bases = _path_bases(raw, source.parent if source else root)
    problems = _in_section_order(problems + _cross_field_problems(data, where)) + _env_problems(environ)
    if problems:
        raise _problems_error(problems)
    _apply_env(data, bases, environ, root)
    return _settings_from(data, root, source, bases)


def _path_bases(raw: Any, file_dir: Path) -> dict[str, Path]:
    """Dotted key -> directory its relative path resolves against (file-set keys only)."""
    if not isinstance(raw, dict):
        return {}
    return {
        f"{section}.{key}": file_dir
        for section, values in raw.items()
        if isinstance(values, dict)
        for key in values
    }


def _apply_env(data: dict[str, Any], bases: dict[str, Path], environ: Mapping[str, str], root: Path) -> None:
    for var, (section, key) in ENV_OVERRIDES.items():
        if var in environ:
            data[section][key] = environ[var]
            bases[f"{section}.{key}"] = root


def _settings_from(data: Mapping[str, Any], root: Path, source: Path | None, bases: Mapping[str, Path]) -> Settings:
    def to_path(key: str, value: str) -> Path:
        return _absolute(Path(value), bases.get(key, root))

    sections = {name: _build(cls, data[name], to_path, name) for name, cls in _section_classes().items()}
    return Settings(root=root, source=source, **_derive_paths(sections))


def _section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if dataclasses.is_dataclass(hints[f.name])}


def _build(cls: type, values: Mapping[str, Any], to_path: Callable[[str, str], Path], prefix: str) -> Any:
    """Construct dataclass ``cls`` from schema-valid plain data, converting by type hint."""
    hints = typing.get_type_hints(cls)
    return cls(
        **{
            f.name: _convert(hints[f.name], values[f.name], to_path, f"{prefix}.{f.name}")
            for f in dataclasses.fields(cls)
        }
    )


def _convert(hint: Any, value: Any, to_path: Callable[[str, str], Path], key: str) -> Any:
    if value is None:
        return None
    hint = _without_none(hint)
    if hint is Path:
        return to_path(key, value)
    if hint in (int, float):
        return hint(value)  # YAML 10000 for a float key, 1.0 for an int key
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(item):
            return tuple(_build(item, v, to_path, key) for v in value)  # type: ignore[arg-type]
        return tuple(value)
    if typing.get_origin(hint) is Mapping:
        return freeze(value)
    return value


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _derive_paths(sections: dict[str, Any]) -> dict[str, Any]:
    """Resolve the null path defaults that depend on other keys."""
    database, dbt, report = sections["database"], sections["dbt"], sections["report"]
    if dbt.profiles_dir is None:
        sections["dbt"] = dataclasses.replace(dbt, profiles_dir=dbt.project_dir)
    sections["report"] = dataclasses.replace(
        report,
        path=report.path or database.path.with_suffix(".setup_report.json"),
        history_path=report.history_path or database.path.with_suffix(".setup_history.jsonl"),
    )
    return sections


# ---------------------------------------------------------------- reference


def config_reference_markdown() -> str:
    """The configuration reference in Markdown: one table per section, from the schema."""
    schema = _schema()
    env_lines = ", ".join(f"`{var}` → `{s}.{k}`" for var, (s, k) in ENV_OVERRIDES.items())
    parts = [
        f"Generated from `schemas/setup_config.schema.json` by `{REFERENCE_COMMAND}`; do not edit by hand.",
        f"Every key is optional. Relative paths resolve against the directory of the file that sets them "
        f"(environment variables and defaults: the repository root). "
        f"The file is `{DEFAULT_CONFIG_NAME}` at the repository root, or the one named by `config=PATH` "
        f"or `{CONFIG_ENV_VAR}`. Environment variables override the file: {env_lines}.",
    ]
    for name, section in schema["properties"].items():
        parts.append(_reference_section(name, section))
    return "\n\n".join(parts) + "\n"


def _reference_section(name: str, section: Mapping[str, Any]) -> str:
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    rows += [_reference_row(name, key, node, required) for key, node, required in _reference_keys(section, "")]
    return f"### `{name}`\n\n{section['description']}\n\n" + "\n".join(rows)


def _reference_keys(node: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(dotted key, resolved schema, required) for every key below ``node``, depth first."""
    required = set(node.get("required", ()))
    for key, sub in node.get("properties", {}).items():
        sub = _resolve_ref(sub)
        yield f"{prefix}{key}", sub, key in required
        yield from _reference_keys(sub, f"{prefix}{key}.")
        items = sub.get("items")
        if isinstance(items, dict) and "properties" in items:
            yield from _reference_keys(items, f"{prefix}{key}[].")


def _reference_row(section: str, key: str, node: Mapping[str, Any], required: bool) -> str:
    env = [var for var, target in ENV_OVERRIDES.items() if target == (section, key)]
    description = node["description"] + "".join(f" Environment: `{var}`." for var in env)
    cells = [f"`{key}`", _type_text(node), _default_text(node, required), description]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _type_text(node: Mapping[str, Any]) -> str:
    kinds = node.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = []
    for kind in kinds:
        items = node.get("items")
        if kind == "array" and isinstance(items, dict):
            words.append(f"list of {_type_text(_resolve_ref(items)).replace(' or ', '/')}")
        else:
            words.append(_TYPE_WORDS.get(kind, kind))
    text = " or ".join(words)
    if "enum" in node:
        text += ": " + ", ".join(f"`{v}`" for v in node["enum"])
    bounds = [f"{sign} {node[k]}" for k, sign in _BOUND_SIGNS.items() if k in node]
    examples = [f"`{e}`" for e in node.get("examples", ())]
    return ", ".join([text, *bounds] + ([f"e.g. {' or '.join(examples)}"] if examples else []))


_BOUND_SIGNS = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<"}


def _default_text(node: Mapping[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "properties" in node:
        return "see keys below"
    return f"`{json.dumps(node.get('default'))}`"


def _reference_block(readme_text: str) -> str | None:
    start, end = readme_text.find(REFERENCE_START), readme_text.find(REFERENCE_END)
    if start < 0 or end < start:
        return None
    return readme_text[start + len(REFERENCE_START) : end]


def check_readme_reference(readme_text: str) -> bool:
    """True if the README's reference between the markers matches the schema."""
    block = _reference_block(readme_text)
    return block is not None and block.strip() == config_reference_markdown().strip()


def replace_readme_reference(readme_text: str) -> str:
    """The README with the text between the markers replaced by a fresh reference."""
    if _reference_block(readme_text) is None:
        raise ValueError(f"README has no {REFERENCE_START} ... {REFERENCE_END} markers")
    head, rest = readme_text.split(REFERENCE_START, 1)
    _, tail = rest.split(REFERENCE_END, 1)
    return f"{head}{REFERENCE_START}\n{config_reference_markdown()}{REFERENCE_END}{tail}"


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``python -m setup_tasks.config --reference | --check [PATH] | --show [PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m setup_tasks.config", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--reference", action="store_true", help="print the configuration reference (Markdown)")
    action.add_argument("--check", nargs="?", const=True, default=False, metavar="PATH",
                        help="validate PATH (default: $SETUP_CONFIG or ./setup.yaml) and print the problems or 'ok'")
    action.add_argument("--show", nargs="?", const=True, default=False, metavar="PATH",
                        help="print the effective settings as JSON")
    args = parser.parse_args(argv)
    if args.reference:
        print(config_reference_markdown(), end="")
        return 0
    path = args.check if args.check is not False else args.show
    try:
        settings = load_settings(None if path is True else path)
    except ConfigError as error:
        print(f"{error.cause}\nfix: {error.fix}" if error.fix else error.cause, file=sys.stderr)
        return error.exit_code
    print("ok" if args.check is not False else json.dumps(settings.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
