"""The StubSolutions preprocessor: solution regions become the seed-style None stubs."""

import pytest

from unet_grader.plugins.stubs import replace_solutions_with_stubs

SOURCE = """def f(x):
    ### START CODE HERE
    ### BEGIN SOLUTION
    y = x + 1
    ### END SOLUTION
    ### BEGIN STUB
    # y = None  # add one
    #
    # # a comment for students
    ### END STUB
    ### END CODE HERE
    return y"""


def test_solution_region_is_replaced_by_the_uncommented_stub():
    new, replaced = replace_solutions_with_stubs(SOURCE)
    assert replaced
    assert new == """def f(x):
    ### START CODE HERE
    y = None  # add one

    # a comment for students
    ### END CODE HERE
    return y"""


def test_regions_without_a_stub_are_left_for_nbgrader():
    source = "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"
    assert replace_solutions_with_stubs(source) == (source, False)


@pytest.mark.parametrize("broken", [
    "### BEGIN SOLUTION\nx = 1\n",
    "### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n### BEGIN STUB\n# x = None\n",
])
def test_unterminated_regions_fail_clearly(broken):
    with pytest.raises(RuntimeError, match="no ### END"):
        replace_solutions_with_stubs(broken)


def test_source_stub_is_only_comments_so_the_source_still_runs():
    namespace = {}
    exec(SOURCE, namespace)
    assert namespace["f"](1) == 2


# --------------------------------------------------------------------------------------------
# canonical_submission: the release's structure with the student's answers
# --------------------------------------------------------------------------------------------

import copy  # noqa: E402

import nbformat  # noqa: E402

from unet_grader.plugins.repair import canonical_submission  # noqa: E402
from unet_grader.examples import make_submission  # noqa: E402

from conftest import RELEASE_NOTEBOOK, SOURCE_NOTEBOOK  # noqa: E402


@pytest.fixture(scope="module")
def release_and_solution():
    release = nbformat.read(str(RELEASE_NOTEBOOK), as_version=4)
    return release, make_submission(RELEASE_NOTEBOOK, SOURCE_NOTEBOOK)


def _sources(notebook):
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in notebook.cells]


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def test_an_ordinary_submission_is_left_as_it_is(release_and_solution):
    release, solution = release_and_solution
    repaired, repairs = canonical_submission(solution, release)
    assert repairs == [] and _sources(repaired) == _sources(solution)


@pytest.mark.parametrize("damage", ["reverse", "delete_tests", "duplicate", "strip_metadata_and_ids", "shuffle_tests"])
def test_damaged_structure_is_restored_with_the_answers_kept(release_and_solution, damage):
    release, solution = release_and_solution
    damaged = copy.deepcopy(solution)
    if damage == "reverse":
        damaged.cells = damaged.cells[::-1]
    elif damage == "delete_tests":
        damaged.cells = [c for c in damaged.cells if not _grade_id(c).startswith("test_")]
    elif damage == "duplicate":
        damaged.cells = [copy.deepcopy(c) for c in damaged.cells for _ in (0, 1)]
    elif damage == "strip_metadata_and_ids":
        for cell in damaged.cells:
            cell.metadata.pop("nbgrader", None)
            cell.pop("id", None)
    elif damage == "shuffle_tests":
        tests = [c for c in damaged.cells if _grade_id(c).startswith("test_")]
        damaged.cells = tests + [c for c in damaged.cells if c not in tests]
    repaired, repairs = canonical_submission(damaged, release)
    assert repairs, "the repair must be reported"
    assert _sources(repaired) == _sources(solution)


def test_edited_metadata_and_extra_graded_cells_carry_no_points(release_and_solution):
    release, solution = release_and_solution
    damaged = copy.deepcopy(solution)
    for cell in damaged.cells:
        if _grade_id(cell).startswith("test_"):
            cell.metadata.nbgrader.update(points=1000, grade=False)
    damaged.cells.insert(3, nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade": True, "points": 50,
                                                                                       "grade_id": "bonus"}}))
    repaired, repairs = canonical_submission(damaged, release)
    points = sum(c.metadata.get("nbgrader", {}).get("points", 0) for c in repaired.cells)
    assert points == 100
    extra = next(c for c in repaired.cells if c.source == "x = 1")
    assert "nbgrader" not in extra.metadata
    assert any("bonus" in r for r in repairs) and any("metadata" in r for r in repairs)


def test_students_own_cells_stay_where_they_were(release_and_solution):
    release, solution = release_and_solution
    mine = copy.deepcopy(solution)
    position = next(i for i, c in enumerate(mine.cells) if _grade_id(c) == "conv_block") + 1
    mine.cells.insert(position, nbformat.v4.new_code_cell("print('my experiment')"))
    repaired, repairs = canonical_submission(mine, release)
    assert repairs == []
    assert _sources(repaired) == _sources(mine)
