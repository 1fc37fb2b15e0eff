"""YAML files setup parsed before, by their text: importing PyYAML costs a full check about 10 ms, far more
than parsing setup.yaml and dbt_project.yml. What a text parses to is a pure function of the text and the
loader, so a cache keyed by both (in the user's cache folder: ``user_folders``, the user's own or not used)
can only cost time, never correctness. Only documents JSON holds exactly are kept (no dates, no sets,
no keys that are not strings); a text that does not parse is never kept, so its error is always PyYAML's.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Callable

from ..user_folders import cache_folder

CACHE_FILE = "parsed-yaml.json"
KEPT = 32  # texts: setup.yaml, dbt_project.yml and their recent versions, in a few projects
FORMAT = 1


def parsed(text: str, loader: str, parse: Callable[[str], Any]) -> Any:
    """``parse(text)``, answered from the cache when this ``loader`` parsed this very text before."""
    key = hashlib.sha256(f"{FORMAT}\0{loader}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()
    folder = cache_folder()
    known, data = folder.recalled(CACHE_FILE, key)
    if known:
        return data
    data = parse(text)  # raises as the loader does: nothing is kept
    if exact_in_json(data):
        folder.remember(CACHE_FILE, key, data, KEPT)
    return data


def exact_in_json(value: Any) -> bool:
    """Does JSON give back exactly this value (types included)?"""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(exact_in_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and exact_in_json(v) for k, v in value.items())
    return False
