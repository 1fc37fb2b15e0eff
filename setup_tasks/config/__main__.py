"""The configuration command line: ``python -m setup_tasks.config`` checks, shows, documents or regenerates."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ConfigError
from .codegen import CLASSES_PATH, write_classes
from .loader import load_settings
from .reference import config_reference_markdown
from .schema import schema_text


def main(argv: list[str] | None = None) -> int:
    """Check or show a configuration file, or print the configuration reference."""
    parser = argparse.ArgumentParser(
        prog="python -m setup_tasks.config",
        description="Check or show the planwise-setup configuration (setup.yaml), or print its reference.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--reference", action="store_true", help="print the configuration reference (Markdown)")
    action.add_argument(
        "--schema",
        action="store_true",
        help="print the JSON Schema (the repository keeps a copy in schemas/ for editors)",
    )
    action.add_argument(
        "--write-classes",
        action="store_true",
        help=f"rewrite {CLASSES_PATH.name}, the settings classes, from the schema (after editing it)",
    )
    action.add_argument(
        "--check",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH",
        help="validate PATH (default: $SETUP_CONFIG or ./setup.yaml) and print the problems or 'ok'",
    )
    action.add_argument(
        "--show", nargs="?", const=True, default=False, metavar="PATH", help="print the effective settings as JSON"
    )
    args = parser.parse_args(argv)
    if args.reference or args.schema:
        print(config_reference_markdown() if args.reference else schema_text(), end="")
        return 0
    if args.write_classes:
        print(f"{'wrote' if write_classes() else 'up to date:'} {CLASSES_PATH}")
        return 0
    path = args.check if args.check is not False else args.show
    try:
        settings = load_settings(None if path is True else path)
    except ConfigError as error:
        print(f"{error.cause}\nfix: {error.fix}" if error.fix else error.cause, file=sys.stderr)
        return error.exit_code
    print("ok" if args.check is not False else json.dumps(settings.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
