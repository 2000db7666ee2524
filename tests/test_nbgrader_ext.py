"""The StubSolutions preprocessor: solution regions become the seed-style None stubs."""

import pytest

from unet_course.nbgrader_ext import replace_solutions_with_stubs

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
