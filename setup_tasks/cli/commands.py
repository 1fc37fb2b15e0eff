"""The tasks that are commands rather than builds: `status`, `clear` (and `_clear_derived`), `graph`, `dbt`."""

from __future__ import annotations

import shlex
import sys
from typing import Any, Iterator, Mapping, Sequence

from doit import get_var
from doit.exceptions import TaskFailed

from ..engine.engine import Engine
from ..errors import PlanwiseError, one_line
from ..files import read_json
from ..naming import CLEAR_DERIVED_TASK
from ..project.context import dbt_context, with_project_census
from .app import App

# Each command's own modules (ops.status, ops.verify, ops.diagram, ops.clear, dbt.invoke) are imported when it
# runs: a `doit setup` that needs none of them does not pay for loading them.
from .doit_state import forget_in_run, task_values

TaskDict = dict[str, Any]


# -- status --------------------------------------------------------------------------------


def status_action(app: App) -> TaskFailed | None:
    from ..ops.status import collect_status

    status = collect_status(app.settings, app.engine, app.translator)
    print("\n".join(status.lines()))
    return None if status.ready else TaskFailed(f"not ready to set up: {status.reason}")


def status_task(app: App) -> TaskDict:
    app.guard_state()
    return {"actions": [app.action(status_action, app)], "verbosity": 2}


# -- clear ---------------------------------------------------------------------------------


def clear_action(app: App, engine: Engine) -> TaskFailed | None:
    from ..ops.clear import clear

    try:
        dropped, forgotten = clear(engine, forget_in_run, app.translator)
    except PlanwiseError as err:
        return TaskFailed(err.one_line())
    patterns = ", ".join(engine.settings.setup.clear_table_patterns)
    print(
        f"dropped {len(dropped)} table(s) and view(s) matching {patterns}"
        + (f": {', '.join(dropped)}" if dropped else "")
    )
    if forgotten:
        print(f"forgot {len(forgotten)} task(s), rebuilt by the next setup: {', '.join(forgotten)}")
    options, tables = engine.settings.setup, engine.database_contents(live=True).tables
    kept = sorted(".".join(key[1:]) for key in engine.built_by_others() if key in tables and options.matches(key[2]))
    if kept:
        print(f"kept {len(kept)} matching table(s) another project built: {', '.join(kept)}")
    return None


def clear_derived_action(app: App, engine: Engine) -> TaskFailed | None:
    if not engine.settings.setup.clear_tables:
        return None
    from ..ops.clear import clear_derived_tables

    try:
        dropped = clear_derived_tables(engine, forget_in_run, app.translator)
    except PlanwiseError as err:
        return TaskFailed(err.one_line())
    if dropped:
        print(f"dropped {len(dropped)} table(s) derived from inputs this run rebuilt: {', '.join(dropped)}")
    return None


def clear_tasks(app: App, engine: Engine) -> Iterator[TaskDict]:
    """The `clear` task, and `_clear_derived` (to run last in `setup`)."""
    yield {
        "basename": "clear",
        "doc": "Drop tables matching setup.clear_table_patterns and forget their builds: the next setup rebuilds them",
        "actions": [app.action(clear_action, app, engine)],
        "verbosity": 2,
    }
    yield {
        "basename": CLEAR_DERIVED_TASK,
        "doc": "With setup.clear_tables: drop simulation tables derived from inputs this run rebuilt",
        "actions": [app.action(clear_derived_action, app, engine)],
        "verbosity": 2,
    }


# -- graph ---------------------------------------------------------------------------------


def graph_action(app: App, engine: Engine, checks: list[Mapping[str, Any]], out_dir: str = "") -> TaskFailed | None:
    from ..ops.diagram import graph_paths, setup_diagram, write_graph
    from ..ops.status import node_statuses

    diagram = setup_diagram(engine, node_statuses(engine), app.translator, checks)
    try:
        mmd, dot = write_graph(engine, diagram, out_dir)
    except OSError as exc:
        return TaskFailed(
            one_line(
                f"cannot write the graph into {graph_paths(engine, out_dir)[0].parent}: {exc.strerror}",
                "pass a writable --dir",
            )
        )
    stale = sum(n.state == "stale" for n in diagram.nodes)
    print(f"{len(diagram.nodes)} nodes ({stale} stale), {len(diagram.edges)} edges")
    print(f"wrote {mmd}\nwrote {dot}")
    return None


def graph_task(app: App, engine: Engine, checks: Sequence[Mapping[str, Any]]) -> TaskDict:
    return {
        "actions": [app.action(graph_action, app, engine, checks)],
        "params": [
            {
                "name": "out_dir",
                "long": "dir",
                "type": str,
                "default": "",
                "help": "folder for the .mmd and .dot files (default: beside the database)",
            }
        ],
        "verbosity": 2,
    }


# -- dbt by hand ---------------------------------------------------------------------------

DBT_DOC = 'Run dbt with setup\'s project, profile, target, vars and database: doit dbt args="test --select my_test"'


def dbt_action(app: App) -> TaskFailed | None:
    """dbt's own command line, as by hand, with setup's context: works from the repository root."""
    given = get_var("args", "") or ""
    try:
        args = shlex.split(given)
    except ValueError as exc:  # an unclosed quote
        return TaskFailed(
            one_line(
                f"args={given} cannot be read as a command line: {exc}",
                'close the quote, e.g. doit dbt args="test --select my_test"',
            )
        )
    if not args:
        return TaskFailed(one_line("no dbt command given", 'name one, e.g. doit dbt args="test --select my_test"'))
    from ..dbt.invoke import InProcessDbt

    def on_phase(phase: str) -> None:  # dbt's import prints nothing for seconds: the live line says why
        if phase == "starting":
            app.live.show("starting dbt (importing it)")
        else:
            app.live.clear()

    ctx = dbt_context(with_project_census(app.settings))
    print(f"setup runs dbt {ctx.described(shlex.join(args))}", flush=True)  # what setup passes to dbt, as typed
    status = InProcessDbt().run_cli(ctx, args, colour=sys.stdout.isatty(), on_phase=on_phase)
    return (
        None if status == 0 else TaskFailed(f"`dbt {' '.join(args)}` exited with status {status} (dbt's lines above)")
    )


def dbt_task(app: App) -> TaskDict:
    return {"doc": DBT_DOC, "actions": [app.action(dbt_action, app)], "verbosity": 2}


# -- verify --------------------------------------------------------------------------------

VERIFY_DOC = (
    "Build the project with `dbt build` into a scratch database and compare it with setup's: exit 1 if they differ"
)


def verify_action(app: App, engine: Engine) -> TaskFailed | None:
    """setup's database against a fresh `dbt build` of the same files, relation by relation and test by test."""
    stale = [engine.label(u) for u in engine.setup_nodes if engine.status(u).stale]
    if stale:
        print(
            f"note: {len(stale)} node(s) are stale ({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}): "
            "run `doit setup` first to compare what it builds"
        )
    print("building the project with `dbt build` into a scratch database ...", flush=True)
    try:
        from ..ops.verify import verify_engine

        result = verify_engine(engine, setup_test_results(app, engine))
    except PlanwiseError as err:
        return TaskFailed(err.one_line())
    print("\n".join(result.lines()))
    return (
        None
        if result.equal
        else TaskFailed(
            f"setup's database differs from a fresh `dbt build` in {len(result.differences)} place(s) (listed above)"
        )
    )


def setup_test_results(app: App, engine: Engine) -> list[dict[str, Any]]:
    """Each check result of setup's last run (its report: failed ones too), else as the dbt_tests task last
    saved them."""
    path = engine.settings.report.path
    assert path is not None  # the engine knows the database file, so the report's (ReportSettings.for_database)
    report = read_json(path, {})
    checks = (report.get("validation") or {}).get("checks") if isinstance(report, dict) else None
    if isinstance(checks, dict) and checks:
        return [c for c in checks.values() if isinstance(c, dict)]
    values = task_values(engine.state_dir / "doit.sqlite", app.translator.check_task_name("dbt_tests"))
    return list(values.get("results") or [])


def verify_task(app: App, engine: Engine) -> TaskDict:
    return {"doc": VERIFY_DOC, "actions": [app.action(verify_action, app, engine)], "verbosity": 2}
