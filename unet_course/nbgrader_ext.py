"""nbgrader plug-ins for this course.

``StubSolutions`` lets the source notebook say exactly what students see in place of a solution:
a ``### BEGIN STUB`` ... ``### END STUB`` block of commented-out lines right after a
``### END SOLUTION`` becomes, uncommented, the release's code (the seed's ``None`` placeholders),
instead of nbgrader's bare ``raise NotImplementedError()``. In the source the stub is only
comments, so the instructor notebook still runs and validates.
"""

from __future__ import annotations

import re

from nbgrader.preprocessors import ClearSolutions

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
    return steps + [ClearExecutionTags]


def autograde_preprocessors() -> list:
    """nbgrader's Autograde steps with StderrToStdout right after the notebook runs."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute

    steps = Autograde.class_traits()["autograde_preprocessors"].make_dynamic_default()
    position = steps.index(Execute) + 1
    return steps[:position] + [StderrToStdout] + steps[position:]


class ShortenTestTracebacks(NbGraderPreprocessor):
    """Feedback: a failing test shows its message, not a traceback quoting the (hidden) test code."""

    def preprocess_cell(self, cell, resources, index):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources
