"""Configuration problems: every mistake in a file or the environment found at once, with key paths and did-you-mean.

The only module importing jsonschema, and only when a document must really
be validated: an empty document and one that passed before (the memo of
valid documents) skip it.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from ..errors import ConfigError
from ..user_folders import cache_folder
from .schema import ENV_OVERRIDES, REFERENCE_COMMAND, YAML_TYPE_WORDS, document

VALID_CACHE = "valid-configs.json"  # in setup's cache folder (user_folders: the user's own, or not used)
VALID_CACHE_SIZE = 64
# Ordered pairs (section, low key, high key) that the schema cannot relate.
_ORDERED_PAIRS = (
    ("validation", "simulation_start_year", "simulation_end_year"),
    ("validation", "min_reasonable_compensation", "max_reasonable_compensation"),
    ("validation", "min_employee_age", "max_employee_age"),
)


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One configuration problem: where it came from, the key path, the message."""

    where: str
    path: str
    message: str

    def line(self) -> str:
        return f"{self.where}: {self.path}: {self.message}"


def nearest(name: str, options: Iterable[str]) -> str | None:
    """The option a mistyped ``name`` most likely meant, if any is close enough."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return close[0] if close else None


def document_problems(raw: Any, data: Mapping[str, Any], where: str) -> list[ConfigProblem]:
    """The problems of a file's document ``raw`` (``data``: it with defaults filled), in section order."""
    problems = _schema_problems(raw, where) + list(_non_finite_problems(raw, where))
    return _in_section_order(problems + _cross_field_problems(data, where))


def env_problems(environ: Mapping[str, str]) -> list[ConfigProblem]:
    """The problems of the environment variables that override keys."""
    problems = []
    for var, (section, key) in ENV_OVERRIDES.items():
        if var not in environ:
            continue
        prop = document()["properties"][section]["properties"][key]
        for error in _validator().descend(environ[var], prop):
            problems.append(ConfigProblem(var, f"{section}.{key}", _message(error)))
    return problems


def problems_error(problems: list[ConfigProblem]) -> ConfigError:
    """One ConfigError listing every problem, with the fixes they call for."""
    lines = [p.line() for p in problems]
    sources = list(dict.fromkeys(p.where for p in problems))
    cause = (
        lines[0]
        if len(lines) == 1
        else (
            f"{len(lines)} problems in the setup configuration ({', '.join(sources)}):\n"
            + "\n".join(f"  {line}" for line in lines)
        )
    )
    fixes = []
    if any(p.where not in ENV_OVERRIDES for p in problems):
        fixes.append(f"correct the keys listed (every key, type and default: {REFERENCE_COMMAND})")
    if any(p.where in ENV_OVERRIDES for p in problems):
        fixes.append("correct or unset the environment variables listed")
    return ConfigError(cause, "; ".join(fixes))


# ---------------------------------------------------------------- against the schema


@functools.cache
def _validator() -> Any:
    import jsonschema  # imported only when a document must really be validated

    return jsonschema.Draft202012Validator(document())


def _document_digest(instance: Any) -> str:
    schema = json.dumps(document(), sort_keys=True)
    return hashlib.sha256((schema + json.dumps(instance, sort_keys=True, default=repr)).encode()).hexdigest()


def _known_valid(digest: str) -> bool:
    return cache_folder().recalled(VALID_CACHE, digest)[0]


def _remember_valid(digest: str) -> None:
    """Validation is a pure function of (schema, document): remember documents that passed (a cache: a
    folder setup cannot write keeps none, and the next load validates again)."""
    cache_folder().remember(VALID_CACHE, digest, True, VALID_CACHE_SIZE)


def _schema_problems(instance: Any, where: str) -> list[ConfigProblem]:
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


def _describe(error: Any, where: str) -> list[ConfigProblem]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        return [ConfigProblem(where, _dotted([*path, str(k)]), _unknown_key(str(k), allowed)) for k in unknown]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return [ConfigProblem(where, _dotted([*path, k]), "required key is missing") for k in missing]
    return [ConfigProblem(where, _dotted(path), _message(error))]


def _dotted(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _unknown_key(key: str, allowed: list[str]) -> str:
    close = nearest(key, allowed)
    if close:
        return f"unknown key (did you mean '{close}'?)"
    return f"unknown key (valid keys: {', '.join(allowed)})"


def _message(error: Any) -> str:
    if "propertyNames" in error.relative_schema_path:
        return f"key {error.instance!r} must be a string (quote it)"
    if error.validator == "type":
        expected: list[str] = (
            error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        )
        words = " or ".join(YAML_TYPE_WORDS.get(t, t) for t in expected)
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


# ---------------------------------------------------------------- beyond the schema


def _non_finite_problems(value: Any, where: str, path: tuple[str | int, ...] = ()) -> Iterator[ConfigProblem]:
    """YAML's .nan and .inf pass every numeric bound in the schema; catch them here."""
    if isinstance(value, float) and not math.isfinite(value):
        yield ConfigProblem(where, _dotted(path), f"{value!r} is not a finite number")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite_problems(v, where, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite_problems(v, where, (*path, i))


def _in_section_order(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """Group problems by section, in schema order (the sample file's order); stable within a section."""
    sections = list(document()["properties"])

    def position(problem: ConfigProblem) -> int:
        section = re.split(r"[.\[]", problem.path, maxsplit=1)[0]
        return sections.index(section) if section in sections else -1

    return sorted(problems, key=position)


def _cross_field_problems(data: Mapping[str, Any], where: str) -> list[ConfigProblem]:
    """Rules relating several keys, which JSON Schema cannot express."""
    problems = [p for pair in _ORDERED_PAIRS if (p := _order_problem(data, where, *pair))]
    validation = data.get("validation")
    checks = validation.get("custom_checks") if isinstance(validation, dict) else None
    if isinstance(checks, list):
        problems += _custom_check_problems(checks, where)
    return problems


def _order_problem(
    data: Mapping[str, Any], where: str, section: str, low_key: str, high_key: str
) -> ConfigProblem | None:
    values = data.get(section)
    if not isinstance(values, dict):
        return None
    low, high = values.get(low_key), values.get(high_key)
    if not (_number(low) and _number(high)):
        return None  # the schema has reported it
    if high >= low:
        return None
    return ConfigProblem(where, f"{section}.{high_key}", f"{high!r} is less than {low_key} ({low!r})")


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _custom_check_problems(checks: list[Any], where: str) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    first_index: dict[str, int] = {}
    for index, check in enumerate(checks):
        if not isinstance(check, dict):
            continue
        name, sql = check.get("name"), check.get("sql")
        path = f"validation.custom_checks[{index}]"
        if isinstance(name, str) and name in first_index:
            problems.append(
                ConfigProblem(
                    where,
                    f"{path}.name",
                    f"duplicate check name '{name}' (first used by custom_checks[{first_index[name]}])",
                )
            )
        elif isinstance(name, str):
            first_index[name] = index
        if isinstance(sql, str) and sql and not sql.strip():
            problems.append(ConfigProblem(where, f"{path}.sql", "SQL is blank"))
    return problems
