"""User-facing errors: one base class, each message names the thing and the fix.

A problem found but not (yet) raised is a ``Problem`` value; ``one_line`` is the one place either is worded.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Self


def one_line(cause: str, fix: str = "") -> str:
    """What the user sees of a problem: ``<cause> -- fix: <fix>``, the cause alone when there is no fix."""
    return f"{cause} -- fix: {fix}" if fix else cause


@dataclass(frozen=True)
class Problem:
    """A failure the user can act on, as a value: a one-line cause and the fix (``PlanwiseError.of`` raises it)."""

    cause: str
    fix: str = ""

    def one_line(self) -> str:
        return one_line(self.cause, self.fix)

    def __str__(self) -> str:
        return self.one_line()

    def about(self, subject: str) -> Problem:
        """The same problem, its cause preceded by what it is about: ``seed levels: <cause>``."""
        return Problem(f"{subject}: {self.cause}", self.fix)


class PlanwiseError(Exception):
    """A failure the user can act on: a one-line cause and the fix.

    ``str(error)`` is what the user sees: ``<cause> -- fix: <fix>``.
    Raised while defining tasks (bad config, bad project); returned as a task
    failure while running.
    """

    exit_code = 1

    def __init__(self, cause: str, fix: str = "") -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(self.one_line())

    @classmethod
    def of(cls, problem: Problem) -> Self:
        """The error to raise for a problem found earlier."""
        return cls(problem.cause, problem.fix)

    @property
    def problem(self) -> Problem:
        return Problem(self.cause, self.fix)

    def one_line(self) -> str:
        return one_line(self.cause, self.fix)


class ConfigError(PlanwiseError):
    """The setup configuration file or an environment override is invalid."""


class ProjectError(PlanwiseError):
    """The dbt project cannot be read or parsed."""


class GraphCycleError(ProjectError):
    """The dbt dependency graph has a cycle."""

    def __init__(self, path: list[str]) -> None:
        self.path = path
        super().__init__(
            "dependency cycle in the dbt project: " + " --> ".join(path),
            "remove one of these ref()/source() dependencies",
        )


class DatabaseError(PlanwiseError):
    """The DuckDB database cannot be opened or written."""


class DatabaseUnopenable(DatabaseError):
    """The database file cannot be opened at all (locked, not a DuckDB file, unreadable): no build of it can
    work in this run, whoever builds it."""


class DatabaseLockedError(DatabaseUnopenable):
    """Another process holds the DuckDB write lock (``fix``: what to do about that holder)."""

    def __init__(self, path: str, holder: str, fix: str = "") -> None:
        self.path = path
        self.holder = holder
        super().__init__(
            f"database {path} is locked by {holder}",
            fix or "close that connection (notebook, IDE, another dbt run) and run again",
        )


class RunInProgressError(PlanwiseError):
    """Another planwise-setup run is already building this database."""

    def __init__(self, path: str, pid: int | None) -> None:
        who = f"PID {pid}" if pid else "another process"
        super().__init__(
            f"another setup run ({who}) is already building {path}",
            "wait for it to finish; nothing was changed by this run",
        )


class ProfileError(PlanwiseError):
    """dbt's profile does not work with DuckDB: a setting, an extension or the connection config it names."""


class CensusError(PlanwiseError):
    """The census file is missing or does not meet the contract."""


class WriteError(PlanwiseError):
    """Setup cannot write one of its files, or the database: disk full, read-only, no permission."""


def cannot_write(what: str, path: str | Path, exc: OSError, elsewhere: str) -> WriteError:
    """One line for an OSError raised writing ``what`` at ``path``: the cause, and the fix its errno calls for.

    ``elsewhere`` is the other way out (``set database.path elsewhere``).
    """
    place = Path(path)  # not exc.filename: that may be the temporary file the write went to
    folder = place if place.is_dir() else place.parent
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free space on the disk holding {folder} (nothing was lost), or {elsewhere}"
    elif exc.errno == errno.EROFS:
        fix = f"{folder} is on a read-only file system: mount it writable, or {elsewhere}"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        fix = f"make {folder} writable for you, or {elsewhere}"
    else:
        fix = elsewhere
    return WriteError(f"cannot write {what} {place}: {reason}", fix)


class PackagesError(PlanwiseError):
    """`dbt deps` could not install the project's packages (no network, a bad entry)."""
