"""README.md stays short and true: the two commands, a team's quick start, the task table, links that
lead somewhere; the rest in docs/, whose configuration reference is the schema's."""

from __future__ import annotations

import re
from pathlib import Path

from setup_tasks.config import check_readme_reference
from setup_tasks.naming import CENSUS_TASK, DEPS_TASK, MODELS_TASK, QUICK_TASK, SEEDS_TASK, SETUP_TASK, STAGING_TASK

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
CI = ROOT / ".ci" / "run"
SHORT = 120  # lines: a first read
LINK_RE = re.compile(r"\]\(([^)\s]+)\)")


def section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a document's headings: lower case, punctuation gone, spaces as hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, re.M)
    }


def test_configuration_reference_matches_the_schema() -> None:
    assert check_readme_reference(CONFIGURATION.read_text()), (
        "docs/configuration.md's configuration reference is stale: run "
        'python -c "from pathlib import Path; from setup_tasks.config import replace_readme_reference as r; '
        "p = Path('docs/configuration.md'); p.write_text(r(p.read_text()))\""
    )


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"^(pip install .*?)\s+#", section(README.read_text(), "The two commands"), re.M)
    assert len(commands) == 2
    assert commands[1] in CI.read_text()


def test_the_readme_is_a_first_read_the_two_commands_a_teams_quick_start_and_the_tasks() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= SHORT, f"README.md is {len(text.splitlines())} lines: move detail to docs/"
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[:3] == ["The two commands", "Use it on your own dbt project", "Tasks"], headings
    team = section(text, "Use it on your own dbt project")
    assert "python -m setup_tasks init" in team and "doit setup" in team and "doit -k setup" in team, team
    table = section(text, "Tasks")
    named = set(re.findall(r"^\| `doit (\w+)", table, re.M)) | set(re.findall(r"/ `doit (\w+)`", table))
    wanted = {
        SETUP_TASK,
        QUICK_TASK,
        SEEDS_TASK,
        STAGING_TASK,
        MODELS_TASK,
        CENSUS_TASK,
        DEPS_TASK,
        "validate",
        "status",
        "clear",
        "graph",
        "list",
        "info",
        "forget",
        "dbt",
    }
    assert wanted <= named, f"tasks the README's table does not name: {sorted(wanted - named)}"


def test_every_link_of_the_readme_and_the_docs_leads_to_a_file_and_heading_there() -> None:
    broken = []
    for document in [README, *sorted(DOCS.glob("*.md"))]:
        for target in LINK_RE.findall(document.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (document.parent / path).resolve() if path else document
            if not file.exists():
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and anchor not in anchors(file.read_text()):
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
    linked = {Path(t.partition("#")[0]).name for t in LINK_RE.findall(README.read_text()) if t.startswith("docs/")}
    assert linked >= {p.name for p in DOCS.glob("*.md")}, "docs the README does not link"
