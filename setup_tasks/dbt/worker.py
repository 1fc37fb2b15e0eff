"""A warm dbt process: keeps dbt imported and manifests loaded between setup runs.

Importing dbt and its first invocation cost about 4 s of every build, whatever the
build is. The worker pays that once; each later build in the same session costs what
dbt's own work costs. It serves one request at a time over a Unix socket (private to
the user), holds no database open between requests, and exits after a quiet period.
A worker only serves clients of the same code and dbt versions: each combination has
its own socket.

    python -m setup_tasks.dbt.worker --socket PATH --idle 900     # started by the client

The protocol is JSON lines: one request, then events (``start``, ``outcome``,
``log``) and a final ``done``. A client that sends ``cancel`` or goes away cancels
the dbt invocation, as Ctrl-C would.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from ..errors import SetupError
from ..project.context import DbtContext
from . import invoke


class Target:
    """What dbt needs of a node: its id and a selector."""

    def __init__(self, unique_id: str, selector: str) -> None:
        self.unique_id = unique_id
        self.selector = selector


def context_to_dict(ctx: DbtContext) -> dict[str, Any]:
    return {
        "project_dir": str(ctx.project_dir), "profiles_dir": str(ctx.profiles_dir), "target": ctx.target,
        "vars": json.loads(json.dumps(dict(ctx.vars), default=str)), "threads": ctx.threads,
        "database_path": str(ctx.database_path), "duckdb_threads": ctx.duckdb_threads,
        "duckdb_memory_limit": ctx.duckdb_memory_limit,
    }


def context_from_dict(data: dict[str, Any]) -> DbtContext:
    return DbtContext(
        project_dir=Path(data["project_dir"]), profiles_dir=Path(data["profiles_dir"]), target=data["target"],
        vars=data["vars"], threads=data["threads"], database_path=Path(data["database_path"]),
        duckdb_threads=data.get("duckdb_threads"), duckdb_memory_limit=data.get("duckdb_memory_limit"),
    )


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
        except (OSError, ValueError):
            return None
        return json.loads(line) if line.strip() else None


class Worker:
    """Serves requests sequentially until idle for ``idle`` seconds."""

    def __init__(self, socket_path: Path, idle: float) -> None:
        self.socket_path = socket_path
        self.idle = idle
        self.dbt = invoke.InProcessDbt()
        self.busy = False
        self.state = threading.Lock()

    def serve(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket_path.unlink(missing_ok=True)
        server.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        server.listen(8)
        server.settimeout(self.idle)
        try:
            while True:
                try:
                    sock, _ = server.accept()
                except socket.timeout:
                    return  # idle long enough: let the machine have its memory back
                except KeyboardInterrupt:
                    continue  # a cancel that arrived after its request finished
                sock.settimeout(None)
                if not self.handle(Connection(sock)):
                    return
        finally:
            server.close()
            self.socket_path.unlink(missing_ok=True)

    def handle(self, conn: Connection) -> bool:
        """Answer one request; False when asked to shut down."""
        try:
            request = conn.receive()
            if request is None:
                return True
            op = request.get("op")
            if op == "hello":
                conn.send({"event": "done", "result": {"pid": os.getpid()}})
                return True
            if op == "shutdown":
                conn.send({"event": "done", "result": "bye"})
                return False
            self.run(request, conn)
            return True
        except KeyboardInterrupt:
            return True
        finally:
            conn.open = False
            conn.sock.close()

    def run(self, request: dict[str, Any], conn: Connection) -> None:
        """Run one dbt request in the client's environment, watching for a cancel."""
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        os.environ.clear()
        os.environ.update(request.get("env") or saved_env)
        os.chdir(request.get("cwd") or saved_cwd)
        self.busy = True
        threading.Thread(target=self.watch, args=(conn,), daemon=True).start()
        try:
            reply: dict[str, Any] = {"event": "done", "result": self.dispatch(request, conn)}
        except KeyboardInterrupt:
            reply = {"event": "done", "cancelled": True}
        except SetupError as err:
            reply = {"event": "done", "error": {"type": type(err).__name__, "cause": err.cause, "fix": err.fix}}
        except Exception as exc:  # report, and stay up for the next request
            reply = {"event": "done", "error": {"type": "crash", "cause": f"{type(exc).__name__}: {exc}", "fix": ""}}
        finally:
            self.finish(saved_env, saved_cwd)
        conn.send(reply)

    def finish(self, env: dict[str, str], cwd: str) -> None:
        """Back to the worker's own environment, even if a late cancel lands meanwhile."""
        while True:
            try:
                with self.state:
                    self.busy = False
                os.environ.clear()
                os.environ.update(env)
                os.chdir(cwd)
                return
            except KeyboardInterrupt:
                continue

    def watch(self, conn: Connection) -> None:
        """A cancel from the client, or the client going away, interrupts dbt like Ctrl-C."""
        message = conn.receive()
        if message is None or message.get("op") == "cancel":
            with self.state:
                if self.busy:
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def dispatch(self, request: dict[str, Any], conn: Connection) -> Any:
        ctx = context_from_dict(request["ctx"])
        if request["op"] == "parse":
            _, resolved = self.dbt.parse_project(ctx, request["selections"])
            return {name: list(ids) for name, ids in resolved.items()}
        targets = [Target(uid, selector) for uid, selector in request["targets"]]
        on_outcome: Callable[[Any], None] = lambda o: conn.send({"event": "outcome", **asdict(o)})
        on_start: Callable[[str], None] = lambda uid: conn.send({"event": "start", "unique_id": uid})
        log = None if request.get("quiet", True) else (lambda line: conn.send({"event": "log", "line": line}))
        manifest_path = Path(request["manifest_path"])
        if request["op"] == "build":
            self.dbt.build_nodes(ctx, manifest_path, targets, on_outcome, request.get("quiet", True), on_start, log)
        elif request["op"] == "tests":
            self.dbt.run_tests(ctx, manifest_path, targets, on_outcome, request.get("quiet", True), log)
        else:
            raise ValueError(f"unknown request {request['op']!r}")
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="planwise-setup's warm dbt worker (started by doit runs)")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--idle", type=float, default=900.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.perf_counter()
    invoke.warm_up()
    print(f"worker {os.getpid()} ready in {time.perf_counter() - started:.1f}s on {args.socket}", flush=True)
    Worker(args.socket, args.idle).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
