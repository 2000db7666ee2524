"""Feedback: what a failing test says, never the hidden test code that said it."""

from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor


class ShortenTestTracebacks(NbGraderPreprocessor):
    """Feedback: a failing test shows its message, not a traceback quoting the (hidden) test code."""

    def preprocess_cell(self, cell, resources, index):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources
