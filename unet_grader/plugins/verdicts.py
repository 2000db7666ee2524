"""Verdicts: the course's test cells are decided outside the student's process.

The kernel only records models (see :mod:`unet_course.evidence`); a verifier process
(:mod:`unet_grader.verifier`), started with the kernel so that it imports TensorFlow meanwhile,
receives each test cell's records as soon as the cell has run, and ``VerifyRecordedModels``
leaves each test cell with exactly one verdict.

A verifier that crashes or does not answer within ``UNET_COURSE_VERIFIER_TIMEOUT`` seconds
(default 900) after the notebook has run is a failure of the grader, not of the student: the
tests score 0 and the notebook's metadata says what happened (``unet_course.grading_failure``),
for the course's summary and the student's feedback.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor

from unet_course.evidence import EVIDENCE_MIME, failure_message
from unet_course.i18n import _, language
from unet_grader.assignment import TEST_CELL
from unet_grader.verifier import LANGUAGE_KEY
from unet_grader.plugins.reading import GRADING_FAILURE, METADATA, UNREADABLE

VERIFIER_TIMEOUT_ENV = "UNET_COURSE_VERIFIER_TIMEOUT"
VERIFIER_SOCKET_ENV = "UNET_COURSE_VERIFIER_SOCKET"  # set by unet_grader.warm
VERIFIER_PID_ENV = "UNET_COURSE_VERIFIER_PID"


def error_output(ename: str, evalue: str):
    """An error output with a one-line traceback (no code quoted)."""
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def test_cell_spec(cell) -> tuple[str, dict] | None:
    """(grade id, {kind, hidden, records}) for one of the course's graded test cells, else None."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    match = TEST_CELL.fullmatch(meta.get("grade_id", "") or "")
    if cell.get("cell_type") != "code" or not match or not meta.get("grade"):
        return None
    records = [output["data"][EVIDENCE_MIME] for output in cell.get("outputs", [])
               if output.get("output_type") in ("display_data", "execute_result")
               and EVIDENCE_MIME in output.get("data", {})]
    return match.group(0), {"kind": match.group(1), "hidden": match.group(2) == "hidden", "records": records}


def verifier_command(*args: str) -> list[str]:
    """How a verifier process starts: memory-limited where util-linux's prlimit exists (Linux),
    plain elsewhere (macOS)."""
    limit = ["prlimit", f"--as={8 * 2**30}", "--"] if shutil.which("prlimit") else []
    return [*limit, sys.executable, "-m", "unet_grader.verifier", *args]


