"""Maintainer command: write the expected-layer specifications the students' public checks read.

    python -m unet_grader specs           # regenerate unet_course/expected_layers.json
    python -m unet_grader specs --check   # exit 1 if it is out of date (CI)

The public checks compare a student's blocks with descriptions of what the reference builds for
the public configurations: per layer its class, output shape, parameter count and settings, and
the block's input and output shapes. Descriptions, not the reference: no graph, no code.
"""

from __future__ import annotations

import json

from unet_course.checks import EXPECTED_LAYERS, describe_model
from unet_grader import assignment, reference


def expected_description(exercise: str, case) -> dict:
    """What the reference builds for one configuration, as data (see unet_course.checks.describe_model)."""
    variants = reference.known_variants(exercise, case) if case.probe else None
    model = reference.build_expected(exercise, case)
    return json.loads(json.dumps(describe_model(exercise, model, probe=case.probe, variants=variants)))


def expected_layers() -> dict:
    """The specifications, from the reference and the assignment's public configurations."""
    table = {exercise: [{"case": case.to_json(), "expected": expected_description(exercise, case)}
                        for case in assignment.PUBLIC_CASES[exercise]]
             for exercise in assignment.EXERCISES}
    return {"generated_by": "python -m unet_grader specs (from the instructor's reference; do not edit)",
            "exercises": table}


def render() -> str:
    """One JSON file with short lists on one line (reviewable diffs)."""
    import re

    text = json.dumps(expected_layers(), indent=1, sort_keys=True)
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def write(check: bool = False) -> bool:
    """Write the file (or only compare with it); True when it was already up to date."""
    text = render()
    current = EXPECTED_LAYERS.read_text() if EXPECTED_LAYERS.exists() else ""
    if not check and text != current:
        EXPECTED_LAYERS.write_text(text)
    return text == current
