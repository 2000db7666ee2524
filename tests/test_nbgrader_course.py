"""The assignment through the real nbgrader CLI and gradebook: release, validate, autograde."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from conftest import RELEASE_NOTEBOOK, ROOT, SOURCE_NOTEBOOK
from unet_grader.assignment import ASSIGNMENT, EXERCISES, NOTEBOOK
from unet_grader.coursedir import as_course, copy_course, nbgrader
from unet_grader.examples import MISTAKES, make_submission, write_submission
from unet_grader.release import release
from unet_grader.report import export, feedback, read_result

pytestmark = pytest.mark.slow
FULL = {"conv_block": 25.0, "upsampling_block": 25.0, "unet_model": 50.0}


def _comparable(path):
    notebook = json.loads(path.read_text())
    # language_info records the executing Python's patch version: not part of the assignment
    return ([(c["cell_type"], c["source"], c.get("metadata", {})) for c in notebook["cells"]],
            notebook["metadata"].get("kernelspec"))


def test_release_does_not_drift_from_the_source(make_course):
    course = make_course()
    (course / "assignments").rename(course / "committed")
    release(course)
    regenerated = course / "assignments" / ASSIGNMENT / NOTEBOOK
    assert _comparable(regenerated) == _comparable(RELEASE_NOTEBOOK), (
        "assignments/ differs from what solutions/ generates: run `make release` and commit the result")
    assert sorted(p.name for p in (course / "assignments" / ASSIGNMENT).iterdir()) == [NOTEBOOK]


def test_release_holds_no_solution_and_no_hidden_test():
    release_folder = ROOT / "assignments" / ASSIGNMENT
    assert sorted(p.name for p in release_folder.iterdir()) == [NOTEBOOK]
    notebook = nbformat.read(str(RELEASE_NOTEBOOK), as_version=4)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    for leak in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "BEGIN STUB", "hidden=True", "assert_passes_hidden",
                 'kernel_initializer="he_normal")(inputs)', "merge = concatenate([up, contractive_input]",
                 "n_filters * 16", "dropout_prob > 0:"):
        assert leak not in code, f"the release contains {leak!r}"
    stubs = [c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") in EXERCISES]
    assert len(stubs) == 3
    for source in stubs:
        assert "### START CODE HERE" in source and "### END CODE HERE" in source and "None" in source
        assert "NotImplementedError" not in source


def _validate(course, path, *extra):
    result = nbgrader(course, "validate", *extra, str(path), check=False)
    return result.stdout + result.stderr


def test_source_validates_and_release_fails_every_test(make_course):
    course = make_course()
    assert "Success! Your notebook passes all the tests." in _validate(
        course, course / "solutions" / ASSIGNMENT / NOTEBOOK)
    assert "Success! The notebook does not pass any tests." in _validate(
        course, course / "assignments" / ASSIGNMENT / NOTEBOOK, "--invert")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One course, every kind of submission, one real `nbgrader autograde` batch."""
    course = copy_course(tmp_path_factory.mktemp("graded") / "course", ROOT)
    release(course)
    release_nb = course / "assignments" / ASSIGNMENT / NOTEBOOK
    source = course / "solutions" / ASSIGNMENT / NOTEBOOK
    write_submission(make_submission(release_nb, source), course, "solution")
    write_submission(make_submission(release_nb, source, solved=()), course, "untouched")
    for name in MISTAKES:
        write_submission(make_submission(release_nb, source, mistakes=(name,)), course, f"mistake_{name}")
    write_submission(_tag_test_cells(make_submission(release_nb, source, solved=())), course, "skip_tags")
    write_submission(_noisy(make_submission(release_nb, source)), course, "stderr_noise")
    write_submission(_with_last_cell(make_submission(release_nb, source), TRAILING_CODE), course, "trailing_cell")
    run = nbgrader(course, "autograde", ASSIGNMENT, "--force", check=False)
    results = {student: read_result(course, student) for student in as_course(course).submitted_students()}
    return course, run, results


def _tag_test_cells(notebook):
    """The known exploit: skip-execution on every test cell of an unanswered notebook."""
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata["tags"] = ["skip-execution", "raises-exception"]
    return notebook


def _noisy(notebook):
    """Correct code that writes to stderr (a warning, raw text) every time it runs, like TensorFlow does."""
    noise = ("    import sys, warnings\n    warnings.warn('harmless warning')\n"
             "    print('I0000 port.cc:153] oneDNN custom operations are on', file=sys.stderr)\n")
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in EXERCISES:
            head, sep, rest = cell.source.partition('    """\n')
            body_start = rest.index('    """\n') + len('    """\n')
            cell.source = head + sep + rest[:body_start] + noise + rest[body_start:]
    return notebook


# Run after every test, it could not change a grade; run at all, it would show.
TRAILING_CODE = "print('the cell after the last test ran')\nraise SystemExit('and failed')"


def _with_last_cell(notebook, code):
    notebook.cells.append(nbformat.v4.new_code_cell(code))
    return notebook


