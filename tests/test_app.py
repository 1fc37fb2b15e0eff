"""The app of one run: which command lines only look, and what a look leaves behind (nothing, on no database)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from setup_tasks.cli.app import App
from setup_tasks.cli.command_line import only_looks
from setup_tasks.config import load_settings


@pytest.mark.parametrize(
    "args, looks",
    [
        (["list"], True),
        (["list", "--all", "--status", "config=x.yaml"], True),
        (["info", "model:stg_orders"], True),
        (["status"], True),
        (["status", "config=x.yaml"], True),
        (["-v", "2", "status"], True),
        (["run", "--reporter", "json", "status"], True),
        (["graph", "--dir", "/tmp/out"], True),
        ([], False),  # the default task: setup
        (["setup"], False),
        (["status", "setup"], False),
        (["forget", "-a"], False),
        (["--continue", "setup"], False),
        (["config=status"], False),
    ],
)
def test_only_looks(args: list[str], looks: bool) -> None:
    assert only_looks(args) is looks


def settings(tmp_path: Path):
    (tmp_path / "setup.yaml").write_text(yaml.safe_dump({"database": {"path": "db/warehouse.duckdb"}}))
    return load_settings(tmp_path / "setup.yaml", root=tmp_path)


def test_a_look_at_a_database_not_built_keeps_doits_state_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    app = App(settings=settings(tmp_path), mode="api", read_only=True)
    app.open()
    dep_file = Path(app.doit_config(reporter=type(None))["dep_file"])
    dep_file.write_text("")  # as doit does
    assert not (tmp_path / "db" / ".planwise").exists() and tmp_path not in dep_file.parents
    app.close()
    assert not dep_file.exists() and list((tmp_path / "db").iterdir()) == []


def test_a_build_of_a_project_that_cannot_load_keeps_doits_state_apart_beside_the_database(tmp_path: Path) -> None:
    app = App(settings=settings(tmp_path), mode="api")  # no dbt project in tmp_path
    assert app.open() is None and "dbt_project.yml" in app.load_error, app.load_error
    dep_file = Path(app.doit_config(reporter=type(None))["dep_file"])
    # not in a project's folder (projects/<name>/): the tasks of an unloaded project only fail with the reason
    assert dep_file == tmp_path / "db" / ".planwise" / "warehouse.duckdb" / "unloaded" / "doit.sqlite"
    assert dep_file.parent.is_dir()


@pytest.mark.slow
def test_looking_at_a_database_not_built_leaves_nothing_beside_it(shop) -> None:
    from setup_tasks.api import get_system_status, run_doit

    folder = shop.root / "db"
    folder.mkdir()
    shop.write_config(database={"path": "db/warehouse.duckdb"})
    out_dir = shop.root / "diagrams"
    left_by = {}
    for args in (
        ["list"],
        ["list", "--all", "--status"],
        ["info", "model:stg_orders"],
        ["status"],
        ["graph", "--dir", str(out_dir)],
    ):
        assert run_doit(args, shop.config_path) in ((0, 1) if args[0] in ("info", "status") else (0,)), args
        left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
        if left:
            left_by[" ".join(args)] = left
            shutil.rmtree(folder)  # so that each command is judged on its own
            folder.mkdir()
    assert get_system_status(shop.config_path).ready
    assert left_by == {} and list(folder.iterdir()) == [], f"looking left files beside the database: {left_by}"
    assert {p.suffix for p in out_dir.iterdir()} == {".mmd", ".dot"}  # graph wrote where it was told


def test_a_second_ctrl_c_while_the_run_ends_keeps_the_interrupted_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C outside any action ends the run through the excepthook; another Ctrl-C while it writes the
    report (people press it twice) must not kill the process by SIGINT (-2) instead of exiting 130."""
    import os
    import signal

    app = App(mode="api", root=tmp_path)
    exits: list[int] = []

    class Exited(Exception):
        pass

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise Exited

    def report_interrupted_again(exit_code: int | None = None) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # delivered now: raises KeyboardInterrupt here unless ignored

    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setattr(app, "write_report", report_interrupted_again)
    try:
        with pytest.raises(Exited):
            app.lifecycle.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert exits == [130] and app.interrupted


@pytest.mark.slow
def test_the_engine_is_made_by_open_with_its_options_and_the_app_holds_its_settings(shop) -> None:
    """Issue 23: the engine is built by an explicit step (``App.open``, where the dodo namespace is made), not as
    a side effect of doit asking for DOIT_CONFIG; --continue comes in at construction; the settings the app
    holds are the very object the engine uses (its census and database resolved)."""
    app = App(settings=load_settings(shop.config_path, root=shop.root), mode="api", read_only=True)
    with pytest.raises(RuntimeError, match="open"):
        app.doit_config(reporter=type(None))  # doit's state file goes with the loaded project: open first
    assert app.current_engine is None  # making the app loads nothing
    engine = app.open()
    try:
        assert engine is not None and app.current_engine is engine and app.open() is engine
        assert app.settings is engine.settings and engine.settings.database.path is not None
        assert engine.builder.fail_fast is bool(engine.settings.setup.fail_fast) is True
    finally:
        app.close()
    going = App(settings=load_settings(shop.config_path, root=shop.root), mode="api", read_only=True, keep_going=True)
    try:
        assert going.open() is not None and going.current_engine.builder.fail_fast is False  # type: ignore[union-attr]
    finally:
        going.close()
