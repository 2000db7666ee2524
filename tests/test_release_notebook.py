"""The student release, executed as a student would first run it: it fails only where work is left."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import RELEASE_NOTEBOOK

pytestmark = pytest.mark.slow

STUDENT_FUNCTIONS = ("conv_block(", "upsampling_block(", "unet_model(", "unet.", "model=unet", "history", "checks.assert")


def test_release_runs_until_the_student_has_work_to_do(tmp_path):
    notebook = nbformat.read(str(RELEASE_NOTEBOOK), as_version=4)
    env_before = dict(os.environ)
    os.environ["UNET_COURSE_SMALL"] = "1"
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    errors = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        failed = [o for o in cell.outputs if o.output_type == "error"]
        uses_student_work = any(name in cell.source for name in STUDENT_FUNCTIONS)
        if failed and not uses_student_work:
            errors.append((index, cell.source.splitlines()[0], failed[0].ename, failed[0].evalue[:200]))
        if cell.metadata.get("nbgrader", {}).get("grade"):
            assert failed, f"test cell {index} passed on the unanswered release"
    assert not errors, f"cells that do not use the student's work failed: {errors}"
