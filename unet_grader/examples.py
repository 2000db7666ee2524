"""Example submissions, made from the release: solved, partly solved, or with one typical mistake.

The one catalogue of example submissions (the hostile ones live with the tests,
``tests/hostile_cases.py``). The demo autogrades these examples and the tests grade every
mistake through the real nbgrader course, so each entry of :data:`MISTAKES` is a promise: this
error loses points in this exercise, and the feedback says so in words containing ``keyword``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

from unet_grader.assignment import EXERCISES
from unet_grader.coursedir import as_course
from unet_grader.plugins.stubs import BEGIN_STUB, END_STUB


@dataclass(frozen=True)
class Mistake:
    """A plausible student error, as a text edit of one exercise's solution."""

    exercise: str  # the grade_id of the solution cell it edits
    description: str
    edits: tuple[tuple[str, str], ...]  # (old, new) replacements; each old text must occur
    keyword: str  # a word the feedback must contain to count as naming the mistake
    not_said: tuple[str, ...] = ()  # hints that would be wrong for this layer: the feedback must not give them


MISTAKES = {
    "hardcoded_filters": Mistake("conv_block", "n_filters hard-coded to 32",
                                 (("Conv2D(n_filters, 3", "Conv2D(32, 3"),), "filters"),
    "kernel_size_2": Mistake("conv_block", "kernel size 2 instead of 3",
                             (("Conv2D(n_filters, 3", "Conv2D(n_filters, 2"),), "kernel size"),
    "no_he_normal": Mistake("conv_block", "kernel_initializer left out",
                            ((', kernel_initializer="he_normal")', ")"),), "he_normal"),
    "dropout_always": Mistake("conv_block", "Dropout added even when dropout_prob is 0",
                              (("    if dropout_prob > 0:\n        conv = Dropout", "    conv = Dropout"),), "Dropout"),
    "pooling_ignores_flag": Mistake(
        "conv_block", "max pooling applied even when max_pooling is False",
        (("    if max_pooling:\n        next_layer = MaxPooling2D(pool_size=(2, 2))(conv)\n    else:\n        next_layer = conv",
          "    next_layer = MaxPooling2D(pool_size=(2, 2))(conv)"),), "max_pooling"),
    "pooled_skip": Mistake("conv_block", "the pooled tensor returned as the skip connection",
                           (("    skip_connection = conv", "    skip_connection = next_layer"),), "skip connection"),
    "concat_wrong_axis": Mistake("upsampling_block", "concatenation on axis 1 instead of the channel axis",
                                 (("axis=3", "axis=1"),), "axis=3"),
    "concat_order": Mistake("upsampling_block", "[contractive_input, up] instead of [up, contractive_input]",
                            (("[up, contractive_input]", "[contractive_input, up]"),), "concatenation order"),
    "transpose_kernel_2": Mistake("upsampling_block", "transposed convolution with a 2x2 kernel",
                                  (("Conv2DTranspose(n_filters, 3", "Conv2DTranspose(n_filters, 2"),), "kernel size"),
    "transpose_stride_1": Mistake("upsampling_block", "transposed convolution with stride 1",
                                  (("strides=(2, 2)", "strides=(1, 1)"),), "strides"),
    "upsampling_no_relu": Mistake("upsampling_block", "no activation on the convolutions after the merge",
                                  (('(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(merge)',
                                    '(n_filters, 3, padding="same", kernel_initializer="he_normal")(merge)'),), "relu"),
    "softmax_output": Mistake("unet_model", "softmax on the last layer instead of logits",
                              (('Conv2D(n_classes, 1, padding="same")', 'Conv2D(n_classes, 1, padding="same", activation="softmax")'),),
                              "logits"),
    "wrong_skip": Mistake("unet_model", "decoder block 7 fed block 3's pooled output instead of its skip connection",
                          (("upsampling_block(ublock6, cblock3[1]", "upsampling_block(ublock6, cblock3[0]"),), "skip connection"),
    "dropout_wrong_block": Mistake(
        "unet_model", "dropout on block 3 instead of block 4",
        (("conv_block(cblock2[0], n_filters * 4)", "conv_block(cblock2[0], n_filters * 4, dropout_prob=0.3)"),
         ("conv_block(cblock3[0], n_filters * 8, dropout_prob=0.3)", "conv_block(cblock3[0], n_filters * 8)")), "Dropout"),
    "decoder_filters": Mistake("unet_model", "first decoder block with n_filters * 16",
                               (("upsampling_block(cblock5[0], cblock4[1], n_filters * 8)",
                                 "upsampling_block(cblock5[0], cblock4[1], n_filters * 16)"),), "filters"),
    "skip_before_dropout": Mistake(
        "conv_block", "the skip connection taken before the Dropout",
        (("    skip_connection = conv\n", ""),
         ("    if dropout_prob > 0:\n        conv = Dropout", "    skip_connection = conv\n    if dropout_prob > 0:\n        conv = Dropout")),
        "after the Dropout"),
    # Mistakes where a hint chosen by field alone (not by the layer's role) would be wrong:
    "transpose_relu": Mistake("upsampling_block", "relu on the transposed convolution",
                              (('strides=(2, 2), padding="same")', 'strides=(2, 2), padding="same", activation="relu")'),),
                              "no activation", ("logits", "use activation='relu'")),
    "head_kernel_3": Mistake("unet_model", "a 3x3 kernel on the 1x1 output layer",
                             (('Conv2D(n_classes, 1, padding="same")', 'Conv2D(n_classes, 3, padding="same")'),),
                             "kernel_size=1", ("kernel_size=3",)),
    "head_he_normal": Mistake("unet_model", "he_normal initializer on the output layer",
                              (('Conv2D(n_classes, 1, padding="same")',
                                'Conv2D(n_classes, 1, padding="same", kernel_initializer="he_normal")'),),
                              "default initializer", ("use kernel_initializer='he_normal'",)),
    "head_n_filters": Mistake("unet_model", "n_filters instead of n_classes on the output layer",
                              (('Conv2D(n_classes, 1, padding="same")', 'Conv2D(n_filters, 1, padding="same")'),),
                              "n_classes", ("factor", "did you pass n_filters")),
    "transpose_hardcoded_filters": Mistake("upsampling_block", "transposed convolution with 32 filters whatever n_filters",
                                           (("Conv2DTranspose(n_filters, 3", "Conv2DTranspose(32, 3"),), "n_filters"),
    "conv_padding_valid": Mistake("conv_block", "padding left at 'valid' on the first convolution",
                                  (('activation="relu", padding="same", kernel_initializer="he_normal")(inputs)',
                                    'activation="relu", kernel_initializer="he_normal")(inputs)'),), "padding='same'"),
    "decoder_kernel_1": Mistake("upsampling_block", "the last convolution with a 1x1 kernel",
                                (('    conv = Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(conv)',
                                  '    conv = Conv2D(n_filters, 1, activation="relu", padding="same", kernel_initializer="he_normal")(conv)'),),
                                "kernel_size=3", ("kernel_size=1", "the last layer")),
    "no_dropout_block4": Mistake("unet_model", "no dropout in the 4th encoder block",
                                 (("conv_block(cblock3[0], n_filters * 8, dropout_prob=0.3)", "conv_block(cblock3[0], n_filters * 8)"),),
                                 "dropout_prob=0.3"),
    "bottleneck_pools": Mistake("unet_model", "the 5th encoder block pools (max_pooling=False left out)",
                                ((", dropout_prob=0.3, max_pooling=False)", ", dropout_prob=0.3)"),), "max_pooling=False"),
    "final_conv_linear": Mistake("unet_model", "no activation on the extra 3x3 convolution",
                                 (('conv9 = Conv2D(n_filters, 3, activation="relu", padding="same"',
                                   'conv9 = Conv2D(n_filters, 3, padding="same"'),), "relu", ("logits",)),
    "no_extra_conv": Mistake(
        "unet_model", "the extra 3x3 convolution before the output left out",
        (('    conv9 = Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(ublock9)\n', ""),
         ("(conv9)", "(ublock9)")), "Conv2D"),
}