def _outputs_after_the_last_test(path) -> list[tuple[str, list, object]]:
    """(source, outputs, execution count) of each code cell after the last graded one."""
    cells = nbformat.read(str(path), as_version=4).cells
    last = max(i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade"))
    return [(c.source, c.outputs, c.execution_count) for c in cells[last + 1:] if c.cell_type == "code"]


def test_nothing_runs_after_the_last_graded_cell(graded):
    course, _, results = graded
    assert _scores(results["trailing_cell"]) == FULL and results["trailing_cell"].problems == []
    after = _outputs_after_the_last_test(course / "autograded" / "trailing_cell" / ASSIGNMENT / NOTEBOOK)
    assert after[-1][0] == TRAILING_CODE  # kept, for the feedback
    # The training section's cells (a U-Net summary) and the student's own last cell: none ran
    assert len(after) > 3 and all(outputs == [] and count is None for _, outputs, count in after)


def test_the_instructor_can_run_the_cells_after_the_last_graded_one(graded):
    course, _, _ = graded
    run = nbgrader(course, "autograde", ASSIGNMENT, "--student", "trailing_cell", "--force",
                   "--GuardedExecute.run_after_last_grade=True", check=False)
    assert _scores(read_result(course, "trailing_cell")) == FULL, run.stdout[-2000:] + run.stderr[-2000:]
    after = _outputs_after_the_last_test(course / "autograded" / "trailing_cell" / ASSIGNMENT / NOTEBOOK)
    assert "the cell after the last test ran" in str(after[-1][1])
    assert any("Total params" in str(outputs) for _, outputs, _ in after)  # the training section's summary


def test_skip_execution_tags_do_not_earn_points(graded):
    _, _, results = graded
    assert _scores(results["skip_tags"]) == {name: 0.0 for name in EXERCISES}


def test_stderr_noise_does_not_cost_a_correct_submission(graded):
    _, _, results = graded
    assert _scores(results["stderr_noise"]) == FULL


def _scores(result):
    return {exercise: score for exercise, (score, _) in result.scores.items()}


def test_solution_gets_full_marks(graded):
    _, run, results = graded
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert _scores(results["solution"]) == FULL
    assert results["solution"].problems == []


def test_untouched_release_gets_zero_without_crashing(graded):
    course, _, results = graded
    assert _scores(results["untouched"]) == {name: 0.0 for name in EXERCISES}
    assert (course / "autograded" / "untouched" / ASSIGNMENT / NOTEBOOK).is_file()
    assert any("not finished yet" in p for p in results["untouched"].problems)


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_each_mistake_loses_points_only_in_its_exercise_with_named_feedback(graded, name):
    course, _, results = graded
    mistake = MISTAKES[name]
    scores = _scores(results[f"mistake_{name}"])
    assert scores[mistake.exercise] < FULL[mistake.exercise], f"{mistake.description}: no points lost"
    for other in EXERCISES:
        if other != mistake.exercise:
            assert scores[other] == FULL[other], f"{mistake.description} also cost points in {other}"
    graded_notebook = (course / "autograded" / f"mistake_{name}" / ASSIGNMENT / NOTEBOOK).read_text()
    errors = " ".join(re.findall(r'"evalue": "(.*?)",\n', graded_notebook))
    assert mistake.keyword.lower() in errors.lower(), f"feedback does not name {mistake.description!r}: {errors[:500]}"
    for wrong_hint in mistake.not_said:
        assert wrong_hint.lower() not in errors.lower(), f"{mistake.description}: the feedback gives {wrong_hint!r}"


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_the_notebook_and_the_feedback_say_the_same_thing(graded, name):
    """The public test's message in the student's notebook (shipped specifications, in the kernel)
    is, word for word and layer number for layer number, the grader's verdict in the feedback."""
    from unet_course.checks import check_public, failure_message
    from unet_grader.examples import apply_mistake, solution_code

    course, _, _ = graded
    mistake = MISTAKES[name]
    source = nbformat.read(str(SOURCE_NOTEBOOK), as_version=4)
    cells = {c.metadata["nbgrader"]["grade_id"]: solution_code(c.source) for c in source.cells
             if c.metadata.get("nbgrader", {}).get("grade_id") in EXERCISES}
    cells[mistake.exercise] = apply_mistake(cells[mistake.exercise], mistake)
    namespace: dict = {}
    exec("import tensorflow as tf\nfrom tensorflow.keras.layers import Conv2D, Conv2DTranspose, Dropout, Input,"
         " MaxPooling2D, concatenate\n" + "\n".join(cells.values()), namespace)
    in_notebook = check_public(mistake.exercise, namespace[mistake.exercise], verbose=False)
    graded_notebook = nbformat.read(str(course / "autograded" / f"mistake_{name}" / ASSIGNMENT / NOTEBOOK), as_version=4)
    [cell] = [c for c in graded_notebook.cells
              if c.metadata.get("nbgrader", {}).get("grade_id") == f"test_{mistake.exercise}_public"]
    in_feedback = [o.evalue for o in cell.outputs if o.output_type == "error"]
    assert in_feedback == ([failure_message(mistake.exercise, in_notebook)] if in_notebook else [])


def test_feedback_says_what_failed_but_hides_hidden_tests(graded):
    course, _, _ = graded
    feedback(course)
    html = (course / "feedback" / "mistake_concat_order" / ASSIGNMENT / "unet_segmentation.html").read_text()
    assert "concatenation order is swapped" in html
    assert "assert_passes_hidden" not in html and "BEGIN HIDDEN TESTS" not in html
    solution_html = (course / "feedback" / "solution" / ASSIGNMENT / "unet_segmentation.html").read_text()
    assert "assert_passes_hidden" not in solution_html


def test_grades_export_to_csv(graded):
    import csv

    course, _, results = graded
    out = export(course, course / "grades.csv")
    rows = {row["student_id"]: row for row in csv.DictReader(out.open())}
    assert set(rows) == set(results)
    assert float(rows["solution"]["raw_score"]) == 100.0
    assert float(rows["untouched"]["raw_score"]) == 0.0
