"""The one way setup writes its own files (atomically, privately) and reads them back (tolerantly). A leaf.

Setup's own files are caches and records it can rebuild: a damaged one (unreadable,
of the wrong shape, from another version) is treated as absent, with a note on the
``setup_tasks`` logger (shown by ``doit -v 2``), never as a crash. Files it writes
are created 0600 (they may hold sample rows, digests of secrets, dbt's manifest):
``O_EXCL | O_NOFOLLOW``, so a name planted in the directory is never written through.
A failed write leaves no temporary file behind; a killed one is swept by the next
writer (``sweep_temps``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("setup_tasks")

PRIVATE = 0o600
SHARED = 0o644  # files meant for people to open (diagrams): the umask still applies
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


# A file changed this recently may change again within its timestamp's granularity (a coarse
# clock tick; a second or two on network and FAT file systems) without its key changing.
RACY_NS = 2_000_000_000


def stat_key(st: os.stat_result) -> list[int]:
    """What changes whenever a file's content (a folder's entries) can have: ``touch -r`` restores
    the mtime but not the ctime (any write or utime sets it to now), a file replaced by another has
    a new inode."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def path_key(path: str | Path) -> list[int] | None:
    """``stat_key`` of what is at ``path`` now (following links), None when nothing is."""
    try:
        return stat_key(os.stat(path))
    except (OSError, ValueError):
        return None


def temp_path(path: Path) -> Path:
    """The temporary name ``path`` is written under before it replaces the file."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_atomic(path: Path, write: Callable[[Any], None], mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.unlink(missing_ok=True)  # ours (same pid): left by an earlier failed write
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """Write ``path`` so that readers see the old or the new file, never half of one.

    No fsync: this guards against a killed process, not a lost machine, and
    fsync per node would cost more than the node itself.
    """
    _write_atomic(path, lambda fh: fh.write(data), mode)


def write_text_atomic(path: Path, text: str, mode: int = PRIVATE) -> None:
    """Text twin of ``write_bytes_atomic`` (JSON lines, diagrams)."""
    write_bytes_atomic(path, text.encode("utf-8"), mode)


def json_text(data: Any) -> str:
    """How setup writes JSON: keys sorted, one per line (people open these files)."""
    return json.dumps(data, indent=1, sort_keys=True, default=str)


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON twin of ``write_bytes_atomic``."""
    write_text_atomic(path, json_text(data))


def read_text(path: Path) -> str | None:
    """A small file's text, None when it cannot be read (missing, a folder, not UTF-8)."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def discarded(path: Path, why: str) -> None:
    """Note (for ``-v 2``) that one of setup's own files was ignored and will be rebuilt."""
    log.info("discarded %s: %s; it is rebuilt", path, why)


def read_json(path: Path, default: Any, *, version: int | None = None) -> Any:
    """The file's JSON, or ``default`` when it is missing, unreadable or not of ``default``'s type.

    With ``version``, a JSON object whose ``"version"`` differs is discarded too.
    Anything discarded (other than a missing file) is noted on the logger.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return default
    except OSError as exc:
        discarded(path, f"unreadable ({type(exc).__name__})")
        return default
    return parse_json(data, path, default, version)


def parse_json(data: bytes, path: Path, default: Any, version: int | None = None) -> Any:
    """``read_json``'s answer for the bytes ``data`` read from ``path``."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        discarded(path, f"unreadable ({type(exc).__name__})")
        return default
    if default is not None and not isinstance(parsed, type(default)):
        discarded(path, f"a JSON {type(parsed).__name__}, not a {type(default).__name__}")
        return default
    if version is not None and isinstance(parsed, dict) and parsed.get("version") != version:
        discarded(path, f"version {parsed.get('version')!r}, not {version}")
        return default
    return parsed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def sweep_temps(directory: Path, name: str | None = None) -> list[Path]:
    """Remove temporary files (``.<name>.<pid>.tmp``) of writers that died (kill -9) in ``directory``.

    Only ``name``'s when given. A live writer's file is never touched: its pid is alive.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_RE.match(entry.name)
        if not match or (name is not None and match["name"] != name):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or pid_alive(pid):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700, and take group and other access
    away from it when it already exists and is ours (dbt and doit write with default modes)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    except OSError:
        pass
