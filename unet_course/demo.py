"""The course demo (`make demo`): data, release, autograding of example submissions, results.

Runs on the embedded default data with no network, in the course folder (the repository root).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from unet_course import instructor

COURSE_ROOT = Path(__file__).resolve().parent.parent


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> int:
    start = time.time()
    course = COURSE_ROOT
    if not (course / "nbgrader_config.py").is_file():
        print("error: run the demo from a checkout of the course repository", file=sys.stderr)
        return 1

    step("1/4 Embedded default data (synthetic CARLA-format street scenes)")
    from unet_course.synthetic import ensure_default_dataset

    data_dir = ensure_default_dataset()
    print(f"data in {data_dir}")

    step("2/4 Student release: nbgrader generate_assignment solutions/ -> assignments/")
    print(f"release in {instructor.release(course)}")

    step("3/4 Example submissions (correct, partial, empty, three typical mistakes)")
    students = instructor.write_examples(course)
    print("written to submitted/:", ", ".join(students))

    step("4/4 Autograding with nbgrader")
    results = instructor.autograde(course, students)
    print(instructor.summary_table(results))

    print(f"\nDone in {time.time() - start:.0f} s.")
    print(f"  gradebook:          {course / 'gradebook.db'}")
    print(f"  autograded notebooks: {course / 'autograded'}")
    print("  next: python -m unet_course.instructor feedback | export   (see README, 'For instructors')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
