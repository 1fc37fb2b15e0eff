"""Python API for notebooks and orchestrators: the same doit tasks, driven through doit's API.

    from setup_tasks.api import run_setup, get_system_status
    result = run_setup()                      # setup.yaml when there is one; or run_setup(quick=True)
    if not result.success: print(result.error or result.failed)

Nothing here re-implements a step: ``run_setup`` runs doit's ``run`` command over
the task functions dodo.py uses, in this process (dbt is imported once per process,
so repeated calls are cheap).
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain
from doit.exceptions import InvalidDodoFile, UnmetDependency
from doit.reporter import ConsoleReporter

from .cli.commands import setup_test_results
from .cli.dodo import namespace
from .cli.app import App
from .cli.command_line import only_looks
from .cli.lifecycle import RunHalted
from .cli.forget import Forget
from .cli.info import Info, List
from .config import Settings, load_settings
from .errors import ConfigError, PlanwiseError
from .naming import CENSUS_TASK, DEPS_TASK, Translator
from .ops.status import SystemStatus, collect_status, unready
from .ops.verify import Verification, verify_engine


@dataclass(frozen=True)
class TaskRun:
    """One seed, model, census or check task of a run: built (a node), ran (a check), up-to-date, failed or not-run."""

    name: str
    status: str
    seconds: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class SetupResult:
    success: bool
    exit_code: int
    tasks: tuple[TaskRun, ...]
    validation: dict[str, Any]
    seconds: float
    error: str = ""

    def named(self, status: str) -> list[str]:
        return [t.name for t in self.tasks if t.status == status]

    @property
    def built(self) -> list[str]:
        """Seeds, models, snapshots and the census built in this run, and ``deps`` when it installed packages."""
        return self.named("built")

    @property
    def ran(self) -> list[str]:
        """Checks that ran in this run (their results: ``validation``)."""
        return self.named("ran")

    @property
    def up_to_date(self) -> list[str]:
        return self.named("up-to-date")

    @property
    def failed(self) -> list[str]:
        return self.named("failed")


@dataclass
class _Recorder:
    """Collects what doit reports about the tasks that are the work (nodes, census, checks), for one app."""

    app: App
    started: dict[str, float] = field(default_factory=dict)
    runs: list[TaskRun] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def kind(self, task: Any) -> str | None:
        """'built' for a node, the census or the packages (deps), 'ran' for a check, None for groups and helpers."""
        if task.name in self.app.node_task_names or task.name in (CENSUS_TASK, DEPS_TASK):
            return "built"
        if task.name in self.app.check_names:
            return "ran"
        return None

    def add(self, task: Any, status: str, seconds: float = 0.0, message: str = "") -> None:
        kind = self.kind(task)
        if kind is not None:
            self.runs.append(TaskRun(task.name, kind if status == "success" else status, seconds, message))

    def reporter(self) -> type:
        recorder = self

        class RecordingReporter(ConsoleReporter):
            def __init__(self, outstream: Any, options: dict[str, Any]) -> None:
                super().__init__(io.StringIO(), options)

            def execute_task(self, task: Any) -> None:
                recorder.started[task.name] = time.perf_counter()

            def _seconds(self, task: Any) -> float:
                return time.perf_counter() - recorder.started.get(task.name, time.perf_counter())

            def add_success(self, task: Any) -> None:
                recorder.add(task, "success", self._seconds(task))

            def add_failure(self, task: Any, fail: Any) -> None:
                recorder.app.note_failure(task.name, fail)
                message = fail.message if hasattr(fail, "message") else str(fail)
                status = "not-run" if isinstance(fail, UnmetDependency) else "failed"
                recorder.add(task, status, self._seconds(task), str(message))

            def skip_uptodate(self, task: Any) -> None:
                recorder.add(task, "up-to-date")

            def skip_ignore(self, task: Any) -> None:
                recorder.add(task, "ignored")

            def runtime_error(self, msg: str) -> None:
                recorder.app.note_doit_error(msg)
                recorder.errors.append(msg)

        return RecordingReporter


def _settings(config: str | Path | Settings | None) -> Settings:
    """Settings as a dodo.py beside the config file would load them: defaults resolve in its folder
    (a team's repository: ``run_setup("team/setup.yaml")``); without a file, in the working directory."""
    if isinstance(config, Settings):
        return config
    root = Path(os.path.abspath(config)).parent if config is not None else Path.cwd()
    return load_settings(config, root=root)


def _app(
    config: str | Path | Settings | None,
    translator: Translator | None,
    read_only: bool = False,
    keep_going: bool = False,
) -> App:
    return App(
        settings=_settings(config), translator=translator, mode="api", read_only=read_only, keep_going=keep_going
    )


# Our commands, whatever the working directory (pyproject.toml registers them for the command line).
COMMANDS: Mapping[str, Mapping[str, str]] = {
    "COMMAND": {cls.__name__.lower(): f"{cls.__module__}:{cls.__name__}" for cls in (Forget, Info, List)}
}


def _run(app: App, args: Sequence[str], reporter: type | None) -> int:
    loader = ModuleTaskLoader(namespace(app, reporter))
    return DoitMain(loader, extra_config=COMMANDS).run(list(args)) or 0  # some doit commands return None for success


def run_doit(
    args: Sequence[str],
    config: str | Path | Settings | None = None,
    reporter: type | None = None,
    translator: Translator | None = None,
) -> int:
    """Run a doit command (e.g. ``["forget", "seed:x"]``) over the setup tasks, in process."""
    app = _app(config, translator, only_looks(args))
    try:
        return _run(app, args, reporter)
    finally:
        app.close()


def run_setup(
    config: str | Path | Settings | None = None,
    quick: bool = False,
    tasks: Sequence[str] | None = None,
    continue_on_failure: bool | None = None,
    translator: Translator | None = None,
) -> SetupResult:
    """Run ``setup`` (or ``quick``, or the named tasks) and return what happened."""
    started = time.perf_counter()
    try:
        # None keeps setup.fail_fast as configured; True turns it off for this run (as doit's --continue).
        app = _app(config, translator, keep_going=bool(continue_on_failure))
    except PlanwiseError as err:
        return SetupResult(False, 3, (), {}, 0.0, err.one_line())
    recorder = _Recorder(app)
    args = ["run", *(tasks or ["quick" if quick else "setup"])]
    try:
        app.engine()  # definition errors surface here as one line, not on doit's stderr
        try:
            code = _run(app, args, recorder.reporter())
        except RunHalted:  # the database is locked: the failure that said so is recorded
            code = 1
        code = code if code == 3 else app.exit_status()  # 3: doit refused the command line
    except (PlanwiseError, InvalidDodoFile) as err:
        app.close()
        message = err.one_line() if isinstance(err, PlanwiseError) else str(err)
        code = (
            3 if isinstance(err, (ConfigError, InvalidDodoFile)) else 1
        )  # as doit says: a dodo error, or a failed run
        return SetupResult(False, code, tuple(recorder.runs), {}, time.perf_counter() - started, message)
    validation = app.check_results
    if app.state_error is not None:  # doit's state could not be written (disk full, read-only)
        code = code or 1
        recorder.errors.append(app.state_error.one_line())
    app.write_report(code)
    app.close()
    error = "; ".join(recorder.errors) or "; ".join(f"{task}: {why}" for task, why in app.failures[:3])
    return SetupResult(code == 0, code, tuple(recorder.runs), validation, time.perf_counter() - started, error)


def get_system_status(
    config: str | Path | Settings | None = None, translator: Translator | None = None
) -> SystemStatus:
    """What `doit status` reports, as data: ``.ready``, ``.reason``, ``.nodes``, ... Never builds.

    ``ready`` follows the rule documented in ``setup_tasks.ops.status``.
    """
    try:
        app = _app(config, translator, read_only=True)
    except PlanwiseError as err:
        return unready(err.one_line())
    try:
        return collect_status(app.settings, app.engine, app.translator)
    finally:
        app.close()


def verify_setup(config: str | Path | Settings | None = None, keep: Path | None = None) -> Verification:
    """What `doit verify` does, as data: setup's database against a fresh `dbt build` of the same files
    (``keep``: a folder for dbt's scratch build to stay in, for a look at it)."""
    app = _app(config, None, read_only=True)
    try:
        engine = app.engine()
        return verify_engine(engine, setup_test_results(app, engine), keep)
    finally:
        app.close()
