"""The configuration reference: the schema as Markdown tables, and keeping the copy in docs/configuration.md current."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from .loader import CONFIG_ENV_VAR, DEFAULT_CONFIG_NAME
from .schema import ENV_OVERRIDES, PATH_KEYWORD, REFERENCE_COMMAND, YAML_TYPE_WORDS, document, resolve_ref

REFERENCE_START = "<!-- config-reference:start -->"
REFERENCE_END = "<!-- config-reference:end -->"


def config_reference_markdown() -> str:
    """The configuration reference in Markdown: one table per section, from the schema."""
    schema = document()
    env_lines = ", ".join(f"`{var}` → `{s}.{k}`" for var, (s, k) in ENV_OVERRIDES.items())
    parts = [
        f"Generated from `schemas/setup_config.schema.json` by `{REFERENCE_COMMAND}`; do not edit by hand.",
        f"Every key is optional. Relative paths resolve against the directory of the file that sets them "
        f"(environment variables and defaults: the root, the folder of `dodo.py`). "
        f"The file is `{DEFAULT_CONFIG_NAME}` in the root, or the one named by `config=PATH` "
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
        sub = resolve_ref(sub)
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
    kind_or_kinds = node.get("type", "any")
    kinds: list[str] = kind_or_kinds if isinstance(kind_or_kinds, list) else [kind_or_kinds]
    words = []
    for kind in kinds:
        items = node.get("items")
        if kind == "array" and isinstance(items, dict):
            words.append(f"list of {_type_text(resolve_ref(items)).replace(' or ', '/')}")
        else:
            words.append("path" if kind == "string" and node.get(PATH_KEYWORD) else YAML_TYPE_WORDS.get(kind, kind))
    text = " or ".join(words)
    if "enum" in node:
        text += ": " + ", ".join(f"`{v}`" for v in node["enum"])
    bounds = [f"{sign} {node[k]}" for k, sign in _BOUND_SIGNS.items() if k in node]
    examples = [f"`{e}`" for e in node.get("examples", ())]
    return ", ".join([text, *bounds] + ([f"e.g. {' or '.join(examples)}"] if examples else []))


_BOUND_SIGNS: Mapping[str, str] = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<"}


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
    """True if the reference between the markers of a document (docs/configuration.md) matches the schema."""
    block = _reference_block(readme_text)
    return block is not None and block.strip() == config_reference_markdown().strip()


def replace_readme_reference(readme_text: str) -> str:
    """The document with the text between the markers replaced by a fresh reference."""
    if _reference_block(readme_text) is None:
        raise ValueError(f"the document has no {REFERENCE_START} ... {REFERENCE_END} markers")
    head, rest = readme_text.split(REFERENCE_START, 1)
    _, tail = rest.split(REFERENCE_END, 1)
    return f"{head}{REFERENCE_START}\n{config_reference_markdown()}{REFERENCE_END}{tail}"
