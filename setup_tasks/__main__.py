"""The `planwise-setup` command (`python -m setup_tasks`): `init` sets up a team's dbt repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import PlanwiseError
from .ops.init_project import init


def main(argv: list[str] | None = None) -> int:
    """Run a command; one line and exit 1 on a failure the user can fix."""
    parser = argparse.ArgumentParser(
        prog="python -m setup_tasks",
        description="planwise-setup: build a dbt + DuckDB warehouse, rebuilding only what is stale. "
        "After `init`, run doit in the project folder: `doit setup`, `doit list`, `doit status`.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("init", help="write dodo.py and setup.yaml beside your dbt_project.yml")
    start.add_argument(
        "directory",
        nargs="?",
        default=".",
        type=Path,
        help="your dbt project, or a folder above it (default: the current folder)",
    )
    args = parser.parse_args(argv)
    try:
        written = init(args.directory)
    except PlanwiseError as err:
        print(err.one_line(), file=sys.stderr)
        return err.exit_code
    print("\n".join(written.lines(Path.cwd())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
