"""The assignment's checks, as a student's notebook runs them.

Each check builds the student's block on fresh ``Input`` tensors, describes every layer from the
real Keras objects (class, output shape, parameter count and the settings that matter), and
compares that with the expected description shipped beside this module
(``expected_layers.json``, generated from the course's reference by the instructor's
``python -m unet_grader specs``). The reference itself is not part of what students install.
Every mismatch is reported with a hint, not just the first, and nothing the student returned is
ever compared with ``==``: only plain values read off Keras layers and tensors.

``unet_model`` is checked with stand-in blocks (:func:`placeholder_conv_block`,
:func:`placeholder_upsampling_block`) swapped in on both sides, so a mistake in an earlier
exercise costs points only there. The grader's verifier compares with the same
:func:`compare_case`, so a student reads the same messages in the notebook and in the feedback.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from unet_course import evidence  # noqa: E402
from unet_course.evidence import Case, _lists, _tuples, failure_message  # noqa: E402,F401 - part of this API
from unet_course.i18n import N_, _, ngettext  # noqa: E402

EXPECTED_LAYERS = Path(__file__).with_name("expected_layers.json")
PASS_MARK = "\u2713"  # check mark
FAIL_MARK = "\u2717"  # ballot x


class GradingFailure(AssertionError):
    """A test found problems; the message lists every one of them with a hint.

    Shown like a teacher's note: IPython (and so JupyterLab and nbgrader's Validate dialog) prints
    only the message, not a traceback into the course's code. The cell still fails.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{FAIL_MARK} {line}" if i == 0 else line for i, line in enumerate(str(self).splitlines())]


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

# Hints belong to the role a layer plays, so a hint is only ever given where it is right: the
# head's activation is not the transposed convolution's, nor is its initializer the encoder's.
_CONV = {
    "filters": N_("did you pass n_filters?"),
    "kernel_size": N_("a 3\u00d73 kernel is kernel_size=3"),
    "strides": N_("a convolution here keeps the default strides=1"),
    "padding": N_("padding='same' keeps height and width"),
    "activation": N_("use activation='relu'"),
    "kernel_initializer": N_("use kernel_initializer='he_normal'"),
}
ROLE_HINTS = {
    "encoder conv": _CONV,
    "decoder conv": _CONV,
    "final 3\u00d73 conv": dict(_CONV, filters=N_("the extra 3\u00d73 convolution has n_filters filters")),
    "transposed conv": {
        "filters": N_("did you pass n_filters?"),
        "kernel_size": N_("the transposed convolution uses a 3\u00d73 kernel (kernel_size=3)"),
        "strides": N_("the transposed convolution doubles height and width with strides=2"),
        "padding": N_("padding='same' makes the output exactly twice as high and wide as the input"),
        "activation": N_("the transposed convolution has no activation: leave activation out"),
    },
    "head": {
        "filters": N_("the last layer has one filter per class: n_classes"),
        "kernel_size": N_("the last layer is a 1\u00d71 convolution (kernel_size=1)"),
        "strides": N_("the last layer keeps the default strides=1"),
        "padding": N_("padding='same' keeps height and width"),
        "activation": N_("the last layer outputs logits: give it no activation (the loss uses from_logits=True)"),
        "kernel_initializer": N_("the last layer keeps Keras' default initializer: leave kernel_initializer out"),
    },
    "pooling": {"pool_size": N_("use pool_size=(2, 2), which halves height and width")},
    "dropout": {"rate": N_("did you pass dropout_prob?")},
    "concatenation": {"axis": N_("concatenate on the channel axis, axis=3")},
    "block": {  # unet_model: the layers of the (stand-in) blocks it calls
        "filters": N_("each block gets n_filters times its factor (1, 2, 4, 8, 16, then 8, 4, 2, 1)"),
        "rate": N_("the 4th and 5th encoder blocks use dropout_prob=0.3"),
        "kernel_size": N_("call the blocks with the arguments the exercise gives"),
        "strides": N_("call the blocks with the arguments the exercise gives"),
    },
}
_MISSING = {
    "dropout": N_("add Dropout(dropout_prob) when dropout_prob > 0"),
    "pooling": N_("pool with MaxPooling2D when max_pooling is True"),
    "encoder conv": N_("each block has two 3\u00d73 Conv2D layers"),
    "decoder conv": N_("after the concatenation come two 3\u00d73 Conv2D layers"),
    "transposed conv": N_("upsample with Conv2DTranspose"),
    "concatenation": N_("join the upsampled tensor and the skip connection with concatenate"),
    "final 3\u00d73 conv": N_("a 3\u00d73 Conv2D with n_filters filters comes before the last layer"),
    "head": N_("the last layer is a 1\u00d71 Conv2D with n_classes filters"),
}
_MISSING_IN_BLOCKS = {
    "Dropout": N_("the 4th and 5th encoder blocks use dropout_prob=0.3"),
    "MaxPooling2D": N_("four encoder blocks pool; only the 5th has max_pooling=False"),
}
_EXTRA = {
    ("conv_block", "Dropout"): N_("add Dropout only when dropout_prob > 0"),
    ("conv_block", "MaxPooling2D"): N_("pool only when max_pooling is True"),
    ("unet_model", "Dropout"): N_("only the 4th and 5th encoder blocks use dropout_prob=0.3"),
    ("unet_model", "MaxPooling2D"): N_("the 5th encoder block is called with max_pooling=False"),
}
_ROLE_BY_KIND = {
    "conv_block": {"Conv2D": "encoder conv", "Dropout": "dropout", "MaxPooling2D": "pooling"},
    "upsampling_block": {"Conv2DTranspose": "transposed conv", "Concatenate": "concatenation", "Conv2D": "decoder conv"},
}


def layer_roles(exercise: str, expected: list[LayerInfo]) -> list[str]:
    """The role of each expected layer (what its hints are about)."""
    if exercise == "unet_model":  # the stand-in blocks' layers, then the extra 3x3 conv and the head
        return ["block"] * (len(expected) - 2) + ["final 3\u00d73 conv", "head"]
    return [_ROLE_BY_KIND[exercise].get(layer.kind, "layer") for layer in expected]


def _field_problem(index: int, actual: LayerInfo, name: str, got, want, role: str) -> str:
    if name == "filters":
        where = _("layer {index} is {kind} with {got} filters; expected {want}").format(
            index=index, kind=actual.kind, got=got, want=want)
    else:
        where = _("layer {index} is {kind} with {setting} {got!r}; expected {want!r}").format(
            index=index, kind=actual.kind, setting=name.replace("_", " "), got=got, want=want)
    hint = ROLE_HINTS.get(role, {}).get(name, "")
    return f"{where} \u2014 {_(hint)}" if hint else where


def compare_layers(actual: list[LayerInfo], expected: list[LayerInfo], exercise: str) -> list[str]:
    """List every difference between two layer descriptions, each with the hint of the layer's role.

    Layers are aligned by class name first, so one missing layer is reported as missing rather
    than as every later layer being wrong.
    """
    roles = layer_roles(exercise, expected)
    problems: list[str] = []
    matcher = difflib.SequenceMatcher(a=[a.kind for a in actual], b=[e.kind for e in expected], autojunk=False)
    for op, a0, a1, e0, e1 in matcher.get_opcodes():
        if op == "equal":
            for offset in range(a1 - a0):
                problems += _compare_pair(a0 + offset + 1, actual[a0 + offset], expected[e0 + offset], roles[e0 + offset])
        if op in ("delete", "replace"):
            for i in range(a0, a1):
                kind = actual[i].kind
                if op == "replace" and i - a0 < e1 - e0:
                    want = expected[e0 + i - a0].kind
                    problems.append(_("layer {index} is {kind}; expected {want} here").format(
                        index=i + 1, kind=kind, want=want))
                else:
                    hint = _(_EXTRA.get((exercise, kind), N_("this layer is not part of the block")))
                    problems.append(_("extra layer {index}: {kind}").format(index=i + 1, kind=kind) + f" \u2014 {hint}")
        if op in ("insert", "replace"):
            for j in range(e0 + (a1 - a0 if op == "replace" else 0), e1):
                kind = expected[j].kind
                hint = _MISSING_IN_BLOCKS.get(kind, "") if roles[j] == "block" else _MISSING.get(roles[j], "")
                problems.append(_("missing layer: {kind} (expected as layer {index})").format(kind=kind, index=j + 1)
                                + (f" \u2014 {_(hint)}" if hint else ""))
    return problems


