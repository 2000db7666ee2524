"""Grading on Dask: a local cluster (``--workers 2``), and a real scheduler with two worker
processes over TCP on 127.0.0.1 (``--scheduler``).

The workers get one task per submission (the submission travels with the task: no shared folder)
and write to a real PostgreSQL gradebook; a worker with two threads grades two at once, each
grading's TensorFlow held to half the cores. Their grades must equal sequential grading into SQLite,
and a worker killed in the middle of a submission must cost nothing: its submission is graded by
the other worker, every student has one submission row and one row per grade cell. A local batch
interrupted with Ctrl-C stops now, leaves nothing running and records nothing it did not grade.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import hostile_cases as hostile
import pytest

from conftest import ROOT
from pg_server import fresh_database
from processes import descendants, parent_of, working_in
from unet_grader.assignment import ASSIGNMENT, NOTEBOOK
from unet_grader.batch import autograde, gradebook
from unet_grader.coursedir import DB_ENV, copy_course
from unet_grader.examples import make_submission, write_submission
from unet_grader.release import release

pytestmark = pytest.mark.slow

STUDENTS = {  # student: (solved exercises, mistakes)
    "d1_solution": (("conv_block", "upsampling_block", "unet_model"), ()),
    "d2_partial": (("conv_block", "upsampling_block"), ()),
    "d3_concat_order": (("conv_block", "upsampling_block", "unet_model"), ("concat_order",)),
    "d4_empty": ((), ()),
}
HOSTILE = {"d5_os_exit": "os_exit", "d6_corrupted": "corrupted_json"}


def _course(where):
    """A released course with the submissions, in the gradebook ${UNET_COURSE_DB_URL} names (else SQLite)."""
    course = copy_course(where, ROOT)
    release(course)
    release_nb, source = course / "assignments" / ASSIGNMENT / NOTEBOOK, course / "solutions" / ASSIGNMENT / NOTEBOOK
    for student, (solved, mistakes) in STUDENTS.items():
        write_submission(make_submission(release_nb, source, solved, mistakes), course, student)
    for student, case in HOSTILE.items():
        hostile.write_case(course, student, hostile.CASES[case])
    return course


def _grades(course):
    with gradebook(course) as book:
        return {s.student.id: {g.name: g.score for n in s.notebooks for g in n.grades}
                for s in book.assignment_submissions(ASSIGNMENT)}


def _rows(db_url):
    """(student, submissions, grade rows) per student, and grades with no score at all."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as connection:
        per_student = connection.execute(text(
            "select s.student_id, count(distinct s.id), count(g.id) from submitted_assignment s"
            " join submitted_notebook n on n.assignment_id = s.id join grade g on g.notebook_id = n.id"
            " group by s.student_id")).all()
        nulls = connection.execute(text("select count(*) from grade where auto_score is null"
                                        " and manual_score is null")).scalar()
    engine.dispose()
    return sorted(tuple(row) for row in per_student), nulls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskCluster:
    """``dask scheduler`` and ``dask worker`` processes (each in its own process group)."""

    def __init__(self, workdir, threads=(1, 1)):
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.processes, self.workers = [], {}
        self.logs = workdir
        port = self.address.rsplit(":", 1)[1]
        self._start("scheduler", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", port,
                    "--no-dashboard")
        for i, nthreads in enumerate(threads):
            name = f"w{i + 1}"
            self.workers[name] = self._start(
                name, "distributed.cli.dask_worker", self.address, "--name", name, "--nthreads", str(nthreads),
                "--nworkers", "1", "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(workdir / name))
        from distributed import Client

        self.client = Client(self.address, timeout="60s")
        self.client.wait_for_workers(len(threads), timeout=120)

    def _start(self, name, module, *args):
        log = open(self.logs / f"{name}.log", "w")
        process = subprocess.Popen([sys.executable, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append(process)
        return process

    def worker_of(self, name):
        """The scheduler's address of the worker called ``name``."""
        for address, info in self.client.scheduler_info(n_workers=-1)["workers"].items():
            if info.get("name") == name:
                return address
        return None

    def kill(self, name):
        """SIGKILL the worker and its nanny (the whole group), as a lost machine would vanish."""
        os.killpg(self.workers[name].pid, signal.SIGKILL)

    def close(self):
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - the cluster may be half dead by design
            pass
        for process in reversed(self.processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """Every submission graded one at a time into SQLite: the grades to reproduce."""
    course = _course(tmp_path_factory.mktemp("sequential") / "course")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(DB_ENV, raising=False)
        autograde(course, progress=False)
        return _grades(course)


@pytest.fixture
def dask_cluster(tmp_path, request):
    cluster = DaskCluster(tmp_path, getattr(request, "param", (1, 1)))
    try:
        yield cluster
    finally:
        cluster.close()


class GradingProcesses:
    """Sampled while grading: the cores each student kernel under this process (or ``root``) may run
    on, and the warm nbgraders this process started (its own children; their forks are grandchildren)."""

    def __init__(self, root: int | None = None):
        self.root = root
        self.kernels: dict[int, frozenset] = {}
        self.tensorflow_threads: dict[int, str | None] = {}  # kernel -> its TF_NUM_INTRAOP_THREADS
        self.warm_nbgraders: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.1):
            for pid, argv in descendants(self.root).items():
                if any(b"ipykernel_launcher" in part for part in argv) and pid not in self.kernels:
                    try:
                        self.kernels[pid] = frozenset(os.sched_getaffinity(pid))
                        if argv[1:3] != [b"-m", b"ipykernel_launcher"]:  # its sandbox's wrappers
                            continue
                        environ = dict(item.split(b"=", 1) for item in
                                       Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item)
                        threads = environ.get(b"TF_NUM_INTRAOP_THREADS")
                        self.tensorflow_threads[pid] = threads.decode() if threads else None
                    except OSError:  # ended meanwhile
                        pass
                elif b"unet_grader.warm" in argv and parent_of(pid) == os.getpid():
                    self.warm_nbgraders.add(pid)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_two_local_workers_give_the_sequential_sqlite_grades(sequential, postgres_db_url, tmp_path, monkeypatch):
    from unet_grader import warm

    monkeypatch.setenv(DB_ENV, postgres_db_url)  # nbgrader_config.py passes it to every command
    course = _course(tmp_path / "course")
    assert not (course / "gradebook.db").exists(), "the PostgreSQL course must not fall back to SQLite"
    with GradingProcesses() as seen:
        results = autograde(course, progress=False, workers=2)
    assert _grades(course) == sequential
    # Each worker's kernels keep to its own cores (Linux, two cores or more); both workers forked
    # their nbgraders from one warm nbgrader; their verifiers ended with the cluster.
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) >= 2:
        share = len(cores) // 2
        assert set(seen.kernels.values()) == {frozenset(cores[:share]), frozenset(cores[share:2 * share])}, seen.kernels
    assert len(seen.warm_nbgraders) == 1, seen.warm_nbgraders
    assert set(warm._GRADERS) <= {threading.get_ident()}, "the workers' warm graders outlived the cluster"
    assert sorted(r.student for r in results) == sorted(sequential)
    assert sum(sequential["d1_solution"].values()) == 100 and sum(sequential["d4_empty"].values()) == 0
    rows, nulls = _rows(postgres_db_url)
    cells = len(next(iter(sequential.values())))
    assert rows == sorted((student, 1, cells) for student in sequential) and nulls == 0


def _grading_in_temp_folders() -> dict:
    """Processes working in a grading task's throw-away folder (``unet-grade-<student>-``), or a
    student's kernel: what an interrupted batch must not leave running."""
    return {**working_in("unet-grade-loop"), **working_in("ipykernel")}


def test_an_interrupted_local_batch_stops_now_and_records_nothing(postgres_db_url, tmp_path, monkeypatch):
    """Ctrl-C (SIGINT to the command's process group) during `autograde --workers 2` while both
    workers' kernels loop forever: the command ends without waiting for the gradings in flight (their
    limit is 30 minutes), no nbgrader or kernel of them runs on, and no grade, not even a zero, is
    recorded for a submission that was not graded: the next `autograde` grades it."""
    monkeypatch.setenv(DB_ENV, postgres_db_url)
    course = copy_course(tmp_path / "course", ROOT)
    release(course)
    loops = ["loop1", "loop2", "loop3"]
    for student in loops:
        hostile.write_case(course, student, hostile.CASES["infinite_loop"])
    before = set(_grading_in_temp_folders())  # not this test's (another test's kernel, say)
    grading = subprocess.Popen([sys.executable, "-m", "unet_grader", "autograde", "--course", str(course),
                                "--workers", "2"], cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        kernels = set()
        while len(kernels) < 2 and time.monotonic() < deadline:  # both workers' students are looping
            kernels = {pid for pid, argv in descendants(1).items()
                       if argv[1:3] == [b"-m", b"ipykernel_launcher"] and pid not in before}
            time.sleep(0.2)
        assert len(kernels) == 2, f"two kernels never ran at once: {kernels}"
        time.sleep(2)
        os.killpg(grading.pid, signal.SIGINT)
        interrupted = time.monotonic()
        grading.wait(120)
        took = time.monotonic() - interrupted
        print(f"the command ended {took:.1f} s after Ctrl-C")
    finally:
        if grading.poll() is None:
            os.killpg(grading.pid, signal.SIGKILL)
            grading.wait()
    assert b"KeyboardInterrupt" in grading.stderr.read()
    # Measured on 2 cores: 3 s; 62 s before the gradings in flight were stopped (they ran on until
    # the closing cluster gave up waiting for its workers, and the exit killed them).
    assert took < 20, f"the command ended {took:.0f} s after Ctrl-C: the gradings in flight ran on"
    deadline = time.monotonic() + 15
    while (left := set(_grading_in_temp_folders()) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, {pid: info for pid, info in _grading_in_temp_folders().items() if pid in left}
    rows, unscored = _rows(postgres_db_url)  # nbgrader creates a submission's grade rows empty as it starts
    assert sum(grades for _student, _submissions, grades in rows) == unscored, "an interrupted submission got a grade"


@pytest.mark.parametrize("dask_cluster", [(2, 1)], indirect=True, ids=["a 2-thread and a 1-thread worker"])
def test_a_dask_cluster_gives_the_sequential_sqlite_grades(sequential, dask_cluster, postgres_url, tmp_path,
                                                             monkeypatch):
    from distributed import get_task_stream

    with fresh_database(postgres_url) as db_url:
        monkeypatch.setenv(DB_ENV, db_url)
        course = _course(tmp_path / "course")
        with (get_task_stream(client=dask_cluster.client) as stream,
              GradingProcesses(root=dask_cluster.workers["w1"].pid) as two_threads):
            results = {r.student: r for r in autograde(course, progress=False, scheduler=dask_cluster.address)}
        assert _grades(course) == sequential
        rows, nulls = _rows(db_url)
    cells = len(next(iter(sequential.values())))
    assert rows == sorted((student, 1, cells) for student in sequential) and nulls == 0
    assert results["d1_solution"].total == (100.0, 100.0) and results["d4_empty"].total[0] == 0
    assert results["d6_corrupted"].failure  # unreadable: graded as unanswered, with the reason
    # What the workers made came back to the instructor's course (feedback is generated from it).
    from unet_grader.coursedir import as_course

    for student in STUDENTS:
        assert as_course(course).autograded_notebook(student).is_file(), student
    # One task per submission, spread over both workers (the submissions travelled with them).
    assert len(stream.data) == len(sequential)
    assert {task["worker"] for task in stream.data} == {dask_cluster.worker_of("w1"), dask_cluster.worker_of("w2")}
    # The 2-thread worker's kernels had TensorFlow use half the cores each (two gradings at once).
    half = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert two_threads.tensorflow_threads and set(two_threads.tensorflow_threads.values()) == {half}, \
        two_threads.tensorflow_threads


def test_a_worker_killed_mid_submission_loses_nothing_and_doubles_nothing(sequential, dask_cluster, postgres_url,
                                                                           tmp_path, monkeypatch):
    with fresh_database(postgres_url) as db_url:
        monkeypatch.setenv(DB_ENV, db_url)
        course = _course(tmp_path / "course")
        outcome = {}

        def grade():
            outcome["results"] = autograde(course, progress=False, scheduler=dask_cluster.address)

        grader = threading.Thread(target=grade)
        grader.start()
        victim = dask_cluster.worker_of("w1")
        killed_while = None
        deadline = time.monotonic() + 300
        while grader.is_alive() and time.monotonic() < deadline and killed_while is None:
            busy = dask_cluster.client.processing(workers=[victim]).get(victim, ())
            if busy:
                time.sleep(4)  # well into its submission: kernel started, nbgrader writing grades
                busy_now = dask_cluster.client.processing(workers=[victim]).get(victim, ())
                if busy_now:
                    killed_while = list(busy_now)
                    dask_cluster.kill("w1")
            time.sleep(0.2)
        grader.join(timeout=600)
        assert not grader.is_alive(), "grading did not finish after a worker died"
        assert killed_while, "the test never caught worker w1 in the middle of a submission"
        results = {r.student: r for r in outcome["results"]}
        grades = _grades(course)
        rows, nulls = _rows(db_url)

    assert sorted(results) == sorted(sequential)
    assert grades == sequential  # the killed worker's submission was graded again, elsewhere, the same
    cells = len(next(iter(sequential.values())))
    assert rows == sorted((student, 1, cells) for student in sequential), "a submission lost or graded twice"
    assert nulls == 0
    killed_student = killed_while[0].split("-")[1]
    assert results[killed_student].failure is None or killed_student in HOSTILE, results[killed_student].problems


def test_an_unreachable_scheduler_is_a_clear_error_not_a_traceback():
    from unet_grader import cluster
    from unet_grader.coursedir import CourseError

    with pytest.raises(CourseError, match="could not reach the Dask scheduler at tcp://127.0.0.1:"):
        list(cluster.run([], scheduler=f"tcp://127.0.0.1:{_free_port()}"))


def test_local_workers_share_the_cores_instead_of_each_taking_all(monkeypatch):
    """N workers with TensorFlow's default (a thread per core in every kernel and verifier) would
    oversubscribe the machine; each gets cores // N threads, and an instructor's own setting wins."""
    from unet_grader import cluster

    for name in cluster.THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert cluster.worker_environment(1) == {"TF_NUM_INTRAOP_THREADS": "8", "TF_NUM_INTEROP_THREADS": "8"}
    assert cluster.worker_environment(2) == {"TF_NUM_INTRAOP_THREADS": "4", "TF_NUM_INTEROP_THREADS": "4"}
    assert cluster.worker_environment(3)["TF_NUM_INTRAOP_THREADS"] == "2"
    assert cluster.worker_environment(16)["TF_NUM_INTRAOP_THREADS"] == "1"
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")
    assert cluster.worker_environment(2) == {"TF_NUM_INTRAOP_THREADS": "3", "TF_NUM_INTEROP_THREADS": "4"}


def test_own_cores_splits_the_machine_and_gives_up_below_one_core_each(monkeypatch):
    from unet_grader import cluster

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7, 8})
    assert [cluster.own_cores(i, 4) for i in range(4)] == [{0, 1}, {2, 3}, {4, 5}, {6, 7}]
    assert cluster.own_cores(0, 1) == set(range(9))
    assert cluster.own_cores(0, 10) is None and cluster.own_cores(4, 4) is None


def test_local_workers_run_without_dasks_profiler():
    """Dask's profiler samples every worker thread each 10 ms: a third of a core for two idle workers
    on 2 cores, taken from the gradings. Local workers start without it; the instructor's own Dask
    configuration is left as it was."""
    import importlib

    import dask

    importlib.import_module("distributed")  # Dask's configuration has its section once it is imported

    from unet_grader import cluster

    before = dask.config.get("distributed.worker.profile.enabled")
    with cluster.local_cluster(2) as client:
        callbacks = client.run(lambda dask_worker: sorted(dask_worker.periodic_callbacks))
    assert len(callbacks) == 2
    for names in callbacks.values():
        assert "heartbeat" in names and "profile" not in names and "profile-cycle" not in names
    assert dask.config.get("distributed.worker.profile.enabled") == before
