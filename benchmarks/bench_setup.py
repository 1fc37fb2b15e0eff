"""Benchmark: planwise-setup against `dbt build` and against one dbt process per node.

Runs on a temporary copy of the demo project (dbt/) with its own database and census,
alternating the commands round by round so that machine noise hits all of them alike,
and reports medians and ratios. Writes BENCHMARKS.md with the machine it ran on.

    python benchmarks/bench_setup.py --rounds 5 --per-node-rounds 1

Not a test: the numbers depend on the machine, so nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
EDITED_SEED = "config_cola_by_year"
COLD = "doit setup (cold: database deleted)"
FORGET_ALL = "doit forget -a && doit setup"
OVERRIDES = ("DUCKDB_PATH", "DBT_TARGET", "DBT_PROFILES_DIR", "DBT_PROJECT_DIR", "CENSUS_PATH", "SETUP_CONFIG")


@dataclass
class Bench:
    root: Path
    employees: int
    timings: dict[str, list[float]] = field(default_factory=dict)

    @property
    def project(self) -> Path:
        return self.root / "dbt"

    @property
    def config(self) -> Path:
        return self.root / "setup.yaml"

    @property
    def census(self) -> Path:
        return self.root / "census.parquet"

    def prepare(self) -> None:
        shutil.copytree(REPO / "dbt", self.project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
        self.config.write_text(yaml.safe_dump({
            "database": {"path": "setup.duckdb"},
            "dbt": {"project_dir": "dbt"},
            "census": {"path": "census.parquet", "employees": self.employees},
        }))
        self.run_doit("census")
        self.run_doit("list")  # parse once, as any user's first command does

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
        env.update(extra)
        return env

    def run_doit(self, *args: str, worker: bool = True) -> float:
        cmd = [sys.executable, "-m", "doit", *args, f"config={self.config}"]
        extra = {"PLANWISE_SETUP_WORKER_DIR": str(self.root / "w")}
        if not worker:
            extra["PLANWISE_SETUP_WORKER"] = "0"
        return self._timed(cmd, REPO, self.env(**extra))

    def run_dbt(self, database: Path, *args: str) -> float:
        dbt = shutil.which("dbt") or "dbt"
        variables = json.dumps({"census_parquet_path": str(self.census)})
        cmd = [dbt, *args, "--project-dir", str(self.project), "--profiles-dir", str(self.project),
               "--vars", variables, "--quiet", "--no-send-anonymous-usage-stats"]
        return self._timed(cmd, self.project, self.env(DUCKDB_PATH=str(database)))

    @staticmethod
    def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return elapsed

    def record(self, name: str, seconds: float) -> None:
        self.timings.setdefault(name, []).append(seconds)
        print(f"  {name:<34} {seconds:7.2f} s", flush=True)

    # -- the measured commands --------------------------------------------------------

    def cold_setup(self, worker: bool) -> None:
        for path in (self.root / "setup.duckdb", self.root / "setup.duckdb.wal"):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.root / ".planwise", ignore_errors=True)
        label = COLD + ("" if worker else ", dbt in process")
        self.record(label, self.run_doit("setup", worker=worker))

    def noop_setup(self) -> None:
        self.record("doit setup (nothing to do)", self.run_doit("setup"))

    def forget_all_setup(self) -> None:
        """Everything forgotten: one dbt run rebuilds it all, on a database that holds it (no more than cold)."""
        started = time.perf_counter()
        self.run_doit("forget", "-a")
        self.run_doit("setup")
        self.record(FORGET_ALL, time.perf_counter() - started)

    def seed_edit_setup(self, round_no: int, worker: bool = True) -> None:
        seed = self.project / "seeds" / f"{EDITED_SEED}.csv"
        lines = seed.read_text().splitlines()
        header, rows = lines[0], lines[1:]
        # alternate between two real contents: the rate of the last year moves by a basis point
        year, rate = rows[-1].split(",")[:2]
        rows[-1] = f"{year},{float(rate) + (0.0001 if round_no % 2 == 0 else -0.0001):.4f}"
        seed.write_text("\n".join([header, *rows]) + "\n")
        label = "doit setup (one seed edited)" + ("" if worker else ", dbt in process")
        self.record(label, self.run_doit("setup", worker=worker))

    def dbt_build(self) -> None:
        database = self.root / "dbt_build.duckdb"
        database.unlink(missing_ok=True)
        selection = "resource_type:seed path:models/staging"
        self.record("dbt build (one CLI process)", self.run_dbt(database, "build", "--select", selection))

    def dbt_per_node(self) -> None:
        database = self.root / "per_node.duckdb"
        database.unlink(missing_ok=True)
        manifest = json.loads((self.project / "target" / "manifest.json").read_text())
        nodes = sorted((n for n in manifest["nodes"].values()
                        if n["resource_type"] in ("seed", "model") and
                        (n["resource_type"] == "seed" or n["original_file_path"].startswith("models/staging"))),
                       key=lambda n: (n["resource_type"] != "seed", n["name"]))
        started = time.perf_counter()
        for node in nodes:
            command = "seed" if node["resource_type"] == "seed" else "run"
            self.run_dbt(database, command, "--select", node["name"])
        self.run_dbt(database, "test", "--select", "resource_type:seed path:models/staging")
        self.record(f"one dbt process per node ({len(nodes) + 1})", time.perf_counter() - started)


def stop_worker(directory: Path) -> None:
    """The benchmark's private worker must not outlive it."""
    import re
    import signal

    for log in directory.glob("worker-*.log"):
        for pid in re.findall(r"^worker (\d+) ready", log.read_text(), re.M):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    except (OSError, ValueError, IndexError):
        mem = 0
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("doit", "dbt-core", "dbt-duckdb", "duckdb"))
    return (f"{cpu}, {os.cpu_count()} cores, {mem} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; {versions}")


