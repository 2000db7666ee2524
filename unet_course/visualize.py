"""Pictures of images, masks, predictions and training curves, with one fixed palette per dataset.

A fixed palette (from :mod:`unet_course.datasets`) makes "road is purple" hold across every plot
of the course, and the legend names only the classes on screen. Figures are built without
pyplot, so nothing leaks between calls; in a notebook each one shows exactly once, whether it is
drawn inside a loop or is also the value of the cell.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from unet_course.data import DEFAULT_IMAGE_SIZE, read_pair
from unet_course.datasets import SYNTHETIC, DatasetInfo

WRONG_COLOR = (230, 25, 25)
VOID_COLOR = (70, 90, 170)


def _as_array(x) -> np.ndarray:
    """Tensor or array -> numpy, with a leading batch axis of one dropped."""
    array = np.asarray(x.numpy() if isinstance(x, tf.Tensor) else x)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    return array


def _ids(mask) -> np.ndarray:
    """Mask of shape (H, W) or (H, W, 1) -> (H, W) integer ids."""
    ids = _as_array(mask)
    if ids.ndim == 3 and ids.shape[-1] == 1:
        ids = ids[..., 0]
    if ids.ndim != 2:
        raise ValueError(f"a mask must have shape (H, W) or (H, W, 1), got {ids.shape}")
    return ids.astype(np.int64)


def _rgb(image) -> np.ndarray:
    """Image as float RGB in [0, 1], from float [0, 1] or uint8 input."""
    array = _as_array(image)
    if array.dtype == np.uint8:
        return array[..., :3] / 255.0
    return np.clip(array[..., :3].astype(np.float64), 0.0, 1.0)


def colorize(mask, info: DatasetInfo = SYNTHETIC) -> np.ndarray:
    """Class ids -> RGB uint8 image (H, W, 3) in the dataset's palette."""
    ids = _ids(mask)
    if ids.size and (ids.min() < 0 or ids.max() >= info.n_classes):
        bad = np.unique(ids[(ids < 0) | (ids >= info.n_classes)])
        raise ValueError(f"ids {bad.tolist()} are not classes of dataset {info.name!r} "
                         f"(0..{info.n_classes - 1})")
    return np.asarray(info.colors, dtype=np.uint8)[ids]


def create_mask(logits) -> tf.Tensor:
    """Per-pixel class id with the highest score, keeping a channel axis: (..., H, W, 1) int32."""
    return tf.argmax(logits, axis=-1, output_type=tf.int32)[..., tf.newaxis]


