"""The course's reference U-Net, exactly as the graded exercises define it (instructor side only).

The answers to the three exercises: never part of what students install. Used by the verifier
(what each test configuration should build, and the same-weights output comparison), by the
maintainer command that writes the expected-layer specifications students' checks read
(``python -m unet_grader specs``), and by the training command, so that it trains the
assignment's architecture, not a look-alike.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.keras.layers import (
    Conv2D,
    Conv2DTranspose,
    Dropout,
    Input,
    MaxPooling2D,
    concatenate,
)

from unet_course.i18n import _


def conv_block(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
    """Two 3x3 ReLU convolutions, optional dropout, optional 2x2 max pooling.

    Returns ``(next_layer, skip_connection)``; the skip is the tensor *before* pooling, so the
    decoder gets the full-resolution features.
    """
    conv = Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(inputs)
    conv = Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(conv)
    if dropout_prob > 0:
        conv = Dropout(dropout_prob)(conv)
    next_layer = MaxPooling2D(pool_size=(2, 2))(conv) if max_pooling else conv
    skip_connection = conv
    return next_layer, skip_connection


def upsampling_block(expansive_input, contractive_input, n_filters=32):
    """3x3 stride-2 transposed convolution, concatenation with the skip, two 3x3 convolutions."""
    up = Conv2DTranspose(n_filters, 3, strides=(2, 2), padding="same")(expansive_input)
    merge = concatenate([up, contractive_input], axis=3)
    conv = Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(merge)
    conv = Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(conv)
    return conv


def unet_model(input_size=(96, 128, 3), n_filters=32, n_classes=23, *, blocks=None):
    """The full U-Net: four pooling encoder blocks, a bottleneck, four decoder blocks, logits.

    ``blocks`` optionally replaces ``(conv_block, upsampling_block)``; the grading helpers use it to
    build the reference model from the same wiring.
    """
    down, up = blocks or (conv_block, upsampling_block)
    inputs = Input(input_size)
    cblock1 = down(inputs, n_filters)
    cblock2 = down(cblock1[0], n_filters * 2)
    cblock3 = down(cblock2[0], n_filters * 4)
    cblock4 = down(cblock3[0], n_filters * 8, dropout_prob=0.3)
    cblock5 = down(cblock4[0], n_filters * 16, dropout_prob=0.3, max_pooling=False)
    ublock6 = up(cblock5[0], cblock4[1], n_filters * 8)
    ublock7 = up(ublock6, cblock3[1], n_filters * 4)
    ublock8 = up(ublock7, cblock2[1], n_filters * 2)
    ublock9 = up(ublock8, cblock1[1], n_filters)
    conv9 = Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(ublock9)
    conv10 = Conv2D(n_classes, 1, padding="same")(conv9)
    return tf.keras.Model(inputs=inputs, outputs=conv10)


# --------------------------------------------------------------------------------------------
# What each test configuration should build, and the same-weights comparison
# --------------------------------------------------------------------------------------------

def build_expected(exercise: str, case):
    """The reference model for one configuration, built exactly as the student's is
    (``unet_model`` with the stand-in blocks; see :func:`unet_course.checks.build`)."""
    from unet_course import checks

    function = {"conv_block": conv_block, "upsampling_block": upsampling_block}.get(exercise)
    if function is None:  # unet_model: the reference wiring around the stand-in blocks
        def function(**kwargs):
            return unet_model(**kwargs, blocks=(checks.placeholder_conv_block, checks.placeholder_upsampling_block))
    model, problems = checks.build(exercise, function, case)
    if model is None:
        raise RuntimeError(f"the reference {exercise} does not build for {case.title}: {problems}")
    return model


def copy_weights(source, target) -> bool:
    """Copy weights layer by layer (in order of layers that have weights); False if shapes differ."""
    source_layers = [layer for layer in source.layers if layer.weights]
    target_layers = [layer for layer in target.layers if layer.weights]
    if len(source_layers) != len(target_layers):
        return False
    for s, t in zip(source_layers, target_layers):
        weights = s.get_weights()
        if [w.shape for w in weights] != [w.shape for w in t.get_weights()]:
            return False
        t.set_weights(weights)
    return True


def _random_inputs(model, seed: int = 1234):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, *tensor.shape[1:])).astype("float32") for tensor in model.inputs]


def _outputs(model, inputs):
    import keras
    import numpy as np

    result = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    result = result if isinstance(result, (list, tuple)) else [result]
    return [np.asarray(keras.ops.convert_to_numpy(r), dtype="float64") for r in result]


def outputs_match(student_model, reference_model) -> bool | None:
    """True if the reference with the student's weights computes the same outputs; None if not comparable."""
    import numpy as np

    if not copy_weights(student_model, reference_model):
        return None
    inputs = _random_inputs(reference_model)
    got, want = _outputs(student_model, inputs), _outputs(reference_model, inputs)
    if [g.shape for g in got] != [w.shape for w in want]:
        return False
    return all(np.allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(w).max()))) for g, w in zip(got, want))


def _swapped_upsampling_block(expansive_input, contractive_input, n_filters=32):
    up = Conv2DTranspose(n_filters, 3, strides=(2, 2), padding="same")(expansive_input)
    merge = concatenate([contractive_input, up], axis=3)
    conv = Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(merge)
    return Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(conv)


def known_variants(exercise: str, case) -> dict:
    """Wrong wirings worth naming, built for ``case`` (their outputs ship as numbers, never as code)."""
    from unet_course import checks

    if exercise != "upsampling_block":
        return {}
    return {"concatenation order swapped": checks.build(exercise, _swapped_upsampling_block, case)[0]}


def wiring_diagnosis(exercise: str, student_model, case) -> str:
    """Name the likely wiring mistake by finding which known variant the student's model computes."""
    from unet_course import checks

    if exercise == "upsampling_block":
        variant = checks.build(exercise, _swapped_upsampling_block, case)[0]
        if variant is not None and outputs_match(student_model, variant):
            return _(checks.VARIANT_HINTS["concatenation order swapped"])
        return _("check the wiring: the transposed convolution takes expansive_input, and the first Conv2D takes the concatenation")
    if exercise == "conv_block":
        return _("check the wiring: the second Conv2D takes the first one's output, and the skip connection is the tensor before pooling")
    return _("check the wiring: each upsampling block takes the previous block's output and the skip connection of the"
             " matching encoder block (blocks 4, 3, 2, 1), and the final 1\u00d71 Conv2D takes the extra 3\u00d73 Conv2D's output")
