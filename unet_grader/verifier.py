"""Decide the autograded tests outside the student's process.

Inside nbgrader's kernel a submission can rewrite anything: the grading helpers, Keras, numpy,
builtins. So there the test cells only *record* what the student's functions build (each
model's Keras JSON config, see ``unet_course.checks.record``), and this module, run by nbgrader's process
in a fresh interpreter that never executes student code, rebuilds every model from its config
and checks it against the reference: layer types and settings, output shapes, parameter
counts and, for hidden tests, outputs computed with shared weights.

A forged record can only describe a model; to describe the right one, a student needs the
right architecture, which is the exercise. Records are untrusted data: only plain built-in
Keras layers are accepted, and the process runs with memory and time limits.

    python -m unet_grader.verifier < records.jsonl > verdicts.json     # one notebook
    python -m unet_grader.verifier --serve /path/to/socket                # one notebook per connection

A grading worker keeps one serving verifier for all its submissions (:mod:`unet_grader.warm`):
it imports TensorFlow and builds the reference models once. Nothing of one connection reaches the
next: a connection's records only ever meet the reference, and the verdicts go back on that
connection alone.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections import OrderedDict

from unet_course.i18n import _, language
from unet_grader import assignment

ALLOWED_LAYERS = {
    "InputLayer", "Conv2D", "Conv2DTranspose", "MaxPooling2D", "Dropout", "Concatenate", "Activation",
    "ReLU", "BatchNormalization", "UpSampling2D", "Add", "Cropping2D", "ZeroPadding2D", "AveragePooling2D",
    "SpatialDropout2D", "LeakyReLU", "Softmax",
}
MAX_LAYERS = 400
MAX_PROBLEMS = 12


class UntrustedRecord(ValueError):
    """A record that is not a plain Keras functional model made of built-in layers."""


def check_config(config) -> None:
    """Refuse anything but a functional model of allowed built-in layers (no Lambda, no custom code)."""
    if not isinstance(config, dict) or config.get("class_name") not in ("Functional", "Model"):
        raise UntrustedRecord("the recorded model is not a Keras functional model")
    if config.get("module") not in (None, "keras", "keras.models", "keras.src.models.functional"):
        raise UntrustedRecord("the recorded model comes from an unexpected module")
    layers = (config.get("config") or {}).get("layers")
    if not isinstance(layers, list) or not layers or len(layers) > MAX_LAYERS:
        raise UntrustedRecord("the recorded model has no layers or far too many")
    for layer in layers:
        name = layer.get("class_name") if isinstance(layer, dict) else None
        if name not in ALLOWED_LAYERS or layer.get("module") not in ("keras.layers", None):
            raise UntrustedRecord(f"the model uses a layer this exercise does not need ({str(name)[:60]})")
        if layer.get("registered_name") not in (None, name):
            raise UntrustedRecord("the model uses a custom (registered) layer")


def rebuild(config):
    import keras

    check_config(config)
    return keras.saving.deserialize_keras_object(copy.deepcopy(config), safe_mode=True)


def _clean(problems) -> list[str]:
    """Student-side problems are untrusted text: keep a few, short, as plain strings."""
    if not isinstance(problems, list):
        return [_("the recorded result is malformed")]
    return [str(p)[:400] for p in problems[:MAX_PROBLEMS]]


def _public_description(exercise: str, case) -> dict | None:
    """A public configuration is judged on the very description the student's notebook used (the
    shipped specifications, generated from the reference and checked for drift), so the notebook
    and the grader say the same thing."""
    from unet_course import checks

    return next((expected for public, expected in checks.public_cases(exercise) if public == case), None)


_EXPECTED: dict = {}  # (exercise, hidden, case) -> (reference model or None, description)


def expected(exercise: str, case, hidden: bool):
    """The reference model of one configuration (kept only where outputs are compared) and the
    description the student's model is compared with; built once per process."""
    from unet_course import checks
    from unet_grader import reference

    key = (exercise, hidden, json.dumps(case.to_json(), sort_keys=True))
    if key not in _EXPECTED:
        model = reference.build_expected(exercise, case)
        description = _public_description(exercise, case) if not hidden else None
        if description is None:
            description = checks.describe_model(exercise, model)
        _EXPECTED[key] = (model if hidden and case.numeric else None, description)
    return _EXPECTED[key]


def case_problems(exercise: str, case, student, hidden: bool) -> list[str]:
    """Every problem of one configuration: the shared comparison (the same messages the
    notebook's public checks give), then for hidden tests the same-weights output comparison."""
    from unet_course import checks
    from unet_grader import reference

    expected_model, description = expected(exercise, case, hidden)
    problems = checks.compare_case(exercise, student, description)
    if hidden and case.numeric and not problems:
        match = reference.outputs_match(student, expected_model)
        if match is False:
            problems.append(_("with the same weights, your layers compute different outputs from the reference")
                            + " \u2014 " + reference.wiring_diagnosis(exercise, student, case))
        elif match is None:
            problems.append(_("could not compare outputs: the layers with weights differ from the reference"))
    return problems


