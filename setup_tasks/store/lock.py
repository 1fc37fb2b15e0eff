"""The run lock: one building setup run per database at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from ..errors import RunInProgressError, cannot_write


class RunLock:
    """An exclusive lock on a database's state: one building setup run at a time.

    The OS releases it when the process dies, so a crash never leaves it stuck.
    """

    def __init__(self, path: Path, database: Path) -> None:
        self.path = path
        self.database = database
        self._fh: Any = None

    def holder(self) -> int | None:
        """PID of the process holding the lock, or None when it is free (or ours)."""
        if self._fh is not None:
            return None
        try:
            with self.path.open("r") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    text = fh.read().strip()
                    pid = int(text) if text.isdigit() else -1
                    return None if pid == os.getpid() else pid
                fcntl.flock(fh, fcntl.LOCK_UN)
        except FileNotFoundError:
            return None
        return None

    def acquire(self) -> None:
        if self._fh is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a+")
        except OSError as exc:
            raise self._unwritable(exc) from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            fh.close()
            raise RunInProgressError(str(self.database), int(text) if text.isdigit() else None) from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        except OSError as exc:
            fh.close()
            raise self._unwritable(exc) from None
        self._fh = fh

    def _unwritable(self, exc: OSError) -> Exception:
        return cannot_write(
            "the setup state directory",
            self.path.parent,
            exc,
            "set database.path (or DUCKDB_PATH) to a writable location",
        )

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
