"""How the notebooks run: as a student, in CI's small setting, or under nbgrader.

Notebooks call :func:`setup` once. It quiets TensorFlow's C++ logging (nbgrader fails any test
cell that writes to stderr), seeds everything, and returns the run settings the notebook uses, so
that grading never trains and CI trains only a token amount.
"""

from __future__ import annotations

import os
import platform
import warnings
from dataclasses import dataclass

# Must be set before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SMALL_ENV = "UNET_COURSE_SMALL"


def grading_run() -> bool:
    """True while nbgrader validates or autogrades (it sets NBGRADER_EXECUTION)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def small_run() -> bool:
    """True in CI and nbval runs: train a token amount on a few frames."""
    return os.environ.get(SMALL_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class RunSettings:
    """What the notebook does in this run."""

    mode: str  # "grading", "small" or "full"
    train: bool  # whether to train at all
    show_data: bool  # whether to load and plot data
    epochs: int
    max_frames: int | None  # None: every frame

    def describe(self) -> str:
        if self.mode == "grading":
            return "nbgrader run: data loading and training are skipped"
        frames = "all frames" if self.max_frames is None else f"{self.max_frames} frames"
        return f"{self.mode} run: {self.epochs} epoch(s) on {frames}"


def settings(full_epochs: int = 5) -> RunSettings:
    """The settings for this run, read from the environment."""
    if grading_run():
        return RunSettings("grading", train=False, show_data=False, epochs=0, max_frames=0)
    if small_run():
        return RunSettings("small", train=True, show_data=True, epochs=1, max_frames=64)
    return RunSettings("full", train=True, show_data=True, epochs=full_epochs, max_frames=None)


def import_tensorflow_quietly():
    """Import TensorFlow with file descriptor 2 silenced.

    TensorFlow's C++ start-up lines (absl, oneDNN) go straight to fd 2, which Jupyter shows as
    stderr output and nbgrader counts as a failing test cell. Python-level warnings are kept.
    """
    import sys

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow


def setup(seed: int = 0, full_epochs: int = 5) -> RunSettings:
    """Seed, quiet the logs, print versions and the run mode; return the run settings."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    tf = import_tensorflow_quietly()
    import keras

    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(seed)
    run = settings(full_epochs)
    print(f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}")
    print(run.describe())
    return run
