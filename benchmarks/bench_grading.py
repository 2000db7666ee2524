"""Autograding cost: per-submission latency against the floor, and batch throughput.

    python benchmarks/bench_grading.py                       # 20 submissions, 1 and 2 workers
    python benchmarks/bench_grading.py --submissions 6 --repeats 1
    python benchmarks/bench_grading.py --submissions 12 --rounds 3   # 3 back-to-back pairs of batches
    python benchmarks/bench_grading.py --submissions 10 --per-process  # which processes used the CPU

The floor is what any grading must pay: a fresh kernel that imports TensorFlow and builds one
default U-Net (nbclient, no nbgrader). Latency is one `unet_grader.batch.grade_one` (nbgrader
autograde in the sandbox, plus the verifier) for a correct submission on a warm worker (its
nbgrader and verifier kept from the previous submission, see unet_grader.warm); also the worker's
first submission, the latency held to one core, not warm (UNET_COURSE_WARM=off), not warm and
unsandboxed, and a one-off verifier alone. Throughput grades a mix of submissions with 1 and 2
workers (PostgreSQL), against the ceilings of two processes on this machine (a pure CPU loop, and
importing TensorFlow and building a U-Net, each in 1 and in 2 processes at once) and against twice
the one-core rate, and extrapolates how long a class (``--class-size``, 500) would take with each.
Prints numbers; asserts nothing. Do not run it beside other heavy work: it uses
both cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests"))

from pg_server import postgres_missing_reason, running_postgres  # noqa: E402

from unet_course.processor import cpu_flags, cpu_name  # noqa: E402 - reads /proc, no TensorFlow here
from unet_grader import sandbox, warm  # noqa: E402
from unet_grader.batch import autograde, grade_one  # noqa: E402
from unet_grader.cluster import worker_environment  # noqa: E402
from unet_grader.coursedir import DB_ENV, as_course, copy_course  # noqa: E402
from unet_grader.examples import MISTAKES, make_submission, write_submission  # noqa: E402
from unet_grader.release import release  # noqa: E402

FLOOR_CODE = ("import os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\nimport tensorflow\n"
              "from unet_grader.reference import unet_model\nmodel = unet_model()\n")


def floor_seconds() -> float:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(FLOOR_CODE)])
    started = time.perf_counter()
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    return time.perf_counter() - started


# Work timed inside its own process, to see what two processes at once get out of this machine's
# cores (virtual cores may share physical ones, and neighbours share the host): a pure CPU loop,
# and the floor's own work without the kernel (import TensorFlow, build one U-Net), which also
# leans on memory, page faults and the disk cache as a grading does.
TIMED = "import time\nt = time.perf_counter()\n{}\nprint(time.perf_counter() - t)\n"
LOOP_CODE = TIMED.format("s = 0\nfor i in range(20_000_000):\n    s += i * i")
TENSORFLOW_CODE = TIMED.format(FLOOR_CODE)


def parallel_seconds(code: str, processes: int) -> float:
    """The slowest of ``processes`` copies of ``code`` run at the same time, each with the thread
    share a grading worker gets when ``processes`` workers share this machine."""
    env = {**os.environ, **worker_environment(processes)}
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
            for _ in range(processes)]
    return max(float(run.communicate()[0].split()[-1]) for run in runs)


def parallel_ceiling(code: str = LOOP_CODE, repeats: int = 5) -> float:
    """Two copies of ``code`` at once against one alone (2 x one's time / the pair's time; median of
    ``repeats``): the most a second grading worker can add on this machine (2.0 on two free cores)."""
    return statistics.median(2 * parallel_seconds(code, 1) / parallel_seconds(code, 2) for _ in range(repeats))


def make_course(root: Path, students: int) -> tuple[Path, list[str]]:
    course = copy_course(root / "course", ROOT)
    release(course)
    release_nb, source = as_course(course).release_notebook(), as_course(course).source_notebook()
    mix = [((), ())] + [(("conv_block", "upsampling_block", "unet_model"), (m,)) for m in MISTAKES]
    names = []
    for i in range(students):
        solved, mistakes = ((("conv_block", "upsampling_block", "unet_model"), ()) if i % 2 == 0 else mix[i % len(mix)])
        name = f"student{i:03d}"
        write_submission(make_submission(release_nb, source, solved, mistakes), course, name)
        names.append(name)
    return course, names


def cpu_seconds() -> tuple[float, float] | None:
    """Core-seconds this machine has spent busy, and had stolen by its hypervisor, since boot (all
    processes, /proc/stat), or None. Stolen time is a neighbour on the host running on our virtual
    cores: it slows a batch without being work of ours, so it is counted apart."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle, steal = fields[3] + fields[4], fields[7]  # idle and iowait; steal
    return (sum(fields[:7]) - idle) / os.sysconf("SC_CLK_TCK"), steal / os.sysconf("SC_CLK_TCK")


