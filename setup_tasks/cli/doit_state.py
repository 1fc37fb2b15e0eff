"""doit's own state file (its dependency manager): the one place that reads or forgets a task's saved values."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

ValuesOf = Callable[[str], Mapping[str, Any]]


def values_in_run(task_name: str) -> Mapping[str, Any]:
    """doit's saved values of a task, inside a running doit command."""
    from doit import Globals

    manager = Globals.dep_manager
    return (manager.get_values(task_name) or {}) if manager is not None else {}


def forget_in_run(task_name: str) -> None:
    """Forget a task inside a running doit command (as `doit forget` would)."""
    from doit import Globals

    if Globals.dep_manager is not None:
        Globals.dep_manager.remove(task_name)


@contextmanager
def saved_values(doit_config: Mapping[str, Any]) -> Iterator[ValuesOf]:
    """doit's saved values read from its state file, outside a doit command (the Python API)."""
    from doit.dependency import DbmDB, Dependency, JsonDB, SqliteDB

    path = Path(doit_config["dep_file"])
    if not path.exists():
        yield lambda name: {}
        return
    backend = {"sqlite3": SqliteDB, "json": JsonDB, "dbm": DbmDB}[doit_config.get("backend", "dbm")]
    dep = Dependency(backend, str(path))
    try:
        yield lambda name: dep.get_values(name) or {}
    finally:
        dep.close()
