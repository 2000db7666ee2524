"""Where things are in a course folder: every path comes from nbgrader's ``CourseDirectory``,
configured by the course's own ``nbgrader_config.py`` (so renamed folders just work), and every
nbgrader command runs in :func:`nbgrader_environment`: through :func:`run_nbgrader`, or forked from a
grading worker's warm nbgrader (:mod:`unet_grader.warm`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from unet_grader.assignment import ASSIGNMENT, NOTEBOOK

REPOSITORY = Path(__file__).resolve().parent.parent  # this course's own folder (nbgrader_config.py, solutions/, ...)
DB_ENV = "UNET_COURSE_DB_URL"  # read by nbgrader_config.py

# Reading a course's nbgrader_config.py may set the edition's language in os.environ for a moment;
# threads that copy the environment meanwhile (a local grading worker starting nbgrader) wait for it.
_ENVIRON_LOCK = threading.RLock()
_TASK = threading.local()


@contextlib.contextmanager
def task_environment(**values: str) -> Iterator[None]:
    """These variables for what this thread grades: every nbgrader command it starts gets them
    (:func:`nbgrader_environment`), and what it reads of them (the gradebook URL, the time limit,
    through :func:`setting`) sees them. The process's own environment, which the other local
    grading workers' threads share, is not touched."""
    before = getattr(_TASK, "values", {})
    _TASK.values = {**before, **values}
    try:
        yield
    finally:
        _TASK.values = before


def setting(name: str, default: str | None = None) -> str | None:
    """``name`` as this thread's grading task sets it (:func:`task_environment`), else the environment's."""
    return getattr(_TASK, "values", {}).get(name) or os.environ.get(name, default)


class CourseError(RuntimeError):
    """A course folder or an nbgrader step is not as it should be; the message says how to fix it."""


class Course:
    """One nbgrader course folder and the paths of this assignment in it."""

    def __init__(self, root: Path):
        root = Path(root).resolve()
        if not (root / "nbgrader_config.py").is_file():
            from unet_course.i18n import _

            raise CourseError(_("{root} is not a course folder: it has no nbgrader_config.py").format(root=root))
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config.loader import PyFileConfigLoader

        from unet_course.i18n import LANGUAGE_ENV

        with _ENVIRON_LOCK:
            before = os.environ.get(LANGUAGE_ENV)
            try:
                config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
            finally:  # an edition's config names its language in the environment (for nbgrader's own
                # runs): keep it as this course's language, without changing this process's
                self.language = os.environ.get(LANGUAGE_ENV) or None
                if before is None:
                    os.environ.pop(LANGUAGE_ENV, None)
                else:
                    os.environ[LANGUAGE_ENV] = before
        self.root = root
        self.directory = CourseDirectory(config=config)
        self.directory.root = str(root)

    def _path(self, folder: str, student: str = ".", *parts: str) -> Path:
        return Path(self.directory.format_path(folder, student, ASSIGNMENT)).joinpath(*parts)

    # the instructor's folders
    def source_notebook(self) -> Path:
        return self._path(self.directory.source_directory, ".", NOTEBOOK)

    def release_folder(self) -> Path:
        return self._path(self.directory.release_directory)

    def release_notebook(self) -> Path:
        return self._path(self.directory.release_directory, ".", NOTEBOOK)

    # one student's folders
    def submitted_folder(self, student: str) -> Path:
        return self._path(self.directory.submitted_directory, student)

    def submitted_notebook(self, student: str) -> Path:
        return self._path(self.directory.submitted_directory, student, NOTEBOOK)

    def autograded_folder(self, student: str) -> Path:
        return self._path(self.directory.autograded_directory, student)

    def autograded_notebook(self, student: str) -> Path:
        return self._path(self.directory.autograded_directory, student, NOTEBOOK)

    def feedback_folder(self, student: str) -> Path:
        return self._path(self.directory.feedback_directory, student)

    def feedback_page(self, student: str) -> Path:
        return self._path(self.directory.feedback_directory, student, Path(NOTEBOOK).with_suffix(".html").name)

    def submitted_students(self) -> list[str]:
        """Students with a submission of this assignment."""
        import glob

        pattern = self.directory.format_path(self.directory.submitted_directory, "*", ASSIGNMENT)
        return sorted(Path(p).parent.name for p in glob.glob(pattern) if Path(p).is_dir())

    def zip_archive_folder(self) -> Path:
        """Where ``nbgrader zip_collect`` reads archives (its defaults: downloaded/<assignment>/archive)."""
        return self.root / "downloaded" / ASSIGNMENT / "archive"

    # grading side files
    def problems_folder(self) -> Path:
        """Why a submission could not be graded normally, one JSON file per student (git-ignored)."""
        return self.root / "grading-problems"

    def db_url(self) -> str:
        """The gradebook nbgrader uses for this course (UNET_COURSE_DB_URL, else the configured one)."""
        return setting(DB_ENV) or self.directory.db_url


def as_course(course) -> Course:
    """A :class:`Course` from a course or its folder."""
    return course if isinstance(course, Course) else Course(course)


def path_with_scripts(path: str) -> str:
    """``path`` with this environment's scripts first: nbgrader runs ``alembic`` (gradebook
    migrations) from PATH, and the course's environment may not be activated."""
    scripts = str(Path(sys.executable).parent)
    return path if path.split(os.pathsep)[:1] == [scripts] else scripts + os.pathsep + path


def nbgrader_environment() -> dict:
    """The environment nbgrader commands run in: this one with this thread's grading task's variables
    (:func:`task_environment`), without Python warnings, and with this environment's scripts first on
    PATH (nbgrader runs ``alembic``, the gradebook migrations, from it)."""
    with _ENVIRON_LOCK:
        environ = dict(os.environ, **getattr(_TASK, "values", {}))
    return dict(environ, PYTHONWARNINGS="ignore", PATH=path_with_scripts(environ.get("PATH", "")))


def run_nbgrader(course, *args: str, timeout: float | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real nbgrader CLI in a course folder (a CompletedProcess; the caller checks it), in
    ``env`` (default: :func:`nbgrader_environment`)."""
    env = nbgrader_environment() if env is None else env
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=timeout)


def nbgrader(course, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the real nbgrader CLI in the course folder; raise CourseError if it fails and ``check``."""
    result = run_nbgrader(course, *args, timeout=timeout)
    if check and result.returncode != 0:
        raise CourseError(f"nbgrader {' '.join(args)} failed (exit {result.returncode}):\n"
                          f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return result


def copy_course(target: Path, origin: Path = REPOSITORY, timeout: int | None = None) -> Path:
    """A new course folder with this course's config, source and release (its own, empty gradebook).

    ``timeout`` overrides the per-cell limit (seconds) in the copy's nbgrader_config.py.
    """
    target = Path(target)
    origin_course = as_course(origin)
    origin = origin_course.root
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(origin / "nbgrader_config.py", target)
    for folder in (origin_course.directory.source_directory, origin_course.directory.release_directory):
        shutil.copytree(origin / folder / ASSIGNMENT, target / folder / ASSIGNMENT)
    if timeout is not None:
        with open(target / "nbgrader_config.py", "a") as config:
            config.write(f"\nc.ExecutePreprocessor.timeout = {int(timeout)}\n")
    return target
