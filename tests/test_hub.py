"""The course on a real JupyterHub, end to end, as a class would run it.

JupyterHub (with configurable-http-proxy from npm, tools/hub/) on 127.0.0.1, an instructor and three
students (the hub's DummyAuthenticator; SimpleLocalProcessSpawner, one home folder each), nbgrader's
exchange in a temporary folder. The instructor releases; ``alice`` logs in on the hub's login page in
Chromium, opens the Assignment List in JupyterLab, clicks Fetch, works (the solved notebook is written
into her fetched folder), clicks Submit; ``bob`` and ``carol`` fetch and submit through the same server
API the Assignment List uses (``/user/<name>/assignments/...``, with a hub API token of their own).
The instructor collects, autogrades in the sandbox, reads the scores through formgrader's API and
adjusts one, generates the feedback (no hidden test code) and releases it; each student fetches their
feedback and gets their own page and nobody else's. formgrader lists only the course's assignment.

Every server listens on 127.0.0.1 only; the hub, the proxy and the single-user servers are stopped
(process groups killed) when the module ends, even when a step fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT
from unet_grader.assignment import ASSIGNMENT, EXERCISES, NOTEBOOK
from unet_grader.coursedir import Course, copy_course, nbgrader

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
PROXY = ROOT / "tools" / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
ARTIFACTS = ROOT / "test-artifacts"
INSTRUCTOR = "instructor"
BROWSER_STUDENT = "alice"
API_STUDENTS = ("bob", "carol")
STUDENTS = (BROWSER_STUDENT, *API_STUDENTS)
PASSWORD = "unet-course-hub-test"
# what each student hands in: (exercises solved, mistakes) -> expected points per exercise
WORK = {
    "alice": ((tuple(EXERCISES), ()), {"conv_block": 25.0, "upsampling_block": 25.0, "unet_model": 50.0}),
    "bob": ((tuple(EXERCISES), ("concat_order",)), {"conv_block": 25.0, "upsampling_block": 0.0, "unet_model": 50.0}),
    "carol": (((), ()), {"conv_block": 0.0, "upsampling_block": 0.0, "unet_model": 0.0}),
}
ADJUSTMENT = ("bob", "upsampling_block", 10.0)  # the instructor gives bob 10 points by hand


def _skip_or_fail(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it: see .ci/run and tools/ensure-venv.sh)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    """A running JupyterHub and the course around it; ``api``/``user_api`` talk to it over HTTP."""

    def __init__(self, process: subprocess.Popen, url: str, service_token: str, course: Path, exchange: Path,
                 homes: Path, log: Path):
        self.process, self.url, self.service_token = process, url, service_token
        self.course, self.exchange, self.homes, self.log = course, exchange, homes, log
        self.tokens: dict[str, str] = {}
        self.started: set[int] = set()  # every process the hub started (proxy, servers), to stop at the end

    def remember_children(self) -> None:
        import psutil

        try:
            self.started.update(child.pid for child in psutil.Process(self.process.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass

    def request(self, method: str, path: str, token: str, body=None, timeout: float = 120):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read().decode()
                return response.status, (json.loads(text) if text.strip() else None)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()[:2000]

    def api(self, method: str, path: str, body=None):
        """The hub's REST API with the test's service token (admin of users and servers)."""
        return self.request(method, "/hub/api" + path, self.service_token, body)

    def user_api(self, user: str, method: str, path: str, body=None):
        """A path under the user's own server (through the proxy), with a token of that user."""
        if user not in self.tokens:
            status, reply = self.api("POST", f"/users/{user}/tokens",
                                     {"note": "course test", "scopes": [f"access:servers!user={user}"]})
            assert status in (200, 201), f"no API token for {user}: {status} {reply}"
            self.tokens[user] = reply["token"]
        return self.request(method, f"/user/{user}{path}", self.tokens[user], body)

    def home(self, user: str) -> Path:
        return self.homes / user

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _hub_config(path: Path, *, port: int, hub_port: int, proxy_api_port: int, homes: Path, configs: Path,
                service_token: str, tmp: Path) -> None:
    scripts = Path(sys.executable).parent
    args = ["--allow-root"] if os.geteuid() == 0 else []
    path.write_text(f"""\
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{tmp / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = "{tmp / 'jupyterhub_cookie_secret'}"
c.JupyterHub.pid_file = "{tmp / 'jupyterhub.pid'}"
c.ConfigurableHTTPProxy.command = ["{PROXY}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = "{secrets.token_hex(16)}"
c.ConfigurableHTTPProxy.pid_file = "{tmp / 'proxy.pid'}"

c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "{PASSWORD}"
c.Authenticator.allowed_users = {set(STUDENTS) | {INSTRUCTOR}!r}
c.Authenticator.admin_users = {{"{INSTRUCTOR}"}}

c.JupyterHub.spawner_class = "simple"  # SimpleLocalProcessSpawner: a home folder per user, no OS users
c.SimpleLocalProcessSpawner.home_dir_template = "{homes}/{{username}}"
c.Spawner.cmd = ["{scripts / 'jupyterhub-singleuser'}"]
c.Spawner.args = {args!r}
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180

def per_user_config(spawner):
    # nbgrader's exchange settings; students also get their student id and no formgrader
    spawner.environment["JUPYTER_CONFIG_PATH"] = "{configs}/" + spawner.user.name
    spawner.environment["TF_CPP_MIN_LOG_LEVEL"] = "3"

c.Spawner.pre_spawn_hook = per_user_config

c.JupyterHub.services = [{{"name": "course-test", "api_token": "{service_token}"}}]
c.JupyterHub.load_roles = [{{"name": "course-test", "services": ["course-test"],
                             "scopes": ["admin:users", "admin:servers", "tokens", "list:users"]}}]
""")


