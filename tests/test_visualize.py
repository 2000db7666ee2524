"""Palette, figures and the sample explorer (driven without a browser, as nbclient runs it)."""

from __future__ import annotations

from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest
import tensorflow as tf
from matplotlib.figure import Figure
from PIL import Image

from unet_course import data, visualize
from unet_course.datasets import CAMVID, CARLA
from unet_course.visualize import SampleExplorer, colorize, create_mask, display, explore, plot_history

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CAMVID_DIR = SHARED_DATA / "camvid"


def write_carla_pairs(root: Path, n: int = 4, size=(24, 32)) -> list[tuple[str, str]]:
    """Small CARLA-layout pairs whose content differs from file to file."""
    (root / "CameraRGB").mkdir(parents=True)
    (root / "CameraMask").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        ids = np.zeros(size, np.uint8)
        ids[: size[0] // 2] = 13  # sky
        ids[size[0] // 2 :] = 7  # road
        ids[:, i * 4 : i * 4 + 6] = 10 + i  # a per-file vertical band
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(root / "CameraRGB" / f"{i}.png")
        rgba = np.zeros(size + (4,), np.uint8)
        rgba[..., 0], rgba[..., 3] = ids, 255
        Image.fromarray(rgba).save(root / "CameraMask" / f"{i}.png")
    return data.list_pairs(root, CARLA)


def legend_labels(fig: Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_colorize_uses_the_dataset_palette():
    ids = np.array([[0, 7], [13, 7]], np.uint8)
    rgb = colorize(ids, CARLA)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 1]) == CARLA.colors[7] and tuple(rgb[1, 0]) == CARLA.colors[13]
    np.testing.assert_array_equal(colorize(tf.constant(ids[..., None]), CARLA), rgb)
    with pytest.raises(ValueError, match="ids \\[12\\]"):
        colorize(np.array([[12]]), CAMVID)


def test_create_mask_keeps_a_channel_axis():
    logits = np.zeros((2, 4, 5, 3), np.float32)
    logits[..., 2] = 1.0
    mask = create_mask(logits)
    assert mask.shape == (2, 4, 5, 1) and mask.dtype == tf.int32
    assert np.all(mask.numpy() == 2)


def test_display_returns_a_figure_with_a_legend_of_present_classes(tmp_path):
    image = tf.random.uniform((24, 32, 3))
    true_mask = np.full((24, 32, 1), 3, np.uint8)
    predicted = np.full((24, 32), 3)
    predicted[:5] = 0
    fig = display(image, true_mask, predicted, info=CAMVID)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert legend_labels(fig) == ["0 Sky", "3 Road"]
    assert [ax.get_title() for ax in fig.axes] == ["Input image", "True mask", "Predicted mask"]
    fig.savefig(tmp_path / "display.png")
    assert display(image, info=CAMVID, titles=["just the image"]).axes[0].get_title() == "just the image"
    with pytest.raises(ValueError, match="2 titles for 1 panels"):
        display(image, info=CAMVID, titles=["a", "b"])


def test_a_figure_shows_once_per_notebook_cell(monkeypatch):
    """Drawn in a loop it must appear; as the cell's value too it must not appear twice."""
    shown = []
    kernel = type("FakeKernelShell", (), {"kernel": object(), "execution_count": 7})()
    monkeypatch.setattr(visualize, "_kernel_shell", lambda: kernel)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    fig = display(np.zeros((4, 4, 3)), np.zeros((4, 4), np.uint8), info=CAMVID)
    fig._ipython_display_()  # IPython showing the cell's value
    assert len(shown) == 1 and shown[0].data.startswith(b"\xff\xd8")  # JPEG: small notebooks
    kernel.execution_count = 8  # a later cell that shows `fig` again
    fig._ipython_display_()
    assert len(shown) == 2
    display(np.zeros((4, 4, 3)), info=CAMVID, show=False)
    assert len(shown) == 2


def test_display_outside_a_notebook_shows_nothing(monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda obj: pytest.fail("displayed outside a kernel"))
    display(np.zeros((4, 4, 3)), info=CAMVID)


def test_plot_history_pairs_training_and_validation_curves():
    fig = plot_history({"loss": [2.0, 1.0, 0.5], "val_loss": [2.1, 1.5, 1.2], "accuracy": [0.2, 0.5, 0.7]})
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["training", "validation"]
    with pytest.raises(ValueError, match="no metrics"):
        plot_history({})


def test_explorer_reacts_to_its_controls(tmp_path):
    explorer = explore(write_carla_pairs(tmp_path), CARLA)
    first = explorer.last_png
    assert explorer.last_index == 0 and first.startswith(b"\x89PNG") and explorer.image.value == first

    explorer.slider.value = 3  # as a user dragging the slider
    assert explorer.last_index == 3 and explorer.last_png != first
    third = explorer.last_png
    explorer.overlay.value = False
    assert explorer.last_png != third
    explorer.highlight.value = 13
    assert legend_labels(explorer.figure(3)) == ["13 Sky"]
    assert explorer.show(1) == explorer.last_png and explorer.last_index == explorer.slider.value == 1
    assert "application/vnd.jupyter.widget-view+json" in explorer._repr_mimebundle_()


def test_explorer_shows_prediction_and_errors_from_a_batched_dataset(tmp_path):
    pairs = write_carla_pairs(tmp_path)
    ds = data.make_dataset(pairs, CARLA, image_size=(24, 32), batch_size=3)
    model = keras.Sequential([keras.Input((24, 32, 3)), keras.layers.Conv2D(CARLA.n_classes, 1)])
    explorer = SampleExplorer(ds, CARLA, model=model)
    assert len(explorer.samples) == 4
    fig = explorer.figure(2)
    assert [ax.get_title() for ax in fig.axes] == ["image + true mask", "true mask", "prediction", "errors"]
    assert "wrong" in legend_labels(fig) and "pixel accuracy" in fig.get_suptitle()
    assert explorer.prediction(2).shape == (24, 32)


def test_explorer_accepts_arrays(tmp_path):
    images, masks = data.load_numpy(write_carla_pairs(tmp_path), CARLA, image_size=(24, 32))
    explorer = SampleExplorer((images, masks), CARLA)
    before = explorer.last_png
    explorer.show(2)
    assert explorer.last_index == 2 and explorer.last_png != before


@pytest.mark.shared_data
@pytest.mark.skipif(not CAMVID_DIR.is_dir(), reason=f"real CamVid data not found at {CAMVID_DIR}")
def test_display_of_a_real_camvid_frame(tmp_path):
    image, mask = data.read_pair(*data.list_pairs(CAMVID_DIR, CAMVID, "val")[0], CAMVID, image_size=None)
    fig = display(image, mask, info=CAMVID)
    expected = [f"{i} {CAMVID.class_names[i]}" for i in np.unique(mask)]
    assert legend_labels(fig) == expected
    fig.savefig(tmp_path / "camvid.png")


def test_skip_connections_are_found_in_either_concatenation_order_and_drawn():
    import keras

    from unet_course.visualize import show_skip_connections, skip_connection_taps

    def tiny(swapped: bool):
        inputs = keras.Input((16, 16, 3))
        skip = keras.layers.Conv2D(4, 3, padding="same", name="enc")(inputs)
        pooled = keras.layers.MaxPooling2D()(skip)
        up = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(pooled)
        merged = keras.layers.Concatenate()([skip, up] if swapped else [up, skip])
        return keras.Model(inputs, keras.layers.Conv2D(2, 1)(merged))

    for swapped in (False, True):
        (skip, up), = skip_connection_taps(tiny(swapped))
        assert skip._keras_history.operation.name == "enc" and up._keras_history.operation.name == "up"
    fig = show_skip_connections(tiny(False), np.random.default_rng(0).random((16, 16, 3)), show=False)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["input frame", "skip from the encoder 16x16x4", "decoder, upsampled 16x16x4"]


def test_prediction_strip_keeps_one_prediction_per_epoch_and_draws_evenly_spaced_ones():
    """The strip predicts the same frame before training and after each epoch (training changes it),
    and draws the first and last of them with evenly spaced ones between."""
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    model.compile(keras.optimizers.Adam(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.random((4, 16, 16, 3)).astype("float32")
    masks = (images[..., :1] * 3).astype("int32").clip(0, 2)  # learnable from the pixels themselves
    strip = visualize.PredictionStrip(images[0], masks[0], CARLA, max_panels=4)
    model.fit(images, masks, epochs=7, verbose=0, callbacks=[strip])
    titles = [title for title, _ in strip.predictions]
    assert titles == ["before training"] + [f"after epoch {i}" for i in range(1, 8)]
    assert not np.array_equal(strip.predictions[0][1], strip.predictions[-1][1])  # it learned something
    fig = strip.show(show=False)
    shown = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert shown == ["Input image", "True mask", "before training", "after epoch 2", "after epoch 5", "after epoch 7"]
    with pytest.raises(ValueError, match="model.fit"):
        visualize.PredictionStrip(images[0]).show(show=False)


def test_the_unet_diagram_is_labelled_with_the_exercise_shapes_and_skipped_while_grading(monkeypatch):
    from unet_course.diagram import draw_unet

    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    figure = draw_unet(input_size=(96, 128, 3), n_filters=32, n_classes=23)
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert "conv_block 1\n96\u00d7128\u00d732" in labels
    assert "bottleneck\n6\u00d78\u00d7512" in labels
    assert "upsampling_block 4\n96\u00d7128\u00d732" in labels
    assert any("96\u00d7128\u00d723 logits" in label for label in labels)
    plt.close(figure)

    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    figures_before = plt.get_fignums()
    assert draw_unet() is None  # nothing drawn for a picture nobody sees while grading
    assert plt.get_fignums() == figures_before
