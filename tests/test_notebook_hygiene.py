"""Committed notebooks: no local paths, tokens, timestamps or huge images; the release has no outputs."""

from __future__ import annotations

import base64
import json
import re

import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "solutions").glob("*/*.ipynb")) + sorted((ROOT / "assignments").glob("*/*.ipynb")) + sorted(
    (ROOT / "notebooks").glob("*/*.ipynb")) + sorted((ROOT / "editions").glob("*/*/*/*.ipynb"))  # editions/<lang>/...
RELEASES = sorted((ROOT / "assignments").glob("*/*.ipynb")) + sorted((ROOT / "editions").glob("*/assignments/*/*.ipynb"))
LOCAL_PATH = re.compile(r"(/work/|/home/|/root/|/tmp/|/Users/|[A-Z]:\\\\Users)")
SECRET = re.compile(r"(token=[0-9a-f]{16,}|api[_-]?key|password\s*=)", re.IGNORECASE)
MAX_IMAGE_BYTES = 300_000
MAX_NOTEBOOK_BYTES = 2_000_000


def _outputs(notebook):
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            yield cell, output


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_clean(path):
    text = path.read_text()
    notebook = json.loads(text)
    assert len(text.encode()) < MAX_NOTEBOOK_BYTES, f"{path.name} is {len(text) // 1000} kB"
    for cell, output in _outputs(notebook):
        rendered = json.dumps({k: v for k, v in output.items() if k != "data"}) + json.dumps(
            {k: v for k, v in output.get("data", {}).items() if not k.startswith("image/")})
        assert not LOCAL_PATH.search(rendered), f"local path in an output: {LOCAL_PATH.search(rendered).group(0)}"
        assert not SECRET.search(rendered), "something like a secret in an output"
        for mime, data in output.get("data", {}).items():
            if mime.startswith("image/") and mime != "image/svg+xml":
                size = len(base64.b64decode("".join(data) if isinstance(data, list) else data))
                assert size < MAX_IMAGE_BYTES, f"a {size // 1000} kB image in {path.name}"
    for cell in notebook["cells"]:
        assert "execution" not in cell.get("metadata", {}), "execution timestamps: use `make notebooks`"
    # Saved widget state is kilobytes of model JSON nobody reads (and a stale picture of the widgets):
    # `make notebooks` runs with store_widget_state=False.
    assert "widgets" not in notebook["metadata"], "saved widget state in the metadata: use `make notebooks`"


@pytest.mark.parametrize("path", RELEASES, ids=lambda p: str(p.relative_to(ROOT)))
def test_release_has_no_outputs(path):
    notebook = json.loads(path.read_text())
    assert all(not cell.get("outputs") for cell in notebook["cells"] if cell["cell_type"] == "code")
