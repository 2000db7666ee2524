"""Reading submissions: a file nbgrader cannot read is graded as the unanswered assignment, with the reason.

nbgrader reads a submission with nbformat; a truncated, binary, empty or schema-breaking file makes it
raise, and nbgrader then deletes the student's autograded folder, leaves every grade empty (no score at
all, not a 0), keeps no reason anyone could show, and exits with an error. :class:`ReadSubmission` is
Autograde's exporter (``Autograde.exporter_class``, set in ``nbgrader_config.py``): it reads the file as
nbformat does, and when that fails hands nbgrader's ordinary pipeline the release notebook, unanswered,
with the reason in its metadata. Nothing is executed (:mod:`.execute`), every test fails saying why
(:mod:`.verdicts`), nbgrader records a 0 for each, and the reason reaches the course's summary
(``unet_grader.report.read_result``) and the student's feedback (:class:`ExplainNotGraded`). Plain
``nbgrader autograde``, the course's CLI and formgrader's Autograde button all read through it.
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbformat.v4 import new_markdown_cell
from nbgrader.preprocessors import NbGraderPreprocessor

from unet_course.i18n import N_, _

METADATA = "unet_course"  # the notebook metadata where the course's grading keeps its notes
UNREADABLE = "unreadable"  # why the submitted file could not be read
GRADING_FAILURE = "grading_failure"  # why the grader could not grade it (the verifier crashed, ...)


def read_notebook(text: str):
    """The notebook in ``text``; raises what makes it no notebook (JSON, encoding, schema)."""
    with warnings.catch_warnings():  # duplicate cell ids etc.: nbgrader repairs those itself
        warnings.simplefilter("ignore")
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    return notebook


def unreadable_reason(error: BaseException) -> str:
    """What the summary and the feedback say about a file that is not a notebook."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"the submitted file is not a readable notebook ({type(error).__name__}: {first[:120]})"


def not_graded_reason(notebook) -> str | None:
    """Why an autograded notebook was not graded normally (None when it was)."""
    notes = notebook.get("metadata", {}).get(METADATA) or {}
    return (notes.get(UNREADABLE) or notes.get(GRADING_FAILURE)) if isinstance(notes, dict) else None


class ReadSubmission(NotebookExporter):
    """nbgrader's notebook exporter, reading an unreadable submission as the unanswered release."""

    def from_file(self, file_stream, resources=None, **kw):
        try:
            notebook = read_notebook(file_stream.read())
        except Exception as error:  # noqa: BLE001 - JSON, encoding, schema: all mean "not a notebook"
            notebook = self._unanswered(resources or {}, unreadable_reason(error))
        else:
            if getattr(self.parent, "_sanitizing", False):  # a submission cannot claim the grader's notes
                notes = notebook.metadata.get(METADATA)
                if isinstance(notes, dict):
                    notes.pop(UNREADABLE, None)
                    notes.pop(GRADING_FAILURE, None)
        return self.from_notebook_node(notebook, resources=resources, **kw)

    def _unanswered(self, resources: dict, reason: str):
        from nbgrader.coursedir import CourseDirectory

        info = resources.get("nbgrader", {})
        coursedir = getattr(self.parent, "coursedir", None) or CourseDirectory(config=self.config)
        release = Path(coursedir.format_path(coursedir.release_directory, ".", info.get("assignment", "")))
        path = release / f"{info.get('notebook', '')}.ipynb"
        self.log.warning("%s/%s: %s; graded as the unanswered assignment", info.get("student"),
                         info.get("notebook"), reason)
        notebook = nbformat.read(str(path), as_version=4)  # no release: nbgrader reports it as before
        notebook.metadata.setdefault(METADATA, {})[UNREADABLE] = reason
        return notebook


NOT_GRADED_NOTE = N_("""**Your submission could not be graded automatically: {reason}.**

What could not be graded was recorded as 0. {advice}""")

UNREADABLE_ADVICE = N_("Check that you submitted the notebook you worked on (a `.ipynb` file saved from JupyterLab,"
                     " not renamed or edited by hand) and that it runs from top to bottom (Kernel &rarr; Restart"
                     " Kernel and Run All Cells), then ask your instructor.")
GRADER_ADVICE = N_("This went wrong on the grader's side, not in your work: ask your instructor to grade it again.")


class ExplainNotGraded(NbGraderPreprocessor):
    """Feedback: a submission that was not graded normally says so, and why, before anything else."""

    def preprocess(self, nb, resources):
        reason = not_graded_reason(nb)
        if reason:
            notes = nb.metadata.get(METADATA) or {}
            advice = UNREADABLE_ADVICE if notes.get(UNREADABLE) else GRADER_ADVICE
            nb.cells.insert(0, new_markdown_cell(_(NOT_GRADED_NOTE).format(reason=html.escape(str(reason)[:400]),
                                                                           advice=_(advice))))
        return nb, resources
