"""planwise-setup: incremental, Make-style setup of a dbt + DuckDB warehouse, driven by doit."""
