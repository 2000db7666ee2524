"""What a graded offering hands out holds no answers, and the student half works without the grader.

The bundle is built with the real command (``python -m unet_grader bundle DIR``), its wheel is
installed with its dependencies into a fresh virtual environment, and that environment is used
as a student's would be: from a folder outside the repository, with a clean environment. Then we
look for the answers every way we can think of: importing, reading every file, unmarshalling
the compiled modules.
"""

from __future__ import annotations

import json
import marshal
import os
import shutil
import subprocess
import sys
import textwrap
import time
import types
import zipfile
from importlib.util import MAGIC_NUMBER
from pathlib import Path

import nbformat
import pytest

from unet_grader.assignment import ASSIGNMENT, EXERCISES, NOTEBOOK
from unet_grader.examples import MISTAKES, apply_mistake, solution_code

from conftest import ROOT, SOURCE_NOTEBOOK

pytestmark = pytest.mark.slow

IMPORTS = ("import tensorflow as tf\nfrom tensorflow.keras.layers import Conv2D, Conv2DTranspose, Dropout, Input, "
           "MaxPooling2D, concatenate\n")
NETWORK_ERRORS = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
                  "Name or service not known", "Network is unreachable", "ConnectTimeout", "ReadTimeout", "ProxyError")
CHUNK = 1 << 24  # 16 MiB


def _exercise_cells(notebook: Path) -> dict[str, str]:
    cells = nbformat.read(str(notebook), as_version=4).cells
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in cells
            if c.metadata.get("nbgrader", {}).get("grade_id") in EXERCISES}


def answer_fingerprints() -> list[bytes]:
    """The non-trivial lines of the graded exercises' solutions, as they could appear in a file:
    plain, with single quotes, and JSON-escaped (as inside an .ipynb). The ungraded exercise (IoU
    from a confusion matrix) is left out: its answer is the course's own metrics, which students get."""
    lines, inside = set(), False
    for source in _exercise_cells(SOURCE_NOTEBOOK).values():
        for line in source.split("\n"):
            inside = ("### BEGIN SOLUTION" in line) or (inside and "### END SOLUTION" not in line)
            text = line.strip()
            if inside and len(text) >= 25 and not text.startswith("#"):
                lines.add(text)
    assert len(lines) >= 10, "the source notebook's solutions were not found: the fingerprints would prove nothing"
    variants = {v for text in lines for quoted in (text, text.replace('"', "'")) for v in (quoted, json.dumps(quoted)[1:-1])}
    return sorted(v.encode() for v in variants)


