"""The one training entry point: the course's U-Net on synthetic, CARLA or CamVid data.

    python -m unet_course.train --dataset camvid --data /path/to/camvid --out runs/camvid \\
        --epochs 60 --image-size 144 192 --augment --max-minutes 80

or, from a notebook, ``train(TrainConfig(dataset="synthetic", out="runs/demo", epochs=5))``.

``--precision auto`` (the default) picks, once at the start of a run, ``mixed_float16`` when
TensorFlow sees a GPU, ``mixed_bfloat16`` on a CPU that runs bf16 natively (AMX or AVX512_BF16:
about 3x float32) and ``float32`` elsewhere (a CPU without them, e.g. AMD Zen 3 or an AVX2-only
Intel, emulates bf16 and is several times *slower* than float32); see :func:`choose_precision`.
The log says what it chose and why; ``metrics.json`` and the checkpoint record the chosen policy.

The U-Net is the course's reference when the instructor's side is installed (the repository),
or the one a student wrote: ``--notebook PATH`` builds it from that notebook's three functions.

What a run leaves in ``--out``:

* ``checkpoint/last.weights.h5`` + ``checkpoint/state.json``: weights *and* optimizer state after
  every epoch, the epoch count and the best score so far. ``--resume`` continues from them after
  Ctrl-C, a kill or a ``--max-minutes`` stop (the epoch count and the LR schedule carry on).
* ``best.weights.h5``: the weights of the epoch with the best validation mIoU (void ignored).
* ``checkpoint/average.npz`` (with ``--average-last K``): the running mean of the weights after each
  of the plan's last K epochs, which is then exported instead of one epoch's weights.
* ``weights.weights.h5`` + ``model.json``: the kept weights (``--keep best`` or ``last``, or the
  average) exported in float16 (about 17 MB), loadable with :func:`unet_course.evaluate.load_trained_model`.
* ``history.csv`` (one row per epoch), ``tensorboard/`` logs, ``metrics.json`` (val mIoU, per-class
  IoU with class names, pixel accuracy, config, timings) and plots: ``curves.png``,
  ``per_class_iou.png``, ``confusion.png``, ``predictions.png``.

The loss is softmax cross-entropy on logits with per-pixel weights: 0 on void pixels (never
learnt, never scored), and either 1 or the median-frequency class weight elsewhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from unet_course import data as data_lib  # noqa: E402
from unet_course import evaluate as eval_lib  # noqa: E402
from unet_course.datasets import get_dataset_info  # noqa: E402
from unet_course.metrics import VoidIgnoringMeanIoU, VoidIgnoringPixelAccuracy  # noqa: E402
from unet_course.architecture import unet_builder  # noqa: E402
from unet_course.processor import read_cpu_flags  # noqa: E402


@dataclass
class TrainConfig:
    dataset: str = "synthetic"
    data: str | None = None  # None: the embedded synthetic set (generated on first use)
    out: str = "runs/default"
    epochs: int = 20
    image_size: tuple[int, int] = (96, 128)
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_fraction: float = 0.02
    schedule: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 1.0
    augment: bool = False
    class_weights: str = "none"  # median | sqrt_median | none
    loss: str = "ce"  # ce | weighted_ce (weighted_ce implies median class weights)
    precision: str = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16 (see choose_precision)
    jit: bool = False
    resume: bool = False
    max_minutes: float | None = None
    strategy: str = "default"  # default | mirrored | multiworker
    seed: int = 0
    n_filters: int = 32
    val_fraction: float = 0.2
    holdout: tuple[str, ...] = ()  # camvid: validate on these sequences (file-name prefixes), train on the rest
    leave_out: tuple[str, ...] = ()  # camvid: neither train nor validate on these sequences
    all_frames: bool = False  # camvid: train on every train+val frame (the final run of a chosen recipe)
    keep: str = "best"  # best: the epoch with the best val mIoU | last: the last epoch (a fixed schedule)
    average_last: int = 0  # > 0: export the mean of the last this-many epochs' weights (weight averaging)
    max_scale: float = 1.25  # --augment: zoom in by up to this factor (random crop, resized back)
    min_scale: float = 1.0  # --augment: zoom by at least this factor (below 1 zooms out)
    crop: tuple[int, int] | None = None  # --augment: train on random windows of this size (eval: whole frames)
    weight_decay: float = 0.0  # > 0: AdamW with this decoupled weight decay
    preset: str | None = None  # the recipe the flags started from (see PRESETS)
    init_weights: str | None = None  # start from these weights: a shipped name ("synthetic") or an exported file
    train_images: int | None = None  # train on this many (seeded random) training images per epoch, not all
    verbose: int | None = None  # Keras fit verbosity; None: bar on a terminal, one line per epoch otherwise
    tensorboard: bool = True
    plots: bool = True
    export: bool = True
    notebook: str | None = None  # build the U-Net from this notebook's functions (default: the reference)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        d["crop"] = list(self.crop) if self.crop else None
        return d


# --- precision -----------------------------------------------------------------------------------

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bf16 in hardware
ONEDNN_ISA_ENV = "ONEDNN_MAX_CPU_ISA"  # oneDNN (TensorFlow's CPU kernels) uses no instruction set above this
ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                    "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "ALL", "DEFAULT")


def choose_precision(cpu_flags: set[str] | frozenset[str], gpus: int, onednn_max_isa: str | None = None
                     ) -> tuple[str, str]:
    """What ``--precision auto`` means on a machine with these CPU flags and ``gpus`` GPUs:
    ``(policy, one-line reason)``.

    A GPU: ``mixed_float16`` (float16 tensor cores, loss scaling). A CPU with native bf16 (AMX or
    AVX512_BF16 in the flags): ``mixed_bfloat16``, about 3x float32. Any other CPU (AVX2-only x86
    such as AMD Zen 3, Apple or other ARM chips): ``float32``, because there bf16 is emulated and
    several times slower than float32. ``onednn_max_isa`` (the ``ONEDNN_MAX_CPU_ISA`` setting) caps
    what TensorFlow's CPU kernels may use: below ``AVX512_CORE_BF16`` they emulate bf16 whatever the
    CPU has, so ``float32`` it is.
    """
    if gpus > 0:
        return "mixed_float16", f"auto: TensorFlow sees {gpus} GPU{'s' if gpus > 1 else ''}; float16 runs natively there"
    capped = onednn_max_isa and onednn_max_isa.strip().upper() not in ONEDNN_BF16_ISAS
    for flag in NATIVE_BF16_FLAGS:
        if flag in cpu_flags and capped:
            return "float32", (f"auto: the CPU has {flag}, but {ONEDNN_ISA_ENV}={onednn_max_isa} keeps TensorFlow's"
                               " CPU kernels below bf16 (there bf16 is emulated and slow, or its matmuls fail)")
        if flag in cpu_flags:
            return "mixed_bfloat16", f"auto: the CPU has {flag}, native bf16"
    return "float32", ("auto: no native bf16 on this CPU (no avx512_bf16 or amx_bf16); "
                       "bf16 would be emulated and slow")


def resolve_precision(requested: str, cpu_flags: set[str] | None = None, gpus: int | None = None) -> tuple[str, str]:
    """``(policy, reason)`` for ``--precision requested``: ``auto`` via :func:`choose_precision` on
    this machine's CPU flags and GPUs (or the ones given); an explicit policy as it is."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    if gpus is None:
        gpus = len(tf.config.list_physical_devices("GPU"))
    if cpu_flags is None:
        cpu_flags = read_cpu_flags()
    if requested == "auto":
        return choose_precision(cpu_flags, gpus, os.environ.get(ONEDNN_ISA_ENV))
    reason = "as requested"
    if requested == "mixed_bfloat16" and not gpus and not any(f in cpu_flags for f in NATIVE_BF16_FLAGS):
        reason += "; this CPU has no native bf16 (no avx512_bf16 or amx_bf16), expect it slower than float32"
    elif requested == "mixed_float16" and not gpus:
        reason += "; no GPU: float16 on a CPU is emulated and slow"
    return requested, reason


