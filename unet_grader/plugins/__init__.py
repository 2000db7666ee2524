"""nbgrader plug-ins for this course, one module per concern, and the pipelines that use them.

* :mod:`.stubs`     release: solution regions become the seed's ``None`` stubs
* :mod:`.reading`   autograde, reading: an unreadable file is graded as the unanswered release, with why
* :mod:`.repair`    autograde, first: the assignment's cells, whatever the submission did to them
* :mod:`.tags`      autograde: cell tags cannot skip or excuse a test
* :mod:`.execute`   autograde: the sandboxed kernel, bounded output, dead kernels recorded, nothing run after the last graded cell
* :mod:`.verdicts`  autograde: test cells decided outside the student's process
* :mod:`.feedback`  feedback: failing tests shown by their message, never the hidden code

``nbgrader_config.py`` installs these pipelines, so they apply to every nbgrader command (the
course's CLI, plain ``nbgrader autograde`` and formgrader's buttons alike).
"""

from __future__ import annotations


def generate_assignment_preprocessors() -> list:
    """nbgrader's GenerateAssignment pipeline with ClearSolutions swapped for StubSolutions."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.preprocessors import ClearSolutions

    from unet_grader.plugins.stubs import StubSolutions

    default = GenerateAssignment.class_traits()["preprocessors"].make_dynamic_default()
    return [StubSolutions if step is ClearSolutions else step for step in default]


def autograde_exporter() -> type:
    """Autograde's exporter: reads what nbgrader cannot as the unanswered release (0 per test, a reason)."""
    from unet_grader.plugins.reading import ReadSubmission

    return ReadSubmission


def autograde_sanitize_preprocessors() -> list:
    """nbgrader's sanitising steps, after the structure repair and before tag hygiene."""
    from nbgrader.converters import Autograde

    from unet_grader.plugins.repair import CanonicalizeSubmission
    from unet_grader.plugins.tags import ClearExecutionTags

    steps = Autograde.class_traits()["sanitize_preprocessors"].make_dynamic_default()
    return [CanonicalizeSubmission] + steps + [ClearExecutionTags]


def autograde_preprocessors() -> list:
    """nbgrader's autograde steps with the guarded, sandboxed Execute, then the verdicts decided
    outside the kernel, then stderr made harmless."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute

    from unet_grader.plugins.execute import GuardedExecute, StderrToStdout
    from unet_grader.plugins.verdicts import VerifyRecordedModels

    steps = Autograde.class_traits()["autograde_preprocessors"].make_dynamic_default()
    position = steps.index(Execute)
    return steps[:position] + [GuardedExecute, VerifyRecordedModels, StderrToStdout] + steps[position + 1:]


def feedback_preprocessors() -> list:
    """Feedback with hidden tests removed, failing tests shown by their message only, and first of
    all why a submission was not graded normally (when it was not)."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades

    from unet_grader.plugins.feedback import ShortenTestTracebacks
    from unet_grader.plugins.reading import ExplainNotGraded

    return [GetGrades, ClearHiddenTests, ShortenTestTracebacks, ExplainNotGraded, CSSHTMLHeaderPreprocessor]
