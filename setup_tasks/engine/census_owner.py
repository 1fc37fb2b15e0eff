"""The census a run wants, and whether the census task must (re)write it before its readers build."""

from __future__ import annotations

from typing import Any, Mapping

from ..project.fingerprints import FileHasher
from .census import DEFAULT_PLAN_YEAR, CensusDefects, CensusRequest, read_census_provenance
from .definitions import Definitions

JOB_LEVELS_SEED = "config_job_levels"  # the seed whose pay bands the generator draws from


class CensusOwner:
    """The configured census (with this run's `employees=` / `seed=` overrides) and its state."""

    def __init__(self, settings: Any, definitions: Definitions, hasher: FileHasher) -> None:
        self.settings = settings.census
        self.definitions = definitions
        self.hasher = hasher
        self.overrides: dict[str, int] = {}
        self._pending: bool | None = None

    def override(self, values: Mapping[str, int]) -> None:
        """`doit census employees=N seed=S` overrides the config for this run."""
        self.overrides = dict(values)
        self._pending = None

    def request(self) -> CensusRequest:
        census, defs = self.settings, self.definitions
        bands = defs.node_for_seed(JOB_LEVELS_SEED)
        return CensusRequest(
            path=census.path,
            employees=self.overrides.get("employees", census.employees),
            seed=self.overrides.get("seed", census.seed),
            defects=CensusDefects(census.duplicate_id_rate, census.missing_ssn_rate, census.hire_after_termination_rate),
            job_levels_csv=defs.ctx.project_dir / bands.path if bands and bands.path else None,
            plan_year=int(defs.variables().get("plan_year", DEFAULT_PLAN_YEAR)),
        )

    def why(self) -> str | None:
        """Why the census must be (re)generated (provenance read once per file version)."""
        return self.request().why(lambda p: self.hasher.derived(p, "census-provenance", read_census_provenance))

    def written(self) -> None:
        """The census task wrote the file."""
        self._pending = False

    def pending(self) -> bool:
        """Will the census task (re)write the census before its readers build?"""
        if self._pending is None:
            self._pending = self.settings.generate and self.why() is not None
        return self._pending
