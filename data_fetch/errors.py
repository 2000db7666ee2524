"""Every way a fetch can fail, each with a message a student can act on.

The CLI prints ``str(error)`` and exits non-zero, so each message must stand on its own:
which file or URL, what was expected, and what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence

from unet_course.i18n import _


def first_few(names: Sequence[str], shown: int = 5) -> str:
    """'a, b, c (and 7 more)': enough to find the problem without flooding the terminal."""
    listed = ", ".join(names[:shown])
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return f"{listed}{more}"


class DataFetchError(Exception):
    """Base class: anything that stops a fetch. Nothing partial is left in the destination."""


class UnknownDatasetError(DataFetchError):
    """The dataset name is not in the registry."""


class UnknownSplitError(DataFetchError):
    """A requested split does not exist for this dataset."""


class ManualDownloadRequired(DataFetchError):
    """The dataset has no public direct-download URL: the user must fetch it and pass --mirror."""


class SourceUnreachableError(DataFetchError):
    """The server (or mirror folder) could not be reached at all."""


class DownloadInterruptedError(DataFetchError):
    """A transfer stopped before the whole file arrived (dropped connection, truncated body)."""


class HashMismatchError(DataFetchError):
    """A downloaded file's SHA256 differs from the registry: corrupted or a different version."""

    def __init__(self, path: str, source: str, expected: str, got: str):
        self.path, self.source, self.expected, self.got = path, source, expected, got
        super().__init__(_(
            "hash mismatch for {path} (from {source}): expected {expected}, got sha256:{got}. The bad download"
            " was deleted; the source holds a different or corrupted copy."
        ).format(path=path, source=source, expected=expected, got=got))


class InvalidFileError(DataFetchError):
    """A file without a recorded hash failed its format check (not a PNG, wrong size, bad ids)."""


class MissingFilesError(DataFetchError):
    """The source lacks some of the files the registry (or the layout) requires."""


class DestinationNotWritableError(DataFetchError):
    """The destination folder cannot be created or written to."""


class DiskFullError(DataFetchError):
    """Not enough free space, found before starting or by ENOSPC while writing."""


class RegistryFormatError(DataFetchError):
    """A registry file has a line that is not 'path hash size'."""
