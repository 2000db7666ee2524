"""Grading as tasks: one task per submission, run here, on a local Dask cluster, or on any Dask cluster.

A :class:`GradingTask` carries everything a grading machine needs and nothing it may not see:
the course's configuration and source folder, one student's submitted files, and the gradebook
URL. :func:`grade_task` (which runs on the worker) builds a throw-away course folder from it,
grades with :func:`unet_grader.batch.grade_safely` (the real ``nbgrader autograde`` in the
sandbox) straight into the shared gradebook, and returns the result and the autograded files.
So workers need the course installed and a route to the gradebook, not a shared filesystem.

Nothing is graded twice into the gradebook: nbgrader keeps one submission row per student and
one grade row per grade cell, so a task that Dask re-runs elsewhere (its worker died mid-task)
overwrites the unfinished attempt instead of adding a second one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from unet_grader.assignment import NOTEBOOK
from unet_grader.coursedir import DB_ENV, Course, CourseError, task_environment

# The files of a submission that travel with its task: what nbgrader reads when it autogrades and
# releases feedback (the secret that `nbgrader submit` writes pairs a feedback page with its
# submission in the exchange); anything else a student put in the folder plays no part in the grade.
SUBMITTED_FILES = (NOTEBOOK, "timestamp.txt", "submission_secret.txt")


@dataclass
class GradingTask:
    """One submission to grade, self-contained (it pickles: this is what a Dask worker receives)."""

    student: str
    submission: dict[str, bytes]  # file name -> content, the student's submitted folder
    course_files: dict[str, bytes]  # path relative to the course root -> content (config and source)
    db_url: str
    timeout: int


@dataclass
class GradedSubmission:
    """What a grading machine sends back: the result and the files the instructor's course keeps."""

    result: object  # a unet_grader.batch.StudentResult
    autograded: dict[str, bytes]  # the autograded folder, file name -> content
    problem: bytes | None  # the recorded reason (grading-problems/<student>.json), if any


def course_files(course: Course) -> dict[str, bytes]:
    """The course's nbgrader configuration, and the assignment's source and release folders (the
    release is what submissions are repaired against, and what an unreadable file is graded as)."""
    files = {"nbgrader_config.py": (course.root / "nbgrader_config.py").read_bytes()}
    for folder in (course.source_notebook().parent, course.release_folder()):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and ".ipynb_checkpoints" not in path.parts:
                files[str(path.relative_to(course.root))] = path.read_bytes()
    return files


def make_task(course: Course, student: str, shared: dict[str, bytes] | None = None) -> GradingTask:
    """The task of one student's submission (``shared``: :func:`course_files`, read once per batch)."""
    from unet_grader.batch import student_timeout

    folder = course.submitted_folder(student)
    submission = {name: (folder / name).read_bytes() for name in SUBMITTED_FILES if (folder / name).is_file()}
    return GradingTask(student, submission, shared if shared is not None else course_files(course),
                       course.db_url(), student_timeout())


