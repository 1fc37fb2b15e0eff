"""Run reports and the run history: content, overwrite-per-run, bounds, regression math."""

from __future__ import annotations

import json

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from factories import FakeEngine
from setup_tasks.engine.run_state import Outcome
from setup_tasks.engine.staleness import NodeStatus
from setup_tasks.errors import PlanwiseError
from setup_tasks.naming import Translator
from setup_tasks.validation.results import CheckResult
from setup_tasks.ops.run_report import (
    HISTORY_LIMIT,
    append_history,
    last_run,
    read_history,
    regressions,
    write_run_report,
)


CHECKS = {
    "row_counts": CheckResult("row_counts", "failed", "error", "3 failing rows", {"failing_rows": 3}),
    "census_quality": CheckResult("census_quality", "passed", "error", ""),
}


def write(engine: FakeEngine, checks: dict[str, CheckResult] | None = None, **kwargs: Any) -> Any:
    return write_run_report(engine, CHECKS if checks is None else checks, Translator(), **kwargs)  # type: ignore[arg-type]


def engine_after_a_run(root: Path) -> FakeEngine:
    """A run that built stg_orders, failed stg_customer_orders and never reached stg_events."""
    engine = FakeEngine(root)
    run = engine.run
    run.checked = {
        "seed.shop.customers": NodeStatus("seed.shop.customers", False),
        "model.shop.stg_orders": NodeStatus("model.shop.stg_orders", True, ("var changed: fx_rate (1 -> 2)",)),
        "model.shop.stg_events": NodeStatus("model.shop.stg_events", True, ("never built",)),
    }
    run.outcomes = {
        "model.shop.stg_orders": Outcome("model.shop.stg_orders", "success", seconds=0.4, rows=4),
        "model.shop.stg_customer_orders": Outcome(
            "model.shop.stg_customer_orders", "error", "model stg_customer_orders failed: boom", 0.1
        ),
    }
    run.invocations = 1
    return engine


def by_task(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["task"]: n for n in report["nodes"]}


def test_report_says_what_each_node_did_and_why(tmp_path: Path) -> None:
    engine = engine_after_a_run(tmp_path)
    path = write(engine, exit_code=1)
    assert path == engine.settings.report.path == tmp_path / "warehouse.setup_report.json"
    report = json.loads(path.read_text())
    nodes = by_task(report)
    assert nodes["model:stg_orders"] == {
        "unique_id": "model.shop.stg_orders",
        "task": "model:stg_orders",
        "status": "built",
        "reason": "var changed: fx_rate (1 -> 2)",
        "message": "",
        "seconds": 0.4,
        "rows": 4,
    }
    assert nodes["model:stg_customer_orders"]["status"] == "failed"
    assert "boom" in nodes["model:stg_customer_orders"]["message"]
    assert nodes["seed:customers"]["status"] == "up-to-date"
    assert nodes["model:stg_events"]["status"] == "skipped"
    assert nodes["model:stg_events"]["reason"] == "never built"
    assert report["counts"] == {"built": 1, "failed": 1, "up-to-date": 1, "skipped": 1}
    assert report["run_id"] == engine.run.build_id
    assert report["exit_code"] == 1 and report["interrupted"] is False
    assert report["dbt_invocations"] == 1
    assert report["config"] == json.loads(json.dumps(engine.settings.as_dict()))
    assert report["config_digest"] == engine.settings.digest()
    assert report["validation"]["checks"]["row_counts"]["details"] == {"failing_rows": 3}
    assert report["validation"]["counts"] == {"failed": 1, "passed": 1}
    assert report["started"] <= report["ended"]


def test_nodes_are_listed_in_build_order(tmp_path: Path) -> None:
    report = json.loads(write(engine_after_a_run(tmp_path)).read_text())
    tasks = [n["task"] for n in report["nodes"]]
    assert tasks.index("model:stg_orders") < tasks.index("model:stg_customer_orders")


def test_writing_twice_in_one_run_overwrites(tmp_path: Path) -> None:
    engine = engine_after_a_run(tmp_path)
    write(engine, exit_code=None)
    write(engine, interrupted=True, exit_code=130)
    history = read_history(engine.settings.report.history_path)
    assert len(history) == 1
    assert history[0]["interrupted"] is True and history[0]["exit_code"] == 130
    assert json.loads(engine.settings.report.path.read_text())["exit_code"] == 130


def test_history_line_keeps_steps_and_failures(tmp_path: Path) -> None:
    engine = engine_after_a_run(tmp_path)
    write(engine, exit_code=1)
    entry = last_run(engine.settings.report.history_path)
    assert entry is not None
    assert entry["steps"] == {"model:stg_orders": 0.4, "validate:census_quality": 0.0, "validate:row_counts": 0.0}
    assert entry["failed"] == ["model:stg_customer_orders"]
    assert entry["validation"] == {"failed": 1, "passed": 1}


def test_validation_results_of_the_validation_module(tmp_path: Path) -> None:
    engine = engine_after_a_run(tmp_path)
    checks = {
        "census.quality": CheckResult("census.quality", "failed", "error", "3 duplicate ids", seconds=0.25),
        "seeds.integrity": CheckResult("seeds.integrity", "passed", "critical", "", seconds=9.0, up_to_date=True),
    }
    report = json.loads(write(engine, checks).read_text())
    assert report["validation"]["counts"] == {"failed": 1, "passed": 1}
    assert report["validation"]["checks"]["census.quality"]["message"] == "3 duplicate ids"
    steps = last_run(engine.settings.report.history_path)["steps"]
    assert steps["validate:census.quality"] == 0.25
    assert "validate:seeds.integrity" not in steps  # reused from an earlier run: no time spent now


def test_a_process_that_ran_nothing_writes_nothing(tmp_path: Path) -> None:
    engine = FakeEngine(tmp_path)
    assert write(engine, {}) is None
    assert not engine.settings.report.path.exists()
    assert not engine.settings.report.history_path.exists()


def test_an_unwritable_report_is_one_line_with_the_fix(tmp_path: Path) -> None:
    engine = engine_after_a_run(tmp_path)
    (tmp_path / "warehouse.setup_report.json").mkdir()  # a directory where the file should go
    with pytest.raises(PlanwiseError) as err:
        write(engine)
    assert "cannot write the run report" in err.value.cause and "report.path" in err.value.fix


def test_history_is_bounded_and_skips_unreadable_lines(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    for i in range(5):
        append_history(path, {"run_id": f"r{i}"}, limit=3)
    assert [r["run_id"] for r in read_history(path, limit=3)] == ["r2", "r3", "r4"]
    assert len(path.read_text().splitlines()) == 5  # appended (issue 21): rewritten only at twice the limit
    with path.open("a") as fh:
        fh.write("{not json\n")
    assert last_run(path) == {"run_id": "r4"}
    append_history(path, {"run_id": "r5"}, limit=3)  # six lines: the rewrite keeps the last three runs
    assert [r["run_id"] for r in read_history(path)] == ["r3", "r4", "r5"]
    append_history(path, {"run_id": "r5", "seconds": 2}, limit=3)  # the same run again: replaced
    assert read_history(path)[-1] == {"run_id": "r5", "seconds": 2} and len(read_history(path)) == 3
    assert HISTORY_LIMIT == 200


def history(path: Path, *runs: dict[str, float]) -> Path:
    for i, steps in enumerate(runs):
        append_history(path, {"run_id": f"r{i}", "steps": steps})
    return path


def test_regression_is_a_step_slower_than_factor_times_its_median(tmp_path: Path) -> None:
    path = history(
        tmp_path / "h.jsonl",
        {"a": 1.0, "b": 1.0},
        {"a": 1.2, "b": 1.0},
        {"a": 0.8, "b": 1.0},
        {"a": 1.6, "b": 1.4},
    )
    assert regressions(path) == [("a", 1.6, 1.0)]
    assert regressions(path, factor=1.3) == [("a", 1.6, 1.0), ("b", 1.4, 1.0)]


def test_steps_with_few_samples_or_tiny_times_are_ignored(tmp_path: Path) -> None:
    path = history(
        tmp_path / "h.jsonl",
        {"new": 1.0, "tiny": 0.001, "from_tiny": 0.001},
        {"new": 1.0, "tiny": 0.001, "from_tiny": 0.001},
        {"tiny": 0.001, "from_tiny": 0.001},
        {"new": 9.0, "tiny": 0.04, "from_tiny": 2.0},
    )
    # "new" has 2 earlier samples; "tiny" is noise; "from_tiny" really got slow.
    assert regressions(path) == [("from_tiny", 2.0, 0.001)]


def test_a_small_absolute_slowdown_is_noise_not_a_regression(tmp_path: Path) -> None:
    path = history(tmp_path / "h.jsonl", *[{"seed": 0.13, "model": 0.4}] * 3, {"seed": 0.23, "model": 0.9})
    assert regressions(path) == [("model", 0.9, 0.4)]  # 1.8x and 0.1 s slower is noise; 0.5 s is not


def test_no_history_no_regressions(tmp_path: Path) -> None:
    assert regressions(tmp_path / "missing.jsonl") == []
    assert last_run(tmp_path / "missing.jsonl") is None


@hsettings(max_examples=30, deadline=None)
@given(seconds=st.floats(0, 100), runs=st.integers(1, 8))
def test_a_step_as_fast_as_ever_never_regresses(tmp_path_factory: Any, seconds: float, runs: int) -> None:
    path = tmp_path_factory.mktemp("h") / "h.jsonl"
    assert regressions(history(path, *[{"s": seconds}] * runs)) == []
