"""What grading tells people: a summary table for the instructor, feedback pages for students,
grades as CSV."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from unet_grader.assignment import ASSIGNMENT, EXERCISES, NOTEBOOK, exercise_of
from unet_grader.batch import StudentResult, gradebook
from unet_grader.coursedir import Course, as_course, nbgrader


def read_result(course: Course, student: str) -> StudentResult:
    """Scores from the gradebook and the failing tests' first message from the autograded notebook."""
    from nbgrader.api import MissingEntry

    course = as_course(course)
    result = StudentResult(student)
    with gradebook(course) as book:
        try:
            notebook = book.find_submission_notebook(Path(NOTEBOOK).stem, ASSIGNMENT, student)
        except MissingEntry:
            result.problems.append("no grades recorded")
            return result
        for grade in notebook.grades:
            exercise = exercise_of(grade.name)
            score, maximum = result.scores.get(exercise, (0.0, 0.0))
            result.ungraded += grade.auto_score is None and grade.manual_score is None
            result.scores[exercise] = (score + float(grade.score or 0.0), maximum + float(grade.max_score))
    result.problems += _autograded_problems(course.autograded_notebook(student))
    return result


def _autograded_problems(path: Path) -> list[str]:
    """What was repaired and which tests failed, from the autograded notebook (robust to damage)."""
    if not path.is_file():
        return ["no autograded notebook (the notebook could not be run)"]
    try:
        notebook = json.loads(path.read_text())
        cells = notebook.get("cells", [])
        repairs = notebook.get("metadata", {}).get("unet_course", {}).get("repairs", [])
    except (ValueError, AttributeError, OSError) as error:
        return [f"the autograded notebook could not be read ({type(error).__name__})"]
    problems = [f"structure repaired: {repair}" for repair in repairs]
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell, dict) else {}
        if not meta.get("grade"):
            continue
        grade_id = meta.get("grade_id", "")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                message = str(output.get("evalue", "")).splitlines()
                detail = next((line.strip(" -") for line in message[1:] if line.strip()), message[0] if message else "")
                detail = re.sub(r"^\[[^\]]*\]\s*", "", detail)  # drop the "[configuration]" prefix
                test = grade_id.removeprefix("test_").replace("_public", " (public)").replace("_hidden", " (hidden)")
                problems.append(f"{test}: {detail[:160]}")
    return problems


def summary_table(results: list[StudentResult]) -> str:
    """A plain-text table: student, score per exercise, total, first problems found."""
    header = ["student", *EXERCISES, "total", "problems found"]
    rows = []
    for r in results:
        cells = [r.student]
        for exercise in EXERCISES:
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
<h1>{assignment}: {score:g} / {max_score:g}</h1>
<p>Your submission could not be graded automatically: {reason}.</p>
<p>What could not be graded was recorded as 0. Check that you submitted the notebook you worked on (a
<code>.ipynb</code> file saved from JupyterLab, not renamed or edited by hand) and that it runs from
top to bottom (Kernel &rarr; Restart Kernel and Run All Cells), then ask your instructor.</p>
</body></html>
"""


def feedback(course) -> Path:
    """nbgrader's feedback (hidden tests removed), plus a page for submissions it could not grade."""
    course = as_course(course)
    nbgrader(course.root, "generate_feedback", ASSIGNMENT, "--force")
    for path in sorted(course.problems_folder().glob("*.json")):
        info = json.loads(path.read_text())
        page = course.feedback_page(info["student"])
        if not page.exists():
            result = read_result(course, info["student"])
            score, maximum = result.total
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(FEEDBACK_PAGE.format(assignment=ASSIGNMENT, score=score, max_score=maximum,
                                                 reason=html.escape(info["reason"])))
    return course.root / course.directory.feedback_directory


def export(course, to: Path) -> Path:
    """Grades of every student as CSV (nbgrader export)."""
    course = as_course(course)
    nbgrader(course.root, "export", f"--to={to}")
    return to
