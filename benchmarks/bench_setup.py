"""Benchmark: planwise-setup against `dbt build` and against one dbt process per node.

Runs on a temporary copy of the demo project (dbt/) with its own database and census,
alternating the commands round by round so that machine noise hits all of them alike,
and reports medians and ratios. Writes BENCHMARKS.md with the machine it ran on.

    python benchmarks/bench_setup.py --rounds 5 --per-node-rounds 1
    python benchmarks/bench_setup.py --project jaffle_shop --rows 100000 --output jaffle.md

``--project jaffle_shop`` measures a team's project instead: the jaffle_shop-shaped fixture
of the tests (seeds, staging views, marts, a profile with a fixed path), scaled to
``--rows`` orders and payments, set up with `python -m setup_tasks init` and run from its
own folder, against `dbt build` in a copy of it (targets: no-op 20x, one seed edit 4x).

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
FIRST = ", first run of a session"  # no worker running before it (a fresh worker folder)
FORGET_ALL = "doit forget -a && doit setup"
NOOP = "doit setup (nothing to do)"
NOOP_FULL = "doit setup (nothing to do, first run since a build)"
FULL_CHECK = "doit setup (nothing to do, checked in full)"
FLOOR = "doit itself (a dodo.py of one up-to-date task)"
RACY_SECONDS = 2.1  # setup_tasks.files.RACY_NS, and a little
OVERRIDES = ("DUCKDB_PATH", "DBT_TARGET", "DBT_PROFILES_DIR", "DBT_PROJECT_DIR", "CENSUS_PATH", "SETUP_CONFIG")


@dataclass
class Bench:
    root: Path
    employees: int
    timings: dict[str, list[float]] = field(default_factory=dict)
    fresh: int = 0  # worker folders of first runs so far

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
        self.config.write_text(
            yaml.safe_dump(
                {
                    "database": {"path": "setup.duckdb"},
                    "dbt": {"project_dir": "dbt"},
                    "census": {"path": "census.parquet", "employees": self.employees},
                }
            )
        )
        (self.root / "dodo.py").write_text((REPO / "dodo.py").read_text())  # run where it lives, as people do
        self.run_doit("census")
        self.run_doit("list")  # parse once, as any user's first command does

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env.update(extra)
        return env

    def run_doit(self, *args: str, worker: bool = True, **extra: str) -> float:
        """`doit <args>` in the folder of dodo.py and setup.yaml, as people type it."""
        return self._session([sys.executable, "-m", "doit", *args], self.root, worker, **extra)

    def _session(self, cmd: list[str], cwd: Path, warm: bool, **extra: str) -> float:
        """``cmd`` in the session's warm worker folder, or (not ``warm``) as a session's first run: a
        fresh worker folder where no worker runs (the run starts one if it needs dbt; stopped after)."""
        folder = self.root / "w"
        if not warm:
            self.fresh += 1
            folder = self.root / f"f{self.fresh}"
        try:
            return self._timed(cmd, cwd, self.env(PLANWISE_SETUP_WORKER_DIR=str(folder), **extra))
        finally:
            if not warm:
                stop_worker(folder)

    def run_dbt(self, database: Path, *args: str) -> float:
        dbt = shutil.which("dbt") or "dbt"
        variables = json.dumps({"census_parquet_path": str(self.census)})
        cmd = [
            dbt,
            *args,
            "--project-dir",
            str(self.project),
            "--profiles-dir",
            str(self.project),
            "--vars",
            variables,
            "--quiet",
            "--no-send-anonymous-usage-stats",
        ]
        return self._timed(cmd, self.project, self.env(DUCKDB_PATH=str(database)))

    @staticmethod
    def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(
                f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
        return elapsed

    def record(self, name: str, seconds: float) -> None:
        self.timings.setdefault(name, []).append(seconds)
        print(f"  {name:<34} {seconds:7.2f} s", flush=True)

    # -- the measured commands --------------------------------------------------------

    def cold_setup(self, worker: bool) -> None:
        for path in (self.root / "setup.duckdb", self.root / "setup.duckdb.wal"):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.root / ".planwise", ignore_errors=True)
        label = COLD + ("" if worker else FIRST)
        self.record(label, self.run_doit("setup", worker=worker))

    def noop_setup(self) -> None:
        """Nothing to do, twice: the first check since the last build checks in full (and leaves the
        witness: cli.shortcut), the next one answers from that witness. The files the build wrote are
        let settle first, untimed: a run within RACY_NS of a change always checks in full."""
        time.sleep(RACY_SECONDS)
        self.record(NOOP_FULL, self.run_doit("setup"))
        self.record(NOOP, self.run_doit("setup"))
        self.record(FULL_CHECK, self.run_doit("setup", PLANWISE_SETUP_SHORTCUT="0"))
        self.record(FLOOR, self._timed([sys.executable, "-m", "doit"], self.floor_dir(), self.env()))

    def floor_dir(self) -> Path:
        """A folder whose dodo.py has one task, always up to date: what doit itself costs."""
        folder = self.root / "floor"
        if not folder.exists():
            folder.mkdir()
            (folder / "dodo.py").write_text('def task_nothing():\n    return {"actions": None, "uptodate": [True]}\n')
        return folder

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
        label = "doit setup (one seed edited)" + ("" if worker else FIRST)
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
        nodes = sorted(
            (
                n
                for n in manifest["nodes"].values()
                if n["resource_type"] in ("seed", "model")
                and (n["resource_type"] == "seed" or n["original_file_path"].startswith("models/staging"))
            ),
            key=lambda n: (n["resource_type"] != "seed", n["name"]),
        )
        started = time.perf_counter()
        for node in nodes:
            command = "seed" if node["resource_type"] == "seed" else "run"
            self.run_dbt(database, command, "--select", node["name"])
        self.run_dbt(database, "test", "--select", "resource_type:seed path:models/staging")
        self.record(f"one dbt process per node ({len(nodes) + 1})", time.perf_counter() - started)


class JaffleBench(Bench):
    """A team's project: jaffle_shop-shaped, run where it lives (dodo.py from init), its profile's database."""

    EDITED = "raw_customers"

    def __init__(self, root: Path, rows: int) -> None:
        super().__init__(root, 0)
        self.rows = rows

    @property
    def project(self) -> Path:
        return self.root / "team" / "jaffle_shop"

    @property
    def reference(self) -> Path:
        return self.root / "reference" / "jaffle_shop"

    def prepare(self) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from team_projects import write_jaffle_shop

        write_jaffle_shop(self.root / "team")
        self.write_rows()
        shutil.copytree(self.project, self.reference)
        subprocess.run(
            [sys.executable, "-m", "setup_tasks", "init"],
            cwd=self.project,
            env=self.env(),
            check=True,
            capture_output=True,
        )
        self.run_doit("list")  # parse once, as any user's first command does

    def write_rows(self) -> None:
        """raw_orders and raw_payments with ``rows`` rows each (deterministic), customers a tenth of that."""
        seeds = self.project / "seeds"
        customers = max(4, self.rows // 10)
        statuses = ["placed", "shipped", "completed", "return_pending", "returned"]
        methods = ["credit_card", "coupon", "bank_transfer", "gift_card"]
        (seeds / "raw_customers.csv").write_text(
            "id,first_name,last_name\n" + "".join(f"{i},First{i},L{i % 26}.\n" for i in range(1, customers + 1))
        )
        (seeds / "raw_orders.csv").write_text(
            "id,user_id,order_date,status\n"
            + "".join(
                f"{i},{i % customers + 1},2018-{i % 12 + 1:02d}-{i % 28 + 1:02d},{statuses[i % 5]}\n"
                for i in range(1, self.rows + 1)
            )
        )
        (seeds / "raw_payments.csv").write_text(
            "id,order_id,payment_method,amount\n"
            + "".join(f"{i},{i},{methods[i % 4]},{(i * 37) % 3000}\n" for i in range(1, self.rows + 1))
        )

    def run_doit(self, *args: str, worker: bool = True) -> float:
        return self._session([sys.executable, "-m", "doit", *args], self.project, worker)

    def cold_setup(self, worker: bool) -> None:
        for path in self.project.glob("jaffle_shop.*"):
            path.unlink()
        shutil.rmtree(self.project / ".planwise", ignore_errors=True)
        label = COLD + ("" if worker else FIRST)
        self.record(label, self.run_doit("setup", worker=worker))

    def seed_edit_setup(self, round_no: int, worker: bool = True) -> None:
        seed = self.project / "seeds" / f"{self.EDITED}.csv"
        lines = seed.read_text().splitlines()
        extra = "999999999,Added,Row."
        lines = [line for line in lines if line != extra] + ([extra] if round_no % 2 == 0 else [])
        seed.write_text("\n".join(lines) + "\n")
        label = "doit setup (one seed edited)" + ("" if worker else FIRST)
        self.record(label, self.run_doit("setup", worker=worker))

    def dbt_build(self) -> None:
        (self.reference / "jaffle_shop.duckdb").unlink(missing_ok=True)
        dbt = shutil.which("dbt") or "dbt"
        cmd = [dbt, "build", "--profiles-dir", ".", "--quiet", "--no-send-anonymous-usage-stats"]
        self.record("dbt build (one CLI process)", self._timed(cmd, self.reference, self.env()))


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
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; {versions}"
    )


def table(bench: Bench) -> str:
    medians = {k: statistics.median(v) for k, v in bench.timings.items()}
    build = medians["dbt build (one CLI process)"]
    per_node = next((v for k, v in medians.items() if k.startswith("one dbt process")), None)
    lines = [
        "| Command | Runs | Median | vs `dbt build` | vs one process per node |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, values in bench.timings.items():
        med = medians[name]
        vs_build = f"{build / med:.1f}x faster" if med < build else f"{med / build:.2f}x the time"
        vs_node = f"{per_node / med:.1f}x faster" if per_node else "-"
        lines.append(f"| {name} | {len(values)} | {med:.2f} s | {vs_build} | {vs_node} |")
    if FORGET_ALL in medians and COLD in medians:
        lines.append(
            f"\n`{FORGET_ALL}` takes {medians[FORGET_ALL] / medians[COLD]:.2f}x the time of a cold "
            "`doit setup` (both with the warm worker): every forgotten node rebuilds in one batch."
        )
    return "\n".join(lines)


def run_rounds(bench: Bench, rounds: int, per_node_rounds: int) -> str:
    """The commands alternated round by round (machine noise hits them alike); the table of medians."""
    bench.prepare()
    loads = []
    for round_no in range(rounds):
        loads.append(os.getloadavg()[0])
        print(f"round {round_no + 1} of {rounds} (load {loads[-1]:.1f})", flush=True)
        bench.cold_setup(worker=False)
        bench.cold_setup(worker=True)
        bench.noop_setup()
        bench.forget_all_setup()
        bench.seed_edit_setup(2 * round_no)
        bench.noop_setup()
        bench.seed_edit_setup(2 * round_no + 1, worker=False)
        bench.dbt_build()
        if round_no < per_node_rounds:
            bench.dbt_per_node()
    return table(bench) + (
        f"\n\nLoad average (1 min) at the rounds' starts: {min(loads):.1f} to {max(loads):.1f} "
        f"(the machine's {os.cpu_count()} cores are shared)."
    )


def write_section(path: Path, name: str, text: str) -> None:
    """Put ``text`` in ``path`` as its section ``name`` (between HTML comments), keeping the other sections:
    BENCHMARKS.md holds the demo's (this script) and the growth benchmark's (bench_scale.py). A file of
    one unmarked section is the demo's."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    old = path.read_text() if path.exists() else ""
    if old and "<!-- " not in old:
        old = f"<!-- demo -->\n{old.rstrip()}\n<!-- /demo -->\n"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    if start in old and end in old:
        rest = old[old.index(end) + len(end) :].lstrip("\n")
        new = old[: old.index(start)] + block + ("\n" + rest if rest else "")
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block
    path.write_text(new)


