"""The terminal reporter: plain when piped, coloured with live progress on a terminal, quiet at -v 0."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace
from typing import Any

import pytest
from doit.exceptions import TaskFailed, UnmetDependency

from setup_tasks.cli.app import App
from setup_tasks.cli.reporter import SetupReporter, cli_verbosity, reporter_for  # noqa: F401
from setup_tasks.engine.engine import Outcome, RunState
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
        self.settings = SimpleNamespace()
        self.manifest = SimpleNamespace(nodes={})
        self.checks: dict = {}

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
        return self._engine.checks  # type: ignore[union-attr]


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
    assert any(l.startswith("· seed:regions") and "up to date" in l for l in lines)
    assert sum("seed:customers" in l for l in lines) == 1  # printed once, when dbt finished it
    assert any(l.startswith("✓ seed:customers") and "3 rows" in l for l in lines)
    assert any(l.startswith("✗ model:stg_customers") and "Parser Error" in l for l in lines)
    assert any(l.startswith("- model:stg_orders") and "not run" in l for l in lines)
    assert "summary: 1 built, 1 up to date, 1 failed, 1 not run, 1 leftover table(s) dropped" in text
    assert "validations: 1 failed (error)" in text
    assert any(l.startswith("- main.stg_old") and "no node of the project builds it now" in l for l in lines)


def test_terminal_output_has_colour_and_live_progress(engine: FakeEngine) -> None:
    out = Stream(tty=True)
    run(make_reporter(out, {"verbosity": 1}, engine), engine)
    text = out.getvalue()
    assert "\x1b[32m✓\x1b[0m" in text and "\x1b[31m✗\x1b[0m" in text
    assert re.search(r"\r\x1b\[K.*building seed:customers \(1 of 2\)", text)
    assert text.rstrip().endswith("validations: 1 failed (error)")


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


def test_verbose_lets_dbt_log(engine: FakeEngine) -> None:
    make_reporter(Stream(tty=False), {"verbosity": 2}, engine).initialize({}, [])
    assert engine.quiet is False


@pytest.mark.parametrize("argv, expected", [
    (["setup"], 1), (["-v", "2", "setup"], 2), (["-v0", "setup"], 0), (["--verbosity=2"], 2), (["--verbosity", "0"], 0),
])
def test_verbosity_comes_from_doits_option(argv: list[str], expected: int) -> None:
    assert cli_verbosity(argv) == expected
