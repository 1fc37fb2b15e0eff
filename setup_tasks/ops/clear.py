"""Dropping tables: `doit clear`, and derived simulation tables made stale by a setup run.

Both drop what ``setup.clear_table_patterns`` matches: views first (DuckDB does not
track what reads a view, so nothing refuses), then tables, each before the tables
its foreign keys reference. Dropping a table setup builds also forgets its build
(the engine's record and doit's saved values), so the next setup rebuilds it. A
table another dbt project sharing the database built last (its build records say
so) is that project's: never dropped here, whatever its name.
"""

from __future__ import annotations

from typing import Callable, Iterable

from ..engine.engine import Engine
from ..errors import DatabaseError
from ..naming import Translator
from ..store.database import DbRelation, DropResult
from .run_report import task_names


ForgetTask = Callable[[str], None]


def forget(engine: Engine, dropped: Iterable[DbRelation], forget_task: ForgetTask, translator: Translator) -> list[str]:
    """Forget the builds of the nodes whose tables were dropped; returns their task names."""
    keys = {rel.key for rel in dropped}
    names = task_names(engine, translator)
    uids = sorted(
        uid
        for uid in names
        if engine.node(uid).relation is not None and engine.node(uid).relation.key() in keys  # type: ignore[union-attr]  # relation checked in the condition
    )
    engine.records.drop(uids)
    for uid in uids:
        forget_task(names[uid])
    return [names[uid] for uid in uids]


def drop_failure(result: DropResult) -> DatabaseError | None:
    if not result.failed:
        return None
    rel, message = sorted(result.failed.items(), key=lambda item: item[0].key)[0]
    others = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
    return DatabaseError(
        f"cannot drop {rel}{others}: {message}",
        "drop the tables that reference it by foreign key, or leave it out of setup.clear_table_patterns",
    )


def clear_matching(
    engine: Engine, wanted: Callable[[DbRelation], bool], forget_task: ForgetTask, translator: Translator
) -> tuple[list[str], list[str]]:
    """Drop the wanted relations and forget their builds; returns (dropped, forgotten tasks).

    Builds of tables that were dropped are forgotten even when another drop failed.
    """
    result = engine.drop_tables(wanted)
    forgotten = forget(engine, result.dropped, forget_task, translator)
    failure = drop_failure(result)
    if failure is not None:
        raise failure
    return [str(r) for r in result.dropped], forgotten


def clear(engine: Engine, forget_task: ForgetTask, translator: Translator) -> tuple[list[str], list[str]]:
    """`doit clear`: every table and view the patterns match, but those another project built last."""
    options, theirs = engine.settings.setup, engine.built_by_others()
    return clear_matching(
        engine, lambda rel: options.matches(rel.name) and rel.key not in theirs, forget_task, translator
    )


def clear_derived_tables(engine: Engine, forget_task: ForgetTask, translator: Translator) -> list[str]:
    """Drop tables the patterns match that setup does not build, when this run rebuilt an input.

    Such tables (simulation output: int_*, fct_*) were derived from the old inputs.
    When nothing was rebuilt they are still current and are kept, and so are the
    tables another dbt project built into the same database. Returns the dropped
    names (schema.table).
    """
    if not any(outcome.ok for outcome in engine.run.outcomes.values()):
        return []
    built = {engine.node(u).relation.key() for u in engine.setup_nodes if engine.node(u).relation is not None}  # type: ignore[union-attr]  # relation checked in the condition
    built |= {key for keys in engine.other_projects_tables().values() for key in keys}
    options = engine.settings.setup
    return clear_matching(
        engine, lambda rel: options.matches(rel.name) and rel.key not in built, forget_task, translator
    )[0]
