"""The no-op witness: proof, by file keys, that nothing a full check reads changed since one found everything up to
date.

Make trusts timestamps; setup checks contents (fingerprints, table signatures), and
on a no-op most of its time goes into loading what those checks need. So a run
that found every task up to date leaves a witness: the stat key (device, inode,
size, mtime, ctime: ``files.stat_key``) of every file and folder its checks read or
looked for -- present or absent --, a keyed digest of the environment, the command
line, and what it said. The next run of the same command stats those paths (a few
hundred ``stat`` calls) and, when no key changed, says what the witness says
without loading anything: the answer the checks would give, since they would read
the same bytes.

A witness is void when any watched key differs (a file edited, touched, replaced,
created where none was, removed; a folder gaining or losing an entry), or the
environment, the command line, the working directory, the interpreter or the user
differ. A path changed within ``RACY_NS`` before the witnessing run began, or while
it ran, has a key that could hide a second change within one clock tick of the file
system: it is witnessed with a proof of its bytes too (``proofs``; the witnessing
run decides which it can prove: ``cli.witnessing``), or the run leaves no witness.

Witnesses live in the user's cache folder (``$XDG_CACHE_HOME/planwise-setup/witness``,
0700, files 0600), one file per dodo folder, read and written through ``user_folders``: one
of another owner or writable by others is ignored, and a folder setup cannot use keeps
none. Losing one costs one full check, never correctness.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..files import RACY_NS, path_key
from ..keys import keyed_digest
from ..proofs import proof_of
from ..user_folders import UserFolder, cache_folder

WITNESS_VERSION = 1
# Shell bookkeeping that differs between terminals and says nothing about a build: left out of
# the environment's digest, so a second terminal still finds the witness.
VOLATILE_ENV = frozenset(
    {
        "_",
        "OLDPWD",
        "PWD",
        "SHLVL",
        "PS1",
        "PS2",
        "PROMPT_COMMAND",
        "HISTFILE",
        "HISTSIZE",
        "HISTCONTROL",
        "COLUMNS",
        "LINES",
        "WINDOWID",
        "TERM_SESSION_ID",
        "ITERM_SESSION_ID",
        "KITTY_WINDOW_ID",
        "TMUX_PANE",
        "STY",
        "WINDOW",
        "SSH_CLIENT",
        "SSH_CONNECTION",
        "SSH_TTY",
        "SSH_AUTH_SOCK",
        "DISPLAY",
        "XAUTHORITY",
        "PYTEST_CURRENT_TEST",
        "PYTEST_XDIST_WORKER",
        "PYTEST_XDIST_TESTRUNUID",
        "PYTEST_XDIST_WORKER_COUNT",
    }
)
Key = list[int] | None
# What differs between runs that find the same: filled in when the witness answers.
RUN_SLOTS = ("run_id", "started", "ended", "seconds", "exit_code", "shortcut")


def slot(name: str) -> str:
    """The placeholder of a run's own value in a witnessed report (a string no report holds)."""
    return f"\0{name}\0"


def fill_slots(text: str, values: Mapping[str, Any]) -> str:
    """A witnessed report's JSON text with this run's values in its slots."""
    for name, value in values.items():
        text = text.replace(json.dumps(slot(name)), json.dumps(value))
    return text


def environment_digest(environ: Mapping[str, str]) -> str:
    """A keyed digest of the environment (without ``VOLATILE_ENV``): values may be secrets."""
    items = sorted((k, v) for k, v in environ.items() if k not in VOLATILE_ENV)
    return keyed_digest("environment", *(f"{k}={v}" for k, v in items), length=32)


def run_context(argv: Iterable[str]) -> dict[str, Any]:
    """Who runs what, where: a witness holds only for the same."""
    # The interpreter resolved: `doit` (its script's shebang names python3.11) and `python -m doit` are one.
    # Setup's own code where this process imported it (an install moved elsewhere runs other files).
    return {
        "version": WITNESS_VERSION,
        "argv": list(argv),
        "cwd": os.getcwd(),
        "python": os.path.realpath(sys.executable),
        "python_version": sys.version,
        "uid": os.getuid(),
        "code": str(Path(__file__).resolve().parent.parent),
    }


def keys_of(paths: Iterable[str | Path]) -> dict[str, Key]:
    """Each path's stat key now (None: nothing there)."""
    return {str(p): path_key(p) for p in paths}


