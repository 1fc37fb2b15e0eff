"""The doit layer: the app object of a run, the task creators, up-to-date checks and the reporter.

A dodo file needs one call (``python -m setup_tasks init`` writes it for a team's project)::

    from setup_tasks.cli import dodo_namespace
    globals().update(dodo_namespace(__file__))

The names below load on first use (PEP 562): doit imports this package for its
plugins (``forget``, ``json_reporter``) in every run, whatever the dodo file, and they
must not import the rest of setup.
"""

from __future__ import annotations

from typing import Any

__all__ = ["dodo_namespace", "namespace"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import dodo

        return getattr(dodo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