def _compare_pair(index: int, actual: LayerInfo, expected: LayerInfo, role: str) -> list[str]:
    problems = []
    for name, want in expected.config.items():
        got = actual.config.get(name)
        if got != want:
            problems.append(_field_problem(index, actual, name, got, want, role))
    if actual.output_shape != expected.output_shape:
        problems.append(_("layer {index} ({kind}) has output shape {got}; expected {want}").format(
            index=index, kind=actual.kind, got=actual.output_shape, want=expected.output_shape))
    if actual.params != expected.params and not problems:
        problems.append(_("layer {index} ({kind}) has {got:,} parameters; expected {want:,}").format(
            index=index, kind=actual.kind, got=actual.params, want=expected.params))
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
            return None, _("{name} is not finished yet: replace every None between ### START CODE HERE and"
                           " ### END CODE HERE (it raised {raised})").format(name=name, raised=raised)
        return None, _("{name} raised {raised}").format(name=name, raised=raised)


def _is_tensor(value) -> bool:
    return isinstance(value, keras.KerasTensor)


@contextlib.contextmanager
def stand_in_blocks(function):
    """Swap the stand-in ``conv_block``/``upsampling_block`` into the namespace ``function`` reads,
    so that ``unet_model`` is checked on its own wiring, whatever the student's blocks do."""
    namespace = getattr(function, "__globals__", {})
    missing = object()
    saved = {name: namespace.get(name, missing) for name in ("conv_block", "upsampling_block")}
    namespace["conv_block"] = placeholder_conv_block
    namespace["upsampling_block"] = placeholder_upsampling_block
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
# Building the student's blocks
# --------------------------------------------------------------------------------------------

def _build_conv_block(conv_block, case: Case):
    inputs = keras.Input(case.input_shapes[0])
    result, problem = _call("conv_block", conv_block, inputs, **case.kwargs)
    if problem:
        return None, [problem]
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return None, [_("conv_block must return two tensors: (next_layer, skip_connection)")]
    if not all(_is_tensor(t) for t in result):
        return None, [_("conv_block must return Keras tensors (the outputs of layers), not {types}").format(
            types=", ".join(type(t).__name__ for t in result))]
    return keras.Model(inputs, list(result)), []


def _build_upsampling_block(upsampling_block, case: Case):
    expansive = keras.Input(case.input_shapes[0])
    contractive = keras.Input(case.input_shapes[1])
    result, problem = _call("upsampling_block", upsampling_block, expansive, contractive, **case.kwargs)
    if problem:
        if "concatenat" in problem.lower():
            problem += " \u2014 " + _("the two tensors must agree in height and width: the transposed convolution"
                                      " needs strides=2 and padding='same', and concatenate joins them on axis=3")
        return None, [problem]
    if not _is_tensor(result):
        return None, [_("upsampling_block must return one Keras tensor, not {type}").format(type=type(result).__name__)]
    return keras.Model([expansive, contractive], result), []


def _concatenation_hint(problem: str) -> str:
    """Why unet_model's upsampled tensor and skip connection do not fit, from the shapes Keras names."""
    shapes = [tuple(int(d) for d in m.split(",")) for m in re.findall(r"\(None, (\d+, \d+), \d+\)", problem)]
    if len(shapes) == 2 and shapes[1] == tuple(2 * d for d in shapes[0]):
        return _("the upsampled tensor is half the size of the skip connection: the bottom of the U was pooled"
                 " once too often (the 5th encoder block is called with max_pooling=False)")
    if len(shapes) == 2 and shapes[0] == tuple(2 * d for d in shapes[1]):
        return _("the skip connection is half the size of the upsampled tensor: pass index 1 of the encoder"
                 " block (its skip connection), not index 0 (its pooled output)")
    return _("each upsampling block needs the previous block's output and the skip connection (index 1) of the"
             " encoder block at the same resolution")


def _build_unet_model(unet_model, case: Case):
    with stand_in_blocks(unet_model):
        result, problem = _call("unet_model", unet_model, **case.kwargs)
    if problem:
        if "concatenat" in problem.lower():
            problem += " \u2014 " + _concatenation_hint(problem)
        return None, [problem]
    if not isinstance(result, keras.Model):
        return None, [_("unet_model must return a tf.keras.Model, not {type}").format(type=type(result).__name__)]
    return result, []


_BUILDERS = {"conv_block": _build_conv_block, "upsampling_block": _build_upsampling_block,
             "unet_model": _build_unet_model}


