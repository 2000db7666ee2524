"""Checks behind the assignment's public and hidden tests.

Each check builds the student's block on fresh ``Input`` tensors, describes every layer from the
real Keras objects (class, output shape, parameter count and the configuration that matters), and
compares that with the course's reference implementation built the same way. Every mismatch is
reported with a hint, not just the first, and nothing the student returned is ever compared with
``==``: only plain values read off Keras layers and tensors.

The hidden tests also copy the student's weights into the reference model and compare outputs on
random input, which catches wiring that shapes and counts cannot see (concatenation order, the
wrong skip tensor). ``unet_model`` is checked with the reference ``conv_block`` and
``upsampling_block`` swapped in, so a mistake in an earlier exercise costs points only there.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

# While nbgrader autogrades, the kernel only records the models it builds (as JSON configs in a
# display output with this type) and the grade is decided outside the student's process
# (unet_course.verify); the reference implementation is not even importable there.
from unet_course.sandbox import EVIDENCE_MIME, RECORD_ENV  # noqa: E402


class _Reference:
    """The course's reference blocks, imported on first use (they are hidden while grading)."""

    def __getattr__(self, name):
        from unet_course import unet

        return getattr(unet, name)


reference = _Reference()

PASS_MARK = "\u2713"  # check mark
FAIL_MARK = "\u2717"  # ballot x


class GradingFailure(AssertionError):
    """A test found problems; the message lists every one of them with a hint."""


@dataclass
class LayerInfo:
    """What the tests look at in one layer, read from the real Keras object."""

    kind: str
    output_shape: tuple
    params: int
    config: dict = field(default_factory=dict)

    def label(self) -> str:
        return f"{self.kind} {self.output_shape}"


# --------------------------------------------------------------------------------------------
# Describing models
# --------------------------------------------------------------------------------------------

def _initializer_name(initializer) -> str:
    if isinstance(initializer, dict):
        return initializer.get("class_name", "?")
    return type(initializer).__name__ if initializer is not None else "None"


def _shape(value) -> tuple:
    return tuple(None if d is None else int(d) for d in value)


def describe_layer(layer) -> LayerInfo:
    """Read the graded properties of one Keras layer."""
    kind = type(layer).__name__
    output = layer.output
    shape = _shape(output.shape) if not isinstance(output, (list, tuple)) else tuple(_shape(o.shape) for o in output)
    config = {}
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
        config = {
            "filters": int(layer.filters),
            "kernel_size": tuple(int(k) for k in layer.kernel_size),
            "strides": tuple(int(s) for s in layer.strides),
            "padding": layer.padding,
            "activation": keras.activations.serialize(layer.activation)
            if not isinstance(layer.activation, str) else layer.activation,
        }
        if isinstance(config["activation"], dict):
            config["activation"] = config["activation"].get("config", {}).get("name", str(config["activation"]))
        if not isinstance(layer, keras.layers.Conv2DTranspose):
            config["kernel_initializer"] = _initializer_name(layer.kernel_initializer)
    elif isinstance(layer, keras.layers.MaxPooling2D):
        config = {"pool_size": tuple(int(p) for p in layer.pool_size)}
    elif isinstance(layer, keras.layers.Dropout):
        config = {"rate": round(float(layer.rate), 6)}
    elif isinstance(layer, keras.layers.Concatenate):
        config = {"axis": int(layer.axis) % len(shape) if isinstance(shape[0], (int, type(None))) else int(layer.axis)}
    return LayerInfo(kind, shape, int(layer.count_params()), config)


def describe(model) -> list[LayerInfo]:
    """Describe every layer of a model in Keras' (topological) order, input layers left out."""
    return [describe_layer(layer) for layer in model.layers if type(layer).__name__ != "InputLayer"]


# --------------------------------------------------------------------------------------------
# Comparing layer lists, with hints
# --------------------------------------------------------------------------------------------

_FIELD_HINTS = {
    "filters": "did you pass {filters_hint}?",
    "kernel_size": "a 3\u00d73 kernel is kernel_size=3",
    "strides": "the transposed convolution doubles height and width with strides=2",
    "padding": "padding='same' keeps height and width",
    "kernel_initializer": "use kernel_initializer='he_normal'",
    "pool_size": "use pool_size=(2, 2), which halves height and width",
    "rate": "did you pass dropout_prob?",
    "axis": "concatenate on the channel axis, axis=3",
}

_EXTRA_LAYER_HINTS = {
    "Dropout": "add Dropout only when dropout_prob > 0",
    "MaxPooling2D": "pool only when max_pooling is True",
}

