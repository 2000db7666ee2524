"""Collect submissions: a folder of ``<student>.ipynb`` files, or an LMS download (one zip)
through nbgrader's own ``nbgrader zip_collect``.

    collect(course, Path("notebooks/"))         # -> ["alice", "bob", ...]
    collect_zip(course, Path("submissions.zip"))  # -> ["alice", "smithjohn", ...]

The zip is checked here before nbgrader sees it, because nbgrader's extractor trusts it: it
unpacks archives found inside the zip without limit and would silently drop or mis-file some
names. Each notebook's student is decided by :func:`student_of`, here (to report clashes before
anything is written) and inside nbgrader (through :class:`LmsCollector`), so both always agree.

A custom collector rather than ``--FileNameCollectorPlugin.named_regexp``: nbgrader accepts one
regular expression, matched against the absolute path, and Python forbids a group name twice even
in alternatives, so one regexp cannot hold Canvas, Moodle and plain names, nor lowercase an id.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import unicodedata
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from nbgrader.plugins import FileNameCollectorPlugin

from unet_course.i18n import _

from unet_grader.assignment import ASSIGNMENT, NOTEBOOK
from unet_grader.coursedir import Course, CourseError, run_nbgrader

MAX_UNCOMPRESSED = 2 * 1024**3  # bytes; a class of notebooks is megabytes, more is a zip bomb or a mistake
# The copy nbgrader extracts gets an extension of its own, and ExtractorPlugin.zip_ext lists only
# that one: archives inside the zip are then left packed (nbgrader would unpack them recursively,
# unchecked), and an upper-case ".ZIP" download is still unpacked.
ARCHIVE = "submissions.lmszip"
log = logging.getLogger(__name__)

# Moodle: "Full Name_<participant>_assignsubmission_file_<file>" or, downloaded in folders (the
# default since Moodle 3.1), a folder "Full Name_<participant>_assignsubmission_file/<file>".
MOODLE = re.compile(r"(?P<name>[^_]+)_(?P<number>\d+)_assignsubmission_file(?:_|$)")
# Blackboard: "<assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>[_<file>].ipynb".
BLACKBOARD = re.compile(r".*_(?P<name>[^_]+)_attempt_\d{4}(?:-\d\d){5}(?:_.*)?\.ipynb$")
# Canvas: "<lastnamefirstname>_[late_]<user id>_<submission id>_<file>.ipynb".
CANVAS = re.compile(r"(?P<name>[^_]+)_(?:late_)?\d+_\d+_.*\.ipynb$", re.IGNORECASE)


class ZipCollectError(CourseError):
    """The zip cannot be collected as it is; the message names the file and what is wrong."""


def normalise(name: str) -> str:
    """A student id that is a safe folder name: lowercase ``[a-z0-9_-]``, other runs -> ``_``.

    Accents are dropped first (Zoë -> zoe) so ids stay readable; a name with nothing left
    (李雷) gets a stable hash instead of an empty id. Leading '-' is removed: ids go on command lines.
    """
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)).lower()
    safe = re.sub(r"[^a-z0-9_-]+", "_", plain).strip("_-")
    return safe or "student_" + hashlib.sha1(name.encode()).hexdigest()[:8]


def student_of(member: str) -> str | None:
    """Whose notebook ``member`` (a path inside the zip) is, or None when the name cannot tell.

    Moodle, Blackboard and Canvas names carry the student; any notebook name is accepted there,
    because students rename notebooks. Otherwise ``<student>.ipynb``, or ``<student>/unet_segmentation.ipynb``
    (the folder names the student). Canvas ids are the ``lastnamefirstname`` Canvas writes (readable,
    the same across assignments); two students with one name are reported as a clash, never merged.
    """
    parts = PurePosixPath(member).parts
    for part in reversed(parts):
        if match := MOODLE.match(part):
            name = match["name"]  # blind marking writes "Participant_<number>" for everyone
            return normalise(f"participant_{match['number']}" if name.lower() == "participant" else name)
    if match := BLACKBOARD.match(parts[-1]) or CANVAS.match(parts[-1]):
        return normalise(match["name"])
    if parts[-1] == NOTEBOOK:
        return normalise(parts[-2]) if len(parts) > 1 else None
    return normalise(PurePosixPath(parts[-1]).stem)


def _is_notebook(member: str) -> bool:
    """A notebook to collect: not a folder, checkpoint, macOS resource fork (``__MACOSX/._x.ipynb``)..."""
    parts = PurePosixPath(member).parts
    return member.endswith(".ipynb") and not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _check_member(zip_path: Path, info: zipfile.ZipInfo) -> None:
    """Refuse names that would escape the extraction folder, cannot be created, or break nbgrader's copy."""
    name = info.filename
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts:
        raise ZipCollectError(_("{zip}: member {name!r} points outside the zip's folder (absolute path or '..');"
                                " refusing the whole zip").format(zip=zip_path, name=name))
    if any(len(part.encode()) > 255 for part in parts):
        raise ZipCollectError(f"{zip_path}: member {name[:80]!r}... has a name longer than 255 bytes, "
                              "which no file system can create; rename it in the zip")
    mode, needed = info.external_attr >> 16, (0o700 if info.is_dir() else 0o600)
    if mode and (mode & needed != needed or mode & 0o7000):  # nbgrader's extractor applies zip modes
        raise ZipCollectError(f"{zip_path}: member {name!r} has permissions {stat.filemode(mode)} "
                              "(unreadable or set-uid); re-create the zip")


