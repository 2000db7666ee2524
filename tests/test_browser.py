"""A real browser: JupyterLab 4 in Debian's Chromium, driven by Playwright, on a solved release.

It opens the assignment, runs all cells, waits for the kernel to go idle, and checks that no cell
errored, the plots and the ipywidgets explorer are shown (and the explorer reacts to its slider),
and nbgrader's Validate button reports success. Screenshots are saved under test-artifacts/ when
it fails.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from unet_course import pretrained
from unet_grader.examples import make_submission

from conftest import RELEASE_NOTEBOOK, ROOT, SOURCE_NOTEBOOK

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "unet-course-browser-test"


def _skip_or_fail(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright_api():
    if not CHROMIUM.exists():
        _skip_or_fail("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed")
    with sync_playwright() as playwright:
        yield playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a folder with a solved copy of the release notebook."""
    yield from _serve_solved(tmp_path_factory.mktemp("lab"), RELEASE_NOTEBOOK, SOURCE_NOTEBOOK)


@pytest.fixture(scope="module")
def lab_zh(tmp_path_factory):
    """The same, with the Simplified Chinese edition's release (editions/zh-CN)."""
    edition = ROOT / "editions" / "zh-CN"
    yield from _serve_solved(tmp_path_factory.mktemp("lab_zh"),
                             edition / RELEASE_NOTEBOOK.relative_to(ROOT), edition / SOURCE_NOTEBOOK.relative_to(ROOT))


def _serve_solved(root, release_notebook, source_notebook):
    solved = make_submission(release_notebook, source_notebook)
    nbformat.write(solved, str(root / "unet_segmentation.ipynb"))
    port = _free_port()
    env = dict(os.environ, UNET_COURSE_SMALL="1", JUPYTER_CONFIG_DIR=str(root / ".jupyter"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    log = (root / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited: {(root / 'lab.log').read_text()[-2000:]}")
            time.sleep(1)
    else:
        server.kill()
        pytest.fail("jupyter lab did not start within 90 s")
    yield url, root
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture
def page(playwright_api, request):
    browser = playwright_api.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield page
    report = getattr(request.node, "rep_call", None)
    ARTIFACTS.mkdir(exist_ok=True)
    outcome = "passed" if report is not None and report.passed else "FAILED"
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{outcome}.png"))
    browser.close()


def _accept_kernel_dialog(page):
    """JupyterLab may ask which kernel to start; take the notebook's own (Python 3)."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if dialog.count():
        dialog.get_by_role("button", name="Select").click()


def _run_all_and_wait(page, timeout_s: int = 480):
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    time.sleep(2)
    _accept_kernel_dialog(page)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        _accept_kernel_dialog(page)
        texts = [t.strip() for t in prompts.all_inner_texts()]
        # every code cell has run once it shows an execution count like [12]:
        if texts and all(t[1:-2].strip().isdigit() for t in texts if t):
            return
        time.sleep(2)
    pytest.fail(f"the notebook did not finish within {timeout_s} s: prompts {texts}")


def _assert_no_traceback(page):
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                          has_text="Traceback")
    assert errors.count() == 0, errors.first.inner_text()[:2000]


def _save_and_validate(page):
    """Save, click nbgrader's Validate and wait for its Success dialog (returned)."""
    page.keyboard.press("Control+s")
    time.sleep(2)
    page.locator(".validate-button").first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=300_000)
    page.locator(".jp-Dialog-content", has_text="Success").wait_for(timeout=300_000)
    return dialog


def test_solved_assignment_runs_shows_plots_and_widget_and_validates(lab, page):
    url, _ = lab
    page.goto(f"{url}/lab/tree/unet_segmentation.ipynb?token={TOKEN}")
    _run_all_and_wait(page)

    _assert_no_traceback(page)
    assert page.get_by_text("All tests passed").count() >= 3
    assert page.locator(".jp-RenderedImage img").count() >= 5, "the plots are not shown"

    # the shipped weights load into the student's own unet_model and segment as well as stated
    assert page.locator(".jp-OutputArea-output", has_text="the trained weights fit your unet_model").count() == 1
    scores = page.locator(".jp-OutputArea-output", has_text="validation frames: mIoU").first.text_content()
    found = re.search(r"mIoU (\d\.\d+)", scores)
    assert found, scores
    shown_miou = float(found.group(1))
    stated_miou = pretrained.metrics()["val_miou"]
    assert shown_miou > stated_miou - 0.1, (shown_miou, stated_miou, scores)

    explorer = page.locator(".jupyter-widgets img").first
    explorer.wait_for(timeout=60_000)
    before = explorer.get_attribute("src")
    slider = page.locator(".jupyter-widgets .widget-slider .noUi-handle, .jupyter-widgets .slider-container .ui-slider-handle, .jupyter-widgets input[type=range]").first
    slider.focus()
    page.keyboard.press("ArrowRight")
    deadline = time.time() + 60
    while time.time() < deadline and explorer.get_attribute("src") == before:
        time.sleep(1)
    assert explorer.get_attribute("src") != before, "the explorer did not react to its slider"

    dialog = _save_and_validate(page)
    assert "passes all the tests" in dialog.inner_text()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    news = page.locator(".jp-toast-button", has_text="No")
    if news.count():
        news.first.click()
    explorer.scroll_into_view_if_needed()


def test_chinese_release_runs_in_chinese_and_validates(lab_zh, page):
    """The Chinese edition's release, solved: it runs, its checks speak Chinese, Validate passes."""
    url, _ = lab_zh
    page.goto(f"{url}/lab/tree/unet_segmentation.ipynb?token={TOKEN}")
    _run_all_and_wait(page)

    _assert_no_traceback(page)
    assert page.get_by_text("用 U-Net 做语义分割").count() >= 1  # the teaching text
    assert page.get_by_text("全部测试通过").count() >= 3  # the checks' messages (unet_course.i18n)
    assert page.get_by_text("All tests passed").count() == 0

    dialog = _save_and_validate(page)
    assert "passes all the tests" in dialog.inner_text()
