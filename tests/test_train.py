"""Metrics, the training entry point, resume, evaluation and float16 export, on tiny fixtures.

Every run here uses 32x48 inputs and a narrow U-Net (``n_filters`` 4 or 8) on a few generated
images, so the whole file takes about a minute on two cores. The real CamVid run is not a test:
it is the course's model, trained with the command in models/camvid_unet/metrics.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from unet_course import evaluate as ev  # noqa: E402
from unet_course import metrics as m  # noqa: E402
from unet_course.datasets import CAMVID  # noqa: E402
from unet_course.train import TrainConfig, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NATIVE = (60, 80)  # fixture label size (the model runs at 32x48), so native-size scoring is exercised
SIZE = (32, 48)


def _ids(index: int, size=NATIVE) -> np.ndarray:
    """Blocks of a few CamVid ids, different per file, with a strip of void (11)."""
    h, w = size
    ids = np.full(size, 3, np.uint8)  # road
    ids[: h // 3] = 0  # sky
    ids[h // 3: 2 * h // 3, : w // 2] = 1  # building
    ids[h // 3: 2 * h // 3, w // 2:] = 5  # tree
    ids[2 * h // 3:, (index * 7) % (w - 10): (index * 7) % (w - 10) + 10] = 8  # a car that moves
    ids[:, -3:] = 11  # void
    return ids


def _image(ids: np.ndarray, rng) -> np.ndarray:
    palette = np.asarray(CAMVID.colors, np.float32)
    noise = rng.normal(0, 12, ids.shape + (3,))
    return np.clip(palette[ids] + noise, 0, 255).astype(np.uint8)


def write_camvid(root: Path, splits=(("train", 8), ("val", 4), ("test", 4))) -> Path:
    rng = np.random.default_rng(0)
    for split, n in splits:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            ids = _ids(i + 31 * len(split))
            Image.fromarray(_image(ids, rng), "RGB").save(root / split / f"{split}_{i:03d}.png")
            Image.fromarray(ids, "L").save(root / f"{split}annot" / f"{split}_{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def camvid_dir(tmp_path_factory) -> Path:
    return write_camvid(tmp_path_factory.mktemp("camvid"))


def tiny(out, data, **kw) -> TrainConfig:
    base = dict(dataset="camvid", data=str(data), out=str(out), epochs=2, image_size=SIZE, batch_size=4,
                n_filters=4, verbose=0, lr=3e-3)
    base.update(kw)
    return TrainConfig(**base)


# --- metrics -------------------------------------------------------------------------------------


def test_confusion_ignores_true_void_pixels_only():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 1])  # 2 is void: its two pixels vanish; predicting 2 is an error
    cm = m.confusion_matrix(y_true, y_pred, 3, void_id=2)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]
    s = m.scores_from_confusion(cm, 2, ["a", "b", "void"])
    # IoU(a) = 1 / (2 + 1 - 1) = 0.5 ; IoU(b) = 1 / (2 + 2 - 1) = 1/3
    assert s["per_class_iou"] == pytest.approx({"a": 0.5, "b": 1 / 3})
    assert s["miou"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert s["pixel_accuracy"] == pytest.approx(2 / 4)
    assert "void" not in s["per_class_iou"]


def test_class_absent_from_truth_and_prediction_is_left_out_of_the_mean():
    cm = m.confusion_matrix([0, 0, 1], [0, 0, 1], 4, void_id=3)  # class 2 never appears
    s = m.scores_from_confusion(cm, 3)
    assert s["per_class_iou"]["2"] is None
    assert s["miou"] == 1.0 and s["classes_in_mean"] == 2
    # ...but a class that is only predicted (a false positive) counts, with IoU 0
    s2 = m.scores_from_confusion(m.confusion_matrix([0, 0, 1], [0, 2, 1], 4, 3), 3)
    assert s2["per_class_iou"]["2"] == 0.0 and s2["miou"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_accumulator_equals_one_big_matrix():
    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 5, (3, 10, 10)), rng.integers(0, 5, (3, 10, 10))
    acc = m.ConfusionAccumulator(5, void_id=4)
    for k in range(3):
        acc.update(t[k], logits=np.eye(5)[p[k]])
    assert (acc.matrix == m.confusion_matrix(t, p, 5, 4)).all()


def test_keras_metrics_match_numpy_and_ignore_void_and_sample_weights():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 6, (4, 8, 8, 1))
    logits = rng.normal(size=(4, 8, 8, 6)).astype("float32")
    weights = rng.uniform(0, 5, (4, 8, 8)).astype("float32")
    miou, acc = m.VoidIgnoringMeanIoU(6, void_id=5), m.VoidIgnoringPixelAccuracy(6, void_id=5)
    for metric in (miou, acc):
        metric.update_state(y_true[:2], logits[:2], sample_weight=weights[:2])
        metric.update_state(y_true[2:], logits[2:], sample_weight=weights[2:])
    expected = m.scores_from_confusion(m.confusion_matrix(y_true[..., 0], logits.argmax(-1), 6, 5), 5)
    assert float(miou.result()) == pytest.approx(expected["miou"], abs=1e-5)
    assert float(acc.result()) == pytest.approx(expected["pixel_accuracy"], abs=1e-6)


def test_tf_confusion_matches_numpy():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 4, (2, 5, 5, 1))
    logits = rng.normal(size=(2, 5, 5, 4)).astype("float32")
    tf_cm = m.confusion_matrix_tf(y_true, logits, 4, void_id=0).numpy()
    assert (tf_cm == m.confusion_matrix(y_true, logits.argmax(-1), 4, 0)).all()


# --- training ------------------------------------------------------------------------------------


def test_tiny_run_writes_every_output(tmp_path, camvid_dir):
    out = tmp_path / "run"
    result = train(tiny(out, camvid_dir, augment=True, class_weights="median", precision="mixed_bfloat16"))
    for name in ("metrics.json", "best.weights.h5", "weights.weights.h5", "model.json", "history.csv",
                 "curves.png", "per_class_iou.png", "confusion.png", "predictions.png",
                 "checkpoint/last.weights.h5", "checkpoint/state.json", "train.log"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").rglob("*tfevents*"))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["epochs_done"] == 2 and saved["config"]["precision"] == "mixed_bfloat16"
    assert set(saved["val"]["per_class_iou"]) == set(CAMVID.class_names) - {"Unlabelled"}
    assert saved["val_native"] is not None and saved["native_size"] == [list(NATIVE)]
    assert 0.0 <= result["val_miou"] <= 1.0 and np.isfinite(saved["val"]["pixel_accuracy"])
    meta = json.loads((out / "model.json").read_text())
    assert meta["class_names"] == list(CAMVID.class_names) and meta["void_id"] == 11
    assert meta["input_size"] == [*SIZE, 3] and meta["normalisation"] == "RGB scaled to [0,1]"
    assert len((out / "history.csv").read_text().strip().splitlines()) == 3


def test_training_learns_the_fixture(tmp_path, camvid_dir):
    out = tmp_path / "run"
    result = train(tiny(out, camvid_dir, epochs=10, batch_size=2, n_filters=8, plots=False, export=False,
                        tensorboard=False, warmup_epochs=0))
    rows = (out / "history.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("loss")]) for r in rows[1:]]
    assert losses[-1] < 0.9 * losses[0], losses  # 40 small steps: a clear, not a large, drop
    assert np.isfinite(result["val_miou"])


def test_resume_continues_epoch_count_and_optimizer(tmp_path, camvid_dir):
    out = tmp_path / "run"
    train(tiny(out, camvid_dir, epochs=1, plots=False))
    first = json.loads((out / "checkpoint" / "state.json").read_text())
    assert first["epoch"] == 1
    train(tiny(out, camvid_dir, epochs=3, resume=True, plots=False))
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 3 and len(state["epoch_seconds"]) == 3
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]
    log = (out / "train.log").read_text()
    assert "resumed from epoch 1" in log and "optimizer step 2" in log  # 8 images / batch 4 = 2 steps


def test_max_minutes_stops_after_an_epoch_and_keeps_best(tmp_path, camvid_dir):
    out = tmp_path / "run"
    result = train(tiny(out, camvid_dir, epochs=50, max_minutes=0.001, plots=False, tensorboard=False))
    assert result["epochs_done"] == 1 and result["stopped_for_time"]
    assert (out / "best.weights.h5").is_file()


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(tmp_path, camvid_dir):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "unet_course.train", "--dataset", "camvid", "--data", str(camvid_dir),
           "--out", str(out), "--image-size", *map(str, SIZE), "--n-filters", "4", "--batch-size", "4",
           "--no-plots", "--no-tensorboard"]
    proc = subprocess.Popen([*cmd, "--epochs", "200"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state_file = out / "checkpoint" / "state.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and not (state_file.exists() and json.loads(state_file.read_text())["epoch"] >= 2):
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = json.loads(state_file.read_text())["epoch"]
    assert done >= 2
    subprocess.run([*cmd, "--epochs", str(done + 1), "--resume"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = json.loads(state_file.read_text())
    assert state["epoch"] == done + 1
    assert f"resumed from epoch {done}" in (out / "train.log").read_text()


# --- evaluation and export -----------------------------------------------------------------------


def test_evaluate_scores_model_size_and_native_size(tmp_path, camvid_dir, capsys):
    out = tmp_path / "run"
    train(tiny(out, camvid_dir, epochs=1, plots=False, tensorboard=False))
    capsys.readouterr()
    assert ev.main(["--weights", str(out / "weights.weights.h5"), "--data", str(camvid_dir), "--split", "test",
                    "--plots", str(tmp_path / "plots")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 4 and result["split"] == "test"
    for key in ("model_size", "native"):
        assert 0.0 <= result[key]["miou"] <= 1.0
        assert "Unlabelled" not in result[key]["per_class_iou"]
    # native scoring counts every non-void label pixel of the 60x80 files
    assert result["native"]["scored_pixels"] == 4 * NATIVE[0] * (NATIVE[1] - 3)
    assert (tmp_path / "plots" / "confusion_test.png").is_file()


def test_float16_export_round_trip(tmp_path, camvid_dir):
    keras.utils.set_random_seed(0)
    from unet_grader.reference import unet_model

    model = unet_model(input_size=(*SIZE, 3), n_filters=32, n_classes=12)
    meta = ev.model_meta(CAMVID, SIZE, 32)
    path = ev.export_weights(model, tmp_path / "exp" / "weights.weights.h5", meta)
    size_mb = path.stat().st_size / 1e6
    assert 15 < size_mb < 20, size_mb  # 8.6M parameters in float16
    loaded, meta2 = ev.load_trained_model(path)
    assert meta2["weights_dtype"] == "float16" and meta2["n_params"] == model.count_params()
    images = np.random.default_rng(0).uniform(0, 1, (4, *SIZE, 3)).astype("float32")
    a = np.asarray(model(images)).argmax(-1)
    b = np.asarray(loaded(images)).argmax(-1)
    assert (a == b).mean() > 0.99
    # and the folder form works too
    loaded_dir, _ = ev.load_trained_model(tmp_path / "exp")
    assert (np.asarray(loaded_dir(images)).argmax(-1) == b).all()


STRATEGY_SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[3])
from test_train import tiny
from unet_course.train import train
results = {}
for strategy in ("default", "mirrored"):
    out = f"{sys.argv[2]}/{strategy}"
    metrics = train(tiny(out, sys.argv[1], epochs=2, plots=False, export=False, tensorboard=False, strategy=strategy))
    rows = open(f"{out}/history.csv").read().strip().splitlines()
    header = rows[0].split(",")
    results[strategy] = {"loss": [float(r.split(",")[header.index("loss")]) for r in rows[1:]],
                         "val_miou": metrics["val_miou"], "log": open(f"{out}/train.log").read()}
print("RESULT " + json.dumps(results))
"""


