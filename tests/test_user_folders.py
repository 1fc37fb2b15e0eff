"""Issue 24: setup's folders outside the project (cache, state, worker) follow one rule, heal, or are stepped aside
from.

Another user's folders (a shared XDG_CACHE_HOME, variables inherited after `su`) never fail a
run nor change its results; a damaged key heals atomically; a write the disk refuses says so.
Ownership cases run the other user's part as uid 65534 in a forked child (tests/other_user.py).
"""

from __future__ import annotations

import ast
import errno
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from factories import REPO, Workspace, clean_env, stop_workers, write_shop_project
from other_user import NOBODY, as_nobody, needs_root, nobodys, roots, run_as_nobody, shared_dir, small_disk
from setup_tasks import keys
from setup_tasks.config import load_settings
from setup_tasks.config import problems
from setup_tasks.dbt.client import DbtClient, WorkerClient, WorkerUnavailable
from setup_tasks.errors import ConfigError
from setup_tasks.store.witness import Witness, WitnessStore, run_context
from setup_tasks.user_folders import UserFolder, cache_folder, state_folder, worker_folder

PACKAGE = REPO / "setup_tasks"
# A setup.yaml with two problems the schema reports (a wrong type, an unknown key).
INVALID_CONFIG = {"database": {"path": 5}, "dbt": {"project_dirr": "proj"}}


@pytest.fixture
def own_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own cache and state folders (the key read afresh)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    keys._key.cache_clear()
    yield tmp_path
    keys._key.cache_clear()


@pytest.fixture
def shared() -> Iterator[Path]:
    directory = shared_dir()
    yield directory
    subprocess.run(["rm", "-rf", str(directory)], check=False)


def notes(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "setup_tasks" and r.levelno == level]


# -- one reader: the rule for every file of setup's folders ------------------------------------------


@pytest.mark.parametrize(
    "flaw", ["another owner", "writable by the group", "writable by others", "a symlink", "a folder"]
)
def test_a_file_that_breaks_the_rule_is_ignored_with_a_line_at_v2(
    own_folders: Path, caplog: pytest.LogCaptureFixture, flaw: str
) -> None:
    folder = cache_folder()
    folder.write("memo.json", b'["trusted"]')
    path = folder.path / "memo.json"
    assert folder.read_json("memo.json", []) == ["trusted"]
    if flaw == "another owner":
        needs_root()
        os.chown(path, NOBODY, NOBODY)
    elif flaw == "writable by the group":
        os.chmod(path, 0o620)
    elif flaw == "writable by others":
        os.chmod(path, 0o602)
    elif flaw == "a symlink":
        target = own_folders / "planted.json"
        target.write_text('["planted"]')
        path.unlink()
        path.symlink_to(target)
    else:
        path.unlink()
        path.mkdir()
    caplog.set_level(logging.INFO, "setup_tasks")
    assert folder.read_json("memo.json", []) == []
    said = notes(caplog, logging.INFO)
    assert len(said) == 1 and str(path) in said[0], said
    assert not notes(caplog, logging.WARNING)


