"""What a doit command line asks of setup: whether it only looks, the run options wherever they stand (before
or after the task name), and whether doit has the reporter it names."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Mapping, Sequence

from doit.exceptions import InvalidDodoFile

from ..errors import one_line

from .notes import cli_verbosity

# doit's own run options, which people also put after the task name (`doit setup -v 2`):
# the group tasks accept them as task options, and the app reads them from the command line.
RUN_OPTIONS: tuple[Mapping[str, Any], ...] = (
    {
        "name": "verbosity",
        "short": "v",
        "long": "verbosity",
        "type": int,
        "default": None,
        "help": "as doit's -v before the task name: 0 errors only, 2 also dbt's own lines",
    },
    {
        "name": "continue",
        "short": "c",
        "long": "continue",
        "type": bool,
        "default": False,
        "help": "as doit's --continue: keep building what does not depend on a failed node",
    },
    {
        "name": "reporter",
        "short": "r",
        "long": "reporter",
        "type": str,
        "default": "",
        "help": "as doit's --reporter, e.g. json",
    },
)
# doit commands and setup tasks that only look: on a database that does not exist yet they
# leave nothing behind (no state folder, no doit state file, no caches, no report).
READ_ONLY_COMMANDS = frozenset({"list", "info", "help", "dumpdb", "tabcompletion"})
READ_ONLY_TASKS = frozenset({"status", "graph", "verify"})
# doit's own reporters (doit/cmd_run.py); plugins add theirs through entry points.
DOIT_REPORTERS = ("console", "executed-only", "json", "zero", "error-only")
# doit options (and the graph task's) that take the next argument as their value.
VALUE_OPTIONS = frozenset(
    {
        "-v",
        "--verbosity",
        "-n",
        "--process",
        "-P",
        "--parallel-type",
        "--reporter",
        "-r",
        "-o",
        "--output-file",
        "-f",
        "--file",
        "-d",
        "--dir",
        "--db-file",
        "--backend",
        "--dep-file",
        "--check_file_uptodate",
        "--seek-file",
    }
)


def only_looks(args: Sequence[str]) -> bool:
    """Does this doit command line only look (list, info, status, graph), never build or forget?"""
    words = [a for a in args if a.startswith("-") or "=" not in a]  # name=value are doit's variables
    if words and words[0] in READ_ONLY_COMMANDS:
        return True
    if words and words[0] == "run":
        words = words[1:]
    tasks, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in VALUE_OPTIONS
        else:
            tasks.append(word)
    return bool(tasks) and set(tasks) <= READ_ONLY_TASKS


def check_reporter(name: str | None) -> None:
    """A --reporter doit does not have is doit's one-line stop (doit itself fails with a KeyError traceback)."""
    if not name:
        return
    known = set(DOIT_REPORTERS) | {entry.name for entry in entry_points(group="doit.REPORTER")}
    if name not in known:
        raise InvalidDodoFile(
            one_line(
                f"there is no reporter {name!r}",
                f"use one of {', '.join(sorted(known))} (e.g. --reporter json), or leave --reporter out",
            )
        )


@dataclass(frozen=True)
class CommandLine:
    """The doit options of a command line that setup acts on, wherever they stand (before or after the task)."""

    verbosity: int | None = None
    keep_going: bool = False
    reporter: str | None = None

    @classmethod
    def parse(cls, argv: Sequence[str]) -> "CommandLine":
        keep_going, reporter = False, None
        args = list(argv)
        verbosity = cli_verbosity(args, -1)
        for i, arg in enumerate(args):
            following = args[i + 1] if i + 1 < len(args) else ""
            if arg in ("-c", "--continue"):
                keep_going = True
            elif arg in ("-r", "--reporter") and following:
                reporter = following
            elif arg.startswith("--reporter="):
                reporter = arg.split("=", 1)[1]
        return cls(None if verbosity < 0 else verbosity, keep_going, reporter)
