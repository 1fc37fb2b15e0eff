"""The only place dbt runs: in this process (``invoke``, the only module importing dbt) or in the
warm worker (``worker``); ``client`` chooses. Imports ``store``, ``project`` and the leaves."""
