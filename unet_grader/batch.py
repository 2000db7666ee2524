"""Autograde a class: every submission gets a grade and a reason, and the batch always finishes.

Each submission is one task (:mod:`unet_grader.cluster`: graded here, on a local Dask cluster or
on a remote one), graded by the real ``nbgrader autograde`` in its own process (with the course's
plug-ins: unreadable files read as the unanswered assignment, sandbox, repaired structure, verdicts
outside the kernel). Whatever goes wrong for one student (an unreadable file, a crash, a timeout,
a locked gradebook, a verifier that failed) becomes recorded zeros with the reason for that
student; a regrade replaces the previous attempt's scores, reason, autograded notebook and
feedback completely.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field

from unet_grader.assignment import ASSIGNMENT, EXERCISES, NOTEBOOK
from unet_grader.coursedir import (Course, CourseError, as_course, nbgrader, nbgrader_environment, path_with_scripts,
                                  setting)


def student_timeout() -> int:
    """Seconds one submission may take in all (read when grading starts)."""
    return int(setting("UNET_COURSE_STUDENT_TIMEOUT", "1800"))


@contextlib.contextmanager
def gradebook(course: Course):
    """nbgrader's Gradebook API, without SQLAlchemy's warnings about nbgrader's own queries."""
    from nbgrader.api import Gradebook

    os.environ["PATH"] = path_with_scripts(os.environ.get("PATH", ""))  # a new gradebook runs alembic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(as_course(course).db_url()) as book:
            yield book


@dataclass
class StudentResult:
    """One student's autograde outcome, per exercise."""

    student: str
    scores: dict = field(default_factory=dict)  # exercise -> (score, max)
    problems: list = field(default_factory=list)
    ungraded: int = 0  # grade cells with no score at all (nbgrader never got to them)
    failure: str | None = None  # why it could not be graded normally (its grades are then recorded zeros)

    @property
    def total(self) -> tuple[float, float]:
        return (sum(s for s, _ in self.scores.values()), sum(m for _, m in self.scores.values()))


def _first_line(error: BaseException, limit: int = 200) -> str:
    return (str(error).strip().splitlines() or [""])[0][:limit]


def record_zeros(course: Course, student: str, reason: str, every_grade: bool = False) -> None:
    """Give the grades of a submission that could not be graded a recorded 0 (not an empty score;
    with ``every_grade``, also the ones a previous attempt left, manual ones included), and keep
    the reason beside the gradebook for the summary and the feedback (written first: it survives
    a gradebook that cannot be written)."""
    from nbgrader.api import MissingEntry

    course = as_course(course)
    course.problems_folder().mkdir(exist_ok=True)
    (course.problems_folder() / f"{student}.json").write_text(json.dumps({"student": student, "reason": reason}))
    with gradebook(course) as book:
        book.update_or_create_student(student)
        try:
            submission = book.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            submission = book.add_submission(ASSIGNMENT, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if every_grade or (grade.auto_score is None and grade.manual_score is None):
                    grade.auto_score, grade.manual_score, grade.needs_manual_grade = 0.0, None, False
        book.db.commit()


def forget_previous_attempt(course: Course, student: str) -> None:
    """A regrade starts clean: no earlier reason, autograded notebook or feedback survives it."""
    (course.problems_folder() / f"{student}.json").unlink(missing_ok=True)
    shutil.rmtree(course.autograded_folder(student), ignore_errors=True)
    shutil.rmtree(course.feedback_folder(student), ignore_errors=True)


def _last_error(run: subprocess.CompletedProcess) -> str:
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "ERROR" in line or "Error" in line]
    return lines[-1][-200:] if lines else "see the nbgrader log"


def run_autograde(course: Course, student: str) -> subprocess.CompletedProcess:
    """The real ``nbgrader autograde`` for one student, stopped after :func:`student_timeout`:
    forked from this process's warm nbgrader, with its serving verifier (:mod:`unet_grader.warm`),
    or, with UNET_COURSE_WARM=off or without ``fork``, a fresh ``nbgrader`` process."""
    from unet_grader import warm

    args = ["autograde", ASSIGNMENT, f"--student={student}", "--force"]
    if not warm.enabled():
        return nbgrader(course.root, *args, check=False, timeout=student_timeout())
    return warm.grader().autograde(course.root, args, nbgrader_environment(), student_timeout())


