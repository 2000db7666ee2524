"""Release stubs: students see the seed's ``None`` placeholders, not ``NotImplementedError``.

``StubSolutions`` lets the source notebook say exactly what students see in place of a solution:
a ``### BEGIN STUB`` ... ``### END STUB`` block of commented-out lines right after a
``### END SOLUTION`` becomes, uncommented, the release's code, instead of nbgrader's bare
``raise NotImplementedError()``. In the source the stub is only comments, so the instructor
notebook still runs and validates.
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
