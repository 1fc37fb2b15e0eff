"""The project's dbt packages as plain data: what it declares, what is installed, and whether dbt deps must run."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit


from .context import read_project_yaml

# The files whose content decides what `dbt deps` installs.
PACKAGE_FILES = ("packages.yml", "dependencies.yml", "package-lock.yml")
DECLARING_FILES = ("packages.yml", "dependencies.yml")
HUB_HOST = "hub.getdbt.com"


@dataclass(frozen=True)
class Package:
    """One entry of packages.yml: what it names and the host `dbt deps` needs for it (None: local)."""

    label: str
    host: str | None
    local: str | None = None


def packages_dir(project_dir: Path, project_yaml: Mapping[str, Any] | None = None) -> Path:
    """Where `dbt deps` installs (``packages-install-path``, default dbt_packages/)."""
    data = read_project_yaml(project_dir) if project_yaml is None else project_yaml
    return project_dir / str(data.get("packages-install-path") or "dbt_packages")


def declared(project_dir: Path) -> list[Package]:
    """The packages of packages.yml and dependencies.yml (an unreadable file declares none: dbt names it)."""
    found: list[Package] = []
    for name in DECLARING_FILES:
        try:
            text = (project_dir / name).read_text()
        except OSError:
            continue
        import yaml  # only for a project that declares packages

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            continue
        for entry in (data.get("packages") or []) if isinstance(data, dict) else []:
            if isinstance(entry, dict):
                found.append(_package(entry))
    return found


def _package(entry: Mapping[str, Any]) -> Package:
    if "local" in entry:
        return Package(f"local {entry['local']}", None, str(entry["local"]))
    if "package" in entry:
        version = entry.get("version")
        return Package(f"{entry['package']}{f' {version}' if version else ''}", HUB_HOST)
    for key in ("git", "tarball", "private"):
        if key in entry:
            url = str(entry[key])
            host = urlsplit(url).hostname or (url.split("@", 1)[-1].split(":", 1)[0] if "@" in url else None)
            return Package(url, host)
    return Package(str(entry), None)


def installed(project_dir: Path, project_yaml: Mapping[str, Any] | None = None) -> list[str]:
    """Names of the installed packages (folders, or the links `dbt deps` makes for local ones)."""
    folder = packages_dir(project_dir, project_yaml)
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def files_digest(project_dir: Path) -> dict[str, str]:
    """A digest of each of packages.yml, dependencies.yml and package-lock.yml as they are now."""
    return {
        name: hashlib.sha256((project_dir / name).read_bytes()).hexdigest()[:20]
        if (project_dir / name).is_file()
        else "absent"
        for name in PACKAGE_FILES
    }


def packages_state(project_dir: Path) -> dict[str, Any]:
    """What a successful `dbt deps` leaves: the files' digest and the installed packages (kept as its record)."""
    return {"files": files_digest(project_dir), "installed": installed(project_dir)}


def deps_reason(project_dir: Path, recorded: Mapping[str, Any] | None) -> str | None:
    """Why `dbt deps` must run before dbt can parse the project, in words; None when it need not.

    Without a record (packages installed by hand, or before setup ran deps), what is
    installed is trusted: dbt's parse says so if it is not enough.
    """
    if not declared(project_dir):
        return None
    folder = packages_dir(project_dir)
    now = installed(project_dir)
    if not now:
        return f"{folder.name}/ {'is empty' if folder.is_dir() else 'missing'}"
    if not recorded:
        return None
    before, now_files = recorded.get("files") or {}, files_digest(project_dir)
    changed = (
        [name for name in PACKAGE_FILES if before.get(name) != now_files[name]] if isinstance(before, dict) else []
    )
    if changed or not isinstance(before, dict):
        return f"{' and '.join(changed) or 'the package files'} changed"
    missing = sorted(set(recorded.get("installed") or ()) - set(now))
    if missing:
        return f"package {', '.join(missing)} missing from {folder.name}/"
    return None


def installed_project_dirs(project_dir: Path) -> list[Path]:
    """Each installed package's folder (following the links of local packages), for the parse stamp."""
    folder = packages_dir(project_dir)
    return [folder / name for name in installed(project_dir) if (folder / name / "dbt_project.yml").is_file()]
