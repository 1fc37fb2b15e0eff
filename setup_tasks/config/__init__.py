"""Setup configuration: setup.yaml and the environment into typed, immutable Settings, all derived from one schema.

``setup_config.schema.json`` (package data here; ``schemas/`` in the repository is a copy for
editors, kept equal by a test) is the single declaration of every key:
its type, default, description, limits, whether it is a path and which
environment variable overrides it. Adding a key means editing the schema, then
`python -m setup_tasks.config --write-classes` (the settings classes a type checker reads).

- ``schema``: reads the schema; defaults, limits and the keys' roles come from here.
- ``sections``: the frozen settings classes, generated from the schema by ``codegen`` (checked in, so a
  type checker sees them); ``behaviour``: their methods; ``settings``: building them from plain data.
- ``problems``: every problem of a file and the environment, at once (the only jsonschema user).
- ``loader``: ``load_settings``: file, environment overrides and defaults.
- ``reference``: the Markdown reference and docs/configuration.md's copy of it.
- ``__main__``: ``python -m setup_tasks.config --check | --show | --reference | --schema``.
"""

from .behaviour import GLOB_CHARS, freeze, thaw
from .loader import CONFIG_ENV_VAR, DEFAULT_CONFIG_NAME, PROFILES_FILE, load_settings, profiles_candidates
from .problems import ConfigProblem, nearest
from .reference import (
    REFERENCE_END,
    REFERENCE_START,
    check_readme_reference,
    config_reference_markdown,
    replace_readme_reference,
)
from .schema import ENV_OVERRIDES, REFERENCE_COMMAND, SCHEMA_PATH, Limits, default_of, limits, load_schema, schema_text
from .sections import (
    CensusSettings,
    CustomCheck,
    DatabaseSettings,
    DbtSettings,
    ReportSettings,
    Settings,
    SetupOptions,
    ValidationSettings,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_NAME",
    "ENV_OVERRIDES",
    "GLOB_CHARS",
    "REFERENCE_COMMAND",
    "REFERENCE_END",
    "REFERENCE_START",
    "SCHEMA_PATH",
    "CensusSettings",
    "ConfigProblem",
    "CustomCheck",
    "DatabaseSettings",
    "DbtSettings",
    "Limits",
    "PROFILES_FILE",
    "ReportSettings",
    "Settings",
    "SetupOptions",
    "ValidationSettings",
    "check_readme_reference",
    "config_reference_markdown",
    "default_of",
    "freeze",
    "limits",
    "load_schema",
    "load_settings",
    "nearest",
    "profiles_candidates",
    "replace_readme_reference",
    "schema_text",
    "thaw",
]
