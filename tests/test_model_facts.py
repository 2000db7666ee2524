"""The architecture facts of the issue, pinned on the reference U-Net and on the instructor solution."""

from __future__ import annotations

from collections import Counter

import keras
import nbformat
import pytest

from conftest import SOURCE_NOTEBOOK
from unet_course import checks
from unet_grader import reference, verifier
from unet_grader.assignment import EXERCISES
from unet_grader.examples import solution_code


def solution_namespace() -> dict:
    """Execute the setup imports and the three solution cells of the instructor notebook."""
    notebook = nbformat.read(str(SOURCE_NOTEBOOK), as_version=4)
    namespace: dict = {}
    exec("import tensorflow as tf\nfrom tensorflow.keras.layers import Conv2D, Conv2DTranspose, Dropout, Input, "
         "MaxPooling2D, concatenate", namespace)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in EXERCISES:
            exec(solution_code(cell.source), namespace)
    return namespace


SOLUTION = solution_namespace()
IMPLEMENTATIONS = {"reference": vars(reference), "solution": SOLUTION}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def impl(request):
    keras.backend.clear_session()
    return IMPLEMENTATIONS[request.param]


def test_default_unet(impl):
    model = impl["unet_model"]()
    kinds = Counter(type(layer).__name__ for layer in model.layers)
    assert len(model.layers) == 35
    assert kinds == {"InputLayer": 1, "Conv2D": 20, "MaxPooling2D": 4, "Dropout": 2, "Conv2DTranspose": 4, "Concatenate": 4}
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.3, 0.3]
    assert model.count_params() == 8_640_471
    assert tuple(model.output_shape) == (None, 96, 128, 23)
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Conv2D) and last.count_params() == 759
    assert keras.activations.serialize(last.activation) in ("linear", {"module": "keras.activations", "class_name": "function", "config": "linear", "registered_name": "linear"})


def test_other_unet_configuration(impl):
    model = impl["unet_model"]((192, 64, 4), 64, 16)
    assert len(model.layers) == 35
    assert model.count_params() == 34_551_824


def test_conv_block_layers(impl):
    inputs = keras.Input((96, 128, 3))
    next_layer, skip = impl["conv_block"](inputs, 32)
    layers = checks.describe(keras.Model(inputs, [next_layer, skip]))
    assert [(l.kind, l.output_shape, l.params) for l in layers] == [
        ("Conv2D", (None, 96, 128, 32), 896),
        ("Conv2D", (None, 96, 128, 32), 9_248),
        ("MaxPooling2D", (None, 48, 64, 32), 0),
    ]
    assert tuple(skip.shape) == (None, 96, 128, 32)


def test_conv_block_with_dropout(impl):
    inputs = keras.Input((96, 128, 3))
    next_layer, _ = impl["conv_block"](inputs, 1024, dropout_prob=0.1)
    model = keras.Model(inputs, next_layer)
    assert model.count_params() == 9_466_880
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Conv2D", "Conv2D", "Dropout", "MaxPooling2D"]
    assert model.layers[3].rate == pytest.approx(0.1)


def test_upsampling_block_layers(impl):
    expansive, contractive = keras.Input((12, 16, 256)), keras.Input((24, 32, 128))
    output = impl["upsampling_block"](expansive, contractive, 32)
    layers = checks.describe(keras.Model([expansive, contractive], output))
    assert [(l.kind, l.output_shape, l.params) for l in layers] == [
        ("Conv2DTranspose", (None, 24, 32, 32), 73_760),
        ("Concatenate", (None, 24, 32, 160), 0),
        ("Conv2D", (None, 24, 32, 32), 46_112),
        ("Conv2D", (None, 24, 32, 32), 9_248),
    ]


@pytest.mark.parametrize("kind", list(EXERCISES))
def test_solution_passes_public_and_hidden_checks(kind):
    keras.backend.clear_session()
    assert checks.check_public(kind, SOLUTION[kind], verbose=False) == []
    assert verifier.check_function(kind, SOLUTION[kind], hidden=True) == []


def test_solution_computes_what_the_reference_computes():
    """Same architecture and wiring: with the solution's weights copied in, the outputs agree."""
    keras.backend.clear_session()
    solution_model = SOLUTION["unet_model"]((32, 48, 3), 4, 5)
    reference_model = reference.unet_model((32, 48, 3), 4, 5)
    assert reference.outputs_match(solution_model, reference_model) is True
