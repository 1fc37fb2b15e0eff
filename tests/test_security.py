"""Issue 11: setup's own machinery is private and verified (worker, caches, SQL, files on disk).

Each test is one attack of the issue. Attacks by another local user need a second uid:
when the tests run as root, the attacker part runs in a forked child that drops to
uid/gid 65534 (nobody); otherwise they are skipped with the reason. The child imports
nothing (it may not be able to read the interpreter's files). Most attacks are made on
the client and worker objects in this process (no dbt); one runs setup as a user does.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import select
import shutil
import signal
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import duckdb
import pytest
import yaml

from factories import Workspace
from setup_tasks.config import load_settings
from setup_tasks.dbt import invoke
from setup_tasks.dbt.client import DbtClient, WorkerClient, WorkerUnavailable
from setup_tasks.dbt.worker import Worker
from setup_tasks.errors import ProjectError
from setup_tasks.keys import seal
from setup_tasks.project.context import dbt_context
from setup_tasks.project.inputs import sql_path_problem
from setup_tasks.store.records import BuildRecords
from tempdirs import short_temp_dir

NOBODY = 65534
SECRET = "s3cr3t-Pa55w0rd-9f1c2b"  # what a user keeps in DBT_PASSWORD and the like
NEW_REGIONS = "region,tax_rate\nnorth,0.3\nsouth,0.1\n"  # shop's regions seed, edited


# -- helpers ---------------------------------------------------------------------------------


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("acting as another local user needs root (os.setuid in a forked child)")


def as_nobody(target: Callable[..., None], *args: Any) -> int:
    """Run ``target(*args)`` in a forked child as uid/gid 65534; returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            target(*args)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return pid


def stop(pid: int) -> None:
    """End a child this test forked."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def wait_ready(fd: int) -> None:
    assert select.select([fd], [], [], 30)[0], "the attacker did not start"
    os.read(fd, 16)


def private_dir(prefix: str = "pw-") -> Path:
    """A short directory under /tmp (Unix socket paths are limited to 107 bytes), mode 0700."""
    return short_temp_dir(prefix)


def shared_tmp() -> Path:
    """A directory like /tmp itself (1777)."""
    directory = private_dir("pwtmp-")
    os.chmod(directory, 0o1777)
    return directory


def fake_worker(sock_path: str, record_dir: str, ready_fd: int) -> None:
    """A worker impostor: records every request in ``record_dir`` and answers builds with "success"
    for every node, without running anything (what the issue's attacker did)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    os.chmod(sock_path, 0o777)
    server.listen(8)
    os.write(ready_fd, b"r")
    server.settimeout(300)
    count = 0
    while True:
        conn, _ = server.accept()
        conn.settimeout(10)
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        count += 1
        with open(os.path.join(record_dir, f"got-{count}.json"), "wb") as fh:
            fh.write(data)
        try:
            request = json.loads(data)
        except ValueError:
            conn.close()
            continue
        replies = [
            {
                "event": "outcome",
                "unique_id": uid,
                "status": "success",
                "message": "",
                "seconds": 0.01,
                "rows": 3,
                "failures": None,
            }
            for uid, _ in request.get("targets", [])
        ]
        replies.append(
            {"event": "done", "result": {"setup": [], "foundation": []} if request.get("op") == "parse" else None}
        )
        try:
            conn.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in replies))
        except OSError:
            pass
        conn.close()


def requests_in(record_dir: Path) -> list[bytes]:
    """What clients sent the impostor (a connection that sent nothing is no request)."""
    return [data for p in sorted(record_dir.glob("got-*.json")) if (data := p.read_bytes())]


def regions_percent(ws: Workspace) -> list[float]:
    return sorted(row[1] for row in ws.tables()["stg_regions"])


def output(run: Any) -> str:
    return run.stdout + run.stderr


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


