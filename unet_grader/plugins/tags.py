"""Tag hygiene: a submission's cell tags cannot change how its cells run."""

from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor

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