# --- pieces --------------------------------------------------------------------------------------


def pixel_weight_table(config: TrainConfig, info, train_pairs) -> np.ndarray:
    """Loss weight of each id: 0 for void, 1 or the median-frequency weight for the others."""
    use_median = config.class_weights in ("median", "sqrt_median") or config.loss == "weighted_ce"
    if use_median:
        weights = data_lib.class_weights(train_pairs, info)
        if config.class_weights == "sqrt_median":  # milder balancing: rare classes count, big ones still matter
            weights = np.sqrt(weights)
    else:
        weights = np.ones(info.n_classes, dtype=np.float32)
    if info.void_id is not None:
        weights[info.void_id] = 0.0
    return weights.astype(np.float32)


def with_pixel_weights(ds: tf.data.Dataset, table: np.ndarray) -> tf.data.Dataset:
    """(image, mask) -> (image, mask, per-pixel weight (B, H, W)) for Keras' sample_weight."""
    table_t = tf.constant(table, tf.float32)

    def add(image, mask):
        return image, mask, tf.gather(table_t, tf.cast(mask[..., 0], tf.int32))

    return ds.map(add, num_parallel_calls=tf.data.AUTOTUNE)


@keras.saving.register_keras_serializable(package="unet_course")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then cosine decay to ``alpha * peak``, over a length that can be shortened.

    ``total_steps`` is a variable: when a ``--max-minutes`` budget will not fit all ``--epochs``,
    the run shortens it after measuring epoch times, so the decay still ends at the last epoch
    that fits instead of being cut off at a high learning rate.
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, alpha: float = 0.02):
        self.peak, self.warmup_steps, self.alpha = float(peak), int(warmup_steps), float(alpha)
        self.initial_total = int(total_steps)
        self.total_steps = tf.Variable(float(total_steps), trainable=False, dtype=tf.float32, name="lr_total_steps")

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        total = tf.maximum(self.total_steps, warm + 1.0)
        warm_lr = self.peak * (0.1 + 0.9 * tf.minimum(step / warm, 1.0))
        progress = tf.clip_by_value((step - warm) / (total - warm), 0.0, 1.0)
        cos_lr = self.peak * (self.alpha + (1 - self.alpha) * 0.5 * (1 + tf.cos(math.pi * progress)))
        return tf.where(step < warm, warm_lr, cos_lr) if self.warmup_steps > 0 else cos_lr

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.initial_total, "warmup_steps": self.warmup_steps,
                "alpha": self.alpha}