def _user_configs(configs: Path, exchange: Path, course_id: str) -> None:
    """One Jupyter config folder per user (JUPYTER_CONFIG_PATH): the exchange for everyone.

    Every single-user server here runs as the same OS user, so each student's nbgrader config names
    their student id (on a real hub nbgrader takes it from the OS user, or JUPYTERHUB_USER for jovyan).
    Students' servers do not load formgrader.
    """
    for user in (INSTRUCTOR, *STUDENTS):
        folder = configs / user
        folder.mkdir(parents=True)
        lines = ["c = get_config()  # noqa: F821", f"c.Exchange.root = {str(exchange)!r}",
                 f"c.CourseDirectory.course_id = {course_id!r}"]
        if user != INSTRUCTOR:
            lines.append(f"c.CourseDirectory.student_id = {user!r}")
            (folder / "jupyter_server_config.json").write_text(json.dumps(
                {"ServerApp": {"jpserver_extensions": {"nbgrader.server_extensions.formgrader": False}}}))
        (folder / "nbgrader_config.py").write_text("\n".join(lines) + "\n")


def _stop(process: subprocess.Popen, pids: list[int]) -> None:
    """Stop the hub (it stops the servers and the proxy), then kill whatever of its tree is left."""
    import psutil

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    own_group = os.getpgid(0)
    for pid in [process.pid, *pids]:
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            continue
        try:
            if group != own_group:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            psutil.Process(pid).wait(timeout=10)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
            pass


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A running JupyterHub; the instructor's home is a copy of the course (its own gradebook), using the exchange."""
    if shutil.which("node") is None or not PROXY.exists():
        _skip_or_fail(f"configurable-http-proxy is not installed ({PROXY}): install node and npm, then run"
                      " tools/ensure-venv.sh (npm ci --prefix tools/hub)")
    tmp = tmp_path_factory.mktemp("hub")
    exchange, homes, configs = tmp / "exchange", tmp / "home", tmp / "config"
    homes.mkdir()
    course = copy_course(homes / INSTRUCTOR, ROOT)
    with open(course / "nbgrader_config.py", "a") as config:  # the instructor's CLI uses the same exchange
        config.write(f"\nc.Exchange.root = {str(exchange)!r}\n")
    course_id = Course(course).directory.course_id
    assert course_id, "the course's nbgrader_config.py sets no CourseDirectory.course_id"
    _user_configs(configs, exchange, course_id)

    port, hub_port, proxy_api_port = _free_port(), _free_port(), _free_port()
    service_token = secrets.token_hex(24)
    _hub_config(tmp / "jupyterhub_config.py", port=port, hub_port=hub_port, proxy_api_port=proxy_api_port,
                homes=homes, configs=configs, service_token=service_token, tmp=tmp)
    log = tmp / "jupyterhub.log"
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("JUPYTER_CONFIG_DIR", None)
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
                                   cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    instance = Hub(process, f"http://127.0.0.1:{port}", service_token, course, exchange, homes, log)
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{instance.url}/hub/api/", timeout=3):
                    break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"jupyterhub exited ({process.returncode}):\n{instance.log_tail()}")
                if time.time() > deadline:
                    pytest.fail(f"jupyterhub did not answer within 90 s:\n{instance.log_tail()}")
                time.sleep(1)
        instance.remember_children()
        yield instance
    finally:
        instance.remember_children()
        _stop(process, sorted(instance.started))