def _kernel_shell():
    """The running Jupyter kernel's shell, or None (scripts, tests, terminal IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if getattr(shell, "kernel", None) is not None else None


class PlotFigure(Figure):
    """A figure that shows itself in a notebook once per cell.

    Plotting functions call :meth:`show_in_notebook` so that figures drawn in a loop appear;
    IPython's display of the same figure as the cell's value is then skipped (later cells can
    still show it again).
    """

    _shown_in_cell: int | None = None

    def show_in_notebook(self) -> None:
        """Display as PNG in the running notebook; no-op outside a Jupyter kernel."""
        shell = _kernel_shell()
        if shell is not None:
            from IPython.display import Image, display as ipython_display

            # JPEG at screen resolution: photo-like panels stay small in saved notebooks.
            ipython_display(Image(figure_jpeg(self), format="jpeg"))
            self._shown_in_cell = shell.execution_count

    def _ipython_display_(self) -> None:
        shell = _kernel_shell()
        if shell is None or self._shown_in_cell != shell.execution_count:
            self.show_in_notebook()


def _legend(fig: Figure, info: DatasetInfo, ids: Sequence[int], extra: Sequence[Patch] = ()) -> None:
    handles = [Patch(facecolor=np.array(info.colors[i]) / 255, edgecolor="0.5", label=f"{i} {info.class_names[i]}")
               for i in sorted(ids)]
    handles += list(extra)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize="small",
                   frameon=False)


def _figure(n_panels: int, n_legend_entries: int) -> tuple[Figure, list]:
    """Figure with room under the panels for a legend of ``n_legend_entries``."""
    legend_rows = -(-n_legend_entries // 6)
    fig = PlotFigure(figsize=(3.6 * n_panels, 3.2 + 0.25 * legend_rows), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.07 * legend_rows, 1, 1 - 0.07 * legend_rows))
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    for ax in axes:
        ax.axis("off")
    return fig, list(axes)


def display(image, true_mask=None, predicted_mask=None, info: DatasetInfo = SYNTHETIC,
            titles: Sequence[str] | None = None, show: bool = True) -> PlotFigure:
    """Image, true mask and prediction side by side, with a legend of the classes shown.

    Accepts tensors or arrays; masks may be (H, W) or (H, W, 1). In a notebook the figure is
    shown (unless ``show=False``); it is also returned, e.g. for ``fig.savefig``.
    """
    panels = [("image", _rgb(image))]
    shown_ids: set[int] = set()
    for name, mask in (("true mask", true_mask), ("predicted mask", predicted_mask)):
        if mask is not None:
            ids = _ids(mask)
            panels.append((name, colorize(ids, info)))
            shown_ids.update(np.unique(ids).tolist())
    titles = list(titles) if titles is not None else ["Input image", "True mask", "Predicted mask"][:len(panels)]
    if len(titles) != len(panels):
        raise ValueError(f"{len(titles)} titles for {len(panels)} panels")
    fig, axes = _figure(len(panels), len(shown_ids))
    for ax, (_, picture), title in zip(axes, panels, titles):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title)
    _legend(fig, info, shown_ids)
    if show:
        fig.show_in_notebook()
    return fig


def plot_history(history, show: bool = True) -> PlotFigure:
    """Training curves from ``model.fit``: one panel per metric, training and validation together.

    ``history`` is the ``History`` that ``fit`` returns or its ``.history`` dict.
    """
    curves = getattr(history, "history", history)
    metrics = [name for name in curves if not name.startswith("val_")]
    if not metrics:
        raise ValueError("the history has no metrics to plot")
    fig = PlotFigure(figsize=(4.2 * len(metrics), 3.2), layout="constrained")
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics):
        for name, label in ((metric, "training"), (f"val_{metric}", "validation")):
            if name in curves:
                ax.plot(range(1, len(curves[name]) + 1), curves[name], marker=".", label=label)
        ax.set(title=metric, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if show:
        fig.show_in_notebook()
    return fig


class PredictionStrip(tf.keras.callbacks.Callback):
    """Watch one fixed frame learn: its prediction before training and after every epoch.

    Pass it to ``model.fit(..., callbacks=[strip])``, then ``strip.show()`` draws the frame, its
    true mask and one predicted mask per epoch (at most ``max_panels`` of them, evenly spaced).
    """

    def __init__(self, image, true_mask=None, info: DatasetInfo = SYNTHETIC, max_panels: int = 6):
        super().__init__()
        self.image = np.asarray(_as_array(image), dtype=np.float32)
        self.true_mask, self.info, self.max_panels = true_mask, info, max_panels
        self.predictions: list[tuple[str, np.ndarray]] = []

    def _predict(self, title: str) -> None:
        logits = self.model(self.image[np.newaxis], training=False)
        self.predictions.append((title, _ids(create_mask(logits))))

    def on_train_begin(self, logs=None):
        if not self.predictions:  # a second fit() on the same strip continues it
            self._predict("before training")

    def on_epoch_end(self, epoch, logs=None):
        self._predict(f"after epoch {len(self.predictions)}")

    def show(self, show: bool = True) -> PlotFigure:
        """The strip: image, true mask (if given), then the predictions, oldest first."""
        if not self.predictions:
            raise ValueError("no predictions yet: pass the strip to model.fit(callbacks=[...]) first")
        chosen = self.predictions
        if len(chosen) > self.max_panels:  # keep the first and the last, evenly spaced between
            picks = np.unique(np.linspace(0, len(chosen) - 1, self.max_panels).round().astype(int))
            chosen = [chosen[i] for i in picks]
        panels = [("Input image", _rgb(self.image))]
        shown_ids: set[int] = set()
        masks = ([("True mask", _ids(self.true_mask))] if self.true_mask is not None else []) + chosen
        for title, ids in masks:
            panels.append((title, colorize(ids, self.info)))
            shown_ids.update(np.unique(ids).tolist())
        fig, axes = _figure(len(panels), len(shown_ids))
        fig.set_size_inches(2.6 * len(panels), fig.get_size_inches()[1] * 0.8)
        for ax, (title, picture) in zip(axes, panels):
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(title, fontsize="medium")
        _legend(fig, self.info, shown_ids)
        if show:
            fig.show_in_notebook()
        return fig


def _producer(tensor):
    """The layer that made a symbolic tensor (None for a model input)."""
    history = getattr(tensor, "_keras_history", None)
    return getattr(history, "operation", None)


def skip_connection_taps(model) -> list[tuple[object, object]]:
    """``(skip, upsampled)`` symbolic tensors of each place a skip connection joins the decoder,
    deepest first: the two inputs of every ``Concatenate``, told apart by who made them (the
    decoder's comes from a ``Conv2DTranspose``), whatever order the concatenation used."""
    import keras

    taps = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Concatenate) and isinstance(layer.input, (list, tuple)) \
                and len(layer.input) == 2:
            first, second = layer.input
            if isinstance(_producer(first), keras.layers.Conv2DTranspose):
                first, second = second, first
            taps.append((first, second))
    return taps


