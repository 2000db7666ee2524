"""What grading tells people: a summary table for the instructor, feedback pages for students,
grades as CSV."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from unet_course.i18n import _
from unet_grader.assignment import ASSIGNMENT, EXERCISES, NOTEBOOK, exercise_of
from unet_grader.batch import StudentResult, gradebook
from unet_grader.coursedir import Course, CourseError, as_course, nbgrader
from unet_grader.plugins.reading import METADATA, not_graded_reason


def recorded_reason(course: Course, student: str) -> str | None:
    """Why this student's submission could not be graded, as grading recorded it (None: it was)."""
    path = as_course(course).problems_folder() / f"{student}.json"
    try:
        return str(json.loads(path.read_text())["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_result(course: Course, student: str) -> StudentResult:
    """Scores from the gradebook; first why the submission was not graded normally (if so: the
    recorded reason, then what the gradebook and the autograded notebook show), then what was
    repaired and the failing tests' first message. Never raises for a damaged or missing
    autograded notebook; ``failure`` is set whenever the submission was not graded normally."""
    from nbgrader.api import MissingEntry

    course = as_course(course)
    result = StudentResult(student)
    failures = [reason] if (reason := recorded_reason(course, student)) else []
    with gradebook(course) as book:
        try:
            notebook = book.find_submission_notebook(Path(NOTEBOOK).stem, ASSIGNMENT, student)
        except MissingEntry:
            notebook = None
            failures.append(_("no grades recorded"))
        for grade in notebook.grades if notebook is not None else []:
            exercise = exercise_of(grade.name)
            score, maximum = result.scores.get(exercise, (0.0, 0.0))
            result.ungraded += grade.auto_score is None and grade.manual_score is None
            result.scores[exercise] = (score + float(grade.score or 0.0), maximum + float(grade.max_score))
    failure, problems = _autograded_problems(course.autograded_notebook(student))
    failures += [failure] if failure else []
    result.problems = list(dict.fromkeys(failures + problems))
    result.failure = failures[0] if failures else None
    return result


def _autograded_problems(path: Path) -> tuple[str | None, list[str]]:
    """Why the autograded notebook shows no normal grading (None if it does), and what was
    repaired and which tests failed (robust to damage)."""
    if not path.is_file():
        return _("no autograded notebook (the notebook could not be run)"), []
    try:
        notebook = json.loads(path.read_text())
        notes = notebook.get("metadata", {}).get(METADATA) or {}
        problems = [_("structure repaired: {repair}").format(repair=repair) for repair in notes.get("repairs", [])]
        not_graded = not_graded_reason(notebook)
        if not_graded:  # every test failed for that one reason: no need to list them
            return str(not_graded), problems
        problems += _failed_tests(notebook.get("cells", []))
    except (ValueError, AttributeError, TypeError, OSError) as error:
        return _("the autograded notebook could not be read ({error})").format(error=type(error).__name__), []
    return None, problems


def _failed_tests(cells: list) -> list[str]:
    """Each failing test's first message."""
    problems = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade"):
            continue
        grade_id = meta.get("grade_id", "")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                message = str(output.get("evalue", "")).splitlines()
                detail = next((line.strip(" -") for line in message[1:] if line.strip()), message[0] if message else "")
                detail = re.sub(r"^\[[^\]]*\]\s*", "", detail)  # drop the "[configuration]" prefix
                test = grade_id.removeprefix("test_").replace("_public", " " + _("(public)")).replace(
                    "_hidden", " " + _("(hidden)"))
                problems.append(f"{test}: {detail[:160]}")
    return problems


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: Chinese characters (the Chinese edition's headers) take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def summary_table(results: list[StudentResult]) -> str:
    """A plain-text table: student, score per exercise, total, first problems found."""
    header = [_("student"), *EXERCISES, _("total"), _("problems found")]
    rows = []
    for r in results:
        cells = [r.student]
        for exercise in EXERCISES:
            score, maximum = r.scores.get(exercise, (0.0, 0.0))
            cells.append(f"{score:g}/{maximum:g}")
        score, maximum = r.total
        cells.append(f"{score:g}/{maximum:g}")
        more = " " + _("(+{count} more)").format(count=len(r.problems) - 1) if len(r.problems) > 1 else ""
        cells.append(r.problems[0][:140] + more if r.problems else "-")
        rows.append(cells)
    widths = [max(_width(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(str(value) + " " * (width - _width(str(value))) for value, width in zip(row, widths))
                     + "  " + row[-1])
        if row is header:
            lines.append("-" * min(140, sum(widths) + 2 * len(widths) + 14))
    return "\n".join(lines)


FEEDBACK_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{assignment}: {feedback}</title></head>
<body style="font-family: sans-serif; max-width: 50em; margin: 2em auto">
<h1>{assignment}: {score:g} / {max_score:g}</h1>
<p>{not_graded}</p>
<p>{what_to_do}</p>
</body></html>
"""


def feedback_page(score: float, maximum: float, reason: str) -> str:
    """The feedback page of a submission that could not be graded, in the reader's language."""
    return FEEDBACK_PAGE.format(
        assignment=ASSIGNMENT, feedback=_("feedback"), score=score, max_score=maximum,
        not_graded=_("Your submission could not be graded automatically: {reason}.").format(reason=html.escape(reason)),
        what_to_do=_("What could not be graded was recorded as 0. Check that you submitted the notebook you worked on (a"
                     " <code>.ipynb</code> file saved from JupyterLab, not renamed or edited by hand) and that it runs"
                     " from top to bottom (Kernel &rarr; Restart Kernel and Run All Cells), then ask your instructor."))


def feedback(course) -> Path:
    """nbgrader's feedback (hidden tests removed), plus a page for each submission it could not
    make one for because grading had failed (the recorded reason says why)."""
    course = as_course(course)
    run = nbgrader(course.root, "generate_feedback", ASSIGNMENT, "--force", check=False)
    for path in sorted(course.problems_folder().glob("*.json")):
        student = path.stem
        page = course.feedback_page(student)
        if not page.exists():
            result = read_result(course, student)
            score, maximum = result.total
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(feedback_page(score, maximum, result.failure or _("grading failed")))
    missing = [student for student in course.submitted_students()
               if course.autograded_notebook(student).is_file() and not course.feedback_page(student).exists()]
    if run.returncode != 0 and missing:
        raise CourseError(_("nbgrader generate_feedback failed (exit {code}) for {students}:").format(
            code=run.returncode, students=", ".join(missing)) + f"\n{run.stdout[-2000:]}{run.stderr[-3000:]}")
    return course.root / course.directory.feedback_directory


def export(course, to: Path) -> Path:
    """Grades of every student as CSV (nbgrader export)."""
    course = as_course(course)
    nbgrader(course.root, "export", f"--to={to}")
    return to
