"""Caches setup keeps beside the manifest: the parse stamp and resolved selections, graph answers.

Every cache is rebuilt when it is missing, damaged, of the wrong shape or for
another manifest: a cache can cost time, never correctness.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..project.context import DbtContext, read_project_yaml, target_dir
from ..project.graph import GraphMemo
from ..project.manifest import Manifest, manifest_from_dict
from ..files import read_json, write_json_atomic

CACHE_FILE = "setup_cache.json"
GRAPH_MEMO_FILE = "graph_memo.json"


@dataclass(frozen=True)
class ManifestCache:
    """What the last parse left behind: its stamp and the selections dbt resolved."""

    path: Path
    manifest_path: Path

    def load(self, stamp: str) -> Manifest | None:
        """The cached manifest when its stamp matches, else None (re-parse needed)."""
        cache = read_json(self.path, {})
        if cache.get("stamp") != stamp:
            return None
        raw = read_json(self.manifest_path, {})
        metadata = raw.get("metadata")
        if not isinstance(metadata, dict) or metadata.get("invocation_id") != cache.get("invocation_id"):
            return None  # manifest.json rewritten by someone else's dbt run, or damaged
        selections = cache.get("selections")
        if not isinstance(selections, dict):
            return None
        try:
            return manifest_from_dict(raw, {k: tuple(v) for k, v in selections.items()})
        except (KeyError, TypeError, AttributeError, ValueError):
            return None

    def save(self, stamp: str, raw: Mapping[str, Any], selections: Mapping[str, tuple[str, ...]]) -> None:
        write_json_atomic(self.path, {
            "stamp": stamp,
            "invocation_id": raw.get("metadata", {}).get("invocation_id"),
            "selections": {k: list(v) for k, v in selections.items()},
        })

    @property
    def graph_memo_path(self) -> Path:
        return self.path.with_name(GRAPH_MEMO_FILE)


def manifest_cache(ctx: DbtContext) -> ManifestCache:
    tdir = target_dir(ctx.project_dir, read_project_yaml(ctx.project_dir))
    return ManifestCache(tdir / CACHE_FILE, tdir / "manifest.json")


def load_graph_memo(path: Path, manifest_id: str) -> GraphMemo:
    stored = read_json(path, {})
    answers = stored.get("answers")
    if stored.get("manifest") != manifest_id or not isinstance(answers, dict):
        return GraphMemo(manifest_id)
    return GraphMemo(manifest_id, {k: v for k, v in answers.items() if isinstance(v, list)})


def save_graph_memo(path: Path, memo: GraphMemo) -> None:
    if not memo.dirty:
        return
    try:
        write_json_atomic(path, {"manifest": memo.manifest_id, "answers": memo.answers})
        memo.dirty = False
    except OSError:
        pass  # a cache: without it the next run asks networkx again