def show_skip_connections(model, image, show: bool = True) -> PlotFigure:
    """One frame through ``model``: at each level where a skip connection joins the decoder, the
    encoder's features that the skip carries and the decoder's upsampled features beside them
    (each the mean absolute activation over channels: bright = strongly active).

    The encoder's maps stay sharp at every level; the decoder's, rebuilt from the pooled
    bottleneck, are blurry until the skip hands the sharp ones over.
    """
    import keras

    taps = skip_connection_taps(model)
    if not taps:
        raise ValueError("this model has no Concatenate layers joining a skip connection to the decoder")
    probe = keras.Model(model.input, [tensor for pair in taps for tensor in pair])
    maps = probe.predict(_as_array(image)[np.newaxis].astype("float32"), verbose=0)
    fig = PlotFigure(figsize=(9.6, 2.4 * len(taps)), layout="constrained")
    axes = fig.subplots(len(taps), 3, squeeze=False)
    for row, (skip_map, up_map) in enumerate(zip(maps[0::2], maps[1::2])):
        h, w, c_skip = skip_map.shape[1:]
        panels = [(_rgb(image), "input frame"),
                  (np.abs(skip_map[0]).mean(-1), f"skip from the encoder {h}x{w}x{c_skip}"),
                  (np.abs(up_map[0]).mean(-1), f"decoder, upsampled {h}x{w}x{up_map.shape[-1]}")]
        for ax, (picture, title) in zip(axes[row], panels):
            ax.imshow(picture, cmap=None if picture.ndim == 3 else "magma", interpolation="nearest")
            ax.set_title(title, fontsize="small")
            ax.axis("off")
    if show:
        fig.show_in_notebook()
    return fig


def figure_jpeg(fig: Figure, dpi: int = 72, quality: int = 85) -> bytes:
    """JPEG bytes of a figure, for showing in notebooks (a fraction of the PNG's size)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpg", dpi=dpi, pil_kwargs={"quality": quality})
    return buffer.getvalue()


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """PNG bytes of a figure (for ``widgets.Image``, which needs no live frontend)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class _Samples:
    """Uniform indexable access to pairs (read lazily), a tf.data dataset, or (images, masks) arrays."""

    def __init__(self, source, info: DatasetInfo, image_size, max_samples: int):
        self._pairs = None
        if isinstance(source, tf.data.Dataset):
            if len(source.element_spec[0].shape) == 4:
                source = source.unbatch()
            self._items = [(np.asarray(i), np.asarray(m)) for i, m in source.take(max_samples).as_numpy_iterator()]
        elif isinstance(source, tuple) and len(source) == 2 and np.ndim(source[0]) == 4:
            self._items = list(zip(_as_batch(source[0]), _as_batch(source[1])))[:max_samples]
        else:
            self._pairs = list(source)[:max_samples]
            self._items = [None] * len(self._pairs)
        if not self._items:
            raise ValueError("nothing to explore: the source has no samples")
        self._info, self._image_size = info, image_size

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int):
        if self._items[index] is None:
            self._items[index] = read_pair(*self._pairs[index], self._info, self._image_size)
        return self._items[index]


def _as_batch(x) -> np.ndarray:
    return np.asarray(x.numpy() if isinstance(x, tf.Tensor) else x)


