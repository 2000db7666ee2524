"""The grading sandbox, tried from inside a real kernel started the way nbgrader starts it.

Each probe runs in a kernel launched by unet_course.sandbox.SandboxKernelManager (bubblewrap)
through nbclient, and tries what a hostile submission would: read the source notebook, the
gradebook and other students' work, write outside its folder, reach a server on 127.0.0.1,
import the reference solution, read the grader's environment, fork or allocate without bound.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from unet_grader import sandbox

from conftest import ROOT

pytestmark = pytest.mark.skipif(sandbox.unavailable_reason() is not None and os.environ.get("CI") != "true",
                                reason=f"bubblewrap cannot run here: {sandbox.unavailable_reason()}")

PROBES = r'''
import json, os, socket, sys
from pathlib import Path
result = {}
def attempt(name, action):
    try:
        value = action()
        result[name] = "ok" if value is None else value
    except BaseException as error:
        result[name] = type(error).__name__
for name, path in PATHS.items():
    attempt("read " + name, lambda path=path: Path(path).read_bytes()[:0] or "read")
attempt("list course", lambda: sorted(os.listdir(COURSE)))
attempt("write course", lambda: Path(COURSE, "planted.txt").write_text("x") and "written")
attempt("write own folder", lambda: Path("answer.txt").write_text("x") and "written")
attempt("network", lambda: socket.create_connection(("127.0.0.1", PORT), timeout=3).close() or "connected")
attempt("reference", lambda: __import__("unet_grader.reference") and "imported")
attempt("grading helpers", lambda: __import__("unet_course.checks") and "imported")
def grader_files():
    found = []
    for entry in sys.path:
        for root, dirs, files in os.walk(entry or "."):
            found += [os.path.join(root, n) for n in dirs + files
                      if n in ("unet_grader", "solutions", "expected_answers") or n.startswith("unet_grader")]
            dirs[:] = [d for d in dirs if d not in ("tensorflow", "jaxlib")]
    return found
attempt("grader files", grader_files)
attempt("secret env", lambda: os.environ.get("UNET_TEST_SECRET", "absent"))
attempt("uid", lambda: os.getuid())
def fork_many():
    children = []
    try:
        for _ in range(2000):
            pid = os.fork()
            if pid == 0:
                import time; time.sleep(3); os._exit(0)
            children.append(pid)
        return "forked 2000"
    except OSError as error:
        return f"stopped after {len(children)}: {type(error).__name__}"
attempt("fork", fork_many)
attempt("memory", lambda: len(bytearray(12 * 2**30)) and "allocated 12 GiB")
attempt("cgroup", lambda: open("/proc/self/cgroup").read())
print(json.dumps(result))
'''


@pytest.fixture(scope="module")
def probe_result(tmp_path_factory):
    course = tmp_path_factory.mktemp("sandbox") / "course"
    (course / "solutions" / "a").mkdir(parents=True)
    (course / "solutions" / "a" / "a.ipynb").write_text("{}")
    (course / "gradebook.db").write_text("grades")
    (course / "submitted" / "other" / "a").mkdir(parents=True)
    (course / "submitted" / "other" / "a" / "a.ipynb").write_text("{}")
    workdir = course / "autograded" / "student" / "a"
    workdir.mkdir(parents=True)
    paths = {"source": course / "solutions" / "a" / "a.ipynb", "gradebook": course / "gradebook.db",
             "other student": course / "submitted" / "other" / "a" / "a.ipynb",
             "repo source": ROOT / "solutions" / "unet_segmentation" / "unet_segmentation.ipynb",
             "ssh keys": Path.home() / ".ssh"}
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    saved = {key: os.environ.get(key) for key in ("UNET_TEST_SECRET", sandbox.SANDBOX_ENV)}
    os.environ.update({"UNET_TEST_SECRET": "s3cret", sandbox.SANDBOX_ENV: "require"})
    setup = (f"PATHS = {json.dumps({k: str(v) for k, v in paths.items()})}\n"
             f"COURSE = {str(course)!r}\nPORT = {server.getsockname()[1]}\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup + PROBES)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            kernel_manager_class=sandbox.SandboxKernelManager,
                            resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    finally:
        server.close()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    text = "".join(o.get("text", "") for o in notebook.cells[0].outputs if o.output_type == "stream")
    errors = [o for o in notebook.cells[0].outputs if o.output_type == "error"]
    assert not errors, errors
    return json.loads(text.strip().splitlines()[-1]), course, workdir, accepted


def test_submission_cannot_read_the_source_gradebook_or_other_students(probe_result):
    result, course, _, _ = probe_result
    for name in ("source", "gradebook", "other student", "repo source", "ssh keys"):
        assert result[f"read {name}"] in ("FileNotFoundError", "PermissionError", "IsADirectoryError"), (name, result)
    assert result["list course"] == ["autograded"], result["list course"]  # only the way to its own folder


def test_submission_writes_only_its_own_folder(probe_result):
    result, course, workdir, _ = probe_result
    assert result["write course"] in ("PermissionError", "OSError", "FileNotFoundError")
    assert not (course / "planted.txt").exists()
    assert result["write own folder"] == "written" and (workdir / "answer.txt").read_text() == "x"


def test_submission_cannot_reach_the_network(probe_result):
    result, _, _, accepted = probe_result
    assert result["network"] in ("OSError", "ConnectionRefusedError", "TimeoutError", "socket.timeout")
    assert not accepted, "a connection reached the server on 127.0.0.1"


def test_grading_package_is_absent_but_student_package_loads(probe_result):
    """The sandbox shows Python, the student package and the student's folder: the grader (the
    reference answers, the hidden checks) is neither importable nor anywhere on the path."""
    result, *_ = probe_result
    assert result["reference"] == "ModuleNotFoundError", result["reference"]
    assert result["grading helpers"] == "imported"
    assert result["grader files"] == [], result["grader files"]


def test_environment_and_privileges_are_dropped(probe_result):
    result, *_ = probe_result
    assert result["secret env"] == "absent"
    if os.geteuid() == 0:
        assert result["uid"] >= sandbox.UNPRIVILEGED_BASE


def test_fork_and_memory_bombs_are_bounded(probe_result):
    result, *_ = probe_result
    assert result["fork"].startswith("stopped after"), result["fork"]
    assert result["memory"] == "MemoryError", result["memory"]


@pytest.mark.slow
def test_without_bubblewrap_grading_still_works_and_says_so_loudly(make_course, monkeypatch, capsys):
    from unet_grader.batch import autograde
    from unet_grader.coursedir import CourseError
    from unet_grader.release import release
    from unet_grader.coursedir import as_course
    from unet_grader.examples import make_submission, write_submission

    monkeypatch.setenv(sandbox.BWRAP_ENV, "bwrap-not-installed")
    monkeypatch.delenv(sandbox.SANDBOX_ENV, raising=False)
    course = make_course()
    release(course)
    write_submission(make_submission(as_course(course).release_notebook(), as_course(course).source_notebook()),
                     course, "alice")
    [result] = autograde(course, progress=False)
    assert "UNSANDBOXED" in capsys.readouterr().err
    assert result.total == (100.0, 100.0), result.problems

    monkeypatch.setenv(sandbox.SANDBOX_ENV, "require")
    with pytest.raises(CourseError, match="bubblewrap"):
        autograde(course, progress=False)
