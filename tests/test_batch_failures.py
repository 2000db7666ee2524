"""The batch always finishes, whoever starts it: every failure is a recorded result with its reason.

* Plain ``nbgrader autograde`` (not the course's CLI) with an unreadable file among good ones:
  zeros (not empty scores) and the reason for that student, the others graded, exit code 0.
* Failures injected into one real batch (SQLite, one worker, sandboxed), each for one student: the
  verifier killed (it crashed) and stopped (it hangs: timed out), the gradebook locked by another
  connection, an nbgrader run that leaves a truncated or no autograded notebook. A correct
  submission graded last still gets 100; the summary, the CSV and the feedback cover everyone.
* An exception inside a worker of a parallel batch on PostgreSQL.
* SQLite with ``--workers 2`` is refused with a clear message.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import hostile_cases as hostile
import pytest
from processes import descendants

from conftest import ROOT, released_course
from unet_grader import batch, cluster
from unet_grader.cluster import grade_task as cluster_grade_task
from unet_grader.assignment import ASSIGNMENT
from unet_grader.batch import autograde, gradebook
from unet_grader.coursedir import DB_ENV, as_course, copy_course, run_nbgrader
from unet_grader.examples import make_submission, write_submission
from unet_grader.plugins.verdicts import VERIFIER_TIMEOUT_ENV
from unet_grader.release import release
from unet_grader.report import export, feedback, read_result, summary_table

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A released course with its SQLite gradebook, copied by each test (a release takes seconds)."""
    return released_course(tmp_path_factory.mktemp("released") / "course")


def _fresh(released: Path, where: Path, *correct: str) -> Path:
    course = Path(shutil.copytree(released, where))
    for student in correct:
        write_submission(make_submission(as_course(course).release_notebook(), as_course(course).source_notebook()),
                         course, student)
    return course


def _grades(course) -> dict:
    """{student: [auto score or None per grade cell]} straight from the gradebook."""
    with gradebook(course) as book:
        return {s.student.id: [g.auto_score if g.manual_score is None else g.manual_score
                               for n in s.notebooks for g in n.grades]
                for s in book.assignment_submissions(ASSIGNMENT)}


def _csv(course) -> dict:
    with open(as_course(course).root / "grades.csv") as handle:
        return {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}


# --- plain nbgrader ---------------------------------------------------------------------------------