def memory_in_use() -> float:
    """Bytes of this machine's memory in use (MemTotal - MemAvailable, /proc/meminfo)."""
    lines = Path("/proc/meminfo").read_text().splitlines()
    fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in lines}
    return fields["MemTotal"] - fields["MemAvailable"]


class MemoryPeak:
    """The most memory the machine had in use while a block ran, above what it had before (every 0.2 s):
    what a grading machine needs per worker, shared pages (the warm nbgrader's forks) counted once."""

    def __enter__(self):
        self.before = self.peak = memory_in_use()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.stop.wait(0.2):
            self.peak = max(self.peak, memory_in_use())

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    @property
    def gigabytes(self) -> float:
        return (self.peak - self.before) / 2**30


class CpuByProcess:
    """Each process's CPU time while a block runs, by command line: /proc read every 0.2 s from a
    thread (a process that lives less than that is missed; one seen ending counts under "(ended)")."""

    def __init__(self):
        self.seen: dict[tuple[str, str], tuple[str, float]] = {}
        self.stop = threading.Event()

    def _sample(self, into: dict) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            name = re.sub(r"/tmp/\S+|\d{3,}", "…", command)[:90].strip() or "(ended)"
            into[(pid, stat[19])] = (name, (int(stat[11]) + int(stat[12])) / tick)  # key: pid, start time

    def __enter__(self):
        self.before: dict = {}
        self._sample(self.before)
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.stop.wait(0.2):
            self._sample(self.seen)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._sample(self.seen)

    def totals(self) -> list[tuple[str, float]]:
        by_name: dict[str, float] = {}
        for key, (name, seconds) in self.seen.items():
            used = seconds - self.before.get(key, (name, 0.0))[1]
            if used > 0.05:
                by_name[name] = by_name.get(name, 0.0) + used
        return sorted(by_name.items(), key=lambda item: -item[1])


def grade_batch(course: Path, names: list[str], workers: int, per_process: bool = False) -> dict:
    """One batch with ``workers`` workers, from cold (each worker starts its warm nbgrader and
    verifier): its time, its rate once every worker has graded its first submission (the rate a
    large class is graded at), and the core-seconds it used and had stolen."""
    warm.stop()
    finished = []
    with (CpuByProcess() if per_process else contextlib.nullcontext() as processes, MemoryPeak() as memory):
        before, started = cpu_seconds(), time.perf_counter()
        autograde(course, names, progress=False, workers=workers,
                  done=lambda result: finished.append(time.perf_counter() - started))
        after = cpu_seconds()
    if processes:
        print(f"  CPU by process, {len(names)} submissions, {workers} worker(s):")
        for name, seconds in processes.totals()[:8]:
            print(f"    {seconds:6.1f} core-s  {name}")
    batch = {"seconds": finished[-1], "first_s": finished[workers - 1],
             "steady_per_minute": 60 * (len(finished) - workers) / (finished[-1] - finished[workers - 1]),
             "peak_memory_gb": memory.gigabytes}
    if before and after:
        batch["busy_core_s"], batch["stolen_core_s"] = after[0] - before[0], after[1] - before[1]
    return batch