def lr_schedule(config: TrainConfig, steps_per_epoch: int):
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        bounds = [int(total * 0.6), int(total * 0.85)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, [config.lr, config.lr * 0.2, config.lr * 0.04])
    if config.schedule == "cosine":
        warmup = min(int(config.warmup_epochs * steps_per_epoch), total // 4)
        return WarmupCosine(config.lr, total, warmup, config.min_lr_fraction)
    raise ValueError(f"unknown schedule {config.schedule!r}")


def build_model(config: TrainConfig, n_classes: int) -> keras.Model:
    """The course's U-Net (see :mod:`unet_course.architecture`); under a mixed policy
    (``mixed_bfloat16``, ``mixed_float16``) a float32 identity layer on top of the logits.

    ``config.precision`` must be resolved (not ``auto``): the caller sets that global policy."""
    if config.precision not in PRECISIONS[1:]:
        raise ValueError(f"build_model needs a resolved precision, not {config.precision!r} (see resolve_precision)")
    # Trained on crops, scored on whole frames: the U-Net is fully convolutional, so it takes any
    # size divisible by 16 when built without a fixed one.
    h, w = (None, None) if config.crop else config.image_size
    base = unet_builder(config.notebook)(input_size=(h, w, 3), n_filters=config.n_filters, n_classes=n_classes)
    if not config.precision.startswith("mixed_"):
        return base
    logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(base.output)
    return keras.Model(base.input, logits, name="unet_mixed")


def load_initial_weights(model: keras.Model, weights: str) -> None:
    """Fine-tuning: copy exported weights (a shipped name such as ``synthetic``, or a file with its
    ``model.json``) into ``model``, whatever its precision policy; they must fit its architecture."""
    from unet_course import pretrained

    path = Path(weights) if Path(weights).exists() else pretrained.weights_path(weights)
    plain, _ = eval_lib.load_trained_model(path)
    values = plain.get_weights()
    if [v.shape for v in values] != [tuple(w.shape) for w in model.weights]:
        raise ValueError(f"the weights {weights} do not fit this model (another input size, width or class count?)")
    model.set_weights(values)


def load_checkpoint(model: keras.Model, path) -> None:
    """``model.load_weights(path)`` (weights and optimizer state), also across the loss-scaling
    wrapper that ``mixed_float16`` puts around the optimizer: a checkpoint made on a GPU resumes on a
    CPU (and back) with its Adam moments and step count, so the LR schedule carries on."""
    import h5py

    with h5py.File(path, "r") as f:
        saved_optimizer = "optimizer" in f
        saved_scaled = saved_optimizer and "inner_optimizer" in f["optimizer"]
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    if model.optimizer is None or not saved_optimizer or saved_scaled == scaled:
        model.load_weights(path)
        return
    with warnings.catch_warnings():  # Keras skips the mismatched optimizer; it is loaded below
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)
    inner = model.optimizer.inner_optimizer if scaled else model.optimizer
    with h5py.File(path, "r") as f:
        saved = f["optimizer/inner_optimizer/vars" if saved_scaled else "optimizer/vars"]
        if len(saved) != len(inner.variables):
            raise ValueError(f"{path}: {len(saved)} optimizer variables saved, the optimizer has {len(inner.variables)}")
        for i, variable in enumerate(inner.variables):
            variable.assign(saved[str(i)][()])


