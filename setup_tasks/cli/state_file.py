"""doit's state file of one run: placed with the project's build records (private folders), in a scratch folder
when a look must leave nothing beside a database not built yet, moved aside when damaged; a write of it the disk
refuses is one line and exit 1, never a traceback."""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import PlanwiseError, cannot_write
from ..files import log, make_private_dir, sweep_temps
from .doit_state import as_os_error, damage, guard_writes, move_aside


def private_folders(state_dir: Path) -> list[Path]:
    """The state folder and those above it up to ``.planwise`` (or its parent), outermost first."""
    chain = [state_dir]
    while chain[-1].name != ".planwise" and chain[-1].parent != chain[-1] and len(chain) < 4:
        chain.append(chain[-1].parent)
    return chain[::-1]


class DoitStateFile:
    """Where doit keeps its state in this run, and what becomes of a write of it the disk refuses."""

    def __init__(self, folder: Callable[[], Path]) -> None:
        self.folder = folder  # where it lives: with this project's build records for its database (``App.state_dir``)
        self.path: Path | None = None  # doit's dep_file, once placed
        self.error: PlanwiseError | None = None  # doit's state could not be written
        self._scratch: Path | None = None

    def guard(self) -> None:
        """Inside a doit command: a write of doit's state the disk refuses becomes ``error``."""
        guard_writes(self.write_failed)

    def write_failed(self, exc: Exception) -> None:
        """doit could not write its state (disk full, read-only): one line, and the run ends with exit 1."""
        if self.error is not None:
            return
        path = self.path or self.folder() / "doit.sqlite"
        self.error = cannot_write(
            "doit's state", path, as_os_error(exc, path), "set database.path (or DUCKDB_PATH) to a writable location"
        )
        sys.stdout.flush()
        sys.stderr.write(f"error: {self.error.one_line()}\n")
        sys.stderr.flush()

    def place(self, leaves_no_files: bool, halt: Callable[[PlanwiseError], None] | None) -> Path:
        """doit's state file: with the project's records beside the database, or (a look at a
        database not built yet, whose state file does not exist either) in a scratch folder
        removed when the run ends. ``halt``: how a run that builds stops when the folder refuses."""
        state_dir = self.folder()
        if leaves_no_files and not (state_dir / "doit.sqlite").exists():
            self.path = self._scratch_state()
            return self.path
        try:
            for folder in private_folders(state_dir):
                make_private_dir(folder)
        except OSError as exc:
            # A folder the user cannot write: a look still looks (status says why setup cannot run);
            # anything else ends at its first task, with this one line and exit 1.
            error = cannot_write(
                "setup's state folder",
                state_dir,
                exc,
                "set database.path (or DUCKDB_PATH) to a file in a folder you can write",
            )
            if halt is not None:
                halt(error)
            self.path = self._scratch_state()
            return self.path
        sweep_temps(state_dir)  # left by a run killed while writing
        self.path = self._dep_file(state_dir)
        return self.path

    def _dep_file(self, state_dir: Path) -> Path:
        """doit's state file, moved aside first when it is damaged (its tasks then count as forgotten)."""
        path = state_dir / "doit.sqlite"
        problem = damage(path)
        if problem is None:
            return path
        try:
            aside = move_aside(path)
        except OSError as exc:
            scratch = tempfile.mkdtemp(prefix="planwise-doit-")
            atexit.register(shutil.rmtree, scratch, True)
            fresh = Path(scratch) / "doit.sqlite"
            log.warning(
                "doit's state %s is damaged (%s) and cannot be moved aside (%s): this run uses an empty one, "
                "so every task counts as forgotten",
                path,
                problem,
                exc.strerror,
            )
            return fresh
        log.warning(
            "doit's state %s was damaged (%s): moved aside to %s; its tasks count as forgotten and rebuild",
            path,
            problem,
            aside.name,
        )
        return path

    def _scratch_state(self) -> Path:
        """doit's state file in a scratch folder removed when the run ends (nothing left beside the database)."""
        self._scratch = Path(tempfile.mkdtemp(prefix="planwise-look-"))
        return self._scratch / "doit.sqlite"

    def remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
