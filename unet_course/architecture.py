"""Which U-Net to build: the one a student wrote in their notebook, or the course's reference.

The reference is the instructor's (``unet_grader.reference``, in the course repository); a
student's environment does not have it, so there the U-Net comes from the student's own
notebook: its ``conv_block``, ``upsampling_block`` and ``unet_model`` cells.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

FUNCTIONS = ("conv_block", "upsampling_block", "unet_model")
PRELUDE = ("import tensorflow as tf\n"
           "from tensorflow.keras.layers import Conv2D, Conv2DTranspose, Dropout, Input, MaxPooling2D, concatenate\n")


class NoUNetError(RuntimeError):
    """No U-Net to build: no reference installed and no notebook named, or a notebook without the functions."""


def from_notebook(path) -> callable:
    """``unet_model`` from a notebook's three graded functions (the cells that define them)."""
    path = Path(path)
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise NoUNetError(f"{path} is not a readable notebook ({type(error).__name__}: {error})") from None
    sources = ["".join(c["source"]) if isinstance(c.get("source"), list) else str(c.get("source", ""))
               for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    namespace: dict = {}
    exec(compile(PRELUDE, "<prelude>", "exec"), namespace)
    for name in FUNCTIONS:
        defining = [s for s in sources if re.search(rf"^def {name}\(", s, re.M)]
        if not defining:
            raise NoUNetError(f"{path} has no cell that defines {name}()")
        exec(compile(defining[-1], f"{path.name}:{name}", "exec"), namespace)
    return namespace["unet_model"]


def unet_builder(notebook=None) -> callable:
    """The ``unet_model`` function to train or load weights with (see the module docstring)."""
    if notebook:
        return from_notebook(notebook)
    try:
        from unet_grader.reference import unet_model
    except ImportError:
        raise NoUNetError("the course's reference U-Net is on the instructor's side and not installed here:"
                          " pass --notebook PATH to build the U-Net from your own notebook") from None
    return unet_model
