"""Who owns the census file, and whether the census task must (re)write it before its readers build.

Setup records the digest of every census file it writes (``store.records.WrittenFiles``).
Only a file whose digest is recorded -- one setup wrote and nobody changed since -- is
ever regenerated; any other file is the user's: used as is, never written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

from ..config import Settings
from ..errors import CensusError
from ..project.fingerprints import REGENERATED, FileHasher
from ..store.records import WrittenFiles
from .census import DEFAULT_PLAN_YEAR, CensusDefects, CensusRequest, read_census_provenance
from .definitions import Definitions

JOB_LEVELS_SEED = "config_job_levels"  # the seed whose pay bands the generator draws from
MISSING, SETUP, USER = "missing", "setup", "user"


class CensusOwner:
    """The configured census (with this run's `employees=` / `seed=` overrides), its owner and its state."""

    def __init__(self, settings: Settings, definitions: Definitions, hasher: FileHasher, written: WrittenFiles) -> None:
        self.settings = settings.census
        self.definitions = definitions
        self.hasher = hasher
        self.written_files = written
        self.overrides: dict[str, int] = {}
        self._pending: bool | None = None
        self._expected: dict[Path, str] | None = None

    def override(self, values: Mapping[str, int]) -> None:
        """`employees=N seed=S` on the command line override the config for this run."""
        self.overrides = dict(values)
        self._pending = self._expected = None

    def request(self) -> CensusRequest:
        census, defs = self.settings, self.definitions
        bands = defs.node_for_seed(JOB_LEVELS_SEED)
        return CensusRequest(
            path=census.path,
            employees=self.overrides.get("employees", census.employees),
            seed=self.overrides.get("seed", census.seed),
            defects=CensusDefects(
                census.duplicate_id_rate, census.missing_ssn_rate, census.hire_after_termination_rate
            ),
            job_levels_csv=defs.ctx.project_dir / bands.path if bands and bands.path else None,
            plan_year=int(defs.variables().get("plan_year", DEFAULT_PLAN_YEAR)),
        )

    @staticmethod
    def _parameters(request: CensusRequest) -> str:
        return hashlib.sha256(json.dumps(request.provenance(), sort_keys=True).encode()).hexdigest()[:20]

    def owner(self) -> str:
        """``missing``, ``setup`` (written by setup, unchanged since) or ``user`` (anyone else's)."""
        path = Path(self.settings.path)
        if not path.exists():
            return MISSING
        return SETUP if self.hasher.hash(path) in self.written_files.versions(path).values() else USER

    def why(self) -> str | None:
        """Why the census must be (re)generated; None when current, or the user's (never written)."""
        if self.owner() == USER:
            return None
        return self.request().why(lambda p: self.hasher.derived(p, "census-provenance", read_census_provenance))

    def refusal(self) -> CensusError | None:
        """An explicit `employees=` / `seed=` for a file setup never writes (the user's): why it cannot
        apply, instead of an 'up to date' that ignores it."""
        if not self.overrides or self.owner() != USER:
            return None
        path = self.settings.path
        asked = " ".join(f"{key}={value}" for key, value in sorted(self.overrides.items()))
        return CensusError(
            f"census {path} is your own file (setup did not write it, or it changed since): "
            f"setup never regenerates it, so {asked} cannot apply",
            f"delete {path} (or move it away) to have setup generate one with {asked}, "
            f"or run without {asked} to use your file as it is",
        )

    def written(self) -> None:
        """The census task wrote the file: it is setup's, with these parameters."""
        request = self.request()
        self.written_files.wrote(Path(request.path), self._parameters(request), self.hasher.hash(Path(request.path)))
        self._pending, self._expected = False, None

    def pending(self) -> bool:
        """Will the census task (re)write the census before its readers build?"""
        if self._pending is None:
            self._pending = self.settings.generate and self.why() is not None
        return self._pending

    def expected(self) -> dict[Path, str]:
        """The census file as its readers will see it, while the census task has yet to write it:
        the digest of the version setup wrote with these parameters before, if it did."""
        if self._expected is None:
            self._expected = {}
            if self.pending():
                request = self.request()
                known = self.written_files.versions(Path(request.path)).get(self._parameters(request))
                self._expected = {Path(request.path).resolve(): known or REGENERATED}
        return dict(self._expected)

    def describe(self) -> str:
        """In words, for `doit status` and `doit info census`: whose file it is, what setup will do."""
        owner = self.owner()
        if owner == USER:
            return "your own file (setup did not write it, or it changed since): used as is, never regenerated" + (
                " -- delete it to have setup generate one" if self.settings.generate else ""
            )
        why = self.why()
        if why is None:
            return "written by setup, current"
        if not self.settings.generate:
            return "" if owner == MISSING else f"written by setup, {why}; census.generate is off: used as is"
        return "will be generated before setup" if owner == MISSING else f"will be regenerated before setup: {why}"
