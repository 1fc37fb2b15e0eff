"""A warm dbt process: keeps dbt imported and manifests loaded between setup runs.

Importing dbt and its first invocation cost about 4 s of every build, whatever the
build is. The worker pays that once; each later build in the same session costs what
dbt's own work costs. It runs one request at a time (dbt runs on its main thread),
holds no database open between requests (after each one it releases every database
dbt opened; if a file is still held, it says so in its answer and exits, so the OS
releases it), and exits after a quiet period. A worker
only serves clients of the same code and dbt versions (each combination has its own
socket), and of the same user: the client starts it in a verified private directory,
and it answers only connections whose peer credentials (SO_PEERCRED) are its own uid.

    python -m setup_tasks.dbt.worker --socket PATH --idle 900     # started by the client

The protocol is JSON lines: one request, then events and a final ``done``. Events:
``queued`` (another request runs: who it is), ``alive`` (every few seconds, so a
client can tell a long build from a dead worker), ``start``, ``outcome``, ``log``. A
client that sends ``cancel`` or goes away cancels its own request, as Ctrl-C would,
and never another one: each request has its own cancel flag, the watcher of a finished
request ends when its connection is shut down, and SIGINT interrupts dbt only while
the cancelled request is the one running.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from ..errors import PlanwiseError
from ..project.context import DbtContext
from ..store.caches import manifest_cache
from . import invoke

HEARTBEAT_SECONDS = 5.0
REQUEST_READ_SECONDS = 30.0  # a client that connects and says nothing is dropped


class Target:
    """What dbt needs of a node: its id and a selector."""

    def __init__(self, unique_id: str, selector: str) -> None:
        self.unique_id = unique_id
        self.selector = selector


def context_to_dict(ctx: DbtContext) -> dict[str, Any]:
    return {
        "project_dir": str(ctx.project_dir),
        "profiles_dir": str(ctx.profiles_dir),
        "target": ctx.target,
        "vars": json.loads(json.dumps(dict(ctx.vars), default=str)),
        "threads": ctx.threads,
        "database_path": None if ctx.database_path is None else str(ctx.database_path),
        "duckdb_threads": ctx.duckdb_threads,
        "duckdb_memory_limit": ctx.duckdb_memory_limit,
        "root": None if ctx.root is None else str(ctx.root),
    }


def context_from_dict(data: dict[str, Any]) -> DbtContext:
    return DbtContext(
        project_dir=Path(data["project_dir"]),
        profiles_dir=Path(data["profiles_dir"]),
        target=data["target"],
        vars=data["vars"],
        threads=data["threads"],
        database_path=None if data["database_path"] is None else Path(data["database_path"]),
        duckdb_threads=data.get("duckdb_threads"),
        duckdb_memory_limit=data.get("duckdb_memory_limit"),
        root=Path(data["root"]) if data.get("root") else None,
    )


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


class Connection:
    """One client connection: JSON lines in, JSON lines out (thread-safe sends)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("r", encoding="utf-8")
        self.lock = threading.Lock()
        self.open = True

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, default=str) + "\n").encode()
        with self.lock:
            if not self.open:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.open = False

    def receive(self) -> dict[str, Any] | None:
        try:
            line = self.reader.readline()
            message = json.loads(line) if line.strip() else None
        except (OSError, ValueError):
            return None
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        """Shut the socket down, so a thread blocked reading it wakes (close alone would not), then close."""
        with self.lock:
            self.open = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Request:
    """One request of one client, with its own cancel flag."""

    def __init__(self, conn: Connection, message: dict[str, Any]) -> None:
        self.conn = conn
        self.message = message
        self.who = str(message.get("who") or "another setup run")
        self.cancelled = False
        self.finished = False


