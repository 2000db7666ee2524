"""The course's reference U-Net, exactly as the graded exercises define it.

Used by the training run (so it trains the assignment's architecture, not a look-alike) and by
the hidden tests, which check a student's ``unet_model`` with these reference blocks substituted
so that one mistake in ``conv_block`` is not punished again in ``unet_model``.
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
