"""Submission repair: the assignment's cells, whatever the submission did to its structure."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor


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