def _write_files(root: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        target = (root / relative).resolve()
        if root.resolve() not in target.parents:
            raise CourseError(f"refusing to write {relative!r} outside the grading folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def grade_task(task: GradingTask) -> GradedSubmission:
    """Grade one submission in a throw-away course folder (this runs on the grading machine)."""
    from unet_grader import batch

    with tempfile.TemporaryDirectory(prefix=f"unet-grade-{task.student}-") as tmp:
        root = Path(tmp)
        _write_files(root, task.course_files)
        course = Course(root)
        _write_files(course.submitted_folder(task.student), task.submission)
        task_settings = {DB_ENV: task.db_url, "UNET_COURSE_STUDENT_TIMEOUT": str(task.timeout)}
        with grading_slot() as settings, task_environment(**task_settings, **settings):
            result = batch.grade_safely(course, task.student)
        autograded_folder = course.autograded_folder(task.student)
        autograded = {str(p.relative_to(autograded_folder)): p.read_bytes()
                      for p in sorted(autograded_folder.rglob("*")) if p.is_file()} if autograded_folder.is_dir() else {}
        problem_file = course.problems_folder() / f"{task.student}.json"
        problem = problem_file.read_bytes() if problem_file.is_file() else None
    return GradedSubmission(result, autograded, problem)


def keep_graded(course: Course, student: str, graded: GradedSubmission) -> None:
    """Put a worker's autograded files and recorded reason into the instructor's course (replacing
    the previous attempt's), where ``feedback`` and ``export`` find them."""
    from unet_grader.batch import forget_previous_attempt

    forget_previous_attempt(course, student)
    _write_files(course.autograded_folder(student), graded.autograded)
    if graded.problem is not None:
        course.problems_folder().mkdir(exist_ok=True)
        (course.problems_folder() / f"{student}.json").write_bytes(graded.problem)


# TensorFlow's thread pools, in the student's kernel and in the verifier: by default each takes a
# thread per core, so N workers on one machine would run N x cores busy threads and spend part of
# the cores switching between them.
THREAD_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def usable_cores() -> list[int]:
    """The cores this process may run on (its CPU affinity; every core where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def worker_environment(workers: int) -> dict[str, str]:
    """The variables that give each of ``workers`` grading workers on this machine its share of
    the cores (at least one); a value already set here (the instructor's choice) is kept."""
    share = str(max(1, len(usable_cores()) // max(workers, 1)))
    return {name: os.environ.get(name, share) for name in THREAD_ENV}


def own_cores(index: int, workers: int) -> set[int] | None:
    """Local worker ``index``'s own share of this machine's cores (a contiguous slice, cores // N
    of them), or None when there are fewer cores than workers (then they share all)."""
    cores = usable_cores()
    share = len(cores) // max(workers, 1)
    if share < 1 or not 0 <= index < workers:
        return None
    return set(cores[index * share:(index + 1) * share])


# A local cluster's worker threads, while it runs (all of this process's gradings: it owns the machine).
_LOCAL_THREADS = 0
_SLOTS_LOCK = threading.Lock()
_BUSY_SLOTS: set[int] = set()


def _worker_threads() -> int:
    """The threads of the Dask worker running this task (`dask worker --nthreads N`; 1 outside one)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


@contextlib.contextmanager
def grading_slot() -> Iterator[dict[str, str]]:
    """The settings one grading runs with, held while it grades.

    In a local cluster (``--workers N``, which owns this machine): a free one of N slots, with its
    share of TensorFlow threads and its own cores (:func:`local_settings`). In a Dask worker of N > 1
    threads: TensorFlow's share only (cores // N threads), as other worker processes may share the
    machine's cores. Otherwise nothing: TensorFlow's defaults.
    """
    with _SLOTS_LOCK:
        threads = _LOCAL_THREADS
        index = min((i for i in range(threads) if i not in _BUSY_SLOTS), default=None)
        if index is not None:
            _BUSY_SLOTS.add(index)
    try:
        if index is not None:
            yield local_settings(index, threads)
        else:
            threads = threads or _worker_threads()
            yield worker_environment(threads) if threads > 1 else {}
    finally:
        if index is not None:
            with _SLOTS_LOCK:
                _BUSY_SLOTS.discard(index)


def local_settings(index: int, workers: int) -> dict[str, str]:
    """What grading slot ``index`` of ``workers`` on this machine grades with: cores // N TensorFlow
    threads in each kernel and verifier (:func:`worker_environment`) and, where there is a core each,
    its own cores for the nbgrader it forks and the kernel that starts (:data:`unet_grader.warm.CORES_ENV`).
    Measured on 2 cores: two gradings at once, each held to one core, took as long as one alone
    (6.6-8.5 s); left to the operating system, which moves both gradings' threads between both
    cores, 6.9-9.7 s."""
    from unet_grader.warm import CORES_ENV

    settings = worker_environment(workers)
    cores = own_cores(index, workers) if hasattr(os, "sched_setaffinity") else None
    if cores:
        settings[CORES_ENV] = ",".join(str(core) for core in sorted(cores))
    return settings


# Dask's statistical profiler samples every worker thread's stack every 10 ms: measured on 2 cores,
# two idle local workers with it cost 6.3 core-s in 20 s (a third of a core), 0.9 without it. A
# grading task spends its time waiting on nbgrader's process, so the profile shows nothing useful.
QUIET_WORKERS = {"distributed.worker.profile.enabled": False}


@contextlib.contextmanager
def local_cluster(workers: int):
    """A Dask client of a local cluster: ``workers`` one-thread workers in this process (they talk in
    memory: no port is opened), forking their nbgraders from this process's one warm nbgrader, each
    with its own verifier (:mod:`unet_grader.warm`) and its share of the cores (:func:`local_settings`),
    without Dask's profiler (:data:`QUIET_WORKERS`).

    Interrupted (Ctrl-C), it stops the gradings in flight before it closes (:func:`unet_grader.warm.stopped`).

    Threads, not processes: a grading task only waits on the processes it starts (nbgrader, the
    kernel, the verifier), so a worker process of its own would only add its start-up (importing
    Dask, nbgrader's API and the course) and its event loop; measured on 2 cores, the two worker
    processes (and their nannies) cost 7.8 core-s in a 47-s batch of 10 submissions.
    """
    import logging

    import dask
    from distributed import Client, LocalCluster

    from unet_grader import warm

    global _LOCAL_THREADS
    with _SLOTS_LOCK:
        _LOCAL_THREADS += workers
    interrupted = contextlib.ExitStack()  # entered if the batch is interrupted, left once the cluster closed
    try:
        with (interrupted, dask.config.set(QUIET_WORKERS),
              LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                           dashboard_address=None, silence_logs=logging.ERROR) as cluster,
              Client(cluster) as client):
            try:
                yield client
            except BaseException:
                # Ctrl-C: the gradings in flight stop now (nothing recorded for them) rather than run
                # on to their time limit while the closing cluster waits for its workers.
                interrupted.enter_context(warm.stopped())
                raise
    finally:
        with _SLOTS_LOCK:
            _LOCAL_THREADS -= workers
        warm.stop(but_this_thread=True)  # the workers' kept processes end with them


def needs_shared_gradebook(course: Course, workers: int, scheduler: str | None) -> str | None:
    """Why this gradebook cannot take this many writers (None when it can)."""
    if not course.db_url().startswith("sqlite"):
        return None
    if scheduler:
        return ("--scheduler sends submissions to other machines, which cannot write this course's SQLite file:"
                " use a PostgreSQL gradebook (--db postgresql+psycopg2://...) that the workers can reach.")
    if workers > 1:
        return (f"--workers {workers} needs a gradebook that several processes can write at once: SQLite cannot."
                " Use a PostgreSQL gradebook (--db postgresql+psycopg2://...) or --workers 1.")
    return None


def run(tasks: list[GradingTask], workers: int = 1, scheduler: str | None = None) -> Iterator[tuple[str, object]]:
    """Grade ``tasks``, yielding ``(student, GradedSubmission or the exception)`` as each finishes.

    ``scheduler`` (``tcp://host:port``): on that Dask cluster; ``workers`` > 1: on a local Dask
    cluster of that many workers, each on its own cores (:func:`local_cluster`); otherwise one
    after the other, here.
    """
    if not scheduler and workers <= 1:
        for task in tasks:
            try:
                yield task.student, grade_task(task)
            except Exception as error:  # noqa: BLE001 - reported per student by the caller
                yield task.student, error
        return
    import uuid

    from distributed import Client, as_completed

    batch_id = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = stack.enter_context(Client(scheduler, timeout="30s"))
            except (OSError, TimeoutError) as error:
                raise CourseError(f"could not reach the Dask scheduler at {scheduler} ({type(error).__name__}:"
                                  f" {str(error)[:200]}); start one with `dask scheduler` and its workers with"
                                  f" `dask worker {scheduler}`") from None
        else:
            client = stack.enter_context(local_cluster(workers))
        futures = {client.submit(grade_task, task, key=f"grade-{task.student}-{batch_id}", pure=False): task.student
                   for task in tasks}
        try:
            for future in as_completed(futures):
                student = futures[future]
                try:
                    yield student, future.result()
                except Exception as error:  # noqa: BLE001 - e.g. KilledWorker after repeated worker deaths
                    yield student, error
                finally:
                    future.release()
        except BaseException:  # Ctrl-C, or the caller stopped reading: no further submission starts
            with contextlib.suppress(Exception):  # (an unreachable scheduler: nothing more to tell it)
                client.cancel(list(futures))
            raise
