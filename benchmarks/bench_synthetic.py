"""Speed of the synthetic-data generator and how far colour alone gets on its frames.

    python benchmarks/bench_synthetic.py                 # 1060 frames at 480x640, all CPUs
    python benchmarks/bench_synthetic.py --cnn-epochs 25 # plus a tiny CNN (~5 min on 2 CPUs)

Prints numbers only; nothing here is asserted. The colour-lookup baseline is the best any
pixel-by-pixel colour rule can do; the optional tiny CNN shows that shape and context add a
lot on top of it (both scored at 96x128 on held-out frames, so the comparison is fair).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unet_course.datasets import SYNTHETIC  # noqa: E402
from unet_course.metrics import scores_from_confusion  # noqa: E402
from unet_course.synthetic import colour_lookup_scores, generate  # noqa: E402

SMALL = (96, 128)  # (height, width) for the CNN check


def load_frames(folder: Path, indices, size=None):
    """(rgb, ids) pairs read back from the PNGs, optionally resized like a training pipeline would."""
    frames = []
    for index in indices:
        rgb = Image.open(folder / "CameraRGB" / f"{index:06d}.png").convert("RGB")
        mask = Image.open(folder / "CameraMask" / f"{index:06d}.png").getchannel("R")
        if size:
            rgb = rgb.resize(size[::-1], Image.BILINEAR)
            mask = mask.resize(size[::-1], Image.NEAREST)
        frames.append((np.asarray(rgb), np.asarray(mask)))
    return frames


def tiny_cnn_scores(train, test, epochs):
    """Train a small encoder-decoder (3 levels, 16-64 filters) for ``epochs``; score it on ``test``."""
    import tensorflow as tf
    from tensorflow.keras import layers

    tf.keras.utils.set_random_seed(0)
    n_classes = SYNTHETIC.n_classes
    inputs = layers.Input((*SMALL, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    skips = []
    for filters in (16, 32, 48):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    for filters, skip in zip((48, 32, 16), reversed(skips)):
        x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(layers.concatenate([x, skip]))
    model = tf.keras.Model(inputs, layers.Conv2D(n_classes, 1)(x))
    model.compile(tf.keras.optimizers.Adam(2e-3), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    images = np.stack([rgb for rgb, _ in train]).astype(np.float32)
    labels = np.stack([ids for _, ids in train])
    model.fit(images, labels, batch_size=16, epochs=epochs, verbose=0, shuffle=True)
    predicted = model.predict(np.stack([rgb for rgb, _ in test]).astype(np.float32), verbose=0).argmax(-1)
    truth = np.stack([ids for _, ids in test])
    confusion = np.bincount(truth.ravel().astype(np.int64) * n_classes + predicted.ravel(),
                            minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return scores_from_confusion(confusion, SYNTHETIC.void_id)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1060)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-frames", type=int, default=300, help="frames to fit the baselines on")
    parser.add_argument("--test-frames", type=int, default=100, help="held-out frames to score them on")
    parser.add_argument("--cnn-epochs", type=int, default=0, help="also train a tiny CNN for this many epochs")
    args = parser.parse_args()

    print(f"{os.cpu_count()} CPUs, load average before the run: {os.getloadavg()[0]:.1f} (other jobs slow this down)")
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        folder = generate(Path(scratch) / "synthetic", n_frames=args.frames, seed=args.seed, workers=args.workers)
        elapsed = time.perf_counter() - start
        cpu = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for field in ("ru_utime", "ru_stime"))
        print(f"generated {args.frames} frames at 480x640 in {elapsed:.1f} s: {args.frames / elapsed:.1f} frames/s "
              f"({1000 * cpu / args.frames:.0f} ms of CPU per frame, whatever the load)")

        n_train = min(args.train_frames, args.frames - 1)
        n_test = min(args.test_frames, args.frames - n_train)
        train_ids, test_ids = range(n_train), range(args.frames - n_test, args.frames)
        full = colour_lookup_scores(load_frames(folder, train_ids), load_frames(folder, test_ids))
        print(f"colour lookup (5 bits/channel), 480x640, {n_train} train / {n_test} test frames: "
              f"pixel accuracy {full['pixel_accuracy']:.3f}, mIoU {full['miou']:.3f}")

        train_small, test_small = load_frames(folder, train_ids, SMALL), load_frames(folder, test_ids, SMALL)
    small = colour_lookup_scores(train_small, test_small)
    print(f"colour lookup at 96x128: pixel accuracy {small['pixel_accuracy']:.3f}, mIoU {small['miou']:.3f}")
    truth = np.concatenate([ids.ravel() for _, ids in test_small])
    print(f"majority class ({SYNTHETIC.class_names[np.bincount(truth).argmax()]}) at 96x128: "
          f"pixel accuracy {np.mean(truth == np.bincount(truth).argmax()):.3f}")
    if args.cnn_epochs:
        start = time.perf_counter()
        cnn = tiny_cnn_scores(train_small, test_small, args.cnn_epochs)
        print(f"tiny CNN at 96x128, {args.cnn_epochs} epochs ({time.perf_counter() - start:.0f} s): "
              f"pixel accuracy {cnn['pixel_accuracy']:.3f}, mIoU {cnn['miou']:.3f}")


if __name__ == "__main__":
    main()
