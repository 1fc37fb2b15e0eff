"""Setup's folders outside any project (the user's cache, state and worker folders), and the one rule for what setup
keeps in them.

Setup remembers validated configs and no-op witnesses in ``$XDG_CACHE_HOME/planwise-setup``
(``~/.cache/...``), keeps its private key in ``$XDG_STATE_HOME/planwise-setup`` (``~/.local/state/...``)
and its warm dbt worker's socket, lock and log in ``$XDG_RUNTIME_DIR/planwise-setup`` (else
``$TMPDIR/planwise-setup-<uid>``; ``PLANWISE_SETUP_WORKER_DIR`` overrides). Those places may be shared
with other users (a shared ``XDG_CACHE_HOME``, /tmp, variables inherited after ``su``), so everything
setup reads or writes there goes through a ``UserFolder``:

- the folder must be the user's own, with no group or other access, and not a symlink (each level
  below the base is opened relative to the verified one); a folder that is not, or that setup cannot
  create, read or write, is not used at all: setup steps aside (no shortcut, no cache, no key kept)
  with one dim line saying so, and the run goes on;
- a file in it is trusted only when it is a regular file of the user's, not writable by group or
  others, never reached through a symlink; any other is ignored as absent (a line at ``-v 2``);
- files are written to a temporary name and renamed into place (0600), relative to the verified folder:
  a failed or killed write never leaves a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from .errors import cannot_write, one_line
from .files import PRIVATE, discarded, log, parse_json

BASE_NAME = "planwise-setup"
WORKER_DIR_ENV = "PLANWISE_SETUP_WORKER_DIR"
CACHE_ENV, STATE_ENV, RUNTIME_ENV = "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"
# What going without each folder costs a run (said once, when setup steps aside).
COSTS: Mapping[str, str] = {
    "cache": "no shortcut for runs with nothing to do, no remembered configs",
    "state": "no kept key: dbt's cached manifest is not reused and nodes reading env_var() count as changed",
    "worker": "dbt runs in this process",
}


class FolderUnusable(PermissionError):
    """One of setup's folders cannot be used: not the user's own, not private, a symlink, unreadable or unwritable."""


@dataclass(frozen=True)
class UserFolder:
    """One of setup's folders outside any project: ``base`` (created with its parents) and folders below it."""

    base: Path
    role: str  # "cache", "state" or "worker" (COSTS)
    setting: str  # the variable that moves it
    sub: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return self.base.joinpath(*self.sub)

    def child(self, name: str) -> "UserFolder":
        return UserFolder(self.base, self.role, self.setting, (*self.sub, name))

    # -- the folder --------------------------------------------------------------------------------

    def open(self, create: bool = True) -> int:
        """A descriptor of the folder, verified (the user's own, private, not a symlink), created 0700
        when missing and ``create``. FileNotFoundError when missing and not ``create``; FolderUnusable
        (with the reason, in words) when it cannot be used."""
        if create:
            try:
                self.base.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FolderUnusable(
                    f"setup's {self.role} folder {self.base} cannot be created: {_reason(exc)}"
                ) from None
        fd = _verified(None, self.base, create, self)
        for name in self.sub:
            try:
                child = _verified(fd, name, create, self)
            finally:
                os.close(fd)
            fd = child
        return fd

    def step_aside(self, reason: str, fix: str | None = None) -> None:
        """Say once per run (a dim line) that setup goes without this folder, and what that costs."""
        cause = f"{reason}: setup goes without it ({COSTS.get(self.role, 'no cache')})"
        log.warning("%s", one_line(cause, fix or self.fix()), extra={"once": f"folder:{self.base}"})

    def fix(self) -> str:
        if self.role == "worker" and os.environ.get(WORKER_DIR_ENV):
            return f"unset {WORKER_DIR_ENV} or set it to a folder of your own"
        return f"set {self.setting} to a folder of your own (one inherited after `su` is another user's)"

    @contextlib.contextmanager
    def opened(self, create: bool = True, quiet: bool = False) -> Iterator[int | None]:
        """The verified descriptor, or None (after saying why, unless ``quiet`` or merely absent)."""
        try:
            fd: int | None = self.open(create)
        except FileNotFoundError:
            fd = None
        except FolderUnusable as exc:
            if not quiet:
                self.step_aside(str(exc))
            fd = None
        except OSError as exc:
            if not quiet:
                self.step_aside(f"setup's {self.role} folder {self.path} cannot be used: {_reason(exc)}")
            fd = None
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    # -- its files ------------------------------------------------------------------------------------

    def read(self, name: str, *, secret: bool = False, quiet: bool = False) -> bytes | None:
        """The content of ``name``, or None when it is absent or cannot be trusted (noted for ``-v 2``).

        ``secret``: it must not be readable by group or others either (a key).
        """
        with self.opened(create=False, quiet=quiet) as fd:
            return None if fd is None else read_trusted(fd, name, self.path / name, secret=secret)

    def read_json(self, name: str, default: Any, *, version: int | None = None, quiet: bool = False) -> Any:
        """``files.read_json``'s answer for a file of this folder that passes the rule."""
        data = self.read(name, quiet=quiet)
        return default if data is None else parse_json(data, self.path / name, default, version)

    def write(self, name: str, data: bytes, *, durable: bool = False) -> None:
        """Replace ``name`` with ``data`` atomically (0600); OSError (FolderUnusable included) when it cannot."""
        fd = self.open(create=True)
        try:
            write_into(fd, name, data, durable=durable)
        finally:
            os.close(fd)

    def recalled(self, name: str, key: str) -> tuple[bool, Any]:
        """(True, the value) ``remember`` kept under ``key`` in the memo file ``name``; (False, None) when none."""
        entries = self.read_json(name, {}, quiet=True)
        return (True, entries[key]) if isinstance(entries, dict) and key in entries else (False, None)

    def remember(self, name: str, key: str, value: Any, kept: int) -> None:
        """Keep ``value`` (JSON) under ``key`` in the memo file ``name``, with the ``kept - 1`` others kept last
        (a cache: a folder setup cannot write keeps none)."""
        entries = self.read_json(name, {}, quiet=True)
        others = [(k, v) for k, v in entries.items() if k != key] if isinstance(entries, dict) else []
        self.save(name, json.dumps(dict([*others[-(kept - 1) :], (key, value)])).encode())  # oldest first

    def save(self, name: str, data: bytes) -> bool:
        """``write`` for a cache: a folder setup cannot write is stepped aside from (said once); False then."""
        try:
            self.write(name, data)
        except FolderUnusable as exc:
            self.step_aside(str(exc))
            return False
        except OSError as exc:  # a full disk, a read-only one: the fix that fits
            err = cannot_write(f"setup's {self.role} folder", self.path, exc, self.fix())
            self.step_aside(err.cause, err.fix)
            return False
        return True

    def remove(self, name: str) -> None:
        """Remove ``name`` when present; a folder setup cannot use has nothing of its own to remove."""
        with self.opened(create=False, quiet=True) as fd:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=fd)


@contextlib.contextmanager
def locked(fd: int) -> Iterator[None]:
    """An exclusive lock on a verified folder's descriptor (one repairer at a time); none where the
    file system has no locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def read_trusted(dir_fd: int, name: str, shown: Path, *, secret: bool = False, note: bool = True) -> bytes | None:
    """``name`` inside a verified folder, when it is a regular file of the user's that group and others cannot
    write (nor read, when ``secret``) and not a symlink; None otherwise (noted when ``note``, unless simply absent)."""
    say = discarded if note else (lambda path, why: None)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        say(shown, "a symbolic link" if exc.errno == errno.ELOOP else f"unreadable ({_reason(exc)})")
        return None
    problem = untrusted(os.fstat(fd), secret)
    if problem is not None:
        os.close(fd)
        say(shown, problem)
        return None
    with os.fdopen(fd, "rb") as fh:
        try:
            return fh.read()
        except OSError as exc:
            say(shown, f"unreadable ({_reason(exc)})")
            return None


def open_file(name: str, flags: int, dir_fd: int) -> int:
    """Open (or create, 0600) ``name`` inside a verified folder for writing, never through a symlink planted
    there; an existing file must be a regular file of the user's (FolderUnusable otherwise)."""
    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE, dir_fd=dir_fd)
    st = os.fstat(fd)
    if st.st_uid != os.getuid() or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FolderUnusable(f"{name} is not a regular file of yours")
    return fd


def untrusted(st: os.stat_result, secret: bool = False) -> str | None:
    """Why a file of setup's folders cannot be trusted (None when it can): the rule."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != os.getuid():
        return f"owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & (0o077 if secret else 0o022):
        return f"mode {stat.S_IMODE(st.st_mode):04o}: other users can {'read or ' if secret else ''}write it"
    return None


def write_into(dir_fd: int, name: str, data: bytes, *, durable: bool = False) -> None:
    """Write ``name`` in a verified folder: a temporary file of this process, renamed over it (0600)."""
    tmp = f".{name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)  # ours (same pid): left by an earlier failed write
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:  # a key must survive a crash right after it was made
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _verified(dir_fd: int | None, name: str | Path, create: bool, folder: UserFolder) -> int:
    """Open (creating 0700 when asked) and verify one level of a folder."""
    shown = folder.base if dir_fd is None else folder.path
    refused = "it does not exist"
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            pass
        except OSError as exc:
            refused = _reason(exc)
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise FolderUnusable(f"setup's {folder.role} folder {shown} cannot be created: {refused}") from None
            # it may exist all the same (a read-only file system, a parent not ours): look
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        if create:
            raise FolderUnusable(f"setup's {folder.role} folder {shown} cannot be created: {refused}") from None
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(name if dir_fd is None else shown):
            raise FolderUnusable(f"setup's {folder.role} folder {shown} is a symbolic link") from None
        try:  # another user's private folder: say whose
            problem = _problem(os.stat(name, dir_fd=dir_fd, follow_symlinks=False))
        except OSError:
            problem = None
        raise FolderUnusable(
            f"setup's {folder.role} folder {shown} {problem or f'cannot be read: {_reason(exc)}'}"
        ) from None
    problem = _problem(os.fstat(fd))
    if problem is not None:
        os.close(fd)
        raise FolderUnusable(f"setup's {folder.role} folder {shown} {problem}")
    return fd


def _problem(st: os.stat_result) -> str | None:
    """Why a folder of setup's is not the user's own and private (None when it is)."""
    if st.st_uid != os.getuid():
        return f"is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}: other users can use it (it must be 0700)"
    return None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _home_based(env: str, *default: str) -> Path:
    value = os.environ.get(env)
    return Path(value) if value and os.path.isabs(value) else Path.home().joinpath(*default)


def cache_folder() -> UserFolder:
    """``$XDG_CACHE_HOME/planwise-setup`` (``~/.cache/planwise-setup``): what only saves time."""
    return UserFolder(_home_based(CACHE_ENV, ".cache") / BASE_NAME, "cache", CACHE_ENV)


def state_folder() -> UserFolder:
    """``$XDG_STATE_HOME/planwise-setup`` (``~/.local/state/planwise-setup``): the user's key."""
    return UserFolder(_home_based(STATE_ENV, ".local", "state") / BASE_NAME, "state", STATE_ENV)


def worker_folder() -> UserFolder:
    """The warm worker's socket, lock and log: ``PLANWISE_SETUP_WORKER_DIR``, else
    ``$XDG_RUNTIME_DIR/planwise-setup``, else ``$TMPDIR/planwise-setup-<uid>``."""
    override = os.environ.get(WORKER_DIR_ENV)
    if override:
        return UserFolder(Path(override), "worker", WORKER_DIR_ENV)
    runtime = os.environ.get(RUNTIME_ENV)
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return UserFolder(Path(runtime) / BASE_NAME, "worker", RUNTIME_ENV)
    return UserFolder(Path(tempfile.gettempdir()) / f"{BASE_NAME}-{os.getuid()}", "worker", "TMPDIR")