# A configuration's problems are a function of the recorded model alone (its layers, settings
# and wiring): a model recorded again, byte for byte (most of a class's correct answers, and its
# common mistakes), gets the verdict it got before without being rebuilt.
_VERDICTS: OrderedDict = OrderedDict()
MAX_REMEMBERED = 512


def verdict(kind: str, hidden: bool, records: list) -> list[str]:
    """Every problem of one test cell from the kernel's records (empty: the cell passes)."""
    import keras

    by_case = {}
    for record in records:
        if isinstance(record, dict) and record.get("kind") == kind and record.get("hidden") == hidden:
            by_case.setdefault(record.get("case"), record)
    problems: list[str] = []
    for index, case in enumerate(assignment.cases(kind, hidden)):
        record = by_case.get(index)
        if record is None:
            problems.append(f"[{case.title}] " + _("no model was recorded for this configuration: the test cell did not"
                            " run to its end (did an earlier error, a deleted function or a replaced helper stop it?)"))
            break
        if record.get("config") is None:
            problems += [f"[{case.title}] {p}" for p in _clean(record.get("problems")) or [_("the block could not be built")]]
            break
        key = (language(), kind, hidden, index, json.dumps(record["config"], sort_keys=True))
        if key not in _VERDICTS:
            keras.backend.clear_session(free_memory=False)
            try:
                student = rebuild(record["config"])
            except Exception as error:  # noqa: BLE001 - untrusted input: any failure is a failed test
                problems.append(f"[{case.title}] the recorded model could not be checked: {str(error)[:200]}")
                break
            _VERDICTS[key] = [f"[{case.title}] {p}" for p in case_problems(kind, case, student, hidden)]
            while len(_VERDICTS) > MAX_REMEMBERED:
                _VERDICTS.popitem(last=False)
        _VERDICTS.move_to_end(key)
        problems += _VERDICTS[key]
    return problems


def check_function(exercise: str, function, hidden: bool = True) -> list[str]:
    """The same verdict for a function in this process (the instructor's own notebook run)."""
    from unet_course import checks

    problems: list[str] = []
    for case in assignment.cases(exercise, hidden):
        student, build_problems = checks.build(exercise, function, case)
        if student is None:
            return problems + [f"[{case.title}] {p}" for p in build_problems]
        problems += [f"[{case.title}] {p}" for p in case_problems(exercise, case, student, hidden)]
    return problems


def verdicts(cells: dict) -> dict:
    """``{grade_id: {"kind", "hidden", "records"}}`` -> ``{grade_id: [problems]}``."""
    return {grade_id: verdict(spec["kind"], bool(spec["hidden"]), spec.get("records") or [])
            for grade_id, spec in cells.items()}


LANGUAGE_KEY = "_language"  # a line {"_language": "zh_CN"}: the notebook's course speaks that language


def answer(lines) -> dict:
    """Verdicts for one notebook: JSON lines of ``{grade_id: spec}`` (a later line for a grade id
    replaces an earlier one), each checked as it arrives, in the language its first line names
    (the grader's: a Chinese edition's nbgrader_config.py sets it); the process's own afterwards."""
    from unet_course import i18n

    before = os.environ.get(i18n.LANGUAGE_ENV)
    results = {}
    try:
        for line in lines:
            if line.strip():
                cells = json.loads(line)
                if LANGUAGE_KEY in cells:
                    os.environ[i18n.LANGUAGE_ENV] = str(cells.pop(LANGUAGE_KEY))[:20]
                results.update(verdicts(cells))
    finally:
        if before is None:
            os.environ.pop(i18n.LANGUAGE_ENV, None)
        else:
            os.environ[i18n.LANGUAGE_ENV] = before
    return results


def serve(path: str) -> None:
    """Answer one notebook per connection on the Unix socket ``path``, one connection at a time,
    until standard input closes (the grading worker that started this process is gone).

    The socket listens before TensorFlow is imported: a notebook that starts meanwhile queues.
    """
    import gc
    import socket
    import threading

    def exit_with_parent():
        sys.stdin.read()
        os._exit(0)

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    threading.Thread(target=exit_with_parent, daemon=True).start()
    _warm_up()
    while True:
        connection, _address = server.accept()
        with connection, connection.makefile("r", encoding="utf-8") as lines:
            try:
                reply = json.dumps(answer(lines))
            except Exception as error:  # noqa: BLE001 - one malformed notebook must not stop the server
                reply = json.dumps({"error": f"{type(error).__name__}: {str(error)[:300]}"})
            try:
                connection.sendall(reply.encode())
            except OSError:
                pass  # the grader went away (it was stopped): nothing to answer
        gc.collect()  # between notebooks, off the grading's path


def _warm_up() -> None:
    from unet_course.course import import_tensorflow_quietly

    import_tensorflow_quietly()
    from unet_course import checks  # noqa: F401 - imported (with Keras) before the records arrive
    from unet_grader import reference  # noqa: F401


def main(argv=None) -> int:
    """One notebook on standard input, its verdicts on standard output; or ``--serve SOCKET``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"] and len(argv) == 2:
        serve(argv[1])
        return 0
    _warm_up()
    json.dump(answer(sys.stdin), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