def table(bench: Bench) -> str:
    medians = {k: statistics.median(v) for k, v in bench.timings.items()}
    build = medians["dbt build (one CLI process)"]
    per_node = next((v for k, v in medians.items() if k.startswith("one dbt process")), None)
    lines = ["| Command | Runs | Median | vs `dbt build` | vs one process per node |", "| --- | --- | --- | --- | --- |"]
    for name, values in bench.timings.items():
        med = medians[name]
        vs_build = f"{build / med:.1f}x faster" if med < build else f"{med / build:.2f}x the time"
        vs_node = f"{per_node / med:.1f}x faster" if per_node else "-"
        lines.append(f"| {name} | {len(values)} | {med:.2f} s | {vs_build} | {vs_node} |")
    if FORGET_ALL in medians and COLD in medians:
        lines.append(f"\n`{FORGET_ALL}` takes {medians[FORGET_ALL] / medians[COLD]:.2f}x the time of a cold "
                     "`doit setup` (both with the warm worker): every forgotten node rebuilds in one dbt run.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-node-rounds", type=int, default=1, help="one process per node is slow; run it fewer times")
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pwb-", dir="/tmp") as tmp:
        bench = Bench(Path(tmp), args.employees)
        bench.prepare()
        for round_no in range(args.rounds):
            print(f"round {round_no + 1} of {args.rounds}", flush=True)
            bench.cold_setup(worker=False)
            bench.cold_setup(worker=True)
            bench.noop_setup()
            bench.forget_all_setup()
            bench.seed_edit_setup(2 * round_no)
            bench.noop_setup()
            bench.seed_edit_setup(2 * round_no + 1, worker=False)
            bench.dbt_build()
            if round_no < args.per_node_rounds:
                bench.dbt_per_node()
        result = table(bench)
        stop_worker(Path(tmp) / "w")
    when = time.strftime("%Y-%m-%d")
    text = (
        "# Benchmarks\n\n"
        f"Measured {when} by `python benchmarks/bench_setup.py --rounds {args.rounds} --per-node-rounds "
        f"{args.per_node_rounds} --employees {args.employees}` on: {machine()}.\n\n"
        "Same project (the demo: 14 seeds, 14 staging models, their dbt tests), same census, commands "
        "alternated round by round; medians of the runs. `doit setup` runs the validations too (the "
        "project's dbt tests plus the built-in checks). Unless marked \"dbt in process\", dbt runs in the "
        "warm worker a previous run left (`dbt.worker_idle_seconds`), as in a working session; \"dbt in "
        "process\" is the first run of a session (dbt imported by the run itself).\n\n" + result + "\n"
    )
    args.output.write_text(text)
    print("\n" + result)


if __name__ == "__main__":
    main()
