"""Instructor commands: one command per step, nbgrader's own CLI underneath.

    python -m unet_course.instructor release      # solutions/ -> assignments/ (nbgrader generate_assignment)
    python -m unet_course.instructor examples     # write example submissions into submitted/
    python -m unet_course.instructor collect DIR  # DIR/<student>.ipynb -> submitted/<student>/...
    python -m unet_course.instructor autograde    # every submission, with a progress bar and a summary
    python -m unet_course.instructor feedback     # nbgrader generate_feedback
    python -m unet_course.instructor export       # grades.csv (nbgrader export)

Every command works on the course folder given by ``--course`` (default: the current folder),
which must hold ``nbgrader_config.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from unet_course.submissions import ASSIGNMENT, EXERCISES, NOTEBOOK, write_examples  # noqa: F401 (re-exported)

POINTS_ORDER = list(EXERCISES)


class InstructorError(RuntimeError):
    """A step failed in a way the instructor can fix; the message says how."""


def nbgrader(course: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real nbgrader CLI in the course folder."""
    # nbgrader runs `alembic` (gradebook migrations) from PATH: put this environment's scripts first.
    scripts = str(Path(sys.executable).parent)
    env = dict(os.environ, PYTHONWARNINGS="ignore", PATH=scripts + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise InstructorError(f"nbgrader {' '.join(args)} failed (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return result


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
    """Copy ``folder/<student>.ipynb`` files into nbgrader's submitted/ layout."""
    notebooks = sorted(Path(folder).glob("*.ipynb"))
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

    @property
    def total(self) -> tuple[float, float]:
        return (sum(s for s, _ in self.scores.values()), sum(m for _, m in self.scores.values()))


def submitted_students(course: Path) -> list[str]:
    return sorted(p.parent.name for p in (course / "submitted").glob(f"*/{ASSIGNMENT}"))


def autograde(course: Path, students: list[str] | None = None, progress: bool = True) -> list[StudentResult]:
    """Autograde each student in turn; one failure never stops the batch."""
    from tqdm.auto import tqdm

    students = students or submitted_students(course)
    if not students:
        raise InstructorError(f"no submissions in {course / 'submitted'} (run `collect` or `examples` first)")
    results = []
    for student in tqdm(students, desc="autograding", unit="submission", disable=not progress):
        run = nbgrader(course, "autograde", ASSIGNMENT, f"--student={student}", "--force", check=False)
        result = read_result(course, student)
        if run.returncode != 0:
            result.problems.insert(0, f"nbgrader exited {run.returncode}: {_last_error(run)}")
        results.append(result)
    return results


def _last_error(run: subprocess.CompletedProcess) -> str:
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "ERROR" in line or "Error" in line]
    return lines[-1][-200:] if lines else "see the nbgrader log"


def read_result(course: Path, student: str) -> StudentResult:
    """Scores from the gradebook and the failing tests' first message from the autograded notebook."""
    from nbgrader.api import Gradebook, MissingEntry

    result = StudentResult(student)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        try:
            notebook = gradebook.find_submission_notebook(Path(NOTEBOOK).stem, ASSIGNMENT, student)
        except MissingEntry:
            result.problems.append("no grades recorded")
            return result
        for grade in notebook.grades:
            exercise = _exercise_of(grade.name)
            score, maximum = result.scores.get(exercise, (0.0, 0.0))
            result.scores[exercise] = (score + float(grade.score or 0.0), maximum + float(grade.max_score))
    result.problems += _failing_tests(course / "autograded" / student / ASSIGNMENT / NOTEBOOK)
    return result


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


def feedback(course: Path) -> Path:
    nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    return course / "feedback"


def export(course: Path, to: Path) -> Path:
    nbgrader(course, "export", f"--to={to}")
    return to


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_course.instructor", description=__doc__.split("\n")[0])
    parser.add_argument("--course", type=Path, default=Path.cwd(), help="course folder (holds nbgrader_config.py)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("release", help="generate assignments/ from solutions/")
    commands.add_parser("examples", help="write example submissions into submitted/")
    collect_parser = commands.add_parser("collect", help="copy DIR/<student>.ipynb into submitted/")
    collect_parser.add_argument("folder", type=Path)
    grade_parser = commands.add_parser("autograde", help="autograde submissions and print a summary")
    grade_parser.add_argument("--student", action="append", help="only these students (repeatable)")
    commands.add_parser("feedback", help="generate feedback HTML for every graded submission")
    export_parser = commands.add_parser("export", help="export grades to CSV")
    export_parser.add_argument("--to", type=Path, default=Path("grades.csv"))
    args = parser.parse_args(argv)
    try:
        course = _check_course(args.course)
        if args.command == "release":
            print(f"release written to {release(course)}")
        elif args.command == "examples":
            print("example submissions:", ", ".join(write_examples(course)))
        elif args.command == "collect":
            print("collected:", ", ".join(collect(course, args.folder)))
        elif args.command == "autograde":
            print(summary_table(autograde(course, args.student)))
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
