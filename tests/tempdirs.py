"""Private temporary folders for the suite: under TMPDIR, as every test's files are."""

from __future__ import annotations

import tempfile
from pathlib import Path

# A Unix socket's path holds at most 107 bytes; setup's worker names its socket inside the folder it is given.
SOCKET_BASE_LIMIT = 40


def short_temp_dir(prefix: str) -> Path:
    """A new private folder under TMPDIR, or under /tmp when TMPDIR's path is too long for a worker's
    socket in it (the one place the suite does not follow TMPDIR)."""
    base = tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base if len(base) <= SOCKET_BASE_LIMIT else "/tmp"))
