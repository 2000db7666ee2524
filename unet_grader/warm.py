"""What a grading worker keeps between submissions, and what it starts fresh for each.

Kept, each in a process of its own, started with the first submission and reused for every later
one (see :func:`grader`):

* **a warm nbgrader**: a process that has imported nbgrader, nbconvert, the Jupyter client and the
  course's plug-ins once, and forks one child per submission; the child runs the real
  ``nbgrader autograde`` for that student (its own app, configuration and gradebook session,
  nothing shared with another student's) and is stopped, kernel and all, at the time limit;
* **the serving verifier** (``python -m unet_grader.verifier --serve``): TensorFlow imported and
  the reference models built once. It never runs student code; each notebook is one connection.

Fresh for every submission: the nbgrader process (a fork: milliseconds instead of the seconds
its imports take) and the student's kernel in its sandbox. Both kept processes end with the
worker that started them. A grading worker is a thread: the process's own (one submission after
another) or each worker thread of a local Dask cluster, each with its own kept processes. ``UNET_COURSE_WARM=off`` grades with a fresh ``nbgrader`` process
and a verifier of its own per submission instead (as plain ``nbgrader autograde`` does).

    python -m unet_grader.warm      # the warm nbgrader (started by grader(), not by hand)
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WARM_ENV = "UNET_COURSE_WARM"
CORES_ENV = "UNET_COURSE_CORES"  # "0,1": the cores a forked nbgrader, and the kernel it starts, keep to
LOG = logging.getLogger(__name__)
PRELOAD = (
    "nbgrader.apps.nbgraderapp", "nbgrader.apps.autogradeapp", "nbgrader.converters", "nbgrader.preprocessors",
    "nbgrader.api", "nbclient", "jupyter_client", "nbconvert", "sqlalchemy",
    "unet_grader.plugins", "unet_grader.plugins.execute", "unet_grader.plugins.verdicts",
    "unet_grader.plugins.reading", "unet_grader.plugins.repair", "unet_grader.plugins.tags",
    "unet_grader.plugins.stubs", "unet_grader.plugins.feedback", "unet_grader.sandbox",
)


def enabled() -> bool:
    """Warm grading needs ``fork`` (Linux, macOS) and can be turned off with UNET_COURSE_WARM=off."""
    return hasattr(os, "fork") and os.environ.get(WARM_ENV, "on").lower() not in ("off", "0", "no")


# --------------------------------------------------------------------------------------------
# The grading worker's side
# --------------------------------------------------------------------------------------------

class WarmGrader:
    """This process's warm nbgrader and serving verifier (one submission at a time)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._folder = Path(tempfile.mkdtemp(prefix="unet-warm-"))
        self._nbgrader: subprocess.Popen | None = None
        self._verifier: subprocess.Popen | None = None
        self._verifier_log = None
        self.socket = self._folder / "verifier.sock"

    def _ensure_verifier(self) -> None:
        if self._verifier is not None and self._verifier.poll() is None:
            return
        from unet_grader.coursedir import nbgrader_environment
        from unet_grader.plugins.verdicts import verifier_command

        self.socket.unlink(missing_ok=True)
        if self._verifier_log is None:
            self._verifier_log = open(self._folder / "verifier.log", "ab")
        self._verifier = subprocess.Popen(verifier_command("--serve", str(self.socket)), stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=self._verifier_log,
                                          env=nbgrader_environment())
        deadline = time.monotonic() + 60
        while not self.socket.exists():  # it listens before importing TensorFlow: a moment
            if self._verifier.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the serving verifier did not start (see " f"{self._folder / 'verifier.log'})")
            time.sleep(0.02)

    def _ensure_nbgrader(self) -> None:
        from unet_grader.coursedir import nbgrader_environment

        if self._nbgrader is not None and self._nbgrader.poll() is None:
            return
        self._nbgrader = subprocess.Popen([sys.executable, "-m", "unet_grader.warm"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env=nbgrader_environment(), text=True)
        if self._nbgrader.stdout.readline().strip() != "ready":
            self._nbgrader.kill()
            raise RuntimeError("the warm nbgrader did not start")

    def autograde(self, course_root: Path, args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        """Run ``nbgrader *args`` in ``course_root`` in a fork of the warm nbgrader, with this
        process's verifier; raise subprocess.TimeoutExpired (after stopping it) past ``timeout``.

        The warm processes are an optimisation, never a reason for a grade: if the verifier cannot
        be started the notebook starts its own, and if the warm nbgrader cannot (or stops) the
        submission is graded by a fresh ``nbgrader`` process.
        """
        from unet_grader.coursedir import run_nbgrader
        from unet_grader.plugins.verdicts import VERIFIER_PID_ENV, VERIFIER_SOCKET_ENV

        with self._lock:
            env = dict(env)
            try:
                self._ensure_verifier()
                env.update({VERIFIER_SOCKET_ENV: str(self.socket), VERIFIER_PID_ENV: str(self._verifier.pid)})
            except (OSError, RuntimeError) as error:
                LOG.warning("grading without the serving verifier: %s", error)
            try:
                self._ensure_nbgrader()
                return self._forked(course_root, args, env, timeout)
            except (OSError, RuntimeError, ValueError) as error:
                LOG.warning("grading with a fresh nbgrader process: %s", error)
            return run_nbgrader(course_root, *args, timeout=timeout, env=env)

    def _forked(self, course_root: Path, args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        log = self._folder / "nbgrader.log"
        request = {"args": args, "cwd": str(course_root), "env": env, "log": str(log)}
        self._nbgrader.stdin.write(json.dumps(request) + "\n")
        self._nbgrader.stdin.flush()
        answer = self._nbgrader.stdout.readline()
        if not answer:
            raise RuntimeError("the warm nbgrader stopped")
        pid = json.loads(answer)["pid"]
        try:
            reply = self._read_reply(timeout)
        except RuntimeError:  # the warm nbgrader is gone: so is this attempt, before any other starts
            _kill_group(pid)
            raise
        if reply is None:  # past the limit: the child, its kernel and all it started
            _kill_group(pid)
            if self._read_reply(60) is None:  # no word of it even then: start afresh next time
                self._nbgrader.kill()
        output = log.read_text(errors="replace") if log.exists() else ""
        if reply is None:
            raise subprocess.TimeoutExpired(["nbgrader", *args], timeout, output=output)
        return subprocess.CompletedProcess(["nbgrader", *args], reply["returncode"], output, "")

    def _read_reply(self, timeout: float) -> dict | None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._nbgrader.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return None
        line = self._nbgrader.stdout.readline()
        if not line:
            raise RuntimeError("the warm nbgrader stopped")
        return json.loads(line)

    def close(self) -> None:
        for process in (self._nbgrader, self._verifier):
            if process is not None and process.poll() is None:
                process.stdin.close()  # both end when their input does
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self._verifier_log is not None:
            self._verifier_log.close()
        shutil.rmtree(self._folder, ignore_errors=True)


_GRADERS: dict[int, WarmGrader] = {}  # thread ident -> that grading worker's warm grader
_GRADERS_LOCK = threading.Lock()


def grader() -> WarmGrader:
    """This thread's warm grader, started on first use and stopped by :func:`stop` or when the
    process exits."""
    with _GRADERS_LOCK:
        if threading.get_ident() not in _GRADERS:
            _GRADERS[threading.get_ident()] = WarmGrader()
        return _GRADERS[threading.get_ident()]


def stop(but_this_thread: bool = False) -> None:
    """Stop the warm graders now (the next submission starts a new one); ``but_this_thread``: all
    but the calling thread's (a local cluster's workers were threads of this process)."""
    with _GRADERS_LOCK:
        keep = threading.get_ident() if but_this_thread else None
        for ident in [ident for ident in _GRADERS if ident != keep]:
            _GRADERS.pop(ident).close()


atexit.register(stop)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# The warm nbgrader process
# --------------------------------------------------------------------------------------------

def _run_child(request: dict) -> None:
    """In the fork: the real ``nbgrader`` command line for one submission, then exit."""
    code = 1
    try:
        os.setsid()  # its own process group: stopped as a whole at the time limit
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if cores := os.environ.get(CORES_ENV):  # before nbgrader starts anything: the kernel inherits it
            os.sched_setaffinity(0, {int(core) for core in cores.split(",")})
        sys.argv = ["nbgrader", *request["args"]]
        from nbgrader.apps.nbgraderapp import main

        main()
        code = 0
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported in the log, as nbgrader's own crash would be
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def _wait(pid: int, parent: int) -> int:
    """The child's exit code; if the grading worker goes away meanwhile, the child goes too."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if os.getppid() != parent:
            _kill_group(pid)
        time.sleep(0.02)


def main() -> int:
    """Import once, then fork one child per request line (JSON), answering its pid and exit code."""
    import importlib
    import warnings

    warnings.simplefilter("ignore")
    for module in PRELOAD:
        importlib.import_module(module)
    parent = os.getppid()
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        print(json.dumps({"pid": pid}), flush=True)
        print(json.dumps({"pid": pid, "returncode": _wait(pid, parent)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
