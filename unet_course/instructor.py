"""Instructor commands: one command per step, nbgrader's own CLI underneath.

    python -m unet_course.instructor release      # solutions/ -> assignments/ (nbgrader generate_assignment)
    python -m unet_course.instructor examples     # write example submissions into submitted/
    python -m unet_course.instructor collect DIR  # DIR/<student>.ipynb -> submitted/<student>/...
    python -m unet_course.instructor collect FILE.zip   # an LMS download, through nbgrader zip_collect
    python -m unet_course.instructor autograde    # every submission, with a progress bar and a summary
    python -m unet_course.instructor --db URL autograde --workers 2   # shared gradebook, in parallel
    python -m unet_course.instructor feedback     # nbgrader generate_feedback
    python -m unet_course.instructor export       # grades.csv (nbgrader export)

Every command works on the course folder given by ``--course`` (default: the current folder),
which must hold ``nbgrader_config.py``. Student code runs in the bubblewrap sandbox
(unet_course.sandbox); a submission that cannot be read, crashes its kernel or times out still
gets its grades recorded (0 for what did not run) and a line in the summary saying why.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from unet_course.nbgrader_ext import run_nbgrader
from unet_course.submissions import ASSIGNMENT, EXERCISES, NOTEBOOK, write_examples  # noqa: F401 (re-exported)

POINTS_ORDER = list(EXERCISES)


class InstructorError(RuntimeError):
    """A step failed in a way the instructor can fix; the message says how."""


DB_ENV = "UNET_COURSE_DB_URL"  # read by nbgrader_config.py
STUDENT_TIMEOUT = int(os.environ.get("UNET_COURSE_STUDENT_TIMEOUT", 1800))  # seconds for one submission


def nbgrader(course: Path, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the real nbgrader CLI in the course folder; raise InstructorError if it fails and ``check``."""
    result = run_nbgrader(course, *args, timeout=timeout)
    if check and result.returncode != 0:
        raise InstructorError(f"nbgrader {' '.join(args)} failed (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return result


@contextlib.contextmanager
def _gradebook(course: Path):
    """nbgrader's Gradebook API, without SQLAlchemy's warnings about nbgrader's own queries."""
    from nbgrader.api import Gradebook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(db_url(course)) as gradebook:
            yield gradebook


def db_url(course: Path) -> str:
    """The gradebook nbgrader uses for this course (UNET_COURSE_DB_URL, else gradebook.db)."""
    return os.environ.get(DB_ENV) or f"sqlite:///{Path(course) / 'gradebook.db'}"


COURSE_ROOT = Path(__file__).resolve().parent.parent  # the repository: nbgrader_config.py, solutions/, assignments/


def copy_course(target: Path, origin: Path = COURSE_ROOT, timeout: int | None = None) -> Path:
    """A new course folder with this course's config, source and release (its own, empty gradebook).

    ``timeout`` overrides the per-cell limit (seconds) in the copy's nbgrader_config.py.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(origin / "nbgrader_config.py", target)
    shutil.copytree(origin / "solutions", target / "solutions")
    shutil.copytree(origin / "assignments", target / "assignments")
    if timeout is not None:
        with open(target / "nbgrader_config.py", "a") as config:
            config.write(f"\nc.ExecutePreprocessor.timeout = {int(timeout)}\n")
    return target


def _check_course(course: Path) -> Path:
    course = Path(course).resolve()
    if not (course / "nbgrader_config.py").is_file():
        raise InstructorError(f"{course} is not a course folder: it has no nbgrader_config.py")
    return course


def release(course: Path) -> Path:
    """Generate the student release from the instructor source."""
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    return course / "assignments" / ASSIGNMENT


def collect(course: Path, folder: Path) -> list[str]:
    """Copy ``folder/<student>.ipynb`` files (or an LMS zip) into nbgrader's submitted/ layout."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix.lower() == ".zip":
        from unet_course.collect import ZipCollectError, collect_zip

        try:
            return collect_zip(course, folder)
        except ZipCollectError as error:
            raise InstructorError(str(error)) from None
    notebooks = sorted(folder.glob("*.ipynb"))
    if not notebooks:
        raise InstructorError(f"no .ipynb files in {folder}")
    students = []
    for path in notebooks:
        target = course / "submitted" / path.stem / ASSIGNMENT / NOTEBOOK
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        students.append(path.stem)
    return students


@dataclass
class StudentResult:
    """One student's autograde outcome, per exercise."""

    student: str
    scores: dict = field(default_factory=dict)  # exercise -> (score, max)
    problems: list = field(default_factory=list)
    ungraded: int = 0  # grade cells with no score at all (nbgrader never got to them)

    @property
    def total(self) -> tuple[float, float]:
        return (sum(s for s, _ in self.scores.values()), sum(m for _, m in self.scores.values()))


def submitted_students(course: Path) -> list[str]:
    return sorted(p.parent.name for p in (course / "submitted").glob(f"*/{ASSIGNMENT}"))


def unreadable_reason(path: Path) -> str | None:
    """Why nbgrader could not even open this submission (None when it can)."""
    import nbformat

    try:
        with warnings.catch_warnings():  # duplicate cell ids etc.: nbgrader repairs those itself
            warnings.simplefilter("ignore")
            notebook = nbformat.read(str(path), as_version=4)
            nbformat.validate(notebook)
    except FileNotFoundError:
        return f"no {NOTEBOOK} in the submission"
    except Exception as error:  # noqa: BLE001 - JSON, encoding, schema: all mean "not a notebook"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"the submitted file is not a readable notebook ({type(error).__name__}: {first[:120]})"
    return None


def record_zeros(course: Path, student: str, reason: str) -> None:
    """Give every grade of a submission nbgrader could not grade a recorded 0 (not an empty
    score), and keep the reason beside the gradebook for the summary and the feedback."""
    from nbgrader.api import MissingEntry

    with _gradebook(course) as gradebook:
        gradebook.update_or_create_student(student)
        try:
            submission = gradebook.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            submission = gradebook.add_submission(ASSIGNMENT, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.auto_score is None and grade.manual_score is None:
                    grade.auto_score = 0.0
        gradebook.db.commit()
    problems = course / "grading-problems"
    problems.mkdir(exist_ok=True)
    (problems / f"{student}.json").write_text(json.dumps({"student": student, "reason": reason}))


def _prepare_gradebook(course: Path, students: list[str]) -> None:
    """Create the students before parallel workers start (so they never race to create them)."""
    with _gradebook(course) as gradebook:
        for student in students:
            gradebook.update_or_create_student(student)


def grade_one(course: Path, student: str) -> StudentResult:
    """Autograde one submission in its own nbgrader process; whatever happens, grades are recorded."""
    stale = course / "grading-problems" / f"{student}.json"
    stale.unlink(missing_ok=True)
    reason = unreadable_reason(course / "submitted" / student / ASSIGNMENT / NOTEBOOK)
    run_problem = None
    if reason is None:
        try:
            run = nbgrader(course, "autograde", ASSIGNMENT, f"--student={student}", "--force",
                           check=False, timeout=STUDENT_TIMEOUT)
            if run.returncode != 0:
                run_problem = f"nbgrader exited {run.returncode}: {_last_error(run)}"
        except subprocess.TimeoutExpired:
            run_problem = f"grading took longer than {STUDENT_TIMEOUT} s and was stopped"
    result = read_result(course, student)
    problem = reason or run_problem or ("some tests were not graded" if result.ungraded else None)
    if problem:
        record_zeros(course, student, problem)
        result = read_result(course, student)
        result.problems.insert(0, problem)
    return result


def autograde(course: Path, students: list[str] | None = None, progress: bool = True,
              workers: int = 1) -> list[StudentResult]:
    """Autograde every submission, ``workers`` at a time; one failure never stops the batch."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm.auto import tqdm

    from unet_course import sandbox

    students = students or submitted_students(course)
    if not students:
        raise InstructorError(f"no submissions in {course / 'submitted'} (run `collect` or `examples` first)")
    try:
        if not sandbox.active():
            reason = sandbox.unavailable_reason() or f"{sandbox.SANDBOX_ENV}=off"
            print(sandbox.UNSANDBOXED_WARNING.format(reason=reason), file=sys.stderr)
    except sandbox.SandboxUnavailable as error:
        raise InstructorError(str(error)) from None
    _prepare_gradebook(course, students)
    results = {}
    with tqdm(total=len(students), desc="autograding", unit="submission", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(grade_one, course, student): student for student in students}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update()
    return [results[student] for student in students]


def _last_error(run: subprocess.CompletedProcess) -> str:
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "ERROR" in line or "Error" in line]
    return lines[-1][-200:] if lines else "see the nbgrader log"


def read_result(course: Path, student: str) -> StudentResult:
    """Scores from the gradebook and the failing tests' first message from the autograded notebook."""
    from nbgrader.api import MissingEntry

    result = StudentResult(student)
    with _gradebook(course) as gradebook:
        try:
            notebook = gradebook.find_submission_notebook(Path(NOTEBOOK).stem, ASSIGNMENT, student)
        except MissingEntry:
            result.problems.append("no grades recorded")
            return result
        for grade in notebook.grades:
            exercise = _exercise_of(grade.name)
            score, maximum = result.scores.get(exercise, (0.0, 0.0))
            result.ungraded += grade.auto_score is None and grade.manual_score is None
            result.scores[exercise] = (score + float(grade.score or 0.0), maximum + float(grade.max_score))
    autograded = course / "autograded" / student / ASSIGNMENT / NOTEBOOK
    result.problems += _repairs(autograded) + _failing_tests(autograded)
    return result


def _repairs(path: Path) -> list[str]:
    if not path.is_file():
        return []
    repairs = json.loads(path.read_text()).get("metadata", {}).get("unet_course", {}).get("repairs", [])
    return [f"structure repaired: {repair}" for repair in repairs]


def _exercise_of(grade_id: str) -> str:
    return next((name for name in EXERCISES if name in grade_id), grade_id)


def _failing_tests(path: Path) -> list[str]:
    if not path.is_file():
        return ["no autograded notebook (the notebook could not be run)"]
    notebook = json.loads(path.read_text())
    problems = []
    for cell in notebook.get("cells", []):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
                message = output.get("evalue", "").splitlines()
                detail = next((line.strip(" -") for line in message[1:] if line.strip()), message[0] if message else "")
                detail = re.sub(r"^\[[^\]]*\]\s*", "", detail)  # drop the "[configuration]" prefix
                test = grade_id.removeprefix("test_").replace("_public", " (public)").replace("_hidden", " (hidden)")
                problems.append(f"{test}: {detail[:160]}")
    return problems


def summary_table(results: list[StudentResult]) -> str:
    """A plain-text table: student, score per exercise, total, first problems found."""
    header = ["student", *POINTS_ORDER, "total", "problems found"]
    rows = []
    for r in results:
        cells = [r.student]
        for exercise in POINTS_ORDER:
            score, maximum = r.scores.get(exercise, (0.0, 0.0))
            cells.append(f"{score:g}/{maximum:g}")
        score, maximum = r.total
        cells.append(f"{score:g}/{maximum:g}")
        more = f" (+{len(r.problems) - 1} more)" if len(r.problems) > 1 else ""
        cells.append(r.problems[0][:140] + more if r.problems else "-")
        rows.append(cells)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(str(value).ljust(width) for value, width in zip(row, widths)) + "  " + row[-1])
        if row is header:
            lines.append("-" * min(140, sum(widths) + 2 * len(widths) + 14))
    return "\n".join(lines)


FEEDBACK_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{assignment}: feedback</title></head>
<body style="font-family: sans-serif; max-width: 50em; margin: 2em auto">
<h1>{assignment}: 0 / {max_score:g}</h1>
<p>Your submission could not be graded automatically: {reason}.</p>
<p>Every test was recorded as 0. Check that you submitted the notebook you worked on (a
<code>.ipynb</code> file saved from JupyterLab, not renamed or edited by hand) and that it runs from
top to bottom (Kernel &rarr; Restart Kernel and Run All Cells), then ask your instructor.</p>
</body></html>
"""


def feedback(course: Path) -> Path:
    """nbgrader's feedback (hidden tests removed), plus a page for submissions it could not grade."""
    nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    problems = sorted((course / "grading-problems").glob("*.json"))
    if problems:
        with _gradebook(course) as gradebook:
            max_score = gradebook.find_assignment(ASSIGNMENT).max_score
    for path in problems:
        info = json.loads(path.read_text())
        page = course / "feedback" / info["student"] / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")
        if not page.exists():
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(FEEDBACK_PAGE.format(assignment=ASSIGNMENT, max_score=max_score,
                                                 reason=html.escape(info["reason"])))
    return course / "feedback"


def export(course: Path, to: Path) -> Path:
    nbgrader(course, "export", f"--to={to}")
    return to


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_course.instructor", description=__doc__.split("\n")[0])
    parser.add_argument("--course", type=Path, default=Path.cwd(), help="course folder (holds nbgrader_config.py)")
    parser.add_argument("--db", help=f"gradebook URL (default: sqlite gradebook.db in the course; also ${DB_ENV})")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("release", help="generate assignments/ from solutions/")
    commands.add_parser("examples", help="write example submissions into submitted/")
    collect_parser = commands.add_parser("collect", help="copy DIR/<student>.ipynb (or an LMS zip) into submitted/")
    collect_parser.add_argument("folder", type=Path, help="a folder of <student>.ipynb files, or a .zip from the LMS")
    grade_parser = commands.add_parser("autograde", help="autograde submissions and print a summary")
    grade_parser.add_argument("--student", action="append", help="only these students (repeatable)")
    grade_parser.add_argument("--workers", type=int, default=1,
                              help="submissions graded at once (each needs ~1 core and ~1.5 GB; use a shared --db)")
    commands.add_parser("feedback", help="generate feedback HTML for every graded submission")
    export_parser = commands.add_parser("export", help="export grades to CSV")
    export_parser.add_argument("--to", type=Path, default=Path("grades.csv"))
    args = parser.parse_args(argv)
    if args.db:
        os.environ[DB_ENV] = args.db  # nbgrader_config.py hands it to every nbgrader command
    try:
        course = _check_course(args.course)
        if args.command == "release":
            print(f"release written to {release(course)}")
        elif args.command == "examples":
            print("example submissions:", ", ".join(write_examples(course)))
        elif args.command == "collect":
            print("collected:", ", ".join(collect(course, args.folder)))
        elif args.command == "autograde":
            print(summary_table(autograde(course, args.student, workers=args.workers)))
        elif args.command == "feedback":
            print(f"feedback written to {feedback(course)}")
        elif args.command == "export":
            print(f"grades written to {export(course, args.to.resolve())}")
    except InstructorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
