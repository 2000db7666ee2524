"""tools/ensure-venv.sh: a newcomer without Python 3.11 gets a clear message, not a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT


def _fake_python(folder: Path, version: str) -> None:
    """A `python3` that answers the version check as ``version`` would."""
    script = folder / "python3"
    status = 0 if version == "3.11" else 1
    script.write_text(f"#!/bin/sh\ncase \"$2\" in *version_info*) exit {status};; esac\nexit 0\n")
    script.chmod(0o755)


def _run(tmp_path: Path, python_version: str):
    project = tmp_path / "project"
    (project / "tools").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "ensure-venv.sh", project / "tools")
    shutil.copy(ROOT / "pyproject.toml", project)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_python(bin_dir, python_version)
    for tool in ("df", "awk", "dirname", "sh", "bash", "env"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    return subprocess.run(["bash", str(project / "tools" / "ensure-venv.sh")], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path)})


def test_wrong_python_gets_a_clear_message(tmp_path):
    result = _run(tmp_path, "3.10")
    assert result.returncode == 1
    assert "needs Python 3.11" in result.stderr and "PYTHON=" in result.stderr
    assert not (tmp_path / "project" / ".venv").exists()
