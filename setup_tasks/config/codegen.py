"""Generating sections.py, the typed settings classes, from the configuration schema.

A class per schema section, whose fields are the section's keys in schema order,
typed from the JSON types: string -> str (``Path`` when the key has
``"x-path": true``), integer -> int, number -> float, boolean -> bool, a ``null``
in the type -> ``| None``, array -> tuple, array of objects -> tuple of a
generated item class, object -> read-only mapping. The file is checked in, so a
type checker sees the classes; tests/test_config.py fails while it differs from
what this module makes of the schema, and ``WRITE_COMMAND`` rewrites it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .schema import PATH_KEYWORD, document, resolve_ref

CLASSES_PATH = Path(__file__).resolve().parent / "sections.py"
WRITE_COMMAND = "python -m setup_tasks.config --write-classes"
WIDTH = 100  # the longest line written

# The class names where the rule (section "census" -> CensusSettings) does not give them.
_CLASS_NAMES: Mapping[str, str] = {"setup": "SetupOptions", "validation.custom_checks": "CustomCheck"}
# Each class's base in behaviour.py, where its methods are.
_BEHAVIOUR: Mapping[str, str] = {
    "dbt": "DbtBehaviour",
    "setup": "SetupBehaviour",
    "validation": "ValidationBehaviour",
    "report": "ReportBehaviour",
    "": "SettingsBehaviour",
}
_SCALARS: Mapping[str, str] = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
_SETTINGS_DOC = "The effective setup configuration: file, environment and defaults merged."
_SETTINGS_HEAD = (
    ("root", "Path", "The folder of dodo.py: relative paths from the environment and defaults resolve against it."),
    ("source", "Path | None", "The configuration file read; None when there was none (all defaults)."),
)
_SETTINGS_TAIL = (
    (
        "explicit",
        "tuple[str, ...] = ()",
        "The dotted keys the file or the environment set to a value (a default is not the user's choice).",
    ),
)
_HEADER = f'''"""The typed settings classes, one per section of the configuration schema: generated from it.

Do not edit: after changing setup_config.schema.json, run
`{WRITE_COMMAND}` (tests/test_config.py fails while this
file and the schema differ). Each class is a frozen, slotted dataclass whose fields are its keys in
schema order; methods come from its base in behaviour.py.
"""

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

'''


def classes_source(schema: Mapping[str, Any] | None = None) -> str:
    """The text of sections.py for ``schema`` (default: the package's)."""
    schema = document() if schema is None else schema
    classes: dict[str, str] = {}  # key ("" for the whole) -> the source of its class, a class after those it uses
    sections = [
        (name, _class(name, resolve_ref(section, schema), schema, classes), section["description"])
        for name, section in schema["properties"].items()
    ]
    classes[""] = _render("Settings", "", _SETTINGS_DOC, [*_SETTINGS_HEAD, *sections, *_SETTINGS_TAIL])
    bases = sorted(_BEHAVIOUR[key] for key in classes if key in _BEHAVIOUR)
    return _HEADER + _import_line(".behaviour", bases) + "\n\n" + "\n\n".join(classes.values())


def _import_line(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(names)}\n"
    return line if len(line) <= WIDTH else f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")\n"


def write_classes(path: Path = CLASSES_PATH) -> bool:
    """Write sections.py from the schema; True if its text changed."""
    text = classes_source()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def _class(key: str, schema: Mapping[str, Any], within: Mapping[str, Any], classes: dict[str, str]) -> str:
    """The name of ``key``'s class, whose source (after that of the item classes it uses) is added to ``classes``."""
    name = _CLASS_NAMES.get(key) or key.rsplit(".", 1)[-1].title().replace("_", "") + "Settings"
    fields = []
    for field, sub in schema["properties"].items():
        sub = resolve_ref(sub, within)
        fields.append((field, _python_type(f"{key}.{field}", sub, within, classes), sub["description"]))
    classes[key] = _render(name, key, schema["description"], fields)
    return name


def _python_type(key: str, schema: Mapping[str, Any], within: Mapping[str, Any], classes: dict[str, str]) -> str:
    """The Python type of a key's values, from its JSON type(s)."""
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    kind, *others = [k for k in kinds if k != "null"]
    if others:
        raise TypeError(f"{key}: a key takes one JSON type (and null); the schema gives {kinds}")
    if kind == "array":
        items = resolve_ref(schema["items"], within)
        item = (
            _class(key, items, within, classes)
            if "properties" in items
            else _python_type(f"{key}[]", items, within, classes)
        )
        hint = f"tuple[{item}, ...]"
    elif kind == "object":
        values = {
            _python_type(f"{key}.{k}", resolve_ref(s, within), within, classes)
            for k, s in schema.get("properties", {}).items()
        }
        hint = f"Mapping[str, {values.pop() if len(values) == 1 else 'Any'}]"
    elif kind == "string" and schema.get(PATH_KEYWORD):
        hint = "Path"
    else:
        hint = _SCALARS[kind]
    return f"{hint} | None" if "null" in kinds else hint


def _render(name: str, key: str, doc: str, fields: list[tuple[str, str, str]]) -> str:
    base = _BEHAVIOUR.get(key)
    lines = ["@dataclasses.dataclass(frozen=True, slots=True)", f"class {name}({base}):" if base else f"class {name}:"]
    lines += _docstring(doc) + [""]
    for field, hint, description in fields:
        lines += [f"    {field}: {hint}", *_docstring(description)]
    return "\n".join(lines) + "\n"


def _docstring(text: str) -> list[str]:
    if '"""' in text or "\\" in text or text.endswith('"'):
        raise ValueError(f"a description the generated source cannot quote as it is: {text!r}")
    # Room for the quotes: the closing ones stay on the last line, as formatters keep them.
    lines = textwrap.wrap(text, WIDTH - 4 - 3, initial_indent='"""')
    return ["    " + line for line in lines[:-1]] + [f'    {lines[-1]}"""']
