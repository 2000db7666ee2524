"""Weights that ship with the course, to load into the U-Net a student wrote.

``synthetic``: the course's U-Net (96x128 input, 32 filters, 23 classes) trained on the default
synthetic street scenes (see ``weights/synthetic/metrics.json`` for how and how well). The weights
load only into the assignment's architecture, so loading them is a last check of Exercise 3;
and then the student's own network segments frames within seconds on a laptop.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).with_name("weights")


class ArchitectureMismatch(ValueError):
    """The weights do not fit the model: its layers differ from the assignment's U-Net."""


def weights_path(name: str = "synthetic") -> Path:
    """The shipped weights called ``name``, or a run folder / weights file given by its path."""
    given = Path(name)
    if given.is_dir() or given.suffix == ".h5":
        path = given / "weights.weights.h5" if given.is_dir() else given
        if not path.is_file():
            raise FileNotFoundError(f"no weights file at {path}")
        return path
    path = WEIGHTS / name / "weights.weights.h5"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped weights named {name!r} (looked for {path})")
    return path


def metrics(name: str = "synthetic") -> dict:
    """How the shipped run was trained and how well it does (its ``metrics.json``)."""
    import json

    return json.loads((weights_path(name).parent / "metrics.json").read_text())


def load_into(unet_model, name: str = "synthetic", input_size=None):
    """``(model, meta)``: a model built by ``unet_model`` (yours) holding the shipped weights
    (``name``: shipped weights, or a run folder such as ``models/camvid_unet``), optionally at
    another ``input_size`` (H, W) whose sides divide by 16.

    Raises :class:`ArchitectureMismatch` with the reason when your architecture differs.
    """
    from unet_course.evaluate import check_input_size, load_trained_model

    path = weights_path(name)
    if input_size is not None:
        check_input_size(input_size)
    try:
        return load_trained_model(path, unet_model=unet_model, input_size=input_size)
    except Exception as error:  # noqa: BLE001 - whatever the student's function does, say it plainly
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise ArchitectureMismatch(
            "the trained weights do not fit your unet_model, so its layers differ from the assignment's U-Net"
            f" (or it does not build yet; check the test messages of Exercises 1-3): {type(error).__name__}: {first}"
        ) from None
