"""The user's private key: keyed digests of secret values, and sealed (authenticated) cache files.

A digest of an environment variable's value kept on disk (a fingerprint part, the parse
stamp) must not let anyone who reads the file test guesses of the value, and a cache
file setup loads with pickle must be one setup itself wrote. Both use a 32-byte random
key kept in ``$XDG_STATE_HOME/planwise-setup/key`` (``~/.local/state/...``), read and
written through ``user_folders`` (the user's own, private folder; a file of the user's
that no one else can read). A missing, empty, short or untrusted key is replaced with a
new one written to a temporary file and renamed, one process at a time; when none can be
kept (another user's folder, a full disk), the process uses a key of its own and says
what that costs, in the run that hit it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from pathlib import Path

from .errors import cannot_write, one_line
from .files import discarded, log
from .user_folders import FolderUnusable, UserFolder, locked, read_trusted, state_folder, write_into

KEY_BYTES = 32
KEY_NAME = "key"
SEAL_MAGIC = b"planwise-sealed-1\n"


def key_path() -> Path:
    return state_folder().path / KEY_NAME


def user_key() -> bytes:
    """The user's key (created on first use)."""
    return _key(str(key_path()))


@functools.lru_cache(maxsize=4)
def _key(path: str) -> bytes:
    folder = state_folder()
    try:
        return _load_or_create(folder)
    except FolderUnusable as exc:
        folder.step_aside(str(exc))
    except OSError as exc:
        err = cannot_write("setup's private key", path, exc, f"set {folder.setting} to a folder of your own")
        cause = (
            f"{err.cause}: this run does not reuse dbt's cached manifest, and nodes reading env_var() count as changed"
        )
        log.warning("%s", one_line(cause, err.fix))
    return os.urandom(KEY_BYTES)


def _valid(key: bytes | None) -> bool:
    return key is not None and len(key) == KEY_BYTES


def _load_or_create(folder: UserFolder) -> bytes:
    """The key in ``folder``; a missing or damaged one is replaced (temporary file, then rename)."""
    directory = folder.open(create=True)
    shown = folder.path / KEY_NAME
    try:
        key = read_trusted(directory, KEY_NAME, shown, secret=True)
        if _valid(key):
            return key  # type: ignore[return-value]
        with locked(directory):  # one repairer: the others read what it wrote
            key = read_trusted(directory, KEY_NAME, shown, secret=True, note=False)
            if _valid(key):
                return key  # type: ignore[return-value]
            if key is not None:
                discarded(shown, f"{len(key)} bytes, not a key of {KEY_BYTES}")
            key = os.urandom(KEY_BYTES)
            write_into(directory, KEY_NAME, key, durable=True)
            return key
    finally:
        os.close(directory)


def keyed_digest(*parts: str, length: int = 16) -> str:
    """An HMAC-SHA256 of ``parts`` under the user's key (hex, ``length`` characters)."""
    message = "\0".join(parts).encode("utf-8", "surrogatepass")
    return hmac.new(user_key(), message, hashlib.sha256).hexdigest()[:length]


def seal(purpose: str, payload: bytes) -> bytes:
    """``payload`` with a header authenticating it (for ``purpose``) under the user's key."""
    tag = hmac.new(user_key(), purpose.encode() + b"\0" + payload, hashlib.sha256).digest()
    return SEAL_MAGIC + tag + payload


def unseal(purpose: str, data: bytes) -> bytes | None:
    """The payload of sealed ``data``, or None when it was not sealed by this user for ``purpose``."""
    if not data.startswith(SEAL_MAGIC):
        return None
    body = data[len(SEAL_MAGIC) :]
    tag, payload = body[:32], body[32:]
    expected = hmac.new(user_key(), purpose.encode() + b"\0" + payload, hashlib.sha256).digest()
    return payload if hmac.compare_digest(tag, expected) else None
