"""The project one run works on, loaded once: its settings, then its engine (dbt parses the project when it
changed; its profile names the database), or the one-line reason it cannot load."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from doit.exceptions import InvalidDodoFile

from ..config import Settings, load_settings
from ..engine.engine import Engine
from ..engine.events import Listener
from ..engine.run_state import EngineOptions
from ..errors import PlanwiseError, cannot_write


class ProjectLoader:
    """Loads the run's settings and engine once; keeps why not when the project cannot load."""

    def __init__(
        self,
        config: str | Path | None,
        root: Path,
        settings: Settings | None,
        engine: Engine | None,
        options: EngineOptions,
        listener: Listener,
        loaded: Callable[[], None],
    ) -> None:
        self.config, self.root, self.options = config, root, options
        self.listener = listener  # told what the engine does (steps, progress), from its first step on
        self.loaded = loaded  # the load ended, done or not (the live line clears)
        self._settings = engine.settings if engine is not None else settings  # once the engine exists, its own
        self.current: Engine | None = engine
        self.error: PlanwiseError | None = None

    @property
    def settings(self) -> Settings:
        """The settings; a configuration problem is doit's one-line stop (InvalidDodoFile).

        Once the engine exists, the very object it uses: it names the database file dbt's profile writes.
        """
        if self._settings is None:
            try:
                self._settings = load_settings(self.config, root=self.root)
            except PlanwiseError as err:
                raise InvalidDodoFile(err.one_line()) from None
        return self._settings

    def engine(self) -> Engine:
        """The engine, made on first use; raises the PlanwiseError that keeps the project from loading."""
        if self.current is None:
            if self.error is not None:
                raise self.error
            try:
                self.current = Engine.open(self.settings, [self.listener], self.options)
                self._settings = self.current.settings  # the project's census and database resolved: one object
            except PlanwiseError as err:
                self.error = err
                raise
            except OSError as exc:  # a folder setup or dbt writes in (target/, .planwise/) refuses: one line
                place = Path(exc.filename) if exc.filename else self.root
                self.error = cannot_write(
                    "setup's files", place, exc, "run setup from a copy of the project in a folder you can write"
                )
                raise self.error from None
            finally:
                self.loaded()
        return self.current

    def engine_or_none(self) -> Engine | None:
        """The engine, or None when the project cannot be loaded (``error`` says why)."""
        try:
            return self.engine()
        except PlanwiseError:
            return None

    @property
    def leaves_no_files(self) -> bool:
        """A look at a database that does not exist: nothing may appear beside it.

        Unknown (False) while dbt's profile is yet to name the file: the engine reads it.
        """
        path = self.settings.database.path if self.options.looks_only else None
        return path is not None and not path.exists()

    def state_dir(self) -> Path:
        """Where doit's state file lives: with this project's build records for its database.

        The database is the file dbt's profile writes, so the engine (the project, parsed when it
        changed) comes first. A project that cannot load gets a folder of its own: its tasks only
        fail with the reason, and save nothing.
        """
        if self.current is not None:
            return self.current.state_dir
        settings = self.settings
        return (settings.state_dir if settings.database.path is not None else settings.root / ".planwise") / "unloaded"