def epochs_that_fit(epoch_seconds: list[float], elapsed: float, budget: float, done: int, cap: int) -> tuple[int, float]:
    """``(epochs, seconds per epoch)``: how many epochs (``done`` included, at most ``cap``) fit in
    ``budget`` seconds, judged by the median of the last five epochs: on a shared machine one slow
    epoch is noise, not a trend, and a plan shortened for it could not be lengthened again. (A run
    that really slows down moves the median within a few epochs; the hard stop guards the budget.)"""
    per_epoch = float(np.median(epoch_seconds[-5:])) * 1.05
    return min(done + int(max(0.0, budget - elapsed) // per_epoch), cap), per_epoch


class WeightAverage:
    """The running mean of the model's weights over the last ``last`` epochs of the plan, kept in the
    checkpoint so that a resumed run averages the same epochs as an uninterrupted one.

    Averaging the weights that a steady learning rate visits (stochastic weight averaging, Izmailov
    et al. 2018) lands nearer the middle of the region they wander in than any one epoch does: the
    epoch-to-epoch swing of a score becomes one steady model, chosen on nothing."""

    FILE = "average.npz"

    def __init__(self, last: int, ckpt_dir: Path, log=print):
        self.last, self.path, self.log = last, ckpt_dir / self.FILE, log
        self.mean: list[np.ndarray] | None = None
        self.first = self.count = 0

    def restore(self, state: dict) -> None:
        """Pick up the mean saved with the checkpoint of ``state`` (nothing if it averaged nothing yet)."""
        saved = state.get("average")
        if not saved or not saved.get("count"):
            return
        if not self.path.is_file():
            raise ValueError(f"the checkpoint's state averages epochs {saved['from']}..{saved['to']} but {self.path} "
                             "is missing: start the run again without --resume")
        with np.load(self.path) as f:
            if int(f["to"]) != saved["to"]:  # killed between the two files: the mean and the state disagree
                raise ValueError(f"{self.path} averages epochs up to {int(f['to'])}, the checkpoint is at "
                                 f"{saved['to']}: start the run again without --resume")
            self.mean = [f[f"w{i}"] for i in range(len(f.files) - 1)]
        self.first, self.count = saved["from"], saved["count"]

    def update(self, model: keras.Model, epoch: int, planned: int, state: dict) -> None:
        """Fold in the weights after 1-based ``epoch`` if it is one of the plan's last ``last``."""
        start = max(1, planned - self.last + 1)
        if epoch < start:
            return
        if self.count and self.first < start:  # the plan grew: the epochs averaged so far are too early
            self.log(f"weight average: the plan now ends at epoch {planned}; restarting the mean at epoch {epoch}")
            self.mean, self.count = None, 0
        weights = [np.asarray(w, np.float64) for w in model.get_weights()]
        if not self.count:
            self.mean, self.first = weights, epoch
        else:
            for m, w in zip(self.mean, weights):
                m += (w - m) / (self.count + 1)
        self.count += 1
        tmp = self.path.with_name("tmp_" + self.FILE)
        with open(tmp, "wb") as f:
            np.savez(f, to=epoch, **{f"w{i}": m for i, m in enumerate(self.mean)})
        os.replace(tmp, self.path)
        state["average"] = {"from": self.first, "to": epoch, "count": self.count}

    def apply(self, model: keras.Model) -> None:
        model.set_weights([m.astype(np.float32) for m in self.mean])


class RunState(keras.callbacks.Callback):
    """Per-epoch checkpoint (weights + optimizer + epoch + best score), best-model keeping, time budget,
    and the weight average of the last epochs when asked for.

    Files are written to a temporary name and renamed, so a kill mid-write leaves the previous
    checkpoint intact.
    """

    def __init__(self, out: Path, state: dict, max_minutes: float | None, log=print, schedule=None,
                 steps_per_epoch: int = 1, epochs: int = 1, average_last: int = 0):
        super().__init__()
        self.schedule = schedule if isinstance(schedule, WarmupCosine) else None
        self.steps_per_epoch = steps_per_epoch
        # Same --epochs as the run being resumed: keep its (possibly budget-shortened) plan.
        if state.get("epochs_arg") != epochs or not state.get("planned_epochs"):
            state["planned_epochs"] = epochs
        state["epochs_arg"] = epochs
        if self.schedule is not None:
            self.schedule.total_steps.assign(float(state["planned_epochs"] * steps_per_epoch))
        self.out = out
        self.ckpt_dir = out / "checkpoint"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.state = state
        self.budget = None if max_minutes is None else max_minutes * 60.0
        self.log = log
        self.t_start = time.time()
        self.epoch_t0 = None
        self.stopped_for_time = False
        self.epochs_seen = 0
        self.average = WeightAverage(average_last, self.ckpt_dir, log) if average_last > 0 else None
        if self.average is not None:
            self.average.restore(state)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_t0 = time.time()

    def _atomic_save_weights(self, path: Path):
        tmp = path.with_name("tmp_" + path.name)
        self.model.save_weights(tmp)
        os.replace(tmp, path)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        now = time.time()
        seconds = now - self.epoch_t0
        score = float(logs.get("val_miou", float("nan")))
        st = self.state
        st["epoch"] = epoch + 1
        st["epoch_seconds"].append(round(seconds, 2))
        st["train_seconds"] = round(st.get("train_seconds", 0.0) + seconds, 2)
        if np.isfinite(score) and score > st.get("best_miou", -1.0):
            st["best_miou"], st["best_epoch"] = score, epoch + 1
            self._atomic_save_weights(self.out / "best.weights.h5")
        if self.budget is not None:
            elapsed = now - self.t_start
            fits, per_epoch = epochs_that_fit(st["epoch_seconds"], elapsed, self.budget, epoch + 1, st["epochs_arg"])
            self.epochs_seen += 1
            # Re-plan from measured epoch times (not the first epoch of a process: it includes tracing
            # and cache filling), in steps of 2+ epochs so that noise does not wiggle the schedule.
            # Lengthen only early on (a later rise would push the learning rate back up); shorten any time.
            shorter = fits <= st["planned_epochs"] - 2 or fits <= epoch + 1
            longer = fits >= st["planned_epochs"] + 2 and epoch + 1 < 0.3 * st["planned_epochs"]
            if self.epochs_seen >= 2 and (shorter or longer) or fits <= epoch + 1:
                st["planned_epochs"] = max(fits, epoch + 1)
                self.log(f"time budget: about {fits} epochs fit in {self.budget / 60:.0f} min "
                         f"({per_epoch:.0f} s each); the LR schedule now ends at epoch {st['planned_epochs']}")
                if self.schedule is not None:
                    self.schedule.total_steps.assign(float(st["planned_epochs"] * self.steps_per_epoch))
            if epoch + 1 >= st["planned_epochs"] and not self.params.get("epochs", 0) <= epoch + 1:
                self.log(f"stopping after epoch {epoch + 1}: planned length reached within the time budget")
                self.stopped_for_time = True
                self.model.stop_training = True
            elif elapsed + seconds > self.budget:
                self.log(f"time budget: {elapsed / 60:.1f} min used, next epoch (~{seconds / 60:.1f} min) "
                         f"would pass {self.budget / 60:.1f} min; stopping after epoch {epoch + 1}")
                self.stopped_for_time = True
                self.model.stop_training = True
        if self.average is not None:
            # a run stopped early by the time budget ends here: this epoch is the plan's last
            self.average.update(self.model, epoch + 1, epoch + 1 if self.model.stop_training else st["planned_epochs"], st)
        self._atomic_save_weights(self.ckpt_dir / "last.weights.h5")
        tmp = self.ckpt_dir / "tmp_state.json"
        tmp.write_text(json.dumps(st, indent=2))
        os.replace(tmp, self.ckpt_dir / "state.json")


class ScalarEvents(keras.callbacks.Callback):
    """Per-epoch scalars as TensorBoard event files, written with TensorFlow's own summary ops.

    Used when the ``tensorboard`` package (which Keras' TensorBoard callback needs even to write)
    is not installed; ``tensorboard --logdir OUT/tensorboard`` reads these files the same way.
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        self.writers = {name: tf.summary.create_file_writer(str(log_dir / name)) for name in ("train", "validation")}
        from tensorflow.core.framework import summary_pb2

        self.metadata = summary_pb2.SummaryMetadata()
        self.metadata.plugin_data.plugin_name = "scalars"

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            split, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self.writers[split].as_default():
                tf.summary.write("epoch_" + tag, tf.constant(float(value)), step=epoch, metadata=self.metadata)
        for w in self.writers.values():
            w.flush()


def tensorboard_callback(log_dir: Path) -> keras.callbacks.Callback:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return ScalarEvents(log_dir)
    return keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, update_freq="epoch", profile_batch=0)


def split_by_sequence(pairs, holdout) -> tuple[list, list]:
    """(train, val) pairs: val holds every frame whose file name starts with a held-out sequence.

    CamVid file names start with their video sequence (``0001TP_006690.png``, ``0016E5_07959.png``).
    Neighbouring frames of one sequence look alike, so a frame-level split measures memory of a
    street; holding out a whole sequence measures what the test split measures: a new street.
    """
    holdout = tuple(holdout)
    val = [p for p in pairs if Path(p[0]).name.startswith(holdout)]
    train = [p for p in pairs if not Path(p[0]).name.startswith(holdout)]
    if not val:
        names = sorted({Path(p[0]).name.split("_")[0] for p in pairs})
        raise ValueError(f"no frame of sequence(s) {', '.join(holdout)}; the sequences here are {', '.join(names)}")
    if not train:
        raise ValueError(f"holding out {', '.join(holdout)} leaves nothing to train on")
    return train, val


def leave_out_sequences(train_pairs, val_pairs, leave_out) -> tuple[list, list]:
    """(train, val) without any frame of the ``leave_out`` sequences: what one street is worth to
    the others is the held-out score with that street and without it."""
    _, dropped = split_by_sequence(train_pairs + val_pairs, leave_out)  # raises if no frame matches
    dropped = {p[0] for p in dropped}
    train = [p for p in train_pairs if p[0] not in dropped]
    val = [p for p in val_pairs if p[0] not in dropped]
    for name, pairs in (("train", train), ("validate", val)):
        if not pairs:
            raise ValueError(f"leaving out {', '.join(leave_out)} leaves nothing to {name} on")
    return train, val


def _datasets(config: TrainConfig, info):
    root = config.data
    if root is None:
        if config.dataset != "synthetic":
            raise ValueError(f"--data is required for dataset {config.dataset!r}")
        from unet_course.synthetic import ensure_default_dataset

        root = str(ensure_default_dataset(progress=False))
    if info.layout == "camvid" and config.all_frames:
        if config.holdout:
            raise ValueError("--all-frames trains on every frame: it cannot hold a sequence out too")
        val_pairs = data_lib.list_pairs(root, info, "val")
        train_pairs = data_lib.list_pairs(root, info, "train") + val_pairs  # val is watched, and trained on
    elif info.layout == "camvid" and config.holdout:
        pooled = data_lib.list_pairs(root, info, "train") + data_lib.list_pairs(root, info, "val")
        train_pairs, val_pairs = split_by_sequence(pooled, config.holdout)
    elif info.layout == "camvid":
        train_pairs = data_lib.list_pairs(root, info, "train")
        val_pairs = data_lib.list_pairs(root, info, "val")
    elif config.holdout or config.leave_out:
        raise ValueError("--holdout-sequence and --leave-out-sequence are for CamVid, whose file names name their sequence")
    else:
        train_pairs, val_pairs = data_lib.split_pairs(data_lib.list_pairs(root, info), config.val_fraction, config.seed)
    if config.leave_out:
        train_pairs, val_pairs = leave_out_sequences(train_pairs, val_pairs, config.leave_out)
    return root, train_pairs, val_pairs


def check_crop(config: TrainConfig) -> None:
    """A crop is a random training window: it needs --augment, must fit the frame, and (like the frame)
    must pass the U-Net's four 2x poolings whole."""
    if not config.augment:
        raise ValueError("--crop picks a random window per frame: it needs --augment")
    for name, (h, w) in (("--crop", config.crop), ("--image-size", config.image_size)):
        if h % 16 or w % 16:
            raise ValueError(f"{name} {h} {w}: both sides must be multiples of 16 (the U-Net pools 4 times)")
    if config.crop[0] > config.image_size[0] or config.crop[1] > config.image_size[1]:
        raise ValueError(f"--crop {config.crop} is larger than the frames (--image-size {config.image_size})")


def train(config: TrainConfig | dict) -> dict:
    """Train (or resume) per ``config``; returns the metrics dict also written to ``metrics.json``."""
    if isinstance(config, dict):
        config = TrainConfig(**config)
    config.image_size = tuple(int(v) for v in config.image_size)
    if config.crop:
        config.crop = tuple(int(v) for v in config.crop)
        check_crop(config)
    # Resolve --precision once, before anything is built; the resolved policy (never "auto") is what
    # the checkpoint state, metrics.json and a resumed run see. A copy: the caller's config keeps "auto".
    requested_precision = config.precision
    policy, precision_reason = resolve_precision(config.precision)
    config = dataclasses.replace(config, precision=policy)
    t0 = time.time()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "train.log", "a")

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    log(f"precision: {policy} ({precision_reason})")
    info = get_dataset_info(config.dataset)
    keras.utils.set_random_seed(config.seed)
    root, train_pairs, val_pairs = _datasets(config, info)
    if config.train_images and config.train_images < len(train_pairs):
        order = np.random.default_rng(config.seed).permutation(len(train_pairs))[: config.train_images]
        train_pairs = [train_pairs[i] for i in sorted(order)]
    table = pixel_weight_table(config, info, train_pairs)
    if config.holdout:
        log(f"validation: held-out sequence(s) {', '.join(config.holdout)} (no frame of them is trained on)")
    if config.leave_out:
        log(f"left out: sequence(s) {', '.join(config.leave_out)} (neither trained on nor scored)")
    if config.all_frames:
        log("--all-frames: training on train+val; the 'val' scores below are on frames it trains on (not a held-out score)")
    crops = f", trained on random {config.crop[0]}x{config.crop[1]} windows" if config.crop else ""
    log(f"{info.name}: {len(train_pairs)} train / {len(val_pairs)} val images from {Path(root).name}/; "
        f"input {config.image_size}{crops}; pixel weights {np.round(table, 3).tolist()}")

    train_ds = data_lib.make_dataset(train_pairs, info, config.image_size, config.batch_size, shuffle=True,
                                     seed=config.seed, augment=config.augment, max_scale=config.max_scale,
                                     min_scale=config.min_scale, crop=config.crop)
    val_ds = data_lib.make_dataset(val_pairs, info, config.image_size, config.batch_size)
    train_ds, val_ds = with_pixel_weights(train_ds, table), with_pixel_weights(val_ds, table)
    steps_per_epoch = math.ceil(len(train_pairs) / config.batch_size)

    ckpt_dir = out / "checkpoint"
    state_file = ckpt_dir / "state.json"
    state = {"epoch": 0, "best_miou": -1.0, "best_epoch": 0, "epoch_seconds": [], "train_seconds": 0.0,
             "config": config.to_json()}
    resumed_from = 0
    if config.resume and state_file.exists():
        state = json.loads(state_file.read_text())
        before = state.get("config", {}).get("precision")
        if before and before != policy:
            log(f"the checkpoint was trained in {before}; continuing in {policy}")
        state["config"] = config.to_json()
        resumed_from = state["epoch"]
    elif config.resume:
        log("--resume: no checkpoint yet, starting from scratch")
    elif state_file.exists():
        log("a checkpoint exists but --resume was not given: starting again (it will be overwritten)")

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    strategy = distribution_strategy(config.strategy)
    if config.strategy != "default":
        log(f"{config.strategy} strategy over {strategy.num_replicas_in_sync} replica(s)")
    try:
        with strategy.scope():
            model = build_model(config, info.n_classes)
            schedule = lr_schedule(config, steps_per_epoch)
            optimizer = (keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)
                         if config.weight_decay > 0 else keras.optimizers.Adam(learning_rate=schedule))
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[VoidIgnoringPixelAccuracy(info.n_classes, info.void_id),
                         VoidIgnoringMeanIoU(info.n_classes, info.void_id)],
                jit_compile=config.jit,
            )
            if resumed_from:
                model.optimizer.build(model.trainable_variables)  # under mixed_float16 the LossScaleOptimizer
                load_checkpoint(model, ckpt_dir / "last.weights.h5")
                log(f"resumed from epoch {resumed_from} (best val mIoU {state['best_miou']:.4f} at epoch "
                    f"{state['best_epoch']}; optimizer step {int(optimizer.iterations.numpy())})")
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if config.init_weights and not resumed_from:
        log(f"starting from the weights {config.init_weights}")
        load_initial_weights(model, config.init_weights)

    if config.average_last > 0:
        log(f"weight average: the exported weights will be the mean of the last {config.average_last} epochs' weights")
    run_state = RunState(out, state, config.max_minutes, log, schedule=schedule, steps_per_epoch=steps_per_epoch,
                         epochs=config.epochs, average_last=config.average_last)
    callbacks = [run_state, keras.callbacks.CSVLogger(str(out / "history.csv"), append=bool(resumed_from))]
    if config.tensorboard:
        callbacks.append(tensorboard_callback(out / "tensorboard"))
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
    fit_seconds = 0.0
    interrupted = False
    if resumed_from < config.epochs:
        log(f"training epochs {resumed_from + 1}..{config.epochs} ({steps_per_epoch} steps each, "
            f"batch {config.batch_size}, {config.precision}, jit={config.jit})")
        t_fit = time.time()
        try:
            model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=resumed_from,
                      callbacks=callbacks, verbose=verbose, shuffle=False)
        except KeyboardInterrupt:
            interrupted = True
            log(f"interrupted; last checkpoint is epoch {state['epoch']} — rerun with --resume to continue")
        fit_seconds = time.time() - t_fit
    else:
        log(f"already trained {resumed_from} epochs (>= --epochs {config.epochs}); only scoring")
    log_file.close()
    if interrupted:
        raise KeyboardInterrupt

    return finish(config, info, model, state, out, val_pairs, t0, fit_seconds, run_state.stopped_for_time,
                  len(train_pairs), resumed_from, average=run_state.average,
                  precision_choice={"requested": requested_precision, "policy": policy, "reason": precision_reason})