def demo_text(args: argparse.Namespace, result: str) -> str:
    return (
        "# Benchmarks\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} by `python benchmarks/bench_setup.py --rounds {args.rounds} "
        f"--per-node-rounds {args.per_node_rounds} --employees {args.employees}` on: {machine()}.\n\n"
        "Same project (the demo: 14 seeds, 14 staging models, their dbt tests), same census, commands "
        "alternated round by round; medians of the runs. `doit setup` runs the validations too (the "
        'project\'s dbt tests plus the built-in checks). Unless marked "first run of a session", dbt (when a '
        "run needs it) runs in the warm worker a previous run left (`dbt.worker_idle_seconds`), as in a working "
        'session; a "first run of a session" has no worker running before it (a fresh worker folder: the run '
        "starts one if it needs dbt, stopped after it). Seeds, tables, views and tests whose dbt SQL was kept "
        "by an earlier run are built and run without dbt (`engine.direct_build`, `engine.direct_tests`). "
        "Nothing to do is measured three ways, 2 s after the build before it: the first run since a build "
        "answers from the witness that build left when it could tell what this run would say, else checks "
        "everything in full and leaves one; the next one finds every watched file unchanged and answers "
        "from a witness (`cli.shortcut`); checked in full is the same run with the witness turned off "
        "(`PLANWISE_SETUP_SHORTCUT=0`), what a run costs after a file was touched. Every command runs as people "
        "type it: `python -m doit <task>` in the folder of `dodo.py` and `setup.yaml`.\n\n" + result + "\n"
    )


