"""The live line at the bottom of a terminal: what the run is doing now, and for how long (nothing when piped).

One per run (``App.live``), so the steps before doit's reporter exists (starting dbt,
parsing the project) and the reporter's progress share it. A ticker thread redraws
it every half second while a step lasts; every other output goes through ``write``,
which clears the line first and draws it again after.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import threading
import time
from typing import Any

TICK = 0.5


def seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 60 else f"{int(value // 60)}m{value % 60:04.1f}s"


def terminal_width(default: int = 80) -> int:
    return shutil.get_terminal_size((default, 24)).columns


def summary_lines(tally: str, elapsed: float, lines: list[str]) -> list[str]:
    """The closing lines of a run: its tally and how long it took, then the validation lines."""
    return [f"summary: {tally} in {seconds(elapsed)}", *lines]


def wrap(text: str, first: str, rest: str, width: int | None, first_width: int | None = None) -> str:
    """``first`` + ``text``, wrapped at word boundaries to ``width`` (None: one line, as piped output is)."""
    lead = len(first) if first_width is None else first_width
    if width is None or lead + len(text) < width:
        return first + text
    lines = textwrap.wrap(text, width=max(width - 1 - lead, 20), break_on_hyphens=False) or [""]
    return first + f"\n{rest}".join(lines)


class Style:
    """ANSI styling, or none when the output is not a terminal (or NO_COLOR is set)."""

    CODES = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1"}

    def __init__(self, stream: Any) -> None:
        self.enabled = bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ

    def __call__(self, text: str, style: str) -> str:
        return f"\033[{self.CODES[style]}m{text}\033[0m" if self.enabled else text


class LiveLine:
    """One line that says what is happening, rewritten in place; ``enabled`` only on a terminal."""

    def __init__(self, stream: Any, enabled: bool, colour: bool = True, mark: str = "…") -> None:
        self.stream = stream
        self.enabled = enabled
        self.mark = f"\033[33m{mark}\033[0m" if colour else mark
        self.text: str | None = None
        self.since = 0.0
        self.drawn = False
        self.lock = threading.RLock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def show(self, text: str, since: float | None = None) -> None:
        """Say what is happening; elapsed time counts from ``since`` (default: now, a new step)."""
        if not self.enabled:
            return
        with self.lock:
            self.text = text
            self.since = time.perf_counter() if since is None else since
            self._draw()
        self._tick()

    def clear(self) -> None:
        """The step ended: the line goes."""
        with self.lock:
            self.text = None
            self._erase()

    def write(self, text: str) -> None:
        """Print ``text`` (whole lines) above the live line."""
        with self.lock:
            self._erase()
            self.stream.write(text)
            if self.text is not None:
                self._draw()
            self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        self.clear()

    def _draw(self) -> None:
        if self.text is None:
            return
        line = f"{self.text} {seconds(time.perf_counter() - self.since)}"
        width = terminal_width() - 3  # the mark, a space, and the last column left free
        if len(line) > width:
            line = line[: max(width - 1, 0)] + "…"
        self.stream.write(f"\r\033[K{self.mark} {line}")
        self.stream.flush()
        self.drawn = True

    def _erase(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.drawn = False

    def _tick(self) -> None:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._run, name="live-line", daemon=True)
            self._ticker.start()

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            with self.lock:
                if self.text is not None:
                    self._draw()