def build(exercise: str, function, case: Case):
    """The model ``function`` builds for ``case`` (``unet_model`` with the stand-in blocks), and
    the problems that stopped it (then the model is None)."""
    if not callable(function):
        return None, [_("{exercise} is not a function (got {type}); run its cell first").format(
            exercise=exercise, type=type(function).__name__)]
    # Fresh layer names for each configuration; no forced garbage collection (0.2 s a call with
    # TensorFlow loaded, a dozen calls per grading): Python's own collector frees old models.
    keras.backend.clear_session(free_memory=False)
    return _BUILDERS[exercise](function, case)


# --------------------------------------------------------------------------------------------
# One comparison, used by the notebook's public checks and by the grader's verifier
# --------------------------------------------------------------------------------------------

def _producers(model) -> list[int]:
    """For each output of ``model``, the number of the layer that computes it (as in the messages)."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    return [next((i + 1 for i, layer in enumerate(layers) if layer is t._keras_history.operation), 0)
            for t in model.outputs]


def probe_outputs(model, seed: int = 0) -> list[list[float]]:
    """The outputs of ``model`` with deterministic weights (layer by layer, from ``seed``) on a
    deterministic input: what a same-weights comparison needs, as plain numbers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    inputs = [rng.uniform(-1, 1, (1, *t.shape[1:])).astype("float32") for t in model.inputs]
    outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.round(np.asarray(keras.ops.convert_to_numpy(o), "float64").ravel(), 5).tolist() for o in outputs]


def describe_model(exercise: str, model, probe: bool = False, variants: dict | None = None) -> dict:
    """What a check compares: input shapes, every layer, the block's output shapes and which layer
    computes each output; with ``probe``, the outputs with deterministic weights (and those of
    known wrong ``variants``, models by name, so a mismatch can be named)."""
    description = {"inputs": [_shape(t.shape[1:]) for t in model.inputs],
                   "layers": [vars(info) for info in describe(model)],
                   "outputs": [_shape(t.shape) for t in model.outputs],
                   "outputs_from": _producers(model)}
    if probe:
        description["probe"] = {"outputs": probe_outputs(model),
                                "variants": {name: probe_outputs(m) for name, m in (variants or {}).items()}}
    return description


_OUTPUT_NAMES = {"conv_block": ["next_layer", "skip_connection"]}
_OUTPUT_HINTS = {
    "next_layer": N_("next_layer is the pooled tensor (without pooling, the same tensor as the skip connection)"),
    "skip_connection": N_("the skip connection is the tensor after the Dropout (when there is one) and before the pooling"),
    "output": N_("return the output of the last layer"),
}
VARIANT_HINTS = {  # known wrong wirings that the same-weights probe can name
    "concatenation order swapped": N_(
        "the concatenation order is swapped: concatenate [up, contractive_input], the upsampled tensor first"
        " (the course's convention: both orders are a U-Net, but the weights, and so the grader's same-weights"
        " check, only fit one)"),
}


def compare_case(exercise: str, model, expected: dict) -> list[str]:
    """Every problem of the student's ``model`` against an expected description (empty: it passes)."""
    expected = _tuples(_lists(expected))
    got_inputs = tuple(_shape(t.shape[1:]) for t in model.inputs)
    if got_inputs != tuple(expected["inputs"]):
        return [_("the model was built for inputs {got}; this test uses {want}").format(
            got=list(got_inputs), want=list(expected["inputs"]))]
    layers = [LayerInfo(d["kind"], d["output_shape"], d["params"], dict(d["config"])) for d in expected["layers"]]
    actual = describe(model)
    problems = compare_layers(actual, layers, exercise)
    names = _OUTPUT_NAMES.get(exercise, ["output"])
    for name, got, want in zip(names, [_shape(t.shape) for t in model.outputs], expected["outputs"]):
        if got != want:
            hint = f" \u2014 {_(_OUTPUT_HINTS[name])}" if name == "skip_connection" else ""
            problems.append(_("{name} has shape {got}; expected {want}").format(name=name, got=got, want=want) + hint)
    if problems:
        return problems
    # Follow the graph: the same layers can be wired to return the wrong tensor.
    for name, got, want in zip(names, _producers(model), expected.get("outputs_from", [])):
        if got != want:
            what = (_("layer {index} ({kind})").format(index=got, kind=actual[got - 1].kind) if got
                    else _("no layer of the block"))
            problems.append(_("{name} is the output of {what}; expected the output of layer {index} ({kind})").format(
                name=name, what=what, index=want, kind=layers[want - 1].kind) + f" \u2014 {_(_OUTPUT_HINTS[name])}")
    probe = expected.get("probe")
    if probe and not problems:
        import numpy as np

        got = probe_outputs(model)
        if not all(np.allclose(g, w, atol=2e-4) for g, w in zip(got, probe["outputs"])):
            named = [name for name, outputs in probe["variants"].items()
                     if all(np.allclose(g, w, atol=2e-4) for g, w in zip(got, outputs))]
            problems.append(_("with the same weights, your layers compute different outputs from the expected ones")
                            + " \u2014 " + (_(VARIANT_HINTS[named[0]]) if named else
                                            _("check which tensor each layer takes as its input")))
    return problems


