"""Retake the README's JupyterLab screenshot from the solved notebook's committed outputs.

The picture must show what the committed run shows (the full setting, `make notebooks`), so it is
taken from those outputs, opened in a real JupyterLab in Debian's Chromium (no kernel runs):
the shipped weights loaded into the student's ``unet_model`` and its predictions.

    .venv/bin/python tools/readme_screenshot.py [--out docs/jupyterlab.jpg]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "solutions" / "unet_segmentation" / "unet_segmentation.ipynb"
TOKEN = "unet-course-screenshot"
ANCHOR = "the trained weights fit your unet_model"  # printed by the cell the picture starts at


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_lab(root: Path) -> tuple[subprocess.Popen, str]:
    settings = root / ".settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # every cell rendered (no windowing), so the anchor can be scrolled to
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port = _free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".jupyter"), JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(90):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            return server, url
        except OSError:
            time.sleep(1)
    server.kill()
    raise SystemExit("jupyter lab did not start within 90 s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "jupyterlab.jpg"))
    args = parser.parse_args(argv)
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
        server, url = _start_lab(root)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={TOKEN}")
                page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
                time.sleep(3)
                dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
                if dialog.count():
                    dialog.get_by_role("button", name="No Kernel").click()
                news = page.locator(".jp-toast-button", has_text="No")
                if news.count():
                    news.first.click()
                page.locator(".jp-Notebook").first.click()
                page.keyboard.press("Control+b")  # hide the file browser: more room for the outputs
                anchor = page.locator(".jp-OutputArea-output", has_text=ANCHOR).first
                anchor.wait_for(timeout=60_000)
                cell = page.locator(".jp-Cell", has=anchor).first
                cell.evaluate("element => element.scrollIntoView({block: 'start'})")
                time.sleep(2)
                png = page.screenshot()
                browser.close()
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
    Image.open(io.BytesIO(png)).convert("RGB").save(args.out, quality=85, optimize=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
