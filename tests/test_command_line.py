"""The README's commands as people mistype and pipe them: one line naming the cause and the fix, never a
traceback; `doit info` in words, exit 0 for a stale task (a `set -e` script goes on)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from factories import REPO, Workspace, clean_env

pytestmark = pytest.mark.slow


def doit_in(ws: Workspace, *args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """`doit <args>` from the repository root with the workspace's config (``stdout``: where it writes)."""
    return subprocess.run(
        [sys.executable, "-m", "doit", *args, f"config={ws.config_path}"],
        cwd=REPO,
        env=clean_env(),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )


BAD_ARGUMENTS = {
    "a census size that is no number": (("setup", "employees=abc"), 3, "employees=abc is not a whole number"),
    "a census seed that is no number": (("census", "seed=x1"), 3, "seed=x1 is not a whole number"),
    "a census size for a project without one": (
        ("setup", "employees=500"),
        3,
        "no model of project shop reads a census",
    ),
    "a task info does not know": (("info", "seed:nope"), 3, "'seed:nope' is not a task; did you mean seed:"),
    "info without a task": (("info",), 3, "`doit info` shows one task, 0 given"),
    "a reporter doit does not have": (("setup", "--reporter", "nope"), 3, "there is no reporter 'nope'"),
    "an unclosed quote for dbt": (("dbt", 'args="test --select x'), 1, "cannot be read as a command line"),
    "a config file that is not there": (("setup",), 3, "does not exist"),  # config= replaced below
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_a_bad_argument_is_one_line_with_the_fix_never_a_traceback(built_shop: Workspace, case: str) -> None:
    args, code, words = BAD_ARGUMENTS[case]
    if case == "a config file that is not there":
        run = subprocess.run(
            [sys.executable, "-m", "doit", "setup", "config=nope.yaml"],
            cwd=REPO,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    else:
        run = doit_in(built_shop, *args)
    text = run.stdout + run.stderr
    assert "Traceback" not in text and run.returncode == code, text
    line = next((line for line in text.splitlines() if words in line), None)
    assert line is not None and "fix:" in line, text


@pytest.mark.parametrize(
    "args",
    [
        ("setup",),
        ("--reporter", "json", "setup"),
        ("list",),
        ("list", "--all", "--status"),
        ("info", "setup"),
        ("status",),
        ("forget", "model:stg_orders"),
        ("validate",),
    ],
)
def test_a_reader_that_went_away_ends_nothing_with_a_traceback(built_shop: Workspace, args: tuple[str, ...]) -> None:
    """`doit setup | head -1`: the pipe is closed before the first write, every write meets EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        run = doit_in(built_shop, *args, stdout=write)
    finally:
        os.close(write)
    assert "Traceback" not in run.stderr and "BrokenPipeError" not in run.stderr, run.stderr
    assert run.returncode == 0, run.stderr


def test_info_says_why_in_words_and_exits_0_for_a_stale_task(built_shop: Workspace) -> None:
    built_shop.seed("regions", "region,tax_rate\nnorth,0.3\nsouth,0.1\n")
    info = doit_in(built_shop, "info", "model:stg_regions")
    assert info.returncode == 0, info.stdout + info.stderr
    assert "will run: upstream changed: seed regions" in info.stdout, info.stdout
    assert "runs after seed:regions" in info.stdout, info.stdout
    for repr_text in ("TableUpToDate(", "args=[]", "kwargs={}", "{'", "verbosity"):
        assert repr_text not in info.stdout, info.stdout
    fresh = doit_in(built_shop, "info", "seed:customers")
    assert fresh.returncode == 0 and "status     up to date" in fresh.stdout, fresh.stdout