def grade_one(course: Course, student: str) -> StudentResult:
    """Autograde one submission in its own nbgrader process; whatever happens, grades are recorded.

    A file nbgrader cannot read is graded by nbgrader itself as the unanswered assignment (the
    course's reading plug-in); anything else that goes wrong (nbgrader failing or timing out, no
    grades or no readable autograded notebook afterwards, the verifier failing) replaces every
    score of this student, earlier attempts' included, with a recorded 0 and the reason.
    """
    from unet_grader.report import read_result

    course = as_course(course)
    forget_previous_attempt(course, student)
    problem = None
    if not course.submitted_notebook(student).is_file():
        problem = f"no {NOTEBOOK} in the submission"
    else:
        try:
            run = run_autograde(course, student)
            if run.returncode != 0:
                problem = f"nbgrader exited {run.returncode}: {_last_error(run)}"
        except subprocess.TimeoutExpired:
            problem = f"grading took longer than {student_timeout()} s and was stopped"
    try:
        result = read_result(course, student)
        problem = problem or result.failure or ("some tests were not graded" if result.ungraded else None)
    except Exception as error:  # noqa: BLE001 - a broken gradebook row: still a result
        problem = problem or f"the result could not be read ({type(error).__name__}: {_first_line(error)})"
    if problem:
        record_zeros(course, student, problem, every_grade=True)
        result = read_result(course, student)
    return result


def grade_safely(course: Course, student: str) -> StudentResult:
    """:func:`grade_one`, and if even that fails (a locked gradebook, a full disk), a result that says why."""
    try:
        return grade_one(course, student)
    except Exception as error:  # noqa: BLE001 - one student's failure never stops the batch
        return _record_failure(course, student, error)


def _record_failure(course: Course, student: str, error: BaseException) -> StudentResult:
    """Recorded zeros and the reason for a submission whose grading failed with ``error``."""
    from unet_grader.report import read_result

    reason = f"grading failed: {type(error).__name__}: {_first_line(error)}"
    try:
        record_zeros(course, student, reason, every_grade=True)
        return read_result(course, student)
    except Exception as again:  # noqa: BLE001
        reason += f" (and the zeros could not be recorded: {type(again).__name__}: {_first_line(again, 120)})"
    return StudentResult(student, {name: (0.0, 0.0) for name in EXERCISES}, [reason], failure=reason)


def autograde(course, students: list[str] | None = None, progress: bool = True,
              workers: int = 1, scheduler: str | None = None, done=None) -> list[StudentResult]:
    """Autograde every submission; one failure never stops the batch.

    One task per submission (:mod:`unet_grader.cluster`): graded here one at a time, on a local
    Dask cluster of ``workers`` processes, or on the Dask cluster at ``scheduler``
    (``tcp://host:port``), whose workers write to the shared gradebook. ``done``, if given, is
    called with each result as it arrives (the benchmark times them).
    """
    from tqdm.auto import tqdm

    from unet_grader import cluster, sandbox

    course = as_course(course)
    if reason := cluster.needs_shared_gradebook(course, workers, scheduler):
        raise CourseError(reason)
    students = students or course.submitted_students()
    if not students:
        raise CourseError(f"no submissions in {course.root / course.directory.submitted_directory}"
                          " (run `collect` or `examples` first)")
    if not scheduler:  # a remote cluster's machines have their own sandbox (or say why not in each result)
        try:
            if not sandbox.active():
                reason = sandbox.unavailable_reason() or f"{sandbox.SANDBOX_ENV}=off"
                print(sandbox.UNSANDBOXED_WARNING.format(reason=reason), file=sys.stderr)
        except sandbox.SandboxUnavailable as error:
            raise CourseError(str(error)) from None
    from nbgrader.api import MissingEntry

    with gradebook(course) as book:  # students first, so parallel workers never race to create them
        try:
            book.find_assignment(ASSIGNMENT)
        except MissingEntry:
            raise CourseError(f"the gradebook ({course.db_url().split('@')[-1]}) has no assignment {ASSIGNMENT}:"
                              " run `python -m unet_grader release` first") from None
        for student in students:
            book.update_or_create_student(student)
    shared = cluster.course_files(course)
    tasks = [cluster.make_task(course, student, shared) for student in students]
    results = {}
    with tqdm(total=len(students), desc="autograding", unit="submission", disable=not progress) as bar:
        for student, outcome in cluster.run(tasks, workers=workers, scheduler=scheduler):
            if isinstance(outcome, cluster.GradedSubmission):
                cluster.keep_graded(course, student, outcome)
                results[student] = outcome.result
            else:  # the task itself failed (e.g. its workers kept dying): zeros and the reason, here
                forget_previous_attempt(course, student)
                results[student] = _record_failure(course, student, outcome)
            if done is not None:
                done(results[student])
            bar.update()
    return [results[student] for student in students]
