"""Repository-wide pytest set-up: notebooks collected by nbval run in the small (CI) setting."""

import os

os.environ.setdefault("UNET_COURSE_SMALL", "1")  # read by unet_course.course.settings()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
