"""Sandboxed execution: nbgrader's Execute with the course's sandboxed kernel, bounded output,
a kernel that dies costing marks, not the batch, nothing run for a file that was unreadable, and
nothing run after the last graded cell."""

from __future__ import annotations

import time

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_task
from traitlets import Bool

from unet_grader.plugins.reading import METADATA, UNREADABLE
from unet_grader.plugins.verdicts import VerifierSession, error_output, test_cell_spec

MAX_OUTPUT_BYTES_PER_CELL = 2 * 2**20


class GuardedExecute(Execute):
    """nbgrader's Execute with the course's sandboxed kernel and two safety nets.

    * A kernel that dies (memory limit, ``os._exit``, killed) no longer aborts the student's
      autograde (nbgrader would delete the folder and leave the grades empty): the cell gets an
      error saying what happened and every later cell is marked as not run, so its tests
      score 0 and the grades are recorded.
    * Output beyond 2 MiB per cell is dropped with a note, so a flood of prints cannot exhaust
      the grader's memory or the disk.

    A submission that could not be read (:mod:`.reading`) stands in as the unanswered release:
    there is nothing of the student's to run, so no kernel starts; its tests fail saying why.

    The cells after the last graded one are not run: every test has run by then, so they cannot
    change a grade, and here they are the self-learner's training section (building and summarising
    a U-Net: about a second per submission). They stay in the graded notebook and the
    feedback, without outputs.
    """

    run_after_last_grade = Bool(False, help=(
        "Also run the cells after the last graded cell (as plain nbgrader does). They cannot change a "
        "grade; set this when your feedback should show their outputs.")).tag(config=True)

    def __init__(self, *args, **kwargs):
        from unet_grader.sandbox import SandboxKernelManager

        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        # Slow output (a flood of prints) is not a reason to stop: drain what arrives, move on.
        kwargs.setdefault("raise_on_iopub_timeout", False)
        kwargs.setdefault("iopub_timeout", 30)
        # Once the last cell has answered, nothing of the kernel is needed: stop it at once rather
        # than wait a second or more for a graceful exit (the sandbox is removed either way).
        kwargs.setdefault("shutdown_kernel", "immediate")
        super().__init__(*args, **kwargs)
        self._kernel_lost = None
        self._timeouts = 0
        self._output_bytes = {}
        self._last_graded = None  # index of the last graded cell; None: run every cell

    async def _async_handle_timeout(self, timeout, cell=None):
        # The first timeout interrupts the cell (an endless loop) and grading goes on; a second
        # one means the kernel no longer answers (signals ignored, interpreter broken): stop.
        self._timeouts += 1
        if self._timeouts > 1:
            raise CellTimeoutError.error_from_timeout_and_cell("the kernel stopped answering", timeout, cell)
        return await super()._async_handle_timeout(timeout, cell)

    def preprocess(self, nb, resources=None, km=None):
        if (nb.metadata.get(METADATA) or {}).get(UNREADABLE):
            self.log.warning("Not running the notebook: %s", nb.metadata[METADATA][UNREADABLE])
            return nb, resources
        VerifierSession.discard()  # one verifier per notebook: none left over from another student's
        VerifierSession.start()
        graded = [index for index, cell in enumerate(nb.cells) if is_grade(cell) or is_task(cell)]
        self._last_graded = None if self.run_after_last_grade or not graded else graded[-1]
        if self._last_graded is not None and self._last_graded + 1 < len(nb.cells):
            self.log.info("Not running the %d cells after the last graded one (they cannot change a grade)",
                          len(nb.cells) - self._last_graded - 1)
        started = time.perf_counter()
        try:
            return super().preprocess(nb, resources, km)
        finally:
            from unet_grader import sandbox

            sandbox.SandboxKernelManager.release_all()

            where = "in the sandbox" if sandbox.active() else "UNSANDBOXED"
            self.log.info("Ran the notebook %s in %.1f s", where, time.perf_counter() - started)

    def preprocess_cell(self, cell, resources, index):
        if self._last_graded is not None and index > self._last_graded:
            return cell, resources
        if self._kernel_lost is not None:
            if cell.cell_type == "code":
                cell.outputs = [error_output("KernelDied", f"not run: the kernel stopped in cell {self._kernel_lost}"
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
            cell.outputs.append(error_output("KernelDied", f"the kernel {how} while running this cell: it exceeded a"
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
