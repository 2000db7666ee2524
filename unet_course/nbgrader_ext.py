"""nbgrader plug-ins for this course.

``StubSolutions`` lets the source notebook say exactly what students see in place of a solution:
a ``### BEGIN STUB`` ... ``### END STUB`` block of commented-out lines right after a
``### END SOLUTION`` becomes, uncommented, the release's code (the seed's ``None`` placeholders),
instead of nbgrader's bare ``raise NotImplementedError()``. In the source the stub is only
comments, so the instructor notebook still runs and validates.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from nbgrader.preprocessors import ClearSolutions


def run_nbgrader(course, *args: str, timeout: float | None = None):
    """Run the real nbgrader CLI in a course folder (a CompletedProcess; the caller checks it).

    nbgrader runs ``alembic`` (gradebook migrations) from PATH: this environment's scripts go first.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    scripts = str(Path(sys.executable).parent)
    env = dict(os.environ, PYTHONWARNINGS="ignore", PATH=scripts + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=timeout)

BEGIN_STUB = "### BEGIN STUB"
END_STUB = "### END STUB"


def _uncomment(line: str, indent: str) -> str:
    body = line[len(indent):] if line.startswith(indent) else line.lstrip()
    if body.startswith("# "):
        body = body[2:]
    elif body.startswith("#"):
        body = body[1:]
    return indent + body if body else ""


def replace_solutions_with_stubs(source: str) -> tuple[str, bool]:
    """Replace each solution region that has a stub block after it by that stub.

    Returns the new source and whether anything was replaced. Regions without a stub are left
    for nbgrader's own ``ClearSolutions`` to handle.
    """
    lines = source.split("\n")
    out: list[str] = []
    i, replaced = 0, False
    while i < len(lines):
        line = lines[i]
        if "### BEGIN SOLUTION" in line:
            end = next((j for j in range(i + 1, len(lines)) if "### END SOLUTION" in lines[j]), None)
            if end is None:
                raise RuntimeError("no ### END SOLUTION after ### BEGIN SOLUTION")
            if end + 1 < len(lines) and BEGIN_STUB in lines[end + 1]:
                stub_end = next((j for j in range(end + 2, len(lines)) if END_STUB in lines[j]), None)
                if stub_end is None:
                    raise RuntimeError("no ### END STUB after ### BEGIN STUB")
                indent = re.match(r"\s*", lines[end + 1]).group(0)
                out += [_uncomment(stub_line, indent) for stub_line in lines[end + 2:stub_end]]
                i, replaced = stub_end + 1, True
                continue
        out.append(line)
        i += 1
    return "\n".join(out), replaced


class StubSolutions(ClearSolutions):
    """nbgrader's ClearSolutions, but solution regions followed by a stub block become that stub."""

    def _replace_solution_region(self, cell, language):
        replaced_by_stub = False
        if cell.cell_type == "code" and BEGIN_STUB in cell.source:
            cell.source, replaced_by_stub = replace_solutions_with_stubs(cell.source)
        replaced = super()._replace_solution_region(cell, language)
        return replaced or replaced_by_stub


def generate_assignment_preprocessors() -> list:
    """nbgrader's GenerateAssignment pipeline with ClearSolutions swapped for StubSolutions."""
    from nbgrader.converters import GenerateAssignment

    default = GenerateAssignment.class_traits()["preprocessors"].make_dynamic_default()
    return [StubSolutions if step is ClearSolutions else step for step in default]


# --------------------------------------------------------------------------------------------
# Autograding: close the holes that nbgrader 0.9's defaults leave open
# --------------------------------------------------------------------------------------------

from nbgrader.preprocessors import NbGraderPreprocessor  # noqa: E402

EXECUTION_TAGS = {"skip-execution", "raises-exception", "skip", "remove-cell", "remove-input"}


class ClearExecutionTags(NbGraderPreprocessor):
    """Drop cell tags that change how a cell runs.

    nbclient skips cells tagged ``skip-execution`` and a test cell with no output counts as
    passed, so a student could tag the tests and get full marks; ``raises-exception`` would let
    a failing test's error be ignored.
    """

    def preprocess_cell(self, cell, resources, index):
        tags = cell.get("metadata", {}).get("tags")
        if tags:
            kept = [tag for tag in tags if tag not in EXECUTION_TAGS]
            if len(kept) != len(tags):
                self.log.warning("Removed execution tags %s from cell %s", sorted(set(tags) - set(kept)), index)
            cell.metadata["tags"] = kept
        return cell, resources