class _Payload:
    """Unpickling this creates ``path``: proof that loading the cache ran attacker code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (os.mkdir, (self.path,))


def plant_pickles(ws: Workspace, marker: Path) -> list[Path]:
    """A code-running pickle at every manifest pickle of the project's setup folder (each context's)."""
    payload = pickle.dumps(("any-invocation-id", _Payload(str(marker))))
    targets = {*ws.project.rglob("manifest.pickle")}
    assert targets, "no manifest.pickle to plant over"
    for target in targets:
        target.write_bytes(payload)
    return sorted(targets)


# -- the warm worker: trusts and is trusted only by its own user ----------------------------


@pytest.mark.slow
def test_a_worker_directory_another_user_created_is_refused_and_dbt_runs_here(
    built_shop: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user creates $TMPDIR/planwise-setup-<uid> first, listens on every socket name, and plants
    symlinks for the lock and log files: setup sends nothing, follows no symlink, builds with dbt in
    process (not loading the code-running pickle planted in the project either), and says why in one line."""
    needs_root()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("PLANWISE_SETUP_WORKER_DIR", raising=False)
    ws = built_shop
    ws.seed("regions", NEW_REGIONS)
    marker = ws.root / "pwned"
    plant_pickles(ws, marker)
    tmpdir = shared_tmp()
    wdir = tmpdir / f"planwise-setup-{os.getuid()}"
    version = WorkerClient(900, wdir).version
    victim_files = tmpdir / "victim-files"  # only root (the victim) may write here
    victim_files.mkdir(mode=0o700)
    precious = victim_files / "precious.txt"
    precious.write_text("precious\n")

    def attacker(ready: int) -> None:
        os.mkdir(wdir)
        os.chmod(wdir, 0o777)  # so the victim can connect; root could anyway
        os.symlink(str(precious), str(wdir / f"worker-{version}.log"))
        os.symlink(str(victim_files / "created.lock"), str(wdir / f"worker-{version}.lock"))
        fake_worker(str(wdir / f"worker-{version}.sock"), str(wdir), ready)

    ready_r, ready_w = os.pipe()
    pid = as_nobody(attacker, ready_w)
    try:
        wait_ready(ready_r)
        assert wdir.stat().st_uid == NOBODY
        # dbt must run (not setup's own build): the worker is what the attacker is after
        run = ws.doit(
            "setup",
            json_report=False,
            env={
                "PLANWISE_SETUP_WORKER": "1",
                "TMPDIR": str(tmpdir),
                "DBT_PASSWORD": SECRET,
                "PLANWISE_SETUP_DIRECT": "0",
            },
        )
        text = output(run)
        got = requests_in(wdir)
        written = (
            sorted(p.name for p in victim_files.iterdir()) != ["precious.txt"] or precious.read_text() != "precious\n"
        )
    finally:
        stop(pid)
        shutil.rmtree(tmpdir, ignore_errors=True)
    problems = []
    if got:
        problems.append(
            f"setup sent {len(got)} request(s) to another user's worker "
            f"(DBT_PASSWORD in them: {any(SECRET.encode() in g for g in got)})"
        )
    if run.returncode != 0 or "Traceback" in text:
        problems.append(f"rc {run.returncode}:\n{tail(text)}")
    if regions_percent(ws) != [10.0, 30.0]:
        problems.append(f"a build 'succeeded' that never ran: stg_regions holds {regions_percent(ws)}")
    if not any(str(wdir) in line and "uid 65534" in line for line in text.splitlines()):
        problems.append(f"no line says why {wdir} is not used:\n{tail(text)}")
    if written:
        problems.append("setup wrote through a symlink another user planted")
    if marker.exists():
        problems.append("loading the planted manifest.pickle ran its code")
    assert not problems, "\n".join(problems)


def test_worker_files_planted_as_symlinks_are_not_followed(tmp_path: Path) -> None:
    """Symlinks named like the worker's lock and log files, even in the user's own directory: the client
    neither creates nor appends to what they point at, and starts no worker."""
    wdir = private_dir()
    try:
        client = WorkerClient(900, wdir)
        precious = tmp_path / "precious.txt"
        precious.write_text("precious\n")
        lock = wdir / f"worker-{client.version}.lock"
        lock.symlink_to(tmp_path / "created.lock")
        with pytest.raises(WorkerUnavailable, match="lock"):
            client.request({"op": "hello"}, lambda e: None)
        lock.unlink()
        (wdir / f"worker-{client.version}.log").symlink_to(precious)
        with pytest.raises(WorkerUnavailable, match="log"):
            client.request({"op": "hello"}, lambda e: None)
        assert client.process is None, "a worker was started"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]
        assert precious.read_text() == "precious\n"
    finally:
        shutil.rmtree(wdir, ignore_errors=True)


