"""Segmentation scores: confusion matrix, per-class IoU, mean IoU and pixel accuracy, void ignored.

Conventions, the same everywhere in the course (training curves, evaluation, notebook):

* A pixel whose TRUE label is the void id is not scored at all: it does not count as a hit,
  a miss or a false positive for any class, whatever the model predicted there.
* A non-void pixel that the model labels void IS an error (a false negative of its true class).
* mIoU is the mean of IoU over the real classes (every id except void) that occur in the truth
  or in the prediction of the scored pixels. A class absent from both has IoU 0/0, undefined, and
  is left out of the mean (its per-class IoU is reported as ``None`` / NaN), as in the usual
  benchmark code. Over a whole test set every real class is normally present, so this only
  matters for tiny subsets.
* Pixel accuracy = correctly labelled scored pixels / scored pixels.

``confusion[t, p]`` counts scored pixels of true class ``t`` predicted as ``p``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf


def confusion_matrix(y_true, y_pred, n_classes: int, void_id: int | None = None) -> np.ndarray:
    """(n_classes, n_classes) int64 counts of ``[true, predicted]`` ids; true-void pixels dropped.

    ``y_true`` and ``y_pred`` are id arrays of the same number of elements (any shape; a trailing
    channel axis of one is fine). Logits are not accepted here: take the argmax first.
    """
    t = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(y_pred).astype(np.int64).ravel()
    if t.size != p.size:
        raise ValueError(f"y_true has {t.size} elements but y_pred has {p.size}")
    keep = np.ones(t.size, dtype=bool) if void_id is None else t != void_id
    t, p = t[keep], p[keep]
    if t.size and (t.min() < 0 or t.max() >= n_classes or p.min() < 0 or p.max() >= n_classes):
        raise ValueError(f"ids outside 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def confusion_matrix_tf(y_true, logits, n_classes: int, void_id: int | None = None) -> tf.Tensor:
    """Same as :func:`confusion_matrix` in TensorFlow, from logits ``(..., n_classes)``."""
    t = tf.reshape(tf.cast(y_true, tf.int64), [-1])
    p = tf.reshape(tf.argmax(logits, axis=-1), [-1])
    if void_id is not None:
        keep = tf.not_equal(t, void_id)
        t, p = tf.boolean_mask(t, keep), tf.boolean_mask(p, keep)
    flat = tf.math.bincount(t * n_classes + p, minlength=n_classes * n_classes,
                            maxlength=n_classes * n_classes, dtype=tf.int64)
    return tf.reshape(flat, [n_classes, n_classes])


class ConfusionAccumulator:
    """Running confusion matrix over batches (numpy), e.g. for a whole evaluation set."""

    def __init__(self, n_classes: int, void_id: int | None = None):
        self.n_classes, self.void_id = n_classes, void_id
        self.matrix = np.zeros((n_classes, n_classes), dtype=np.int64)

    def update(self, y_true, y_pred=None, *, logits=None) -> None:
        """Add one batch: give predicted ids ``y_pred`` or ``logits`` (argmax over the last axis)."""
        if logits is not None:
            y_pred = np.argmax(np.asarray(logits), axis=-1)
        self.matrix += confusion_matrix(y_true, y_pred, self.n_classes, self.void_id)

    def scores(self, class_names: Sequence[str] | None = None) -> dict:
        return scores_from_confusion(self.matrix, self.void_id, class_names)


def per_class_iou(confusion, void_id: int | None = None) -> np.ndarray:
    """IoU of each id (float64 array); NaN for void and for classes absent from truth and prediction."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    if void_id is not None:
        iou[void_id] = np.nan
    return iou


def mean_iou(confusion, void_id: int | None = None) -> float:
    """Mean IoU over real classes present in truth or prediction (NaN if none are)."""
    iou = per_class_iou(confusion, void_id)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(confusion) -> float:
    """Correct scored pixels / scored pixels (true-void pixels are already out of the matrix)."""
    cm = np.asarray(confusion, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else float("nan")


def scores_from_confusion(confusion, void_id: int | None = None,
                          class_names: Sequence[str] | None = None) -> dict:
    """JSON-ready scores: ``miou``, ``pixel_accuracy``, ``per_class_iou`` {name: iou or None}, counts."""
    cm = np.asarray(confusion)
    n = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    iou = per_class_iou(cm, void_id)
    scored = [i for i in range(n) if i != void_id]
    return {
        "miou": mean_iou(cm, void_id),
        "pixel_accuracy": pixel_accuracy(cm),
        "per_class_iou": {names[i]: (None if np.isnan(iou[i]) else float(iou[i])) for i in scored},
        "classes_in_mean": int(np.isfinite(iou).sum()),
        "scored_pixels": int(cm.sum()),
        "void_id": void_id,
        "note": ("pixels whose true label is void are not scored; classes absent from both truth "
                 "and prediction are left out of the mean (IoU None)"),
    }


# --- Keras metrics (for model.compile / fit) ---------------------------------------------------


def _no_weights(update):
    """Keras metric update that ignores ``sample_weight``.

    The training loss uses per-pixel weights (0 on void, class balancing elsewhere); a confusion
    matrix built with them would be in weighted pixels, which is not what IoU means. Void is
    handled by ``ignore_class`` instead.
    """

    def update_state(self, y_true, y_pred, sample_weight=None):
        return update(self, y_true, y_pred, None)

    return update_state


@keras.saving.register_keras_serializable(package="unet_course")
class VoidIgnoringMeanIoU(keras.metrics.IoU):
    """Mean IoU from logits over the real classes, true-void pixels ignored, sample weights ignored.

    A thin layer over :class:`keras.metrics.IoU` (``target_class_ids`` = every id but void,
    ``ignore_class`` = void, ``sparse_y_pred=False`` so logits go through argmax). Keras leaves
    classes with an empty union out of the mean, matching :func:`mean_iou`.
    """

    def __init__(self, num_classes: int, void_id: int | None = None, name: str = "miou", dtype=None, **kwargs):
        kwargs.pop("target_class_ids", None)
        kwargs.pop("ignore_class", None)
        kwargs.pop("sparse_y_pred", None)
        targets = [i for i in range(num_classes) if i != void_id]
        super().__init__(num_classes=num_classes, target_class_ids=targets, name=name, dtype=dtype,
                         ignore_class=void_id, sparse_y_true=True, sparse_y_pred=False, **kwargs)
        self.void_id = void_id

    update_state = _no_weights(keras.metrics.IoU.update_state)

    def get_config(self):
        return {"num_classes": self.num_classes, "void_id": self.void_id, "name": self.name}


@keras.saving.register_keras_serializable(package="unet_course")
class VoidIgnoringPixelAccuracy(VoidIgnoringMeanIoU):
    """Pixel accuracy over non-void pixels, from the same confusion matrix as the mIoU metric."""

    def __init__(self, num_classes: int, void_id: int | None = None, name: str = "pixel_accuracy", **kwargs):
        super().__init__(num_classes, void_id, name=name, **kwargs)

    def result(self):
        cm = tf.cast(self.total_cm, tf.float64)
        return tf.cast(tf.math.divide_no_nan(tf.linalg.trace(cm), tf.reduce_sum(cm)), tf.float32)
