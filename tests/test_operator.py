"""The operator's experience (issue 13), on the small 'shop' project: what a person sees.

They drive doit in subprocesses from the repository root, as users do (a terminal where the point
is the terminal), and read exit codes, output lines and the run report.

Cheap on purpose: one cold run in a terminal serves every test about a first run's screen, and
every other test starts from the session's built shop (``built_shop``, restored in place: same
paths, so no test pays for a dbt re-parse it did not cause). One failing run (and its --continue
twin) serves every test about failures.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from factories import REPO, DoitRun, Workspace, clean_env, stop_workers, write_shop_project
from operator_support import (
    ANSI,
    TASK_LINE,
    TerminalRun,
    add_custom_checks,
    add_model_tests,
    check_entry,
    doit_cmd,
    lines_of,
    manifest_written,
    records_written,
    report,
    run_in_terminal,
    send_after_query_started,
    status_words,
    stop,
    text_of,
)
from tempdirs import short_temp_dir

pytestmark = pytest.mark.slow

LONG_NAMED_CHECK = {
    "name": "an_unusually_long_custom_check_name_for_the_columns",
    "severity": "error",
    "description": "passes",
    "sql": "select * from stg_customers where id < 0",
}
KNOWN_WARNING = {
    "name": "known_warning",
    "severity": "warning",
    "description": "southern regions",
    "sql": "select * from stg_regions where region = 'south'",
}
NORTH_CHECK = {
    "name": "north_customers_forbidden",
    "severity": "error",
    "description": "no northern customers",
    "sql": "select * from stg_customers where region = 'north'",
}
BIG_ORDERS_CHECK = {
    "name": "no_big_orders",
    "severity": "error",
    "description": "orders stay under 20",
    "sql": "select * from stg_orders where amount_usd > 20",
}
FAILING_DBT_TEST = "accepted_values_stg_regions_region__north"
# About 8 s of DuckDB work on an idle 2-core machine: long enough to interrupt mid-query.
SLOW_CHECK = {
    "name": "slow_check",
    "severity": "error",
    "description": "a long query",
    "sql": "select * from range(20000) a, range(20000) b where hash(a.range * 20000 + b.range) = 42",
}


def prepare_base(ws: Workspace) -> None:
    """shop, plus: a one-row seed, a passing dbt test, a check with a long name, a known warning."""
    ws.seed("singles", "id,label\n1,only\n")
    add_model_tests(ws, "base_tests.yml", {"stg_customers": {"id": ["not_null"]}})
    add_custom_checks(ws, LONG_NAMED_CHECK, KNOWN_WARNING)


@dataclass
class FirstRun:
    """A first `doit setup` (nothing built, nothing parsed) in an 80-column terminal, then two no-ops."""

    ws: Workspace
    terminal: TerminalRun
    noop: DoitRun  # the run after it, output piped: nothing to do
    verbose: DoitRun  # the same with -v 2


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    ws = write_shop_project(tmp_path_factory.mktemp("first"))
    prepare_base(ws)
    # A first run on a machine: dbt starts in the doit process (not the session's warm worker).
    run = run_in_terminal(
        doit_cmd(ws, "setup"),
        watch={"parsed": manifest_written(ws), "node done": records_written(ws)},
        env={"PLANWISE_SETUP_WORKER": "0"},
    )
    assert run.returncode == 0, run.plain[-3000:]
    noop = ws.doit("setup", json_report=False)
    assert noop.returncode == 0, text_of(noop)[-3000:]
    verbose = ws.doit("-v", "2", "setup", json_report=False)
    assert verbose.returncode == 0, text_of(verbose)[-3000:]
    return FirstRun(ws, run, noop, verbose)


def restored(template: tuple[Path, Path]) -> Workspace:
    """The session's built shop, put back as built (for a module fixture: ``built_shop`` is per test)."""
    root, pristine = template
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(pristine, root, symlinks=True)
    return Workspace(root)


# -- every validation reported; the same exit status with or without --continue ---------------------


