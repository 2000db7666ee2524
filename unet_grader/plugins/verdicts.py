"""Verdicts: the course's test cells are decided outside the student's process.

The kernel only records models (see :mod:`unet_course.evidence`); a verifier process
(:mod:`unet_grader.verifier`), started with the kernel so that it imports TensorFlow meanwhile,
receives each test cell's records as soon as the cell has run, and ``VerifyRecordedModels``
leaves each test cell with exactly one verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor

from unet_course.evidence import EVIDENCE_MIME, failure_message
from unet_grader.assignment import TEST_CELL


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


class VerifierSession:
    """The verifier process for one notebook, started before the kernel so that it imports
    TensorFlow meanwhile; each test cell's records are sent as soon as the cell has run, and
    checked while the kernel goes on (JSON lines in, one verdict object out)."""

    current = None

    def __init__(self):
        # Memory-limited where util-linux's prlimit exists (Linux); plain elsewhere (macOS).
        limit = ["prlimit", f"--as={8 * 2**30}", "--"] if shutil.which("prlimit") else []
        self.process = subprocess.Popen(
            [*limit, sys.executable, "-m", "unet_grader.verifier"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.sent: dict[str, str] = {}

    @classmethod
    def start(cls) -> "VerifierSession":
        if cls.current is None:
            cls.current = cls()
        return cls.current

    @classmethod
    def take(cls) -> "VerifierSession":
        session, cls.current = cls.start(), None
        return session

    def send(self, grade_id: str, spec: dict) -> None:
        line = json.dumps({grade_id: spec})
        if self.sent.get(grade_id) != line:
            try:
                self.process.stdin.write(line + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # the verifier died: finish() reports it
            self.sent[grade_id] = line

    def finish(self, timeout: float = 900) -> tuple[dict | None, str]:
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
            return (json.loads(stdout) if self.process.returncode == 0 else None), stderr
        except (subprocess.TimeoutExpired, ValueError, OSError):
            self.process.kill()
            return None, "timed out"


class VerifyRecordedModels(NbGraderPreprocessor):
    """Decide the course's test cells outside the student's process (see unet_grader.verifier).

    Runs right after the notebook: collects the models each test cell recorded, removes the
    records from the outputs, runs the verifier in a fresh interpreter with memory and time
    limits, and leaves each test cell with exactly one verdict: a pass line, or one
    ``GradingFailure`` error listing every problem.
    """

    def preprocess(self, nb, resources):
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
        session = VerifierSession.take()
        if not specs:
            session.process.kill()
            return nb, resources
        started = time.perf_counter()
        if os.environ.get("UNET_COURSE_KEEP_RECORDS"):  # debugging and benchmarks: what the verifier got
            Path(os.environ["UNET_COURSE_KEEP_RECORDS"]).write_text(json.dumps(specs))
        for grade_id, spec in specs.items():
            session.send(grade_id, spec)  # only what was not sent (or changed) since the cell ran
        verdicts, stderr = session.finish()
        if verdicts is None:
            detail = (stderr.strip().splitlines() or ["?"])[-1][:300]
            self.log.error("The verifier failed: %s", detail)
            verdicts = {grade_id: [f"the grader could not check the recorded models ({detail})"] for grade_id in specs}
        self.log.info("Verified the recorded models outside the kernel; %.1f s after the notebook ended",
                      time.perf_counter() - started)
        for grade_id, cell in cells.items():
            problems, kind = verdicts.get(grade_id, ["no verdict"]), specs[grade_id]["kind"]
            if problems and notes[grade_id]:  # say why nothing was recorded: the kernel was gone
                problems = notes[grade_id][:1]
            if problems:
                message = failure_message(kind, problems)
                cell.outputs.append(new_output("stream", name="stdout", text=f"\u2717 {kind}: checked by the grader\n"))
                cell.outputs.append(error_output("GradingFailure", message))
            else:
                hidden = specs[grade_id]["hidden"]
                cell.outputs.append(new_output("stream", name="stdout", text=(
                    "All hidden checks passed\n" if hidden else "All tests passed\n")))
        return nb, resources
