"""The course demo (`make demo`): data, release, autograding, a short training, and where results are.

Runs on the embedded default data with no network, in the course folder (the repository root).
"""

from __future__ import annotations

import sys
import time

from unet_grader import batch, examples, release, report
from unet_grader.coursedir import REPOSITORY


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


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

    step("5/5 A short training of the assignment's U-Net on the default data (2 epochs)")
    from unet_course.course import import_tensorflow_quietly

    import_tensorflow_quietly()  # keep TensorFlow's C++ start-up lines out of the demo's output
    from unet_course.train import TrainConfig, train

    run_dir = course / "runs" / "demo"
    metrics = train(TrainConfig(dataset="synthetic", out=str(run_dir), epochs=2, verbose=2, tensorboard=False))
    print(f"validation: pixel accuracy {metrics['val_pixel_accuracy']:.3f}, mIoU {metrics['val_miou']:.3f}"
          f" after {metrics['epochs_done']} epochs")

    print(f"\nDone in {time.time() - start:.0f} s. Results:")
    print(f"  gradebook:            {course / 'gradebook.db'}")
    print(f"  autograded notebooks: {course / 'autograded'}")
    print(f"  training run:         {run_dir} (metrics.json, curves.png, predictions.png, weights)")
    print("  next: python -m unet_grader feedback | export   (see README, 'For instructors')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
