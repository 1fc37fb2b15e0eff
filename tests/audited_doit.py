"""Run `doit <args>` in this process under an audit hook; write every path opened or listed to the file argv[1].

For test_shortcut_runs: what a full no-op reads, as Python's audit events see it (``open``,
``os.listdir``, ``os.scandir``, ``sqlite3.connect``), to hold against what its witness watches.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from typing import Any

out, args = sys.argv[1], sys.argv[2:]
seen: dict[str, set[str]] = {"open": set(), "list": set()}


def hook(event: str, info: tuple[Any, ...]) -> None:
    first = info[0] if info else None
    if event == "open" and isinstance(first, (str, bytes, os.PathLike)):
        # A relative name may be relative to a directory descriptor (dir_fd), which the event does not
        # carry: kept as it is, for the test to name.
        name = os.fsdecode(first)
        seen["open"].add(name if "/" not in name else os.path.abspath(name))
    elif event in ("os.listdir", "os.scandir"):
        seen["list"].add(
            os.path.abspath(os.fsdecode(first)) if isinstance(first, (str, bytes, os.PathLike)) else os.getcwd()
        )
    elif event == "sqlite3.connect" and first is not None:  # a path, or a file: URI with its query
        name = str(first)
        seen["open"].add(name[len("file://") :].split("?")[0] if name.startswith("file://") else name)


def dump() -> None:
    with open(out, "w") as fh:
        json.dump({kind: sorted(paths) for kind, paths in seen.items()}, fh)


atexit.register(dump)  # registered first, so it runs last: after setup has written its witness
sys.addaudithook(hook)
sys.argv = ["doit", *args]
from doit.__main__ import main  # noqa: E402

main()
