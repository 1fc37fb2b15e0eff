"""Caches setup keeps beside the manifest: the parse stamp, resolved selections and profile, graph answers.

Every cache is rebuilt when it is missing, damaged, of the wrong shape or for
another manifest: a cache can cost time, never correctness. Each context (database,
target, profiles, vars) has its own folder under setup's dbt folder; the least
recently parsed beyond ``KEPT_CONTEXTS`` are removed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..files import discarded, make_private_dir, read_json, write_json_atomic
from ..project.context import DbtContext, DbtProfile
from ..project.graph import GraphMemo
from ..project.manifest import Digests, Manifest, manifest_digests, manifest_from_dict

CACHE_FILE = "setup_cache.json"
GRAPH_MEMO_FILE = "graph_memo.json"
CACHE_VERSION = 5  # 5: node definitions, the compile context, environment variables dbt read
KEPT_CONTEXTS = 8


@dataclass(frozen=True)
class ManifestCache:
    """What the last parse left behind: its stamp and the selections dbt resolved."""

    path: Path
    manifest_path: Path

    def load(self, stamp: str) -> Manifest | None:
        """The cached manifest when its stamp matches, else None (re-parse needed)."""
        cache = read_json(self.path, {}, version=CACHE_VERSION)
        if cache.get("stamp") != stamp:
            return None
        raw = read_json(self.manifest_path, {})
        metadata = raw.get("metadata")
        if not isinstance(metadata, dict) or metadata.get("invocation_id") != cache.get("invocation_id"):
            if raw:
                discarded(self.manifest_path, "not the manifest of the last parse")
            return None  # manifest.json rewritten by someone else's dbt run, or damaged
        selections, profile = cache.get("selections"), cache.get("profile")
        try:
            return manifest_from_dict(
                raw,
                {k: tuple(map(str, v)) for k, v in selections.items()},
                DbtProfile.from_dict(profile),
                Digests.from_dict(cache["digests"]),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            shaped = isinstance(selections, dict) and isinstance(profile, dict)
            discarded(self.manifest_path if shaped else self.path, f"wrong shape ({type(exc).__name__})")
            return None

    def file_set(self) -> str | None:
        """The project's file set (``project.manifest.file_set``) at the last parse; None when unknown."""
        return read_json(self.path, {}, version=CACHE_VERSION).get("files")

    def env_names(self) -> list[str]:
        """Environment variables the last parse read (by any name, env_var() in any file)."""
        names = read_json(self.path, {}, version=CACHE_VERSION).get("env_reads")
        return [str(n) for n in names] if isinstance(names, list) else []

    def save(
        self,
        stamp: str,
        raw: Mapping[str, Any],
        selections: Mapping[str, tuple[str, ...]],
        profile: DbtProfile,
        files: str | None = None,
        parts: Mapping[str, str] | None = None,
        env_reads: tuple[str, ...] = (),
        digests: Digests | None = None,
    ) -> Digests:
        """The parse's stamp, with what dbt resolved in it (the selections and the profile: its
        database file), the project's file set, the stamp's parts, the environment variables the
        parse read and what is derived of the manifest once (``manifest_digests``). Returns that."""
        digests = manifest_digests(raw) if digests is None else digests
        make_private_dir(self.path.parent.parent)
        make_private_dir(self.path.parent)
        write_json_atomic(
            self.path,
            {
                "version": CACHE_VERSION,
                "stamp": stamp,
                "files": files,
                "invocation_id": raw.get("metadata", {}).get("invocation_id"),
                "selections": {k: list(v) for k, v in selections.items()},
                "profile": profile.as_dict(),
                "parts": dict(parts or {}),
                "env_reads": sorted(env_reads),
                "digests": digests.as_dict(),
            },
        )
        prune_contexts(self.path.parent.parent, keep=self.path.parent)
        return digests

    def parts(self) -> dict[str, str] | None:
        """The stamp's parts at the last parse (to say why dbt parses again); None when there was none.

        A context parsed for the first time (a var, the target or the database changed)
        compares with the project's latest parse in another context.
        """
        caches = [self.path]
        if not self.path.exists():
            siblings = self.path.parent.parent.glob(f"ctx-*/{CACHE_FILE}")
            caches = sorted(siblings, key=_modified, reverse=True)[:1]
        cache = read_json(caches[0], None) if caches else None
        if not isinstance(cache, dict):
            return None
        parts = cache.get("parts")
        return {str(k): str(v) for k, v in parts.items()} if isinstance(parts, dict) else {}

    @property
    def graph_memo_path(self) -> Path:
        return self.path.with_name(GRAPH_MEMO_FILE)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def manifest_cache(ctx: DbtContext) -> ManifestCache:
    tdir = ctx.target_path()
    return ManifestCache(tdir / CACHE_FILE, tdir / "manifest.json")


def prune_contexts(base: Path, keep: Path) -> None:
    """Remove what older versions and contexts not parsed lately left in setup's dbt folder.

    Everything but the ``KEPT_CONTEXTS`` most recently parsed context folders goes: the
    folder is setup's own, and a removed context only costs its next run a parse.
    """

    def parsed(folder: Path) -> float:  # a folder being parsed has no cache file yet
        return _modified(folder / CACHE_FILE) or _modified(folder)

    try:
        entries = list(base.iterdir())
    except OSError:
        return
    contexts = sorted(
        (e for e in entries if e.name.startswith("ctx-") and e.is_dir() and e != keep), key=parsed, reverse=True
    )
    kept = {keep, *contexts[: KEPT_CONTEXTS - 1]}
    for entry in entries:
        if entry in kept:
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            pass


def load_graph_memo(path: Path, manifest_id: str) -> GraphMemo:
    stored = read_json(path, {})
    answers = stored.get("answers")
    if not stored or stored.get("manifest") != manifest_id:
        return GraphMemo(manifest_id)
    if not isinstance(answers, dict) or not all(
        isinstance(v, list) and all(isinstance(u, str) for u in v) for v in answers.values()
    ):
        discarded(path, "wrong shape")
        return GraphMemo(manifest_id)
    return GraphMemo(manifest_id, dict(answers))


def save_graph_memo(path: Path, memo: GraphMemo) -> None:
    if not memo.dirty:
        return
    try:
        write_json_atomic(path, {"manifest": memo.manifest_id, "answers": memo.answers})
        memo.dirty = False
    except OSError:
        pass  # a cache: without it the next run asks networkx again