_MISSING_LAYER_HINTS = {
    "Dropout": "add Dropout(dropout_prob) when dropout_prob > 0",
    "MaxPooling2D": "pool with MaxPooling2D when max_pooling is True",
    "Conv2D": "each block has two 3\u00d73 Conv2D layers",
    "Conv2DTranspose": "upsample with Conv2DTranspose",
    "Concatenate": "join the upsampled tensor and the skip connection with concatenate",
}


def _activation_hint(expected: str) -> str:
    if expected == "linear":
        return "the last layer outputs logits: give it no activation (the loss uses from_logits=True)"
    return f"use activation='{expected}'"


def _field_problem(index: int, actual: LayerInfo, name: str, got, want, filters_hint: str) -> str:
    if name == "filters":
        where = f"layer {index} is {actual.kind} with {got} filters; expected {want}"
    else:
        where = f"layer {index} is {actual.kind} with {name.replace('_', ' ')} {got!r}; expected {want!r}"
    if name == "activation":
        hint = _activation_hint(want)
    else:
        hint = _FIELD_HINTS.get(name, "").format(filters_hint=filters_hint)
    return f"{where} \u2014 {hint}" if hint else where


def compare_layers(actual: list[LayerInfo], expected: list[LayerInfo], filters_hint: str = "n_filters") -> list[str]:
    """List every difference between two layer descriptions, each with a hint.

    Layers are aligned by class name first, so one missing layer is reported as missing rather
    than as every later layer being wrong.
    """
    problems: list[str] = []
    matcher = difflib.SequenceMatcher(a=[a.kind for a in actual], b=[e.kind for e in expected], autojunk=False)
    for op, a0, a1, e0, e1 in matcher.get_opcodes():
        if op == "equal":
            for offset in range(a1 - a0):
                problems += _compare_pair(a0 + offset + 1, actual[a0 + offset], expected[e0 + offset], filters_hint)
        if op in ("delete", "replace"):
            for i in range(a0, a1):
                kind = actual[i].kind
                if op == "replace" and i - a0 < e1 - e0:
                    want = expected[e0 + i - a0].kind
                    problems.append(f"layer {i + 1} is {kind}; expected {want} here")
                else:
                    hint = _EXTRA_LAYER_HINTS.get(kind, "this layer is not part of the block")
                    problems.append(f"extra layer {i + 1}: {kind} \u2014 {hint}")
        if op in ("insert", "replace"):
            for j in range(e0 + (a1 - a0 if op == "replace" else 0), e1):
                kind = expected[j].kind
                hint = _MISSING_LAYER_HINTS.get(kind, "")
                problems.append(f"missing layer: {kind} (expected as layer {j + 1})" + (f" \u2014 {hint}" if hint else ""))
    return problems


def _compare_pair(index: int, actual: LayerInfo, expected: LayerInfo, filters_hint: str) -> list[str]:
    problems = []
    for name, want in expected.config.items():
        got = actual.config.get(name)
        if got != want:
            problems.append(_field_problem(index, actual, name, got, want, filters_hint))
    if actual.output_shape != expected.output_shape:
        problems.append(f"layer {index} ({actual.kind}) has output shape {actual.output_shape}; expected {expected.output_shape}")
    if actual.params != expected.params and not problems:
        problems.append(f"layer {index} ({actual.kind}) has {actual.params:,} parameters; expected {expected.params:,}")
    return problems


# --------------------------------------------------------------------------------------------
# Running the student's code safely
# --------------------------------------------------------------------------------------------

def _call(name: str, function, *args, **kwargs):
    """Call the student's function; turn any exception into one readable problem."""
    try:
        return function(*args, **kwargs), None
    except Exception as error:  # noqa: BLE001 - any error in student code is reported, not raised
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raised = f"{type(error).__name__}: {message[:300]}"
        # A None left in a stub shows up in the message; a None batch size inside a shape does not count.
        without_shapes = re.sub(r"\((?:None|\d+)(?:, ?(?:None|\d+))*,?\)", "", message)
        if "None" in without_shapes:
            return None, (f"{name} is not finished yet: replace every None between ### START CODE HERE and"
                          f" ### END CODE HERE (it raised {raised})")
        return None, f"{name} raised {raised}"


def _is_tensor(value) -> bool:
    return isinstance(value, keras.KerasTensor)