def test_a_private_worker_directory_is_verified(tmp_path: Path) -> None:
    """Group or other access, or a symlink, disqualifies the directory (with the reason)."""
    wdir = private_dir()
    try:
        os.chmod(wdir, 0o770)
        with pytest.raises(WorkerUnavailable, match="mode 0770"):
            WorkerClient(900, wdir).request({"op": "hello"}, lambda e: None)
        os.chmod(wdir, 0o700)
        link = tmp_path / "link"
        link.symlink_to(wdir)
        with pytest.raises(WorkerUnavailable, match="symbolic link"):
            WorkerClient(900, link).request({"op": "hello"}, lambda e: None)
    finally:
        shutil.rmtree(wdir, ignore_errors=True)


def test_a_socket_served_by_another_user_gets_no_request() -> None:
    """SO_PEERCRED on the client side: in the user's own correct directory, a socket whose listener
    is another uid gets nothing (a request would carry dbt's environment); the client says why."""
    needs_root()
    wdir, scratch = private_dir(), shared_tmp()
    client = WorkerClient(900, wdir)
    ready_r, ready_w = os.pipe()
    pid = as_nobody(fake_worker, str(scratch / client.socket_path.name), str(scratch), ready_w)
    try:
        wait_ready(ready_r)
        os.rename(scratch / client.socket_path.name, client.socket_path)  # a listener of uid 65534 behind our name
        with pytest.raises(WorkerUnavailable, match=f"served by uid {NOBODY}"):
            client.request({"op": "build", "env": {"DBT_PASSWORD": SECRET}}, lambda e: None)
        time.sleep(0.2)  # let the impostor record whatever it got
        got = requests_in(scratch)
    finally:
        stop(pid)
        shutil.rmtree(wdir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    assert not got, f"the client sent a request to a listener of uid {NOBODY}: {got[0][:160]!r}"


@pytest.fixture
def worker_in_thread() -> Iterator[Path]:
    """A real Worker serving in a thread of this process (no dbt is imported for hello and refusals)."""
    wdir = private_dir()
    sock = wdir / "worker-test.sock"
    worker = Worker(sock, idle=60)
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield sock
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(sock))
        conn.sendall(b'{"op": "shutdown"}\n')
        conn.recv(1024)
    thread.join(10)
    shutil.rmtree(wdir, ignore_errors=True)


