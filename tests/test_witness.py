"""The no-op witness (store.witness) and the shortcut's rules (cli.shortcut), on real files: what voids one, what does
not.

The runs themselves (a no-op answered from a witness equals the full check; every kind of
change goes the full way and rebuilds) are in test_shortcut_runs.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

import pytest

import setup_tasks.proofs as proofs_module
import setup_tasks.store.witness as witness_module
from setup_tasks.cli import shortcut
from setup_tasks.files import path_key
from setup_tasks.store.witness import (
    RUN_SLOTS,
    Witness,
    WitnessStore,
    environment_digest,
    fill_slots,
    keys_of,
    racy_path,
    run_context,
    slot,
)

ARGV = ["setup"]


def make_witness(paths: list[Path], environ: dict[str, str] | None = None, **extra: object) -> Witness:
    return Witness(
        context=run_context(ARGV),
        environment=environment_digest(environ or dict(os.environ)),
        keys=keys_of(paths),
        run_id="r1",
        **extra,
    )  # type: ignore[arg-type]


def void(witness: Witness, environ: dict[str, str] | None = None, argv: list[str] = ARGV) -> str | None:
    return witness.void_reason(run_context(argv), environment_digest(environ or dict(os.environ)))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "models").mkdir()
    seed = tmp_path / "seed.csv"
    seed.write_text("id,name\n1,Ada\n")
    model = tmp_path / "models" / "m.sql"
    model.write_text("select 1")
    return {"seed": seed, "model": model, "folder": tmp_path / "models", "absent": tmp_path / "setup.yaml"}


def test_nothing_changed_holds(files: dict[str, Path]) -> None:
    assert void(make_witness(list(files.values()))) is None


@pytest.mark.parametrize(
    "change", ["same size, mtime restored", "replaced by a copy", "removed", "created", "entry added"]
)
def test_every_kind_of_change_voids_it(files: dict[str, Path], change: str) -> None:
    witness = make_witness(list(files.values()))
    seed = files["seed"]
    if change == "same size, mtime restored":  # touch -r: the ctime still moves
        before = seed.stat()
        time.sleep(0.01)
        seed.write_text("id,name\n1,Bob\n")
        os.utime(seed, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert seed.stat().st_size == before.st_size and seed.stat().st_mtime_ns == before.st_mtime_ns
    elif change == "replaced by a copy":
        copy = seed.with_name("copy.csv")
        copy.write_text(seed.read_text())
        os.replace(copy, seed)
    elif change == "removed":
        files["model"].unlink()
    elif change == "created":
        files["absent"].write_text("setup: {}\n")
    else:
        (files["folder"] / "new.sql").write_text("select 2")
    assert void(witness) is not None


def test_environment_command_line_and_place(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"HOME": "/home/x", "DBT_TARGET": "dev", "SHLVL": "1", "PWD": "/a"}
    witness = make_witness([files["seed"]], environ)
    assert void(witness, {**environ, "SHLVL": "3", "PWD": "/b", "_": "/usr/bin/doit"}) is None  # another terminal
    assert void(witness, {**environ, "DBT_TARGET": "prod"}) == "the environment changed"
    assert void(witness, {**environ, "PLANWISE_SETUP_DIRECT": "0"}) == "the environment changed"
    assert "argv" in (void(witness, environ, ["quick"]) or "")
    monkeypatch.chdir(tmp_path / "models")
    assert "cwd" in (void(witness, environ) or "")


def test_the_environment_is_kept_as_a_keyed_digest() -> None:
    digest = environment_digest({"PASSWORD": "hunter2"})
    assert "hunter2" not in digest and digest != environment_digest({"PASSWORD": "hunter3"})


def test_a_path_changed_within_the_racy_margin_proves_nothing(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = keys_of(files.values())
    assert racy_path(keys, time.time_ns()) is not None  # just written
    monkeypatch.setattr(witness_module, "RACY_NS", 0)
    assert racy_path(keys, time.time_ns() + 1) is None
    files["seed"].write_text("id\n")  # written after the run began
    later = keys_of(files.values())
    assert racy_path(later, time.time_ns() - 10**9) == str(files["seed"])


def test_a_change_its_key_cannot_show_is_seen_by_its_proof(files: dict[str, Path]) -> None:
    """A path changed within the racy margin is witnessed with a proof of its bytes too: a second write in the
    same clock tick (here: the keys taken after it, as its key would not have changed) still voids it."""
    proofs = {
        str(files["seed"]): [proofs_module.FILE, proofs_module.proof_of(files["seed"], proofs_module.FILE)],
        str(files["folder"]): [proofs_module.FOLDER, proofs_module.proof_of(files["folder"], proofs_module.FOLDER)],
    }
    assert all(digest for _, digest in proofs.values())
    assert void(make_witness([files["seed"], files["folder"]], proofs=proofs)) is None
    files["seed"].write_text("id,name\n1,Ava\n")  # same size
    assert void(make_witness([files["seed"], files["folder"]], proofs=proofs)) == f"{files['seed']} changed"
    proofs[str(files["seed"])][1] = proofs_module.proof_of(files["seed"], proofs_module.FILE) or ""
    (files["folder"] / "new.sql").write_text("select 2")
    assert void(make_witness([files["seed"], files["folder"]], proofs=proofs)) == f"{files['folder']} changed"
    (files["folder"] / "new.sql").unlink()
    assert void(make_witness([files["seed"], files["folder"]], proofs=proofs)) is None


def test_a_database_is_proven_by_its_headers_and_wal(tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create table t as select 1 as x")
    proof = proofs_module.database_proof(db)
    assert proof is not None and proofs_module.proof_of(db, proofs_module.DATABASE) == proof
    with duckdb.connect(str(db)) as con:
        con.execute("insert into t values (2)")
    assert proofs_module.database_proof(db) not in (None, proof)
    (tmp_path / "not.duckdb").write_bytes(b"x" * 20000)
    assert proofs_module.database_proof(tmp_path / "not.duckdb") is None  # not DuckDB's layout: nothing proven
    assert proofs_module.proof_of(tmp_path / "absent", proofs_module.FILE) is None


def test_a_witness_with_proofs_of_the_wrong_shape_is_no_witness() -> None:
    data = make_witness([]).as_dict()
    assert Witness.from_dict({**data, "proofs": {"/a": ["file", "d"]}}) is not None
    for bad in ({"/a": "d"}, {"/a": ["file"]}, {"/a": ["file", 1]}, ["/a"]):
        assert Witness.from_dict({**data, "proofs": bad}) is None


def test_slots_are_filled_with_this_runs_values() -> None:
    report = {"run_id": slot("run_id"), "seconds": slot("seconds"), "counts": {"up-to-date": 3}, "note": "run_id"}
    text = json.dumps(report)
    filled = json.loads(fill_slots(text, {"run_id": "r2", "seconds": 0.01}))
    assert filled == {"run_id": "r2", "seconds": 0.01, "counts": {"up-to-date": 3}, "note": "run_id"}
    assert {"run_id", "started", "ended", "seconds", "exit_code", "shortcut"} == set(RUN_SLOTS)


def test_store_round_trip_and_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = WitnessStore.for_root(tmp_path)
    witness = make_witness([files["seed"]], said={"tally": "3 up to date", "lines": []})
    store.put(ARGV, witness)
    store.put(["quick"], make_witness([]))
    assert store.get(ARGV) == witness and store.get(["quick"]) is not None and store.get(["other"]) is None
    assert store.path.stat().st_mode & 0o777 == 0o600 and store.path.parent.stat().st_mode & 0o777 == 0o700
    store.clear()
    assert store.get(ARGV) is None


@pytest.mark.parametrize("damage", ["garbage", "wrong shape", "another version", "writable by others", "another owner"])
def test_a_witness_file_setup_cannot_trust_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, Path], damage: str
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = WitnessStore.for_root(tmp_path)
    store.put(ARGV, make_witness([files["seed"]]))
    data = json.loads(store.path.read_text())
    if damage == "garbage":
        store.path.write_bytes(b"\x00{not json")
    elif damage == "wrong shape":
        data["entries"][json.dumps(ARGV)]["keys"] = {"x": "not a key"}
        store.path.write_text(json.dumps(data))
    elif damage == "another version":
        data["version"] = 0
        store.path.write_text(json.dumps(data))
    elif damage == "writable by others":  # anyone could have written what it claims
        os.chmod(store.path, 0o666)
    else:
        if os.getuid() != 0:
            pytest.skip("giving a file to another user takes root")
        os.chown(store.path, 65534, 65534)
    assert store.get(ARGV) is None


def test_only_no_op_command_lines_started_by_doit_are_eligible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/bin/doit", "setup"])
    monkeypatch.delenv(shortcut.SHORTCUT_ENV, raising=False)
    for argv in ([], ["setup"], ["quick"], ["run", "setup"]):
        assert shortcut.eligible(argv)
    for argv in (
        ["setup", "-v", "2"],
        ["--reporter", "json", "setup"],
        ["setup", "config=x.yaml"],
        ["status"],
        ["list"],
        ["forget", "model:x"],
        ["census", "employees=10"],
        ["setup", "quick"],
    ):
        assert not shortcut.eligible(argv)
    monkeypatch.setenv(shortcut.SHORTCUT_ENV, "0")
    assert not shortcut.eligible(["setup"])
    monkeypatch.delenv(shortcut.SHORTCUT_ENV)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/pytest", "setup"])  # the API, tests, another program
    assert not shortcut.eligible(["setup"])
    monkeypatch.setattr(sys, "argv", [os.path.join("lib", "doit", "__main__.py"), "setup"])  # python -m doit
    assert shortcut.eligible(["setup"])


def test_a_setup_run_holding_the_database_goes_the_full_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", ["doit", "setup"])
    lock = tmp_path / "run.lock"
    lock.write_text("12345")
    WitnessStore.for_root(tmp_path).put(ARGV, make_witness([files["seed"]], lock_path=str(lock)))
    assert shortcut.usable_witness(tmp_path, ARGV) is not None
    with lock.open() as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # held by this process's other descriptor: another run, to the shortcut
        assert shortcut.usable_witness(tmp_path, ARGV) is None
    files["seed"].write_text("id,name\n2,Bob\n")
    assert shortcut.usable_witness(tmp_path, ARGV) is None


def test_path_key_of_nothing_is_none(tmp_path: Path) -> None:
    assert path_key(tmp_path / "missing") is None and path_key(tmp_path) is not None


def test_a_file_dated_ahead_is_not_racy_for_ever(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """An archive extracted with tomorrow's mtimes: only the change time (the kernel's clock) says when it changed."""
    tomorrow = time.time_ns() + 86_400 * 10**9
    os.utime(files["seed"], ns=(tomorrow, tomorrow))
    monkeypatch.setattr(witness_module, "RACY_NS", 0)
    assert racy_path(keys_of([files["seed"]]), time.time_ns() + 1) is None


def test_listing_the_code_a_witness_watches_loads_no_lazily_imported_module(tmp_path: Path) -> None:
    """Issue 21: the first check after a build imported DuckDB (40 ms of a 0.25 s run) only to read the file
    of store.database's lazily imported module; its file is watched without loading it."""
    import importlib.util

    sys.modules.pop("wave", None)
    spec = importlib.util.find_spec("wave")
    assert spec is not None and spec.loader is not None
    spec.loader = importlib.util.LazyLoader(spec.loader)
    lazy = importlib.util.module_from_spec(spec)
    sys.modules["wave"] = lazy
    spec.loader.exec_module(lazy)
    try:
        list(shortcut.code_paths(tmp_path))
        assert type(lazy).__name__ == "_LazyModule", "listing the watched code loaded the module"
    finally:
        sys.modules.pop("wave", None)
