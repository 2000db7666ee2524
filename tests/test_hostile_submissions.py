"""Every broken and hostile submission of unet_course.hostile, autograded in one real batch.

Two honest students are graded first; then every hostile case, sandboxed, through the course's
nbgrader configuration. For each case: a grade is recorded, the score is what its honest content
earns, the summary says what happened; and the honest students' grades never move.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import threading

import hostile_cases as hostile
import pytest
from pg_server import fresh_database

from conftest import ROOT
from unet_grader import sandbox
from unet_grader.assignment import ASSIGNMENT, NOTEBOOK
from unet_grader.batch import autograde, gradebook
from unet_grader.coursedir import DB_ENV, copy_course
from unet_grader.examples import make_submission, write_submission
from unet_grader.release import release
from unet_grader.report import export, feedback

pytestmark = pytest.mark.slow
CONTROLS = {"control_solution": 100.0, "control_partial": 50.0}
SECRETS = ("BEGIN HIDDEN TESTS", "hidden=True", 'kernel_initializer="he_normal")(inputs)',
           "merge = concatenate([up, contractive_input]")


class CountingServer:
    """A TCP server on 127.0.0.1 that counts every connection that reaches it."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def _grades(course):
    """{student: {grade cell: score or None}} straight from the gradebook."""
    with gradebook(course) as book:
        return {s.student.id: {g.name: g.score if g.auto_score is not None or g.manual_score is not None else None
                               for n in s.notebooks for g in n.grades}
                for s in book.assignment_submissions(ASSIGNMENT)}


@pytest.fixture(scope="module")
def batch(tmp_path_factory, postgres_url):
    if sandbox.unavailable_reason() and os.environ.get("CI") != "true":
        pytest.skip(f"bubblewrap cannot run here: {sandbox.unavailable_reason()}")
    os.environ[sandbox.SANDBOX_ENV] = "require"
    database = fresh_database(postgres_url)  # two workers need a gradebook that takes two writers
    os.environ[DB_ENV] = database.__enter__()
    # The course's cells take seconds: an endless loop need not wait the default 2 minutes.
    course = copy_course(tmp_path_factory.mktemp("hostile") / "course", ROOT, timeout=20)
    release(course)
    release_nb, source = course / "assignments" / ASSIGNMENT / NOTEBOOK, course / "solutions" / ASSIGNMENT / NOTEBOOK
    write_submission(make_submission(release_nb, source), course, "control_solution")
    write_submission(make_submission(release_nb, source, ("conv_block", "upsampling_block")), course,
                     "control_partial")
    autograde(course, list(CONTROLS), progress=False)
    before = _grades(course)
    server = CountingServer()
    students = {f"hostile_{name}": case for name, case in hostile.CASES.items()}
    for student, case in students.items():
        hostile.write_case(course, student, case, port=server.port)
    # Two workers: hostile kernels run side by side, and must not disturb each other either.
    results = {r.student: r for r in autograde(course, list(students), progress=True, workers=2)}
    feedback(course)
    export(course, course / "grades.csv")
    yield {"course": course, "before": before, "after": _grades(course), "results": results, "server": server}
    os.environ.pop(sandbox.SANDBOX_ENV, None)
    os.environ.pop(DB_ENV, None)
    database.__exit__(None, None, None)


@pytest.mark.parametrize("name", list(hostile.CASES))
def test_hostile_submission_gets_exactly_its_honest_grade(batch, name):
    case, student = hostile.CASES[name], f"hostile_{name}"
    grades, result = batch["after"][student], batch["results"][student]
    assert grades and all(score is not None for score in grades.values()), f"grades not recorded: {grades}"
    total = sum(grades.values())
    if case.expected is not None:
        assert total == case.expected, f"{case.description}: {total} (problems: {result.problems})"
    assert total <= case.at_most
    summary = " | ".join(result.problems)
    assert case.message in summary, f"the summary does not say {case.message!r}: {summary}"
    if total < 100:
        assert result.problems, "a submission that lost points must say why"


def test_honest_students_grades_never_move(batch):
    for student, total in CONTROLS.items():
        assert batch["before"][student] == batch["after"][student]
        assert sum(batch["after"][student].values()) == total


def test_gradebook_stays_consistent(batch):
    with gradebook(batch["course"]) as book:
        assignment = book.find_assignment(ASSIGNMENT)
        assert assignment.max_score == 100.0  # the "bonus" cell and points=1000 edits changed nothing
        cells = sorted(c.name for n in assignment.notebooks for c in n.grade_cells)
        submissions = book.assignment_submissions(ASSIGNMENT)
        assert len(submissions) == len(CONTROLS) + len(hostile.CASES)
        for submission in submissions:
            assert sorted(g.name for n in submission.notebooks for g in n.grades) == cells


def test_no_connection_ever_reached_the_network(batch):
    assert batch["server"].connections == 0
    log = _cell_text(batch, "hostile_network")
    assert "connected" not in log.replace("not connected", "") and "blocked" in log


def test_secrets_stay_out_of_reach_and_out_of_the_feedback(batch):
    log = _cell_text(batch, "hostile_read_secrets")
    assert "found: {}" in log, log[:2000]
    assert "grader variables: []" in log, log[:2000]
    assert "reference hidden:" in log
    course = batch["course"]
    for student in ("hostile_read_secrets", "hostile_patch_ipython", "control_solution"):
        html = (course / "feedback" / student / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")).read_text()
        for secret in SECRETS:
            assert secret not in html, f"{student}'s feedback shows {secret!r}"


def test_gradebook_written_by_nobody_but_nbgrader(batch):
    log = _cell_text(batch, "hostile_write_gradebook")
    assert "wrote ../../../gradebook.db" not in log and "could not write" in log


def test_every_student_gets_feedback_and_a_csv_row(batch):
    course = batch["course"]
    with open(course / "grades.csv") as handle:
        rows = {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}
    for student, grades in batch["after"].items():
        assert rows[student] == pytest.approx(sum(grades.values()))
        page = course / "feedback" / student / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")
        assert page.is_file(), f"no feedback for {student}"
    unreadable = (course / "feedback" / "hostile_corrupted_json" / ASSIGNMENT / "unet_segmentation.html").read_text()
    assert "could not be graded automatically" in unreadable and "not a readable notebook" in unreadable


def test_output_floods_do_not_bloat_the_graded_notebook(batch):
    path = batch["course"] / "autograded" / "hostile_huge_output" / ASSIGNMENT / NOTEBOOK
    assert path.stat().st_size < 10 * 2**20
    assert "output truncated by the grader" in path.read_text()


def _cell_text(batch, student):
    path = batch["course"] / "autograded" / student / ASSIGNMENT / NOTEBOOK
    notebook = json.loads(path.read_text())
    return "\n".join("".join(o.get("text", "")) for c in notebook["cells"] for o in c.get("outputs", []))
