"""Training speed of the reference U-Net on this CPU, against the peak this CPU reaches.

    python benchmarks/bench_train_speed.py                     # 96x128, batch 32, the configurations below
    python benchmarks/bench_train_speed.py --data ../shared/data/camvid --steps 4
    python benchmarks/bench_train_speed.py --configs float32 mixed_bfloat16+jit --image-size 144 192

Prints, as text and (``--json``) as JSON:

* the processor (``model name`` of /proc/cpuinfo), the flags that decide bf16 speed (AVX2,
  AVX512F, AVX512_BF16, AMX) and what ``python -m unet_course.train --precision auto`` picks here;
* peak GFLOP/s of a large float32 and bfloat16 matmul and 3x3 convolution, timed in this process;
* for each configuration (precision x XLA jit) images/s of ``model.fit`` training steps of
  ``unet_model(n_filters=32)`` fed by the course's real pipeline (``unet_course.data``: decode,
  resize, cache, shuffle, augment; CamVid if ``--data`` is given, else generated images), and
  the achieved GFLOP/s = images/s x training FLOPs per image (counted from the model's layers:
  forward multiply-adds x 2, times 3 for forward + both backward passes), as a fraction of the
  matching peak, and its speed relative to float32 in the same run.

Default configurations: float32 and mixed_bfloat16, each with and without XLA, on a CPU with
native bf16 (AMX or AVX512_BF16); float32 (with and without XLA) and mixed_bfloat16 once on a CPU
without it, where bf16 is emulated and several times slower (measured to show by how much: the
reason ``auto`` picks float32 there); float32 and mixed_float16 when TensorFlow sees a GPU.

Keep runs short (a few minutes): the defaults do 2 warm-up and 5 timed steps per configuration.
On a shared 2-core machine single runs vary (float32 7.8 to 12.1 img/s minutes apart): compare
configurations within one run, and repeat a run before trusting a difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from unet_course import data as data_lib  # noqa: E402
from unet_course.datasets import CAMVID  # noqa: E402
from unet_course.train import (  # noqa: E402
    ONEDNN_ISA_ENV,
    TrainConfig,
    build_model,
    choose_precision,
    resolve_precision,
)
from unet_course.processor import FLAGS_THAT_MATTER, cpu_flags, cpu_name  # noqa: E402


def default_configs(gpus: int, native_bf16: bool, onednn_cap: str | None = None) -> list[str]:
    if gpus:
        return ["float32", "mixed_float16"]
    if native_bf16:
        return ["float32", "float32+jit", "mixed_bfloat16", "mixed_bfloat16+jit"]
    if onednn_cap:  # oneDNN capped below bf16 aborts on a bf16 matmul (TensorFlow 2.21): float32 only
        return ["float32", "float32+jit"]
    return ["float32", "float32+jit", "mixed_bfloat16"]  # emulated bf16: once, to show the cost


def config_precision(name: str) -> str:
    for policy in ("mixed_bfloat16", "mixed_float16"):
        if name.startswith(policy):
            return policy
    if name.startswith("float32"):
        return "float32"
    raise SystemExit(f"unknown configuration {name!r}: float32, mixed_bfloat16 or mixed_float16, optionally +jit")


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (and tracing)
    t = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    np.asarray(out)  # make sure the work is done
    return (time.perf_counter() - t) / repeats


def peak_matmul(dtype, n: int = 2048, repeats: int = 5) -> float:
    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    f = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32)))
    return 2 * n ** 3 / _time(f, repeats) / 1e9


def peak_conv(dtype, batch=16, hw=(48, 64), channels=128, repeats=5) -> float:
    x = tf.cast(tf.random.uniform((batch, *hw, channels)), dtype)
    k = tf.cast(tf.random.uniform((3, 3, channels, channels)), dtype)
    f = tf.function(lambda: tf.reduce_sum(tf.cast(tf.nn.conv2d(x, k, 1, "SAME")[:1, :1, :1, :1], tf.float32)))
    flops = 2 * batch * hw[0] * hw[1] * 9 * channels * channels
    return flops / _time(f, repeats) / 1e9


def forward_flops(model: keras.Model) -> float:
    """Forward FLOPs per image (2 x multiply-adds) of the Conv2D / Conv2DTranspose layers."""
    total = 0.0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            cout = layer.filters
            if isinstance(layer, keras.layers.Conv2DTranspose):
                h, w = layer.input.shape[1:3]  # each input pixel scatters a kh x kw x cout patch
            else:
                h, w = layer.output.shape[1:3]
            total += 2.0 * h * w * kh * kw * cin * cout
    return total


def pipeline(data_dir, image_size, batch_size, augment=True):
    """The course's pipeline over CamVid train (``data_dir``) or over generated camvid-layout files."""
    tmp = None
    if data_dir is None:
        from PIL import Image

        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
        (root / "train").mkdir()
        (root / "trainannot").mkdir()
        rng = np.random.default_rng(0)
        for i in range(2 * batch_size):
            Image.fromarray(rng.integers(0, 255, (360, 480, 3), dtype=np.uint8)).save(root / "train" / f"{i}.png")
            Image.fromarray(rng.integers(0, 12, (360, 480), dtype=np.uint8)).save(root / "trainannot" / f"{i}.png")
        data_dir = root
    pairs = data_lib.list_pairs(data_dir, CAMVID, "train")
    ds = data_lib.make_dataset(pairs, CAMVID, image_size, batch_size, shuffle=True, augment=augment)
    weights = np.ones(CAMVID.n_classes, np.float32)
    weights[CAMVID.void_id] = 0
    table = tf.constant(weights)
    ds = ds.map(lambda x, y: (x, y, tf.gather(table, tf.cast(y[..., 0], tf.int32)))).repeat()
    return ds, len(pairs), tmp