class VerifierSession:
    """The verifier for one notebook: each test cell's records are sent as soon as the cell has
    run, and checked while the kernel goes on (JSON lines in, one verdict object out).

    Where the grading worker keeps a serving verifier (:mod:`unet_grader.warm` sets
    ``UNET_COURSE_VERIFIER_SOCKET``), this notebook is one connection to it; otherwise (plain
    ``nbgrader autograde``, formgrader) a verifier process of its own starts before the kernel, so
    that it imports TensorFlow meanwhile.

    Nothing here waits on the verifier but :meth:`finish`, and that only for ``timeout`` seconds:
    records are written and answers read by threads, so a verifier that hangs or dies never
    blocks the notebook's run.
    """

    current = None

    def __init__(self):
        self.process = self.connection = None
        self.server_pid = None
        address = os.environ.get(VERIFIER_SOCKET_ENV)
        if address:
            self.connection = self._connect(address)
        if self.connection is not None:
            self.server_pid = int(os.environ.get(VERIFIER_PID_ENV) or 0) or None
            sink, errors = self.connection.makefile("w", encoding="utf-8"), None
            answers = self.connection.makefile("r", encoding="utf-8")
        else:
            self.process = subprocess.Popen(
                verifier_command(),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            sink, answers, errors = self.process.stdin, self.process.stdout, self.process.stderr
        self._sink = sink
        self.sent: dict[str, str] = {}
        self._lines: queue.SimpleQueue = queue.SimpleQueue()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._threads = [threading.Thread(target=self._write, daemon=True),
                         threading.Thread(target=self._drain, args=(answers, self._stdout), daemon=True)]
        if errors is not None:
            self._threads.append(threading.Thread(target=self._drain, args=(errors, self._stderr), daemon=True))
        for thread in self._threads:
            thread.start()
        # The verdicts speak this grading's language (a serving verifier serves every course).
        self._lines.put(json.dumps({LANGUAGE_KEY: language()}) + "\n")

    @staticmethod
    def _connect(address: str):
        """A connection to the worker's serving verifier, or None (then this notebook starts its own)."""
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(address)
            return connection
        except OSError:
            connection.close()
            return None

    @classmethod
    def start(cls) -> "VerifierSession":
        if cls.current is None:
            cls.current = cls()
        return cls.current

    @classmethod
    def take(cls) -> "VerifierSession":
        session, cls.current = cls.start(), None
        return session

    @classmethod
    def discard(cls) -> None:
        """Stop this notebook's verifier, if one was started (nothing to verify)."""
        if cls.current is not None:
            cls.current.stop()
            cls.current = None

    def _write(self) -> None:
        while (line := self._lines.get()) is not None:
            try:
                self._sink.write(line)
                self._sink.flush()
            except (OSError, ValueError):
                return  # the verifier died or was stopped: finish() reports it
        try:
            self._sink.close()
            if self.connection is not None:
                self.connection.shutdown(socket.SHUT_WR)  # end of this notebook's records
        except (OSError, ValueError):
            pass

    @staticmethod
    def _drain(stream, into: list) -> None:
        try:
            into.extend(iter(lambda: stream.read(65536), ""))
        except (OSError, ValueError):
            pass

    def send(self, grade_id: str, spec: dict) -> None:
        line = json.dumps({grade_id: spec})
        if self.sent.get(grade_id) != line:
            self._lines.put(line + "\n")
            self.sent[grade_id] = line

    def stop(self) -> None:
        """Stop this notebook's verifier: its own process, or its connection to the serving one
        (which then answers nobody and takes the next connection)."""
        self._lines.put(None)
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        else:
            self.connection.close()

    def _stop_server(self) -> None:
        """A serving verifier that no longer answers is stopped; the worker starts a new one."""
        if self.server_pid:
            try:
                os.kill(self.server_pid, signal.SIGKILL)
            except OSError:
                pass
        self.connection.close()

    def finish(self, timeout: float = 900) -> tuple[dict | None, str]:
        """``(verdicts, "")``, or ``(None, what went wrong)`` when the verifier crashed, timed out
        (``timeout`` seconds after this call) or answered something unreadable."""
        self._lines.put(None)  # end of input: the verifier answers (and its own process exits)
        if self.process is not None:
            try:
                returncode = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                return None, f"the verifier timed out after {timeout:g} s"
            for thread in self._threads[1:]:
                thread.join(30)
            if returncode != 0:
                last = ("".join(self._stderr).strip().splitlines() or [""])[-1][:300]
                return None, f"the verifier crashed ({_how_it_ended(returncode)}{': ' + last if last else ''})"
        else:
            self._threads[1].join(timeout)
            if self._threads[1].is_alive():
                self._stop_server()
                return None, f"the verifier timed out after {timeout:g} s"
            self.connection.close()
            if not self._stdout:
                return None, f"the verifier crashed ({_server_end(self.server_pid)})"
        try:
            verdicts = json.loads("".join(self._stdout))
        except ValueError:
            return None, "the verifier's answer could not be read"
        if not isinstance(verdicts, dict) or "error" in verdicts:
            why = verdicts.get("error", "") if isinstance(verdicts, dict) else ""
            return None, "the verifier's answer could not be read" + (f" ({str(why)[:300]})" if why else "")
        return verdicts, ""


def _how_it_ended(returncode: int) -> str:
    return f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"


def _server_end(pid: int | None) -> str:
    """How the serving verifier ended, as far as Linux tells a process that is not its parent
    (an ended process stays in /proc until the worker that started it reaps it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):  # ended; exit_code is the 52nd field of the whole line
            status = int(fields[49])
            return _how_it_ended(-(status & 0x7F) if status & 0x7F else status >> 8)
    except (OSError, ValueError, IndexError, TypeError):
        pass
    return "it closed the connection without an answer"


def verifier_timeout() -> float:
    """Seconds the verifier may still take once the notebook has run (read when grading starts)."""
    return float(os.environ.get(VERIFIER_TIMEOUT_ENV) or 900)


class VerifyRecordedModels(NbGraderPreprocessor):
    """Decide the course's test cells outside the student's process (see unet_grader.verifier).

    Runs right after the notebook: collects the models each test cell recorded, removes the
    records from the outputs, runs the verifier in a fresh interpreter with memory and time
    limits, and leaves each test cell with exactly one verdict: a pass line, or one
    ``GradingFailure`` error listing every problem (or saying why nothing could be checked).
    """

    def preprocess(self, nb, resources):
        timeout = verifier_timeout()
        cells, specs, notes = {}, {}, {}
        for cell in nb.cells:
            spec = test_cell_spec(cell)
            if not spec:
                continue
            grade_id, specs[grade_id] = spec
            notes[grade_id] = [o.get("evalue", "") for o in cell.get("outputs", [])
                               if o.get("output_type") == "error" and o.get("ename") == "KernelDied"]
            # Only the verdict stays: nothing the submission printed here (it may quote the hidden
            # test's code from a hook) reaches the feedback.
            cell.outputs = []
            cells[grade_id] = cell
        unreadable = (nb.metadata.get(METADATA) or {}).get(UNREADABLE)
        if unreadable or not specs:
            VerifierSession.discard()
            for cell in cells.values():  # nothing was run: every test fails, saying why
                cell.outputs.append(error_output("GradingFailure", _("not graded: {reason}").format(reason=unreadable)))
            return nb, resources
        session = VerifierSession.take()
        started = time.perf_counter()
        if os.environ.get("UNET_COURSE_KEEP_RECORDS"):  # debugging and benchmarks: what the verifier got
            Path(os.environ["UNET_COURSE_KEEP_RECORDS"]).write_text(json.dumps(specs))
        for grade_id, spec in specs.items():
            session.send(grade_id, spec)  # only what was not sent (or changed) since the cell ran
        verdicts, failure = session.finish(timeout)
        if verdicts is None:
            self.log.error("The grader failed: %s", failure)
            nb.metadata.setdefault(METADATA, {})[GRADING_FAILURE] = failure
            verdicts = {grade_id: [_("the grader could not check the recorded models: {failure}").format(failure=failure)] for grade_id in specs}
        self.log.info("Verified the recorded models outside the kernel; %.1f s after the notebook ended",
                      time.perf_counter() - started)
        for grade_id, cell in cells.items():
            problems, kind = verdicts.get(grade_id, [_("no verdict")]), specs[grade_id]["kind"]
            if problems and notes[grade_id]:  # say why nothing was recorded: the kernel was gone
                problems = notes[grade_id][:1]
            if problems:
                message = failure_message(kind, problems)
                cell.outputs.append(new_output("stream", name="stdout", text="\u2717 " + _("{exercise}: checked by the grader").format(exercise=kind) + "\n"))
                cell.outputs.append(error_output("GradingFailure", message))
            else:
                hidden = specs[grade_id]["hidden"]
                cell.outputs.append(new_output("stream", name="stdout", text=(
                    (_("All hidden checks passed") if hidden else _("All tests passed")) + "\n")))
        return nb, resources
