"""Fetch the course's real datasets (CamVid, CARLA) into a folder, checked file by file.

Command line: ``python -m data_fetch --list`` and
``python -m data_fetch camvid --dest data/camvid [--mirror DIR_OR_URL] [--split train,val]``.
From Python: ``data_fetch.fetch("camvid", "data/camvid", splits=["train", "val"])``.
"""

from data_fetch.errors import (
    DataFetchError,
    DestinationNotWritableError,
    DiskFullError,
    DownloadInterruptedError,
    HashMismatchError,
    InvalidFileError,
    ManualDownloadRequired,
    MissingFilesError,
    RegistryFormatError,
    SourceUnreachableError,
    UnknownDatasetError,
    UnknownSplitError,
)
from data_fetch.fetch import fetch, list_datasets
from data_fetch.registry import (
    Dataset,
    FileEntry,
    PngSpec,
    builtin_datasets,
    format_registry,
    get_dataset,
    load_registry_file,
    parse_registry,
)

__all__ = [
    "DataFetchError", "DestinationNotWritableError", "DiskFullError", "DownloadInterruptedError",
    "HashMismatchError", "InvalidFileError", "ManualDownloadRequired", "MissingFilesError",
    "RegistryFormatError", "SourceUnreachableError", "UnknownDatasetError", "UnknownSplitError",
    "Dataset", "FileEntry", "PngSpec", "builtin_datasets", "fetch", "format_registry",
    "get_dataset", "list_datasets", "load_registry_file", "parse_registry",
]
