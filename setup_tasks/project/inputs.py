"""Input files a project reads: seed CSVs (well-formed? which cell holds a value?), and the files external sources name."""

from __future__ import annotations

import csv
import glob
import os
import re
import string
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
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


# -- which cell of a seed carries a value a build trips over ----------------------------------------

NULL_CELLS = ("", "null")  # dbt's null values for a seed's cells (compared lower case)
READ_LIMIT = 64 << 20  # a seed bigger than this is not searched cell by cell


@dataclass(frozen=True)
class Cell:
    """One cell of a seed CSV: its line in the file (the header is line 1), column and text."""

    line: int
    column: str
    value: str


def seed_cells(path: Path, delimiter: str = ",") -> list[Cell]:
    """Every non-null cell of a CSV, in file order; none when it is unreadable, malformed or too big."""
    try:
        if path.stat().st_size > READ_LIMIT:
            return []
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = next(reader, [])
            cells = []
            for row in reader:
                cells += [Cell(reader.line_num, name, value) for name, value in zip(header, row)
                          if value.strip().lower() not in NULL_CELLS]
            return cells
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _kind(value: str) -> str:
    """What a seed cell's text reads as: "number", "date", "boolean" or "text"."""
    text = value.strip()
    if text.lower() in ("true", "false"):
        return "boolean"
    try:
        Decimal(text)
        return "number" if text.lower() not in ("nan", "inf", "infinity", "-inf", "+inf", "-infinity") else "text"
    except InvalidOperation:
        pass
    try:
        date.fromisoformat(text[:10])
        return "date" if len(text) == 10 or text[10] in "T " else "text"
    except ValueError:
        return "text"


def odd_cells(cells: list[Cell]) -> dict[str, tuple[Cell, str]]:
    """Columns loaded as text because of a few cells: column -> (its first odd cell, what the rest are).

    dbt infers a seed column's type from every cell: one ``abc`` among numbers (or one
    ``2026-02-30`` among dates) makes the whole column text, and a model that computes with it
    fails far from the cell. A column qualifies when at most a tenth of its cells (at least
    one) are not of the kind all its other cells share.
    """
    by_column: dict[str, list[Cell]] = {}
    for cell in cells:
        by_column.setdefault(cell.column, []).append(cell)
    found = {}
    for column, column_cells in by_column.items():
        kinds = [_kind(c.value) for c in column_cells]
        typed = {k for k in kinds if k != "text"}
        odd = [c for c, k in zip(column_cells, kinds) if k == "text"]
        if len(typed) == 1 and odd and len(odd) <= max(1, len(column_cells) // 10) and len(odd) < len(column_cells):
            found[column] = (odd[0], typed.pop())
    return found
