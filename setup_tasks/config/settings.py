"""Building the typed, frozen settings (the classes sections.py declares, generated from the schema) from plain data.

The classes are declared nowhere by hand: codegen.py writes sections.py from
the schema (a test keeps the two equal) and behaviour.py gives them their
methods. Here they are built from schema-valid plain data, converted by each
field's type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .behaviour import freeze
from .schema import document
from .sections import Settings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance  # the type checker's name for "a dataclass", not importable at run time

_T = TypeVar("_T", bound="DataclassInstance")

# Section name -> its class, in schema order.
SECTIONS: Mapping[str, type] = types.MappingProxyType(
    {name: typing.get_type_hints(Settings)[name] for name in document()["properties"]}
)


def build(cls: type[_T], values: Mapping[str, Any], to_path: Callable[[str, str], Path], prefix: str) -> _T:
    """An instance of settings class ``cls`` from schema-valid plain data, converted by field type.

    ``to_path(key, value)`` makes the absolute path of a path-valued key.
    """
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
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return tuple(build(item, v, to_path, key) for v in value)
        return tuple(value)
    if typing.get_origin(hint) is Mapping:
        return freeze(value)
    return value


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint
