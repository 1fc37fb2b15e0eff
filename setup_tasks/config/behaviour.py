"""The behaviour of the settings classes (their bases: ``SetupOptions.matches``, ``Settings.with_database``, ...) and
deep freeze/thaw.

The classes themselves, with their fields, are generated from the schema into
``sections.py``, which subclasses these. Each base declares the fields its
methods read, with their types; the generated subclass declares them again, as
the dataclass fields they are.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

GLOB_CHARS = frozenset("*?[")  # a name holding one of these is a glob pattern


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


class _Dataclass:
    """A base of a generated dataclass: ``dataclasses.replace(self, ...)`` type-checks in its methods."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


class DbtBehaviour(_Dataclass):
    __slots__ = ()
    vars: Mapping[str, Any]

    def vars_dict(self) -> dict[str, Any]:
        """A plain, mutable deep copy of ``vars`` (for JSON and dbt's --vars)."""
        return thaw(self.vars)


class SetupBehaviour(_Dataclass):
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


class ValidationBehaviour(_Dataclass):
    __slots__ = ()
    fail_on: tuple[str, ...]

    def is_blocking(self, severity: str) -> bool:
        """True if a failed check of this severity fails the setup."""
        return severity in self.fail_on


class ReportBehaviour(_Dataclass):
    __slots__ = ()
    path: Path | None
    history_path: Path | None

    def for_database(self, database: Path | None) -> Self:
        """This section with its null paths made from the database path (once it is known)."""
        if database is None:
            return self
        return dataclasses.replace(
            self,
            path=self.path or database.with_suffix(".setup_report.json"),
            history_path=self.history_path or database.with_suffix(".setup_history.jsonl"),
        )


class SettingsBehaviour(_Dataclass):
    __slots__ = ()
    # The sections' own classes are generated above this module: here, what these methods read of them.
    database: Any
    census: Any
    report: ReportBehaviour
    explicit: tuple[str, ...]

    @property
    def state_dir(self) -> Path:
        """Where run state for this database lives (locks; each project's records below it)."""
        path: Path | None = self.database.path
        if path is None:
            raise ValueError("database.path is not known yet: the engine reads it from dbt's profile")
        return path.parent / ".planwise" / path.name

    def with_database(self, path: Path) -> Self:
        """These settings for the database file dbt's profile names (``database.path`` was null)."""
        return dataclasses.replace(
            self, database=dataclasses.replace(self.database, path=path), report=self.report.for_database(path)
        )

    def set_by_user(self, key: str) -> bool:
        """Did the configuration file or an environment variable set this dotted key (``census.path``)?"""
        return key in self.explicit

    def with_census(self, path: Path) -> Self:
        """These settings with the census file the project reads (``census.path`` was not set)."""
        return dataclasses.replace(self, census=dataclasses.replace(self.census, path=path))

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