def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path, camvid_dir):
    """Data-parallel training over two logical CPU devices follows the one-device run for a fixed
    seed (dropout masks differ between replicas, hence a tolerance rather than equality)."""
    run = subprocess.run([sys.executable, "-c", STRATEGY_SCRIPT, str(camvid_dir), str(tmp_path), str(ROOT / "tests")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads(line[len("RESULT "):])
    one, two = results["default"], results["mirrored"]
    assert "2 replica(s)" in two["log"]
    assert one["loss"][0] == pytest.approx(two["loss"][0], rel=0.05), (one["loss"], two["loss"])
    assert one["loss"][-1] == pytest.approx(two["loss"][-1], rel=0.10), (one["loss"], two["loss"])
    assert abs(one["val_miou"] - two["val_miou"]) < 0.1


# --- the U-Net a student wrote ----------------------------------------------------------------------


def test_training_builds_the_unet_from_a_students_notebook(tmp_path, camvid_dir):
    """`--notebook PATH` trains the three functions of that notebook: the solved source notebook
    gives the reference architecture; the unanswered release cannot build and says so."""
    from conftest import RELEASE_NOTEBOOK, SOURCE_NOTEBOOK
    from unet_course.architecture import NoUNetError, from_notebook, unet_builder
    from unet_grader.reference import unet_model as reference_unet

    students = from_notebook(SOURCE_NOTEBOOK)((32, 48, 3), 4, 5)
    assert students.count_params() == reference_unet((32, 48, 3), 4, 5).count_params()
    assert unet_builder() is reference_unet  # in the repository the reference is the default
    with pytest.raises(Exception):
        from_notebook(RELEASE_NOTEBOOK)((32, 48, 3), 4, 5)  # stubs full of None
    with pytest.raises(NoUNetError, match="defines conv_block"):
        empty = tmp_path / "empty.ipynb"
        empty.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
        from_notebook(empty)

    metrics = train(tiny(tmp_path / "run", camvid_dir, epochs=1, notebook=str(SOURCE_NOTEBOOK), plots=False))
    assert metrics["epochs_done"] == 1
    model, meta = ev.load_trained_model(tmp_path / "run" / "weights.weights.h5")
    assert meta["notebook"] == str(SOURCE_NOTEBOOK.resolve())
    assert model.count_params() == from_notebook(SOURCE_NOTEBOOK)((32, 48, 3), 4, meta["n_classes"]).count_params()


# --- recipes: sequence hold-out, presets, fixed schedule, fine-tuning --------------------------------


def test_split_by_sequence_holds_out_whole_sequences():
    from unet_course.train import split_by_sequence

    pairs = [(Path(f"/d/train/{name}.png"), Path(f"/d/trainannot/{name}.png"))
             for name in ("0001TP_006690", "0001TP_006720", "0006R0_f00930", "0016E5_07959", "Seq05VD_f00000")]
    train_pairs, val_pairs = split_by_sequence(pairs, ["0001TP"])
    assert [p[0].stem for p in val_pairs] == ["0001TP_006690", "0001TP_006720"]
    assert not {p[0].stem.split("_")[0] for p in train_pairs} & {"0001TP"} and len(train_pairs) == 3
    with pytest.raises(ValueError, match="the sequences here are 0001TP, 0006R0, 0016E5, Seq05VD"):
        split_by_sequence(pairs, ["0002XX"])


def test_a_left_out_sequence_is_neither_trained_nor_scored():
    from unet_course.train import leave_out_sequences, parse_args

    def frames(*names):
        return [(Path(f"/d/{name}.png"), Path(f"/d/annot/{name}.png")) for name in names]

    train_pairs = frames("0001TP_006690", "0016E5_07959", "0016E5_07961")
    val_pairs = frames("0006R0_f00930", "0001TP_006720")
    kept_train, kept_val = leave_out_sequences(train_pairs, val_pairs, ["0001TP"])
    assert [p[0].stem for p in kept_train] == ["0016E5_07959", "0016E5_07961"]
    assert [p[0].stem for p in kept_val] == ["0006R0_f00930"]
    with pytest.raises(ValueError, match="the sequences here are 0001TP, 0006R0, 0016E5"):
        leave_out_sequences(train_pairs, val_pairs, ["Seq05VD"])
    with pytest.raises(ValueError, match="nothing to train on"):
        leave_out_sequences(train_pairs, val_pairs, ["0016E5", "0001TP"])
    with pytest.raises(ValueError, match="nothing to validate on"):
        leave_out_sequences(train_pairs, val_pairs, ["0006R0", "0001TP"])
    config = parse_args(["--out", "x", "--dataset", "camvid", "--holdout-sequence", "0006R0",
                         "--leave-out-sequence", "0001TP"])
    assert config.holdout == ("0006R0",) and config.leave_out == ("0001TP",)


def test_holdout_pools_train_and_val_and_keep_last_selects_nothing(tmp_path):
    root = tmp_path / "camvid"
    write_camvid(root, splits=(("train", 6), ("val", 3)))
    for split in ("train", "val"):  # name the files by sequence, as CamVid does
        for folder in (root / split, root / f"{split}annot"):
            for i, path in enumerate(sorted(folder.glob("*.png"))):
                path.rename(folder / f"{'SEQA' if split == 'val' and i < 2 else 'SEQB'}_{split}{i}.png")
    out = tmp_path / "run"
    result = train(tiny(out, root, epochs=2, holdout=("SEQA",), keep="last", plots=False, tensorboard=False))
    assert result["val_split_size"] == 2 and result["holdout_sequences"] == ["SEQA"]
    assert result["kept"] == "last" and result["kept_epoch"] == 2 and result["val_selected_epoch"] is False
    assert json.loads((out / "model.json").read_text())["best_epoch"] == 2
    log = (out / "train.log").read_text()
    assert "held-out sequence(s) SEQA" in log and "7 train / 2 val images" in log
    # The final run of the recipe: every frame trained on; its val scores say they are not held out.
    final = train(tiny(tmp_path / "final", root, epochs=1, all_frames=True, keep="last", plots=False,
                       tensorboard=False, init_weights=str(out / "weights.weights.h5")))
    assert final["val_in_training"] is True and final["holdout_sequences"] == []
    assert "9 train / 3 val images" in (tmp_path / "final" / "train.log").read_text()
    with pytest.raises(ValueError, match="cannot hold a sequence out too"):
        train(tiny(tmp_path / "both", root, all_frames=True, holdout=("SEQA",)))


def test_time_budget_plans_from_typical_epochs_not_one_slow_one():
    from unet_course.train import epochs_that_fit

    # 20 epochs of ~80 s and one of 140 s (a neighbour on the host): 40 epochs still fit in 65 min
    times = [100.0] + [80.0] * 19 + [140.0]
    fits, per_epoch = epochs_that_fit(times, elapsed=sum(times), budget=65 * 60, done=21, cap=40)
    assert fits == 40 and per_epoch == pytest.approx(84.0)
    # a run that really slows down: the plan follows within a few epochs
    slow = [80.0] * 10 + [160.0] * 3
    fits, _ = epochs_that_fit(slow, elapsed=sum(slow), budget=40 * 60, done=13, cap=40)
    assert fits == 13 + int((2400 - sum(slow)) // 168)
    assert epochs_that_fit([80.0], elapsed=5000.0, budget=3600.0, done=1, cap=40)[0] == 1  # over budget


def test_presets_set_defaults_that_flags_override():
    from unet_course.train import parse_args

    classic = parse_args(["--out", "x", "--preset", "classic"])
    assert (classic.image_size, classic.batch_size, classic.augment, classic.class_weights, classic.epochs,
            classic.schedule, classic.keep) == ((96, 128), 32, False, "none", 40, "constant", "last")
    course = parse_args(["--out", "x", "--preset", "course", "--epochs", "7", "--holdout-sequence", "0001TP"])
    assert course.image_size == (240, 320) and course.augment and course.weight_decay > 0
    assert course.epochs == 7 and course.holdout == ("0001TP",) and course.preset == "course"
    plain = parse_args(["--out", "x"])
    assert plain.preset is None and plain.keep == "best" and plain.weight_decay == 0.0


def test_trained_on_crops_scored_on_whole_frames(tmp_path, camvid_dir):
    out = tmp_path / "run"
    result = train(tiny(out, camvid_dir, image_size=(48, 64), crop=(32, 32), augment=True, min_scale=0.75,
                        max_scale=1.25, epochs=1, plots=False, tensorboard=False))
    assert "trained on random 32x32 windows" in (out / "train.log").read_text()
    meta = json.loads((out / "model.json").read_text())
    assert meta["input_size"] == [48, 64, 3]  # what evaluation and users feed it: whole frames
    model, _ = ev.load_trained_model(out)
    assert model(np.zeros((1, 48, 64, 3), np.float32)).shape == (1, 48, 64, 12)
    assert result["val"]["scored_pixels"] > 0
    for bad, message in ((dict(augment=False), "needs --augment"), (dict(crop=(30, 32)), "multiples of 16"),
                         (dict(crop=(64, 64)), "larger than the frames")):
        config = tiny(tmp_path / "bad", camvid_dir, **{"image_size": (48, 64), "crop": (32, 32), "augment": True, **bad})
        with pytest.raises(ValueError, match=message):
            train(config)


def test_fine_tuning_starts_from_exported_weights(tmp_path, camvid_dir):
    first = tmp_path / "first"
    train(tiny(first, camvid_dir, epochs=1, plots=False, tensorboard=False))
    exported, _ = ev.load_trained_model(first)
    second = tmp_path / "second"
    config = tiny(second, camvid_dir, epochs=1, lr=0.0, plots=False, tensorboard=False, weight_decay=0.0,
                  init_weights=str(first / "weights.weights.h5"), train_images=3)
    result = train(config)
    tuned, _ = ev.load_trained_model(second)
    for a, b in zip(exported.get_weights(), tuned.get_weights()):  # lr 0: the start is the end
        np.testing.assert_allclose(a, b, atol=1e-3)
    assert "starting from the weights" in (second / "train.log").read_text()
    assert result["epochs_done"] == 1
    wrong = tiny(tmp_path / "wrong", camvid_dir, epochs=1, n_filters=8, init_weights=str(first / "weights.weights.h5"))
    with pytest.raises(ValueError, match="do not fit"):
        train(wrong)


# --- weight averaging ----------------------------------------------------------------------------


def _dense(value: float) -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.set_weights([np.full(w.shape, value, np.float32) for w in model.get_weights()])
    return model


def test_weight_average_is_the_mean_of_the_plans_last_epochs_and_survives_a_resume(tmp_path):
    from unet_course.train import WeightAverage

    state, logs = {}, []
    average = WeightAverage(3, tmp_path, logs.append)
    for epoch, value in enumerate([10.0, 1.0, 2.0], start=1):  # epoch 1 is before the last 3 of a 4-epoch plan
        average.update(_dense(value), epoch, 4, state)
    assert state["average"] == {"from": 2, "to": 3, "count": 2}
    resumed = WeightAverage(3, tmp_path, logs.append)  # a new process, resuming after epoch 3
    resumed.restore(state)
    resumed.update(_dense(6.0), 4, 4, state)
    target = _dense(0.0)
    resumed.apply(target)
    for w in target.get_weights():
        np.testing.assert_allclose(w, 3.0)  # (1 + 2 + 6) / 3: epoch 1 is left out
    assert state["average"] == {"from": 2, "to": 4, "count": 3}

    stale = dict(state, average={"from": 2, "to": 5, "count": 4})  # the state and the file disagree
    with pytest.raises(ValueError, match="without --resume"):
        WeightAverage(3, tmp_path).restore(stale)
    with pytest.raises(ValueError, match="is missing"):  # the state says averaged, the file is gone
        WeightAverage(3, tmp_path / "elsewhere").restore(state)

    grown = WeightAverage(3, tmp_path, logs.append)  # the plan grows to 6 epochs: 2..4 are no longer its last 3
    grown.restore(state)
    grown.update(_dense(9.0), 5, 6, state)
    assert state["average"] == {"from": 5, "to": 5, "count": 1} and "restarting the mean" in logs[-1]


def test_averaged_run_exports_the_mean_not_the_last_epoch(tmp_path, camvid_dir):
    out = tmp_path / "run"
    result = train(tiny(out, camvid_dir, epochs=3, average_last=2, plots=False, tensorboard=False, keep="last"))
    assert result["kept"] == "average" and result["averaged_epochs"] == [2, 3]
    assert not result["val_selected_epoch"]
    exported, _ = ev.load_trained_model(out)
    last, _ = ev.load_trained_model(out)
    last.load_weights(out / "checkpoint" / "last.weights.h5")  # epoch 3's own weights
    with np.load(out / "checkpoint" / "average.npz") as f:
        mean = [f[f"w{i}"] for i in range(len(f.files) - 1)]
    differs = False
    for e, m, w in zip(exported.get_weights(), mean, last.get_weights()):
        np.testing.assert_allclose(e, m, atol=2e-3 * max(1.0, float(np.abs(m).max())))  # float16 export
        differs |= not np.allclose(m, w)
    assert differs, "the exported weights are epoch 3's, not the average"
    assert "mean of the last 2 epochs" in (out / "train.log").read_text()
