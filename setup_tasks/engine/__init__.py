"""Staleness and batched builds of one database: the Engine and its parts, and the census generator.

Imports ``dbt``, ``store``, ``project`` and the leaves; knows nothing of doit.
"""
