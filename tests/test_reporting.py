"""The terminal reporter: plain when piped, coloured with live progress on a terminal, quiet at -v 0."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from doit.exceptions import TaskFailed, UnmetDependency

from setup_tasks.cli.app import App
from setup_tasks.cli.command_line import CommandLine
from setup_tasks.cli.json_reporter import JsonReporter
from setup_tasks.cli.reporter import SetupReporter, cli_verbosity, reporter_for  # noqa: F401
from setup_tasks.engine.run_state import Outcome, RunState
from setup_tasks.validation.results import CheckResult

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def task(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, actions=[object()])


class FakeEngine:
    """What the reporter reads of an engine: node names, this run's outcomes and checks."""

    def __init__(self) -> None:
        self.run = RunState()
        self.listeners: list = []
        self.quiet = True
        self.log = None
        self.settings = SimpleNamespace()
        self.manifest = SimpleNamespace(nodes={})
        self.checks: dict = {}

    def listen(self, listener, dbt_lines=None) -> None:  # as engine.events.Events.listen
        self.listeners.append(listener)
        if dbt_lines is not None:
            self.log, self.quiet = dbt_lines, False

    def node(self, uid: str) -> SimpleNamespace:
        kind, _, name = uid.split(".", 2)
        return SimpleNamespace(resource_type=kind, name=name, unique_id=uid)


class FakeApp(App):
    """An app whose engine is the fake and whose checks are set by the test."""

    def __init__(self, engine: FakeEngine) -> None:
        super().__init__(engine=engine, mode="api")  # type: ignore[arg-type]
        self.node_task_names = frozenset({"seed:customers", "model:stg_customers", "seed:regions", "model:stg_orders"})

    @property
    def check_results(self) -> dict:
        return self.current_engine.checks  # type: ignore[union-attr]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def make_reporter(out: Stream, options: dict, engine: FakeEngine) -> Any:
    """The reporter class bound to a fake app over ``engine``, instantiated as doit does."""
    return reporter_for(FakeApp(engine))(out, options)


def run(reporter: SetupReporter, engine: FakeEngine) -> None:
    reporter.initialize({}, [])
    reporter.skip_uptodate(task("seed:regions"))
    engine.listeners[0]("batch", {"nodes": ["seed.p.customers", "model.p.stg_customers"]})
    engine.listeners[0]("start", {"unique_id": "seed.p.customers"})
    ok = Outcome("seed.p.customers", "success", seconds=0.12, rows=3)
    engine.run.outcomes[ok.unique_id] = ok
    engine.listeners[0]("node", {"unique_id": ok.unique_id, "outcome": ok})
    reporter.execute_task(task("seed:customers"))
    reporter.add_success(task("seed:customers"))
    reporter.add_failure(task("model:stg_customers"), TaskFailed("model stg_customers failed: Parser Error"))
    reporter.add_failure(task("model:stg_orders"), UnmetDependency("model:stg_customers"))
    engine.checks["cola_years"] = CheckResult("cola_years", "failed", "error", "m")
    engine.run.retired.append("main.stg_old")
    engine.listeners[0]("retired", {"tables": ["main.stg_old"]})
    reporter.complete_run()


def test_piped_output_is_plain_lines_and_a_summary(engine: FakeEngine) -> None:
    out = Stream(tty=False)
    run(make_reporter(out, {"verbosity": 1}, engine), engine)
    text = out.getvalue()
    assert not ANSI.search(text) and "\r" not in text
    lines = text.splitlines()
    assert not any(l.startswith("· seed:regions") for l in lines)  # up-to-date tasks: one tally, below
    assert sum("seed:customers" in l for l in lines) == 1  # printed once, when dbt finished it
    assert any(l.startswith("✓ seed:customers") and l.endswith("3 rows") for l in lines)
    assert any(l.startswith("✗ model:stg_customers") and "Parser Error" in l for l in lines)
    assert any(l.startswith("- model:stg_orders") and "not run: model:stg_customers failed" in l for l in lines)
    assert "summary: 1 built, 1 failed, 1 not run, 1 up to date, 1 leftover table dropped" in text
    assert "validations: 1 fail" in text
    assert any(l.startswith("- main.stg_old") and "no node of the project builds it now" in l for l in lines)


