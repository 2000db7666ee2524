"""Parallel grading on a shared PostgreSQL gradebook gives exactly the sequential SQLite grades.

The same submissions are graded twice through the real course: one at a time into the
embedded SQLite gradebook, and two workers at a time into a real PostgreSQL server on
127.0.0.1 (tests/pg_server.py). Every grade cell of every student must match, and PostgreSQL
must hold exactly one submission and one row per grade cell per student (none lost, none doubled).
"""

from __future__ import annotations

import hostile_cases as hostile
import pytest

from conftest import ROOT
from unet_grader.assignment import ASSIGNMENT, NOTEBOOK
from unet_grader.batch import autograde, gradebook
from unet_grader.coursedir import DB_ENV, copy_course
from unet_grader.examples import make_submission, write_submission
from unet_grader.release import release

pytestmark = pytest.mark.slow

STUDENTS = {  # student: (solved exercises, mistakes)
    "s1_solution": (("conv_block", "upsampling_block", "unet_model"), ()),
    "s2_partial": (("conv_block",), ()),
    "s3_empty": ((), ()),
    "s4_concat_order": (("conv_block", "upsampling_block", "unet_model"), ("concat_order",)),
    "s5_wrong_skip": (("conv_block", "upsampling_block", "unet_model"), ("wrong_skip",)),
    "s6_pooled_skip": (("conv_block", "upsampling_block", "unet_model"), ("pooled_skip",)),
}


def _course(root, name):
    course = copy_course(root / name, ROOT)
    release(course)
    release_nb, source = course / "assignments" / ASSIGNMENT / NOTEBOOK, course / "solutions" / ASSIGNMENT / NOTEBOOK
    for student, (solved, mistakes) in STUDENTS.items():
        write_submission(make_submission(release_nb, source, solved, mistakes), course, student)
    hostile.write_case(course, "s7_os_exit", hostile.CASES["os_exit"])
    hostile.write_case(course, "s8_corrupted", hostile.CASES["corrupted_json"])
    return course


def _grades(course):
    with gradebook(course) as book:
        return {s.student.id: {g.name: g.score for n in s.notebooks for g in n.grades}
                for s in book.assignment_submissions(ASSIGNMENT)}


def test_parallel_postgres_grades_equal_sequential_sqlite(tmp_path, postgres_db_url, monkeypatch):
    sequential = _course(tmp_path, "sqlite")
    monkeypatch.delenv(DB_ENV, raising=False)
    autograde(sequential, progress=False, workers=1)
    expected = _grades(sequential)

    monkeypatch.setenv(DB_ENV, postgres_db_url)  # nbgrader_config.py passes it to every command
    parallel = _course(tmp_path, "postgres")
    assert not (parallel / "gradebook.db").exists(), "the PostgreSQL course must not fall back to SQLite"
    results = autograde(parallel, progress=False, workers=2)
    got = _grades(parallel)

    assert got == expected
    assert sorted(r.student for r in results) == sorted(expected)
    assert sum(expected["s1_solution"].values()) == 100 and sum(expected["s3_empty"].values()) == 0

    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_db_url)
    with engine.connect() as connection:
        per_student = connection.execute(text(
            "select s.student_id, count(distinct s.id), count(g.id) from submitted_assignment s"
            " join submitted_notebook n on n.assignment_id = s.id join grade g on g.notebook_id = n.id"
            " group by s.student_id")).all()
        nulls = connection.execute(text("select count(*) from grade where auto_score is null"
                                        " and manual_score is null")).scalar()
    engine.dispose()
    cells = len(next(iter(expected.values())))
    assert sorted(per_student) == sorted((student, 1, cells) for student in expected)
    assert nulls == 0
