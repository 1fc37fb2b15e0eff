"""Benchmark: how setup's cost grows with the project, side by side with dbt (issue 21).

Generates dbt-duckdb projects of N models (``generated.py``: 10 layers, a third views, N/10 seeds of
50 rows, a not_null and a unique test per model), sets each up with `python -m setup_tasks init`,
and measures, in the same rounds (every size in every round, setup and dbt alternated case by case):

    cold, dbt builds       database, records and kept SQL deleted   vs `dbt build` (database deleted)
    cold, SQL kept         database and records deleted             vs the same `dbt build`
    first check            nothing changed, first run after a build (the build's witness when it left one)
    no-op                  nothing changed again (the witness)      vs `dbt build -s state:modified+`
    full check             nothing changed, the witness turned off (a run after a file was touched)
    leaf seed edited       2 nodes rebuilt                          vs `dbt build -s state:modified+`
    root seed edited       ~40% of the models rebuilt               vs `dbt build -s state:modified+`
    model SQL edited       10 nodes rebuilt                         vs `dbt build -s state:modified+`
    root seed reordered    same rows, other order: the table's content is unchanged (early cutoff:
                           only the seed; without it ~40%)          vs `dbt build -s state:modified+`

`dbt build --select state:modified+ --state <dir>` compares the project with the manifest.json of
the previous dbt run, copied to <dir> after each run (dbt's own state comparison: a seed's checksum
is its file hash). dbt runs as a CLI process in a copy of the project with its own database, with
the partial parse its previous run left; setup runs as people type it, `python -m doit setup`, with
the parse its previous run left and, for every case but the first, the warm dbt worker a previous
run left (a working session; the cold first run has none: a fresh worker folder).

Reports medians, the ratio per case, the growth exponent per case (least squares of log time on
log N) and the peak RSS of each side (setup: the doit process plus its dbt worker).

    python benchmarks/bench_scale.py --sizes 30 300 1000 --rounds 3     # BENCHMARKS.md, section "growth"
    python benchmarks/bench_scale.py --sizes 3000 --rounds 1 --section growth-3000

Not a test: the numbers depend on the machine (a smoke test of the generator is in the suite).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_setup import RACY_SECONDS, REPO, machine, stop_worker, write_section  # noqa: E402
from generated import (
    Generated,
    descendants,
    edit_leaf_seed,
    edit_model,
    edit_root_seed,
    generate,  # noqa: E402
    reorder_root_seed,
)

OVERRIDES = (
    "DUCKDB_PATH",
    "DBT_TARGET",
    "DBT_PROFILES_DIR",
    "DBT_PROJECT_DIR",
    "CENSUS_PATH",
    "SETUP_CONFIG",
    "PYTHONDONTWRITEBYTECODE",
)  # users' machines write bytecode
COLD = "cold, dbt builds"
COLD_KEPT = "cold, SQL kept"
FIRST_CHECK = "first check after a build"
NOOP = "no-op (witness)"
FULL_CHECK = "full check (witness off)"
LEAF = "leaf seed edited"
ROOT = "root seed edited"
MODEL = "model SQL edited"
REORDERED = "root seed reordered"
FLOOR = "doit itself (one up-to-date task)"
CASES = (COLD, COLD_KEPT, FIRST_CHECK, NOOP, FULL_CHECK, LEAF, ROOT, MODEL, REORDERED)
EDITS = (NOOP, LEAF, ROOT, MODEL, REORDERED)
DBT_BUILD = "dbt build"
DBT_STATE = "dbt build -s state:modified+"
DBT_FOR = {COLD: DBT_BUILD, COLD_KEPT: DBT_BUILD, **{c: f"{DBT_STATE} ({c})" for c in EDITS}}


@dataclass
class Timed:
    seconds: float
    rss_mib: float  # peak resident memory of the process
    worker_mib: float = 0.0  # setup's dbt worker: its high-water mark over its life so far
    built: int | None = None  # nodes setup built (its run report)


@dataclass
class Size:
    """One generated project, set up twice: ``ours`` for setup, ``ref`` for dbt."""

    root: Path
    models: int
    ours: Generated = field(init=False)
    ref: Generated = field(init=False)
    timings: dict[str, list[Timed]] = field(default_factory=dict)
    fresh: int = 0

    def prepare(self) -> None:
        self.ours = generate(self.root / "ours", self.models)
        self.ref = generate(self.root / "ref", self.models)
        subprocess.run(
            [sys.executable, "-m", "setup_tasks", "init"],
            cwd=self.ours.root,
            env=env(),
            check=True,
            capture_output=True,
        )
        self.doit("setup")  # parse, build, keep SQL: the rounds start from a built project
        self.dbt("build")
        self.save_state()

    @property
    def state(self) -> Path:
        return self.root / "ref_state"

    def save_state(self) -> None:
        """The previous run's artifacts, where `--state` reads them (dbt overwrites target/ as it runs)."""
        self.state.mkdir(exist_ok=True)
        shutil.copy2(self.ref.root / "target" / "manifest.json", self.state / "manifest.json")

    # -- running ---------------------------------------------------------------------------

    def doit(self, *args: str, fresh: bool = False, **extra: str) -> Timed:
        folder = self.root / "w"
        if fresh:
            self.fresh += 1
            folder = self.root / f"f{self.fresh}"
        try:
            return timed(
                [sys.executable, "-m", "doit", *args],
                self.ours.root,
                env(PLANWISE_SETUP_WORKER_DIR=str(folder), **extra),
                worker_folder=folder,
            )
        finally:
            if fresh:
                stop_worker(folder)

    def dbt(self, *args: str) -> Timed:
        dbt = str(Path(sys.executable).with_name("dbt"))
        if not Path(dbt).exists():
            dbt = shutil.which("dbt") or "dbt"
        return timed(
            [dbt, *args, "--profiles-dir", ".", "--quiet", "--no-send-anonymous-usage-stats"], self.ref.root, env()
        )

    def record(self, name: str, result: Timed) -> None:
        self.timings.setdefault(name, []).append(result)
        if name in CASES:
            report = json.loads((self.ours.root / "gen.setup_report.json").read_text())
            result.built = report["counts"].get("built", 0)
        worker = f" + worker {result.worker_mib:.0f}" if result.worker_mib else ""
        worker += f", {result.built} built" if result.built is not None else ""
        print(f"  N={self.models:<5} {name:<44} {result.seconds:8.2f} s {result.rss_mib:5.0f} MiB{worker}", flush=True)

    # -- the cases --------------------------------------------------------------------------

    def delete_database(self, project: Generated) -> None:
        for path in project.root.glob("gen.duckdb*"):
            path.unlink()

    def cold(self, kept: bool) -> None:
        self.delete_database(self.ours)
        shutil.rmtree(self.ours.root / ".planwise", ignore_errors=True)
        if not kept:
            for path in (self.ours.root / "target").rglob("compiled_sql.sealed"):
                path.unlink()
        self.record(COLD_KEPT if kept else COLD, self.doit("setup", fresh=not kept))

    def dbt_build(self) -> None:
        self.delete_database(self.ref)
        self.record(DBT_BUILD, self.dbt("build"))
        self.save_state()

    def dbt_state(self, case: str) -> None:
        self.record(DBT_FOR[case], self.dbt("build", "--select", "state:modified+", "--state", str(self.state)))
        self.save_state()

    def nothing_changed(self) -> None:
        time.sleep(RACY_SECONDS)  # a run within RACY_NS of a change checks in full
        self.record(FIRST_CHECK, self.doit("setup"))
        self.record(NOOP, self.doit("setup"))
        self.record(FULL_CHECK, self.doit("setup", PLANWISE_SETUP_SHORTCUT="0"))
        self.record(FLOOR, timed([sys.executable, "-m", "doit"], floor_dir(self.root), env()))
        self.dbt_state(NOOP)

    def edit(self, name: str, change, version: int) -> None:
        change(self.ours, version)
        self.record(name, self.doit("setup"))
        change(self.ref, version)
        self.dbt_state(name)