def test_terminal_output_has_colour_and_live_progress(engine: FakeEngine) -> None:
    out = Stream(tty=True)
    run(make_reporter(out, {"verbosity": 1}, engine), engine)
    text = out.getvalue()
    assert "\x1b[32m✓\x1b[0m" in text and "\x1b[31m✗\x1b[0m" in text
    assert re.search(r"\r\x1b\[K\x1b\[33m…\x1b\[0m building seed:customers \(1 of 2\) \d", text)
    assert ANSI.sub("", text).rstrip().endswith("validations: 1 fail")


def test_the_live_line_goes_when_the_last_node_of_the_batch_finished(engine: FakeEngine) -> None:
    out = Stream(tty=True)
    reporter = make_reporter(out, {"verbosity": 1}, engine)
    reporter.initialize({}, [])
    engine.listeners[0]("batch", {"nodes": ["seed.p.customers"]})
    engine.listeners[0]("start", {"unique_id": "seed.p.customers"})
    done = Outcome("seed.p.customers", "success", seconds=0.1, rows=1)
    engine.listeners[0]("node", {"unique_id": done.unique_id, "outcome": done})
    after = out.getvalue().split("seed:customers", 2)[-1]
    assert "building" not in after and "1 row" in after and "1 rows" not in after
    reporter.live.close()


def test_quiet_prints_errors_and_the_summary_only(engine: FakeEngine) -> None:
    out = Stream(tty=False)
    run(make_reporter(out, {"verbosity": 0}, engine), engine)
    text = out.getvalue()
    assert "up to date" not in text.split("summary")[0] and "✓" not in text
    assert "✗ model:stg_customers" in text and "summary:" in text


def test_quiet_success_prints_nothing(engine: FakeEngine) -> None:
    out = Stream(tty=False)
    reporter = make_reporter(out, {"verbosity": 0}, engine)
    reporter.initialize({}, [])
    reporter.skip_uptodate(task("seed:regions"))
    reporter.complete_run()
    assert out.getvalue() == ""


def test_verbose_lets_dbt_log_and_lists_up_to_date_tasks(engine: FakeEngine) -> None:
    out = Stream(tty=False)
    reporter = make_reporter(out, {"verbosity": 2}, engine)
    reporter.initialize({}, [])
    assert engine.quiet is False and engine.log == reporter.dbt_line
    reporter.skip_uptodate(task("seed:regions"))
    engine.log("\x1b[32mOK\x1b[0m loaded seed file main.regions")
    text = out.getvalue()
    assert any(l.startswith("· seed:regions") and "up to date" in l for l in text.splitlines())
    assert re.search(r"^\d\d:\d\d:\d\d  OK loaded seed file main.regions$", text, re.M)  # no colour in a file


def test_long_names_keep_one_column_and_the_longest_is_cut(engine: FakeEngine) -> None:
    out = Stream(tty=False)
    reporter = make_reporter(out, {"verbosity": 1}, engine)
    long_name = "validate:" + "x" * 80
    tasks = {
        name: SimpleNamespace(name=name, actions=[object()], task_dep=[])
        for name in ("seed:customers", "validate:a_check_with_a_long_name", long_name)
    }
    tasks["setup"] = SimpleNamespace(name="setup", actions=[], task_dep=list(tasks))
    reporter.initialize(tasks, ["setup"])
    for name in tasks:
        if name != "setup":
            reporter.add_success(task(name))
    columns = {l.split(" ", 2)[1]: len(l) - len(l.split()[-1]) for l in out.getvalue().splitlines()}
    assert len(set(columns.values())) == 1, columns
    assert any(name.endswith("…") and len(name) == 64 for name in columns)


