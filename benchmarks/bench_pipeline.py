"""Is the input pipeline ever what training waits for? Prints numbers; not a timed test.

Trains the same model on the same batches twice over: fed by ``unet_course.data.make_dataset``
(decode, resize, cache, shuffle, batch, prefetch) and fed from arrays already in memory
(``from_tensor_slices`` with the same shuffle and batching). A ratio near 1 (target >= 0.95)
means the pipeline costs training nothing after its first, cache-filling epoch. The two arms
alternate for several rounds, so a busy shared machine slows both alike, and both the best
epoch (least disturbed) and the median epoch of each arm are compared.

    python benchmarks/bench_pipeline.py                      # ../shared/data/carla_sample, else generated
    python benchmarks/bench_pipeline.py --data DIR --layout carla --model tiny
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from unet_course import data  # noqa: E402
from unet_course.datasets import CAMVID, CARLA  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
CARLA_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "carla_sample"


def write_fixture(root: Path, n: int, size=(480, 640)) -> Path:
    """CARLA-layout frames at CARLA's size: smooth random images, blocky masks with ids 0-22."""
    rng = np.random.default_rng(0)
    (root / "CameraRGB").mkdir(parents=True)
    (root / "CameraMask").mkdir()
    ys, xs = np.mgrid[: size[0], : size[1]]
    for i in range(n):
        tint = rng.uniform(0, 255, 3)
        image = ((xs[..., None] / size[1]) * tint + (ys[..., None] / size[0]) * (255 - tint)).astype(np.uint8)
        ids = rng.integers(0, CARLA.n_classes, (6, 8)).repeat(size[0] // 6, 0).repeat(size[1] // 8, 1)
        mask = np.zeros(size + (4,), np.uint8)
        mask[..., 0], mask[..., 3] = ids, 255
        Image.fromarray(np.dstack([image, np.full(size, 255, np.uint8)])).save(root / "CameraRGB" / f"{i:06d}.png")
        Image.fromarray(mask).save(root / "CameraMask" / f"{i:06d}.png")
    return root


def tiny_model(input_size, n_classes: int) -> keras.Model:
    """A two-level encoder-decoder: cheap steps, so pipeline overhead would show up clearly."""
    inputs = keras.Input(input_size)
    down = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    deeper = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(keras.layers.MaxPooling2D()(down))
    up = keras.layers.Conv2DTranspose(16, 3, strides=2, padding="same")(deeper)
    merged = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(keras.layers.concatenate([up, down]))
    return keras.Model(inputs, keras.layers.Conv2D(n_classes, 1)(merged))


def build_model(name: str, input_size, n_classes: int, n_filters: int) -> keras.Model:
    if name == "unet":
        from unet_grader.reference import unet_model

        model = unet_model(input_size=input_size, n_filters=n_filters, n_classes=n_classes)
    else:
        model = tiny_model(input_size, n_classes)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def fit_epochs(model, dataset, epochs: int, steps: int) -> list[float]:
    """Seconds of each of ``epochs`` epochs of ``steps`` batches (one iterator for the whole fit)."""
    timer = EpochTimer()
    model.fit(dataset.repeat(), epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[timer],
              shuffle=False)  # the datasets do their own shuffling
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="dataset root (default: the CARLA sample, else a generated fixture)")
    parser.add_argument("--layout", choices=["carla", "camvid"], default="carla")
    parser.add_argument("--model", choices=["unet", "tiny"], default="unet",
                        help="unet: unet_course.unet.unet_model; tiny: a small stand-in")
    parser.add_argument("--n-filters", type=int, default=32)
    parser.add_argument("--images", type=int, default=32, help="at most this many pairs (and fixture size)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per arm and round")
    parser.add_argument("--passes", type=int, default=0,
                        help="passes over the data per timed epoch (default: from --epoch-seconds)")
    parser.add_argument("--epoch-seconds", type=float, default=4.0, help="aim for timed epochs this long")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--augment", action="store_true",
                        help="augment in the pipeline arm (the in-memory arm never does): its per-epoch cost")
    parser.add_argument("--image-size", type=int, nargs=2, default=list(data.DEFAULT_IMAGE_SIZE))
    args = parser.parse_args()

    info = CAMVID if args.layout == "camvid" else CARLA
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data or (CARLA_SAMPLE if CARLA_SAMPLE.is_dir() else write_fixture(Path(scratch), args.images))
        pairs = data.list_pairs(root, info, "train" if info.layout == "camvid" else None)[: args.images]
        image_size = tuple(args.image_size)
        n = len(pairs)
        print(f"data: {root} ({n} pairs, layout {info.layout}), model: {args.model}, "
              f"input {image_size}, batch {args.batch_size}, augment: {args.augment}, CPUs: {os.cpu_count()}")

        pipeline = data.make_dataset(pairs, info, image_size, args.batch_size, shuffle=True, seed=0,
                                     augment=args.augment)
        start = time.perf_counter()
        for _ in pipeline:  # fill the cache, as a first training epoch would
            pass
        print(f"pipeline first pass (decode, resize, fill cache): {n / (time.perf_counter() - start):.1f} img/s")
        images, masks = data.load_numpy(pairs, info, image_size)
        in_memory = (tf.data.Dataset.from_tensor_slices((images, masks))
                     .shuffle(n, seed=0, reshuffle_each_iteration=True)
                     .batch(args.batch_size).prefetch(tf.data.AUTOTUNE))

        start = time.perf_counter()
        for _ in range(5):
            for _ in pipeline:
                pass
        print(f"pipeline alone, cached epochs: {5 * n / (time.perf_counter() - start):.0f} img/s")

        model = build_model(args.model, image_size + (3,), info.n_classes, args.n_filters)
        batches_per_pass = -(-n // args.batch_size)  # whole passes, so every epoch sees n images per pass
        fit_epochs(model, pipeline, 1, batches_per_pass)  # tracing and warm-up, shared by both arms
        (one_pass,) = fit_epochs(model, in_memory, 1, batches_per_pass)
        passes = args.passes or max(1, round(args.epoch_seconds / one_pass))
        steps = passes * batches_per_pass
        print(f"timed epochs: {passes} passes = {steps} steps = {passes * n} images each")
        seconds = {"pipeline": [], "in memory": []}
        for _ in range(args.rounds):
            seconds["pipeline"] += fit_epochs(model, pipeline, args.epochs, steps)
            seconds["in memory"] += fit_epochs(model, in_memory, args.epochs, steps)

    images_per_epoch = passes * n
    throughput = {arm: images_per_epoch / min(times) for arm, times in seconds.items()}
    for arm, times in seconds.items():
        print(f"model.fit fed {arm:9s}: best {throughput[arm]:7.1f} img/s, "
              f"median {images_per_epoch / float(np.median(times)):7.1f} img/s over {len(times)} epochs")
    ratio = throughput["pipeline"] / throughput["in memory"]
    median_ratio = float(np.median(seconds["in memory"]) / np.median(seconds["pipeline"]))
    print(f"ratio pipeline / in memory: {ratio:.3f} best, {median_ratio:.3f} median (target >= 0.95)")


if __name__ == "__main__":
    main()
