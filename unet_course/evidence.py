"""How a graded notebook hands its models to the grader, and the configurations it builds.

While nbgrader autogrades, the kernel runs the student's code, so nothing in it can be trusted
to decide a grade. The test cells only *record* what the student's functions build (each
model's Keras JSON config, in a display output of type :data:`EVIDENCE_MIME`); the grader
checks the records in another process. These names are the whole protocol.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

RECORD_ENV = "UNET_COURSE_RECORD_EVIDENCE"  # "1" in the grading kernel: record, do not judge
CASES_ENV = "UNET_COURSE_GRADING_CASES"  # the configurations to record (JSON), set by the grader
EVIDENCE_MIME = "application/vnd.unet-course.evidence+json"


def recording() -> bool:
    """True inside nbgrader's autograding kernel (the grader's sandbox sets it)."""
    return os.environ.get(RECORD_ENV) == "1"


def grading_cases(exercise: str, hidden: bool) -> list[dict]:
    """The configurations the grader asked for (empty when it named none)."""
    try:
        table = json.loads(os.environ.get(CASES_ENV) or "{}")
        return list(table[exercise]["hidden" if hidden else "public"])
    except (ValueError, KeyError, TypeError):
        return []


def failure_message(exercise: str, problems: list[str]) -> str:
    """The one message a failing test cell shows: every problem, one per line."""
    from unet_course.i18n import ngettext

    count = len(problems)
    head = ngettext("{exercise}: {count} problem:", "{exercise}: {count} problems:", count).format(
        exercise=exercise, count=count)
    return head + "\n" + "\n".join(f"  - {p}" for p in problems)


@dataclass
class Case:
    """One configuration to test, and how to describe it to the student."""

    title: str
    kwargs: dict
    input_shapes: tuple
    numeric: bool = True  # compare outputs (hidden tests); off where it would cost seconds of compute
    probe: bool = False  # public: ship outputs with deterministic weights, for a same-weights check in the notebook

    def to_json(self) -> dict:
        return {"title": self.title, "kwargs": _lists(self.kwargs), "input_shapes": _lists(self.input_shapes),
                "numeric": self.numeric, "probe": self.probe}

    @classmethod
    def from_json(cls, data: dict) -> "Case":
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(data["kwargs"]).items()}
        return cls(str(data["title"]), kwargs, _tuples(data["input_shapes"]), bool(data.get("numeric", True)),
                   bool(data.get("probe", False)))


def _tuples(value):
    """JSON lists back to the tuples Keras and the messages use."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _lists(value):
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value
