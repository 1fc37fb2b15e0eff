"""How a command-line run ends: the run report written, caches saved, the no-op's witness left.

At the process's exit (``at_exit``, registered by ``cli.lifecycle``) or when an interrupt outside any
action ends it now (``last_words``); the Python API writes its report itself (``write_report``).
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Mapping, Protocol

from ..engine.engine import Engine
from ..errors import PlanwiseError
from ..naming import Translator
from ..ops.run_report import report_run
from .live import LiveLine
from .state_file import DoitStateFile
from .witnessing import Run, WitnessKeeper


class EndingRun(Run, Protocol):
    """What the end of a run reads and writes of it (``cli.app.App``)."""

    translator: Translator
    tally: str | None
    live: LiveLine
    witness: WitnessKeeper
    doit_state: DoitStateFile

    @property
    def current_engine(self) -> Engine | None: ...

    @property
    def check_results(self) -> Mapping[str, Any]: ...


def write_report(app: EndingRun, exit_code: int | None = None) -> None:
    """Write the run report of a process that ran tasks (not of `list`, `info`, ...)."""
    engine = app.current_engine
    if engine is None or app.read_only:
        return
    try:
        app.report = report_run(
            engine,
            app.check_results,
            app.translator,
            interrupted=app.interrupted,
            exit_code=exit_code,
            tally=app.tally,
        )
    except PlanwiseError as err:
        sys.stderr.write(f"warning: {err.one_line()}\n")


def at_exit(app: EndingRun) -> None:
    """The process ends: the live line closed, the report written, caches saved, the witness left."""
    app.live.close()
    write_report(app, app.exit_status())
    engine = app.current_engine
    if engine is not None:
        engine.save_caches()  # after the report: it asks the graph too
        engine.db.close_reader()
        app.witness.leave(app)
    app.doit_state.remove_scratch()
    # The run is over and what needed closing is closed: the interpreter's last collection, over every
    # object the run made (manifest, fingerprints, tasks), would cost a tenth of a check's time.
    gc.freeze()


def last_words(app: EndingRun, status: int) -> None:
    """An interrupt outside any action ends the process now: the live line closed, the report written."""
    app.live.close()
    write_report(app, status)