def test_terminal_lines_wrap_at_words_within_the_width(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out = Stream(tty=True)
    reporter = make_reporter(out, {"verbosity": 1}, engine)
    reporter.initialize({}, [])
    reporter.add_failure(task("model:stg_customers"), TaskFailed("model stg_customers failed: " + "word " * 30))
    lines = ANSI.sub("", out.getvalue()).splitlines()
    assert len(lines) > 1 and all(len(l) <= 60 for l in lines)
    assert all(l.rstrip().endswith("word") or l.rstrip().endswith("failed:") for l in lines)
    reporter.live.close()


def test_unchanged_warnings_are_one_line_of_the_summary(engine: FakeEngine) -> None:
    out = Stream(tty=False)
    reporter = make_reporter(out, {"verbosity": 1}, engine)
    reporter.initialize({}, [])
    for name in ("w1", "w2"):
        engine.checks[name] = CheckResult(name, "failed", "warning", "3 rows", up_to_date=True, checked_at=1.0e9)
    engine.checks["ok"] = CheckResult("ok", "passed", "error", "fine", up_to_date=True)
    reporter.complete_run()
    text = out.getvalue()
    assert "w1" not in text and "w2" not in text
    assert re.search(
        r"validations: 1 passed, 2 warn\n  2 warnings unchanged since 2001-09-09 \d\d:\d\d: doit status lists them",
        text,
    )


def test_the_exit_status_is_1_for_a_failure_whatever_doit_would_say() -> None:
    app = App(mode="api")
    app.note_failure("model:x", UnmetDependency("model:y"))
    assert app.exit_status() == 0  # only the failure it waited for counts
    app.note_failure("model:y", TaskFailed("broken"))
    assert app.exit_status() == 1
    app.lifecycle.interrupted, app.lifecycle.terminated = True, True
    assert app.exit_status() == 143


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["setup"], 1),
        (["-v", "2", "setup"], 2),
        (["-v0", "setup"], 0),
        (["--verbosity=2"], 2),
        (["--verbosity", "0"], 0),
        (["setup", "-v", "2"], 2),
    ],
)
def test_verbosity_comes_from_doits_option(argv: list[str], expected: int) -> None:
    assert cli_verbosity(argv) == expected


def test_doit_options_count_before_or_after_the_task_name() -> None:
    line = CommandLine.parse(["setup", "--continue", "--reporter", "json", "config=x.yaml"])
    assert (line.keep_going, line.reporter, line.verbosity) == (True, "json", None)
    assert CommandLine.parse(["-c", "setup"]).keep_going and not CommandLine.parse(["setup"]).keep_going


def test_doits_json_report_ends_with_setups_status() -> None:
    def setup_action() -> None:
        """A stand-in for an action of setup's App (the reporter knows setup's tasks by their actions)."""

    setup_action.__module__ = "setup_tasks.cli.app"

    def finished(*failures: tuple[str, Any]) -> int | str | None:
        reporter = JsonReporter(Stream(tty=False), {})
        for name, fail in failures:
            doit_task = SimpleNamespace(name=name, actions=[SimpleNamespace(out="", err="", py_callable=setup_action)])
            reporter.get_status(doit_task)
            reporter.add_failure(doit_task, fail)
        with pytest.raises(SystemExit) as ended:
            reporter.complete_run()
        return ended.value.code

    assert finished(("model:stg_orders", UnmetDependency("model:stg_customers"))) == 0  # doit would say 2
    assert (
        finished(
            ("model:stg_customers", TaskFailed("broken")), ("model:stg_orders", UnmetDependency("model:stg_customers"))
        )
        == 1
    )


def test_setups_doit_plugins_are_installed_and_declared_for_a_checkout() -> None:
    """Entry points reach a team's repository (pyproject.toml's [tool.doit] only the folder it is in)."""
    import tomllib
    from importlib.metadata import entry_points

    plugins = {
        "doit.COMMAND": {
            "forget": "setup_tasks.cli.forget:Forget",
            "info": "setup_tasks.cli.info:Info",
            "list": "setup_tasks.cli.info:List",
        },
        "doit.REPORTER": {"json": "setup_tasks.cli.json_reporter:JsonReporter"},
    }
    for group, wanted in plugins.items():
        installed = {e.name: e.value for e in entry_points(group=group)}
        assert installed.items() >= wanted.items(), (
            f"{group}: {installed} -- fix: pip install -e . (the package's entry points are its metadata)"
        )
    doit = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["tool"]["doit"]
    assert doit["plugins"]["command"] == plugins["doit.COMMAND"]
    assert doit["plugins"]["reporter"] == plugins["doit.REPORTER"]


FOREIGN_DODO = """
def task_broken():
    return {"actions": ["exit 1"]}

def task_after():
    return {"actions": ["echo after"], "task_dep": ["broken"]}

def task_fine():
    return {"actions": ["echo fine"], "uptodate": [True]}
"""


def test_another_projects_dodo_gets_doits_own_forget_and_json_exit_status(tmp_path: Path) -> None:
    """Installed, setup's plugins serve every doit run in the environment: for a dodo that is not
    setup's they behave as doit's own, and import nothing of setup but themselves."""
    import subprocess
    import sys

    from factories import clean_env

    (tmp_path / "dodo.py").write_text(FOREIGN_DODO)

    def doit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "doit", *args],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    console, as_json = doit("--continue"), doit("--continue", "--reporter", "json")
    assert console.returncode == as_json.returncode != 0, (console.returncode, as_json.returncode, as_json.stderr)
    assert "Traceback" not in as_json.stderr and as_json.stdout.lstrip().startswith("{"), as_json.stdout[-500:]
    assert doit("fine").returncode == 0 and "-- fine" in doit("fine").stdout  # up to date: doit skips it
    forget = doit("forget", "fine")
    assert forget.returncode == 0 and "forgetting fine" in forget.stdout, forget.stdout + forget.stderr
    info = doit("info", "broken")  # doit's own info for doit's tasks (its exit 1 for a task that will run)
    assert info.returncode == 1 and "status     : run" in info.stdout, info.stdout + info.stderr
    unknown = doit("info", "nope")  # but no KeyError traceback for a name it does not know
    assert unknown.returncode == 3 and "'nope' is not a task" in unknown.stderr and "Traceback" not in unknown.stderr
    assert "fine" in doit("list").stdout
    imported = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "doit", "forget", "fine"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    ).stderr
    heavy = {line.rsplit("|", 1)[-1].strip() for line in imported.splitlines() if line.startswith("import time:")}
    assert not {"setup_tasks.cli.app", "setup_tasks.engine.engine", "duckdb"} & heavy, sorted(
        m for m in heavy if m.startswith("setup_tasks")
    )


@pytest.mark.parametrize("verbosity, note, says", [(1, False, True), (1, True, False), (2, False, False)])
def test_only_a_no_op_that_printed_nothing_but_its_summary_leaves_it_to_say_again(
    engine: FakeEngine, verbosity: int, note: bool, says: bool
) -> None:
    """What the witness repeats (cli.shortcut) is the whole output of the run it witnessed: a tally at
    doit's default verbosity, no note, no line for a task."""
    out = Stream(tty=False)
    reporter = make_reporter(out, {"verbosity": verbosity}, engine)
    reporter.initialize({}, [])
    reporter.skip_uptodate(task("seed:regions"))
    reporter.skip_uptodate(task("model:stg_orders"))
    if note:
        reporter.note("the saved copy of the database contents was damaged: read again")
    reporter.complete_run()
    said = reporter.app.witness.said
    assert (said == {"tally": "2 up to date", "lines": []}) if says else said is None
    if says:
        assert out.getvalue().startswith("summary: 2 up to date in ")
