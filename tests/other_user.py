"""What root can do for a test: act as another local user (a forked child that drops to uid 65534), and mount a small
disk.

Root ignores file modes, so ownership cases need a second uid: the suite runs as root here, and
each such case runs its "other user" part in a forked child that calls ``os.setuid``. Without
root those tests are skipped with the reason. The child inherits what the parent imported; what
it returns (or the traceback it raised) comes back through a pipe, with the log lines setup said.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from tempdirs import short_temp_dir

NOBODY = 65534


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("acting as another local user needs root (os.setuid in a forked child)")


def _drop_to_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


class Said(logging.Handler):
    """The lines setup logged (``setup_tasks``), with their level names."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


def as_nobody(function: Callable[..., Any], *args: Any) -> tuple[Any, list[tuple[str, str]]]:
    """``function(*args)`` run as uid 65534 in a forked child: (what it returned, what setup logged).

    An exception in the child fails the test with the child's traceback (a traceback is a defect here).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        said = Said()
        logger = logging.getLogger("setup_tasks")
        logger.addHandler(said)
        logger.setLevel(logging.DEBUG)
        try:
            _drop_to_nobody()
            outcome: tuple[str, Any] = ("ok", function(*args))
        except BaseException:  # noqa: BLE001 - reported to the parent
            outcome = ("error", traceback.format_exc())
        try:
            data = pickle.dumps((outcome, said.lines))
        except Exception:  # noqa: BLE001
            data = pickle.dumps((("error", f"unpicklable result: {outcome!r}"), said.lines))
        with os.fdopen(write_end, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as got:
        data = got.read()
    os.waitpid(pid, 0)
    (kind, value), lines = pickle.loads(data)
    if kind == "error":
        pytest.fail(f"as uid {NOBODY}: {value}")
    return value, lines


def run_as_nobody(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A command run as uid 65534 (subprocess forks, then drops to that uid before it execs)."""
    return subprocess.run(cmd, user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, text=True, **kwargs)


def shared_dir(prefix: str = "pw-shared-") -> Path:
    """A folder like /tmp itself (1777), short (socket paths are limited): every user may create in it."""
    directory = short_temp_dir(prefix)
    os.chmod(directory, 0o1777)
    return directory


def nobodys(path: Path, mode: int = 0o700) -> Path:
    """``path`` (made when missing) given to uid 65534, with everything below it."""
    path.mkdir(parents=True, exist_ok=True)
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in (*dirs, *files))]:
            os.lchown(name, NOBODY, NOBODY)
    os.chmod(path, mode)
    return path


def roots(path: Path, mode: int = 0o700) -> Path:
    """``path`` (made when missing), root's own with ``mode``: another user's, to uid 65534."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "16k") mounted at ``path`` (made), unmounted after: a disk that fills.
    Skips the test where it cannot be mounted."""
    needs_root()
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
