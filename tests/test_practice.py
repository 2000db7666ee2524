"""The ungraded IoU-from-confusion exercise: each classic mistake is named, nothing ever raises."""

from __future__ import annotations

import numpy as np
import pytest

from unet_course import practice
from unet_course.datasets import SYNTHETIC


def right(confusion):
    cm = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, hits / union, np.nan)


def untouched(confusion):  # the release's stub: every line still None
    hits = None  # noqa: F841
    iou = None
    return iou


MISTAKES = {
    "recall": (lambda cm: np.diag(cm) / np.asarray(cm).sum(axis=1), "recall"),
    "precision": (lambda cm: np.diag(cm) / np.asarray(cm).sum(axis=0), "precision"),
    "diagonal twice": (lambda cm: np.diag(cm) / (np.asarray(cm).sum(axis=0) + np.asarray(cm).sum(axis=1)),
                       "counted twice"),
    "over all pixels": (lambda cm: np.diag(cm) / np.asarray(cm).sum(), "not by every pixel"),
    "0 for an absent class": (lambda cm: np.nan_to_num(right(cm)), "np.nan"),
    "one class short": (lambda cm: right(cm)[:-1], "one IoU per class"),
    "a list of strings": (lambda cm: ["a"] * len(cm), "array of numbers"),
    "raises": (lambda cm: 1 / 0, "ZeroDivisionError"),
    "untouched stub": (untouched, "replace the None lines"),
    "other formula": (lambda cm: np.diag(cm) / (np.asarray(cm).sum(axis=1) + 1.0), "true positives / (true positives"),
}


def test_the_right_answer_passes_and_compares_with_the_course_metrics(capsys):
    confusion = np.random.default_rng(1).integers(0, 100, (23, 23))
    assert practice.check_iou_from_confusion(right, confusion, SYNTHETIC) == []
    out = capsys.readouterr().out
    assert "right on every test matrix" in out
    from unet_course import metrics
    assert f"the course's metrics {metrics.mean_iou(confusion, SYNTHETIC.void_id):.3f}" in out


@pytest.mark.parametrize("name", MISTAKES)
def test_each_classic_mistake_is_named_without_raising(name, capsys):
    function, words = MISTAKES[name]
    with np.errstate(all="ignore"):
        problems = practice.check_iou_from_confusion(function, np.eye(3, dtype=int), SYNTHETIC)
    assert len(problems) == 1 and words in problems[0], problems
    out = capsys.readouterr().out
    assert "1 problem" in out and words in out
    assert "course's metrics" not in out  # the real-matrix comparison only follows a right answer