class SampleExplorer:
    """Browse samples: a slider over samples, mask overlay and opacity, one-class highlight, and
    with a model its prediction and per-pixel errors.

    Each change re-renders a matplotlib figure into ``widgets.Image`` PNG bytes, so it needs no
    browser: tests (and headless notebook runs) drive it with ``show(i)`` or by setting
    ``slider.value``, and read ``last_index`` / ``last_png``.
    """

    def __init__(self, source, info: DatasetInfo = SYNTHETIC, model=None,
                 image_size=DEFAULT_IMAGE_SIZE, max_samples: int = 500):
        self.info, self.model = info, model
        self.samples = _Samples(source, info, image_size, max_samples)
        self._predictions: dict[int, np.ndarray] = {}
        self.slider = widgets.IntSlider(value=0, min=0, max=len(self.samples) - 1, description="sample",
                                        continuous_update=False)
        self.overlay = widgets.Checkbox(value=True, description="overlay mask")
        self.opacity = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity")
        self.highlight = widgets.Dropdown(
            # -1, not None: ipywidgets shows a None value as an empty box in the browser
            options=[("all classes", -1)] + [(f"{i} {n}", i) for i, n in enumerate(info.class_names)],
            value=-1, description="highlight")
        self.image = widgets.Image(format="png")
        self.widget = widgets.VBox([widgets.HBox([self.slider, self.overlay]),
                                    widgets.HBox([self.opacity, self.highlight]), self.image])
        self.last_index: int | None = None
        self.last_png: bytes = b""
        for control in (self.slider, self.overlay, self.opacity, self.highlight):
            control.observe(lambda _change: self.render(), names="value")
        self.render()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def show(self, index: int | None = None) -> bytes:
        """Render sample ``index`` (moving the slider) or the current one; returns the PNG bytes."""
        if index is not None and index != self.slider.value:
            self.slider.value = index  # the observer renders
        else:
            self.render()
        return self.last_png

    def prediction(self, index: int) -> np.ndarray:
        """Predicted ids (H, W) of sample ``index``, computed once per sample."""
        if index not in self._predictions:
            image, _ = self.samples[index]
            logits = self.model(image[np.newaxis], training=False)
            self._predictions[index] = _ids(create_mask(logits))
        return self._predictions[index]

    def figure(self, index: int) -> Figure:
        """The figure for one sample under the current control settings."""
        image, mask = self.samples[index]
        rgb, true_ids = _rgb(image), _ids(mask)
        focus = self.highlight.value if self.highlight.value >= 0 else None
        panels = [("image" + (" + true mask" if self.overlay.value else ""), self._overlaid(rgb, true_ids, focus)),
                  ("true mask", self._mask_picture(true_ids, focus))]
        shown_ids = set(np.unique(true_ids).tolist())
        extra = []
        title = f"sample {index}"
        if self.model is not None:
            predicted = self.prediction(index)
            shown_ids.update(np.unique(predicted).tolist())
            panels += [("prediction", self._mask_picture(predicted, focus)),
                       ("errors", self._error_map(rgb, true_ids, predicted, focus))]
            scored = true_ids != self.info.void_id
            accuracy = (predicted == true_ids)[scored].mean() if scored.any() else float("nan")
            title += f" — pixel accuracy {accuracy:.1%} (void not scored)"
            extra = [Patch(facecolor=np.array(WRONG_COLOR) / 255, label="wrong"),
                     Patch(facecolor=np.array(VOID_COLOR) / 255, label="void (not scored)")]
        if focus is not None:
            shown_ids = {focus}
        fig, axes = _figure(len(panels), len(shown_ids) + len(extra))
        for ax, (name, picture) in zip(axes, panels):
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(name)
        fig.suptitle(title)
        _legend(fig, self.info, shown_ids, extra)
        return fig

    def render(self) -> None:
        """Redraw the current slider position into ``self.image``."""
        index = self.slider.value
        self.last_png = figure_png(self.figure(index))
        self.image.value = self.last_png
        self.last_index = index

    def _mask_picture(self, ids: np.ndarray, focus: int | None) -> np.ndarray:
        picture = colorize(ids, self.info).astype(np.float64) / 255
        if focus is not None:
            picture[ids != focus] = 0.15 + 0.2 * picture[ids != focus]
        return picture

    def _overlaid(self, rgb: np.ndarray, ids: np.ndarray, focus: int | None) -> np.ndarray:
        if not self.overlay.value:
            return rgb
        alpha = self.opacity.value * (np.ones(ids.shape) if focus is None else (ids == focus))
        return (1 - alpha[..., None]) * rgb + alpha[..., None] * colorize(ids, self.info) / 255

    def _error_map(self, rgb: np.ndarray, true_ids: np.ndarray, predicted: np.ndarray, focus: int | None):
        """Grey image with wrong pixels in red and void pixels in blue."""
        picture = np.repeat(0.3 + 0.4 * rgb.mean(axis=-1, keepdims=True), 3, axis=-1)
        wrong = predicted != true_ids
        if focus is not None:
            wrong &= (true_ids == focus) | (predicted == focus)
        picture[wrong] = np.array(WRONG_COLOR) / 255
        picture[true_ids == self.info.void_id] = np.array(VOID_COLOR) / 255
        return picture


def explore(dataset_or_pairs, info: DatasetInfo = SYNTHETIC, model=None, **kwargs) -> SampleExplorer:
    """Build a :class:`SampleExplorer` (shown when it is the value of a notebook cell)."""
    return SampleExplorer(dataset_or_pairs, info, model, **kwargs)
