"""README.md stays true: its configuration reference is the schema's, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from setup_tasks.config import check_readme_reference

README = Path(__file__).resolve().parent.parent / "README.md"
CI = Path(__file__).resolve().parent.parent / ".ci" / "run"


def test_configuration_reference_matches_the_schema() -> None:
    assert check_readme_reference(README.read_text()), (
        "README's configuration reference is stale: run "
        "python -c \"from pathlib import Path; from setup_tasks.config import replace_readme_reference as r; "
        "p = Path('README.md'); p.write_text(r(p.read_text()))\""
    )


def test_ci_runs_the_readme_test_command() -> None:
    section = README.read_text().split("## The two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(pip install .*?)\s+#", section, re.M)
    assert len(commands) == 2
    assert commands[1] in CI.read_text()
