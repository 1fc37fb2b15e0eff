"""`doit info <task>` and `doit list`, replacing doit's: in words, never a Python repr or a traceback.

doit's info prints each up-to-date check's repr with its call arguments
(``TableUpToDate(...) (args=[], kwargs={})``), pprints ``meta``, raises KeyError for a task
name it does not know, and exits 1 whenever the task would run: a ``set -e`` script that
asks about a stale task stops there. For a setup dodo file this command says why a task
will run in the words its checks give (``in_words``), what it runs after, and what its
``meta`` holds, and exits 0 whenever it could answer; an unknown task is doit's one-line
command-line error (exit 3, documented by doit) with the names it may have meant. For any
other dodo file it is doit's own info, with the unknown task caught the same way.

Both commands write through ``cli.pipes`` (`doit list | head -1` ends quietly). Registered
like ``cli.forget`` (entry points, pyproject.toml's [tool.doit.plugins]); they import nothing
of setup but the pipe, the json reporter's test of a setup task and the wording of errors.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Sequence

from doit.cmd_info import Info as DoitInfo
from doit.cmd_list import List as DoitList
from doit.exceptions import InvalidCommand

from ..errors import one_line

from .json_reporter import is_setup_task
from .pipes import PipeSafe, pipe_safe


def unknown_task(name: str, known: Iterable[str]) -> InvalidCommand:
    """doit's command-line error for a task name it does not know, with the likeliest ones meant."""
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    meant = f"; did you mean {' or '.join(close)}?" if close else ""
    return InvalidCommand(one_line(f"{name!r} is not a task{meant}", "`doit list` shows every task"))


def words(item: Any) -> str:
    """An up-to-date check or a meta value as the user reads it: its own words, else its text."""
    said = getattr(item, "in_words", None)
    return said() if callable(said) else str(item)


class Info(DoitInfo):
    doc_purpose = "show a task: what it does, whether it will run and why (in words), what it runs after"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outstream: PipeSafe = pipe_safe(self.outstream)

    def _execute(self, pos_args: list[str], hide_status: bool = False) -> int:
        tasks = {t.name: t for t in self.task_list}
        if len(pos_args) != 1:
            example = "setup" if "setup" in tasks else next((t for t in sorted(tasks) if not t.startswith("_")), "")
            raise InvalidCommand(
                one_line(f"`doit info` shows one task, {len(pos_args)} given", f"name one, e.g. doit info {example}")
            )
        name = pos_args[0]
        if name not in tasks:
            raise unknown_task(name, tasks)
        if not any(is_setup_task(t) for t in self.task_list):
            return int(super()._execute(pos_args, hide_status))
        write = self.outstream.write
        task = tasks[name]
        write(f"{task.name}\n")
        if task.doc:
            write(f"  {task.doc}\n")
        if not hide_status:
            write(f"\n{'status':10} {self.status_words(task, tasks)}\n")
        self.lines("runs after", [t for t in task.task_dep if not t.startswith("_")])  # not doit's bookkeeping
        for key, value in (task.meta or {}).items():
            self.lines(key, value if isinstance(value, (list, tuple)) else [words(value)])
        options = [f"--{p['long']}" for p in (task.params or []) if p.get("long")]
        self.lines("options", [", ".join(options)] if options else [])
        return 0  # it answered: a task that will run is no error (doit documents no exit status for info)

    def status_words(self, task: Any, tasks: dict[str, Any]) -> str:
        """'up to date', or 'will run: <why, from each check that says so>'."""
        status = self.dep_manager.get_status(task, tasks, get_log=True)
        if status.status == "up-to-date":
            return "up to date"
        if status.status == "error":
            return f"cannot tell: {status.get_error_message()}"
        reasons = status.reasons or {}
        why = [words(check) for check, _, _ in reasons.get("uptodate_false") or ()]
        if reasons.get("has_no_dependencies"):
            why.append("it runs whenever it is asked (it has nothing to check)")
        for key in ("changed_file_dep", "missing_file_dep", "added_file_dep", "removed_file_dep", "missing_target"):
            why += [f"{key.replace('_', ' ')}: {item}" for item in reasons.get(key) or ()]
        return "will run: " + ("; ".join(why) if why else "forgotten, or never run")

    def lines(self, title: str, items: Sequence[Any]) -> None:
        """``title`` and its items, one a line, under each other."""
        for index, item in enumerate(items):
            self.outstream.write(f"{title if index == 0 else '':10} {item}\n")


class List(DoitList):
    doc_purpose = DoitList.doc_purpose

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outstream: PipeSafe = pipe_safe(self.outstream)