def files_with_answers(root: Path, fingerprints: list[bytes]) -> list[tuple[str, str]]:
    """Every (file, what it holds) under ``root`` with an answer line or a saved functional model.

    Read in 16 MiB chunks; ``bytes in`` per fingerprint beats one alternation regex: the fresh
    environment's 1.9 GB (TensorFlow is most of it) takes ~11 s on an idle core (21 s on a busy
    machine) against ~28 s for the regex."""
    found, overlap = [], max(map(len, fingerprints))
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        model_config = path.suffix in (".json", ".h5", ".keras")
        seen, tail = set(), b""
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                data, tail = tail + chunk, chunk[-overlap:]
                seen |= {f.decode() for f in fingerprints if f in data}
                if model_config:
                    seen |= {k.decode() for k in (b"inbound_nodes", b"Conv2DTranspose", b"conv2d_transpose") if k in data}
        if path.suffix == ".keras" and zipfile.is_zipfile(path):  # a zip: the model config is compressed inside
            with zipfile.ZipFile(path) as archive:
                seen |= {k for k in ("inbound_nodes", "Conv2DTranspose", "conv2d_transpose")
                         if any(k.encode() in archive.read(n) for n in archive.namelist())}
        if "inbound_nodes" in seen and seen & {"Conv2DTranspose", "conv2d_transpose"}:
            found.append((str(path), "a Keras functional model config with a transposed convolution"))
        found += [(str(path), f) for f in sorted(seen) if f.encode() in fingerprints]
    return found


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "student"
    run = subprocess.run([sys.executable, "-m", "unet_grader", "bundle", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


@pytest.fixture(scope="module")
def student_env(bundle, tmp_path_factory, request):
    """A fresh virtual environment with the student wheel and its dependencies (1.5-2.5 min; 1.9 GB,
    removed afterwards: pytest keeps its last three temp folders)."""
    venv = tmp_path_factory.mktemp("student-venv") / "venv"
    request.addfinalizer(lambda: shutil.rmtree(venv.parent, ignore_errors=True))
    base_python = getattr(sys, "_base_executable", None) or "python3.11"
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    (wheel,) = bundle.glob("*.whl")
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-input", "--quiet", str(wheel)],
                         capture_output=True, text=True, env=env, cwd=venv.parent, timeout=1500)
    if pip.returncode != 0:
        output = pip.stdout[-3000:] + pip.stderr[-3000:]
        if any(e in output for e in NETWORK_ERRORS) and os.environ.get("CI") != "true":
            pytest.skip(f"pip cannot reach the package index to install the wheel's dependencies:\n{output[-800:]}")
        pytest.fail(f"installing the student wheel failed:\n{output}")
    return venv


def run_student(venv: Path, code: str, payload=None):
    """Run ``code`` with the student environment's Python: isolated (-I: no PYTHON* variables, no
    script folder on sys.path), a bare environment, in a folder outside the repository. ``code``
    prints its answer as JSON on a line starting with RESULT:."""
    home = venv.parent / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    run = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", textwrap.dedent(code)], input=json.dumps(payload), cwd=home,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("RESULT:")]
    return json.loads(line[len("RESULT:"):])


def test_bundle_holds_the_release_notebook_and_one_student_wheel(bundle):
    files = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    wheels = [f for f in files if f.endswith(".whl")]
    assert len(wheels) == 1 and wheels[0].startswith("unet_course-"), files
    assert sorted(set(files) - set(wheels)) == [f"{ASSIGNMENT}/{NOTEBOOK}"], files
    names = zipfile.ZipFile(bundle / wheels[0]).namelist()
    assert {n.split("/")[0] for n in names} == {"unet_course", wheels[0].split("-py3")[0] + ".dist-info"}, names
    assert "unet_course/checks.py" in names and "unet_course/expected_layers.json" in names, names
    for forbidden in ("unet_grader", "solutions", "reference", "data_fetch", ".pyc", "__pycache__"):
        assert not [n for n in names if forbidden in n], (forbidden, names)


def test_release_notebook_holds_no_answers(bundle):
    text = (bundle / ASSIGNMENT / NOTEBOOK).read_bytes()
    for marker in (b"### BEGIN SOLUTION", b"### BEGIN HIDDEN TESTS", b"assert_passes_hidden"):
        assert marker not in text, marker
    assert not [f for f in answer_fingerprints() if f in text]


def test_public_checks_work_from_the_shipped_specs_alone(bundle, student_env):
    """Stubs are 'not finished', the solutions pass, a mistake is named: without unet_grader."""
    solved = {name: solution_code(source) for name, source in _exercise_cells(SOURCE_NOTEBOOK).items()}
    wrong = dict(solved, conv_block=apply_mistake(solved["conv_block"], MISTAKES["kernel_size_2"]))
    namespaces = {"stubs": _exercise_cells(bundle / ASSIGNMENT / NOTEBOOK), "solved": solved, "wrong": wrong}
    result = run_student(student_env, """
        import json, sys
        import unet_course.checks as checks
        payload, out = json.load(sys.stdin), {"checks_from": checks.__file__}
        try:
            import unet_grader
            out["grader"] = unet_grader.__file__
        except ModuleNotFoundError:
            out["grader"] = None
        for label, cells in payload["namespaces"].items():
            namespace = {}
            exec(payload["imports"], namespace)
            for source in cells.values():
                exec(source, namespace)
            out[label] = {name: checks.check_public(name, namespace[name], verbose=False) for name in cells}
        print("RESULT:" + json.dumps(out))
    """, {"imports": IMPORTS, "namespaces": namespaces})
    assert result["grader"] is None, f"unet_grader is importable in the student environment: {result['grader']}"
    assert str(student_env) in result["checks_from"], result["checks_from"]
    for name in EXERCISES:
        assert len(result["stubs"][name]) == 1 and "not finished yet" in result["stubs"][name][0], result["stubs"]
        assert result["solved"][name] == [], (name, result["solved"][name])
    assert any("kernel size" in p for p in result["wrong"]["conv_block"]), result["wrong"]
    assert result["wrong"]["upsampling_block"] == result["wrong"]["unet_model"] == []


def test_no_installed_module_holds_an_answer_function(student_env):
    """Import every module of the installed package (which also writes .pyc caches for the scan below)."""
    result = run_student(student_env, """
        import importlib, importlib.util, inspect, json, pkgutil, sys
        import unet_course
        names, answers = ("conv_block", "upsampling_block", "unet_model"), []
        modules = [m.name for m in pkgutil.walk_packages(unet_course.__path__, "unet_course.")]
        for module in [unet_course] + [importlib.import_module(m) for m in modules]:
            answers += [f"{module.__name__}.{attr}" for attr, value in vars(module).items()
                        if inspect.isfunction(value) and (attr in names or value.__name__ in names)]
        grader = [m for m in sys.modules if m.split(".")[0] in ("unet_grader", "reference")
                  or m.startswith("unet_course") and "reference" in m]
        grader += [m for m in ("unet_grader", "reference", "unet_course.reference") if importlib.util.find_spec(m)]
        print("RESULT:" + json.dumps({"modules": modules, "answers": answers, "grader": grader}))
    """)
    assert "unet_course.checks" in result["modules"] and "unet_course.train" in result["modules"], result
    assert result["answers"] == [], result["answers"]
    assert result["grader"] == [], result["grader"]


def test_scanner_finds_a_planted_answer(tmp_path):
    """Negative control: the file scan below can fail."""
    fingerprints = answer_fingerprints()
    line = "merge = concatenate([up, contractive_input], axis=3)"
    assert line.encode() in fingerprints
    (tmp_path / "clean.py").write_text("print('nothing to see')\n" * 1000)
    (tmp_path / "planted.py").write_text("x = 1\n" * 3_000_000 + "    " + line + "\n")  # past the first chunk
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'conv10 = Conv2D(n_classes, 1, padding="same")(conv9)')])
    nbformat.write(notebook, str(tmp_path / "planted.ipynb"))
    (tmp_path / "model.json").write_text(json.dumps({"layers": [{"class_name": "Conv2DTranspose", "inbound_nodes": []}]}))
    found = {Path(path).name for path, _ in files_with_answers(tmp_path, fingerprints)}
    assert found == {"planted.py", "planted.ipynb", "model.json"}


