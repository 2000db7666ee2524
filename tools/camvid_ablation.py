"""Where the CamVid recipe's gains come from: the classic lab's recipe and each part of the course's
recipe removed in turn, all on the same hold-out street (0006R0), nothing chosen on it.

Short runs (12 epochs at 144x192, 6 to 18 minutes each on 2 cores with native bf16) so the whole
table fits in one session; the classic row is that recipe in full (40 epochs at 96x128). Full-length
rows (41 epochs at 240x320, 40 minutes to 1.5 hours each with native bf16) are compared with the
course's own hold-out run, the shipped weights' first step, whose committed ``metrics.json`` stands in
for its run folder. Runs are resumable: a row whose run folder has ``metrics.json`` is not run again.

    .venv/bin/python tools/camvid_ablation.py --data ../shared/data/camvid --run    # train what is missing
    .venv/bin/python tools/camvid_ablation.py --data ../shared/data/camvid --run --rows no_weights_full  # one row
    .venv/bin/python tools/camvid_ablation.py --table                                # write the table

``--table`` writes ``models/camvid_unet/ablation.json`` (read by the training notebook) and prints the
markdown table of ``models/camvid_unet/README.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "ablation"
OUT = ROOT / "models" / "camvid_unet" / "ablation.json"
HOLDOUT = "0006R0"
SHORT = ["--preset", "course", "--image-size", "144", "192", "--epochs", "12"]
FULL = ["--preset", "course", "--epochs", "41", "--max-minutes", "95"]
NO_AUGMENT = "without augmentation (no flips, zoom-and-crop or colour jitter)"
NO_WEIGHTS = "without class weights (plain cross-entropy over the 11 classes)"
NO_DECAY = "without weight decay (Adam instead of AdamW)"
CONSTANT_LR = "without the schedule (constant learning rate, no warm-up)"
CONSTANT_LR_OPTIONS = ["--schedule", "constant", "--warmup-epochs", "0"]

# (name, what the row changes, training options after the common ones, the row it is compared with)
ROWS = [
    ("course_144", "the course's recipe (short run: 12 epochs at 144x192)", SHORT, None),
    ("no_augment", NO_AUGMENT, SHORT + ["--no-augment"], "course_144"),
    ("no_weights", NO_WEIGHTS, SHORT + ["--class-weights", "none"], "course_144"),
    ("no_decay", NO_DECAY, SHORT + ["--weight-decay", "0"], "course_144"),
    ("constant_lr", CONSTANT_LR, SHORT + CONSTANT_LR_OPTIONS, "course_144"),
    ("course_full", "the course's recipe in full (the shipped weights' first step: launched as "
                    "`--epochs 60 --max-minutes 70`, re-planned to 41 epochs by the time budget)",
     ["--preset", "course", "--epochs", "60", "--max-minutes", "70"], None),
    ("classic", "the classic lab's recipe, in full (96x128, no augmentation, no class weights, constant lr, "
                "40 epochs)", ["--preset", "classic"], "course_full"),
    ("no_augment_full", NO_AUGMENT + ", in full", FULL + ["--no-augment"], "course_full"),
    ("no_weights_full", NO_WEIGHTS + ", in full", FULL + ["--class-weights", "none"], "course_full"),
    ("no_decay_full", NO_DECAY + ", in full", FULL + ["--weight-decay", "0"], "course_full"),
    ("constant_lr_full", CONSTANT_LR + ", in full", FULL + CONSTANT_LR_OPTIONS, "course_full"),
]
# Rows whose run is committed rather than kept under runs/ablation.
COMMITTED = {"course_full": ROOT / "models" / "camvid_unet" / "metrics.json"}


def command(name: str, options: list[str], data: str) -> list[str]:
    return [sys.executable, "-m", "unet_course.train", "--dataset", "camvid", "--data", data,
            "--holdout-sequence", HOLDOUT, "--keep", "last", "--seed", "0", "--no-tensorboard",
            "--out", str(RUNS / name), *options]


def shown_command(name: str, options: list[str]) -> str:
    """The row's command as a reader would type it."""
    args = command(name, options, "data/camvid")[1:]
    return "python " + " ".join(shlex.quote(a) for a in args).replace(str(ROOT) + "/", "")


