"""Leftover tables retired: those this project built that none of its nodes builds now (and no other project
claims) are dropped, the records of retired nodes forgotten, and the schemas setup created left empty dropped."""

from __future__ import annotations

from .events import Events
from .intents import WriteIntents
from .view import StateView


class Retirement:
    """Drops what this project's nodes no longer build, and forgets it."""

    def __init__(self, view: StateView, intents: WriteIntents, events: Events) -> None:
        self.view = view
        self.intents = intents
        self.events = events

    def retire_leftovers(self) -> list[str]:
        """Drop the leftover tables of this run's scope; forget the builds of retired nodes;
        drop the schemas setup created that are left empty.

        Returns the dropped tables. A table another node now builds (same name) is
        kept. A drop the database refuses keeps its record, so the next run tries again.
        """
        view = self.view
        self.intents.restore_aside()
        retired = view.staleness.retired_nodes()
        leftovers = view.leftover_tables(view.run.scope)
        dropped: list[str] = []
        if leftovers:
            result = view.contents.drop(lambda rel: rel.key in leftovers)
            dropped = [str(rel) for rel in result.dropped]
            for rel, message in sorted(result.failed.items(), key=lambda item: item[0].key):
                retired.discard(leftovers[rel.key])
                self.events.emit(
                    "warning", {"message": f"cannot drop {view.leftover_label(leftovers[rel.key], rel.key)}: {message}"}
                )
        if retired:
            view.records.drop(sorted(retired))
        self._drop_empty_schemas()
        view.run.retired.extend(dropped)
        if dropped:
            self.events.emit("retired", {"tables": dropped})
        return dropped

    def _drop_empty_schemas(self) -> None:
        empty, gone = self.view.staleness.empty_schemas()
        if empty:
            gone += self.view.contents.drop_empty_schemas(empty)
        self.view.records.forget_schemas(gone)
