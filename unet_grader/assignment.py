"""The assignment's identity, in one place: its name, notebook, exercises, graded test cells and
the configurations each test builds.

Everything else (the release, the verifier, the batch, the reports, the examples, the
expected-layer specifications shipped to students) reads these names from here.
"""

from __future__ import annotations

import re

from unet_course.evidence import Case

ASSIGNMENT = "unet_segmentation"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
EXERCISES = {"conv_block": "UNQ_C1", "upsampling_block": "UNQ_C2", "unet_model": "UNQ_C3"}
POINTS = {"conv_block": 25, "upsampling_block": 25, "unet_model": 50}  # public + hidden, as in the source notebook

TEST_CELL = re.compile(r"test_(" + "|".join(EXERCISES) + r")_(public|hidden)")


def test_grade_id(exercise: str, hidden: bool) -> str:
    """The grade id of an exercise's public or hidden test cell."""
    return f"test_{exercise}_{'hidden' if hidden else 'public'}"


def exercise_of(grade_id: str) -> str:
    """The exercise a grade id belongs to (the grade id itself if none)."""
    return next((name for name in EXERCISES if name in grade_id), grade_id)


PUBLIC_CASES = {
    "conv_block": [
        Case("inputs (96, 128, 3), n_filters=32", {"n_filters": 32}, ((96, 128, 3),)),
        Case("inputs (96, 128, 3), n_filters=32, dropout_prob=0.1", {"n_filters": 32, "dropout_prob": 0.1},
             ((96, 128, 3),)),
        Case("inputs (32, 32, 3), n_filters=8, max_pooling=False", {"n_filters": 8, "max_pooling": False},
             ((32, 32, 3),)),
    ],
    "upsampling_block": [
        Case("inputs (12, 16, 256) and (24, 32, 128), n_filters=32", {"n_filters": 32},
             ((12, 16, 256), (24, 32, 128))),
        Case("inputs (2, 2, 3) and (4, 4, 2), n_filters=2, same weights", {"n_filters": 2},
             ((2, 2, 3), (4, 4, 2)), probe=True),
    ],
    "unet_model": [
        Case("unet_model() with its defaults", {}, ()),
    ],
}

HIDDEN_CASES = {
    "conv_block": [
        Case("inputs (96, 128, 3), n_filters=1024, dropout_prob=0.1", {"n_filters": 1024, "dropout_prob": 0.1},
             ((96, 128, 3),), numeric=False),  # ~1 TFLOP to compare; the small cases check the wiring
        Case("inputs (24, 40, 5), n_filters=16, max_pooling=False", {"n_filters": 16, "max_pooling": False},
             ((24, 40, 5),)),
        Case("inputs (32, 48, 8), n_filters=8, dropout_prob=0.25, max_pooling=False",
             {"n_filters": 8, "dropout_prob": 0.25, "max_pooling": False}, ((32, 48, 8),)),
    ],
    "upsampling_block": [
        Case("inputs (6, 8, 512) and (12, 16, 64), n_filters=64", {"n_filters": 64},
             ((6, 8, 512), (12, 16, 64))),
        Case("inputs (10, 4, 7) and (20, 8, 3), n_filters=5", {"n_filters": 5}, ((10, 4, 7), (20, 8, 3))),
    ],
    "unet_model": [
        Case("unet_model((192, 64, 4), n_filters=64, n_classes=16)",
             {"input_size": (192, 64, 4), "n_filters": 64, "n_classes": 16}, ()),
        Case("unet_model((32, 48, 3), n_filters=4, n_classes=5)",
             {"input_size": (32, 48, 3), "n_filters": 4, "n_classes": 5}, ()),
    ],
}


def cases(exercise: str, hidden: bool) -> list[Case]:
    return (HIDDEN_CASES if hidden else PUBLIC_CASES)[exercise]


def grading_cases_json() -> str:
    """Every configuration, for the kernel that records models while grading (see unet_course.evidence)."""
    import json

    return json.dumps({exercise: {"public": [c.to_json() for c in PUBLIC_CASES[exercise]],
                                  "hidden": [c.to_json() for c in HIDDEN_CASES[exercise]]}
                       for exercise in EXERCISES})