def solution_code(source: str) -> str:
    """The code a student who solved the cell would have: solution kept, markers and stubs removed."""
    lines, out, in_stub = source.split("\n"), [], False
    for line in lines:
        if BEGIN_STUB in line:
            in_stub = True
        elif END_STUB in line:
            in_stub = False
        elif not in_stub and "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line:
            out.append(line)
    return "\n".join(out)


def apply_mistake(code: str, mistake: Mistake) -> str:
    """Apply a mistake's edits; fail loudly if the solution no longer contains the text to edit."""
    for old, new in mistake.edits:
        if old not in code:
            raise ValueError(f"mistake {mistake.description!r}: text not found in the solution: {old!r}")
        code = code.replace(old, new)
    return code


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def make_submission(release_notebook: Path, source_notebook: Path, solved=tuple(EXERCISES), mistakes=()) -> nbformat.NotebookNode:
    """A release notebook with the ``solved`` exercises filled in from the source, plus ``mistakes``."""
    release = nbformat.read(str(release_notebook), as_version=4)
    source = nbformat.read(str(source_notebook), as_version=4)
    solutions = {_grade_id(cell): solution_code(cell.source) for cell in source.cells if _grade_id(cell) in EXERCISES}
    for name in mistakes:
        mistake = MISTAKES[name]
        solutions[mistake.exercise] = apply_mistake(solutions[mistake.exercise], mistake)
    for cell in release.cells:
        grade_id = _grade_id(cell)
        if grade_id in solved:
            cell.source = solutions[grade_id]
    return release


# Example submissions the demo autogrades: (student id, what they solved, their mistakes).
EXAMPLE_STUDENTS = (
    ("alice_correct", tuple(EXERCISES), ()),
    ("bob_partial", ("conv_block", "upsampling_block"), ()),
    ("carol_empty", (), ()),
    ("dave_kernel_size", tuple(EXERCISES), ("kernel_size_2",)),
    ("erin_concat_order", tuple(EXERCISES), ("concat_order",)),
    ("frank_softmax", tuple(EXERCISES), ("softmax_output",)),
)


def write_submission(notebook: nbformat.NotebookNode, course, student: str) -> Path:
    """Save a notebook where ``nbgrader autograde`` looks for it."""
    course = as_course(course)
    path = course.submitted_notebook(student)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


def write_examples(course) -> list[str]:
    """Write the example submissions into the course's submitted/ folder; return the student ids."""
    course = as_course(course)
    release, source = course.release_notebook(), course.source_notebook()
    for student, solved, mistakes in EXAMPLE_STUDENTS:
        write_submission(make_submission(release, source, solved, mistakes), course, student)
    return [student for student, _, _ in EXAMPLE_STUDENTS]
