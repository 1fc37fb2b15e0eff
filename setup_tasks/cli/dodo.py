"""What a dodo file exposes to doit: DOIT_CONFIG and the task creators of one App."""

from __future__ import annotations

import os
from pathlib import Path
import sys
from typing import Any

from doit import get_var

from .app import App, only_looks
from .reporter import reporter_for
from .tasks import TaskCreators


def namespace(app: App, reporter: type | None = None) -> dict[str, Any]:
    """DOIT_CONFIG and the task creators of ``app``, as a dodo module's namespace."""
    return {"DOIT_CONFIG": app.doit_config(reporter or reporter_for(app)), **TaskCreators(app).creators()}


def dodo_namespace(dodo_file: str | Path | None = None) -> dict[str, Any]:
    """What dodo.py exposes to doit, for a command-line run (`doit setup config=path.yaml`).

    Paths resolve against the folder of ``dodo_file`` (the repository it sits in: its
    setup.yaml, its dbt project), wherever doit runs from (``-f``, ``-k``, ``-d``); without
    it, against the working directory.
    """
    root = Path(os.path.abspath(dodo_file)).parent if dodo_file is not None else None
    return namespace(App(get_var("config"), mode="cli", root=root, read_only=only_looks(sys.argv[1:])))
