"""Score trained weights on a split, export compact float16 weights, load them back.

    python -m unet_course.evaluate --weights models/camvid_unet/weights.weights.h5 \\
        --data /path/to/camvid --split test

The weights file needs its ``model.json`` beside it (written by :func:`export_weights` and by the
training run): input size, normalisation, class names in id order, void id, dataset, n_filters.
Scores are computed at the model's input size and, for CamVid-layout data (or with
``--native``), at the labels' own resolution: the logits are upsampled bilinearly to the label
size before the argmax, which is how published CamVid numbers (360x480) are measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from unet_course import data as data_lib  # noqa: E402
from unet_course.datasets import DatasetInfo, get_dataset_info  # noqa: E402
from unet_course.metrics import ConfusionAccumulator, scores_from_confusion  # noqa: E402
from unet_course.architecture import unet_builder  # noqa: E402

NORMALISATION = "RGB scaled to [0,1]"
META_NAME = "model.json"


def meta_path(weights_path) -> Path:
    """The JSON that describes a weights file: ``model.json`` in the same folder."""
    return Path(weights_path).parent / META_NAME


def model_meta(info: DatasetInfo, image_size, n_filters: int, **extra) -> dict:
    meta = {
        "format": "unet_course weights v1",
        "architecture": "the course's unet_model (unet_grader.reference, or the student's own)",
        "input_size": [int(image_size[0]), int(image_size[1]), 3],
        "normalisation": NORMALISATION,
        "dataset": info.name,
        "layout": info.layout,
        "class_names": list(info.class_names),
        "n_classes": info.n_classes,
        "void_id": info.void_id,
        "n_filters": int(n_filters),
        "output": "logits (no softmax); predicted id = argmax over the last axis",
    }
    meta.update(extra)
    return meta


def _float32_unet(meta: dict, unet_model=None) -> keras.Model:
    """The U-Net described by ``meta``, built in float32 whatever the global policy, by
    ``unet_model`` (default: the course's reference, see :mod:`unet_course.architecture`)."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        unet_model = unet_model or unet_builder(meta.get("notebook"))
        return unet_model(input_size=tuple(meta["input_size"]), n_filters=meta["n_filters"],
                          n_classes=meta["n_classes"])
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _plain_copy(model: keras.Model, meta: dict) -> keras.Model:
    """A float32, uncompiled reference U-Net holding ``model``'s weights (drops wrappers/optimizer)."""
    plain = _float32_unet(meta)
    plain.set_weights([np.asarray(w, dtype=np.float32) for w in model.get_weights()])
    return plain


def _convert_h5(src: Path, dst: Path, dtype) -> None:
    """Copy a Keras weights file, casting every float dataset to ``dtype``."""
    import h5py

    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        for key, value in fin.attrs.items():
            fout.attrs[key] = value

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                group = fout.require_group(name)
                for key, value in obj.attrs.items():
                    group.attrs[key] = value
            else:
                array = obj[()]
                if np.issubdtype(np.asarray(array).dtype, np.floating):
                    array = np.asarray(array).astype(dtype)
                ds = fout.create_dataset(name, data=array)
                for key, value in obj.attrs.items():
                    ds.attrs[key] = value

        fin.visititems(copy)


def export_weights(model: keras.Model, path, meta: dict) -> Path:
    """Save ``model``'s weights as float16 (about 17 MB for the default U-Net) and ``model.json``.

    ``path`` should end in ``.weights.h5``. Only the U-Net's own weights are kept (no optimizer
    state, no mixed-precision wrapper), so any float32 course U-Net (``unet_model``) of the
    same size can take them back with :func:`load_trained_model`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = _plain_copy(model, meta)
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full.weights.h5"
        plain.save_weights(full)
        _convert_h5(full, path, np.float16)
    meta = dict(meta, weights_file=path.name, weights_dtype="float16",
                n_params=int(plain.count_params()))
    meta_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def check_input_size(input_size) -> tuple[int, int]:
    """``(H, W)`` of ``input_size`` if the U-Net can take it: both sides must divide by 16."""
    height, width = (int(side) for side in input_size[:2])
    if height % 16 or width % 16 or height <= 0 or width <= 0:
        raise ValueError(f"input size {height}x{width}: both sides must divide by 16 (four 2x2 poolings and four"
                         " 2x upsamplings must meet the skip connections again)")
    return height, width


def load_trained_model(path, unet_model=None, input_size=None) -> tuple[keras.Model, dict]:
    """``(model, meta)`` from a weights file (float16 export or float32) and its ``model.json``.

    The model is a float32 U-Net built by ``unet_model`` (a student's own function, or by default
    the course's reference); it outputs logits for images scaled to [0, 1]. The weights load only
    into the assignment's architecture. The U-Net is fully convolutional, so ``input_size``
    ``(H, W)`` may differ from the training size as long as both sides divide by 16.
    """
    path = Path(path)
    if path.is_dir():
        meta = json.loads((path / META_NAME).read_text())
        path = path / meta.get("weights_file", "weights.weights.h5")
    else:
        meta = json.loads(meta_path(path).read_text())
    if input_size is not None:
        meta = {**meta, "input_size": [*check_input_size(input_size), meta["input_size"][2]]}
    model = _float32_unet(meta, unet_model)
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full.weights.h5"
        _convert_h5(path, full, np.float32)
        model.load_weights(full, skip_mismatch=False)
    return model, meta


# --- scoring -------------------------------------------------------------------------------------


def _native_dataset(pairs, info: DatasetInfo, image_size, batch_size: int) -> tf.data.Dataset:
    """(model-size image, native-size mask) batches: images resized exactly as the pipeline does."""
    image_paths, mask_paths = ([str(p) for p in column] for column in zip(*pairs))

    def load(i, m):
        image, mask = data_lib.load_pair(i, m, info.layout, None)
        image = tf.clip_by_value(tf.image.resize(image, image_size, method="bilinear", antialias=True), 0.0, 1.0)
        return image, mask

    ds = tf.data.Dataset.from_tensor_slices((image_paths, mask_paths))
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)


def predict_logits(model, images) -> np.ndarray:
    return np.asarray(model(images, training=False), dtype=np.float32)


def score_pairs(model, pairs, info: DatasetInfo, image_size, batch_size: int = 8,
                native: bool = True, collect: int = 0) -> dict:
    """Confusion-based scores of ``model`` on ``pairs`` at model size and (``native``) label size.

    Returns ``{"model_size": scores, "native": scores or None, "confusion_model_size": cm,
    "confusion_native": cm, "samples": [(image, truth, prediction), ...]}`` (``collect`` samples
    at model size, for plots).
    """
    image_size = tuple(image_size)
    small = ConfusionAccumulator(info.n_classes, info.void_id)
    big = ConfusionAccumulator(info.n_classes, info.void_id)
    samples = []
    label_sizes = set()
    n_batches = math.ceil(len(pairs) / batch_size)
    batch_index, stride = 0, max(1, n_batches // max(collect, 1))
    per_batch = max(1, math.ceil(collect / n_batches)) if collect else 0
    ds = _native_dataset(pairs, info, image_size, batch_size)
    for images, masks in ds:
        logits = model(images, training=False)
        logits = tf.cast(logits, tf.float32)
        masks_np = masks.numpy()
        label_sizes.add(tuple(int(v) for v in masks_np.shape[1:3]))
        small_masks = tf.image.resize(masks, image_size, method="nearest").numpy()
        pred_small = tf.argmax(logits, axis=-1).numpy()
        small.update(small_masks[..., 0], pred_small)
        if native:
            up = tf.image.resize(logits, masks_np.shape[1:3], method="bilinear")
            big.update(masks_np[..., 0], tf.argmax(up, axis=-1).numpy())
        if collect and len(samples) < collect and batch_index % stride == 0:  # spread over the split
            for k in range(min(per_batch, len(pred_small), collect - len(samples))):
                samples.append((images[k].numpy(), small_masks[k, ..., 0], pred_small[k]))
        batch_index += 1
    names = info.class_names
    return {
        "model_size": scores_from_confusion(small.matrix, info.void_id, names),
        "native": scores_from_confusion(big.matrix, info.void_id, names) if native else None,
        "confusion_model_size": small.matrix,
        "confusion_native": big.matrix if native else None,
        "samples": samples,
        "label_sizes": sorted(label_sizes),
    }


# --- plots ---------------------------------------------------------------------------------------


def _save(fig, path, dpi=80):
    fig.savefig(path, dpi=dpi, bbox_inches="tight")


def plot_history_csv(csv_path, out_png) -> None:
    """Loss / pixel accuracy / mIoU curves (train and val) from the run's CSV history.

    Drawn by :func:`unet_course.visualize.plot_history`, the same function the notebooks use.
    """
    import csv

    from unet_course.visualize import plot_history

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    keys = [k for k in ("loss", "pixel_accuracy", "miou") if k in rows[0]]
    curves = {prefix + k: [float(r[prefix + k]) for r in rows]
              for k in keys for prefix in ("", "val_") if prefix + k in rows[0]}
    _save(plot_history(curves, show=False), out_png)


def plot_per_class_iou(scores: dict, out_png, title="per-class IoU") -> None:
    from matplotlib.figure import Figure

    names = list(scores["per_class_iou"])
    values = [v if v is not None else 0.0 for v in scores["per_class_iou"].values()]
    fig = Figure(figsize=(max(6, 0.55 * len(names)), 3.8))
    ax = fig.add_subplot(1, 1, 1)
    bars = ax.bar(range(len(names)), values, color="tab:blue")
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", fontsize=7)
    ax.axhline(scores["miou"], color="tab:red", ls="--", label=f"mIoU {scores['miou']:.3f}")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend()
    _save(fig, out_png)


def plot_confusion(confusion, info: DatasetInfo, out_png) -> None:
    """Row-normalised confusion matrix of the real classes (void row dropped, void column kept)."""
    from matplotlib.figure import Figure

    cm = np.asarray(confusion, dtype=np.float64)
    rows = [i for i in range(info.n_classes) if i != info.void_id and cm[i].sum() > 0]
    cols = [i for i in range(info.n_classes) if cm[:, i].sum() > 0 or i in rows]
    sub = cm[np.ix_(rows, cols)]
    sub = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1)
    n = max(len(rows), len(cols))
    fig = Figure(figsize=(0.45 * n + 3, 0.45 * n + 2))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(sub, cmap="Blues", vmin=0, vmax=1)
    if n <= 14:
        for r in range(len(rows)):
            for c in range(len(cols)):
                ax.text(c, r, f"{sub[r, c]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if sub[r, c] > 0.5 else "black")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([info.class_names[i] for i in cols], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([info.class_names[i] for i in rows], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion (rows normalised)")
    fig.colorbar(im, ax=ax, fraction=0.04)
    _save(fig, out_png)


def _colour(ids, info: DatasetInfo) -> np.ndarray:
    palette = np.asarray(info.colors, dtype=np.uint8)
    return palette[np.clip(np.asarray(ids, dtype=np.int64), 0, len(palette) - 1)]


def plot_prediction_grid(samples, info: DatasetInfo, out_png, max_rows: int = 4) -> None:
    from matplotlib.figure import Figure

    samples = samples[:max_rows]
    if not samples:
        return
    fig = Figure(figsize=(9, 2.3 * len(samples)))
    for r, (image, truth, pred) in enumerate(samples):
        for c, (panel, title) in enumerate(((image, "input"), (_colour(truth, info), "truth"),
                                            (_colour(pred, info), "prediction"))):
            ax = fig.add_subplot(len(samples), 3, 3 * r + c + 1)
            ax.imshow(panel)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title)
    _save(fig, out_png)


# --- CLI -----------------------------------------------------------------------------------------


def evaluate(weights, data, split: str | None = "test", batch_size: int = 8, native: bool | None = None,
             val_fraction: float = 0.2, seed: int = 0, plots_dir=None, notebook=None) -> dict:
    """Score ``weights`` on one split of ``data`` (camvid: a split folder; carla: the val split by seed).
    ``notebook``: build the U-Net from that notebook's functions (default: the course's reference)."""
    t0 = time.time()
    model, meta = load_trained_model(weights, unet_builder(notebook) if notebook else None)
    info = get_dataset_info(meta["dataset"])
    if info.layout == "camvid":
        pairs = data_lib.list_pairs(data, info, split or "test")
    else:
        all_pairs = data_lib.list_pairs(data, info)
        train, val = data_lib.split_pairs(all_pairs, val_fraction, seed)
        pairs = {"train": train, "val": val, "all": all_pairs, "test": val}[split or "val"]
    if native is None:
        native = info.layout == "camvid"
    image_size = tuple(meta["input_size"][:2])
    res = score_pairs(model, pairs, info, image_size, batch_size, native=native, collect=4)
    out = {
        "weights": str(weights),
        "data": str(data),
        "split": split,
        "n_images": len(pairs),
        "dataset": info.name,
        "input_size": meta["input_size"],
        "model_size": res["model_size"],
        "native": res["native"],
        "native_size": [list(v) for v in res["label_sizes"]] if native else None,
        "seconds": round(time.time() - t0, 1),
    }
    if plots_dir is not None:
        plots_dir = Path(plots_dir)
        plots_dir.mkdir(parents=True, exist_ok=True)
        key = "native" if native else "model_size"
        plot_per_class_iou(res[key], plots_dir / f"per_class_iou_{split}.png", f"per-class IoU ({split}, {key})")
        plot_confusion(res["confusion_" + key], info, plots_dir / f"confusion_{split}.png")
        plot_prediction_grid(res["samples"], info, plots_dir / f"predictions_{split}.png")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="weights file (model.json beside it) or its folder")
    p.add_argument("--data", required=True, help="dataset folder (camvid or carla layout)")
    p.add_argument("--split", default="test", help="camvid: split folder name (test, val, train); "
                   "carla: val/train/all of the seeded split")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--native", dest="native", action="store_true", default=None,
                   help="also score at label resolution (default for camvid)")
    p.add_argument("--no-native", dest="native", action="store_false")
    p.add_argument("--plots", default=None, help="folder for per-class IoU / confusion / prediction plots")
    p.add_argument("--out", default=None, help="also write the metrics JSON here")
    p.add_argument("--notebook", default=None, help="build the U-Net from this notebook's functions"
                   " (default: the course's reference, in the repository)")
    args = p.parse_args(argv)
    result = evaluate(args.weights, args.data, args.split, args.batch_size, args.native, plots_dir=args.plots,
                      notebook=args.notebook)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
