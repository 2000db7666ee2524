"""Format checks for files that have no trusted hash (CamVid test split, every CARLA copy).

A hash proves a file is *the* file; without one, the next best thing is to prove it is a
complete PNG of the size, mode and class-id range the loaders expect, so a truncated or
wrong file fails here rather than as a confusing shape error deep inside training.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
from PIL import Image

from data_fetch.errors import InvalidFileError, MissingFilesError, first_few
from data_fetch.registry import PngSpec


def check_png(path: str | os.PathLike, spec: PngSpec, name: str) -> None:
    """Raise :class:`InvalidFileError` unless ``path`` is a complete PNG matching ``spec``.

    ``name`` is the file's registry path, used in the message (``path`` may be a temp file).
    """
    try:
        with Image.open(path) as image:
            image_format, size, mode = image.format, image.size, image.mode
            image.load()  # decodes every row: a truncated file fails here
            pixels = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidFileError(f"{name} is not a complete, readable PNG ({error})") from None
    if image_format != "PNG":
        raise InvalidFileError(f"{name} is a {image_format} file, expected PNG")
    if size != (spec.width, spec.height) or mode != spec.mode:
        raise InvalidFileError(
            f"{name} is {size[1]}x{size[0]} {mode}, expected {spec.height}x{spec.width} {spec.mode}"
        )
    if spec.opaque and mode == "RGBA" and pixels[..., 3].min() != 255:
        raise InvalidFileError(f"{name} has transparent pixels; expected alpha 255 everywhere")
    if spec.max_label is not None:
        labels = pixels[..., 0] if pixels.ndim == 3 else pixels
        if pixels.ndim == 3 and pixels[..., 1:3].any():
            raise InvalidFileError(f"{name}: mask has non-zero green/blue; expected the class id in red only")
        if labels.max() > spec.max_label:
            raise InvalidFileError(f"{name}: class id {labels.max()} > {spec.max_label}, the highest valid id")


def pair_names(image_names: Iterable[str], mask_names: Iterable[str], image_dir: str, mask_dir: str) -> list[str]:
    """Names present in both folders; any file without its partner raises.

    Pairing by name (not by listing order) is what keeps every label on its own image.
    """
    images, masks = set(image_names), set(mask_names)
    problems = []
    if lonely := sorted(images - masks):
        problems.append(f"{len(lonely)} image(s) in {image_dir}/ have no mask: {first_few(lonely)}")
    if lonely := sorted(masks - images):
        problems.append(f"{len(lonely)} mask(s) in {mask_dir}/ have no image: {first_few(lonely)}")
    if problems:
        raise MissingFilesError("unpaired files: " + "; ".join(problems))
    if not images:
        raise MissingFilesError(f"no PNG pairs found in {image_dir}/ and {mask_dir}/")
    return sorted(images)
