"""What a grading worker keeps between submissions, and what it starts fresh for each.

Kept, each in a process of its own, started with the first submission and reused for every later
one (see :func:`grader`):

* **a warm nbgrader**, one per grading process: it has imported nbgrader, nbconvert, the Jupyter
  client and the course's plug-ins once, and forks one child per submission; the child runs the
  real ``nbgrader autograde`` for that student (its own app, configuration and gradebook session,
  nothing shared with another student's) and is stopped, kernel and all, at the time limit.
  Several children may run at once: one per grading worker thread;
* **a serving verifier** per grading worker thread (``python -m unet_grader.verifier --serve``):
  TensorFlow imported and the reference models built once. It never runs student code; each
  notebook is one connection, one at a time, so one student's verification never waits on, or
  falls with, another's.

Fresh for every submission: the nbgrader process (a fork: milliseconds instead of the seconds
its imports take) and the student's kernel in its sandbox. The kept processes end with the
process that started them, and no grading outlives its reason to run: one interrupted (Ctrl-C) or
whose warm nbgrader died is stopped with its kernel, never left to write a grade nobody waits for.
A grading worker is a thread: the process's own (one submission after another) or each worker
thread of a local Dask cluster. ``UNET_COURSE_WARM=off`` grades with a
fresh ``nbgrader`` process and a verifier of its own per submission instead (as plain
``nbgrader autograde`` does).

    python -m unet_grader.warm      # the warm nbgrader (started by grader(), not by hand)
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import queue
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
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

class WarmNbgrader:
    """This process's warm nbgrader, shared by its grading threads: each request carries an id, and
    a reader thread hands each answer (the fork's pid, then its exit code) to the thread that asked."""

    START_SECONDS = 60  # for the warm process to be ready, and for a fork to be reported

    def __init__(self):
        self._folder = Path(tempfile.mkdtemp(prefix="unet-warm-nbgrader-"))
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self.process: subprocess.Popen | None = None
        self._waiting: dict | None = None  # request id -> its thread's queue; None once the process ended
        self._running: dict[int, int] = {}  # request id -> its fork's pid, while it runs
        self._closed = False

    def ensure(self) -> None:
        with self._lock:
            self._ensure()

    def _ensure(self) -> None:
        from unet_grader.coursedir import nbgrader_environment

        if self._closed:
            raise RuntimeError("the warm nbgrader was stopped")
        if self.process is not None and self.process.poll() is None and self._waiting is not None:
            return
        if self.process is not None:
            self.process.kill()
        # Its own session: a Ctrl-C at the terminal reaches the grading process, which stops the
        # gradings in flight (autograde's finally, close()); the warm process ends when its input does.
        process = subprocess.Popen([sys.executable, "-m", "unet_grader.warm"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, env=nbgrader_environment(), text=True,
                                   start_new_session=True)
        with selectors.DefaultSelector() as waiting:  # any descriptor number (select() stops at 1024)
            waiting.register(process.stdout, selectors.EVENT_READ)
            ready = waiting.select(self.START_SECONDS) and process.stdout.readline()
        if not ready or ready.strip() != "ready":
            process.kill()
            process.wait()
            process.stdin.close()
            process.stdout.close()
            raise RuntimeError("the warm nbgrader did not start")
        self.process, self._waiting = process, {}
        threading.Thread(target=self._read, args=(process, self._waiting), daemon=True).start()

    def _read(self, process: subprocess.Popen, waiting: dict) -> None:
        try:
            for line in process.stdout:
                answer = json.loads(line)
                with self._lock:
                    answers = waiting.get(answer.get("id"))
                if answers is not None:
                    answers.put(answer)
        except (OSError, ValueError) as error:  # not an answer: this warm process cannot be trusted further
            LOG.warning("the warm nbgrader's answers broke off: %s", error)
            process.kill()
        finally:
            with self._lock:  # the warm nbgrader stopped: every thread waiting on it hears so
                if self._waiting is waiting:
                    self._waiting = None
                for answers in waiting.values():
                    answers.put(None)

    def autograde(self, course_root: Path, args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        answers: queue.Queue = queue.Queue()
        with self._lock:
            self._ensure()
            request_id = next(self._ids)
            process, waiting = self.process, self._waiting
            log = self._folder / f"nbgrader-{request_id}.log"
            request = {"id": request_id, "args": args, "cwd": str(course_root), "env": env, "log": str(log)}
            waiting[request_id] = answers
            try:
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
            except (OSError, ValueError):
                waiting.pop(request_id, None)
                raise RuntimeError("the warm nbgrader stopped") from None
        pid = None
        try:
            started = self._answer(answers, self.START_SECONDS)
            if not started:
                # It may still fork this request: stop it (its forks die with it) before this
                # submission is graded another way, so that it is never graded twice at once.
                process.kill()
                raise RuntimeError("the warm nbgrader stopped")
            pid = started["pid"]
            with self._lock:
                self._running[request_id] = pid
            reply = self._answer(answers, timeout)
            late = self._answer(answers, 0) if reply is False else None
            if late:  # its end came in just as the limit passed
                reply = late
            if reply is None or self._closed:  # the warm nbgrader is gone or was stopped: so is this attempt
                raise RuntimeError("the warm nbgrader stopped")
            if reply is False:  # past the limit: the child, its kernel and all it started
                _kill_group(pid)
                if late is False and self._answer(answers, 60) is False:  # no word of it: start afresh next time
                    process.kill()
            pid = None
            output = log.read_text(errors="replace") if log.exists() else ""
        finally:
            if pid is not None:  # stopped early (the warm process died, Ctrl-C): so is the grading
                _kill_group(pid)
            with self._lock:
                waiting.pop(request_id, None)
                self._running.pop(request_id, None)
            log.unlink(missing_ok=True)
        if reply is False:
            raise subprocess.TimeoutExpired(["nbgrader", *args], timeout, output=output)
        return subprocess.CompletedProcess(["nbgrader", *args], reply["returncode"], output, "")

    @property
    def stopped(self) -> bool:
        """Whether :meth:`close` stopped it (then its gradings in flight were stopped too)."""
        return self._closed

    @staticmethod
    def _answer(answers: queue.Queue, timeout: float):
        """The next answer, None if the warm nbgrader stopped, False after ``timeout`` seconds."""
        try:
            return answers.get(timeout=timeout) if timeout else answers.get_nowait()
        except queue.Empty:
            return False

    def close(self) -> None:
        """Stop it, and any grading still running in it (the process is exiting, or was interrupted)."""
        with self._lock:
            self._closed = True
            for pid in self._running.values():
                _kill_group(pid)
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()  # it ends when its input does (and its children have)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self._folder, ignore_errors=True)


_NBGRADER: WarmNbgrader | None = None  # this process's, shared by its grading threads
_GRADERS: dict[int, "WarmGrader"] = {}  # thread ident -> that grading worker's warm grader
_GRADERS_LOCK = threading.Lock()
_EXITING = False  # set at exit: no grading starts, none falls back to a process nobody would stop
_REFUSING = False  # set while stopped() lasts: no grading starts


class ExitingError(BaseException):
    """The grading process is exiting, or its gradings were stopped (Ctrl-C during a batch): this
    submission is not graded, and no zero is recorded for it (a BaseException, as KeyboardInterrupt
    is: it is not the student's failure)."""


def _shared_nbgrader() -> WarmNbgrader:
    global _NBGRADER
    with _GRADERS_LOCK:
        if _EXITING or _REFUSING:
            raise ExitingError("this process is exiting" if _EXITING else "the gradings were stopped")
        if _NBGRADER is None:
            _NBGRADER = WarmNbgrader()
        return _NBGRADER


class WarmGrader:
    """One grading worker's (thread's) serving verifier, with the process's shared warm nbgrader;
    used by that thread alone, one submission at a time."""

    def __init__(self):
        self._folder = Path(tempfile.mkdtemp(prefix="unet-warm-"))
        self._verifier: subprocess.Popen | None = None
        self._verifier_log = None
        self.socket = self._folder / "verifier.sock"

    @property
    def _nbgrader(self) -> subprocess.Popen | None:
        return _shared_nbgrader().process

    def _ensure_nbgrader(self) -> None:
        _shared_nbgrader().ensure()

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

    def autograde(self, course_root: Path, args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        """Run ``nbgrader *args`` in ``course_root`` in a fork of the warm nbgrader, with this
        worker's verifier; raise subprocess.TimeoutExpired (after stopping it) past ``timeout``.

        The warm processes are an optimisation, never a reason for a grade: if the verifier cannot
        be started the notebook starts its own, and if the warm nbgrader cannot (or dies) the
        submission is graded by a fresh ``nbgrader`` process; stopped on purpose (:func:`stop`, the
        process exiting), it raises :class:`ExitingError` instead.
        """
        from unet_grader.coursedir import run_nbgrader
        from unet_grader.plugins.verdicts import VERIFIER_PID_ENV, VERIFIER_SOCKET_ENV

        env = dict(env)
        nbgrader = _shared_nbgrader()  # first: while gradings are being stopped, start nothing
        try:
            self._ensure_verifier()
            env.update({VERIFIER_SOCKET_ENV: str(self.socket), VERIFIER_PID_ENV: str(self._verifier.pid)})
        except (OSError, RuntimeError) as error:
            LOG.warning("grading without the serving verifier: %s", error)
        try:
            return nbgrader.autograde(course_root, args, env, timeout)
        except (OSError, RuntimeError, ValueError) as error:
            if _EXITING or nbgrader.stopped:  # by stop(): no fresh nbgrader that nobody asked for
                raise ExitingError("the gradings were stopped") from error
            LOG.warning("grading with a fresh nbgrader process: %s", error)
        return run_nbgrader(course_root, *args, timeout=timeout, env=env)

    def close(self) -> None:
        if self._verifier is not None and self._verifier.poll() is None:
            self._verifier.stdin.close()  # it ends when its input does
            try:
                self._verifier.wait(10)
            except subprocess.TimeoutExpired:
                self._verifier.kill()
                self._verifier.wait()
        if self._verifier_log is not None:
            self._verifier_log.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def grader() -> WarmGrader:
    """This thread's warm grader, started on first use and stopped by :func:`stop` or when the
    process exits."""
    with _GRADERS_LOCK:
        if threading.get_ident() not in _GRADERS:
            _GRADERS[threading.get_ident()] = WarmGrader()
        return _GRADERS[threading.get_ident()]


def stop(but_this_thread: bool = False) -> None:
    """Stop the warm graders now (the next submission starts new ones); ``but_this_thread``: the
    other threads' verifiers only (a local cluster's workers were threads of this process)."""
    global _NBGRADER
    with _GRADERS_LOCK:
        keep = threading.get_ident() if but_this_thread else None
        for ident in [ident for ident in _GRADERS if ident != keep]:
            _GRADERS.pop(ident).close()
        if not but_this_thread and _NBGRADER is not None:
            _NBGRADER.close()
            _NBGRADER = None


@contextlib.contextmanager
def stopped() -> Iterator[None]:
    """Stop every grading in flight now (its nbgrader fork and kernel killed; the thread that waited
    on it gets :class:`ExitingError`, so nothing is recorded for it) and start none until the block
    ends: a batch being torn down (Ctrl-C) while its workers close."""
    global _REFUSING
    with _GRADERS_LOCK:
        _REFUSING = True
    try:
        stop()
        yield
    finally:
        with _GRADERS_LOCK:
            _REFUSING = False


@atexit.register
def _at_exit() -> None:
    global _EXITING
    _EXITING = True
    stop()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# The warm nbgrader process
# --------------------------------------------------------------------------------------------

def _run_child(request: dict, warm_pid: int, prctl) -> None:
    """In the fork: the real ``nbgrader`` command line for one submission, then exit."""
    code = 1
    try:
        os.setsid()  # its own process group: stopped as a whole at the time limit
        _die_with(warm_pid, prctl)  # and with the warm process: a grading nobody waits for is never left running
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


def _libc_prctl():
    """libc's prctl (Linux; None elsewhere), looked up once by the warm process for its forks."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with(parent: int, prctl) -> None:
    """Linux: SIGKILL this process when ``parent``, which forked it, ends (elsewhere: nothing)."""
    pr_set_pdeathsig = 1
    if prctl is None or prctl(pr_set_pdeathsig, int(signal.SIGKILL)) != 0:
        return
    if os.getppid() != parent:  # it ended before that was set
        os._exit(1)


def _answer(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> int:
    """Import once, then fork one child per request line (JSON with an ``id``), answering its pid at
    once and its exit code when it ends; several may run at once. When the input ends the children
    are let finish; when the grading process that started this one goes away, they are stopped."""
    import importlib
    import warnings

    warnings.simplefilter("ignore")
    for module in PRELOAD:
        importlib.import_module(module)
    prctl, parent, warm_pid = _libc_prctl(), os.getppid(), os.getpid()
    print("ready", flush=True)
    running: dict[int, object] = {}  # pid -> request id
    pending, reading = b"", True
    try:
        while reading or running:
            if select.select([0] if reading else [], [], [], 0.02)[0]:
                chunk = os.read(0, 65536)
                reading = bool(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in filter(bytes.strip, lines):
                    request = json.loads(line)
                    pid = os.fork()
                    if pid == 0:
                        _run_child(request, warm_pid, prctl)
                    running[pid] = request.get("id")
                    _answer({"id": running[pid], "pid": pid})
            for pid in list(running):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    _answer({"id": running.pop(pid), "pid": pid, "returncode": os.waitstatus_to_exitcode(status)})
            if os.getppid() != parent:  # the grading process went away: so do its gradings
                for pid in running:
                    _kill_group(pid)
    finally:  # this loop failed (a malformed request, its reader gone): no grading outlives it
        for pid in running:
            _kill_group(pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
