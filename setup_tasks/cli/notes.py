"""Setup's own notes on the terminal: records of the ``setup_tasks`` logger, shown as dim lines.

The layers below the CLI say what they did about setup's own machinery through the
standard logging module: a damaged cache discarded and rebuilt (INFO, shown by
``doit -v 2``), dbt run in this process instead of the warm worker or a wait for a
busy worker, a folder of setup's it goes without (WARNING, shown from ``-v 1``). The
command line shows them through the reporter once it runs, on stderr before that; ``-v 0``
shows none. A note logged with ``extra={"once": key}`` is shown once per run.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

LOGGER = "setup_tasks"


def cli_verbosity(argv: Sequence[str], default: int = 1) -> int:
    """doit's -v/--verbosity from a command line (doit does not hand it to reporters)."""
    for i, arg in enumerate(argv):
        if arg in ("-v", "--verbosity") and i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
        if arg.startswith("--verbosity="):
            return int(arg.split("=", 1)[1] or default)
        if arg.startswith("-v") and arg[2:].isdigit():
            return int(arg[2:])
    return default


class NoteHandler(logging.Handler):
    """Hands each record's one-line message to ``show``."""

    def __init__(self, show: Callable[[str], None], verbosity: int) -> None:
        super().__init__(logging.INFO if verbosity >= 2 else logging.WARNING if verbosity == 1 else logging.CRITICAL)
        self.show = show
        self.shown: set[str] = set()  # the "once" keys of notes shown in this run

    def emit(self, record: logging.LogRecord) -> None:
        once = getattr(record, "once", None)
        if once is not None:
            if once in self.shown:
                return
            self.shown.add(once)
        try:
            self.show(" ".join(record.getMessage().split()))
        except Exception:
            self.handleError(record)


def show_notes(show: Callable[[str], None], verbosity: int) -> NoteHandler:
    """Send the ``setup_tasks`` logger's notes to ``show`` (for this process's command-line run)."""
    logger = logging.getLogger(LOGGER)
    handler = NoteHandler(show, verbosity)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler
