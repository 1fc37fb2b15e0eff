"""Where dbt runs: in the warm worker when one can serve, else in this process.

Same calls either way: ``install_packages``, ``parse_project``, ``build_nodes``, ``run_tests``.
The worker (``setup_tasks.dbt.worker``) is started on first use and reused by later
runs until it has been idle for ``dbt.worker_idle_seconds``; 0 (or the environment
variable ``PLANWISE_SETUP_WORKER=0``) keeps dbt in the doit process. If the worker
cannot start, cannot be trusted, stops answering or dies mid-request, the request
runs here instead, and one line says why: never a failed setup for the sake of speed.

The worker lives in setup's worker folder (``user_folders.worker_folder``:
``$XDG_RUNTIME_DIR/planwise-setup`` when set, else ``$TMPDIR/planwise-setup-<uid>``, or
``PLANWISE_SETUP_WORKER_DIR``). It is used only when it is the user's own, mode 0700 and
not a symlink; files in it are opened relative to the verified directory without
following symlinks, and the socket's listener must be the user's own uid (SO_PEERCRED).
Requests carry the environment dbt would see in the doit process (``DbtContext.environ``):
the worker's dbt and an in-process dbt never build different tables (a same-uid peer could
read it from /proc anyway).

A database lock held by one of the user's workers is setup's own: ``DbtClient.free_database``
recognises it (the worker says its pid), ends an idle worker that still holds the file
(it should not: it releases every database after each request) and says so, or names the
run the worker is building for.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .. import errors
from ..errors import PackagesError
from ..files import log, pid_alive
from ..project.context import PROCESS_ENV, DbtContext, DbtProfile
from ..project.manifest import Node
from ..project.packages import Package
from ..store.caches import manifest_cache
from ..user_folders import RUNTIME_ENV, STATE_ENV, WORKER_DIR_ENV, FolderUnusable, UserFolder, open_file, worker_folder
from .invoke import InProcessDbt, NodeOutcome, Parsed
from .worker import context_to_dict, peer_uid

Log = Callable[[str], None]  # takes dbt's own lines (-v 2)
Phase = Callable[[str], None]  # hears "starting" (dbt is being loaded) and "parsing"
WORKER_ENV = "PLANWISE_SETUP_WORKER"
START_TIMEOUT = 90.0
PROBE_TIMEOUT = 3.0  # seconds to reach a package host before `dbt deps` is not even tried
CANCEL_GRACE = 60.0
# The worker says "alive" every few seconds while it runs or queues a request: this much
# silence means it is stuck or gone.
SILENCE_TIMEOUT = 45.0
# What the worker process itself is started with (its requests bring dbt's environment).
WORKER_START_ENV = (*PROCESS_ENV, STATE_ENV, RUNTIME_ENV, "PYTHONPATH", "VIRTUAL_ENV")
END_TIMEOUT = 15.0  # seconds an idle worker told to stop may take to let go of a database


class WorkerUnavailable(Exception):
    """The worker could not be reached, trusted or kept answering; the caller runs dbt itself."""


def code_version() -> str:
    """Workers serve only clients of the same code, Python and dbt."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(sys.executable.encode())
    for path in sorted(package.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(package)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for dist in ("dbt-core", "dbt-duckdb", "duckdb"):
        try:
            digest.update(metadata.version(dist).encode())
        except metadata.PackageNotFoundError:
            pass
    return digest.hexdigest()[:16]


class WorkerClient:
    """Talks to (and if needed starts) the worker for this code version."""

    def __init__(self, idle_seconds: float, directory: Path | None = None) -> None:
        self.idle = idle_seconds
        self.folder = worker_folder() if directory is None else UserFolder(directory, "worker", WORKER_DIR_ENV)
        self.dir = self.folder.path
        self.process: subprocess.Popen[bytes] | None = None

    @cached_property
    def version(self) -> str:
        return code_version()

    @property
    def socket_path(self) -> Path:
        return self.dir / f"worker-{self.version}.sock"

    def request(
        self,
        payload: dict[str, Any],
        on_event: Callable[[dict[str, Any]], None],
        on_connected: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Send one request and follow its events; ``on_connected``: the worker answers (it started first
        if none ran: it imports dbt before it listens)."""
        sock = self._connect()
        if on_connected is not None:
            on_connected()
        try:
            sock.sendall((json.dumps(payload, default=str) + "\n").encode())
            return self._events(sock, on_event)
        finally:
            sock.close()

    def _events(self, sock: socket.socket, on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        sock.settimeout(SILENCE_TIMEOUT)
        reader = sock.makefile("r", encoding="utf-8")
        interrupted = False
        while True:
            try:
                line = reader.readline()
            except KeyboardInterrupt:
                # Ctrl-C here: ask the worker to cancel dbt, keep the outcomes of nodes
                # that finished meanwhile, then stop as Ctrl-C stops.
                interrupted = True
                self._cancel(sock)
                continue
            except OSError:  # timed out: no word, not even "alive"
                raise WorkerUnavailable(f"the worker said nothing for {SILENCE_TIMEOUT:.0f} s") from None
            if not line:
                if interrupted:  # cancelled before it ran, or the worker died meanwhile: stop as Ctrl-C stops
                    raise KeyboardInterrupt
                raise WorkerUnavailable("the worker went away mid-request")
            try:
                event = json.loads(line)
            except ValueError:
                raise WorkerUnavailable("the worker answered something that is not JSON") from None
            kind = event.get("event")
            if kind == "alive":
                continue
            if kind == "queued":
                log.warning("waiting for the dbt worker: busy with %s", event.get("busy_with", "another request"))
                continue
            if kind == "done":
                if isinstance(event.get("exiting"), int):  # it still held a database: gone before we open it
                    self.wait_gone(event["exiting"])
                if interrupted or event.get("cancelled"):
                    raise KeyboardInterrupt
                return event
            on_event(event)

    @staticmethod
    def _cancel(sock: socket.socket) -> None:
        try:
            sock.sendall(b'{"op": "cancel"}\n')
        except OSError:
            pass
        sock.settimeout(CANCEL_GRACE)

    def _open_dir(self) -> int:
        try:
            return self.folder.open()
        except FolderUnusable as exc:
            raise WorkerUnavailable(str(exc)) from None
        except OSError as exc:
            raise WorkerUnavailable(f"setup's worker folder {self.dir}: {exc.strerror or exc}") from None

    def serving(self) -> bool:
        """Is a socket of this version's worker there (none is started)? False when the folder cannot be looked in."""
        try:
            return self.socket_path.exists()
        except OSError:
            return False

    def _connect(self) -> socket.socket:
        directory = self._open_dir()
        try:
            sock = self._try_connect()
            if sock is not None:
                return sock
            with os.fdopen(self._open_file(directory, "lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time
                sock = self._try_connect()
                if sock is None:
                    self._start(directory)
                    sock = self._wait()
                    log.warning(
                        "started a dbt worker (PID %s) for later runs: it keeps dbt loaded until %s pass "
                        "without one (dbt.worker_idle_seconds; PLANWISE_SETUP_WORKER=0: dbt in each run)",
                        self.process.pid if self.process else "?",
                        idle_words(self.idle),
                    )
                return sock
        finally:
            os.close(directory)

    def _open_file(self, directory: int, suffix: str) -> int:
        name = f"worker-{self.version}.{suffix}"
        try:
            return open_file(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, directory)
        except OSError as exc:  # a symlink planted there (ELOOP), or not ours
            raise WorkerUnavailable(f"cannot use {self.dir / name}: {exc.strerror or exc}") from None

    def _try_connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.socket_path))
            uid = peer_uid(sock)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except OSError as exc:
            sock.close()
            raise WorkerUnavailable(str(exc)) from None
        if uid != os.getuid():
            sock.close()  # nothing was sent: an impostor never sees a request
            self.socket_path.unlink(missing_ok=True)
            raise WorkerUnavailable(
                f"the worker socket {self.socket_path} was served by uid {uid}, not by you: removed it"
            )
        return sock

    def _start(self, directory: int) -> None:
        self.socket_path.unlink(missing_ok=True)  # left by a worker that died
        log_fd = self._open_file(directory, "log")
        # The worker must run this very code (a checkout may differ from what is installed).
        package_root = str(Path(__file__).resolve().parent.parent.parent)
        env = {k: os.environ[k] for k in WORKER_START_ENV if k in os.environ}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "setup_tasks.dbt.worker",
                    "--socket",
                    str(self.socket_path),
                    "--idle",
                    str(self.idle),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                close_fds=True,
                start_new_session=True,
                cwd=str(self.dir),
                env=env,
            )
        finally:
            os.close(log_fd)

    def _wait(self) -> socket.socket:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            sock = self._try_connect()
            if sock is not None:
                return sock
            if self.process is not None and self.process.poll() is not None:
                raise WorkerUnavailable(f"the worker exited with status {self.process.returncode}")
            time.sleep(0.05)
        raise WorkerUnavailable("the worker did not start in time")

    def shutdown(self) -> None:
        sock = self._try_connect()
        if sock is not None:
            with sock:
                sock.sendall(b'{"op": "shutdown"}\n')
                sock.recv(1024)

    # -- the user's workers, whatever their version: who holds a database ------------------------------

    def workers(self) -> dict[int, tuple[Path, dict[str, Any]]]:
        """The user's workers serving in this folder (every code version): pid -> (socket, what it says
        of itself: ``busy_with``). Nothing when the folder cannot be used."""
        try:
            directory = self.folder.open(create=False)
        except OSError:
            return {}
        try:
            names = sorted(n for n in os.listdir(directory) if n.startswith("worker-") and n.endswith(".sock"))
        finally:
            os.close(directory)
        found = {}
        for name in names:
            said = _ask(self.dir / name, "hello")
            if isinstance(said, dict) and isinstance(said.get("pid"), int):
                found[said["pid"]] = (self.dir / name, said)
        return found

    def end(self, pid: int, path: Path) -> bool:
        """Stop the worker ``pid`` serving at ``path`` (it finishes nothing: it is idle); True once it is gone."""
        _ask(path, "shutdown")
        if self.wait_gone(pid):
            return True
        try:
            os.kill(pid, signal.SIGKILL)  # idle, ours (its socket's peer is our uid), and deaf to shutdown
        except OSError:
            pass
        return self.wait_gone(pid)

    def wait_gone(self, pid: int, timeout: float = END_TIMEOUT) -> bool:
        """Wait (up to ``timeout``) for worker ``pid`` to end; True when it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.pid == pid:
                if self.process.poll() is not None:  # started by this process: reaped
                    return True
            elif _ended(pid):
                return True
            time.sleep(0.05)
        return False


def _ended(pid: int) -> bool:
    """Has process ``pid`` ended (reaped here when it was a child of this process)?"""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    return not pid_alive(pid)


def _ask(path: Path, op: str) -> Any:
    """One short request (``hello``, ``shutdown``) to the worker at ``path``: its result, or None when no
    worker of this user answers there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(PROBE_TIMEOUT)
    try:
        sock.connect(str(path))
        if peer_uid(sock) != os.getuid():
            return None  # nothing is sent to another user's socket
        sock.sendall(json.dumps({"op": op}).encode() + b"\n")
        line = sock.makefile("r", encoding="utf-8").readline()
        said = json.loads(line) if line else None
    except (OSError, ValueError):
        return None
    finally:
        sock.close()
    return said.get("result") if isinstance(said, dict) else None


def idle_words(seconds: float) -> str:
    """'15 minutes', '90 seconds'."""
    return f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} seconds"