def hello(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        try:
            conn.connect(path)
            conn.sendall(b'{"op": "hello"}\n')
            return conn.recv(4096)
        except OSError:
            return b""


def test_the_worker_answers_no_client_of_another_user(worker_in_thread: Path) -> None:
    """SO_PEERCRED on the worker side: a connection from another uid gets no answer, even when
    the directory and socket were left reachable."""
    needs_root()
    assert b'"done"' in hello(str(worker_in_thread)), "the worker does not answer its own user"
    os.chmod(worker_in_thread.parent, 0o755)
    os.chmod(worker_in_thread, 0o777)

    def client(path: str, out: int) -> None:
        os.write(out, b"REPLY:" + hello(path))

    out_r, out_w = os.pipe()
    pid = as_nobody(client, str(worker_in_thread), out_w)
    try:
        assert select.select([out_r], [], [], 30)[0], "the client child did not report"
        reply = os.read(out_r, 8192)
    finally:
        stop(pid)
    assert reply == b"REPLY:", f"the worker answered a client of uid {NOBODY}: {reply[6:200]!r}"


def test_the_client_sends_the_worker_the_environment_dbt_would_see_here(
    shop: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One environment: the worker's dbt sees exactly what dbt in the doit process would (a variable read
    by a name computed in Jinja, or dbt's DBT_ENV_CUSTOM_ENV_*, reaches it too). What listens on the
    socket is the user's own uid (SO_PEERCRED, other tests): it could read this process's environment
    from /proc anyway, so the whole of it is no secret from it."""
    ws = shop
    ws.model("stg_token", "select length('{{ env_var(\"SHOP_API_TOKEN\") }}') as token_length")
    wdir = private_dir()
    received: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    monkeypatch.setenv("PLANWISE_SETUP_WORKER_DIR", str(wdir))
    monkeypatch.setenv("PLANWISE_SETUP_WORKER", "1")
    monkeypatch.setenv("DBT_PASSWORD", SECRET)
    monkeypatch.setenv("SHOP_API_TOKEN", "read-by-stg_token")
    try:
        server.bind(str(WorkerClient(900, wdir).socket_path))
        server.listen(1)

        def serve() -> None:
            conn, _ = server.accept()
            received.append(conn.makefile("rb").readline())
            error = {"type": "ProjectError", "cause": "recorded", "fix": "none"}
            conn.sendall(json.dumps({"event": "done", "error": error}).encode() + b"\n")
            conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        ctx = dbt_context(load_settings(ws.config_path, root=ws.root))
        with pytest.raises(ProjectError, match="recorded"):
            DbtClient(900).parse_project(ctx, {"setup": "*"})
        thread.join(10)
    finally:
        server.close()
        shutil.rmtree(wdir, ignore_errors=True)
    (request,) = received
    env = json.loads(request)["env"]
    assert env == ctx.environ(), "the worker's dbt would see another environment than dbt here"
    assert env.get("SHOP_API_TOKEN") == "read-by-stg_token" and env.get("DUCKDB_PATH") == str(ws.db_path), env


# -- caches never execute code --------------------------------------------------------------


def test_a_planted_manifest_pickle_is_never_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a pickle sealed with the user's key is loaded: a planted one (or one sealed under another
    key) is ignored without running its code; setup's own round-trips."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    manifest_path = tmp_path / "ctx" / "manifest.json"
    manifest_path.parent.mkdir()
    pickled = manifest_path.with_name("manifest.pickle")
    pickled.write_bytes(seal(invoke.PICKLE_PURPOSE, pickle.dumps(("inv-1", {"a manifest": 1}))))  # as _save_pickle does
    assert invoke._load_pickle(manifest_path, "inv-1") == {"a manifest": 1}
    assert invoke._load_pickle(manifest_path, "inv-2") is None

    marker = tmp_path / "pwned"
    pickled.write_bytes(pickle.dumps(("inv-1", _Payload(str(marker)))))
    assert invoke._load_pickle(manifest_path, "inv-1") is None
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "other-user-state"))
    pickled.write_bytes(seal(invoke.PICKLE_PURPOSE, pickle.dumps(("inv-1", _Payload(str(marker))))))  # another key
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert invoke._load_pickle(manifest_path, "inv-1") is None
    assert not marker.exists(), "loading a planted manifest.pickle ran its code"
    key = tmp_path / "state" / "planwise-setup" / "key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700


# -- paths never pasted into SQL ----------------------------------------------------------


@pytest.mark.parametrize(
    "name, refused",
    [
        ("census.parquet", False),
        ("my census 2024.parquet", False),
        ("o'brien/census.parquet", True),
        ("census (1).parquet", True),
        ("census{year}.parquet", True),
        ("a.parquet' union all select * from 'b", True),
        ("line\nbreak.parquet", True),
    ],
)
def test_paths_dbt_duckdb_cannot_quote_are_recognised(name: str, refused: bool) -> None:
    assert (sql_path_problem(f"/data/{name}") is not None) == refused


def _parquet(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE t AS SELECT * FROM (VALUES ('x', true)) v(employee_id, active) WHERE false")
        for i in ids:
            con.execute("INSERT INTO t VALUES (?, true)", [i])
        con.execute("COPY t TO $p (FORMAT parquet)", {"p": str(path)})
    finally:
        con.close()


def census_workspace(root: Path, census: Path) -> Workspace:
    """The smallest project reading a census through the census var, as the demo's stg_census_data does."""
    ws = Workspace(root)
    models = ws.project / "models"
    models.mkdir(parents=True)
    (ws.project / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {
                "name": "hr",
                "version": "1.0",
                "profile": "hr",
                "config-version": 2,
                "models": {"hr": {"+materialized": "table"}},
            }
        )
    )
    (ws.project / "profiles.yml").write_text(
        yaml.safe_dump(
            {
                "hr": {
                    "target": "dev",
                    "outputs": {"dev": {"type": "duckdb", "path": "{{ env_var('DUCKDB_PATH') }}", "threads": 1}},
                }
            }
        )
    )
    (models / "hr.yml").write_text(
        yaml.safe_dump(
            {
                "version": 2,
                "sources": [
                    {
                        "name": "hr",
                        "tables": [
                            {"name": "census", "meta": {"external_location": "{{ var('census_parquet_path') }}"}}
                        ],
                    }
                ],
            }
        )
    )
    (models / "stg_census.sql").write_text("select employee_id, active from {{ source('hr', 'census') }}")
    _parquet(census, ["E1", "E2"])
    ws.config_path.write_text(
        yaml.safe_dump(
            {
                "database": {"path": "warehouse.duckdb"},
                "dbt": {"project_dir": "proj", "setup_selection": "stg_census", "foundation_selection": "stg_census"},
                "census": {"path": str(census), "generate": False},
                "validation": {"census_required_columns": ["employee_id", "active"], "run_dbt_tests": False},
            }
        )
    )
    return ws


@pytest.mark.slow
def test_a_census_path_that_would_inject_sql_is_refused_in_one_line(tmp_path: Path) -> None:
    """A crafted census file name (quote and ``union all``) adds no rows: setup refuses the path with one
    line naming it and the fix (exit 1), instead of blaming the model's SQL or reading other files."""
    root = tmp_path / "x"
    _parquet(root / "a.parquet", ["FROM_A"])
    _parquet(root / "b.parquet", ["INJECTED"])
    census = Path(f"{root}/a.parquet' union all select * from '{root}/b.parquet")  # an existing file, see _parquet
    ws = census_workspace(tmp_path / "ws", census)
    run = ws.doit("setup", json_report=False)
    text = output(run)
    assert "Traceback" not in text, tail(text)
    rows = ws.tables().get("stg_census") if ws.db_path.exists() else None
    assert not rows, f"stg_census built from the crafted path: {rows}"
    assert run.returncode == 1, tail(text)
    lines = [line for line in text.splitlines() if str(census) in line and "fix:" in line]
    assert lines and "single quote" in lines[0], (
        "refused without one line naming the census path and the fix:\n" + tail(text)
    )
    assert "correct models/stg_census.sql" not in text, "wrong hint: the model's SQL is fine, the path is the problem"


# -- secrets and personal data on disk ---------------------------------------------------------


def _readable_by_others(path: Path, root: Path) -> bool:
    """Can another user read ``path``: the file's mode, and every directory from ``root`` down to it."""
    if stat.S_IMODE(path.stat().st_mode) & 0o044 == 0:
        return False
    for parent in path.parents:
        if parent == root.parent:
            break
        if stat.S_IMODE(parent.stat().st_mode) & 0o011 == 0:  # nobody else may enter
            return False
    return True


@pytest.mark.slow
def test_secrets_and_personal_data_on_disk_are_private_and_keyed(built_shop: Workspace) -> None:
    """A model reads a secret with env_var() and a check samples personal rows into the report; built
    under umask 022. The report, history, state and dbt's files holding the secret (rendered SQL,
    partial parse, manifest) are readable by the user only, and no file holds a plain (unkeyed)
    sha256 of the secret (records.json kept one: with a guessable secret, that is the secret)."""
    ws = built_shop
    root = ws.root
    os.chmod(root, 0o755)  # a checkout as people have it (pytest makes its folders 0700)
    ws.model("stg_token", "select length('{{ env_var(\"SHOP_API_TOKEN\") }}') as token_length")
    config = yaml.safe_load(ws.config_path.read_text())
    config["validation"] = {
        "custom_checks": [{"name": "customers_listed", "severity": "warning", "sql": "select * from stg_customers"}]
    }
    ws.config_path.write_text(yaml.safe_dump(config))
    old = os.umask(0o022)
    try:
        run = ws.doit("setup", json_report=False, env={"SHOP_API_TOKEN": SECRET})
    finally:
        os.umask(old)
    assert run.returncode == 0, tail(output(run))

    report = root / "warehouse.setup_report.json"
    assert "ADA" in report.read_text(), "the check's sample rows (personal data) should be in the report"
    sensitive = {report, root / "warehouse.setup_history.jsonl"}
    sensitive |= {p for p in (root / ".planwise").rglob("*") if p.is_file()}  # state
    sensitive |= {p for p in ws.project.rglob("*") if p.is_file() and p.suffix in (".pickle", ".msgpack")}
    holding_secret = {p for p in root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()}
    assert holding_secret, "the secret should be somewhere (dbt's rendered SQL): the test would prove nothing"
    exposed = sorted(
        f"{stat.filemode(p.stat().st_mode)} {p.relative_to(root)}"
        for p in sensitive | holding_secret
        if _readable_by_others(p, root)
    )
    assert not exposed, "readable by other users:\n" + "\n".join(exposed)

    plain = hashlib.sha256(SECRET.encode()).hexdigest()[:12]
    holders = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and plain.encode() in p.read_bytes()
    )
    assert not holders, f"plain sha256 of SHOP_API_TOKEN's value stored in: {holders}"
    records = BuildRecords.load(root / ".planwise" / "warehouse.duckdb" / "projects" / "shop" / "records.json")
    part = records.records["model.shop.stg_token"].parts["env:SHOP_API_TOKEN"]
    assert part.startswith("hmac:"), part
