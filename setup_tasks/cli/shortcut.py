"""The no-op shortcut: `doit setup` answers from the witness of the last full check when nothing it read changed.

A no-op is the run people make most, and a full check of one loads the settings,
the manifest, fingerprints and doit's task graph only to find every task up to
date. The run that finds that leaves a witness (``store.witness``: the stat key of
everything its checks read, the environment, the command line); this module, run
first by dodo.py, compares it with the files now and, when nothing changed, says
what that run said, writes the run report and history line (marked ``shortcut``)
and ends the process, before doit loads a task. Anything else -- a changed key,
another command line, a setup run holding the database -- goes the full way.

Only the command lines a no-op is made with take it: `doit`, `doit setup`,
`doit quick` (``run`` before them or not), started by doit itself. Nothing here
imports more than the standard library and setup's leaves: it runs on every
`doit` in the project folder. ``PLANWISE_SETUP_SHORTCUT=0`` turns it off.
"""

from __future__ import annotations

import os
import site
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import PlanwiseError
from ..ops.history import iso, write_report_files
from ..store.lock import RunLock
from ..store.records import new_build_id
from ..store.witness import Witness, WitnessStore, environment_digest, fill_slots, run_context
from .live import Style, summary_lines, terminal_width, wrap

SHORTCUT_ENV = "PLANWISE_SETUP_SHORTCUT"  # "0": every run checks in full
NO_OP_COMMANDS = frozenset({(), ("setup",), ("quick",), ("run",), ("run", "setup"), ("run", "quick")})
CODE_SUFFIXES = (".py", ".json")


def launched_by_doit() -> bool:
    """Is this process doit's command line (``doit ...`` or ``python -m doit ...``)?"""
    program = sys.argv[0] if sys.argv else ""
    return os.path.basename(program) == "doit" or program.endswith(os.path.join("doit", "__main__.py"))


def eligible(argv: Sequence[str]) -> bool:
    """May this command line answer from a witness (and leave one)?"""
    return tuple(argv) in NO_OP_COMMANDS and launched_by_doit() and os.environ.get(SHORTCUT_ENV, "1") != "0"


def code_paths(root: Path) -> Iterator[Path]:
    """What decides how a run checks, besides its inputs: setup's own modules and folders (built-in
    checks are found by listing one), every other module loaded from outside the installed packages
    (a team's check modules), the dodo file, doit's configuration files, and the folders packages
    are installed in (an upgrade changes them)."""
    package = Path(__file__).resolve().parent.parent
    for folder, names, files in os.walk(package):
        names[:] = [n for n in names if n != "__pycache__"]
        yield Path(folder)
        yield from (Path(folder) / f for f in files if f.endswith(CODE_SUFFIXES))
    # Installed code (the interpreter's and its packages'): the folders above stand for it.
    # (Not sysconfig: computing its paths costs 0.1 s.)
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, site.USER_SITE or sys.prefix}
    installed = tuple(os.path.join(p, "") for p in prefixes)
    for module in list(sys.modules.values()):
        file = module_file(module)
        if isinstance(file, str) and os.path.isabs(file) and not file.startswith(installed):
            yield Path(file)
    yield from (root / "dodo.py", root / "pyproject.toml", root / "doit.cfg")
    cwd = Path.cwd()
    if cwd != root:
        yield from (cwd / "dodo.py", cwd / "pyproject.toml", cwd / "doit.cfg")
    # Not the dodo's folder doit puts first on sys.path: the run report is written there. What
    # it could add to a run is a module that shadows one the run imports: those names are watched.
    yield from shadowing_paths({root, cwd})
    yield from (
        Path(p) for p in sys.path if p and os.path.isdir(p) and Path(p).resolve() not in (root.resolve(), cwd.resolve())
    )


def shadowing_paths(folders: set[Path]) -> Iterator[Path]:
    """Where a module, package or bytecode-only module would shadow one this process imported, in
    ``folders`` (first on sys.path): absent now, any of them appearing changes what a run imports.
    Python's bytecode cache (``__pycache__``) is no such path: it is checked against its source."""
    names = sorted({name.partition(".")[0] for name in list(sys.modules)} - set(sys.builtin_module_names))
    for folder in sorted(folders):
        for name in names:
            yield from (folder / f"{name}.py", folder / f"{name}.pyc", folder / name)


def module_file(module: object) -> object:
    """A module's ``__file__``, read without loading a lazily imported one (store.database's duckdb: any
    attribute asked of it the usual way loads it, 40 ms of a run that never needed it)."""
    try:
        return object.__getattribute__(module, "__dict__").get("__file__")
    except (AttributeError, TypeError):
        return getattr(module, "__file__", None)


def usable_witness(root: Path, argv: Sequence[str]) -> Witness | None:
    """The witness of this command line when it still holds, else None."""
    if not eligible(argv):
        return None
    witness = WitnessStore.for_root(root).get(argv)
    if witness is None or witness.void_reason(run_context(argv), environment_digest(os.environ)) is not None:
        return None
    # A setup run holding the database may be building: the full way waits for it or says so.
    return None if RunLock(Path(witness.lock_path), Path(witness.lock_path)).holder() is not None else witness


def answer(witness: Witness, started: float, started_wall: float) -> int:
    """Say what the witnessed run said, and report this run as it would have: exit status 0."""
    width = terminal_width() if Style(sys.stdout).enabled else None
    ended = time.time()
    run = {
        "run_id": new_build_id(),
        "started": iso(started_wall),
        "ended": iso(ended),
        "seconds": round(ended - started_wall, 3),
        "exit_code": 0,
        "shortcut": {"witness_of": witness.run_id, "paths_unchanged": len(witness.keys)},
    }
    history = {**witness.history, **{k: v for k, v in run.items() if k in witness.history}}
    try:
        write_report_files(
            fill_slots(witness.report, run), history, Path(witness.report_path), Path(witness.history_path)
        )
    except PlanwiseError as err:
        sys.stderr.write(f"warning: {err.one_line()}\n")
    said = witness.said
    lines = summary_lines(str(said.get("tally", "")), time.perf_counter() - started, list(said.get("lines", [])))
    sys.stdout.write("".join(wrap(line, "", "  ", width) + "\n" for line in lines))
    sys.stdout.flush()
    return 0


def answer_if_unchanged(root: Path, started: float) -> None:
    """End the process here with the witness's answer when nothing changed; return to run the full way otherwise."""
    started_wall = time.time() - (time.perf_counter() - started)
    try:
        witness = usable_witness(root, sys.argv[1:])
        if witness is None:
            return
        code = answer(witness, started, started_wall)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted: nothing was built; run the same command again\n")
        code = 130
    sys.exit(code)
