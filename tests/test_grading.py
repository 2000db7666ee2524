"""The grading checks, in-process: every catalogued mistake is caught and named, once."""

from __future__ import annotations

import keras
import nbformat
import pytest

from conftest import RELEASE_NOTEBOOK, SOURCE_NOTEBOOK
from unet_course import checks
from unet_grader import reference, verifier
from unet_grader.assignment import EXERCISES
from unet_grader.examples import MISTAKES, apply_mistake, solution_code

IMPORTS = ("import tensorflow as tf\nfrom tensorflow.keras.layers import Conv2D, Conv2DTranspose, Dropout, Input, "
           "MaxPooling2D, concatenate\n")


def _cells(path, transform=lambda source: source) -> dict:
    notebook = nbformat.read(str(path), as_version=4)
    return {cell.metadata["nbgrader"]["grade_id"]: transform(cell.source)
            for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade_id") in EXERCISES}


def namespace_with(mistake=None, release=False) -> dict:
    cells = _cells(RELEASE_NOTEBOOK) if release else _cells(SOURCE_NOTEBOOK, solution_code)
    if mistake:
        cells[mistake.exercise] = apply_mistake(cells[mistake.exercise], mistake)
    namespace: dict = {}
    exec(IMPORTS, namespace)
    for source in cells.values():
        exec(source, namespace)
    return namespace


def all_problems(kind, function) -> list[str]:
    keras.backend.clear_session()
    problems = checks.check_public(kind, function, verbose=False)
    return problems + verifier.check_function(kind, function, hidden=True)


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_each_mistake_is_caught_and_named(name):
    mistake = MISTAKES[name]
    namespace = namespace_with(mistake)
    problems = all_problems(mistake.exercise, namespace[mistake.exercise])
    assert problems, f"{mistake.description} was not caught"
    assert any(mistake.keyword.lower() in p.lower() for p in problems), problems
    for wrong_hint in mistake.not_said:  # a hint meant for another layer's role
        assert not any(wrong_hint.lower() in p.lower() for p in problems), (wrong_hint, problems)


def test_the_catalogue_covers_every_role_of_a_layer():
    """Mistakes on every kind of layer the hints speak about, and enough of them to mean it."""
    assert len(MISTAKES) >= 24
    edited = " ".join(new for m in MISTAKES.values() for _, new in m.edits)
    for layer in ("Conv2DTranspose(", "contractive_input]", "Dropout", "MaxPooling2D", "Conv2D(n_classes", "conv9 = Conv2D("):
        assert layer in edited or any(layer in old for m in MISTAKES.values() for old, _ in m.edits), layer


@pytest.mark.parametrize("name", sorted(n for n, m in MISTAKES.items() if m.exercise != "unet_model"))
def test_block_mistakes_do_not_cost_unet_model_points(name):
    namespace = namespace_with(MISTAKES[name])
    keras.backend.clear_session()
    assert checks.check_public("unet_model", namespace["unet_model"], verbose=False) == []


def test_unfilled_stubs_give_one_friendly_message(capsys):
    namespace = namespace_with(release=True)
    for kind in EXERCISES:
        with pytest.raises(checks.GradingFailure) as failure:
            checks.assert_passes(kind, namespace[kind])
        message = str(failure.value)
        assert message.count("\n  - ") == 1, message  # one problem, not one per case
        assert "not finished yet" in message and "START CODE HERE" in message
        with pytest.raises(checks.GradingFailure):
            checks.assert_runs(kind, namespace[kind])


def test_stand_in_blocks_are_restored_after_the_check():
    namespace = namespace_with()
    original = namespace["conv_block"]
    checks.check_public("unet_model", namespace["unet_model"], verbose=False)
    assert namespace["conv_block"] is original


def test_objects_that_claim_equality_do_not_pass():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

        shape = (None, 96, 128, 32)

    def cheating_conv_block(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
        return AlwaysEqual(), AlwaysEqual()

    def cheating_unet_model(input_size=(96, 128, 3), n_filters=32, n_classes=23):
        return AlwaysEqual()

    assert checks.check_public("conv_block", cheating_conv_block, verbose=False)
    assert checks.check_public("unet_model", cheating_unet_model, verbose=False)


def test_every_mismatch_is_listed_with_a_hint():
    def wrong(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
        conv = keras.layers.Conv2D(16, 2, activation="tanh", padding="valid")(inputs)
        conv = keras.layers.Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(conv)
        return conv, conv

    problems = checks.check_public("conv_block", wrong, verbose=False)
    text = "\n".join(problems)
    for expected in ("16 filters", "did you pass n_filters", "kernel size", "padding='same'", "activation='relu'",
                     "he_normal", "missing layer: MaxPooling2D"):
        assert expected.lower() in text.lower() or expected in text, (expected, text)


def test_reference_matches_itself_numerically():
    keras.backend.clear_session()
    a, b = reference.unet_model((32, 48, 3), 4, 5), reference.unet_model((32, 48, 3), 4, 5)
    assert reference.outputs_match(a, b) is True


def test_public_and_verifier_give_the_same_message_for_the_same_case():
    """One comparison: a public case checked in the notebook (against the shipped specification)
    and by the grader's verifier (against the reference) gives the same problems."""
    namespace = namespace_with(MISTAKES["kernel_size_2"])
    in_notebook = checks.check_public("conv_block", namespace["conv_block"], verbose=False)
    by_grader = verifier.check_function("conv_block", namespace["conv_block"], hidden=False)
    assert in_notebook and in_notebook == by_grader


def test_shipped_specifications_match_the_reference():
    """unet_course/expected_layers.json is generated from the reference; CI fails when it drifts."""
    from unet_grader import specs

    assert specs.write(check=True), "unet_course/expected_layers.json is out of date: run `python -m unet_grader specs`"


def test_specifications_describe_layers_not_the_answer():
    """The shipped specification holds per-layer descriptions only: no graph, no code, no model config."""
    from unet_course.checks import EXPECTED_LAYERS

    text = EXPECTED_LAYERS.read_text()
    for answer_shape in ("inbound_nodes", "class_name", "def ", "concatenate(", "keras.layers"):
        assert answer_shape not in text, answer_shape


def test_a_failing_public_test_shows_its_problems_once_without_a_traceback():
    """In a real kernel (as in JupyterLab and nbgrader's Validate): the error output is the list of
    problems, not a traceback into the course's code; the cell still fails; nothing is listed twice."""
    from nbclient import NotebookClient

    code = (IMPORTS + "from unet_course import checks\n"
            + namespace_source(MISTAKES["kernel_size_2"]) + "\nchecks.assert_passes('conv_block', conv_block)\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(notebook, timeout=300, kernel_name="python3", allow_errors=True).execute()
    outputs = notebook.cells[0].outputs
    [error] = [o for o in outputs if o.output_type == "error"]
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    traceback = "\n".join(error.traceback)
    assert error.ename == "GradingFailure"
    assert "kernel size (2, 2)" in traceback and "File " not in traceback and "checks.py" not in traceback
    assert "\x1b[" not in traceback  # no raw colour codes
    assert "kernel size (2, 2)" not in printed  # the problems are listed once, in the failure


def namespace_source(mistake) -> str:
    cells = _cells(SOURCE_NOTEBOOK, solution_code)
    cells[mistake.exercise] = apply_mistake(cells[mistake.exercise], mistake)
    return "\n".join(cells.values())


@pytest.mark.parametrize("name", ["concat_order", "skip_before_dropout", "pooling_ignores_flag", "pooled_skip"])
def test_public_checks_name_what_the_hidden_tests_punish(name):
    """No walking into a hidden penalty: the concatenation order (same-weights probe on a tiny case),
    the tensor returned as the skip connection (the graph, not just the layer list) and
    max_pooling=False are all checked in the public test."""
    mistake = MISTAKES[name]
    problems = checks.check_public(mistake.exercise, namespace_with(mistake)[mistake.exercise], verbose=False)
    assert any(mistake.keyword.lower() in p.lower() for p in problems), problems
