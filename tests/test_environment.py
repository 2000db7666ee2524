"""environment.yml (conda) and pyproject.toml (pip) must pin the same versions."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirement_key(requirement: str) -> str:
    """Normalise 'name==version; marker' so both files compare equal when they agree."""
    requirement = requirement.split("#")[0].strip()
    name_version, _, marker = requirement.partition(";")
    name_version = re.sub(r"\s+", "", name_version).lower().replace("_", "-")
    marker = re.sub(r"\s+", " ", marker.strip().replace('"', "'"))
    return f"{name_version};{marker}" if marker else name_version


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    return {_requirement_key(r) for r in requirements}


def _environment_requirements() -> tuple[set[str], list[str]]:
    pip_lines, conda_lines, in_pip = [], [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.split("#")[0].rstrip()
        if re.match(r"^\s+- pip:\s*$", stripped):
            in_pip = True
            continue
        match = re.match(r"^(\s+)- (.+)$", stripped)
        if not match:
            continue
        if in_pip and len(match.group(1)) >= 6:
            pip_lines.append(match.group(2))
        else:
            in_pip = False
            conda_lines.append(match.group(2).strip())
    return {_requirement_key(r) for r in pip_lines if not r.startswith("-e")}, conda_lines


def test_environment_yml_pins_the_same_versions_as_pyproject():
    pip_requirements, _ = _environment_requirements()
    assert pip_requirements == _pyproject_requirements()


def test_every_dependency_is_pinned_exactly():
    for requirement in _pyproject_requirements():
        assert "==" in requirement, f"not pinned: {requirement}"


def test_conda_python_matches_requires_python():
    _, conda = _environment_requirements()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "python=3.11" in conda
    assert project["requires-python"] == ">=3.11,<3.12"
