"""The one way setup writes its own files (atomically) and reads them back (tolerantly). A leaf."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old or the new file, never half of one.

    No fsync: this guards against a killed process, not a lost machine, and
    fsync per node would cost more than the node itself.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Text twin of ``write_json_atomic`` (JSON lines, diagrams)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Bytes twin of ``write_json_atomic`` (the pickled dbt manifest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path, default: Any) -> Any:
    """The file's JSON, or ``default`` when it is missing, unreadable or not of ``default``'s type.

    Setup's own files are caches and records it can rebuild: a damaged one is
    treated as absent, never as a crash.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return default
    if default is not None and not isinstance(data, type(default)):
        return default
    return data
