"""Input files a project reads: seed CSVs (well-formed? which cell holds a value?), and the files external
sources and reader calls name.

Which files a piece of SQL reads is DuckDB's answer, not a pattern's: ``store.database.reader_paths``
has DuckDB parse it (``json_serialize_sql``) and ``reader_call_paths`` here walks the syntax tree it
gives, taking the path argument(s) of each reader call (a string, or a list of them; globs kept) and
nothing else (never a ``columns={...}`` map's keys or values). The paths are as written: callers
resolve them where dbt runs.
"""

from __future__ import annotations

import csv
import glob
import os
import string
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..config import GLOB_CHARS
from .manifest import Node

# DuckDB's table functions whose first argument is the file(s) they read (core, json, parquet, excel, spatial).
READER_FUNCTIONS = frozenset(
    {
        "read_csv",
        "read_csv_auto",
        "sniff_csv",
        "read_parquet",
        "parquet_scan",
        "parquet_metadata",
        "parquet_schema",
        "parquet_file_metadata",
        "parquet_kv_metadata",
        "read_json",
        "read_json_auto",
        "read_json_objects",
        "read_json_objects_auto",
        "read_ndjson",
        "read_ndjson_auto",
        "read_ndjson_objects",
        "read_text",
        "read_blob",
        "read_xlsx",
        "st_read",
    }
)
# A quoted file name in FROM is read by DuckDB's replacement scan when its suffix is one of these.
SCANNED_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl", ".ndjson", ".xlsx")
COMPRESSED_SUFFIXES = (".gz", ".zst")
ReaderPaths = Callable[[str], list[str]]  # SQL -> the paths its reader calls read (store.database.reader_paths)
# dbt-duckdb puts an external location into SQL between single quotes without escaping
# them, pastes it as it is when it contains a parenthesis, and formats braces first.
UNQUOTABLE: Mapping[str, str] = {
    "'": "a single quote",
    "(": "a parenthesis",
    ")": "a parenthesis",
    "{": "a brace",
    "}": "a brace",
    "\n": "a line break",
    "\r": "a line break",
    "\0": "a NUL byte",
}


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
            reader = csv.reader(fh, delimiter=delimiter)
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


def may_read_files(sql: str) -> bool:
    """Can ``sql`` read a file at all? Not when it names no reader function and no file suffix
    (``reader_call_paths`` finds only those): most SQL then needs no parse."""
    text = sql.lower()
    return any(suffix in text for suffix in SCANNED_SUFFIXES) or any(name in text for name in READER_FUNCTIONS)


def reader_call_paths(tree: Any) -> list[str]:
    """The paths DuckDB reads in a statement's syntax tree (``json_serialize_sql``'s JSON), in order:
    the first positional argument of each reader call (a string constant, or a list of them) and
    each file name a FROM clause scans ('data/x.parquet'). Computed paths (a concatenation, a
    parameter) are not known before DuckDB runs, and left out."""
    found: list[str] = []
    for node in _walk(tree):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION" and isinstance(node.get("function"), dict):
            function = node["function"]
            if str(function.get("function_name", "")).lower() in READER_FUNCTIONS:
                positional = [a.get("expression") for a in function.get("arguments") or [] if not a.get("name")]
                found += _string_constants(positional[0]) if positional else []
        elif kind == "BASE_TABLE" and not node.get("schema_name") and not node.get("catalog_name"):
            name = str(node.get("table_name", ""))
            if (
                name.lower()
                .removesuffix(COMPRESSED_SUFFIXES[0])
                .removesuffix(COMPRESSED_SUFFIXES[1])
                .endswith(SCANNED_SUFFIXES)
            ):
                found.append(name)
    return list(dict.fromkeys(found))


def _walk(tree: Any) -> Iterator[dict[str, Any]]:
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _string_constants(expression: Any) -> list[str]:
    """'a.csv' -> [a.csv]; ['a.csv', 'b/*.csv'] -> both; anything computed -> nothing."""
    if not isinstance(expression, dict):
        return []
    literal = expression.get("literal")
    if expression.get("class") == "CONSTANT" and isinstance(literal, dict):
        return [str(literal["text"])] if literal.get("kind") == "STRING" else []
    if expression.get("class") == "FUNCTION" and expression.get("function_name") == "list_value":
        return [p for a in expression.get("arguments") or [] for p in _string_constants(a.get("expression"))]
    return []


def location_paths(location: str, readers: ReaderPaths) -> list[str]:
    """The paths an external location reads, as written: a reader call's path argument(s), a quoted
    file name, else the location itself (dbt-duckdb quotes a bare path)."""
    if "(" in location or location.startswith("'"):
        return readers(f"select * from {location}")
    return [location]


def resolved(paths: list[str], root: Path) -> list[Path]:
    """Paths as written, made absolute against ``root`` (where dbt runs), globs expanded; URLs left out."""
    found: list[Path] = []
    for raw in paths:
        if "://" in raw:
            continue
        path = Path(os.path.expanduser(raw))
        path = path if path.is_absolute() else root / path
        if GLOB_CHARS & set(raw):
            found.extend(Path(p) for p in sorted(glob.glob(str(path), recursive=True)))
        else:
            found.append(path)
    return found


def format_location(location: str, node: Node) -> str:
    """The location as dbt-duckdb formats it: newstyle ``{name}`` (the default), oldstyle ``%(name)s`` or
    a ``$name`` template, with the source's name, identifier, schema, database and meta; as written
    when a field is unknown (dbt-duckdb fails there, and says so)."""
    fields: dict[str, Any] = {
        "name": node.name,
        "identifier": node.relation.identifier if node.relation else node.name,
        "schema": "",
        "database": None,
        "tags": list(node.tags),
        **node.location_meta,
    }
    if node.relation:
        fields.update(schema=node.relation.schema or "", database=node.relation.database)
    formatter = str(node.location_meta.get("formatter") or "newstyle")
    try:
        if formatter == "oldstyle":
            return location % fields
        if formatter == "template":
            return string.Template(location).substitute(fields)
        return location.format_map(fields)
    except (ValueError, IndexError, KeyError, TypeError):
        return location


def external_paths(node: Node, root: Path, readers: ReaderPaths) -> list[Path]:
    """Files a source with an external location reads (placeholders filled, globs expanded), from ``root``."""
    if not node.external_location:
        return []
    return resolved(location_paths(format_location(node.external_location, node), readers), root)


def glob_folders(node: Node, root: Path, readers: ReaderPaths) -> list[Path]:
    """The folders a glob in a source's external location searches (a file added there may match it)."""
    text = format_location(node.external_location or "", node)
    return searched_folders(location_paths(text, readers) if text else [], root)


def searched_folders(paths: list[str], root: Path) -> list[Path]:
    """The folders (and their files) the globs among ``paths`` search, from ``root``."""
    folders: list[Path] = []
    for cand in paths:
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
                cells += [
                    Cell(reader.line_num, name, value)
                    for name, value in zip(header, row)
                    if value.strip().lower() not in NULL_CELLS
                ]
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