def _start_servers(hub: Hub, users) -> None:
    for user in users:
        status, reply = hub.api("POST", f"/users/{user}/server")
        assert status in (201, 202), f"could not start {user}'s server: {status} {reply}"


def _wait_for_servers(hub: Hub, users) -> None:
    deadline = time.time() + 240
    waiting = set(users)
    while waiting and time.time() < deadline:
        for user in sorted(waiting):
            status, model = hub.api("GET", f"/users/{user}")
            server = (model or {}).get("servers", {}).get("", {}) if status == 200 else {}
            if server.get("ready"):
                waiting.discard(user)
        time.sleep(1)
    hub.remember_children()
    assert not waiting, f"single-user servers not ready after 240 s: {sorted(waiting)}\n{hub.log_tail()}"


def _action(hub: Hub, user: str, action: str, course_id: str) -> dict:
    """What the Assignment List's buttons do: POST /user/<name>/assignments/<action>."""
    status, reply = hub.user_api(user, "POST", f"/assignments/{action}",
                                 {"course_id": course_id, "assignment_id": ASSIGNMENT})
    assert status == 200, f"{user}: {action} answered {status}: {reply}"
    assert reply["success"], f"{user}: {action} failed: {reply['value']}"
    return reply


def _statuses(reply: dict) -> set[str]:
    return {entry["status"] for entry in reply["value"] if entry["assignment_id"] == ASSIGNMENT}


def _write_work(hub: Hub, user: str) -> None:
    """The student's work, saved over the fetched notebook (as JupyterLab would save it)."""
    from unet_grader.examples import make_submission

    (solved, mistakes), _ = WORK[user]
    fetched = hub.home(user) / ASSIGNMENT / NOTEBOOK
    assert fetched.is_file(), f"{user} has no fetched notebook at {fetched}"
    notebook = make_submission(fetched, hub.course / "solutions" / ASSIGNMENT / NOTEBOOK, solved, mistakes)
    nbformat.write(notebook, str(fetched))


def _browser_fetch_and_submit(hub: Hub, playwright, user: str) -> None:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outcome = "FAILED"
    try:
        page.goto(f"{hub.url}/hub/login")
        page.fill("input#username_input", user)
        page.fill("input#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_url(f"**/user/{user}/lab**", timeout=120_000)  # the hub sends her to her running server
        page.get_by_role("menuitem", name="Nbgrader", exact=True).click(timeout=120_000)
        page.get_by_role("menuitem", name="Assignment List", exact=True).click()
        fetch = page.locator("#released_assignments_list button", has_text="Fetch")
        fetch.wait_for(timeout=60_000)
        fetch.click()
        submit = page.locator("#fetched_assignments_list button", has_text="Submit")
        submit.wait_for(timeout=60_000)
        _write_work(hub, user)
        submit.click()
        page.locator("#submitted_assignments_list button", has_text="Fetch Feedback").wait_for(timeout=60_000)
        outcome = "passed"
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"test_hub-{user}-{outcome}.png"))
        browser.close()


