"""The typed, frozen settings: a class per schema section, derived from the schema, with its behaviour from a small base class.

No key is declared here. Each section of the schema becomes a frozen, slotted
dataclass whose fields are the section's keys in schema order, typed from the
JSON types: string -> str (``Path`` when the key has ``"x-path": true``),
integer -> int, number -> float, boolean -> bool, a ``null`` in the type ->
``| None``, array -> tuple, array of objects -> tuple of a derived item class,
object -> read-only mapping. Behaviour (``SetupOptions.matches``, ...) comes
from the base classes below; the public names are bound at the end.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .schema import PATH_KEYWORD, document, resolve_ref

GLOB_CHARS = frozenset("*?[")  # a name holding one of these is a glob pattern
_SCALARS = {"string": str, "integer": int, "number": float, "boolean": bool}


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


# ---------------------------------------------------------------- behaviour of the derived classes


class _DbtBehaviour:
    __slots__ = ()
    vars: Mapping[str, Any]

    def vars_dict(self) -> dict[str, Any]:
        """A plain, mutable deep copy of ``vars`` (for JSON and dbt's --vars)."""
        return thaw(self.vars)


class _SetupBehaviour:
    __slots__ = ()
    clear_table_patterns: tuple[str, ...]

    def matches(self, table_name: str) -> bool:
        """True if ``table_name`` matches one of ``clear_table_patterns``.

        Case-insensitive because DuckDB identifiers are.
        """
        name = table_name.lower()
        return any(_pattern_matches(p.lower(), name) for p in self.clear_table_patterns)


def _pattern_matches(pattern: str, name: str) -> bool:
    if GLOB_CHARS & set(pattern):
        return fnmatch.fnmatchcase(name, pattern)
    return name.startswith(pattern)


class _ValidationBehaviour:
    __slots__ = ()
    fail_on: tuple[str, ...]

    def is_blocking(self, severity: str) -> bool:
        """True if a failed check of this severity fails the setup."""
        return severity in self.fail_on


class _SettingsBehaviour:
    __slots__ = ()
    database: Any
    report: Any

    @property
    def state_dir(self) -> Path:
        """Where run state for this database lives (locks; each project's records below it)."""
        path = self.database.path
        if path is None:
            raise ValueError("database.path is not known yet: the engine reads it from dbt's profile")
        return path.parent / ".planwise" / path.name

    def with_database(self, path: Path) -> Any:
        """These settings for the database file dbt's profile names (``database.path`` was null)."""
        return dataclasses.replace(self, database=dataclasses.replace(self.database, path=path),
                                   report=report_paths(self.report, path))

    def set_by_user(self, key: str) -> bool:
        """Did the configuration file or an environment variable set this dotted key (``census.path``)?"""
        return key in self.explicit  # type: ignore[attr-defined]

    def with_census(self, path: Path) -> Any:
        """These settings with the census file the project reads (``census.path`` was not set)."""
        return dataclasses.replace(self, census=dataclasses.replace(self.census, path=path))  # type: ignore[attr-defined]

    def as_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict of the effective settings (paths as str)."""
        return thaw(self)

    def digest(self) -> str:
        """A stable sha256 of the effective settings.

        ``root``, ``source`` and ``explicit`` are left out: the same values loaded from
        another file, or given there instead of by default, are the same settings.
        """
        values = {k: v for k, v in self.as_dict().items() if k not in ("root", "source", "explicit")}
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def report_paths(report: Any, database: Path | None) -> Any:
    """The report section with its null paths made from the database path (once it is known)."""
    if database is None:
        return report
    return dataclasses.replace(
        report,
        path=report.path or database.with_suffix(".setup_report.json"),
        history_path=report.history_path or database.with_suffix(".setup_history.jsonl"),
    )


# The Python names of the derived classes (section or list key -> class name) where
# the rule (section "census" -> CensusSettings) does not give them, and their behaviour.
_CLASS_NAMES = {"setup": "SetupOptions", "validation.custom_checks": "CustomCheck"}
_BEHAVIOUR: Mapping[str, type] = {"dbt": _DbtBehaviour, "setup": _SetupBehaviour, "validation": _ValidationBehaviour}


# ---------------------------------------------------------------- derivation


def derive_sections(schema: Mapping[str, Any]) -> dict[str, type]:
    """One frozen, slotted dataclass per section of ``schema``, in schema order."""
    return {name: _derive_class(name, resolve_ref(section, schema), schema) for name, section in schema["properties"].items()}


def derive_settings(sections: Mapping[str, type]) -> type:
    """The class of the whole configuration: where it was loaded from, one field per section, and
    which keys the file or the environment set (``explicit``, dotted: a default is not the user's choice)."""
    fields = [("root", Path), ("source", Path | None), *sections.items(),
              ("explicit", tuple[str, ...], dataclasses.field(default=()))]
    doc = "The effective setup configuration: file, environment and defaults merged."
    return _dataclass("Settings", fields, _SettingsBehaviour, doc)


def _derive_class(key: str, schema: Mapping[str, Any], within: Mapping[str, Any]) -> type:
    name = _CLASS_NAMES.get(key) or key.rsplit(".", 1)[-1].title().replace("_", "") + "Settings"
    fields = [
        (field, _python_type(f"{key}.{field}", resolve_ref(sub, within), within))
        for field, sub in schema["properties"].items()
    ]
    return _dataclass(name, fields, _BEHAVIOUR.get(key, object), schema["description"])


def _dataclass(name: str, fields: list[tuple[str, Any]], base: type, doc: str) -> type:
    return dataclasses.make_dataclass(
        name, fields, bases=(base,), frozen=True, slots=True, namespace={"__doc__": doc, "__module__": __name__}
    )


def _python_type(key: str, schema: Mapping[str, Any], within: Mapping[str, Any]) -> Any:
    """The Python type of a key's values, from its JSON type(s)."""
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    kind, *others = [k for k in kinds if k != "null"]
    if others:
        raise TypeError(f"{key}: a key takes one JSON type (and null); the schema gives {kinds}")
    if kind == "array":
        items = resolve_ref(schema["items"], within)
        item = _derive_class(key, items, within) if "properties" in items else _python_type(f"{key}[]", items, within)
        hint: Any = tuple[item, ...]
    elif kind == "object":
        values = {_python_type(f"{key}.{k}", resolve_ref(s, within), within) for k, s in schema.get("properties", {}).items()}
        hint = Mapping[str, values.pop() if len(values) == 1 else Any]
    elif kind == "string" and schema.get(PATH_KEYWORD):
        hint = Path
    else:
        hint = _SCALARS[kind]
    return hint | None if "null" in kinds else hint


# ---------------------------------------------------------------- construction


def build(cls: type, values: Mapping[str, Any], to_path: Callable[[str, str], Path], prefix: str) -> Any:
    """An instance of derived class ``cls`` from schema-valid plain data, converted by field type.

    ``to_path(key, value)`` makes the absolute path of a path-valued key.
    """
    hints = typing.get_type_hints(cls)
    return cls(**{
        f.name: _convert(hints[f.name], values[f.name], to_path, f"{prefix}.{f.name}")
        for f in dataclasses.fields(cls)
    })


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
            return tuple(build(item, v, to_path, key) for v in value)  # type: ignore[arg-type]
        return tuple(value)
    if typing.get_origin(hint) is Mapping:
        return freeze(value)
    return value


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


# ---------------------------------------------------------------- the public classes

SECTIONS: Mapping[str, type] = types.MappingProxyType(derive_sections(document()))
Settings = derive_settings(SECTIONS)
DatabaseSettings = SECTIONS["database"]
DbtSettings = SECTIONS["dbt"]
SetupOptions = SECTIONS["setup"]
ValidationSettings = SECTIONS["validation"]
CustomCheck = typing.get_args(typing.get_type_hints(ValidationSettings)["custom_checks"])[0]
CensusSettings = SECTIONS["census"]
ReportSettings = SECTIONS["report"]
