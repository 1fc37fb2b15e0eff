"""Standard output that outlives its reader: `doit setup | head -1` finishes the run instead of a traceback.

A reader that exits early (``head``, a pager quit) closes the pipe, and every later write
raises BrokenPipeError: in doit's reporter, its commands' output and at interpreter exit,
each a traceback. ``PipeSafe`` writes through (flushing, so the error surfaces here and not
at exit) and, once the reader is gone, points the file descriptor at /dev/null: the run
goes on, builds and records what it was asked to, and ends with its own status. Standard
library only: the no-op shortcut and doit's plugins use it before anything else loads.
"""

from __future__ import annotations

import os
import sys
from typing import Any


class PipeSafe:
    """A text stream's writes and flushes, silenced (to /dev/null) once its reader has gone."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        try:
            written = self._stream.write(text)
            self._stream.flush()
            return written
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()

    def _silence(self) -> None:
        """The reader closed the pipe: what is still buffered, and everything after, goes to /dev/null."""
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # no descriptor (a test's capture): nothing more to silence

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def pipe_safe(stream: Any) -> PipeSafe:
    """``stream`` as a PipeSafe: itself when it is one, ``sys.stdout`` when that is the one wrapping it
    (doit hands its commands and reporters the stream it found before dodo.py wrapped it)."""
    if isinstance(stream, PipeSafe):
        return stream
    if isinstance(sys.stdout, PipeSafe) and sys.stdout._stream is stream:
        return sys.stdout
    return PipeSafe(stream)
