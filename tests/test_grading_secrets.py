"""No grader secret reaches a student's kernel, nor anything a student (or a log shown to one) can see.

The grader's environment holds a PostgreSQL gradebook URL with a password (given as ``--db`` to
the grading command and as UNET_COURSE_DB_URL to the others), a JupyterHub token, a key with the
course's own UNET_COURSE_ prefix and one with TensorFlow's TF_ prefix. A correct submission prints
its whole environment (and what /proc shows of its own and other processes') in an extra cell and in
a cell right before a test, and writes it to a file in its folder. After release, autograde, feedback
and export through the course's CLI, none of the secrets appears in the autograded notebook, the
feedback, the CSV, any file of autograded/, feedback/ or grading-problems/, or the commands' output;
and the submission still gets 100.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT
from unet_course.evidence import CASES_ENV, RECORD_ENV
from unet_grader import sandbox
from unet_grader.assignment import ASSIGNMENT, NOTEBOOK
from unet_grader.coursedir import DB_ENV, as_course, copy_course
from unet_grader.examples import make_submission, write_submission

RUN = uuid.uuid4().hex[:10]
PASSWORD = f"hunter2-SECRET-{RUN}"
SECRETS = {"JUPYTERHUB_API_TOKEN": f"tok-SECRET-{RUN}", "UNET_COURSE_S3_KEY": f"s3key-SECRET-{RUN}",
           "TF_SECRET": f"tf-SECRET-{RUN}"}

SPY = r'''
import json, os
print("ENVIRONMENT:", json.dumps(dict(os.environ), sort_keys=True))
for path in ("/proc/self/environ", "/proc/1/environ", f"/proc/{os.getppid()}/environ"):
    try:
        print(path, open(path, "rb").read().replace(b"\0", b"\n").decode(errors="replace"))
    except OSError as error:
        print(path, "unreadable:", error)
with open("environment.txt", "a") as out:
    out.write(json.dumps(dict(os.environ), sort_keys=True) + "\n")
'''


def test_kernel_env_passes_only_named_variables():
    grader = {"LANG": "de_DE.UTF-8", "TZ": "Europe/Berlin", "OMP_NUM_THREADS": "2", "UNET_COURSE_SMALL": "1",
              "ONEDNN_MAX_CPU_ISA": "AVX2", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              DB_ENV: f"postgresql+psycopg2://grader:{PASSWORD}@db/unet", **SECRETS,
              "AWS_SECRET_ACCESS_KEY": f"aws-SECRET-{RUN}", "PATH": "/opt/evil/bin", "PYTHONPATH": "/opt/evil",
              "LD_PRELOAD": "/opt/evil.so", "HOME": "/root", "MPLCONFIGDIR": "/root/.mpl"}
    env = sandbox.kernel_env(grader, "/tmp/kernel-home")

    needed = {"HOME", "MPLCONFIGDIR", "PYTHONNOUSERSITE", "LANG", "PATH", RECORD_ENV, CASES_ENV}
    assert set(env) <= set(sandbox.PASSED_ENV) | needed, sorted(set(env) - set(sandbox.PASSED_ENV) - needed)
    performance = ("LANG", "TZ", "OMP_NUM_THREADS", "UNET_COURSE_SMALL", "ONEDNN_MAX_CPU_ISA",
                   "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
    assert {name: env[name] for name in performance} == {name: grader[name] for name in performance}
    assert env["HOME"] == "/tmp/kernel-home" and env["MPLCONFIGDIR"].startswith("/tmp/kernel-home")
    assert "/opt/evil" not in env["PATH"] and "PYTHONPATH" not in env and "LD_PRELOAD" not in env
    values = json.dumps(env)
    for secret in [PASSWORD, *SECRETS.values(), f"aws-SECRET-{RUN}"]:
        assert secret not in values

    args = sandbox.sandbox_env(env)  # what bubblewrap sets: exactly these, after clearing everything
    assert args[0] == "--clearenv"
    assert {args[i + 1] for i, a in enumerate(args) if a == "--setenv"} == set(env) | {"UNET_COURSE_SANDBOXED"}


def _spying_submission(course) -> nbformat.NotebookNode:
    """A correct submission that shows its environment after the setup and right before a test cell."""
    course = as_course(course)
    notebook = make_submission(course.release_notebook(), course.source_notebook())
    setup = 1 + next(i for i, c in enumerate(notebook.cells) if "course.setup" in c.source)
    notebook.cells.insert(setup, nbformat.v4.new_code_cell(SPY))
    first_test = next(i for i, c in enumerate(notebook.cells)
                      if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("test_"))
    notebook.cells.insert(first_test, nbformat.v4.new_code_cell(SPY))
    return notebook


def _cli(course: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unet_grader", "--course", str(course), *args], env=env,
                          capture_output=True, text=True, timeout=1200, check=False)


@pytest.mark.slow
def test_no_grader_secret_reaches_the_kernel_the_feedback_the_csv_or_the_logs(tmp_path, postgres_db_url):
    if sandbox.unavailable_reason() and os.environ.get("CI") != "true":
        pytest.skip(f"bubblewrap cannot run here: {sandbox.unavailable_reason()}")
    from sqlalchemy.engine import make_url

    db_url = make_url(postgres_db_url).set(password=PASSWORD).render_as_string(hide_password=False)
    assert PASSWORD in db_url  # the server trusts 127.0.0.1: the password is accepted and ignored
    course = copy_course(tmp_path / "course", ROOT)
    base = {k: v for k, v in os.environ.items() if k != DB_ENV}
    env = dict(base, **SECRETS, **{DB_ENV: db_url, sandbox.SANDBOX_ENV: "require"})

    runs = {"release": _cli(course, "release", env=env)}
    write_submission(_spying_submission(course), course, "spy")
    grading_env = {k: v for k, v in env.items() if k != DB_ENV}  # the gradebook URL comes as --db here
    runs["autograde"] = _cli(course, "--db", db_url, "autograde", env=grading_env)
    runs["feedback"] = _cli(course, "feedback", env=env)
    runs["export"] = _cli(course, "export", "--to", str(course / "grades.csv"), env=env)
    for name, run in runs.items():
        assert run.returncode == 0, f"{name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"

    with open(course / "grades.csv") as handle:
        rows = {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}
    assert rows == {"spy": 100.0}  # graded into the PostgreSQL gradebook named by --db, fully
    autograded = course / "autograded" / "spy" / ASSIGNMENT
    printed = [text for cell in json.loads((autograded / NOTEBOOK).read_text())["cells"]
               for output in cell.get("outputs", []) if "ENVIRONMENT:" in (text := "".join(output.get("text", "")))]
    assert len(printed) == 2 and all("UNET_COURSE_SANDBOXED" in text for text in printed)  # the spy did run, twice
    assert "UNET_COURSE_SANDBOXED" in (autograded / "environment.txt").read_text()
    assert "ENVIRONMENT:" in as_course(course).feedback_page("spy").read_text()

    places = {f"the output of `{name}`": run.stdout + run.stderr for name, run in runs.items()}
    files = [course / "grades.csv"] + [path for folder in ("autograded", "feedback", "grading-problems")
                                       for path in sorted((course / folder).rglob("*")) if path.is_file()]
    places.update({str(path.relative_to(course)): path.read_text(errors="replace") for path in files})
    for secret in [PASSWORD, *SECRETS.values()]:
        leaks = [place for place, text in places.items() if secret in text]
        assert not leaks, f"{secret} leaked into {leaks}"
