"""Content proofs: what a stat key cannot prove of a file changed within one clock tick. A leaf.

A stat key (``files.stat_key``) changes with every write, except a second write within the
timestamp's granularity of the first that keeps the size (``files.RACY_NS``). A file that
changed that recently is proven unchanged later by its bytes instead: its digest, a folder's
by its entries' names, and a DuckDB file (which may be gigabytes) by its headers and WAL
(``database_proof``). Each proof is ``[kind, digest]``; ``proof_of`` takes one of a kind.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# DuckDB's file header (its magic at offset 8) and its two database headers, 4 KiB each: every checkpoint
# rewrites one of the two (its iteration counter goes up); what is not checkpointed yet is in the WAL.
_HEADERS_BYTES, _MAGIC_AT, _MAGIC = 3 * 4096, 8, b"DUCK"
_BLOCK = 1 << 20

FILE, FOLDER, DATABASE = "file", "folder", "duckdb"


def file_digest(path: str | Path) -> str:
    """A digest of the file's bytes (raises OSError when it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()[:20]


def database_proof(path: str | Path) -> str | None:
    """A digest of the database's headers and its whole WAL: equal digests prove the content unchanged
    where stat keys cannot (a write within the same clock tick keeps them). None when the file cannot be
    read or is not a DuckDB file of the known layout."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADERS_BYTES)
        if len(head) < _HEADERS_BYTES or head[_MAGIC_AT : _MAGIC_AT + len(_MAGIC)] != _MAGIC:
            return None
        digest = hashlib.sha256(head)
        try:
            with open(f"{path}.wal", "rb") as fh:
                for chunk in iter(lambda: fh.read(_BLOCK), b""):
                    digest.update(chunk)
        except FileNotFoundError:
            digest.update(b"no wal")
    except OSError:
        return None
    return digest.hexdigest()


def proof_of(path: str | Path, kind: str) -> str | None:
    """The proof of ``kind`` of what is at ``path`` now; None when there is nothing of that kind to read."""
    try:
        if kind == DATABASE:
            return database_proof(path)
        if kind == FOLDER:
            names = sorted(os.listdir(path))
            return hashlib.sha256("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest()[:20]
        return file_digest(path) if kind == FILE else None
    except OSError:
        return None


def kind_of(path: str | Path) -> str:
    """A folder's proof is its entries; a file's, its bytes."""
    return FOLDER if os.path.isdir(path) else FILE
