"""The one input pipeline: file pairing, decoding, resizing, splitting, augmentation, weights.

The notebook, the training run, the benchmarks and the tests all read data through this module,
so a fix here (say, to the classic assignment's double division by 255) reaches all of them.

Images come out as float32 RGB in [0, 1], shape (H, W, 3); masks as uint8 class ids, shape
(H, W, 1), ready for ``SparseCategoricalCrossentropy(from_logits=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from unet_course.datasets import DatasetInfo
from unet_course.i18n import N_, _

DEFAULT_IMAGE_SIZE = (96, 128)

# Shown when a data folder is missing, so the reader learns how to get data, not just that it
# is absent. Keep in step with unet_course.synthetic and data_fetch's command lines.
GET_DATA_HINT = N_(
    "generate the default data with `python -m unet_course.synthetic --out DIR`, or fetch a real "
    "dataset with `python -m data_fetch NAME --dest DIR` (`python -m data_fetch --list` names them)"
)

Pair = tuple[Path, Path]


class MissingDataError(FileNotFoundError):
    """A data folder the layout needs is not there."""


class UnpairedFilesError(ValueError):
    """Some images have no mask or some masks have no image (a silent shift would mislabel all)."""


def _folders(root: Path, info: DatasetInfo, split: str | None) -> tuple[Path, Path]:
    """Image and mask folders of one layout."""
    if info.layout == "carla":
        if split is not None:
            raise ValueError(f"the carla layout has no splits on disk (got split={split!r}); "
                             "use split_pairs() or make_datasets(val_fraction=...)")
        return root / "CameraRGB", root / "CameraMask"
    if info.layout == "camvid":
        if split is None:
            raise ValueError("the camvid layout needs a split, e.g. split='train' or split='val'")
        return root / split, root / f"{split}annot"
    raise ValueError(f"unknown layout {info.layout!r}; expected 'carla' or 'camvid'")


def _png_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")}


def _describe(names: Sequence[str], where: Path, what: str, shown: int = 5) -> str:
    listed = ", ".join(names[:shown])
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return f"{len(names)} {what} in {where}: {listed}{more}"


def list_pairs(root: str | os.PathLike, info: DatasetInfo, split: str | None = None) -> list[Pair]:
    """(image_path, mask_path) pairs matched by file name, sorted by name.

    Matching by name (rather than zipping two directory listings) means that one missing or
    extra file raises :class:`UnpairedFilesError` instead of shifting every later label by one.
    """
    root = Path(root)
    image_dir, mask_dir = _folders(root, info, split)
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise MissingDataError(_("no {folder} folder in {root}").format(folder=folder.name, root=root)
                                   + f" — {_(GET_DATA_HINT)}.")
    image_names, mask_names = _png_names(image_dir), _png_names(mask_dir)
    if not image_names:
        raise MissingDataError(_("no PNG images in {folder}").format(folder=image_dir) + f" — {_(GET_DATA_HINT)}.")
    problems = []
    if lonely_images := sorted(image_names - mask_names):
        problems.append(_describe(lonely_images, image_dir, "images without a mask"))
    if lonely_masks := sorted(mask_names - image_names):
        problems.append(_describe(lonely_masks, mask_dir, "masks without an image"))
    if problems:
        raise UnpairedFilesError("; ".join(problems))
    return [(image_dir / name, mask_dir / name) for name in sorted(image_names)]


def split_pairs(pairs: Sequence[Pair], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Split by file with a seeded permutation of the name-sorted list: same split every run.

    Splitting files (not batches or pixels) keeps every frame wholly in one side. At least one
    file goes to validation when ``val_fraction > 0`` and there are two or more files.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(pairs)
    n_val = int(round(len(ordered) * val_fraction))
    if val_fraction > 0 and len(ordered) >= 2:
        n_val = min(max(n_val, 1), len(ordered) - 1)
    order = np.random.default_rng(seed).permutation(len(ordered))
    val_idx = set(order[:n_val].tolist())
    train = [p for i, p in enumerate(ordered) if i not in val_idx]
    val = [p for i, p in enumerate(ordered) if i in val_idx]
    return train, val


def decode_image(path) -> tf.Tensor:
    """PNG file -> float32 RGB in [0, 1]. The only place pixels are scaled (once, by 1/255)."""
    image = tf.io.decode_png(tf.io.read_file(path), channels=3)  # channels=3 drops alpha
    return tf.cast(image, tf.float32) / 255.0


def decode_mask(path, layout: str) -> tf.Tensor:
    """PNG file -> uint8 class ids, shape (H, W, 1): red channel (carla) or grayscale (camvid)."""
    raw = tf.io.read_file(path)
    if layout == "carla":
        mask = tf.io.decode_png(raw, channels=0)[..., :1]  # RGBA, RGB or L: the id is channel 0
        return tf.ensure_shape(mask, [None, None, 1])  # static channel axis, which Keras losses need
    if layout == "camvid":
        return tf.io.decode_png(raw, channels=1)
    raise ValueError(f"unknown layout {layout!r}; expected 'carla' or 'camvid'")


def load_pair(image_path, mask_path, layout: str, image_size: tuple[int, int] | None = DEFAULT_IMAGE_SIZE):
    """Decode one pair and bring it to the model size (``image_size=None`` keeps native size).

    Images are resized bilinearly (antialiased, since the usual change is a 5x shrink); masks by
    nearest neighbour, so that every output pixel is an id that exists in the file.
    """
    image, mask = decode_image(image_path), decode_mask(mask_path, layout)
    if image_size is not None:
        image = tf.image.resize(image, image_size, method="bilinear", antialias=True)
        image = tf.clip_by_value(image, 0.0, 1.0)  # float rounding can reach 1.0000002
        mask = tf.image.resize(mask, image_size, method="nearest")
    return image, mask


def read_pair(image_path, mask_path, info: DatasetInfo, image_size=DEFAULT_IMAGE_SIZE):
    """One pair as numpy arrays, decoded exactly as the pipeline does (for plots and checks)."""
    image, mask = load_pair(str(image_path), str(mask_path), info.layout, image_size)
    return image.numpy(), mask.numpy()


def load_numpy(pairs: Sequence[Pair], info: DatasetInfo, image_size=DEFAULT_IMAGE_SIZE):
    """Stack pairs into ``(images (N, H, W, 3) float32, masks (N, H, W, 1) uint8)`` arrays."""
    if not pairs:
        raise ValueError("no pairs to load")
    images, masks = zip(*(read_pair(i, m, info, image_size) for i, m in pairs))
    return np.stack(images), np.stack(masks)


def augment_pair(image, mask, seed, *, flip=True, scale_crop=True, color_jitter=True, max_scale=1.25,
                 min_scale=1.0, crop=None):
    """Random flip and scale-crop applied identically to image and mask; colour jitter on the image.

    The scale-crop zooms by a random factor in [``min_scale``, ``max_scale``] (below 1 zooms out)
    and cuts a ``crop``-sized window (default: the image's own size, so the output keeps the input's
    size). A window smaller than the image lets a model train at the native scale on part of a frame.

    Stateless ops driven by ``seed`` (shape (2,)), so a given seed gives the same result anywhere.
    Geometric ops use the same random draw for both tensors, keeping labels on their pixels.
    """
    image_shape, mask_shape = image.shape, mask.shape
    if crop is not None:
        image_shape = tf.TensorShape([crop[0], crop[1], image_shape[-1]])
        mask_shape = tf.TensorShape([crop[0], crop[1], mask_shape[-1]])
    flip_seed, scale_seed, crop_seed, color_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    if flip:
        do_flip = tf.random.stateless_uniform([], flip_seed) < 0.5
        image = tf.cond(do_flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
        mask = tf.cond(do_flip, lambda: tf.reverse(mask, axis=[1]), lambda: mask)
    if scale_crop or crop is not None:
        size = tf.shape(image)[:2]
        out_size = size if crop is None else tf.constant(crop, tf.int32)
        scale = tf.random.stateless_uniform([], scale_seed, min_scale, max_scale) if scale_crop else tf.constant(1.0)
        window = tf.cast(tf.cast(out_size, tf.float32) / scale, tf.int32)
        window = tf.clip_by_value(window, 1, size)  # a zoom-out larger than the frame takes the whole frame
        offsets = tf.random.stateless_uniform([2], crop_seed, 0.0, 1.0) * tf.cast(size - window + 1, tf.float32)
        top, left = tf.unstack(tf.minimum(tf.cast(offsets, tf.int32), size - window))
        image = tf.image.resize(image[top:top + window[0], left:left + window[1]], out_size, method="bilinear")
        image = tf.clip_by_value(image, 0.0, 1.0)
        mask = tf.image.resize(mask[top:top + window[0], left:left + window[1]], out_size, method="nearest")
    if color_jitter:
        brightness_seed, contrast_seed, saturation_seed = tf.unstack(
            tf.random.experimental.stateless_split(color_seed, 3))
        image = tf.image.stateless_random_brightness(image, 0.1, brightness_seed)
        image = tf.image.stateless_random_contrast(image, 0.8, 1.2, contrast_seed)
        image = tf.image.stateless_random_saturation(image, 0.8, 1.2, saturation_seed)
        image = tf.clip_by_value(image, 0.0, 1.0)
    return tf.ensure_shape(image, image_shape), tf.ensure_shape(mask, mask_shape)  # keep static sizes


def make_dataset(
    pairs: Sequence[Pair],
    info: DatasetInfo,
    image_size: tuple[int, int] | None = DEFAULT_IMAGE_SIZE,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    augment: bool = False,
    cache: bool = True,
    max_scale: float = 1.25,
    min_scale: float = 1.0,
    crop: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """Batched ``(image, mask)`` dataset of one split.

    Decoding runs in parallel but keeps file order, and the decoded (resized) pairs are cached,
    so later epochs only shuffle, augment and batch. Shuffling and augmentation are seeded:
    the same ``seed`` gives the same sequence of batches on every run. With ``augment`` and a
    ``crop`` size, each frame is decoded at ``image_size`` and trained on as a random window.
    """
    if not pairs:
        raise ValueError("no pairs to build a dataset from")
    image_paths, mask_paths = ([str(path) for path in column] for column in zip(*pairs))
    ds = tf.data.Dataset.from_tensor_slices((image_paths, mask_paths))
    ds = ds.map(lambda i, m: load_pair(i, m, info.layout, image_size),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(image_paths), seed=seed, reshuffle_each_iteration=True)
    if augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda pair, s: augment_pair(*pair, s, max_scale=max_scale, min_scale=min_scale, crop=crop),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_datasets(
    root: str | os.PathLike,
    info: DatasetInfo,
    image_size: tuple[int, int] | None = DEFAULT_IMAGE_SIZE,
    batch_size: int = 32,
    val_fraction: float = 0.2,
    seed: int = 0,
    augment: bool = False,
    cache: bool = True,
    shuffle: bool = True,
    splits: tuple[str, str] = ("train", "val"),
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """``(train_ds, val_ds)`` for a dataset folder.

    The carla layout is split by file with :func:`split_pairs` (``val_fraction``, ``seed``); the
    camvid layout uses its own ``splits`` folders, as the published results do. Only the training
    set is shuffled and augmented.
    """
    if info.layout == "camvid":
        train_pairs, val_pairs = (list_pairs(root, info, split) for split in splits)
    else:
        train_pairs, val_pairs = split_pairs(list_pairs(root, info), val_fraction, seed)
    train_ds = make_dataset(train_pairs, info, image_size, batch_size, shuffle=shuffle, seed=seed,
                            augment=augment, cache=cache)
    val_ds = make_dataset(val_pairs, info, image_size, batch_size, cache=cache)
    return train_ds, val_ds


def _mask_arrays(source, info: DatasetInfo) -> Iterable[np.ndarray]:
    """One (H, W[, 1]) id array per image, from pairs (native size) or a (batched) dataset."""
    if isinstance(source, tf.data.Dataset):
        for element in source.as_numpy_iterator():
            masks = element[1]
            yield from (masks if masks.ndim == 4 else [masks])
    else:
        for _, mask_path in source:
            yield decode_mask(str(mask_path), info.layout).numpy()


def class_weights(pairs_or_dataset, info: DatasetInfo) -> np.ndarray:
    """Median-frequency balancing weights (Eigen & Fergus 2015, as used by SegNet), float32 (n_classes,).

    ``freq(c)`` = pixels of class c / total pixels of the images where c is present, and
    ``weight(c) = median(freq) / freq(c)``. Give it pairs to count at full label resolution.
    The void id gets weight 0 (it is never scored) and so do ids absent from the data. Void's
    frequency does take part in the median, as in SegNet's computation: the median only sets
    the overall scale of the weights, and this choice reproduces their published CamVid values.
    """
    n = info.n_classes
    pixels = np.zeros(n, dtype=np.int64)
    pixels_of_images_with = np.zeros(n, dtype=np.int64)
    for mask in _mask_arrays(pairs_or_dataset, info):
        counts = np.bincount(mask.ravel(), minlength=n)
        if counts.size > n:
            bad = np.flatnonzero(counts[n:]) + n
            raise ValueError(f"mask ids {bad.tolist()} are outside 0..{n - 1} of dataset {info.name!r}")
        pixels += counts
        pixels_of_images_with += (counts > 0) * mask.size
    present = pixels > 0
    if not present.any():
        raise ValueError("no masks to count")
    freq = np.zeros(n)
    freq[present] = pixels[present] / pixels_of_images_with[present]
    weights = np.zeros(n)
    weights[present] = np.median(freq[present]) / freq[present]
    if info.void_id is not None:
        weights[info.void_id] = 0.0
    return weights.astype(np.float32)