def jaffle_text(args: argparse.Namespace, result: str) -> str:
    return (
        "# Benchmarks: a team's project\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} by `python benchmarks/bench_setup.py --project jaffle_shop "
        f"--rounds {args.rounds} --rows {args.rows}` on: {machine()}.\n\n"
        f"The jaffle_shop-shaped fixture (3 seeds, 3 staging views, 2 marts, 5 dbt tests; {args.rows:,} orders "
        "and payments), set up with `python -m setup_tasks init` and run from its folder; `dbt build` in a "
        "copy of it. Targets: nothing to do at least 20x faster than `dbt build`, one seed edited at least 4x. "
        "Nothing to do is measured as for the demo (BENCHMARKS.md): the first run since a build, the next "
        "one (answered from a witness) and one checked in full, beside doit itself running one up-to-date "
        "task.\n\n" + result + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--per-node-rounds", type=int, default=1, help="one process per node is slow; run it fewer times"
    )
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument(
        "--output", type=Path, default=None, help="default: BENCHMARKS.md (demo), BENCHMARKS_team.md (jaffle_shop)"
    )
    parser.add_argument(
        "--project",
        choices=["demo", "jaffle_shop"],
        default="demo",
        help="the demo (PlanWise) project, or a team's jaffle_shop-shaped project (no per-node rounds)",
    )
    parser.add_argument("--rows", type=int, default=100_000, help="jaffle_shop: orders and payments")
    args = parser.parse_args()
    jaffle = args.project == "jaffle_shop"
    with tempfile.TemporaryDirectory(prefix="pwb-", dir="/tmp") as tmp:
        bench = JaffleBench(Path(tmp), args.rows) if jaffle else Bench(Path(tmp), args.employees)
        result = run_rounds(bench, args.rounds, 0 if jaffle else args.per_node_rounds)
        stop_worker(Path(tmp) / "w")
    output = args.output or REPO / ("BENCHMARKS_team.md" if jaffle else "BENCHMARKS.md")
    if jaffle:
        output.write_text(jaffle_text(args, result))
    else:
        write_section(output, "demo", demo_text(args, result))
    print("\n" + result)


if __name__ == "__main__":
    main()
