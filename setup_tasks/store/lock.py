"""The run lock: one building setup run per database at a time, and no build while another run reads it.

Two lock files in the state directory. ``run.lock`` is held exclusively by the run that builds (its PID
written in it). ``run.lock.readers`` is held shared by every setup run while it reads the database and
exclusively by the builder once it writes: DuckDB refuses a writer while any other process has the file
open, even read-only, so a build waits for the runs still reading (they see its ``run.lock`` and stop
short of building) instead of failing on DuckDB's lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO, Any

from ..errors import RunInProgressError, cannot_write
from ..files import log

READERS_WAIT_S = 60.0  # how long a build waits for other setup runs to stop reading the database
_PROBE_RETRIES = 20  # another run's holder() probe holds run.lock shared for microseconds: not a builder
_POLL_S = 0.01


class ReadersStayError(RunInProgressError):
    """Other setup runs kept reading the database for as long as a build waits for them."""

    def __init__(self, path: str) -> None:
        super(RunInProgressError, self).__init__(
            f"another setup run is still reading {path} after {READERS_WAIT_S:.0f} s",
            "wait for it to finish, then run again; nothing was changed by this run",
        )


def _try_lock(fh: IO[Any], operation: int) -> bool:
    try:
        fcntl.flock(fh, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """An exclusive lock on a database's state (one building setup run at a time), and the readers' lock.

    The OS releases both when the process dies, so a crash never leaves them stuck.
    """

    def __init__(self, path: Path, database: Path, readers_wait: float = READERS_WAIT_S) -> None:
        self.path = path
        self.readers_path = path.with_name(path.name + ".readers")
        self.database = database
        self.readers_wait = readers_wait
        self._fh: Any = None
        self._readers: Any = None  # run.lock.readers, held shared (reading) or exclusively (building)

    def holder(self) -> int | None:
        """PID of the process holding the lock, or None when it is free (or ours)."""
        if self._fh is not None:
            return None
        try:
            with self.path.open("r") as fh:
                if not _try_lock(fh, fcntl.LOCK_SH):
                    text = fh.read().strip()
                    pid = int(text) if text.isdigit() else -1
                    return None if pid == os.getpid() else pid
                fcntl.flock(fh, fcntl.LOCK_UN)
        except FileNotFoundError:
            return None
        return None

    def share(self) -> None:
        """Before this run opens the database: no setup run is building it, and none starts to until this
        run releases its lock (or builds itself). Raises RunInProgressError while one builds."""
        if self._fh is not None or self._readers is not None:
            return
        self._refuse_if_held()
        try:  # no state folder: no run has built here yet (one that starts makes it), and a look leaves none
            fh = self.readers_path.open("a+")
        except OSError:  # no state folder yet, or one this user cannot write: read without telling builders
            return
        if not _try_lock(fh, fcntl.LOCK_SH):  # a builder took it since we looked
            fh.close()
            self._refuse_if_held(default=True)
        self._readers = fh

    def _refuse_if_held(self, default: bool = False) -> None:
        holder = self.holder()
        if holder or default:
            raise RunInProgressError(str(self.database), holder if holder and holder > 0 else None)

    def acquire(self) -> None:
        """Become the building run: refused while another run builds; waits for the runs reading."""
        if self._fh is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a+")
        except OSError as exc:
            raise self._unwritable(exc) from None
        for _ in range(_PROBE_RETRIES):
            if _try_lock(fh, fcntl.LOCK_EX):
                break
            time.sleep(_POLL_S)
        else:
            fh.seek(0)
            text = fh.read().strip()
            fh.close()
            self._release_readers()  # this run stops short of building: the builder need not wait for it
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
        try:
            self._exclude_readers()
        except BaseException:
            self.release()
            raise

    def _exclude_readers(self) -> None:
        try:
            readers = self._readers or self.readers_path.open("a+")
        except OSError as exc:
            raise self._unwritable(exc) from None
        self._readers = readers
        if _try_lock(readers, fcntl.LOCK_EX):
            return
        log.warning("waiting for another setup run to stop reading %s", self.database)
        deadline = time.monotonic() + self.readers_wait
        while time.monotonic() < deadline:
            time.sleep(_POLL_S * 5)
            if _try_lock(readers, fcntl.LOCK_EX):
                return
        raise ReadersStayError(str(self.database))

    def _unwritable(self, exc: OSError) -> Exception:
        return cannot_write(
            "the setup state directory",
            self.path.parent,
            exc,
            "set database.path (or DUCKDB_PATH) to a writable location",
        )

    def _release_readers(self) -> None:
        if self._readers is not None:
            fcntl.flock(self._readers, fcntl.LOCK_UN)
            self._readers.close()
            self._readers = None

    def release(self) -> None:
        self._release_readers()
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