def test_files_are_written_atomically_and_privately(own_folders: Path) -> None:
    folder = cache_folder().child("witness")
    folder.write("a.json", b"{}")
    assert stat_mode(folder.path) == 0o700 and stat_mode(folder.path / "a.json") == 0o600
    assert stat_mode(folder.path.parent) == 0o700
    before = os.stat(folder.path / "a.json").st_ino
    folder.write("a.json", b'{"x": 1}')
    assert os.stat(folder.path / "a.json").st_ino != before  # renamed into place, never rewritten in place
    assert sorted(p.name for p in folder.path.iterdir()) == ["a.json"]


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def code_constants(path: Path) -> Iterator[str]:
    """String constants of a module's code (not its docstrings)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value
        if isinstance(node, ast.Attribute) and node.attr == "gettempdir":
            yield "gettempdir"


def test_every_folder_outside_the_project_is_found_in_one_module() -> None:
    """So a new cache cannot forget the rule: only user_folders names the user's cache, state and runtime
    folders (the others ask it for a UserFolder)."""
    offenders = {
        str(p.relative_to(REPO)): sorted(set(found))
        for p in PACKAGE.rglob("*.py")
        if p.name != "user_folders.py"
        for found in [
            [
                c
                for c in code_constants(p)
                if c.startswith("XDG_") or c in ("gettempdir", "PLANWISE_SETUP_WORKER_DIR", ".cache")
            ]
        ]
        if found
    }
    assert offenders == {}


# -- item 2: a cache another user wrote is not trusted -------------------------------------------------


def test_valid_configs_another_user_planted_are_not_trusted(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a shared XDG_CACHE_HOME, another user plants valid-configs.json holding the digest of this user's
    invalid setup.yaml: the schema still checks it, and the run names both problems (it skipped the check
    and ended in a traceback)."""
    needs_root()
    config = tmp_path / "setup.yaml"
    config.write_text(yaml.safe_dump(INVALID_CONFIG))
    digest = problems._document_digest(INVALID_CONFIG)

    def plant() -> None:
        folder = shared / "planwise-setup"
        folder.mkdir(mode=0o777)
        os.chmod(folder, 0o777)
        (folder / "valid-configs.json").write_text(json.dumps({digest: True}))  # as setup remembers one
        os.chmod(folder / "valid-configs.json", 0o666)

    as_nobody(plant)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    with pytest.raises(ConfigError) as err:
        load_settings(config, root=tmp_path)
    assert "2 problems" in err.value.cause and "database.path" in err.value.cause and "project_dirr" in err.value.cause


# -- items 3 and 5: another user's folders are stepped aside from, in one line each --------------------


def test_another_users_cache_folder_is_stepped_aside_from(shared: Path, tmp_path: Path) -> None:
    """A shared XDG_CACHE_HOME where another user ran first (their planwise-setup, 0700): no witness, no
    remembered config, no PermissionError; one warning naming the folder and the fix."""
    needs_root()
    roots(shared / "planwise-setup")
    roots(shared / "planwise-setup" / "witness")
    project = nobodys(shared / "project")

    def second_user() -> dict[str, Any]:
        os.environ["XDG_CACHE_HOME"] = str(shared)
        os.environ["XDG_STATE_HOME"] = str(project / "state")
        keys._key.cache_clear()
        store = WitnessStore.for_root(project)
        witness = Witness(run_context(["setup"]), "env", {}, "r1")
        store.put(["setup"], witness)
        store.clear()
        problems._remember_valid("d1")
        return {"witness": store.get(["setup"]), "valid": problems._known_valid("d1")}

    got, said = as_nobody(second_user)
    assert got == {"witness": None, "valid": False}
    warnings = [text for level, text in said if level == "WARNING"]
    assert len({w for w in warnings}) == 1, said  # the same line, said once per run by the note handler
    assert str(shared / "planwise-setup") in warnings[0] and "uid 0" in warnings[0]
    assert "fix: set XDG_CACHE_HOME" in warnings[0]