def class_seconds(batch: dict, students: int, workers: int) -> float:
    """How long ``students`` submissions would take at this batch's rates (an extrapolation): its
    workers' first submissions as measured, then the rest at the rate once every worker had started."""
    return batch["first_s"] + 60 * (students - workers) / batch["steady_per_minute"]


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=20, help="per batch; at least 4")
    parser.add_argument("--repeats", type=int, default=3, help="repeats for the floor and latency medians")
    parser.add_argument("--rounds", type=int, default=1,
                        help="batches of 1 then 2 workers, back to back; the ratios' median is printed")
    parser.add_argument("--per-process", action="store_true",
                        help="also print which processes used the CPU in each batch (/proc, every 0.2 s)")
    parser.add_argument("--class-size", type=int, default=500,
                        help="also print how long a class of this many would take at the measured rates")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    print(f"processor: {cpu_name()} ({', '.join(cpu_flags())}), cores: {os.cpu_count()}, "
          f"sandbox: {'on' if sandbox.active() else 'OFF: ' + str(sandbox.unavailable_reason())}")
    numbers = {"two_process_ceiling": parallel_ceiling(),
               "two_process_ceiling_tensorflow": parallel_ceiling(TENSORFLOW_CODE, repeats=3)}
    print(f"two processes at once against one: {numbers['two_process_ceiling']:.2f}x for a pure CPU loop each"
          f" (median of 5), {numbers['two_process_ceiling_tensorflow']:.2f}x for importing TensorFlow and building"
          " a U-Net each (median of 3): the ceilings for 2 workers / 1 below")
    floors = [floor_seconds() for _ in range(args.repeats)]
    numbers["floor_s"] = statistics.median(floors)
    print(f"floor (fresh kernel + import TensorFlow + build the default U-Net): {numbers['floor_s']:.1f} s "
          f"(runs: {', '.join(f'{f:.1f}' for f in floors)})")
    with tempfile.TemporaryDirectory() as tmp:
        course, names = make_course(Path(tmp), max(args.submissions, 4))
        cold = timed(lambda: grade_one(course, names[0]))  # this process's warm grader starts here
        latencies = [timed(lambda: grade_one(course, names[0])) for _ in range(args.repeats)]
        numbers["latency_first_s"], numbers["latency_s"] = cold, statistics.median(latencies)
        # The same, held to one core as each of 2 workers on 2 cores is (the warm processes too): if
        # a grading alone gained from the second core, 2 workers could not double one worker's rate.
        warm.stop()
        all_cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(all_cores)})
        grade_one(course, names[0])
        one_core = [timed(lambda: grade_one(course, names[0])) for _ in range(args.repeats)]
        os.sched_setaffinity(0, all_cores)
        warm.stop()
        numbers["latency_one_core_s"] = statistics.median(one_core)
        os.environ[warm.WARM_ENV] = "off"
        numbers["latency_not_warm_s"] = timed(lambda: grade_one(course, names[0]))
        os.environ[sandbox.SANDBOX_ENV] = "off"
        numbers["latency_not_warm_unsandboxed_s"] = timed(lambda: grade_one(course, names[0]))
        os.environ.pop(sandbox.SANDBOX_ENV)
        os.environ.pop(warm.WARM_ENV)
        records = Path(tmp) / "records.json"
        os.environ["UNET_COURSE_KEEP_RECORDS"] = str(records)
        grade_one(course, names[0])
        os.environ.pop("UNET_COURSE_KEEP_RECORDS")
        numbers["verifier_s"] = timed(lambda: subprocess.run([sys.executable, "-m", "unet_grader.verifier"],
                                                             input=records.read_text(), capture_output=True,
                                                             text=True, check=True))
        print(f"latency, one correct submission, warm worker: {numbers['latency_s']:.1f} s = "
              f"{numbers['latency_s'] / numbers['floor_s']:.2f}x the floor (runs: {', '.join(f'{x:.1f}' for x in latencies)})")
        print(f"  the worker's first submission (starts the warm nbgrader and verifier): {cold:.1f} s")
        print(f"  held to one core (as each of 2 workers on 2 cores is): {numbers['latency_one_core_s']:.1f} s"
              f" (runs: {', '.join(f'{x:.1f}' for x in one_core)}); 2 workers at that rate each would give"
              f" {2 * numbers['latency_s'] / numbers['latency_one_core_s']:.2f}x one")
        print(f"  not warm (a fresh nbgrader and verifier per submission, UNET_COURSE_WARM=off): "
              f"{numbers['latency_not_warm_s']:.1f} s = {numbers['latency_not_warm_s'] / numbers['floor_s']:.2f}x; "
              f"also without the sandbox: {numbers['latency_not_warm_unsandboxed_s']:.1f} s")
        print(f"  a one-off verifier (fresh interpreter, all of one notebook's records): {numbers['verifier_s']:.1f} s")
        # Throughput on a shared PostgreSQL gradebook (what parallel grading needs; SQLite is one writer).
        if postgres_missing_reason():
            print(f"throughput skipped: {postgres_missing_reason()}")
        else:
            with running_postgres() as url:
                os.environ[DB_ENV] = url
                release(course)  # the assignment in that gradebook
                # Rounds of 1 then 2 workers, back to back: on a shared host the cores' speed drifts
                # over minutes, so each round's ratio compares batches run under the same neighbours.
                rounds = []
                for round_number in range(1, args.rounds + 1):
                    pair = {workers: grade_batch(course, names, workers, args.per_process) for workers in (1, 2)}
                    rounds.append(pair)
                    for workers, batch in pair.items():
                        n = len(names)
                        cores = (f"; busy {batch['busy_core_s'] / n:.1f} core-s per submission"
                                 f" ({batch['busy_core_s'] / batch['seconds']:.2f} cores on average),"
                                 f" {batch['stolen_core_s']:.0f} core-s stolen by the host") if "busy_core_s" in batch else ""
                        print(f"round {round_number}, {n} submissions, {workers} worker(s): {batch['seconds']:.0f} s,"
                              f" {60 * n / batch['seconds']:.1f} per minute; after each worker's first:"
                              f" {batch['steady_per_minute']:.1f} per minute (first {workers} done after"
                              f" {batch['first_s']:.1f} s){cores}; peak memory {batch['peak_memory_gb']:.1f} GB"
                              f" above the idle machine ({batch['peak_memory_gb'] / workers:.1f} GB per worker)")
                    print(f"round {round_number}, 2 workers / 1: {pair[1]['seconds'] / pair[2]['seconds']:.2f}x whole"
                          f" batch, {pair[2]['steady_per_minute'] / pair[1]['steady_per_minute']:.2f}x after each"
                          " worker's first submission")
                numbers["rounds"] = [{str(w): b for w, b in pair.items()} for pair in rounds]
                os.environ.pop(DB_ENV)
            whole = statistics.median(pair[1]["seconds"] / pair[2]["seconds"] for pair in rounds)
            steady = statistics.median(pair[2]["steady_per_minute"] / pair[1]["steady_per_minute"] for pair in rounds)
            numbers["ratio_whole"], numbers["ratio_steady"] = whole, steady
            n = args.class_size
            one, two = (statistics.median(class_seconds(pair[w], n, w) for pair in rounds) for w in (1, 2))
            numbers["class_size"], numbers["class_minutes"] = n, {"1": one / 60, "2": two / 60}
            print(f"throughput ratio, 2 workers / 1 (median of {len(rounds)} round(s)): {whole:.2f}x for the whole"
                  f" batch, {steady:.2f}x after each worker's first submission (this machine's two-process ceilings:"
                  f" {numbers['two_process_ceiling']:.2f}x, {numbers['two_process_ceiling_tensorflow']:.2f}x;"
                  f" 2 x one grading held to one core: {2 * numbers['latency_s'] / numbers['latency_one_core_s']:.2f}x)")
            print(f"a class of {n} at these rates (extrapolated: the workers' first submissions as measured, the rest"
                  f" at the rate once started; median of the rounds): {one / 60:.0f} min with 1 worker,"
                  f" {two / 60:.0f} min with 2 ({one / two:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
