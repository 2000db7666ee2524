"""The weights that ship with the student package load into the assignment's U-Net only, and work."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from unet_course import pretrained
from unet_course.datasets import SYNTHETIC
from unet_course.metrics import ConfusionAccumulator
from unet_course.synthetic import render_frame
from unet_grader.reference import unet_model


def test_shipped_weights_segment_synthetic_frames_in_the_students_architecture():
    """Loaded into a correct unet_model (here the reference), the weights segment frames the run never
    saw (a seed of their own) about as well as the run's metrics say."""
    model, meta = pretrained.load_into(unet_model)
    assert meta["n_params"] == model.count_params() == 8_640_471
    confusion = ConfusionAccumulator(SYNTHETIC.n_classes, SYNTHETIC.void_id)
    for index in range(8):
        image, mask = render_frame(seed=12345, index=index)  # 480x640, resized as the course's pipeline does
        image = tf.image.resize(image[None].astype("float32") / 255.0, (96, 128), antialias=True)
        mask = tf.image.resize(mask[None, ..., None], (96, 128), method="nearest")[..., 0]
        confusion.update(mask.numpy(), logits=model.predict(image, verbose=0))
    scores = confusion.scores()
    assert scores["pixel_accuracy"] > 0.8, scores["pixel_accuracy"]
    assert pretrained.metrics()["val_miou"] == pytest.approx(0.427, abs=0.01)


def test_a_wrong_architecture_gets_a_clear_message_not_a_traceback():
    def wider(input_size=(96, 128, 3), n_filters=32, n_classes=23):
        return unet_model(input_size, n_filters * 2, n_classes)

    def unfinished(input_size=(96, 128, 3), n_filters=32, n_classes=23):
        return None(input_size)

    for function in (wider, unfinished):
        with pytest.raises(pretrained.ArchitectureMismatch, match="do not fit your unet_model"):
            pretrained.load_into(function)
    assert np.isfinite(pretrained.weights_path().stat().st_size)


def test_weights_load_at_another_input_size_and_from_a_run_folder():
    """Fully convolutional: the same weights at 128x160 give logits of that size, loaded from a run
    folder given by its path (as the CamVid notebook does); a size that does not divide by 16 is refused
    before anything is built, with the reason."""
    from pathlib import Path

    folder = Path(pretrained.weights_path()).parent
    model, meta = pretrained.load_into(unet_model, folder, input_size=(128, 160))
    assert model.input_shape == (None, 128, 160, 3) and model.output_shape == (None, 128, 160, 23)
    small, _ = pretrained.load_into(unet_model)
    for big_weight, small_weight in zip(model.get_weights(), small.get_weights()):
        np.testing.assert_array_equal(big_weight, small_weight)
    with pytest.raises(ValueError, match="divide by 16"):
        pretrained.load_into(unet_model, folder, input_size=(360, 480))
    with pytest.raises(FileNotFoundError):
        pretrained.load_into(unet_model, folder / "missing.weights.h5")