def bench_config(name: str, ds, image_size, batch_size, warmup: int, steps: int) -> dict:
    precision = config_precision(name)
    jit = name.endswith("+jit")
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = build_model(TrainConfig(image_size=image_size, precision=precision), CAMVID.n_classes)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    hist = model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    dt = time.perf_counter() - t
    return {"config": name, "precision": precision, "jit": jit, "images_per_s": steps * batch_size / dt,
            "seconds_per_step": dt / steps, "warmup_seconds": warm_s, "loss": float(hist.history["loss"][-1]),
            "flops_model": model}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="CamVid folder (SegNet layout); default: generated images")
    p.add_argument("--image-size", type=int, nargs=2, default=[96, 128])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--configs", nargs="+", default=None,
                   help="e.g. float32 mixed_bfloat16+jit (default: see the module docstring)")
    p.add_argument("--no-peaks", dest="peaks", action="store_false")
    p.add_argument("--json", default=None, help="write the results here too")
    args = p.parse_args(argv)
    image_size = tuple(args.image_size)

    flags = cpu_flags()
    gpus = tf.config.list_physical_devices("GPU")
    onednn_cap = os.environ.get(ONEDNN_ISA_ENV) or None  # e.g. AVX2: TensorFlow's CPU kernels as on an AVX2 CPU
    native_bf16 = choose_precision(set(flags), 0, onednn_cap)[0] == "mixed_bfloat16"
    auto_policy, auto_reason = resolve_precision("auto")
    configs = args.configs or default_configs(len(gpus), native_bf16, onednn_cap)
    for name in configs:
        config_precision(name)  # fail now on a typo, not after the peaks
    report = {"cpu": cpu_name(), "cpu_flags": flags, "native_bf16": native_bf16, "gpus": [g.name for g in gpus],
              "cores": os.cpu_count(), "tensorflow": tf.__version__, "onednn_max_cpu_isa": onednn_cap,
              "auto_precision": {"policy": auto_policy, "reason": auto_reason},
              "image_size": list(image_size), "batch_size": args.batch_size, "load_average_start": os.getloadavg()}
    print(f"CPU: {report['cpu']}, {report['cores']} cores; flags: {', '.join(flags) or 'none of ' + ', '.join(FLAGS_THAT_MATTER)}"
          f"{f'; oneDNN capped at {onednn_cap} ({ONEDNN_ISA_ENV})' if onednn_cap else ''}"
          f" -> {'native' if native_bf16 else 'no native'} bf16; GPUs: {len(gpus)}; "
          f"load average {report['load_average_start'][0]:.1f}", flush=True)
    print(f"--precision auto here: {auto_policy} ({auto_reason})", flush=True)
    peaks = {}
    if args.peaks:
        dtypes = {"float32": tf.float32}
        if any(config_precision(c) == "mixed_bfloat16" for c in configs):
            dtypes["bfloat16"] = tf.bfloat16
        if any(config_precision(c) == "mixed_float16" for c in configs):
            dtypes["float16"] = tf.float16
        for label, dtype in dtypes.items():
            peaks[f"matmul_{label}"] = peak_matmul(dtype)
            peaks[f"conv3x3_{label}"] = peak_conv(dtype)
        for k, v in peaks.items():
            print(f"peak {k:18s} {v:8.1f} GFLOP/s", flush=True)
    report["peak_gflops"] = peaks

    ds, n_files, tmp = pipeline(args.data, image_size, args.batch_size)
    results = []
    for name in configs:
        r = bench_config(name, ds, image_size, args.batch_size, args.warmup, args.steps)
        model = r.pop("flops_model")
        fwd = forward_flops(model)
        r["train_gflop_per_image"] = 3 * fwd / 1e9
        r["achieved_gflops"] = r["images_per_s"] * r["train_gflop_per_image"]
        peak_key = "conv3x3_" + r["precision"].removeprefix("mixed_")
        peak = peaks.get(peak_key)
        r["conv_peak"] = peak_key if peak else None
        r["fraction_of_conv_peak"] = r["achieved_gflops"] / peak if peak else None
        baseline = next((b for b in results if b["config"] == "float32"), None)
        r["vs_float32"] = r["images_per_s"] / baseline["images_per_s"] if baseline and name != "float32" else None
        results.append(r)
        frac = f" = {r['fraction_of_conv_peak']:.2f} of the {peak_key} peak" if peak else ""
        vs = f"; {r['vs_float32']:.2f}x float32" if r["vs_float32"] else ""
        print(f"{name:20s} {r['images_per_s']:6.2f} img/s  ({r['seconds_per_step']:.2f} s/step, "
              f"{r['train_gflop_per_image']:.1f} GFLOP/img/step -> {r['achieved_gflops']:.0f} GFLOP/s{frac}{vs}; "
              f"loss {r['loss']:.3f}; warm-up {r['warmup_seconds']:.0f} s)", flush=True)
        del model
        keras.backend.clear_session()
    report["results"] = results
    measured = {r["config"]: r["images_per_s"] for r in results}
    if "float32" in measured and len(measured) > 1:
        others = ", ".join(f"{c} {v / measured['float32']:.2f}x" for c, v in measured.items() if c != "float32")
        print(f"--precision auto picks {auto_policy} here; speed against float32 in this run: {others}", flush=True)
    report["data"] = str(args.data) if args.data else f"generated ({n_files} random 360x480 files)"
    report["load_average_end"] = os.getloadavg()
    if tmp is not None:
        tmp.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
