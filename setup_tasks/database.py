"""The only module that opens DuckDB: snapshots, lock detection, drops, queries."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import duckdb


@contextmanager
def memory_connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB for scratch work (census generation, file inspection)."""
    con = duckdb.connect(":memory:")
    try:
        yield con
    finally:
        con.close()