def floor_dir(root: Path) -> Path:
    """A folder whose dodo.py has one task, always up to date: what doit itself costs."""
    folder = root / "floor"
    if not folder.exists():
        folder.mkdir()
        (folder / "dodo.py").write_text('def task_nothing():\n    return {"actions": None, "uptodate": [True]}\n')
    return folder


def env(**extra: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
    values["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    values.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    values.update(extra)
    return values


def timed(cmd: list[str], cwd: Path, environ: dict[str, str], worker_folder: Path | None = None) -> Timed:
    """Run ``cmd``; its time and peak RSS (its own, via wait4, plus the dbt worker's high-water mark when a
    worker served it: the worker's VmHWM covers its life, which for a fresh worker is this run)."""
    started = time.perf_counter()
    with open(os.devnull, "w") as sink, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=environ, stdout=sink, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(
                f"command failed ({proc.returncode}): {' '.join(cmd)} in {cwd}\n"
                f"{err.read().decode(errors='replace')[-3000:]}"
            )
    return Timed(elapsed, usage.ru_maxrss / 1024, worker_hwm(worker_folder) if worker_folder else 0.0)


def worker_hwm(folder: Path) -> float:
    """Peak RSS (MiB) of the live worker of ``folder``, 0 without one."""
    for log in folder.glob("worker-*.log"):
        for pid in re.findall(r"^worker (\d+) ready", log.read_text(), re.M)[-1:]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
            if found:
                return int(found[1]) / 1024
    return 0.0


# -- the report -------------------------------------------------------------------------------


def rss_cell(values: list[Timed]) -> str:
    own, worker = max(t.rss_mib for t in values), max(t.worker_mib for t in values)
    return f"{own:.0f} + {worker:.0f}" if worker else f"{own:.0f}"


def median(values: list[Timed]) -> float:
    return statistics.median(v.seconds for v in values)


def growth(sizes: list[Size], name: str) -> str:
    """The exponent k of time ~ N^k: least squares of log(median time) on log(N)."""
    points = [(math.log(s.models), math.log(median(s.timings[name]))) for s in sizes if name in s.timings]
    if len(points) < 2:
        return "-"
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    last = points[-2:]
    pair = (last[1][1] - last[0][1]) / (last[1][0] - last[0][0])
    return f"{slope:.2f} ({pair:.2f})"


def report(sizes: list[Size], loads: list[float]) -> str:
    header = "| case | " + " | ".join(f"N={s.models}: setup / dbt" for s in sizes) + " | growth, setup | growth, dbt |"
    lines = [header, "|---" * (len(sizes) + 3) + "|"]
    for case in [c for c in CASES if c in sizes[0].timings]:
        cells = []
        other = DBT_FOR.get(case)
        for s in sizes:
            ours = median(s.timings[case])
            if other:
                theirs = median(s.timings[other])
                ratio = f"{theirs / ours:.1f}x faster" if ours < theirs else f"{ours / theirs:.2f}x slower"
                cells.append(f"{ours:.2f} s / {theirs:.2f} s ({ratio})")
            else:
                cells.append(f"{ours:.2f} s")
        label = f"{case} vs `{other}`" if other else case
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {growth(sizes, case)} | "
            f"{growth(sizes, other) if other else '-'} |"
        )
    lines.append(f"| {FLOOR} | " + " | ".join(f"{median(s.timings[FLOOR]):.2f} s" for s in sizes) + " | | |")
    rounds = min(len(v) for s in sizes for v in s.timings.values())
    lines.append("")
    lines.append(
        f"Medians of {rounds} rounds; load average (1 min) at the rounds' starts: "
        f"{min(loads):.1f} to {max(loads):.1f}, median {statistics.median(loads):.1f}. Growth: the exponent k "
        f"of time ~ N^k over all sizes (in brackets: between the two largest)."
    )
    lines.append("")
    lines.append(
        "Rebuilt per edit (nodes, the edited one included): "
        + "; ".join(f"N={s.models}: " + ", ".join(f"{k} {v}" for k, v in descendants(s.ours).items()) for s in sizes)
        + "."
    )
    lines.append("")
    lines.append(
        "Nodes setup built (its run report; median of the rounds): "
        + "; ".join(
            f"{case}: " + ", ".join(f"{statistics.median(t.built or 0 for t in s.timings[case]):.0f}" for s in sizes)
            for case in CASES
            if case in sizes[0].timings
        )
        + " (at N = "
        + ", ".join(str(s.models) for s in sizes)
        + ")."
    )
    lines.append("")
    lines.append(
        "Peak RSS in MiB, the largest of the rounds. setup: the doit process, + its dbt worker's high-water "
        "mark when a worker served the run (cold, dbt builds: a fresh worker, so its peak in this run; "
        "edits: the warm worker's peak over the session so far). dbt: the CLI process."
    )
    lines.append("")
    columns = [c for c in [*CASES, DBT_BUILD, *(DBT_FOR[c] for c in EDITS)] if c in sizes[0].timings]
    lines.append("| case | " + " | ".join(f"N={s.models}" for s in sizes) + " |")
    lines.append("|---" * (len(sizes) + 1) + "|")
    for c in columns:
        lines.append(f"| {c} | " + " | ".join(rss_cell(s.timings[c]) for s in sizes) + " |")
    return "\n".join(lines)


def run(sizes: list[Size], rounds: int, cases: set[str]) -> list[float]:
    loads = []
    for size in sizes:
        print(f"preparing N={size.models}", flush=True)
        size.prepare()
    for round_no in range(rounds):
        loads.append(os.getloadavg()[0])
        print(f"round {round_no + 1} of {rounds} (load {loads[-1]:.1f})", flush=True)
        version = round_no + 1
        for size in sizes:
            if COLD in cases:
                size.cold(kept=False)
                size.dbt_build()
            if COLD_KEPT in cases:
                size.cold(kept=True)
            size.nothing_changed()
            size.edit(LEAF, edit_leaf_seed, version)
            size.edit(ROOT, edit_root_seed, version)
            size.edit(MODEL, edit_model, version)
            size.edit(REORDERED, reorder_root_seed, version)
    for size in sizes:
        stop_worker(size.root / "w")
    return loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 300, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["cold", "cold-kept"],
        help="leave the cold cases out (quicker rounds while profiling)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO / "BENCHMARKS.md",
        help="the markdown file whose 'growth' section this writes (the demo's stays)",
    )
    parser.add_argument(
        "--section",
        default="growth",
        help="the section of --output to write: a run of other sizes (3000) may keep its own",
    )
    parser.add_argument("--keep", type=Path, default=None, help="build the projects here and keep them")
    args = parser.parse_args()
    cases = set(CASES) - {COLD for s in args.skip if s == "cold"} - {COLD_KEPT for s in args.skip if s == "cold-kept"}
    base = args.keep or Path(tempfile.mkdtemp(prefix="pwscale-"))
    sizes = [Size(base / f"n{n}", n) for n in args.sizes]
    try:
        loads = run(sizes, args.rounds, cases)
    finally:
        for size in sizes:
            stop_worker(size.root / "w")
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    result = report(sizes, loads)
    text = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/bench_scale.py --sizes "
        f"{' '.join(map(str, args.sizes))} --rounds {args.rounds}` on: {machine()}.\n\n{result}\n"
    )
    write_section(args.output, args.section, "## Growth with the project (benchmarks/bench_scale.py)\n\n" + text)
    print("\n" + text)


if __name__ == "__main__":
    main()
