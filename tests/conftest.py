"""Shared fixtures: the repository, the real data beside it, and throw-away nbgrader courses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pg_server import postgres_db_url, postgres_url  # noqa: F401  (fixtures: a real PostgreSQL server)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()
SOURCE_NOTEBOOK = ROOT / "solutions" / "unet_segmentation" / "unet_segmentation.ipynb"
RELEASE_NOTEBOOK = ROOT / "assignments" / "unet_segmentation" / "unet_segmentation.ipynb"


def shared_data(name: str) -> Path:
    """Path to a real dataset in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is absent (only maintainers' machines and CI have it)")
    return path


@pytest.fixture
def make_course(tmp_path):
    """A fresh copy of the course (config, solutions, release) in a temp folder, with its own gradebook."""

    def make(name: str = "course") -> Path:
        from unet_grader.coursedir import copy_course

        return copy_course(tmp_path / name, ROOT)

    return make


def released_course(where: Path) -> Path:
    """A copy of the course at ``where``, released into its own SQLite gradebook (whatever
    UNET_COURSE_DB_URL this process has)."""
    from unet_grader.coursedir import DB_ENV, copy_course
    from unet_grader.release import release

    saved = os.environ.pop(DB_ENV, None)
    try:
        course = copy_course(where, ROOT)
        release(course)
    finally:
        if saved is not None:
            os.environ[DB_ENV] = saved
    return course


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failure (screenshots)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
