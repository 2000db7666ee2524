"""A regrade replaces everything the previous attempt left: scores, reason, autograded notebook, feedback.

One student is graded three times through the course: a correct notebook (100, feedback, and an
instructor's manual score on top), then a corrupted resubmission (recorded zeros with the reason
everywhere, nothing of the first attempt left, one submission in the gradebook), then the correct
notebook again (100, and no trace of the failure).
"""

from __future__ import annotations

import json

import hostile_cases as hostile
import pytest

from unet_grader.assignment import ASSIGNMENT
from unet_grader.batch import autograde, gradebook
from unet_grader.coursedir import DB_ENV, as_course
from unet_grader.examples import make_submission, write_submission
from unet_grader.release import release
from unet_grader.report import feedback, read_result, summary_table

pytestmark = pytest.mark.slow
PASSED = ("All tests passed", "All hidden checks passed")


def _grades(course, student):
    """[(grade cell, auto score, manual score)] of every submission of ``student``, and how many there are."""
    from nbgrader.api import SubmittedAssignment

    with gradebook(course) as book:
        submissions = book.db.query(SubmittedAssignment).filter(SubmittedAssignment.student_id == student).all()
        return len(submissions), sorted((g.name, g.auto_score, g.manual_score)
                                        for s in submissions for n in s.notebooks for g in n.grades)


def _outputs(path) -> str:
    notebook = json.loads(path.read_text())
    return "".join("".join(o.get("text", "")) + str(o.get("evalue", ""))
                   for c in notebook["cells"] for o in c.get("outputs", []))


def test_an_unreadable_resubmission_replaces_every_trace_of_the_graded_one(make_course, monkeypatch):
    monkeypatch.delenv(DB_ENV, raising=False)
    course = as_course(make_course())
    release(course.root)
    correct = make_submission(course.release_notebook(), course.source_notebook())
    write_submission(correct, course.root, "alice")

    [first] = autograde(course, progress=False)
    assert first.total == (100.0, 100.0) and first.failure is None, first.problems
    with gradebook(course) as book:  # the instructor overrode one score by hand after the first attempt
        book.find_grade("test_unet_model_hidden", "unet_segmentation", ASSIGNMENT, "alice").manual_score = 30.0
        book.db.commit()
    feedback(course)
    old_page = course.feedback_page("alice").read_text()
    assert all(text in old_page for text in PASSED) and "could not be graded" not in old_page
    assert all(text in _outputs(course.autograded_notebook("alice")) for text in PASSED)

    hostile.write_case(course.root, "alice", hostile.CASES["corrupted_json"])  # the same student resubmits
    [second] = autograde(course, progress=False)
    feedback(course)

    assert second.total == (0.0, 100.0)
    assert second.failure.startswith("the submitted file is not a readable notebook"), second.problems
    assert second.problems[0] == second.failure and "not a readable notebook" in summary_table([second])
    recorded = json.loads((course.problems_folder() / "alice.json").read_text())
    assert recorded == {"student": "alice", "reason": second.failure}
    count, grades = _grades(course, "alice")
    assert count == 1 and len(grades) == 6
    assert all(auto == 0.0 and manual is None for _, auto, manual in grades), grades  # nothing stale, manual too
    autograded = course.autograded_notebook("alice")  # the old one is gone: this is the unanswered release
    assert json.loads(autograded.read_text())["metadata"]["unet_course"]["unreadable"] == second.failure
    assert not any(text in _outputs(autograded) for text in PASSED)
    page = course.feedback_page("alice").read_text()
    assert "could not be graded automatically" in page and "not a readable notebook" in page
    assert not any(text in page for text in PASSED) and "Score: 0.0 / 100.0" in page

    write_submission(correct, course.root, "alice")  # and a good file again: no trace of the failure
    [third] = autograde(course, progress=False)
    feedback(course)
    assert third.total == (100.0, 100.0) and third.failure is None and third.problems == []
    assert not (course.problems_folder() / "alice.json").exists()
    assert read_result(course, "alice").problems == []
    count, grades = _grades(course, "alice")
    assert count == 1 and sum(auto for _, auto, _ in grades) == 100.0 and all(m is None for *_, m in grades)
    assert "could not be graded" not in course.feedback_page("alice").read_text()
