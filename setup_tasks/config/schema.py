"""The configuration schema: the one declaration of every key, its type, default, description, limits and role.

``setup_config.schema.json`` (package data beside this module; the repository's
``schemas/`` holds a copy for editors) is read here and nowhere else. Besides
JSON Schema's own keywords it carries two of ours, which validators and
editors ignore: ``"x-path": true`` marks a string that names a file or
directory (made absolute when loaded), and ``"x-env": "VAR"`` names the
environment variable that overrides the key. Everything else about a key
(the settings classes, the defaults, the reference in docs/configuration.md, the census
generator's limits) is derived from this file.
"""

from __future__ import annotations

import copy
import functools
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

SCHEMA_NAME = "setup_config.schema.json"
# Package data, so that an installed (non-editable) package has it; schemas/ in the repository is a copy.
SCHEMA_PATH = Path(__file__).resolve().parent / SCHEMA_NAME
PATH_KEYWORD = "x-path"  # true: the string names a file or directory
ENV_KEYWORD = "x-env"  # the environment variable that overrides the key
# The command printing this schema as the Markdown reference (config/__main__.py, reference.py).
REFERENCE_COMMAND = "python -m setup_tasks.config --reference"
YAML_TYPE_WORDS: Mapping[str, str] = {"object": "mapping", "array": "list"}  # what YAML users call JSON Schema's types


@functools.cache
def document() -> dict[str, Any]:
    """The schema as read from SCHEMA_PATH, once per process (shared: never modify it)."""
    return json.loads(schema_text())


def schema_text() -> str:
    """The schema file's text, as shipped with the package."""
    try:
        return SCHEMA_PATH.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"configuration schema {SCHEMA_PATH} cannot be read: {exc.strerror}",
            "reinstall planwise-setup (the schema ships inside the package, as setup_tasks/config/" + SCHEMA_NAME + ")",
        ) from exc


def load_schema() -> dict[str, Any]:
    """The configuration JSON Schema (a private copy, safe to modify)."""
    return copy.deepcopy(document())


def resolve_ref(node: Mapping[str, Any], within: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge a local ``#/$defs/...`` reference into the node that uses it (``within``: the schema, default ours)."""
    ref = node.get("$ref")
    if not ref:
        return dict(node)
    target: Any = document() if within is None else within
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def node(key: str) -> dict[str, Any]:
    """The resolved schema of a dotted key such as ``census.employees`` (``name[]`` steps into list items)."""
    current: Mapping[str, Any] = document()
    for part in key.split("."):
        name = part.removesuffix("[]")
        properties = current.get("properties", {})
        if name not in properties:
            raise KeyError(f"{SCHEMA_PATH.name} declares no key {key!r}")
        current = resolve_ref(properties[name])
        if part.endswith("[]"):
            current = resolve_ref(current["items"])
    return dict(current)


@dataclass(frozen=True, slots=True)
class Limits:
    """The inclusive bounds the schema sets on a number; None where it sets none."""

    minimum: int | float | None
    maximum: int | float | None

    def allows(self, value: int | float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def __str__(self) -> str:
        return f"{'' if self.minimum is None else self.minimum}..{'' if self.maximum is None else self.maximum}"


def limits(key: str) -> Limits:
    """The ``minimum`` and ``maximum`` of a numeric key: code that enforces a bound reads it here."""
    schema = node(key)
    exclusive = [k for k in ("exclusiveMinimum", "exclusiveMaximum") if k in schema]
    if exclusive:
        raise ValueError(f"{key} has {' and '.join(exclusive)}; Limits holds inclusive bounds only")
    return Limits(schema.get("minimum"), schema.get("maximum"))


def default_of(key: str) -> Any:
    """The default of a dotted key, as plain data (a fresh copy)."""
    return default(node(key))


def default(schema: Mapping[str, Any]) -> Any:
    """The default of a schema node, as plain data (a fresh copy)."""
    # Objects with declared keys take their defaults key by key, so a user
    # who sets one key of such a mapping keeps the defaults of the others.
    if "properties" in schema:
        return with_defaults(schema, {})
    return copy.deepcopy(schema.get("default"))


def with_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """``value`` with missing keys filled from the schema; unknown keys dropped."""
    props = schema.get("properties")
    if props is not None and isinstance(value, dict):
        return {name: with_defaults(sub, value[name]) if name in value else default(sub) for name, sub in props.items()}
    items = schema.get("items")
    if items is not None and isinstance(value, list):
        return [with_defaults(items, v) for v in value]
    return value


def nulls_as_empty(schema: Mapping[str, Any], value: Any) -> Any:
    """Treat a mapping key with no value as empty.

    YAML reads a section whose keys are all commented out as null; that
    should mean "all defaults", not a type error.
    """
    props = schema.get("properties")
    if not isinstance(value, dict) or props is None:
        return value
    return {
        k: ({} if v is None and props.get(k, {}).get("type") == "object" else nulls_as_empty(props.get(k, {}), v))
        for k, v in value.items()
    }


def _env_overrides(schema: Mapping[str, Any]) -> Mapping[str, tuple[str, str]]:
    return types.MappingProxyType(
        {
            sub[ENV_KEYWORD]: (section, key)
            for section, values in schema["properties"].items()
            for key, sub in values.get("properties", {}).items()
            if ENV_KEYWORD in sub
        }
    )


# Environment variable -> (section, key) it overrides; env wins over the file.
ENV_OVERRIDES: Mapping[str, tuple[str, str]] = _env_overrides(document())