@pytest.mark.parametrize("inherited", ["XDG_RUNTIME_DIR", "PLANWISE_SETUP_WORKER_DIR"])
def test_another_users_worker_folder_means_dbt_in_process(shared: Path, inherited: str) -> None:
    """After `su`, XDG_RUNTIME_DIR (or PLANWISE_SETUP_WORKER_DIR naming their worker folder) is another
    user's 0700 folder: the client steps aside (dbt in this process) instead of a PermissionError."""
    needs_root()
    theirs = roots(shared / "run-user-0")
    if inherited == "PLANWISE_SETUP_WORKER_DIR":
        theirs = roots(theirs / "planwise-setup")

    WorkerClient(900).version  # noqa: B018 - what it imports is imported here: the child may not read it

    def second_user() -> dict[str, Any]:
        os.environ.pop("PLANWISE_SETUP_WORKER_DIR", None)
        os.environ[inherited] = str(theirs)
        client = DbtClient(900)
        phases: list[str] = []
        client._starting(phases.append)  # looked for the socket: a PermissionError before
        assert client.client is not None
        try:
            client.client.request({"op": "hello"}, lambda event: None)
        except WorkerUnavailable as exc:
            return {"phases": phases, "why": str(exc), "workers": client.client.workers()}
        return {"phases": phases, "why": None}

    got, _ = as_nobody(second_user)
    assert got["why"] is not None and str(theirs) in got["why"], got
    assert got["phases"] == ["starting"] and got["workers"] == {}


def test_another_users_state_folder_costs_the_key_in_one_line(shared: Path) -> None:
    needs_root()
    theirs = roots(shared / "state" / "planwise-setup")
    roots(shared / "state", 0o755)

    def second_user() -> int:
        os.environ["XDG_STATE_HOME"] = str(shared / "state")
        keys._key.cache_clear()
        return len(keys.user_key()) + len(keys.keyed_digest("x"))

    got, said = as_nobody(second_user)
    assert got == 32 + 16
    warnings = [text for level, text in said if level == "WARNING"]
    assert len(warnings) == 1 and str(theirs) in warnings[0] and "env_var()" in warnings[0], said


def test_a_read_only_cache_folder_is_read_and_its_writes_are_stepped_aside_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with small_disk(tmp_path / "ro", "64k") as mount:
        monkeypatch.setenv("XDG_CACHE_HOME", str(mount))
        folder = cache_folder()
        folder.write("valid-configs.json", b'{"d1": true}')
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        assert problems._known_valid("d1")
        problems._remember_valid("d2")
        problems._remember_valid("d3")
        said = set(notes(caplog, logging.WARNING))  # the note handler shows it once
        assert len(said) == 1 and "Read-only file system" in min(said) and "or set XDG_CACHE_HOME" in min(said), said


# -- item 4: the key heals, atomically; a failed write says so -------------------------------------------