@contextlib.contextmanager
def reference_blocks(function, conv_block=None, upsampling_block=None):
    """Swap known-good ``conv_block``/``upsampling_block`` into the namespace ``function`` reads.

    By default the reference blocks; the grading sandbox uses :func:`placeholder_conv_block`
    and :func:`placeholder_upsampling_block` instead, on both sides of the comparison.
    """
    namespace = getattr(function, "__globals__", {})
    missing = object()
    saved = {name: namespace.get(name, missing) for name in ("conv_block", "upsampling_block")}
    namespace["conv_block"] = conv_block or reference.conv_block
    namespace["upsampling_block"] = upsampling_block or reference.upsampling_block
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def placeholder_conv_block(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
    """Stands in for conv_block when unet_model is graded in the sandbox: same outputs' shapes,
    same arguments visible (filters, Dropout, pooling), but not the exercise's answer."""
    conv = keras.layers.Conv2D(n_filters, 1, padding="same")(inputs)
    if dropout_prob > 0:
        conv = keras.layers.Dropout(dropout_prob)(conv)
    next_layer = keras.layers.MaxPooling2D(pool_size=(2, 2))(conv) if max_pooling else conv
    return next_layer, conv


def placeholder_upsampling_block(expansive_input, contractive_input, n_filters=32):
    """Stands in for upsampling_block when unet_model is graded in the sandbox."""
    up = keras.layers.Conv2DTranspose(n_filters, 2, strides=(2, 2), padding="same")(expansive_input)
    merge = keras.layers.concatenate([up, contractive_input], axis=3)
    return keras.layers.Conv2D(n_filters, 1, padding="same")(merge)


# --------------------------------------------------------------------------------------------
# Building the student's and the reference blocks
# --------------------------------------------------------------------------------------------

@dataclass
class Case:
    """One configuration to test, and how to describe it to the student."""

    title: str
    kwargs: dict
    input_shapes: tuple
    numeric: bool = True  # compare outputs (hidden tests); off where it would cost seconds of compute


def _build_conv_block(conv_block, case: Case):
    inputs = keras.Input(case.input_shapes[0])
    result, problem = _call("conv_block", conv_block, inputs, **case.kwargs)
    if problem:
        return None, [problem]
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return None, ["conv_block must return two tensors: (next_layer, skip_connection)"]
    if not all(_is_tensor(t) for t in result):
        return None, ["conv_block must return Keras tensors (the outputs of layers), not "
                      + ", ".join(type(t).__name__ for t in result)]
    return keras.Model(inputs, list(result)), []


def _build_upsampling_block(upsampling_block, case: Case):
    expansive = keras.Input(case.input_shapes[0])
    contractive = keras.Input(case.input_shapes[1])
    result, problem = _call("upsampling_block", upsampling_block, expansive, contractive, **case.kwargs)
    if problem:
        if "concatenat" in problem.lower():
            problem += (" \u2014 the two tensors must agree in height and width: the transposed convolution"
                        " needs strides=2 and padding='same', and concatenate joins them on axis=3")
        return None, [problem]
    if not _is_tensor(result):
        return None, [f"upsampling_block must return one Keras tensor, not {type(result).__name__}"]
    return keras.Model([expansive, contractive], result), []


def _build_unet_model(unet_model, case: Case, placeholders: bool = False):
    blocks = (placeholder_conv_block, placeholder_upsampling_block) if placeholders else ()
    with reference_blocks(unet_model, *blocks):
        result, problem = _call("unet_model", unet_model, **case.kwargs)
    if problem:
        if "concatenat" in problem.lower():
            problem += (" \u2014 each upsampling block needs the previous block's output and the skip connection"
                        " (index 1) of the encoder block at the same resolution")
        return None, [problem]
    if not isinstance(result, keras.Model):
        return None, [f"unet_model must return a tf.keras.Model, not {type(result).__name__}"]
    return result, []


def _reference_conv_block(case: Case):
    return _build_conv_block(reference.conv_block, case)[0]


def _reference_upsampling_block(case: Case):
    return _build_upsampling_block(reference.upsampling_block, case)[0]


def _reference_unet_model(case: Case, placeholders: bool = False):
    if placeholders:
        return _build_unet_model(reference.unet_model, case, placeholders=True)[0]
    return reference.unet_model(**case.kwargs)


# --------------------------------------------------------------------------------------------
# The numeric check: same weights, same outputs?
# --------------------------------------------------------------------------------------------

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
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, *tensor.shape[1:])).astype("float32") for tensor in model.inputs]


def _outputs(model, inputs) -> list[np.ndarray]:
    result = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    result = result if isinstance(result, (list, tuple)) else [result]
    return [np.asarray(keras.ops.convert_to_numpy(r), dtype="float64") for r in result]


