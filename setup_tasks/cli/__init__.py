"""The doit layer: the app object of a run, the task creators, up-to-date checks and the reporter.

A dodo file needs one call::

    from setup_tasks.cli import dodo_namespace
    globals().update(dodo_namespace())
"""

from __future__ import annotations

import sys
from typing import Any

from doit import get_var

from .app import App, only_looks
from .reporter import reporter_for
from .tasks import TaskCreators


def namespace(app: App, reporter: type | None = None) -> dict[str, Any]:
    """DOIT_CONFIG and the task creators of ``app``, as a dodo module's namespace."""
    return {"DOIT_CONFIG": app.doit_config(reporter or reporter_for(app)), **TaskCreators(app).creators()}


def dodo_namespace() -> dict[str, Any]:
    """What dodo.py exposes to doit, for a command-line run (`doit setup config=path.yaml`)."""
    return namespace(App(get_var("config"), mode="cli", read_only=only_looks(sys.argv[1:])))