@slow
def test_plain_nbgrader_autograde_records_zeros_and_the_reason_for_an_unreadable_file(released, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.delenv(DB_ENV, raising=False)
    course = _fresh(released, tmp_path / "course", "alice")
    hostile.write_case(course, "bob", hostile.CASES["corrupted_json"])

    run = run_nbgrader(course, "autograde", ASSIGNMENT, "--force")  # in the course folder, no CLI of ours
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "not a readable notebook" in run.stderr  # nbgrader's log says what happened, as a warning

    grades = _grades(course)
    assert grades["bob"] == [0.0] * 6  # recorded zeros, not empty scores
    assert sum(grades["alice"]) == 100.0
    results = [read_result(course, student) for student in ("alice", "bob")]
    assert results[0].failure is None and results[0].problems == []
    assert results[1].failure.startswith("the submitted file is not a readable notebook (NotJSONError")
    assert results[1].problems == [results[1].failure]
    assert "not a readable notebook" in summary_table(results).splitlines()[-1]

    run = run_nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    assert run.returncode == 0, run.stderr[-3000:]
    page = as_course(course).feedback_page("bob").read_text()
    assert "could not be graded automatically" in page and "not a readable notebook" in page


# --- failures injected into one batch --------------------------------------------------------------

def _verifiers() -> list[int]:
    """Verifier processes under this test process: the worker's serving verifier, or one that an
    nbgrader run started for its notebook (a grading that could not reach the serving one)."""
    return [pid for pid, argv in descendants().items()
            if b"unet_grader.verifier" in argv and not argv[0].endswith(b"prlimit")]


class VerifierSaboteur:
    """While ``target`` is (student, signal), that student is being graded (one at a time): sends
    the signal to each verifier that grading meets (once each)."""

    def __init__(self):
        self.target = None
        self.hit: dict[int, tuple] = {}  # pid -> (student, signal)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.05):
            target = self.target
            if target is None:
                continue
            for pid in _verifiers():
                if pid not in self.hit:
                    os.kill(pid, target[1])
                    self.hit[pid] = target

    def stop(self):
        self._stop.set()
        self._thread.join()
        for pid in self.hit:  # one we stopped that somehow outlived its grader (checked: not a reused pid)
            try:
                stat, argv = Path(f"/proc/{pid}/stat").read_text(), Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"unet_grader.verifier" in argv and stat[stat.rindex(")") + 2] == "T":
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


BATCH = ["crashed_verifier", "hung_verifier", "locked_gradebook", "truncated_autograded", "missing_autograded",
         "zz_correct"]


@pytest.fixture(scope="module")
def failures(released, tmp_path_factory):
    course = _fresh(released, tmp_path_factory.mktemp("failures") / "course", *BATCH)
    database = course / "gradebook.db"
    saboteur = VerifierSaboteur()
    real_grade_one, real_run_autograde = batch.grade_one, batch.run_autograde

    def grade_one(course_, student):
        if student == "crashed_verifier":
            saboteur.target = (student, signal.SIGKILL)  # as the kernel's OOM killer would
        elif student == "hung_verifier":
            saboteur.target = (student, signal.SIGSTOP)  # alive, never answers
            os.environ[VERIFIER_TIMEOUT_ENV] = "5"
        elif student == "locked_gradebook":  # another program holds the gradebook the whole time
            lock = sqlite3.connect(database, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            try:
                return real_grade_one(course_, student)
            finally:
                lock.rollback()
                lock.close()
        try:
            return real_grade_one(course_, student)
        finally:
            saboteur.target = None
            os.environ.pop(VERIFIER_TIMEOUT_ENV, None)

    def run_autograde(course_, student):
        """nbgrader itself for everyone but two: for them it 'succeeds' (full marks recorded) but leaves
        a truncated autograded notebook, or none."""
        if student not in ("truncated_autograded", "missing_autograded"):
            return real_run_autograde(course_, student)
        with gradebook(course) as book:
            for grade in book.update_or_create_submission(ASSIGNMENT, student).notebooks[0].grades:
                grade.auto_score = grade.max_score
            book.db.commit()
        if student == "truncated_autograded":  # in the folder the task grades in (`course_`)
            path = as_course(course_).autograded_notebook(student)
            path.parent.mkdir(parents=True)
            text = as_course(course).release_notebook().read_text()
            path.write_text(text[: len(text) // 2])
        return subprocess.CompletedProcess(["nbgrader", "autograde"], 0, "", "")

    with pytest.MonkeyPatch.context() as patch:
        # A short wait for the lock: SQLite's own default (5 s) only makes the test slower.
        patch.setenv(DB_ENV, f"sqlite:///{database}?timeout=1")
        patch.setattr(batch, "grade_one", grade_one)
        patch.setattr(batch, "run_autograde", run_autograde)
        started = time.monotonic()
        results = {r.student: r for r in autograde(course, BATCH, progress=False)}
        seconds = time.monotonic() - started
        feedback(course)
        export(course, course / "grades.csv")
        grades = _grades(course)
    saboteur.stop()
    return {"course": course, "results": results, "grades": grades, "hit": saboteur.hit, "seconds": seconds,
            "summary": summary_table([results[s] for s in BATCH])}


def _failed_with(failures, student: str, reason_start: str) -> None:
    """The student's result, gradebook, summary, CSV and feedback all show recorded zeros and the reason."""
    result = failures["results"][student]
    assert result.failure and result.failure.startswith(reason_start), result.problems
    assert result.problems[0] == result.failure
    assert result.total == (0.0, 100.0)
    assert failures["grades"][student] == [0.0] * 6  # every grade recorded as 0: none empty, none stale
    row = next(line for line in failures["summary"].splitlines() if line.startswith(student))
    assert reason_start[:60] in row
    assert _csv(failures["course"])[student] == 0.0
    page = as_course(failures["course"]).feedback_page(student).read_text()
    assert "could not be graded automatically" in page


@slow
def test_a_verifier_that_crashes_is_reported_as_a_crash(failures):
    assert ("crashed_verifier", signal.SIGKILL) in failures["hit"].values()
    _failed_with(failures, "crashed_verifier", "the verifier crashed (killed by signal 9")


@slow
def test_a_verifier_that_hangs_is_stopped_and_reported_as_timed_out(failures):
    assert ("hung_verifier", signal.SIGSTOP) in failures["hit"].values()
    _failed_with(failures, "hung_verifier", "the verifier timed out after 5 s")


@slow
def test_a_locked_gradebook_costs_that_student_a_reason_not_the_batch(failures):
    _failed_with(failures, "locked_gradebook", "grading failed: OperationalError")
    assert "database is locked" in failures["results"]["locked_gradebook"].failure


@slow
def test_a_truncated_or_missing_autograded_notebook_is_a_reason_not_a_crash(failures):
    _failed_with(failures, "truncated_autograded", "the autograded notebook could not be read (JSONDecodeError)")
    _failed_with(failures, "missing_autograded", "no autograded notebook")
    course = failures["course"]
    for student in ("truncated_autograded", "missing_autograded"):  # and reading them again never raises
        assert read_result(course, student).failure == failures["results"][student].failure


@slow
def test_the_others_are_graded_and_the_summary_csv_and_feedback_are_complete(failures):
    course, results = failures["course"], failures["results"]
    assert results["zz_correct"].total == (100.0, 100.0) and results["zz_correct"].failure is None
    assert sorted(results) == sorted(BATCH) == sorted(failures["grades"]) == sorted(_csv(course))
    assert all(None not in grades for grades in failures["grades"].values())
    assert [line.split()[0] for line in failures["summary"].splitlines()[2:]] == BATCH
    for student in BATCH:
        assert as_course(course).feedback_page(student).is_file(), student
    print(f"batch of {len(BATCH)} with injected failures: {failures['seconds']:.0f} s")


# --- a parallel batch on PostgreSQL ----------------------------------------------------------------

def grade_task_bob_falls_over(task):
    """A grading task that raises on the worker for bob (Dask ships this function by reference:
    the workers import it from this module, as they import unet_grader's)."""
    if task.student == "bob":
        raise RuntimeError("injected: the worker fell over")
    return cluster_grade_task(task)


@slow
def test_an_exception_inside_a_worker_is_that_students_result(released, tmp_path, postgres_db_url, monkeypatch):
    monkeypatch.setenv(DB_ENV, postgres_db_url)
    course = _fresh(released, tmp_path / "course", "alice", "bob")
    (course / "gradebook.db").unlink()
    release(course)  # the assignment, in the PostgreSQL gradebook
    monkeypatch.setattr(cluster, "grade_task", grade_task_bob_falls_over)
    results = {r.student: r for r in autograde(course, progress=False, workers=2)}
    export(course, course / "grades.csv")

    assert results["alice"].total == (100.0, 100.0) and results["alice"].failure is None
    assert results["bob"].failure == "grading failed: RuntimeError: injected: the worker fell over"
    assert results["bob"].total == (0.0, 100.0) and results["bob"].problems[0] == results["bob"].failure
    grades = _grades(course)
    assert sorted(grades) == ["alice", "bob"] and grades["bob"] == [0.0] * 6 and sum(grades["alice"]) == 100.0
    assert "injected: the worker fell over" in summary_table([results["alice"], results["bob"]])
    assert _csv(course) == {"alice": 100.0, "bob": 0.0}
    assert not (course / "gradebook.db").exists()


# --- SQLite cannot take two workers -----------------------------------------------------------------

@pytest.mark.parametrize("course_after_command", [False, True], ids=["--course first", "--course after autograde"])
def test_sqlite_with_two_workers_is_refused_with_a_clear_message(tmp_path, course_after_command):
    course = copy_course(tmp_path / "course", ROOT)
    env = {k: v for k, v in os.environ.items() if k != DB_ENV}
    where = ["--course", str(course)]
    args = ["autograde", *where, "--workers", "2"] if course_after_command else [*where, "autograde", "--workers", "2"]
    run = subprocess.run([sys.executable, "-m", "unet_grader", *args], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 1
    assert run.stderr.startswith("error: --workers 2 needs a gradebook that several processes can write at once")
    assert "SQLite cannot" in run.stderr and "PostgreSQL" in run.stderr and "--workers 1" in run.stderr
    assert not (course / "autograded").exists()


def test_course_and_db_may_come_before_or_after_the_command():
    from unet_grader.cli import _parser

    for args in (["--db", "U", "--course", "C", "autograde"], ["autograde", "--db", "U", "--course", "C"],
                 ["--db", "old", "--course", "X", "autograde", "--db", "U", "--course", "C"]):
        parsed = _parser().parse_args(args)
        assert (parsed.db, parsed.course) == ("U", Path("C")), args
    parsed = _parser().parse_args(["export"])
    assert (parsed.db, parsed.course) == (None, Path.cwd())