class StderrToStdout(NbGraderPreprocessor):
    """Turn stderr output into stdout, so log noise does not fail a correct test cell.

    nbgrader fails a test cell that wrote anything to stderr; TensorFlow's C++ log lines and
    harmless Python warnings land there (sometimes in a later cell). Errors still fail the cell:
    they are ``error`` outputs, not stderr text. The text stays visible, marked as stderr.
    """

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                output["name"] = "stdout"
                output["text"] = "".join(f"[stderr] {line}\n" for line in output["text"].splitlines())
        return cell, resources


def autograde_sanitize_preprocessors() -> list:
    """nbgrader's Autograde sanitising steps plus ClearExecutionTags (after cells are restored)."""
    from nbgrader.converters import Autograde

    steps = Autograde.class_traits()["sanitize_preprocessors"].make_dynamic_default()
    return [CanonicalizeSubmission] + steps + [ClearExecutionTags]


def autograde_preprocessors() -> list:
    """nbgrader's Autograde steps: the guarded, sandboxed Execute, then the verdicts decided
    outside the kernel, then stderr made harmless."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute

    steps = Autograde.class_traits()["autograde_preprocessors"].make_dynamic_default()
    position = steps.index(Execute)
    return steps[:position] + [GuardedExecute, VerifyRecordedModels, StderrToStdout] + steps[position + 1:]


class ShortenTestTracebacks(NbGraderPreprocessor):
    """Feedback: a failing test shows its message, not a traceback quoting the (hidden) test code."""

    def preprocess_cell(self, cell, resources, index):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


# --------------------------------------------------------------------------------------------
# Running submissions: sandboxed kernel, bounded output, a dead kernel costs marks not the batch
# --------------------------------------------------------------------------------------------

from nbgrader.preprocessors import Execute  # noqa: E402
from nbclient.exceptions import CellTimeoutError, DeadKernelError  # noqa: E402
from nbformat.v4 import new_output  # noqa: E402

MAX_OUTPUT_BYTES_PER_CELL = 2 * 2**20


def _error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


TEST_CELL = re.compile(r"test_(conv_block|upsampling_block|unet_model)_(public|hidden)")


def test_cell_spec(cell) -> tuple[str, dict] | None:
    """(grade id, {kind, hidden, records}) for one of the course's graded test cells, else None."""
    from unet_course.sandbox import EVIDENCE_MIME  # not grading: that would import TensorFlow here

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
        import shutil
        import subprocess
        import sys

        # Memory-limited where util-linux's prlimit exists (Linux); plain elsewhere (macOS).
        limit = ["prlimit", f"--as={8 * 2**30}", "--"] if shutil.which("prlimit") else []
        self.process = subprocess.Popen(
            [*limit, sys.executable, "-m", "unet_course.verify"],
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
        import subprocess

        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
            return (json.loads(stdout) if self.process.returncode == 0 else None), stderr
        except (subprocess.TimeoutExpired, ValueError, OSError):
            self.process.kill()
            return None, "timed out"


class GuardedExecute(Execute):
    """nbgrader's Execute with the course's sandboxed kernel and two safety nets.

    * A kernel that dies (memory limit, ``os._exit``, killed) no longer aborts the student's
      autograde (nbgrader would delete the folder and leave the grades empty): the cell gets an
      error saying what happened and every later cell is marked as not run, so its tests
      score 0 and the grades are recorded.
    * Output beyond 2 MiB per cell is dropped with a note, so a flood of prints cannot exhaust
      the grader's memory or the disk.
    """

    def __init__(self, *args, **kwargs):
        from unet_course.sandbox import SandboxKernelManager

        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        # Slow output (a flood of prints) is not a reason to stop: drain what arrives, move on.
        kwargs.setdefault("raise_on_iopub_timeout", False)
        kwargs.setdefault("iopub_timeout", 30)
        super().__init__(*args, **kwargs)
        self._kernel_lost = None
        self._timeouts = 0
        self._output_bytes = {}

    async def _async_handle_timeout(self, timeout, cell=None):
        # The first timeout interrupts the cell (an endless loop) and grading goes on; a second
        # one means the kernel no longer answers (signals ignored, interpreter broken): stop.
        self._timeouts += 1
        if self._timeouts > 1:
            raise CellTimeoutError.error_from_timeout_and_cell("the kernel stopped answering", timeout, cell)
        return await super()._async_handle_timeout(timeout, cell)

    def preprocess(self, nb, resources=None, km=None):
        VerifierSession.start()
        started = time.perf_counter()
        try:
            return super().preprocess(nb, resources, km)
        finally:
            from unet_course import sandbox

            sandbox.SandboxKernelManager.release_all()

            where = "in the sandbox" if sandbox.active() else "UNSANDBOXED"
            self.log.info("Ran the notebook %s in %.1f s", where, time.perf_counter() - started)

    def preprocess_cell(self, cell, resources, index):
        if self._kernel_lost is not None:
            if cell.cell_type == "code":
                cell.outputs = [_error("KernelDied", f"not run: the kernel stopped in cell {self._kernel_lost}"
                                       " (it exceeded a grading limit, exited or was killed)")]
            return cell, resources
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
            spec = test_cell_spec(cell)
            if spec:  # checked while the kernel runs the next cells
                VerifierSession.start().send(*spec)
            return cell, resources
        except (DeadKernelError, CellTimeoutError) as error:  # dead, or alive but no longer answering
            self._kernel_lost = index
            how = "stopped answering" if isinstance(error, CellTimeoutError) else "stopped"
            self.log.error("The kernel %s in cell %s; later cells are marked as not run", how, index)
            cell.outputs.append(_error("KernelDied", f"the kernel {how} while running this cell: it exceeded a"
                                       " grading limit (memory, processes, time), exited or was killed"))
            return cell, resources

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = len(str(content.get("text", ""))) + sum(len(str(v)) for v in (content.get("data") or {}).values())
        used = self._output_bytes.get(cell_index, 0)
        self._output_bytes[cell_index] = used + size
        if used + size > MAX_OUTPUT_BYTES_PER_CELL:
            if used <= MAX_OUTPUT_BYTES_PER_CELL:
                outs.append(new_output("stream", name="stdout",
                                       text=f"\n[output truncated by the grader: more than {MAX_OUTPUT_BYTES_PER_CELL // 2**20} MiB]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)


class VerifyRecordedModels(NbGraderPreprocessor):
    """Decide the course's test cells outside the student's process (see unet_course.verify).

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
                count = len(problems)
                message = f"{kind}: {count} problem{'s' if count > 1 else ''}:\n" + "\n".join(f"  - {p}" for p in problems)
                cell.outputs.append(new_output("stream", name="stdout", text=f"\u2717 {kind}: checked by the grader\n"))
                cell.outputs.append(_error("GradingFailure", message))
            else:
                hidden = specs[grade_id]["hidden"]
                cell.outputs.append(new_output("stream", name="stdout", text=(
                    "All hidden checks passed\n" if hidden else "All tests passed\n")))
        return nb, resources



# --------------------------------------------------------------------------------------------
# Submissions whose structure was changed: put the assignment's cells back
# --------------------------------------------------------------------------------------------

def _nbgrader_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def canonical_submission(submission, release) -> tuple[object, list[str]]:
    """The release's cells, in the release's order and with the release's metadata, carrying the
    student's answers; the student's own extra cells follow the cell they followed.

    Repairs deleted, reordered, duplicated, retyped or re-tagged cells and edited nbgrader
    metadata (points, grade ids), so none of them changes what is graded. Returns the new
    notebook and a list of what was repaired (empty for an ordinary submission).
    """
    import copy

    repairs: list[str] = []
    answer_ids = [_nbgrader_meta(c).get("grade_id") for c in release.cells if _nbgrader_meta(c).get("solution")]
    release_ids = {_nbgrader_meta(c).get("grade_id") for c in release.cells if _nbgrader_meta(c).get("grade_id")}
    release_cell_ids = {c.get("id") for c in release.cells if c.get("id")}
    release_by_source = {c.source: ("grade", _nbgrader_meta(c)["grade_id"]) if _nbgrader_meta(c).get("grade_id")
                         else ("id", c.get("id")) for c in release.cells}

    answers: dict[str, object] = {}
    anchors: list[tuple[object, object]] = []  # (student cell, the release cell key it follows)
    last_key = None
    for cell in submission.cells:
        grade_id = _nbgrader_meta(cell).get("grade_id")
        if grade_id in answer_ids:
            if grade_id in answers:
                repairs.append(f"answer cell {grade_id} appeared more than once: the last one is graded")
            answers[grade_id] = cell
            last_key = ("grade", grade_id)
        elif grade_id in release_ids:
            last_key = ("grade", grade_id)  # a test or locked cell: the release's version is used
        elif cell.get("id") in release_cell_ids and cell.cell_type == next(
                c.cell_type for c in release.cells if c.get("id") == cell.get("id")):
            last_key = ("id", cell.get("id"))
            anchors.append((cell, ("replace", cell.get("id"))))
        elif cell.source in release_by_source:
            last_key = release_by_source[cell.source]  # an untouched copy of a release cell
        else:
            anchors.append((cell, last_key))
    for grade_id in answer_ids:
        if grade_id not in answers:  # metadata stripped or cell retyped: find the definition by its name
            name = grade_id if grade_id in ("conv_block", "upsampling_block", "unet_model") else None
            candidates = [cell for cell, _ in anchors
                          if name and cell.cell_type == "code" and re.search(rf"^def {name}\(", cell.source, re.M)]
            if candidates:
                answers[grade_id] = candidates[-1]
                anchors = [(c, k) for c, k in anchors if c is not candidates[-1]]
                repairs.append(f"answer cell {grade_id} had lost its nbgrader metadata: found by its def line")
            else:
                repairs.append(f"answer cell {grade_id} is missing: graded as the unchanged stub")

    replaced = {key[1]: cell for cell, key in anchors if isinstance(key, tuple) and key[0] == "replace"}
    extras = [(cell, key) for cell, key in anchors if not (isinstance(key, tuple) and key[0] == "replace")]
    cells = []

    def extras_after(key):
        for cell, anchor in extras:
            if anchor == key:
                extra = copy.deepcopy(cell)
                extra.get("metadata", {}).pop("nbgrader", None)  # an extra cell never carries grades
                cells.append(extra)

    extras_after(None)
    for template in release.cells:
        meta = _nbgrader_meta(template)
        grade_id = meta.get("grade_id")
        cell = copy.deepcopy(template)
        if grade_id in answers:
            cell.source = answers[grade_id].source if isinstance(answers[grade_id].source, str) else "".join(answers[grade_id].source)
        elif template.get("id") in replaced and not grade_id:
            cell.source = replaced[template.get("id")].source
        cells.append(cell)
        extras_after(("grade", grade_id) if grade_id else ("id", template.get("id")))

    graded = [(_nbgrader_meta(c).get("grade_id"), c.cell_type) for c in submission.cells if _nbgrader_meta(c).get("grade_id")]
    expected = [(_nbgrader_meta(c).get("grade_id"), c.cell_type) for c in release.cells if _nbgrader_meta(c).get("grade_id")]
    if [g for g in graded if g in expected] != expected:
        repairs.append("graded cells were deleted, reordered, duplicated or retyped: restored from the assignment")
    for cell in submission.cells:
        grade_id = _nbgrader_meta(cell).get("grade_id")
        template = next((c for c in release.cells if _nbgrader_meta(c).get("grade_id") == grade_id), None)
        if grade_id and template is not None and _nbgrader_meta(cell) != _nbgrader_meta(template):
            repairs.append(f"nbgrader metadata of {grade_id} was edited: the assignment's is used")
        elif grade_id and template is None:
            repairs.append(f"a cell claims an unknown grade id {str(grade_id)[:40]!r}: its metadata is ignored")
    result = copy.deepcopy(submission)
    result.cells = cells
    return result, list(dict.fromkeys(repairs))


class CanonicalizeSubmission(NbGraderPreprocessor):
    """First autograde step: rebuild the submission around the release's cells (see
    :func:`canonical_submission`); what was repaired is kept in the notebook's metadata and
    reported to the instructor and the student."""

    def preprocess(self, nb, resources):
        import nbformat
        from nbgrader.coursedir import CourseDirectory

        info = resources.get("nbgrader", {})
        coursedir = CourseDirectory(config=self.config)
        release_dir = coursedir.format_path(coursedir.release_directory, ".", info.get("assignment", ""))
        path = Path(release_dir) / f"{info.get('notebook', '')}.ipynb"
        if not path.is_file():
            self.log.warning("No release notebook at %s: the submission's structure is not checked", path)
            return nb, resources
        release = nbformat.read(str(path), as_version=4)
        nb, repairs = canonical_submission(nb, release)
        for repair in repairs:
            self.log.warning("Repaired the submission: %s", repair)
        nb.metadata.setdefault("unet_course", {})["repairs"] = repairs
        return nb, resources