@dataclass
class FailingRuns:
    runs: dict[str, DoitRun]
    reports: dict[str, dict[str, Any]]
    info: dict[str, DoitRun] = field(default_factory=dict)
    hint: str = ""
    hint_run: subprocess.CompletedProcess | None = None
    status: DoitRun | None = None


def run_hint(ws: Workspace, hint: str, log_dir: Path) -> tuple[str, subprocess.CompletedProcess | None]:
    """Run the first command a hint names (in backticks) from the repository root, as the user would.

    A `doit ...` command gets this workspace's config= (a user's repository has setup.yaml instead).
    """
    commands = [c for c in re.findall(r"`([^`]+)`", hint) if c.split()[:1] in (["doit"], ["dbt"])]
    if not commands:
        return "", None
    words = shlex.split(commands[0])
    argv = doit_cmd(ws, *words[1:]) if words[0] == "doit" else words
    # dbt writes logs/ where it runs: keep them out of the repository.
    env = clean_env({"DBT_LOG_PATH": str(log_dir)})
    return commands[0], subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def failing(shop_template: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> FailingRuns:
    """Two failing error checks and a failing dbt test (error severity), run without and with --continue."""
    ws = restored(shop_template)
    add_custom_checks(ws, NORTH_CHECK, BIG_ORDERS_CHECK, KNOWN_WARNING)
    add_model_tests(
        ws,
        "failing_tests.yml",
        {"stg_regions": {"region": [{"accepted_values": {"arguments": {"values": ["north"]}}}]}},
    )
    result = FailingRuns({}, {})
    result.runs["default"] = ws.doit("setup", json_report=False)
    result.reports["default"] = report(ws)
    result.runs["--continue"] = ws.doit("--continue", "setup", json_report=False)
    result.reports["--continue"] = report(ws)
    for task in ("validate:no_big_orders", "validate:dbt_tests"):
        result.info[task] = ws.doit("info", task)
    entry = check_entry(result.reports["--continue"], f"dbt_tests.{FAILING_DBT_TEST}") or {}
    result.hint, result.hint_run = run_hint(ws, entry.get("guidance", ""), tmp_path_factory.mktemp("dbt-logs"))
    result.status = ws.doit("status", json_report=False)
    return result


@pytest.mark.parametrize("mode", ["default", "--continue"])
def test_two_failing_checks_and_a_failing_dbt_test_are_all_reported_and_exit_1(failing: FailingRuns, mode: str) -> None:
    run = failing.runs[mode]
    text = text_of(run)
    command = "doit setup" if mode == "default" else f"doit {mode} setup"
    for name in (NORTH_CHECK["name"], BIG_ORDERS_CHECK["name"], FAILING_DBT_TEST):
        assert name in text, f"{name} not reported by `{command}`:\n{text[-3000:]}"
    assert run.returncode == 1, f"`{command}` exited {run.returncode} (README: 1)\n{text[-1500:]}"
    checks = failing.reports[mode]["validation"]["checks"]
    for name in (NORTH_CHECK["name"], BIG_ORDERS_CHECK["name"], f"dbt_tests.{FAILING_DBT_TEST}"):
        assert (check_entry(failing.reports[mode], name) or {}).get("status") == "failed", sorted(checks)
    assert failing.reports[mode]["exit_code"] == 1


def test_failed_checks_and_dbt_tests_record_a_sample_of_offending_rows(failing: FailingRuns) -> None:
    rep = failing.reports["--continue"]
    for name, total, value in (
        (NORTH_CHECK["name"], 2, "ADA"),
        (BIG_ORDERS_CHECK["name"], 2, 41),
        (f"dbt_tests.{FAILING_DBT_TEST}", 1, "south"),
    ):
        details = (check_entry(rep, name) or {}).get("details") or {}
        sample = details.get("sample")
        assert sample, f"{name}: no sample of offending rows in the run report: {details}"
        assert 0 < len(sample) <= 5
        assert str(value) in json.dumps(sample), (name, sample)
        assert details.get("offending_rows", details.get("failures")) == total, (name, details)


def test_doit_info_shows_the_offending_rows_of_a_failed_check(failing: FailingRuns) -> None:
    custom = text_of(failing.info["validate:no_big_orders"])
    assert "41" in custom, custom  # 20.5 * fx_rate 2: the offending row's amount
    dbt_tests = text_of(failing.info["validate:dbt_tests"])
    assert "south" in dbt_tests, dbt_tests  # the row accepted_values rejects


def test_a_failing_dbt_tests_hint_names_a_command_that_works_from_the_repository_root(failing: FailingRuns) -> None:
    rep = failing.reports["--continue"]
    guidance = (check_entry(rep, f"dbt_tests.{FAILING_DBT_TEST}") or {}).get("guidance", "")
    assert failing.hint_run is not None, f"the hint names no command: {guidance!r}"
    out = text_of(failing.hint_run)
    assert failing.hint_run.returncode in (0, 1), f"`{failing.hint}` from the repository root: {out[-2000:]}"
    for broken in (
        "No dbt_project.yml",
        "not a dbt project",
        "Could not find profile",
        "not recognized",
        "does not exist",
        "Traceback",
    ):
        assert broken not in out, f"`{failing.hint}` from the repository root: {out[-2000:]}"
    assert FAILING_DBT_TEST in out or "south" in out, out[-2000:]


def test_status_lists_the_checks_that_failed(failing: FailingRuns) -> None:
    assert failing.status is not None
    lines = [l for l in failing.status.stdout.splitlines() if l.startswith("check")]
    for name in (NORTH_CHECK["name"], KNOWN_WARNING["name"], FAILING_DBT_TEST):
        assert any(name in l for l in lines), f"`doit status` does not list {name}:\n{failing.status.stdout}"


def test_checks_of_nodes_that_did_not_build_are_reported_not_run_with_the_reason(built_shop: Workspace) -> None:
    ws = built_shop
    ws.model("stg_orders", "select nope from {{ ref('orders') }}")
    add_custom_checks(
        ws,
        KNOWN_WARNING,
        {"name": "orders_are_positive", "severity": "error", "sql": "select * from stg_orders where amount_usd < 0"},
    )
    add_model_tests(ws, "not_run_tests.yml", {"stg_customer_orders": {"id": ["not_null"]}})
    run = ws.doit("setup", json_report=False)
    rep = report(ws)
    text = text_of(run)
    assert run.returncode == 1, text[-2000:]
    for name in ("orders_are_positive", "not_null_stg_customer_orders_id"):
        lines = [l for l in lines_of(run) if name in l]
        assert any("not run" in l and "stg_orders" in l for l in lines), (
            f"{name}: expected a 'not run' line naming the failed model stg_orders, got {lines}\n{text[-2500:]}"
        )
    entry = check_entry(rep, "orders_are_positive")
    assert entry is not None and status_words(entry.get("status")) == "not run", entry
    assert "stg_orders" in json.dumps(entry)
    # the checks of what did build still ran and are reported
    assert (check_entry(rep, KNOWN_WARNING["name"]) or {}).get("status") == "failed"


# -- a terminal run says what it is doing -------------------------------------------------------------


def test_a_terminal_run_shows_a_line_before_dbt_has_parsed_or_built_anything(first_run: FirstRun) -> None:
    run = first_run.terminal
    first = run.first_output()
    assert first is not None
    assert {"parsed", "node done"} <= set(run.events), run.events
    # Nothing silent while dbt starts: a line comes before dbt's parse (and its first node) finishes.
    assert first < run.events["parsed"], (
        f"first output {first - run.started:.1f}s after start, dbt's parse ended at "
        f"{run.events['parsed'] - run.started:.1f}s: the screen stayed blank meanwhile"
    )
    assert first < run.events["node done"]
    assert first - run.started < 5, f"first output {first - run.started:.1f}s after start"


def test_a_terminal_run_says_what_it_is_doing(first_run: FirstRun) -> None:
    text = first_run.terminal.plain
    assert "starting dbt" in text, text[-2000:]
    assert "parsing the dbt project (no earlier parse)" in text, text[-2000:]
    assert re.search(r"running \d+ dbt tests? \(\d+ of \d+\) \d", text), text[-2000:]


def test_terminal_lines_fit_the_terminal_width(first_run: FirstRun) -> None:
    too_long = [line for line in first_run.terminal.screen_lines() if len(line) > 80]
    assert not too_long, "lines the terminal wraps (mid-word):\n" + "\n".join(too_long)


def test_the_progress_line_goes_when_the_last_node_finished(first_run: FirstRun) -> None:
    plain = first_run.terminal.plain
    node_lines = list(re.finditer(r"[✓✗] (seed|model):\S+[^\n]*\n", plain))
    assert node_lines, plain[-2000:]
    rest = plain[node_lines[-1].end() :]
    segment = rest.split("\n", 1)[0]
    assert "building" not in segment, f"progress line lingers after the last node finished: {segment!r}"


def test_a_re_parse_says_why_and_v2_keeps_the_live_line_off_dbts_lines(built_shop: Workspace) -> None:
    ws = built_shop

    def newest_manifest() -> int:  # a var change parses into another context folder: any manifest counts
        return max((p.stat().st_mtime_ns for p in ws.project.glob("target/**/manifest.json")), default=0)

    before = newest_manifest()
    ws.set_vars(fx_rate=3)
    ws.seed("regions", "region,tax_rate\nnorth,0.4\nsouth,0.1\n")
    run = run_in_terminal(doit_cmd(ws, "-v", "2", "setup"), watch={"parsed": lambda: newest_manifest() > before})
    assert run.returncode == 0, run.plain[-3000:]
    assert "parsed" in run.events, "expected a re-parse after a var change"
    shown = run.output_before(run.events["parsed"])
    assert re.search(r"parsing the dbt project \(.*(vars?|fx_rate)", shown), (
        f"nothing said while dbt re-parsed ({run.events['parsed'] - run.started:.1f}s); shown before: {shown!r}"
    )
    assert re.search(r"\d\d:\d\d:\d\d  ", run.plain), "dbt's own log lines are missing at -v 2"
    mixed = [line for line in run.screen_lines() if re.search(r"building.*\d\d:\d\d:\d\d  ", line)]
    assert not mixed, "progress and dbt's log on one line:\n" + "\n".join(mixed[:5])


# -- doit options after the task name ----------------------------------------------------------------


@pytest.mark.parametrize("option", [["-v", "2"], ["--continue"], ["--reporter", "json"]], ids=" ".join)
def test_doit_options_after_the_task_name_work_or_say_where_they_go(built_shop: Workspace, option: list[str]) -> None:
    run = built_shop.doit("setup", *option, json_report=False)
    text = text_of(run)
    assert run.returncode == 0, f"`doit setup {' '.join(option)}` exited {run.returncode}:\n{text}"
    if option[0] == "--reporter":
        document = json.loads(run.stdout[run.stdout.index("{") :])
        assert {t["name"] for t in document["tasks"]} >= {"seed:customers"}
    elif option[0] == "-v":
        assert re.search(r"^· seed:customers +up to date$", run.stdout, re.M), text  # -v 2 lists every task


# -- what a run prints ---------------------------------------------------------------------------------


def task_columns(lines: list[str]) -> dict[str, int]:
    """Task name -> the column its detail starts at, for each task line."""
    return {
        m.group(2): len(m.group(1)) + 1 + len(m.group(2)) + len(m.group(3))
        for line in lines
        if (m := TASK_LINE.match(line))
    }


def test_default_output_lists_what_ran_and_one_tally_of_what_was_up_to_date(first_run: FirstRun) -> None:
    cold = [l for l in first_run.terminal.screen_lines() if l.strip()]
    for node in ("seed:customers", "seed:singles", "model:stg_customer_orders"):
        assert sum(bool(re.match(rf"^\S+ {re.escape(node)}\s", l)) for l in cold) == 1, node
    noop = lines_of(first_run.noop)
    up_to_date = [l for l in noop if "up to date" in l]
    assert len(up_to_date) == 1, "a no-op lists every up-to-date task instead of one tally:\n" + "\n".join(up_to_date)
    assert re.search(r"\b\d+ (tasks? )?(are )?up to date\b", up_to_date[0]), up_to_date[0]
    listed = set(task_columns(lines_of(first_run.verbose)))  # -v 2 still lists every task
    assert {"seed:customers", "model:stg_customer_orders", "validate:known_warning"} <= listed, listed


def test_unchanged_warnings_appear_once_in_the_summary_of_a_no_op(first_run: FirstRun) -> None:
    assert KNOWN_WARNING["name"] in first_run.terminal.plain  # reported when it first failed
    noop = text_of(first_run.noop)
    assert KNOWN_WARNING["name"] not in noop, "a cached warning repeated on a no-op:\n" + noop[-2000:]
    assert re.search(r"\b1 warning\b.*\bunchanged since \d\d:\d\d: doit status lists them", noop), noop[-2000:]


def test_long_task_names_keep_the_columns(first_run: FirstRun) -> None:
    for lines in ([l for l in first_run.terminal.screen_lines() if l.strip()], lines_of(first_run.verbose)):
        columns = task_columns(lines)
        assert f"validate:{LONG_NAMED_CHECK['name']}" in columns or any(n.endswith("…") for n in columns), columns
        assert len(set(columns.values())) == 1, "detail column by task:\n" + "\n".join(
            f"{col:3} {name}" for name, col in sorted(columns.items(), key=lambda item: item[1])
        )


def test_one_row_is_singular(first_run: FirstRun) -> None:
    lines = first_run.terminal.screen_lines()
    line = next(l for l in lines if re.match(r"^\S+ seed:singles\s", l))
    assert re.search(r"\b1 row$", line), line
    ones = [l for l in lines if re.search(r"\b1 (offending )?rows\b", l)]
    assert not ones, ones


def test_redirected_v2_output_has_no_colour_and_a_worker_fall_back_says_so(
    built_shop: Workspace, tmp_path: Path
) -> None:
    # A worker directory whose socket path is too long for AF_UNIX: the worker cannot serve,
    # dbt runs in the doit process (no worker process is ever started).
    worker_dir = tmp_path / ("w" * 120)
    built_shop.seed("regions", "region,tax_rate\nnorth,0.3\nsouth,0.1\n")
    run = built_shop.doit(
        "-v",
        "2",
        "setup",
        json_report=False,  # dbt's lines and its fall-back: dbt must build
        env={"PLANWISE_SETUP_WORKER": "1", "PLANWISE_SETUP_WORKER_DIR": str(worker_dir), "PLANWISE_SETUP_DIRECT": "0"},
    )
    text = text_of(run)
    assert run.returncode == 0, text[-2000:]
    assert "seed:regions" in run.stdout and re.search(r"^\d\d:\d\d:\d\d  ", run.stdout, re.M), text[-2000:]
    coloured = [l for l in text.splitlines() if ANSI.search(l) or "\x1b" in l]
    assert not coloured, "colour codes in redirected output:\n" + "\n".join(map(repr, coloured[:10]))
    assert re.search(r"worker.*in(-| this )process|in(-| this )process.*worker", text, re.I), (
        "the fall-back to in-process dbt was not shown:\n" + text[-2000:]
    )


# -- the Python API ----------------------------------------------------------------------------------


def test_run_setup_on_a_no_op_built_nothing_and_lists_no_internal_tasks(built_shop: Workspace) -> None:
    from setup_tasks.api import run_setup

    result = run_setup(built_shop.config_path)
    assert result.success, result.error
    assert result.built == [] and result.ran == [], f"a no-op reported as built: {result.built}"
    names = [*result.built, *result.up_to_date, *result.failed]
    internal = [n for n in names if not (n == "census" or n.startswith(("seed:", "model:", "snapshot:", "validate:")))]
    assert not internal, f"internal tasks in the API result: {internal}"
    assert "validate" not in names and "setup" not in names and "validate:seed_data_integrity" not in names
    assert {"seed:customers", "validate:seed_data_integrity.present"} <= set(result.up_to_date)


# -- interrupts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig, code, words",
    [(signal.SIGINT, 130, r"^interrupted: "), (signal.SIGTERM, 143, r"^terminated: ")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_during_a_validation_query_ends_the_run_with_its_status_and_a_line(
    built_shop: Workspace, sig: int, code: int, words: str
) -> None:
    ws = built_shop
    add_custom_checks(ws, SLOW_CHECK)
    proc = subprocess.Popen(
        doit_cmd(ws, "setup"), cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        send_after_query_started(proc, ws.db_path, sig)
        out, err = proc.communicate(timeout=180)
    finally:
        stop(proc)
    text = out + err
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{text[-2000:]}"
    assert re.search(words, text, re.I | re.M), f"no line says the run was stopped:\n{text[-2000:]}"
    assert "crashed" not in text and "Traceback" not in text, text[-2000:]
    assert report(ws)["exit_code"] == code


# -- a seed that is not UTF-8 -------------------------------------------------------------------------


def test_a_non_utf8_seed_edited_after_a_build_names_the_encoding(built_shop: Workspace) -> None:
    (built_shop.project / "seeds" / "regions.csv").write_bytes(
        "region,tax_rate\nnorth,0.2\nsüd,0.1\n".encode("latin-1")
    )
    run = built_shop.doit("setup", json_report=False)
    text = text_of(run)
    assert run.returncode == 1, text[-2000:]
    line = next((l for l in lines_of(run) if "regions" in l and ("UTF-8" in l or "utf-8" in l)), "")
    assert "seeds/regions.csv" in line, text[-2000:]
    assert "encoding" in line.lower(), line
    assert "number of fields" not in line, line


def test_a_run_that_starts_the_worker_says_so_and_parses_only_once_dbt_has_started(
    built_shop: Workspace, tmp_path: Path
) -> None:
    """What is waited for, on the screen: dbt's import in a new worker (and how long that worker stays),
    then the parse, each under its own words; never 'parsing' while dbt is still being imported."""
    ws = built_shop
    worker_dir = short_temp_dir("pw-own-")  # short: socket paths are limited
    os.chmod(worker_dir, 0o700)
    ws.model("stg_regions", "select region, tax_rate * 2 as tax_rate from {{ ref('regions') }}")
    up: list[float] = []  # when the worker's socket appeared, on the clock of the output's timestamps

    def worker_up() -> bool:
        sockets = list(worker_dir.glob("*.sock"))
        if sockets and not up:  # its change time, not when this poll (every 20 ms) saw it: the parse may follow
            up.append(sockets[0].stat().st_ctime - (time.time() - time.perf_counter()))  # within one poll
        return bool(sockets)

    try:
        run = run_in_terminal(
            doit_cmd(ws, "setup"),
            env={"PLANWISE_SETUP_WORKER_DIR": str(worker_dir)},
            watch={"worker up": worker_up},
        )
    finally:
        stop_workers(worker_dir)
        shutil.rmtree(worker_dir, ignore_errors=True)
    assert run.returncode == 0, run.plain[-3000:]
    assert up and up[0] <= run.events["worker up"]
    before = run.output_before(up[0])
    assert "starting dbt (in a worker, kept 15 minutes idle)" in before, before
    assert "parsing the dbt project" not in before, f"'parsing' shown while dbt was still being imported: {before!r}"
    assert "parsing the dbt project (files changed: models/staging/stg_regions.sql)" in run.plain, run.plain[-2000:]
    assert re.search(
        r"started a dbt worker \(PID \d+\) for later runs: it keeps dbt loaded until 15 minutes pass",
        " ".join(run.plain.split()),
    ), run.plain[-2000:]


def test_doit_dbt_says_it_is_starting_dbt_before_dbt_prints_anything(built_shop: Workspace) -> None:
    run = run_in_terminal(doit_cmd(built_shop, "dbt", "args=ls --resource-type seed"))
    assert run.returncode == 0, run.plain[-3000:]
    start, dbt_says = run.plain.find("starting dbt (importing it)"), run.plain.find("Running with dbt")
    assert 0 <= start < dbt_says, run.plain[:1500]