def _inbound(hub: Hub, course_id: str) -> dict[str, list[Path]]:
    inbound = hub.exchange / course_id / "inbound"
    found: dict[str, list[Path]] = {}
    for folder in sorted(inbound.iterdir()) if inbound.is_dir() else []:
        student, assignment, _ = folder.name.split("+", 2)
        if assignment == ASSIGNMENT:
            found.setdefault(student, []).append(folder)
    return found


class Steps:
    """How long each step took (printed at the end; run with -s to see it)."""

    def __init__(self):
        self.last, self.times = time.time(), []

    def done(self, name: str) -> None:
        now = time.time()
        self.times.append((name, now - self.last))
        self.last = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.times)


def test_a_class_on_jupyterhub(hub):
    from nbgrader.apps.api import NbGraderAPI
    from traitlets.config import Config

    from unet_grader import batch, sandbox
    from unet_grader.release import release
    from unet_grader.report import feedback

    if not CHROMIUM.exists():
        _skip_or_fail("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed")
    if not sandbox.active():
        _skip_or_fail(f"the grading sandbox cannot run here: {sandbox.unavailable_reason()} (apt-get install bubblewrap)")
    course, course_id = hub.course, Course(hub.course).directory.course_id
    steps = Steps()

    # formgrader on the repository as laid out lists only real assignments: nbgrader's source folder
    # holds the assignment and nothing else (the self-learner's notebooks live in notebooks/)
    api = NbGraderAPI(coursedir=Course(ROOT).directory, config=Config({"Exchange": {"root": str(hub.exchange)}}))
    assert sorted(api.get_source_assignments()) == [ASSIGNMENT]

    # the servers start while the instructor releases
    _start_servers(hub, (INSTRUCTOR, *STUDENTS))

    # 1. the instructor releases: the gradebook gets the assignment, the exchange its release
    release(course)
    nbgrader(course, "release_assignment", ASSIGNMENT, "--force")
    assert (hub.exchange / course_id / "outbound" / ASSIGNMENT / NOTEBOOK).is_file()
    _wait_for_servers(hub, (INSTRUCTOR, *STUDENTS))
    steps.done("release and servers")

    # students see it in their Assignment List; formgrader is the instructor's only
    for user in STUDENTS:
        status, reply = hub.user_api(user, "GET", f"/assignments?course_id={urllib.parse.quote(course_id)}")
        assert status == 200 and reply["success"], f"{user}'s assignment list: {status} {reply}"
        assert _statuses(reply) == {"released"}, reply
        status, _ = hub.user_api(user, "GET", "/formgrader/api/assignments")
        assert status == 404, f"a student's server serves formgrader ({status})"

    # 2. alice fetches and submits in Chromium, bob and carol through the same server API
    with sync_playwright() as playwright:
        _browser_fetch_and_submit(hub, playwright, BROWSER_STUDENT)
    steps.done("browser fetch+submit")
    for user in API_STUDENTS:
        assert "fetched" in _statuses(_action(hub, user, "fetch", course_id))
        _write_work(hub, user)
        assert "submitted" in _statuses(_action(hub, user, "submit", course_id))
    inbound = _inbound(hub, course_id)
    assert sorted(inbound) == sorted(STUDENTS), f"exchange inbound holds {sorted(inbound)}"
    for user, folders in inbound.items():
        assert len(folders) == 1 and (folders[0] / NOTEBOOK).is_file(), f"{user}: {folders}"
    steps.done("API fetch+submit")

    # 3. the instructor collects and autogrades in the sandbox
    nbgrader(course, "collect", ASSIGNMENT)
    assert Course(course).submitted_students() == sorted(STUDENTS)
    results = {result.student: result for result in batch.autograde(course, progress=False)}
    for user, (_, expected) in WORK.items():
        scores = {name: score for name, (score, _) in results[user].scores.items()}
        assert scores == expected, f"{user}: {scores} (problems: {results[user].problems})"
    steps.done("collect+autograde")

    # 4. formgrader (the instructor's server) lists the assignment and the submissions with their scores
    status, assignments = hub.user_api(INSTRUCTOR, "GET", "/formgrader/api/assignments")
    assert status == 200, assignments
    assert [a["name"] for a in assignments] == [ASSIGNMENT], f"formgrader lists {[a['name'] for a in assignments]}"
    status, submissions = hub.user_api(INSTRUCTOR, "GET", f"/formgrader/api/submissions/{ASSIGNMENT}")
    assert status == 200, submissions
    listed = {s["student"]: s for s in submissions if s.get("submitted")}
    assert sorted(listed) == sorted(STUDENTS), submissions
    for user, (_, expected) in WORK.items():
        assert listed[user]["autograded"], listed[user]
        assert listed[user]["score"] == pytest.approx(sum(expected.values())), listed[user]
        assert listed[user]["max_score"] == pytest.approx(100.0), listed[user]

    # ... and accepts a manual adjustment, which the gradebook then holds
    student, exercise, points = ADJUSTMENT
    status, notebooks = hub.user_api(INSTRUCTOR, "GET", f"/formgrader/api/submitted_notebooks/{ASSIGNMENT}/"
                                                        f"{Path(NOTEBOOK).stem}")
    assert status == 200, notebooks
    [notebook] = [n for n in notebooks if n["student"] == student]
    status, grades = hub.user_api(INSTRUCTOR, "GET", f"/formgrader/api/grades?submission_id={notebook['id']}")
    assert status == 200, grades
    [grade] = [g for g in grades if g["name"] == f"test_{exercise}_hidden"]
    assert grade["auto_score"] == 0.0 and grade["max_score"] >= points, grade
    status, updated = hub.user_api(INSTRUCTOR, "PUT", f"/formgrader/api/grade/{grade['id']}",
                                   {"manual_score": points})
    assert status == 200 and updated["manual_score"] == points, updated
    adjusted = sum(WORK[student][1].values()) + points
    with batch.gradebook(Course(course)) as book:
        assert book.find_submission(ASSIGNMENT, student).score == pytest.approx(adjusted)
    status, submissions = hub.user_api(INSTRUCTOR, "GET", f"/formgrader/api/submissions/{ASSIGNMENT}")
    assert {s["student"]: s["score"] for s in submissions}[student] == pytest.approx(adjusted)
    steps.done("formgrader")

    # 5. feedback: generated without hidden test code, released through the exchange
    feedback(course)
    pages = {user: Course(course).feedback_page(user) for user in STUDENTS}
    for user, page in pages.items():
        html = page.read_text()
        assert "assert_passes_hidden" not in html and "BEGIN HIDDEN TESTS" not in html, f"{user}'s feedback"
    assert "concatenation order is swapped" in pages["bob"].read_text()
    for user in STUDENTS:  # the key students fetch their feedback by, kept by collect, autograde and feedback
        assert (Course(course).feedback_folder(user) / "submission_secret.txt").is_file(), (
            f"{user}'s feedback folder has no submission_secret.txt (nbgrader submit wrote it into the"
            " submission): nbgrader release_feedback cannot release their feedback without it")
    nbgrader(course, "release_feedback", ASSIGNMENT)
    assert len(list((hub.exchange / course_id / "feedback").glob("*.html"))) == len(STUDENTS)
    steps.done("feedback")

    # 6. each student fetches their feedback: their own page, nobody else's
    contents = {user: page.read_bytes() for user, page in pages.items()}
    for user in STUDENTS:
        reply = _action(hub, user, "fetch_feedback", course_id)
        [submitted] = [e for e in reply["value"] if e["status"] == "submitted"]
        assert any(s["has_local_feedback"] for s in submitted["submissions"]), submitted
        got = sorted((hub.home(user) / ASSIGNMENT / "feedback").rglob("*.html"))
        assert [p.name for p in got] == [Path(NOTEBOOK).with_suffix(".html").name], f"{user} got {got}"
        assert got[0].read_bytes() == contents[user], f"{user} fetched someone else's feedback"
        others = [other for other in STUDENTS if other != user]
        assert all(got[0].read_bytes() != contents[other] for other in others)
    steps.done("fetch feedback")
    print(f"\nhub workflow: {steps}")
