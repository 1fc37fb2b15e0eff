"""Input files a project reads: seed CSVs (well-formed?), and the files external sources name."""

from __future__ import annotations

import csv
import glob
import os
import re
import string
from pathlib import Path

from ..config import GLOB_CHARS
from .manifest import Node

QUOTED_RE = re.compile(r"""['"]([^'"]+)['"]""")
# dbt-duckdb puts an external location into SQL between single quotes without escaping
# them, pastes it as it is when it contains a parenthesis, and formats braces first.
UNQUOTABLE = {"'": "a single quote", "(": "a parenthesis", ")": "a parenthesis", "{": "a brace", "}": "a brace",
              "\n": "a line break", "\r": "a line break", "\0": "a NUL byte"}


def sql_path_problem(path: str | Path) -> str | None:
    """What in a path passed to dbt (the census var, an external location) it cannot quote safely, or None.

    Such a path breaks the SQL at best, and at worst (``x' union all select * from 'y``)
    adds rows no fingerprint tracks: setup refuses it rather than guess.
    """
    text = str(path)
    for char, name in UNQUOTABLE.items():
        if char in text:
            return f"contains {name} ({char!r}), which dbt-duckdb would paste into SQL unescaped"
    return None


def not_utf8(path: Path) -> str | None:
    """'byte 27: 0xfc' for the first byte of a file that is not UTF-8 text, else None (also when unreadable)."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"byte {exc.start}: 0x{exc.object[exc.start]:02x}"
    except OSError:
        return None
    return None


def first_ragged_row(path: Path, delimiter: str = ",") -> str | None:
    """'line N: k fields, expected m' for the first malformed row of a CSV, else None."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter=delimiter, strict=True)
            header = next(reader, None)
            if header is None:
                return "line 1: the file is empty (a header row is required)"
            for row in reader:
                if row and len(row) != len(header):
                    return f"line {reader.line_num}: {len(row)} fields, expected {len(header)}"
    except UnicodeDecodeError as exc:
        return f"byte {exc.start}: not UTF-8 text"
    except csv.Error as exc:
        return f"line {reader.line_num}: {exc}"
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    return None


def csv_data_rows(path: Path, delimiter: str = ",") -> int:
    """Data rows of a CSV (header excluded, blank lines skipped; quoted newlines stay one row)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader, None)
        return sum(1 for row in reader if any(cell.strip() for cell in row))


def expand_paths(text: str, root: Path) -> list[Path]:
    """Files named by a location: a path, a glob, or a reader call with quoted paths."""
    candidates = QUOTED_RE.findall(text) if "(" in text else [text]
    found: list[Path] = []
    for cand in candidates:
        if "://" in cand:
            continue
        path = Path(cand) if os.path.isabs(cand) else root / cand
        if GLOB_CHARS & set(cand):
            found.extend(Path(p) for p in sorted(glob.glob(str(path), recursive=True)))
        else:
            found.append(path)
    return found


def format_location(location: str, node: Node) -> str:
    fields = {"name": node.name, "identifier": node.relation.identifier if node.relation else node.name}
    if node.relation:
        fields.update(schema=node.relation.schema or "", database=node.relation.database or "")
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(location) if f}
        return location.format(**fields) if names <= set(fields) else location
    except (ValueError, IndexError, KeyError):
        return location


def external_paths(node: Node, root: Path) -> list[Path]:
    """Files a source with an external location reads (placeholders filled, globs expanded)."""
    if not node.external_location:
        return []
    return expand_paths(format_location(node.external_location, node), root)


def glob_folders(node: Node, root: Path) -> list[Path]:
    """The folders a glob in a source's external location searches (a file added there may match it)."""
    text = format_location(node.external_location or "", node)
    folders: list[Path] = []
    for cand in QUOTED_RE.findall(text) if "(" in text else [text]:
        if "://" in cand or not GLOB_CHARS & set(cand):
            continue
        parts = Path(cand).parts
        fixed = next(i for i, part in enumerate(parts) if GLOB_CHARS & set(part))
        base = Path(*parts[:fixed]) if fixed else Path(".")
        base = base if base.is_absolute() else root / base
        folders += [base, *(Path(folder) / name for folder, names, _ in os.walk(base) for name in names)]
    return folders
