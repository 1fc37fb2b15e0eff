"""What a dodo file exposes to doit: DOIT_CONFIG and the task creators of one App.

Light at import: a no-op command line is answered by ``cli.shortcut`` before the
rest of setup (settings, engine, tasks) is imported.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .pipes import pipe_safe
from .shortcut import answer_if_unchanged

if TYPE_CHECKING:
    from .app import App


def namespace(app: "App", reporter: type | None = None) -> dict[str, Any]:
    """DOIT_CONFIG and the task creators of ``app``, as a dodo module's namespace: the app opens first (its
    engine loads the project, which names the database beside which doit's state goes)."""
    from .reporter import reporter_for
    from .tasks import TaskCreators

    app.open()
    return {"DOIT_CONFIG": app.doit_config(reporter or reporter_for(app)), **TaskCreators(app).creators()}


def dodo_namespace(dodo_file: str | Path | None = None) -> dict[str, Any]:
    """What dodo.py exposes to doit, for a command-line run (`doit setup config=path.yaml`).

    Paths resolve against the folder of ``dodo_file`` (the repository it sits in: its
    setup.yaml, its dbt project), wherever doit runs from (``-f``, ``-k``, ``-d``); without
    it, against the working directory. A no-op answers from its witness and ends here.
    """
    started = time.perf_counter()
    sys.stdout = pipe_safe(sys.stdout)  # `doit setup | head -1`: the run goes on when the reader has gone
    root = Path(os.path.abspath(dodo_file)).parent if dodo_file is not None else None
    answer_if_unchanged(root or Path.cwd(), started)
    from doit import get_var

    from .app import App
    from .command_line import only_looks

    app = App(get_var("config"), mode="cli", root=root, read_only=only_looks(sys.argv[1:]))
    app.started = started
    return namespace(app)
