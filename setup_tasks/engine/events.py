"""Who watches one engine's run: its listeners (steps, progress, nodes built), and where dbt's own lines go."""

from __future__ import annotations

from typing import Any, Callable, Iterable

Listener = Callable[[str, dict[str, Any]], None]


class Events:
    """Tells the run's listeners what the engine does; dbt's own lines go to the one sink that asked for them."""

    def __init__(self, listeners: Iterable[Listener], starting_words: Callable[[], str]) -> None:
        self.listeners = list(listeners)
        self.starting_words = starting_words  # what dbt's start is called (``DbtClient.starting_words``)
        self.log: Callable[[str], None] | None = None  # takes dbt's own lines (-v 2); else dbt says nothing

    def listen(self, listener: Listener, dbt_lines: Callable[[str], None] | None = None) -> None:
        """``listener`` hears what the run does from now on; ``dbt_lines`` (doit -v 2) takes dbt's own lines."""
        self.listeners.append(listener)
        if dbt_lines is not None:
            self.log = dbt_lines

    @property
    def quiet(self) -> bool:
        """dbt keeps its own lines to itself: nobody asked for them."""
        return self.log is None

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(kind, payload)

    def step(self, text: str | None) -> None:
        """A step that may take a while begins (what it is, in words), or ends (None)."""
        self.emit("step", {"text": text})

    def phase(self, phase: str) -> None:
        """dbt's side of a step: "starting" (dbt is being loaded, seconds)."""
        if phase == "starting":
            self.step(self.starting_words())

    def progress(self, text: str, done: int, total: int) -> None:
        """Part of a step done: 'running 135 dbt tests', 40 of 135."""
        self.emit("progress", {"text": text, "done": done, "total": total})