def outputs_match(student_model, reference_model) -> bool | None:
    """True if the reference with the student's weights computes the same outputs; None if not comparable."""
    if not copy_weights(student_model, reference_model):
        return None
    inputs = _random_inputs(reference_model)
    got, want = _outputs(student_model, inputs), _outputs(reference_model, inputs)
    if [g.shape for g in got] != [w.shape for w in want]:
        return False
    return all(np.allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(w).max()))) for g, w in zip(got, want))


def _wiring_diagnosis(kind: str, student_model, case: Case) -> str:
    """Name the likely wiring mistake by finding which known variant the student's model computes."""
    if kind == "upsampling_block":
        def swapped(expansive_input, contractive_input, n_filters=32):
            up = keras.layers.Conv2DTranspose(n_filters, 3, strides=(2, 2), padding="same")(expansive_input)
            merge = keras.layers.concatenate([contractive_input, up], axis=3)
            conv = keras.layers.Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(merge)
            return keras.layers.Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")(conv)
        variant = _build_upsampling_block(swapped, case)[0]
        if variant is not None and outputs_match(student_model, variant):
            return "the concatenation order is swapped: concatenate [up, contractive_input], upsampled tensor first"
        return "check the wiring: the transposed convolution takes expansive_input, and the first Conv2D takes the concatenation"
    if kind == "conv_block":
        return "check the wiring: the second Conv2D takes the first one's output, and the skip connection is the tensor before pooling"
    return ("check the wiring: each upsampling block takes the previous block's output and the skip connection of the"
            " matching encoder block (blocks 4, 3, 2, 1), and the final 1\u00d71 Conv2D takes the extra 3\u00d73 Conv2D's output")


# --------------------------------------------------------------------------------------------
# The checks the notebook's test cells call
# --------------------------------------------------------------------------------------------

_BUILDERS = {
    "conv_block": (_build_conv_block, _reference_conv_block, "n_filters"),
    "upsampling_block": (_build_upsampling_block, _reference_upsampling_block, "n_filters"),
    "unet_model": (_build_unet_model, _reference_unet_model, "n_filters times this block's factor (1, 2, 4, 8 or 16)"),
}

PUBLIC_CASES = {
    "conv_block": [
        Case("inputs (96, 128, 3), n_filters=32", {"n_filters": 32}, ((96, 128, 3),)),
        Case("inputs (96, 128, 3), n_filters=32, dropout_prob=0.1", {"n_filters": 32, "dropout_prob": 0.1},
             ((96, 128, 3),)),
    ],
    "upsampling_block": [
        Case("inputs (12, 16, 256) and (24, 32, 128), n_filters=32", {"n_filters": 32},
             ((12, 16, 256), (24, 32, 128))),
    ],
    "unet_model": [
        Case("unet_model() with its defaults", {}, ()),
    ],
}

HIDDEN_CASES = {
    "conv_block": [
        Case("inputs (96, 128, 3), n_filters=1024, dropout_prob=0.1", {"n_filters": 1024, "dropout_prob": 0.1},
             ((96, 128, 3),), numeric=False),  # ~1 TFLOP to compare; the small cases check the wiring
        Case("inputs (24, 40, 5), n_filters=16, max_pooling=False", {"n_filters": 16, "max_pooling": False},
             ((24, 40, 5),)),
        Case("inputs (32, 48, 8), n_filters=8, dropout_prob=0.25, max_pooling=False",
             {"n_filters": 8, "dropout_prob": 0.25, "max_pooling": False}, ((32, 48, 8),)),
    ],
    "upsampling_block": [
        Case("inputs (6, 8, 512) and (12, 16, 64), n_filters=64", {"n_filters": 64},
             ((6, 8, 512), (12, 16, 64))),
        Case("inputs (10, 4, 7) and (20, 8, 3), n_filters=5", {"n_filters": 5}, ((10, 4, 7), (20, 8, 3))),
    ],
    "unet_model": [
        Case("unet_model((192, 64, 4), n_filters=64, n_classes=16)",
             {"input_size": (192, 64, 4), "n_filters": 64, "n_classes": 16}, ()),
        Case("unet_model((32, 48, 3), n_filters=4, n_classes=5)",
             {"input_size": (32, 48, 3), "n_filters": 4, "n_classes": 5}, ()),
    ],
}


