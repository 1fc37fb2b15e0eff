"""The user's private key: keyed digests of secret values, and sealed (authenticated) cache files.

A digest of an environment variable's value kept on disk (a fingerprint part, the parse
stamp) must not let anyone who reads the file test guesses of the value, and a cache
file setup loads with pickle must be one setup itself wrote. Both use a 32-byte random
key kept in ``$XDG_STATE_HOME/planwise-setup/key`` (``~/.local/state/...``), created
0600 in a 0700 directory and used only when it is the user's own and private. When it
cannot be kept, the process uses a key of its own and says what that costs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from pathlib import Path

from .files import NotPrivate, log, open_private_dir, open_private_file

KEY_BYTES = 32
SEAL_MAGIC = b"planwise-sealed-1\n"


def key_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "planwise-setup" / "key"


def user_key() -> bytes:
    """The user's key (created on first use)."""
    return _key(str(key_path()))


@functools.lru_cache(maxsize=4)
def _key(path: str) -> bytes:
    try:
        return _load_or_create(Path(path))
    except (OSError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, (NotPrivate, ValueError)) else exc.strerror or str(exc)
        log.warning(
            "setup's private key cannot be kept at %s (%s): this run does not reuse dbt's cached manifest, "
            "and nodes reading env_var() count as changed -- fix: set XDG_STATE_HOME to a private directory "
            "you can write", path, reason)
        return os.urandom(KEY_BYTES)


def _load_or_create(path: Path) -> bytes:
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    directory = open_private_dir(path.parent)
    try:
        try:
            fd = open_private_file(path.name, os.O_RDONLY, directory)
        except FileNotFoundError:
            try:
                fd = open_private_file(path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, directory)
            except FileExistsError:  # another process made it meanwhile
                fd = open_private_file(path.name, os.O_RDONLY, directory)
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(os.urandom(KEY_BYTES))
                fd = open_private_file(path.name, os.O_RDONLY, directory)
        with os.fdopen(fd, "rb") as fh:
            if os.fstat(fh.fileno()).st_mode & 0o077:
                raise NotPrivate(f"{path} can be read by other users")
            key = fh.read(KEY_BYTES + 1)
    finally:
        os.close(directory)
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} does not hold a key of {KEY_BYTES} bytes")
    return key


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
    body = data[len(SEAL_MAGIC):]
    tag, payload = body[:32], body[32:]
    expected = hmac.new(user_key(), purpose.encode() + b"\0" + payload, hashlib.sha256).digest()
    return payload if hmac.compare_digest(tag, expected) else None