def racy_paths(keys: Mapping[str, Key], since_ns: int) -> list[str]:
    """Every path changed less than ``RACY_NS`` before ``since_ns`` (or after it): its key proves nothing.

    Its ctime says when it changed (the kernel's clock: an mtime may be set to any time, even ahead).
    """
    limit = since_ns - RACY_NS
    return [p for p, k in keys.items() if k is not None and k[4] >= limit]


def racy_path(keys: Mapping[str, Key], since_ns: int) -> str | None:
    """The first of ``racy_paths``, or None."""
    return next(iter(racy_paths(keys, since_ns)), None)


@dataclass
class Witness:
    """One command's witness: the keys of what its checks read, and what the run said and reported."""

    context: dict[str, Any]
    environment: str
    keys: dict[str, Key]
    run_id: str
    said: dict[str, Any] = field(default_factory=dict)  # "tally": "48 up to date", "lines": [...]
    report: str = ""  # the run report's JSON text, with a slot for each of RUN_SLOTS
    history: dict[str, Any] = field(default_factory=dict)  # its history line, RUN_SLOTS to be filled in
    report_path: str = ""
    history_path: str = ""
    lock_path: str = ""
    # Paths changed within RACY_NS of the witnessing run, proven by their bytes too (``proofs``): [kind, digest].
    proofs: dict[str, list[str]] = field(default_factory=dict)

    def void_reason(self, context: Mapping[str, Any], environment: str) -> str | None:
        """Why this witness no longer holds (the first reason found), or None."""
        if dict(context) != self.context:
            changed = sorted(k for k in set(context) | set(self.context) if context.get(k) != self.context.get(k))
            return f"another {', '.join(changed)}"
        if environment != self.environment:
            return "the environment changed"
        for path, key in self.keys.items():
            if path_key(path) != key:
                return f"{path} changed"
        for path, (kind, digest) in self.proofs.items():
            if proof_of(path, kind) != digest:
                return f"{path} changed"
        return None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Any) -> "Witness | None":
        try:
            witness = cls(**data)
        except TypeError:
            return None
        keys_shaped = (
            all(k is None or (isinstance(k, list) and len(k) == 5) for k in witness.keys.values())
            if isinstance(witness.keys, dict)
            else False
        )
        proofs_shaped = isinstance(witness.proofs, dict) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in witness.proofs.values()
        )
        shaped = (
            keys_shaped
            and proofs_shaped
            and isinstance(witness.context, dict)
            and isinstance(witness.said, dict)
            and isinstance(witness.report, str)
            and isinstance(witness.history, dict)
        )
        return witness if shaped else None


def witness_folder() -> UserFolder:
    return cache_folder().child("witness")


class WitnessStore:
    """The witnesses of one dodo folder (one per command line), in one private file."""

    def __init__(self, folder: UserFolder, name: str) -> None:
        self.folder = folder
        self.name = name

    @property
    def path(self) -> Path:
        return self.folder.path / self.name

    @classmethod
    def for_root(cls, root: Path) -> "WitnessStore":
        name = hashlib.sha256(os.path.abspath(root).encode("utf-8", "surrogatepass")).hexdigest()[:24]
        return cls(witness_folder(), f"{name}.json")

    @staticmethod
    def command(argv: Iterable[str]) -> str:
        return json.dumps(list(argv))

    def _entries(self, quiet: bool = True) -> dict[str, Any]:
        """The stored witnesses; nothing when the file is missing, damaged, or fails ``user_folders``' rule.
        Quiet by default: the shortcut looks before anything can be said (a full run says it)."""
        data = self.folder.read_json(self.name, {}, version=WITNESS_VERSION, quiet=quiet)
        return data["entries"] if isinstance(data.get("entries"), dict) else {}

    def get(self, argv: Iterable[str]) -> Witness | None:
        return Witness.from_dict(self._entries().get(self.command(argv)))

    def put(self, argv: Iterable[str], witness: Witness) -> None:
        """Keep ``witness`` for this command line (beside the others'); a folder that cannot be written keeps none."""
        entries = self._entries(quiet=False)
        entries[self.command(argv)] = witness.as_dict()
        # Compact: json's C encoder (an indented dump of a big project's witness costs tens of ms).
        self.folder.save(self.name, json.dumps({"version": WITNESS_VERSION, "entries": entries}).encode())

    def clear(self) -> None:
        """A run that may change what the witnesses saw: none of them holds any more."""
        self.folder.remove(self.name)
