"""What setup keeps: the DuckDB database and the files beside it (records, lock, caches).

Imports ``project`` and the leaves; nothing here runs dbt.
"""