def read_plan(zip_path: Path) -> dict[str, zipfile.ZipInfo]:
    """Check the zip and map each student id to their one notebook in it; nothing is written."""
    if not zip_path.is_file() or not zipfile.is_zipfile(zip_path):
        raise ZipCollectError(_("{zip} is not a zip file (download the submissions as one .zip from the LMS)").format(zip=zip_path))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ZipCollectError(_("{zip} is not a readable zip file: {error}").format(zip=zip_path, error=error)) from error
    if not members:
        raise ZipCollectError(_("{zip} is an empty zip").format(zip=zip_path))
    for info in members:
        _check_member(zip_path, info)
    total = sum(info.file_size for info in members)
    if total > MAX_UNCOMPRESSED:
        raise ZipCollectError(_("{zip} would unpack to {total:,} bytes (limit {limit:,}): refusing a possible"
                                " zip bomb").format(zip=zip_path, total=total, limit=MAX_UNCOMPRESSED))
    notebooks = [info for info in members if not info.is_dir() and _is_notebook(info.filename)]
    if not notebooks:
        raise ZipCollectError(_("{zip} holds no .ipynb notebook").format(zip=zip_path))
    owners: dict[str | None, list[zipfile.ZipInfo]] = {}
    for info in notebooks:
        owners.setdefault(student_of(info.filename), []).append(info)
    if None in owners:
        raise ZipCollectError(_("{zip}: cannot tell whose notebook this is: {files} (put it in a folder named after"
                                " the student)").format(zip=zip_path, files=", ".join(i.filename for i in owners[None])))
    clashes = {student: infos for student, infos in owners.items() if len(infos) > 1}
    if clashes:
        raise ZipCollectError(_("{zip}: several notebooks map to the same student id; nothing was collected. Keep one"
                                " per student in the zip:").format(zip=zip_path) + "\n" + "\n".join(
                                  f"  {student}: " + ", ".join(i.filename for i in infos) for student, infos in sorted(clashes.items())))
    nested = [info.filename for info in members if re.search(r"\.(zip|gz|tgz|tar|7z|rar)$", info.filename, re.I)]
    if nested:
        log.warning("archives inside %s are not unpacked or collected: %s", zip_path, ", ".join(nested))
    return {student: infos[0] for student, infos in owners.items()}


class LmsCollector(FileNameCollectorPlugin):
    """nbgrader's collector for LMS names: the student from :func:`student_of`, the assignment's notebook name."""

    def collect(self, submitted_file: str) -> dict | None:
        # nbgrader passes the absolute path of the extracted file: make it the name it had in the zip.
        root = os.path.join(self.parent._format_collect_path(self.parent.extracted_directory), Path(ARCHIVE).stem)
        member = Path(os.path.relpath(submitted_file, root)).as_posix()
        student = student_of(member) if _is_notebook(member) else None
        return {"student_id": student, "file_id": NOTEBOOK} if student else None


def _nbgrader(course: Path, *args: str) -> None:
    run = run_nbgrader(course, *args)
    if run.returncode != 0:
        raise ZipCollectError(f"nbgrader {' '.join(args)} failed (exit {run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-3000:]}")


def collect_zip(course: Path, zip_path: Path) -> list[str]:
    """Collect every student's notebook from an LMS zip into ``submitted/<student>/<assignment>/``.

    The zip is copied to ``downloaded/<assignment>/archive/`` (replacing any earlier copy, so a
    former zip is not collected again unchecked) and ``nbgrader zip_collect --force`` unpacks it
    into ``downloaded/<assignment>/extracted/`` and copies the notebooks. A student already in
    submitted/ who is in the zip gets the zip's notebook; students not in it are left alone.
    Returns the student ids collected, sorted.
    """
    try:
        course, zip_path = Course(course), Path(zip_path)
    except CourseError as error:
        raise ZipCollectError(str(error)) from None
    plan = read_plan(zip_path)
    archive = course.zip_archive_folder()
    shutil.rmtree(archive, ignore_errors=True)
    archive.mkdir(parents=True)
    shutil.copyfile(zip_path, archive / ARCHIVE)
    _nbgrader(course.root, "zip_collect", ASSIGNMENT, "--force", "--collector=unet_grader.collect.LmsCollector",
              f"--ExtractorPlugin.zip_ext={Path(ARCHIVE).suffix}")
    wrong = [f"{student} ({info.filename})" for student, info in plan.items()
             if not (path := course.submitted_notebook(student)).is_file()
             or zlib.crc32(path.read_bytes()) != info.CRC]
    if wrong:
        raise ZipCollectError(f"nbgrader zip_collect did not copy these notebooks intact: {', '.join(wrong)}")
    return sorted(plan)


def collect(course: Path, source: Path) -> list[str]:
    """Copy ``source/<student>.ipynb`` files (or an LMS zip) into nbgrader's submitted/ layout."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".zip":
        return collect_zip(course, source)
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise CourseError(_("no .ipynb files in {folder}").format(folder=source))
    course = Course(course)
    for path in notebooks:
        target = course.submitted_notebook(path.stem)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return [path.stem for path in notebooks]