def metrics_path(name: str) -> Path:
    path = RUNS / name / "metrics.json"
    return path if path.is_file() or name not in COMMITTED else COMMITTED[name]


def run(data: str, only: list[str] | None = None) -> None:
    for name, _what, options, _baseline in ROWS:
        if only and name not in only:
            continue
        if metrics_path(name).is_file():
            print(f"{name}: done already")
            continue
        RUNS.mkdir(parents=True, exist_ok=True)
        print(f"{name}: training ({shown_command(name, options)})", flush=True)
        with (RUNS / f"{name}.log").open("w") as log:
            subprocess.run(command(name, options, data), check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def table() -> dict:
    """Every row with a run here; a row run on another machine keeps its entry in the committed table."""
    committed = {row["name"]: row for row in json.loads(OUT.read_text())["rows"]} if OUT.is_file() else {}
    rows = []
    for name, what, options, baseline in ROWS:
        path = metrics_path(name)
        if not path.is_file():
            if name in committed:
                print(f"{name}: no run here, kept from {OUT.relative_to(ROOT)}", file=sys.stderr)
                rows.append({**committed[name], "what": what, "command": shown_command(name, options),
                             "baseline": baseline})
            else:
                print(f"{name}: not run yet ({path} missing)", file=sys.stderr)
            continue
        metrics = json.loads(path.read_text())
        scores = metrics["val_native"] or metrics["val"]
        config = metrics["config"]
        rows.append({"name": name, "what": what, "command": shown_command(name, options), "baseline": baseline,
                     "epochs": metrics["epochs_done"], "image_size": config["image_size"],
                     "precision": config["precision"], "miou": scores["miou"],
                     "pixel_accuracy": scores["pixel_accuracy"], "per_class_iou": scores["per_class_iou"],
                     "train_seconds": metrics.get("timings", {}).get("train_seconds_all_runs")})
    return {"split": f"held-out sequence {HOLDOUT} (101 frames; nothing chosen on it; last epoch kept)",
            "scored": "mIoU over the 11 classes at the labels' 360x480, void ignored", "rows": rows}


def markdown(result: dict) -> str:
    miou = {row["name"]: row["miou"] for row in result["rows"]}
    lines = ["| recipe | epochs, input | mIoU | vs. the course's recipe (short or full) | pixel acc. |",
             "|---|---|---|---|---|"]
    for row in result["rows"]:
        base = miou.get(row["baseline"])
        delta = "" if base is None else f"{row['miou'] - base:+.3f}"
        lines.append(f"| {row['what']} | {row['epochs']}, {row['image_size'][0]}x{row['image_size'][1]} | "
                     f"{row['miou']:.3f} | {delta} | {row['pixel_accuracy']:.3f} |")
    lines += ["", "Commands (`--data` pointing at your CamVid folder):", ""]
    lines += [f"* {row['name']}: `{row['command']}`" for row in result["rows"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/camvid", help="CamVid folder (SegNet layout)")
    parser.add_argument("--run", action="store_true", help="train the rows that have no metrics.json yet")
    parser.add_argument("--table", action="store_true", help=f"write {OUT.relative_to(ROOT)} and print the table")
    parser.add_argument("--rows", nargs="+", metavar="NAME", choices=[row[0] for row in ROWS],
                        help="with --run: train only these rows (a full-length row takes 40 minutes to 1.5 hours on 2 cores with native bf16)")
    args = parser.parse_args(argv)
    if args.run:
        run(args.data, args.rows)
    if args.table:
        result = table()
        OUT.write_text(json.dumps(result, indent=1) + "\n")
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