def check(kind: str, function, cases: list[Case], numeric: bool = False, verbose: bool = True) -> list[str]:
    """Run ``cases`` against the student's ``function``; print a report; return all problems."""
    if not callable(function):
        problems = [f"{kind} is not a function (got {type(function).__name__}); run its cell first"]
        if verbose:
            print(f"{FAIL_MARK} {problems[0]}")
        return problems
    build, build_reference, filters_hint = _BUILDERS[kind]
    problems: list[str] = []
    for case in cases:
        keras.backend.clear_session()
        student, errors = build(function, case)
        case_problems = list(errors)
        if student is not None:
            expected = build_reference(case)
            case_problems += compare_layers(describe(student), describe(expected), filters_hint)
            case_problems += _compare_outputs(kind, student, expected)
            if numeric and case.numeric and not case_problems:
                match = outputs_match(student, expected)
                if match is False:
                    case_problems.append("with the same weights, your layers compute different outputs from the reference \u2014 "
                                         + _wiring_diagnosis(kind, student, case))
                elif match is None:
                    case_problems.append("could not compare outputs: the layers with weights differ from the reference")
        if verbose:
            mark = PASS_MARK if not case_problems else FAIL_MARK
            print(f"{mark} {kind}: {case.title}")
            for problem in case_problems:
                print(f"    - {problem}")
        problems += [f"[{case.title}] {p}" for p in case_problems]
        if student is None:
            break  # the function does not run yet: one message is enough
    return problems


def _compare_outputs(kind: str, student, expected) -> list[str]:
    """Output shapes of the whole block (the layer list alone cannot tell a pooled skip connection)."""
    names = ["next_layer", "skip_connection"] if kind == "conv_block" else ["output"]
    got = [_shape(t.shape) for t in student.outputs]
    want = [_shape(t.shape) for t in expected.outputs]
    problems = []
    for name, g, w in zip(names, got, want):
        if g != w:
            hint = ""
            if name == "skip_connection":
                hint = " \u2014 the skip connection is the tensor before pooling"
            problems.append(f"{name} has shape {g}; expected {w}{hint}")
    return problems


def recording() -> bool:
    """True inside nbgrader's autograding kernel (set by unet_course.sandbox)."""
    return os.environ.get(RECORD_ENV) == "1"


def record(kind: str, function, hidden: bool = False) -> None:
    """Build the student's blocks for every case and publish their Keras configs as evidence.

    Nothing here decides the grade: unet_course.verify rebuilds each model from its config in a
    separate process and compares it with the reference, so replacing this function, Keras or
    numpy inside the kernel can only lose marks.
    """
    from IPython.display import display

    cases = HIDDEN_CASES[kind] if hidden else PUBLIC_CASES[kind]
    for index, case in enumerate(cases):
        keras.backend.clear_session()
        if not callable(function):
            model, problems = None, [f"{kind} is not a function (got {type(function).__name__}); run its cell first"]
        elif kind == "unet_model":
            model, problems = _build_unet_model(function, case, placeholders=True)
        else:
            model, problems = _BUILDERS[kind][0](function, case)
        evidence = {"kind": kind, "hidden": hidden, "case": index, "problems": problems,
                    "config": json.loads(model.to_json()) if model is not None else None}
        display({EVIDENCE_MIME: evidence}, raw=True)
        if model is None:
            break
    print(f"{kind}: recorded for grading ({'hidden' if hidden else 'public'} configurations); checked outside this notebook")


def assert_passes(kind: str, function, hidden: bool = False) -> None:
    """What a test cell calls: check, print, and raise one ``GradingFailure`` listing every problem."""
    if recording():
        return record(kind, function, hidden)
    cases = HIDDEN_CASES[kind] if hidden else PUBLIC_CASES[kind]
    if kind == "unet_model" and not hidden:
        print("(unet_model is checked with the course's reference conv_block and upsampling_block,"
              " so only its own wiring counts here)")
    problems = check(kind, function, cases, numeric=hidden)
    if problems:
        count = len(problems)
        raise GradingFailure(f"{kind}: {count} problem{'s' if count > 1 else ''}:\n" + "\n".join(f"  - {p}" for p in problems))
    print("\033[92mAll tests passed\033[0m" if not hidden else "\033[92mAll hidden checks passed\033[0m")


def assert_runs(kind: str, function) -> None:
    """The visible half of a hidden test cell: the function must at least build its block."""
    if recording():
        return  # the hidden half records every case; the verdict is given outside the kernel
    if not callable(function):
        raise GradingFailure(f"{kind} is not a function (got {type(function).__name__}); run its cell first")
    build = _BUILDERS[kind][0]
    keras.backend.clear_session()
    _, problems = build(function, PUBLIC_CASES[kind][0])
    if problems:
        raise GradingFailure(f"{kind} must run before the hidden tests can check it: {problems[0]}")
