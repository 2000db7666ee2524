"""A warm grading worker (unet_grader.warm): kept processes, fresh kernels, the same grades.

* Warm grading gives the grades of grading from scratch (UNET_COURSE_WARM=off: a fresh
  nbgrader and a verifier of its own), for a correct and a wrong submission in turn; its
  nbgrader and verifier are reused between them, nothing else is left running.
* A serving verifier that died between submissions is replaced; the student never notices.
* A submission past the time limit is stopped with its kernel; the worker grades the next one.
* Two workers' gradings at once fork from the one warm nbgrader; one stopped at its time limit
  leaves the other's alone.
* The kept processes end with the worker that started them (killed, as a Dask worker can be).
* A grading interrupted at the terminal (Ctrl-C) stops there: no nbgrader or kernel of it runs on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import hostile_cases as hostile
import pytest
from processes import alive, descendants, working_in

from conftest import ROOT, released_course
from unet_grader import warm
from unet_grader.batch import grade_one
from unet_grader.coursedir import as_course, task_environment
from unet_grader.examples import make_submission, write_submission

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not warm.enabled(), reason="warm grading needs os.fork")]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = released_course(tmp_path_factory.mktemp("warm") / "course")
    notebooks = as_course(root).release_notebook(), as_course(root).source_notebook()
    write_submission(make_submission(*notebooks), root, "alice")
    write_submission(make_submission(*notebooks, mistakes=("concat_order",)), root, "bob")
    yield root
    warm.stop()


def _kept() -> tuple[int, int]:
    grader = warm.grader()
    return grader._nbgrader.pid, grader._verifier.pid


GRADING = (b"ipykernel_launcher", b"bwrap", b"nbgrader", b"unet_grader.verifier", b"unet_grader.warm")


def _left_running() -> dict:
    """Grading processes under this one other than the kept two: a kernel or its sandbox, an nbgrader
    run (a fork of the warm nbgrader keeps its argv), a verifier of its own. (Other tests' helpers,
    such as multiprocessing's resource tracker, may live here too: they are not grading.)"""
    kept = set(_kept())
    return {pid: argv for pid, argv in descendants().items()
            if pid not in kept and any(name in part for part in argv for name in GRADING)}


def _sandboxes_of(course) -> dict:
    """Processes anywhere (orphans included) whose command line names the course: a kernel's sandbox."""
    mark = str(course).encode()
    return {pid: argv[:3] for pid, argv in descendants(1).items() if any(mark in part for part in argv)}


def _outcome(result) -> tuple:
    return result.scores, result.problems, result.failure


def test_warm_grading_gives_the_grades_of_grading_from_scratch(course, monkeypatch):
    warm.stop()
    alice = grade_one(course, "alice")
    kept = _kept()
    bob = grade_one(course, "bob")
    assert _kept() == kept, "the warm nbgrader and the serving verifier are kept between submissions"
    assert not _left_running(), _left_running()
    assert alice.total == (100.0, 100.0) and not alice.problems and alice.failure is None
    assert bob.total == (75.0, 100.0) and any("concatenation order" in p for p in bob.problems), bob.problems

    monkeypatch.setenv(warm.WARM_ENV, "off")
    assert _outcome(grade_one(course, "bob")) == _outcome(bob)


def _started() -> tuple[int, int]:
    grader = warm.grader()
    grader._ensure_verifier()
    grader._ensure_nbgrader()
    return _kept()


def test_a_verifier_that_died_between_submissions_is_replaced(course):
    nbgrader, verifier = _started()
    os.kill(verifier, signal.SIGKILL)
    warm.grader()._verifier.wait(30)  # ended (had the next grading come sooner, its connection would be
    result = grade_one(course, "bob")  # refused and its notebook would start a verifier of its own)
    assert result.failure is None and result.total == (75.0, 100.0), result.problems
    assert _kept()[0] == nbgrader and _kept()[1] != verifier


def test_a_submission_past_the_time_limit_is_stopped_with_its_kernel(course, monkeypatch):
    _started()
    monkeypatch.setenv("UNET_COURSE_STUDENT_TIMEOUT", "3")  # less than the kernel needs to start
    started = time.monotonic()
    result = grade_one(course, "alice")
    assert result.failure == "grading took longer than 3 s and was stopped" and result.total == (0.0, 100.0)
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 10
    while (_left_running() or _sandboxes_of(course)) and time.monotonic() < deadline:  # the sandbox ends
        time.sleep(0.2)                                                                 # with its parent
    assert not _left_running(), _left_running()
    assert not _sandboxes_of(course), _sandboxes_of(course)
    monkeypatch.delenv("UNET_COURSE_STUDENT_TIMEOUT")
    assert grade_one(course, "alice").total == (100.0, 100.0)


def test_two_gradings_at_once_share_the_warm_nbgrader_and_one_stopped_spares_the_other(course):
    nbgrader, _ = _started()
    results = {}

    def grade(student, timeout):  # a grading worker thread, as a local cluster's
        with task_environment(UNET_COURSE_STUDENT_TIMEOUT=timeout):
            results[student] = grade_one(course, student)

    workers = [threading.Thread(target=grade, args=("alice", "3")), threading.Thread(target=grade, args=("bob", "600"))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(600)
    assert results["alice"].failure == "grading took longer than 3 s and was stopped", results["alice"].failure
    assert results["bob"].failure is None and results["bob"].total == (75.0, 100.0), results["bob"].problems
    assert warm.grader()._nbgrader.pid == nbgrader, "both forked from the warm nbgrader, which lived on"
    warm.stop(but_this_thread=True)  # the two threads' verifiers


def test_the_kept_processes_end_with_their_worker():
    worker = subprocess.Popen(
        [sys.executable, "-c", "from unet_grader import warm\ng = warm.grader()\ng._ensure_verifier()\n"
         "g._ensure_nbgrader()\nprint(g._nbgrader.pid, g._verifier.pid, flush=True)\nimport time\ntime.sleep(600)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        kept = [int(pid) for pid in worker.stdout.readline().split()]
        assert len(kept) == 2 and all(alive(pid) for pid in kept)
    finally:
        worker.kill()  # no atexit, no clean-up: as a worker killed by the out-of-memory killer
        worker.wait()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in kept) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in kept)


def _kernels() -> dict:
    return {pid: argv[:2] for pid, argv in descendants(1).items() if any(b"ipykernel" in part for part in argv)}


def test_an_interrupted_grading_leaves_nothing_running(course):
    """Ctrl-C at the terminal (SIGINT to the grading command's process group) while a kernel runs an
    endless loop: the command ends, and with it the nbgrader it forked and the student's kernel."""
    hostile.write_case(course, "mallory", hostile.CASES["infinite_loop"])
    grading = subprocess.Popen([sys.executable, "-c", "import sys\nfrom unet_grader.batch import grade_one\n"
                                "grade_one(sys.argv[1], 'mallory')", str(course)],
                               cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not _kernels() and time.monotonic() < deadline:  # the student's kernel is running
            time.sleep(0.2)
        assert _kernels(), "the kernel never started"
        time.sleep(3)
        os.killpg(grading.pid, signal.SIGINT)
        grading.wait(60)
    finally:
        if grading.poll() is None:
            os.killpg(grading.pid, signal.SIGKILL)
            grading.wait()
    assert b"KeyboardInterrupt" in grading.stderr.read()
    deadline = time.monotonic() + 15
    while working_in(str(course)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not working_in(str(course)), working_in(str(course))
