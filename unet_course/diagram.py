"""A U-Net diagram drawn with matplotlib, labelled with the exercise's real shapes."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

from unet_course.course import grading_run

ENCODER_COLOR = "#4c72b0"
DECODER_COLOR = "#dd8452"
SKIP_COLOR = "#55a868"


def _block(ax, x, y, height, label, color):
    ax.add_patch(Rectangle((x, y - height / 2), 1.2, height, color=color, alpha=0.85))
    ax.text(x + 0.6, y - height / 2 - 0.25, label, ha="center", va="top", fontsize=8)


def _arrow(ax, start, end, color="black", style="-|>", text=None, **kwargs):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color, lw=1.4, **kwargs))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.2, text, ha="center", fontsize=7, color=color)


def draw_unet(input_size=(96, 128, 3), n_filters=32, n_classes=23):
    """Draw the encoder, bottleneck, decoder and skip connections; return the figure.

    While nbgrader grades, draw nothing and return None: nobody looks at the picture there, and every
    submission would pay for rendering it and carry it in its autograded notebook and feedback."""
    if grading_run():
        return None
    height, width, _ = input_size
    fig, ax = plt.subplots(figsize=(11, 5.5))
    levels = 5
    ys = [8 - 1.7 * level for level in range(levels)]
    sizes = [(height // 2**level, width // 2**level, n_filters * 2**level) for level in range(levels)]
    for level, ((h, w, c), y) in enumerate(zip(sizes, ys)):
        block_height = 1.6 - 0.25 * level
        x_enc = 1 + 1.6 * level
        name = "bottleneck" if level == levels - 1 else f"conv_block {level + 1}"
        _block(ax, x_enc, y, block_height, f"{name}\n{h}\u00d7{w}\u00d7{c}", ENCODER_COLOR)
        if level < levels - 1:
            _arrow(ax, (x_enc + 0.6, y - block_height / 2), (x_enc + 1.6 + 0.6, ys[level + 1] + 0.6), text="max pool 2\u00d72" if level == 0 else None)
            x_dec = 1 + 1.6 * (2 * levels - 2 - level)
            _block(ax, x_dec, y, block_height, f"upsampling_block {4 - level}\n{h}\u00d7{w}\u00d7{c}", DECODER_COLOR)
            _arrow(ax, (x_enc + 1.2, y), (x_dec, y), color=SKIP_COLOR, style="-|>", text="skip connection (concatenate)" if level == 0 else None)
            _arrow(ax, (x_dec - 1.6 + 0.6, ys[level + 1] + 0.6), (x_dec + 0.6, y - block_height / 2),
                   color=DECODER_COLOR, text="transposed conv, stride 2" if level == levels - 2 else None)
    x_out = 1 + 1.6 * (2 * levels - 2) + 2.4
    _block(ax, x_out, ys[0], 1.6, f"3\u00d73 conv + 1\u00d71 conv\n{height}\u00d7{width}\u00d7{n_classes} logits", "#8172b2")
    _arrow(ax, (x_out - 1.2, ys[0]), (x_out, ys[0]))
    ax.text(0.2, ys[0], f"image\n{height}\u00d7{width}\u00d7{input_size[2]}", ha="center", va="center", fontsize=8)
    _arrow(ax, (0.6, ys[0]), (1, ys[0]))
    ax.set_xlim(-0.4, x_out + 1.6)
    ax.set_ylim(ys[-1] - 1.5, ys[0] + 1.2)
    ax.axis("off")
    ax.set_title("U-Net: the contracting path (left) halves the size and doubles the channels; "
                 "the expanding path (right) undoes it,\nand skip connections carry full-resolution detail across",
                 fontsize=10)
    fig.tight_layout()
    return fig
