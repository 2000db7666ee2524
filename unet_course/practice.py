"""Checks of the notebook's ungraded exercises: they teach, they never fail a cell.

An ungraded exercise is optional, so its check prints what is right and what is not (with a
hint) and returns the list of problems instead of raising: a student who skips it can still run
the whole notebook. The expected answers come from the course's own metrics
(:mod:`unet_course.metrics`), which every score in the course is computed with.
"""

from __future__ import annotations

import numpy as np

from unet_course import metrics
from unet_course.checks import FAIL_MARK, PASS_MARK
from unet_course.i18n import N_, _

# Small confusion matrices, confusion[true, predicted], each chosen to catch one mistake.
IOU_CASES = [
    (N_("three classes, all present"), np.array([[50, 2, 3], [4, 30, 6], [1, 5, 20]])),
    (N_("class 2 neither true nor predicted anywhere"), np.array([[40, 10, 0], [5, 45, 0], [0, 0, 0]])),
    (N_("class 2 predicted but never true"), np.array([[40, 5, 5], [0, 50, 0], [0, 0, 0]])),
    (N_("23 classes, random counts"), np.random.default_rng(0).integers(0, 500, (23, 23))),
]


def _wrong_formula_hint(got: np.ndarray, confusion: np.ndarray) -> str | None:
    """Name the usual wrong formula when ``got`` matches it."""
    cm = confusion.astype(np.float64)
    tp, truth, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        known = [
            (tp / truth, _("you computed each class's recall (true positives / pixels labelled as the class):"
                           " the union also counts the pixels wrongly predicted as it (its column)")),
            (tp / predicted, _("you computed each class's precision (true positives / pixels predicted as the"
                               " class): the union also counts the class's pixels predicted as something else"
                               " (its row)")),
            (tp / (truth + predicted), _("the diagonal is counted twice in the union: row sum + column sum"
                                         " - diagonal")),
            (tp / cm.sum(), _("divide by the union of the class's pixels, not by every pixel")),
        ]
    for wrong, hint in known:
        if np.allclose(np.nan_to_num(got, nan=-1.0), np.nan_to_num(wrong, nan=-1.0), atol=1e-6):
            return hint
    return None


def iou_problems(iou_from_confusion) -> list[str]:
    """The first problem of a student's ``iou_from_confusion(confusion) -> per-class IoU array``
    (an empty list when it is right on every test matrix): one case is enough to fix, and the next
    run checks the others."""
    for what, confusion in IOU_CASES:
        case = _(what)
        want = metrics.per_class_iou(confusion)
        try:
            got = iou_from_confusion(confusion.copy())
        except Exception as error:  # noqa: BLE001 - a student's code may raise anything
            return [_("iou_from_confusion raised {error}").format(error=f"{type(error).__name__}: {error}")]
        if got is None:
            return [_("iou_from_confusion returned None: replace the None lines with your code")]
        try:
            got = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            return [_("iou_from_confusion should return an array of numbers, one per class")]
        if got.shape != want.shape:
            return [_("{case}: expected one IoU per class, shape {want}, got shape {got}").format(
                case=case, want=want.shape, got=got.shape)]
        absent = np.isnan(want)
        if absent.any() and not np.isnan(got[absent]).all():
            return [_("{case}: a class absent from both the truth and the prediction has IoU 0/0;"
                      " return NaN for it (np.nan), so the mean can leave it out").format(case=case)]
        if not np.allclose(got[~absent], want[~absent], atol=1e-6) or np.isnan(got[~absent]).any():
            hint = _wrong_formula_hint(got, confusion) or _(
                "IoU = true positives / (true positives + false positives + false negatives)")
            return [_("{case}: wrong IoU values \u2014 {hint}").format(case=case, hint=hint)]
    return []


def check_iou_from_confusion(iou_from_confusion, confusion=None, info=None) -> list[str]:
    """Print whether ``iou_from_confusion`` is right (never raises: the exercise is ungraded).

    Given a real ``confusion`` matrix and its dataset's ``info``, also print the student's mIoU of
    it (void left out) beside the course's own.
    """
    problems = iou_problems(iou_from_confusion)
    if problems:
        print(f"{FAIL_MARK} " + _("iou_from_confusion (ungraded): {count} problem(s)").format(count=len(problems)))
        for problem in problems:
            print("  - " + problem)
        return problems
    print(f"{PASS_MARK} " + _("iou_from_confusion (ungraded): right on every test matrix"))
    if confusion is not None:
        confusion = np.asarray(confusion)
        yours = np.asarray(iou_from_confusion(confusion.copy()), dtype=np.float64)
        void_id = info.void_id if info is not None else None
        real = [i for i in range(len(yours)) if i != void_id]
        print(_("on the trained model's validation frames: your mIoU {yours:.3f}, the course's metrics {course:.3f}"
                " (void not scored)").format(yours=float(np.nanmean(yours[real])),
                                             course=metrics.mean_iou(confusion, void_id)))
    return problems
