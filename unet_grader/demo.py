"""The course demo (`make demo`): data, release, autograding, a short training, and where results are.

Runs on the embedded default data with no network, in the course folder (the repository root).
"""

from __future__ import annotations

import sys
import time

from unet_grader import batch, examples, release, report
from unet_grader.coursedir import REPOSITORY


TIMES: list[tuple[str, float]] = []


def step(title: str) -> None:
    """Start a stage (and close the previous one's clock)."""
    now = time.time()
    if TIMES and TIMES[-1][1] < 0:
        TIMES[-1] = (TIMES[-1][0], now + TIMES[-1][1])
    if title:
        TIMES.append((title, -now))
        print(f"\n== {title}", flush=True)


def print_times() -> None:
    step("")
    width = max(len(title) for title, _ in TIMES)
    print("\nTime per stage:")
    for title, seconds in TIMES:
        print(f"  {title:<{width}}  {seconds:6.0f} s")


def main() -> int:
    start = time.time()
    course = REPOSITORY
    if not (course / "nbgrader_config.py").is_file():
        print("error: run the demo from a checkout of the course repository", file=sys.stderr)
        return 1

    step("1/5 Embedded default data (synthetic CARLA-format street scenes)")
    from unet_course.synthetic import ensure_default_dataset

    data_dir = ensure_default_dataset()
    print(f"data in {data_dir}")

    step("2/5 Student release: nbgrader generate_assignment solutions/ -> assignments/")
    print(f"release in {release.release(course)}")

    step("3/5 Example submissions (correct, partial, empty, three typical mistakes)")
    students = examples.write_examples(course)
    print("written to submitted/:", ", ".join(students))

    step("4/5 Autograding with nbgrader")
    results = batch.autograde(course, students)
    print(report.summary_table(results))

    step("5/5 Fine-tuning the shipped U-Net weights on the default data (one short epoch)")
    from unet_course.course import import_tensorflow_quietly

    import_tensorflow_quietly()  # keep TensorFlow's C++ start-up lines out of the demo's output
    from unet_course.train import TrainConfig, train

    run_dir = course / "runs" / "demo"
    # From the shipped weights (the course's U-Net trained on these frames), one epoch of 256
    # images at a small learning rate: predictions that look right, in about a minute on a laptop.
    metrics = train(TrainConfig(dataset="synthetic", out=str(run_dir), epochs=1, init_weights="synthetic",
                                train_images=256, lr=1e-4, warmup_epochs=0.0, verbose=2, tensorboard=False))
    print(f"validation: pixel accuracy {metrics['val_pixel_accuracy']:.3f}, mIoU {metrics['val_miou']:.3f}"
          f" after fine-tuning for {metrics['epochs_done']} short epoch (see {run_dir / 'predictions.png'})")

    print_times()
    print(f"\nDone in {time.time() - start:.0f} s. Results:")
    print(f"  gradebook:            {course / 'gradebook.db'}")
    print(f"  autograded notebooks: {course / 'autograded'}")
    print(f"  training run:         {run_dir} (metrics.json, curves.png, predictions.png, weights)")
    print("  next: python -m unet_grader feedback | export   (see README, 'For instructors')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