@pytest.mark.parametrize("damage", ["empty", "short", "long", "readable by others", "a symlink"])
def test_a_damaged_key_is_replaced_atomically(own_folders: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    key = keys.user_key()
    path = keys.key_path()
    outside = own_folders / "elsewhere"
    outside.write_bytes(b"x" * 32)
    if damage == "a symlink":
        path.unlink()
        path.symlink_to(outside)
    elif damage == "readable by others":
        os.chmod(path, 0o644)
    else:
        path.write_bytes({"empty": b"", "short": key[:5], "long": key + b"\n"}[damage])
    keys._key.cache_clear()
    caplog.set_level(logging.INFO, "setup_tasks")
    healed = keys.user_key()
    assert len(healed) == 32 and path.read_bytes() == healed and not path.is_symlink()
    assert stat_mode(path) == 0o600 and outside.read_bytes() == b"x" * 32
    assert sorted(p.name for p in path.parent.iterdir()) == ["key"]  # no temporary file left
    assert not notes(caplog, logging.WARNING), "a healed key costs nothing to say"
    keys._key.cache_clear()
    assert keys.user_key() == healed  # kept: the next process reads the same


def test_a_key_write_the_disk_refuses_says_so_and_leaves_nothing(
    own_folders: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import setup_tasks.user_folders as user_folders

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(user_folders.os, "fsync", full)
    key = keys.user_key()
    assert len(key) == 32
    said = notes(caplog, logging.WARNING)
    assert len(said) == 1 and "No space left on device" in said[0] and "fix: free space" in said[0], said
    folder = keys.key_path().parent
    assert list(folder.iterdir()) == []  # no empty key left to warn about forever
    monkeypatch.undo()
    monkeypatch.setenv("XDG_STATE_HOME", str(own_folders / "state"))
    keys._key.cache_clear()
    assert len(keys.user_key()) == 32 and keys.key_path().stat().st_size == 32


def test_processes_making_the_key_at_once_agree_on_it(own_folders: Path) -> None:
    code = "from setup_tasks.keys import user_key; print(user_key().hex())"
    env = clean_env({"XDG_STATE_HOME": str(own_folders / "state")})
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    seen = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert len(seen) == 1 and len(next(iter(seen))) == 64


def test_a_full_disk_leaves_no_empty_key_behind(tmp_path: Path) -> None:
    """The disk holding XDG_STATE_HOME is full while the key is first made: the process says so, and no 0-byte
    key stays to be warned about in every later run; once there is room, the next one makes it."""
    with small_disk(tmp_path / "small", "16k") as mount:
        (mount / "planwise-setup").mkdir(mode=0o700)
        filler = mount / "fill"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1k", "count=64"], capture_output=True)
        code = "import logging; logging.basicConfig(); from setup_tasks.keys import user_key; print(len(user_key()))"
        env = clean_env({"XDG_STATE_HOME": str(mount)})
        run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
        assert run.stdout.strip() == "32" and "No space left on device" in run.stderr and "free space" in run.stderr
        assert list((mount / "planwise-setup").iterdir()) == []
        filler.unlink()
        again = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
        assert again.stdout.strip() == "32" and again.stderr == ""
        assert (mount / "planwise-setup" / "key").stat().st_size == 32


# -- end to end: a second user, sharing every folder setup uses ------------------------------------------


def interpreter_reachable_by_nobody() -> bool:
    """Can uid 65534 run this Python (not so when it lives under a 0700 home)?"""
    got, _ = as_nobody(
        lambda: (
            os.access(os.path.realpath(sys.executable), os.X_OK)
            and os.access(os.path.dirname(yaml.__file__), os.R_OK | os.X_OK)
        )
    )
    return bool(got)


@pytest.mark.slow
def test_a_second_user_with_the_first_users_folders_is_never_stopped(shared: Path) -> None:
    """`su` keeps XDG_CACHE_HOME, XDG_STATE_HOME and XDG_RUNTIME_DIR (then PLANWISE_SETUP_WORKER_DIR) of the
    first user, who ran setup before: the second user's runs build, answer no-ops, and exit 0, with no
    traceback, each folder stepped aside from in one line (before: exit 3, PermissionError); the first
    user's caches are as they were.

    The second user is uid 65534 when it can run this interpreter; here it may not (a Python under /root,
    0700), and then root is the second user and uid 65534 the first: the folders are as much another
    user's, only the permission errors (tested above, in forked children) cannot happen to root."""
    needs_root()
    victim_is_nobody = interpreter_reachable_by_nobody()
    first_users, second_users = (roots, nobodys) if victim_is_nobody else (nobodys, roots)
    first = shared / "first"
    for sub in ("cache/planwise-setup/witness", "state/planwise-setup", "runtime", "worker"):
        (first / sub).mkdir(parents=True)
    (first / "cache" / "planwise-setup" / "valid-configs.json").write_text("{}")
    (first / "cache" / "planwise-setup" / "witness" / "w.json").write_text("{}")
    for sub in ("cache/planwise-setup/witness", "cache/planwise-setup", "state/planwise-setup", "runtime", "worker"):
        first_users(first / sub)
    for sub in ("cache", "state", ""):
        os.chmod(first / sub, 0o755)
    second = second_users(shared / "second", 0o755)
    ws = write_shop_project(second / "ws")
    second_users(second, 0o755)
    env = clean_env(
        {
            "XDG_CACHE_HOME": str(first / "cache"),
            "XDG_STATE_HOME": str(first / "state"),
            "XDG_RUNTIME_DIR": str(first / "runtime"),
            "HOME": str(second),
            "PLANWISE_SETUP_WORKER": "1",
        }
    )
    env.pop("PLANWISE_SETUP_WORKER_DIR")
    run_as = (
        run_as_nobody
        if victim_is_nobody
        else (lambda cmd, **kw: subprocess.run(cmd, capture_output=True, text=True, **kw))
    )
    results = {}
    try:
        for step in ("XDG_*", "PLANWISE_SETUP_WORKER_DIR"):
            if step == "PLANWISE_SETUP_WORKER_DIR":
                env["PLANWISE_SETUP_WORKER_DIR"] = str(first / "worker")
                ws.seed("regions", "region,tax_rate\nnorth,0.3\nsouth,0.1\n")
            for command in (["setup"], []):
                results[(step, *command)] = run_as(
                    [sys.executable, "-m", "doit", *command, f"config={ws.config_path}"], cwd=REPO, env=env, timeout=300
                )
    finally:  # root may serve from a folder of its own inside the other user's XDG_RUNTIME_DIR: safe, and its own
        stop_workers(first / "runtime" / "planwise-setup")
    found = []
    for name, run in results.items():
        text = run.stdout + run.stderr
        said = [line for line in text.splitlines() if "fix: set XDG_" in line or "worker is not used" in line]
        if run.returncode != 0 or "Traceback" in text or "PermissionError" in text or len(said) != len(set(said)):
            found.append(f"{' doit '.join(name)}: rc {run.returncode}\n{text[-2500:]}")
    cold = results[("XDG_*", "setup")].stdout + results[("XDG_*", "setup")].stderr
    for folder in (
        first / "cache" / "planwise-setup",
        first / "state" / "planwise-setup",
        *([first / "runtime"] if victim_is_nobody else []),
    ):
        if not any(str(folder) in line for line in cold.splitlines()):
            found.append(f"no line names {folder}:\n{cold[-2500:]}")
    later = results[("PLANWISE_SETUP_WORKER_DIR", "setup")]
    if str(first / "worker") not in later.stdout + later.stderr:
        found.append(f"no line names {first / 'worker'}:\n{(later.stdout + later.stderr)[-2500:]}")
    assert not found, "\n\n".join(found)
    assert Workspace(ws.root).tables()["stg_regions"] == [("north", 30.0), ("south", 10.0)]
    assert os.listdir(first / "cache" / "planwise-setup" / "witness") == ["w.json"]
    assert (first / "cache" / "planwise-setup" / "valid-configs.json").read_text() == "{}"
    assert os.listdir(first / "state" / "planwise-setup") == [] and os.listdir(first / "worker") == []


@pytest.mark.slow
def test_the_run_that_cannot_write_the_key_says_so(built_shop: Workspace, tmp_path: Path) -> None:
    """Issue 24, item 4: the run that hit the full disk said nothing; every later one warned that the (empty)
    key "does not hold a key of 32 bytes -- fix: set XDG_STATE_HOME to a private directory you can write"."""
    with small_disk(tmp_path / "state", "16k") as disk:
        (disk / "planwise-setup").mkdir(mode=0o700)
        filler = disk / "fill"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1k", "count=64"], capture_output=True)
        env = {"XDG_STATE_HOME": str(disk)}
        full = built_shop.doit("setup", json_report=False, env=env)
        said = [line for line in (full.stdout + full.stderr).splitlines() if "private key" in line]
        assert full.returncode == 0 and len(said) == 1, full.stdout + full.stderr
        assert "No space left on device" in said[0] and f"free space on the disk holding {disk}" in said[0], said
        assert os.listdir(disk / "planwise-setup") == []
        filler.unlink()
        later = built_shop.doit("setup", json_report=False, env=env)
        assert later.returncode == 0 and "private key" not in later.stdout + later.stderr, later.stdout + later.stderr
        assert (disk / "planwise-setup" / "key").stat().st_size == 32
