"""`doit forget`, replacing doit's own: it also marks the builds of the forgotten seeds and models as forced.

doit's forget only clears a task's saved values, and a node built inside another task's
batched dbt run (or by a run that was interrupted) has none: forgetting it changed
nothing. A forced build record is a fact the engine reads like any other, so the next
setup builds every forgotten node, together with the rest, in its one dbt run.

Registered as an entry point (``doit.COMMAND``: in every repository once the package is
installed, a team's included), in pyproject.toml (``[tool.doit.plugins.command]``, for a
checkout) and passed explicitly by ``setup_tasks.api``. For a dodo file that is not setup's
it is doit's forget: no task of it has setup's up-to-date check. It imports nothing of setup but its pipe.
"""

from __future__ import annotations

from typing import Any, Iterable

from doit.cmd_forget import Forget as DoitForget

from .pipes import PipeSafe, pipe_safe

TABLE_TARGET = ("setup_tasks.cli.uptodate", "TableUpToDate")  # the up-to-date check of a seed or model task


def force_builds(tasks: Iterable[Any]) -> None:
    """Mark forced the build records of the node tasks among ``tasks`` (one write per engine)."""
    by_engine: dict[int, tuple[Any, list[str]]] = {}
    for task in tasks:
        for item, _, _ in task.uptodate:
            if (type(item).__module__, type(item).__name__) == TABLE_TARGET:
                by_engine.setdefault(id(item.engine), (item.engine, []))[1].append(item.unique_id)
    for engine, uids in by_engine.values():
        engine.force(uids)


class Forget(DoitForget):
    doc_purpose = "force tasks to run next time: clear their saved state, and mark seed and model builds forced"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outstream: PipeSafe = pipe_safe(self.outstream)  # `doit forget -a | head -1`

    def _execute(self, forget_sub: bool, forget_disable_default: bool, forget_all: bool) -> None:
        # doit decides which tasks a command line forgets (sub-tasks, -s, the defaults): learn
        # them as it removes them, rather than deciding again.
        named: list[str] = []
        remove = self.dep_manager.remove

        def removing(name: str) -> None:
            named.append(name)
            remove(name)

        self.dep_manager.remove = removing
        super()._execute(forget_sub, forget_disable_default, forget_all)
        force_builds(self.task_list if forget_all else [t for t in self.task_list if t.name in set(named)])
