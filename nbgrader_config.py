"""nbgrader configuration for the course (see nbgrader's docs: user_guide/philosophy).

The course root is this folder: ``solutions/`` is nbgrader's source, ``assignments/`` its release
(committed, so students can just clone and open it); ``submitted/``, ``autograded/``,
``feedback/`` and ``gradebook.db`` are created here by the instructor commands and git-ignored.
"""

import os

from unet_grader.plugins import (
    autograde_exporter,
    autograde_preprocessors,
    autograde_sanitize_preprocessors,
    feedback_preprocessors,
    generate_assignment_preprocessors,
)

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "unet-segmentation"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
# SQLite (gradebook.db here) unless a shared gradebook is named, e.g. PostgreSQL for parallel
# grading: UNET_COURSE_DB_URL=postgresql+psycopg2://user@host/db (the instructor CLI's --db).
if os.environ.get("UNET_COURSE_DB_URL"):
    c.CourseDirectory.db_url = os.environ["UNET_COURSE_DB_URL"]

# Students see the seed's `None` placeholders (### BEGIN STUB blocks), not NotImplementedError.
c.GenerateAssignment.preprocessors = generate_assignment_preprocessors()

# A file nbgrader cannot read is graded as the unanswered assignment: a 0 per test, and the reason.
c.Autograde.exporter_class = autograde_exporter()

# Autograding ignores tags that skip cells, and TensorFlow's stderr noise does not fail correct code.
c.Autograde.sanitize_preprocessors = autograde_sanitize_preprocessors()
c.Autograde.autograde_preprocessors = autograde_preprocessors()

# Grading builds a few U-Nets: seconds per cell, but leave room for a slow laptop.
c.ExecutePreprocessor.timeout = 120

# Feedback shows what failed and why (the test output) but never the hidden test code.
c.GenerateFeedback.preprocessors = feedback_preprocessors()