def distribution_strategy(name: str):
    """``default`` (one device), ``mirrored`` (every GPU, else every logical CPU of this machine) or
    ``multiworker`` (MultiWorkerMirroredStrategy: the cluster comes from TF_CONFIG)."""
    import tensorflow as tf

    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def finish(config, info, model, state, out: Path, val_pairs, t0, fit_seconds, stopped_for_time,
           n_train, resumed_from, precision_choice: dict | None = None, average: WeightAverage | None = None) -> dict:
    """Kept weights (best, last or averaged) -> scores on the val split (model size and, for camvid,
    label size), plots, export."""
    best = out / "best.weights.h5"
    averaged = state.get("average") if average is not None and average.count else None
    if averaged:
        average.apply(model)
        kept, kept_epoch = "average", state["epoch"]
    elif config.keep == "best" and best.exists():
        load_checkpoint(model, best)
        kept, kept_epoch = "best", state["best_epoch"]
    else:
        kept, kept_epoch = "last", state["epoch"]
    t_eval = time.time()
    native = info.layout == "camvid"
    res = eval_lib.score_pairs(model, val_pairs, info, config.image_size, batch_size=config.batch_size,
                               native=native, collect=4)
    eval_seconds = time.time() - t_eval
    epochs_this_run = max(0, state["epoch"] - resumed_from)
    img_per_s = None
    if epochs_this_run and fit_seconds > 0:
        recent = state["epoch_seconds"][-epochs_this_run:]
        img_per_s = n_train * len(recent) / sum(recent)
    meta = eval_lib.model_meta(info, config.image_size, config.n_filters, trained_epochs=state["epoch"],
                               best_epoch=kept_epoch,
                               **({"notebook": str(Path(config.notebook).resolve())} if config.notebook else {}))
    metrics = {
        "dataset": info.name,
        "val_split_size": len(val_pairs),
        "val_miou": res["model_size"]["miou"],
        "val_pixel_accuracy": res["model_size"]["pixel_accuracy"],
        "val": res["model_size"],
        "val_native": res["native"],
        "native_size": [list(v) for v in res["label_sizes"]] if native else None,
        "kept": kept,
        "kept_epoch": kept_epoch,
        "averaged_epochs": [averaged["from"], averaged["to"]] if averaged else None,
        "val_selected_epoch": kept == "best",
        "holdout_sequences": list(config.holdout),
        "left_out_sequences": list(config.leave_out),
        "val_in_training": bool(config.all_frames),
        "best_epoch": state["best_epoch"],
        "best_val_miou_during_training": state["best_miou"],
        "epochs_done": state["epoch"],
        "stopped_for_time": stopped_for_time,
        "timings": {
            "total_seconds_this_run": round(time.time() - t0, 1),
            "fit_seconds_this_run": round(fit_seconds, 1),
            "train_seconds_all_runs": state.get("train_seconds"),
            "mean_epoch_seconds": round(float(np.mean(state["epoch_seconds"])), 2) if state["epoch_seconds"] else None,
            "train_images_per_second_incl_val": round(img_per_s, 2) if img_per_s else None,
            "eval_seconds": round(eval_seconds, 1),
        },
        "config": config.to_json(),
        "precision_choice": precision_choice or {"requested": config.precision, "policy": config.precision},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    if config.export:
        eval_lib.export_weights(model, out / "weights.weights.h5", meta)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if config.plots:
        key = "native" if native else "model_size"
        if (out / "history.csv").exists():
            eval_lib.plot_history_csv(out / "history.csv", out / "curves.png")
        eval_lib.plot_per_class_iou(res[key], out / "per_class_iou.png",
                                    f"val per-class IoU ({'at label resolution' if native else 'at model size'})")
        eval_lib.plot_confusion(res["confusion_" + key], info, out / "confusion.png")
        eval_lib.plot_prediction_grid(res["samples"], info, out / "predictions.png")
    return metrics


# Named recipes: a preset sets the defaults, flags given on the command line still win.
PRESETS = {
    # The classic lab's recipe (Coursera C4W3 U-Net on CARLA): 96x128 inputs, batch 32, Adam at a
    # constant 1e-3, no augmentation, no class weights, 40 epochs, the last epoch kept.
    "classic": dict(image_size=[96, 128], batch_size=32, lr=1e-3, schedule="constant", warmup_epochs=0.0,
                    augment=False, class_weights="none", epochs=40, keep="last", weight_decay=0.0),
    # This course's CamVid recipe: inputs at 2/3 of the native 360x480, zoom-and-crop, flips and
    # colour jitter, square-root median-frequency class weights, AdamW, cosine decay, a fixed
    # schedule whose last epoch is kept (no epoch is chosen on a score).
    "course": dict(image_size=[240, 320], batch_size=8, lr=1e-3, schedule="cosine", warmup_epochs=1.0,
                   augment=True, max_scale=1.5, class_weights="sqrt_median", epochs=60, keep="last",
                   weight_decay=1e-2),
}


def parse_args(argv=None) -> TrainConfig:
    p = argparse.ArgumentParser(description="Train the course's reference U-Net.")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="start from a named recipe (classic: the classic lab's; course: this course's CamVid "
                        "recipe); flags given as well override it")
    p.add_argument("--dataset", choices=["synthetic", "carla", "camvid"], default="synthetic")
    p.add_argument("--data", default=None, help="dataset folder (synthetic: default embedded set)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, metrics, plots, weights)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--image-size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=["cosine", "step", "constant"], default="cosine")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--augment", action="store_true", help="flips, scale-crop, colour jitter (train only)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no augmentation (e.g. after a preset)")
    p.add_argument("--class-weights", choices=["median", "sqrt_median", "none"], default="none",
                   help="per-pixel loss weights of the real classes (void is always 0)")
    p.add_argument("--loss", choices=["ce", "weighted_ce"], default="ce")
    p.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="auto (default): mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native bf16 "
                        "(AMX or AVX512_BF16), float32 elsewhere; the log says what it chose")
    p.add_argument("--jit", action="store_true", help="XLA-compile the train step")
    p.add_argument("--resume", action="store_true", help="continue from out/checkpoint")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that would overrun this")
    p.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default="default",
                   help="mirrored: data-parallel over every GPU (or logical CPU); multiworker: over machines (TF_CONFIG)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-filters", type=int, default=32, help="U-Net width (32 = the assignment's model)")
    p.add_argument("--notebook", default=None,
                   help="build the U-Net from this notebook's conv_block, upsampling_block and unet_model"
                        " (default: the course's reference, in the repository)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="carla/synthetic: files held out")
    p.add_argument("--holdout-sequence", dest="holdout", action="append", default=[], metavar="PREFIX",
                   help="camvid: validate on every train/val frame of this sequence (e.g. 0001TP) and train on "
                        "the others; repeat for more")
    p.add_argument("--leave-out-sequence", dest="leave_out", action="append", default=[], metavar="PREFIX",
                   help="camvid: neither train nor validate on this sequence's frames (what is one street worth?);"
                        " repeat for more")
    p.add_argument("--all-frames", action="store_true",
                   help="camvid: train on every train+val frame (the final run of a recipe chosen on a hold-out);"
                        " val is then watched but trained on")
    p.add_argument("--keep", choices=["best", "last"], default="best",
                   help="weights to export: the best epoch by val mIoU, or the last (fixed schedule; then the "
                        "val score was not used to choose anything)")
    p.add_argument("--average-last", type=int, default=0, metavar="K",
                   help="export the mean of the weights after each of the last K epochs (weight averaging; "
                        "best with --schedule constant); replaces --keep")
    p.add_argument("--max-scale", type=float, default=1.25, help="--augment: largest zoom of the scale-crop")
    p.add_argument("--min-scale", type=float, default=1.0,
                   help="--augment: smallest zoom of the scale-crop (below 1 zooms out)")
    p.add_argument("--crop", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="--augment: train on random HxW windows of the --image-size frames (scored on whole frames)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="> 0: AdamW with this weight decay")
    p.add_argument("--init-weights", default=None, metavar="NAME_OR_FILE",
                   help="fine-tune from these weights: 'synthetic' (shipped) or an exported weights file")
    p.add_argument("--train-images", type=int, default=None, help="train on only this many images per epoch")
    p.add_argument("--verbose", type=int, default=None)
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    p.add_argument("--no-plots", dest="plots", action="store_false")
    known, _ = p.parse_known_args(argv)
    if known.preset:
        p.set_defaults(**PRESETS[known.preset])
    a = p.parse_args(argv)
    return TrainConfig(preset=a.preset, holdout=tuple(a.holdout), leave_out=tuple(a.leave_out), all_frames=a.all_frames, keep=a.keep, average_last=a.average_last,
                       max_scale=a.max_scale,
                       min_scale=a.min_scale, crop=tuple(a.crop) if a.crop else None,
                       weight_decay=a.weight_decay, init_weights=a.init_weights,
                       train_images=a.train_images, dataset=a.dataset, data=a.data, out=a.out, epochs=a.epochs, image_size=tuple(a.image_size),
                       batch_size=a.batch_size, lr=a.lr, schedule=a.schedule, warmup_epochs=a.warmup_epochs,
                       augment=a.augment, class_weights=a.class_weights, loss=a.loss, precision=a.precision,
                       jit=a.jit, resume=a.resume, max_minutes=a.max_minutes, strategy=a.strategy, seed=a.seed,
                       n_filters=a.n_filters, val_fraction=a.val_fraction, verbose=a.verbose,
                       tensorboard=a.tensorboard, plots=a.plots, notebook=a.notebook)


def main(argv=None) -> int:
    config = parse_args(argv)
    try:
        metrics = train(config)
    except KeyboardInterrupt:
        return 130
    summary = {k: metrics[k] for k in ("val_miou", "val_pixel_accuracy", "best_epoch", "epochs_done")}
    if metrics.get("val_native"):
        summary["val_miou_native"] = metrics["val_native"]["miou"]
        summary["val_pixel_accuracy_native"] = metrics["val_native"]["pixel_accuracy"]
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
