"""doit's own state file (its dependency manager): forgetting a task's saved values, and keeping the file healthy.

doit opens its state file before any of setup's code runs and writes it when tasks
fail and when the run closes. A damaged file (truncated, garbage) is moved aside
before doit opens it: its tasks then count as forgotten, which rebuilds them and never
loses a table. A write the disk refuses (full, read-only) goes to the app as one line
instead of ending the run with a traceback.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def forget_in_run(task_name: str) -> None:
    """Forget a task inside a running doit command (as `doit forget` would)."""
    from doit import Globals

    if Globals.dep_manager is not None:
        Globals.dep_manager.remove(task_name)


@contextmanager
def _read_only(path: Path) -> Iterator[Any]:
    """doit's state file opened for reading only (never created, never written), closed after."""
    import sqlite3

    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield con
    finally:
        con.close()


def saved_values(path: Path) -> dict[str, str] | None:
    """A digest of doit's saved values of each task; None when the file cannot be read.

    What the no-op witness (``store.witness``) compares of doit's state: a run's own bookkeeping
    tasks rewrite their rows every time, a `doit forget` from another terminal must void it.
    """
    import hashlib
    import sqlite3

    try:
        with _read_only(path) as con:
            rows = con.execute("SELECT task_id, task_data FROM doit").fetchall()
    except (sqlite3.Error, OSError, ValueError):
        return None
    return {
        str(task_id): hashlib.sha256(repr(data).encode("utf-8", "surrogatepass")).hexdigest() for task_id, data in rows
    }


def task_values(path: Path, task_name: str) -> dict[str, Any]:
    """The values doit saved for ``task_name`` at its last success (empty when none or unreadable)."""
    import json
    import sqlite3

    try:
        with _read_only(path) as con:
            row = con.execute("SELECT task_data FROM doit WHERE task_id = ?", (task_name,)).fetchone()
        data = json.loads(row[0]) if row else {}
    except (sqlite3.Error, OSError, ValueError):
        return {}
    values = data.get("_values_:") if isinstance(data, dict) else None
    return values if isinstance(values, dict) else {}


def damage(path: Path) -> str | None:
    """Why doit's sqlite state file cannot be read (``file is not a database``...), or None when it can
    (or is missing, or cannot be opened for reasons other than its content)."""
    import sqlite3

    if not path.is_file():
        return None
    try:
        with _read_only(path) as con:
            (result,) = con.execute("PRAGMA quick_check").fetchone()
            if result == "ok":
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:  # locked, unreadable: not a matter of its content
        return None
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if result == "ok" else str(result)


def move_aside(path: Path) -> Path:
    """Rename a damaged state file out of doit's way (kept for whoever wants to look at it)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():  # moved aside twice in one second: keep both
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.replace(path, aside)
    for suffix in ("-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return aside


class _GuardedBackend:
    """doit's state backend, with writes the disk refuses handed to ``on_error``."""

    def __init__(self, backend: Any, on_error: Callable[[Exception], None]) -> None:
        self._backend = backend
        self._on_error = on_error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def _guard(self, name: str, *args: Any) -> None:
        import sqlite3

        try:
            getattr(self._backend, name)(*args)
        except (sqlite3.Error, OSError) as exc:
            self._on_error(exc)

    def dump(self) -> None:
        self._guard("dump")

    def remove(self, task_id: str) -> None:
        self._guard("remove", task_id)

    def remove_all(self) -> None:
        self._guard("remove_all")


def guard_writes(on_error: Callable[[Exception], None]) -> None:
    """Inside a doit command: send the state file's refused writes to ``on_error`` (once per command)."""
    from doit import Globals

    manager = Globals.dep_manager
    if manager is None or isinstance(manager.backend, _GuardedBackend):
        return
    manager.backend = _GuardedBackend(manager.backend, on_error)
    manager.remove = manager.backend.remove
    manager.remove_all = manager.backend.remove_all


def as_os_error(exc: Exception, path: Path) -> OSError:
    """An sqlite3 write error as the OSError it stands for (disk full, read-only), to phrase its fix."""
    import errno

    if isinstance(exc, OSError):
        return exc
    text = str(exc).lower()
    if "full" in text:
        code = errno.ENOSPC
    elif "readonly" in text or "read-only" in text:
        try:
            read_only = bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        code = errno.EROFS if read_only else errno.EACCES
    else:
        return OSError(errno.EIO, str(exc), str(path))
    return OSError(code, os.strerror(code), str(path))