def _hosts(packages: Sequence[Package]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for package in packages:
        if package.host:
            found.setdefault(package.host, []).append(package.label)
    return found


def _unreachable(host: str) -> str | None:
    """Why ``host`` cannot be reached over HTTPS now (None when it can): one quick try."""
    try:
        socket.create_connection((host, 443), timeout=PROBE_TIMEOUT).close()
    except socket.gaierror:
        return "no network: its name does not resolve"
    except OSError as exc:
        return f"no network: {exc.strerror or exc}"
    return None


def _raise_remote(error: Mapping[str, Any]) -> None:
    cls = getattr(errors, error.get("type", ""), None)
    if isinstance(cls, type) and issubclass(cls, errors.PlanwiseError):
        # Rebuilt from its words, not its arguments: a GraphCycleError is made from a path, not a cause.
        err = cls.__new__(cls)
        errors.PlanwiseError.__init__(err, error.get("cause", ""), error.get("fix", ""))
        raise err
    raise WorkerUnavailable(error.get("cause", "the worker failed"))


class DbtClient:
    """Runs dbt requests for one engine: through the warm worker when enabled, else in this process."""

    def __init__(self, idle_seconds: float) -> None:
        enabled = idle_seconds > 0 and os.environ.get(WORKER_ENV, "1") not in ("0", "false", "off")
        self.client = WorkerClient(idle_seconds) if enabled else None
        self.local = InProcessDbt()
        self.idle = idle_seconds

    def free_database(self, pid: int) -> tuple[str, str | None] | None:
        """A database lock held by process ``pid``: None when it is not one of setup's workers. An idle
        worker that still holds it (an earlier build failed in a way that kept it) is ended, and the
        run says so: (holder, None). One busy with a request: (holder and the run it builds for, the fix)."""
        finder = self.client or WorkerClient(self.idle or 1)  # a worker of earlier runs, even with it off now
        found = finder.workers().get(pid)
        if found is None:
            return None
        path, said = found
        holder = f"setup's dbt worker (PID {pid})"
        if said.get("busy_with"):
            return f"{holder}, running dbt for {said['busy_with']}", "wait for that run to finish, then run again"
        if not finder.end(pid, path):
            return holder, f"end it (kill {pid}): it is setup's own warm worker, and did not stop when asked"
        log.warning(
            "%s still held the database after an earlier request: ended it (the next build starts a fresh one)", holder
        )
        return holder, None

    def _remote(
        self,
        payload: dict[str, Any],
        on_event: Callable[[dict[str, Any]], None],
        on_connected: Callable[[], None] | None = None,
    ) -> Any:
        assert self.client is not None
        ctx: DbtContext = payload["ctx"]
        payload = {
            **payload,
            "ctx": context_to_dict(ctx),
            "env": ctx.environ(),
            "cwd": str(ctx.cwd),
            "who": f"setup of {ctx.database_path or ctx.project_dir} (PID {os.getpid()})",
        }
        done = self.client.request(payload, on_event, on_connected)
        if done.get("error"):
            _raise_remote(done["error"])
        return done.get("result")

    def _local_fallback(self, reason: Exception) -> None:
        log.warning("dbt runs in this process: the warm worker is not used (%s)", reason)
        self.client = None

    def _starting(self, on_phase: Phase | None) -> None:
        """Say "starting" before a request that has to start the worker first (dbt's import, there)."""
        if on_phase is not None and self.client is not None and not self.client.serving():
            on_phase("starting")

    def starting_words(self) -> str:
        """What a run waits for while dbt starts, for the live line."""
        if self.client is None:
            return "starting dbt (importing it)"
        return f"starting dbt (in a worker, kept {idle_words(self.client.idle)} idle)"

    def parse_project(
        self, ctx: DbtContext, selections: Mapping[str, str], full: bool = False, on_phase: Phase | None = None
    ) -> Parsed:
        if self.client is not None:
            try:
                self._starting(on_phase)
                # "parsing" once the worker answers: not while it starts (it imports dbt first).
                parsing = (lambda: on_phase("parsing")) if on_phase is not None else None
                result = self._remote(
                    {"op": "parse", "ctx": ctx, "selections": dict(selections), "full": full}, lambda e: None, parsing
                )
                raw = json.loads(manifest_cache(ctx).manifest_path.read_text())
                resolved = {k: tuple(v) for k, v in result["selections"].items()}
                return Parsed(
                    raw, resolved, DbtProfile.from_dict(result["profile"]), tuple(result.get("env_reads") or ())
                )
            except WorkerUnavailable as exc:
                self._local_fallback(exc)
        return self.local.parse_project(ctx, selections, full, on_phase)

    def install_packages(self, ctx: DbtContext, packages: Sequence[Package]) -> None:
        """`dbt deps`, after making sure the hosts it needs answer: dbt itself retries for about
        19 s and ends in a traceback when there is no network."""
        for host, labels in sorted(_hosts(packages).items()):
            problem = _unreachable(host)
            if problem:
                local = labels[0].split("/")[-1].split()[0].removesuffix(".git")
                raise PackagesError(
                    f"dbt deps could not reach {host} for {', '.join(labels)} ({problem})",
                    f"connect to the network and run again; offline, copy the package beside the project and "
                    f'list it in packages.yml as "- local: ../{local}"',
                )
        if self.client is not None:
            try:
                self._remote({"op": "deps", "ctx": ctx}, lambda e: None)
                return
            except WorkerUnavailable as exc:
                self._local_fallback(exc)
        self.local.install_packages(ctx)

    def build_nodes(
        self,
        ctx: DbtContext,
        manifest_path: Path,
        nodes: Sequence[Node],
        on_outcome: Callable[[NodeOutcome], None],
        quiet: bool = True,
        on_start: Callable[[str], None] | None = None,
        dbt_lines: Log | None = None,
        on_phase: Phase | None = None,
        edges: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._run("build", ctx, manifest_path, nodes, on_outcome, quiet, on_start, dbt_lines, on_phase, edges)

    def run_tests(
        self,
        ctx: DbtContext,
        manifest_path: Path,
        tests: Sequence[Node],
        on_outcome: Callable[[NodeOutcome], None],
        quiet: bool = True,
        dbt_lines: Log | None = None,
        on_phase: Phase | None = None,
    ) -> None:
        self._run("tests", ctx, manifest_path, tests, on_outcome, quiet, None, dbt_lines, on_phase)

    def compile_nodes(
        self,
        ctx: DbtContext,
        manifest_path: Path,
        nodes: Sequence[Node],
        on_outcome: Callable[[NodeOutcome], None],
        quiet: bool = True,
        dbt_lines: Log | None = None,
        on_phase: Phase | None = None,
    ) -> None:
        """Compile models and tests without building them (``InProcessDbt.compile_nodes``)."""
        self._run("compile", ctx, manifest_path, nodes, on_outcome, quiet, None, dbt_lines, on_phase)

    def _run(
        self,
        op: str,
        ctx: DbtContext,
        manifest_path: Path,
        nodes: Sequence[Node],
        on_outcome: Callable[[NodeOutcome], None],
        quiet: bool,
        on_start: Callable[[str], None] | None,
        dbt_lines: Log | None = None,
        on_phase: Phase | None = None,
        edges: Sequence[tuple[str, str]] = (),
    ) -> None:
        reported: set[str] = set()
        if not nodes:
            return
        if self.client is not None:
            self._starting(on_phase)

            def on_event(event: dict[str, Any]) -> None:
                kind = event.pop("event")
                if kind == "outcome":
                    reported.add(event["unique_id"])
                    on_outcome(NodeOutcome(**event))
                elif kind == "start" and on_start is not None:
                    on_start(event["unique_id"])
                elif kind == "log":
                    (dbt_lines or print)(event["line"])

            payload = {
                "op": op,
                "ctx": ctx,
                "quiet": quiet and dbt_lines is None,
                "targets": [[n.unique_id, n.selector] for n in nodes],
                "edges": [list(e) for e in edges],
            }
            try:
                self._remote(payload, on_event)
                return
            except WorkerUnavailable as exc:
                self._local_fallback(exc)
                nodes = [n for n in nodes if n.unique_id not in reported]
                if not nodes:
                    return
        if op == "build":
            self.local.build_nodes(ctx, manifest_path, nodes, on_outcome, quiet, on_start, dbt_lines, on_phase, edges)
        elif op == "compile":
            self.local.compile_nodes(ctx, manifest_path, nodes, on_outcome, quiet, dbt_lines, on_phase)
        else:
            self.local.run_tests(ctx, manifest_path, nodes, on_outcome, quiet, dbt_lines, on_phase)