class Worker:
    """Runs requests one at a time, on the main thread, until idle for ``idle`` seconds."""

    def __init__(self, socket_path: Path, idle: float) -> None:
        self.socket_path = socket_path
        self.idle = idle
        self.dbt = invoke.InProcessDbt()
        self.requests: queue.Queue[Request | None] = queue.Queue()
        self.state = threading.Lock()
        self.current: Request | None = None
        self.waiting: list[Request] = []
        self.interruptible = False
        self.main_thread: int = threading.main_thread().ident  # type: ignore[assignment]  # set: the main thread runs
        self.exiting = False  # a database is still held after a request: serve no more

    # -- serving ----------------------------------------------------------------------------

    def serve(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket_path.unlink(missing_ok=True)
        server.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        server.listen(16)
        threading.Thread(target=self.accept, args=(server,), daemon=True).start()
        threading.Thread(target=self.heartbeat, daemon=True).start()
        try:
            while True:
                try:
                    request = self.requests.get(timeout=self.idle)
                except queue.Empty:
                    return  # idle long enough: let the machine have its memory back
                if request is None:
                    return
                self.run(request)
                if self.exiting:
                    return
        finally:
            server.close()
            self.socket_path.unlink(missing_ok=True)

    def accept(self, server: socket.socket) -> None:
        """Accept connections of this user only; each gets a thread that reads its request and then watches it."""
        while True:
            try:
                sock, _ = server.accept()
            except OSError:
                return  # the server closed
            try:
                mine = peer_uid(sock) == os.getuid()
            except OSError:
                mine = False
            if not mine:
                sock.close()  # another user's client: no answer at all
                continue
            threading.Thread(target=self.receive, args=(sock,), daemon=True).start()

    def receive(self, sock: socket.socket) -> None:
        sock.settimeout(REQUEST_READ_SECONDS)
        conn = Connection(sock)
        message = conn.receive()
        sock.settimeout(None)
        op = message.get("op") if message else None
        if op not in ("deps", "parse", "build", "tests", "compile"):
            if op == "hello":
                with self.state:
                    busy = self.current.who if self.current is not None else None
                conn.send({"event": "done", "result": {"pid": os.getpid(), "busy_with": busy}})
            elif op == "shutdown":
                conn.send({"event": "done", "result": "bye"})
                self.requests.put(None)
            conn.close()
            return
        assert message is not None
        request = Request(conn, message)
        with self.state:
            ahead = self.current or (self.waiting[0] if self.waiting else None)
            self.waiting.append(request)
            if ahead is not None:
                conn.send({"event": "queued", "busy_with": ahead.who})
        self.requests.put(request)
        self.watch(request)

    def watch(self, request: Request) -> None:
        """A cancel from the client, or the client going away, cancels this request (and only it).

        Returns when the connection ends: the client's hang-up, or the worker shutting
        the connection down after the reply (then the request is finished: nothing to cancel).
        """
        message = request.conn.receive()
        if message is None or message.get("op") == "cancel":
            self.cancel(request)
        while message is not None:  # read to the end, so the next message cannot be lost
            message = request.conn.receive()

    def cancel(self, request: Request) -> None:
        with self.state:
            if request.finished or request.cancelled:
                return
            request.cancelled = True
            if self.current is request and self.interruptible:
                signal.pthread_kill(self.main_thread, signal.SIGINT)

    def on_sigint(self, signum: int, frame: Any) -> None:
        """SIGINT interrupts dbt only while the request it runs for is cancelled (a late one is ignored)."""
        current = self.current
        if self.interruptible and current is not None and current.cancelled:
            raise KeyboardInterrupt

    def heartbeat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self.state:
                connections = [r.conn for r in ([self.current] if self.current else []) + self.waiting]
            for conn in connections:
                conn.send({"event": "alive"})

    # -- running one request -------------------------------------------------------------------

    def run(self, request: Request) -> None:
        """Run one request in its client's environment; always answer it (unless it was cancelled while queued)."""
        with self.state:
            self.waiting.remove(request)
            if request.cancelled:
                request.finished = True
            else:
                self.current = request
        if request.finished:  # cancelled while it waited
            request.conn.send({"event": "done", "cancelled": True})
            request.conn.close()
            return
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        try:
            try:
                # The client's whole environment, as dbt in the client's process would see it: one environment.
                os.environ.clear()
                os.environ.update(request.message.get("env") or saved_env)
                os.chdir(request.message.get("cwd") or saved_cwd)
                self.interruptible = True
                try:
                    result = self.dispatch(request.message, request.conn)
                finally:
                    self.interruptible = False
                reply: dict[str, Any] = {"event": "done", "result": result}
            except KeyboardInterrupt:
                reply = {"event": "done", "cancelled": True}
            except PlanwiseError as err:
                reply = {"event": "done", "error": {"type": type(err).__name__, "cause": err.cause, "fix": err.fix}}
            except Exception as exc:  # report, and stay up for the next request
                reply = {
                    "event": "done",
                    "error": {"type": "crash", "cause": f"{type(exc).__name__}: {exc}", "fix": ""},
                }
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)
            try:
                held = invoke.release_database()
            except Exception as exc:  # cannot tell what it still holds: end, so the OS releases it all
                held = [f"a database ({type(exc).__name__}: {exc})"]
            with self.state:
                self.current = None
                request.finished = True
        if held:  # the client waits for this process to end before it opens the database
            print(f"worker {os.getpid()} still holds {', '.join(held)} after a request: exiting", flush=True)
            self.exiting = True
            reply["exiting"] = os.getpid()
        request.conn.send(reply)
        request.conn.close()

    def dispatch(self, request: dict[str, Any], conn: Connection) -> Any:
        ctx = context_from_dict(request["ctx"])
        if request["op"] == "deps":
            self.dbt.install_packages(ctx)
            return None
        if request["op"] == "parse":
            parsed = self.dbt.parse_project(ctx, request["selections"], bool(request.get("full")))
            return {
                "selections": {name: list(ids) for name, ids in parsed.selections.items()},
                "profile": parsed.profile.as_dict(),
                "env_reads": list(parsed.env_reads),
            }
        targets = [Target(uid, selector) for uid, selector in request["targets"]]
        on_outcome: Callable[[Any], None] = lambda o: conn.send({"event": "outcome", **asdict(o)})
        on_start: Callable[[str], None] = lambda uid: conn.send({"event": "start", "unique_id": uid})
        log = None if request.get("quiet", True) else (lambda line: conn.send({"event": "log", "line": line}))
        # Only the manifest this worker's own parses cached for the context: a request names no file.
        manifest_path = manifest_cache(ctx).manifest_path
        if request["op"] == "build":
            edges = [(reader, builder) for reader, builder in request.get("edges") or ()]
            self.dbt.build_nodes(
                ctx, manifest_path, targets, on_outcome, request.get("quiet", True), on_start, log, edges=edges
            )
        elif request["op"] == "compile":
            self.dbt.compile_nodes(ctx, manifest_path, targets, on_outcome, request.get("quiet", True), log)
        else:
            self.dbt.run_tests(ctx, manifest_path, targets, on_outcome, request.get("quiet", True), log)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="planwise-setup's warm dbt worker (started by doit runs)")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--idle", type=float, default=900.0)
    args = parser.parse_args(argv)
    worker = Worker(args.socket, args.idle)
    signal.signal(signal.SIGINT, worker.on_sigint)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # ends serve(): its socket is removed
    started = time.perf_counter()
    invoke.warm_up()
    print(f"worker {os.getpid()} ready in {time.perf_counter() - started:.1f}s on {args.socket}", flush=True)
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
