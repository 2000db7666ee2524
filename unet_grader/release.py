"""Release: the student version of the assignment, and the bundle a graded offering hands out.

    release(course)          # nbgrader generate_assignment: solutions/ -> assignments/
    build_bundle(out)        # out/unet_segmentation/unet_segmentation.ipynb + out/unet_course-*.whl

The bundle is exactly what students receive: the release notebook and a wheel of the student
package (``unet_course``) alone. The grading package, the reference and the source notebooks are
never in it (``tests/test_student_bundle.py`` installs the wheel in a fresh environment and looks).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from unet_grader.assignment import ASSIGNMENT
from unet_grader.coursedir import REPOSITORY, CourseError, as_course, nbgrader

STUDENT_PACKAGE = "unet_course"


def release(course) -> Path:
    """Generate the student release from the instructor source (nbgrader generate_assignment)."""
    course = as_course(course)
    nbgrader(course.root, "generate_assignment", ASSIGNMENT, "--force")
    return course.release_folder()


def _student_pyproject() -> str:
    """The student package's own build description: the repository's name, version and runtime
    dependencies, and only the ``unet_course`` package with its data."""
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    # JSON strings are TOML basic strings; the environment markers keep their own single quotes.
    dependencies = ",\n".join(f"    {json.dumps(dependency)}" for dependency in project["dependencies"])
    return f'''[build-system]
requires = ["setuptools>=61", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "{project["name"]}"
version = "{project["version"]}"
description = "The student side of the U-Net course: run set-up, data, visualisation, metrics, public checks."
requires-python = "{project["requires-python"]}"
license = {{text = "MIT"}}
dependencies = [
{dependencies},
]

[tool.setuptools]
packages = ["{STUDENT_PACKAGE}"]

[tool.setuptools.package-data]
{STUDENT_PACKAGE} = ["*.json", "weights/*/*", "locale/*/LC_MESSAGES/*.mo"]
'''


def build_wheel(out: Path) -> Path:
    """A wheel of the student package alone, built from a clean copy (no caches, no grader)."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="unet-student-") as staging:
        staging = Path(staging)
        shutil.copytree(REPOSITORY / STUDENT_PACKAGE, staging / STUDENT_PACKAGE,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (staging / "pyproject.toml").write_text(_student_pyproject())
        (staging / "README.md").write_text("The student side of the course 'Semantic Segmentation with U-Net'.\n")
        run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                              "--wheel-dir", str(out), str(staging)], capture_output=True, text=True)
        if run.returncode != 0:
            raise CourseError(f"building the student wheel failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    wheels = sorted(out.glob(f"{STUDENT_PACKAGE}-*.whl"), key=lambda p: p.stat().st_mtime)
    return wheels[-1]


def build_bundle(out: Path, course=REPOSITORY) -> list[Path]:
    """Release notebook(s) and the student wheel in ``out`` (emptied first); returns what is there."""
    course = as_course(course)
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    release_folder = release(course)
    shutil.copytree(release_folder, out / ASSIGNMENT, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    build_wheel(out)
    return sorted(p for p in out.rglob("*") if p.is_file())