def test_no_file_in_the_student_environment_or_bundle_holds_an_answer(bundle, student_env):
    """Read every byte the student gets: the bundle and the whole environment (site-packages with
    TensorFlow, the shipped .json, the .pyc caches written by the imports above)."""
    fingerprints, start = answer_fingerprints(), time.monotonic()
    assert list(student_env.rglob("unet_course/__pycache__/checks.*.pyc")), "no compiled caches to scan"
    found = files_with_answers(bundle, fingerprints) + files_with_answers(student_env, fingerprints)
    assert found == [], found
    print(f"scanned the bundle and {student_env} in {time.monotonic() - start:.0f} s")


def test_compiled_modules_define_no_answer_functions(student_env):
    """The .pyc caches hold code objects, not source: none of them may be one of the exercises."""
    compiled = list(student_env.rglob("site-packages/unet_course/**/*.pyc"))
    assert len(compiled) >= 10, compiled

    def code_names(code: types.CodeType):
        yield code.co_name
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                yield from code_names(const)

    seen = set()
    for path in compiled:
        data = path.read_bytes()
        if data[:4] != MAGIC_NUMBER:
            pytest.skip(f"{path.name} was compiled by another Python version than this one")
        names = set(code_names(marshal.loads(data[16:])))
        assert not names & set(EXERCISES), (path, names & set(EXERCISES))
        seen |= names
    assert {"placeholder_conv_block", "check_public"} <= seen, "the walk missed functions it should see"