def report(exercise: str, title: str, problems: list[str]) -> None:
    """One line per configuration; the problems themselves are listed once, by the failure."""
    mark = PASS_MARK if not problems else FAIL_MARK
    count = (" " + ngettext("({count} problem, listed below)", "({count} problems, listed below)",
                            len(problems)).format(count=len(problems))) if problems else ""
    print(f"{mark} {exercise}: {title}{count}")


# --------------------------------------------------------------------------------------------
# What the notebook's test cells call
# --------------------------------------------------------------------------------------------

def public_cases(exercise: str) -> list[tuple[Case, dict]]:
    """The public configurations and what each should build, from ``expected_layers.json``."""
    table = json.loads(EXPECTED_LAYERS.read_text())
    return [(Case.from_json(entry["case"]), entry["expected"]) for entry in table["exercises"][exercise]]


def check_public(exercise: str, function, verbose: bool = True) -> list[str]:
    """Run the public configurations against the student's ``function``; return every problem."""
    problems: list[str] = []
    for case, expected in public_cases(exercise):
        model, case_problems = build(exercise, function, case)
        if model is not None:
            case_problems = compare_case(exercise, model, expected)
        if verbose:
            report(exercise, case.title, case_problems)
        problems += [f"[{case.title}] {p}" for p in case_problems]
        if model is None:
            break  # the function does not run yet: one message is enough
    return problems


def record(exercise: str, function, hidden: bool = False) -> None:
    """Build the student's blocks for every configuration the grader named and publish their
    Keras configs as evidence. Nothing here decides the grade (see :mod:`unet_course.evidence`)."""
    from IPython.display import display

    for index, data in enumerate(evidence.grading_cases(exercise, hidden)):
        model, problems = build(exercise, function, Case.from_json(data))
        record = {"kind": exercise, "hidden": hidden, "case": index, "problems": problems,
                  "config": json.loads(model.to_json()) if model is not None else None}
        display({evidence.EVIDENCE_MIME: record}, raw=True)
        if model is None:
            break
    print((_("{exercise}: recorded for grading (hidden configurations); checked outside this notebook") if hidden else
           _("{exercise}: recorded for grading (public configurations); checked outside this notebook")
           ).format(exercise=exercise))


def assert_passes(exercise: str, function) -> None:
    """A public test cell: check, print, and raise one ``GradingFailure`` listing every problem."""
    if evidence.recording():
        return record(exercise, function)
    if exercise == "unet_model":
        print(_("(unet_model is checked with stand-in conv_block and upsampling_block blocks,"
                " so only its own wiring counts here)"))
    problems = check_public(exercise, function)
    if problems:
        raise GradingFailure(failure_message(exercise, problems))
    print("\033[92m" + _("All tests passed") + "\033[0m")


def assert_runs(exercise: str, function) -> None:
    """The visible half of a hidden test cell: the function must at least build its block."""
    if evidence.recording():
        return  # the hidden half records every case; the verdict is given outside the kernel
    case = public_cases(exercise)[0][0]
    problems = build(exercise, function, case)[1]
    if problems:
        raise GradingFailure(_("{exercise} must run before the hidden tests can check it: {problem}").format(
            exercise=exercise, problem=problems[0]))


def assert_passes_hidden(exercise: str, function) -> None:
    """The hidden half of a hidden test cell (only in the instructor's source notebook).

    While grading it records the grader's configurations; on the instructor's machine it asks
    the grader's verifier directly. A student's environment has neither, and says so.
    """
    if evidence.recording():
        return record(exercise, function, hidden=True)
    try:
        from unet_grader.verifier import check_function
    except ImportError:
        print(_("The hidden tests run when your notebook is graded."))
        return
    problems = check_function(exercise, function, hidden=True)
    if problems:
        raise GradingFailure(failure_message(exercise, problems))
    print("\033[92m" + _("All hidden checks passed") + "\033[0m")
