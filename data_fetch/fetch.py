"""Download (or copy from a mirror) a dataset into a folder, checking every file on the way.

Pooch does the transfers (HTTP with retries, temp file, move only after the hash matches).
Around it this module adds what a course needs: one progress bar over all files, checks that
fail *before* anything is written (unknown names, missing mirror files, no free space, an
unwritable destination), format checks for files with no known hash, and a clean destination
after any failure: files are staged in ``DEST/.data_fetch-partial/`` and only moved into place
once checked, so a rerun keeps what arrived whole and fetches the rest.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pooch
import requests
from tqdm.auto import tqdm

from unet_course.i18n import _

from data_fetch.errors import (
    DataFetchError,
    DestinationNotWritableError,
    DiskFullError,
    DownloadInterruptedError,
    HashMismatchError,
    ManualDownloadRequired,
    MissingFilesError,
    SourceUnreachableError,
    first_few,
)
from data_fetch.registry import Dataset, FileEntry, builtin_datasets, get_dataset, load_registry_file
from data_fetch.validate import check_png, pair_names

STAGING_DIR = ".data_fetch-partial"
DEFAULT_RETRIES = 2
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Source:
    """Where files come from: a base URL (``kind='http'``) or a local folder (``kind='folder'``)."""

    kind: str
    base: str  # ends with '/'; registry paths are appended to it

    def locate(self, entry: FileEntry) -> str:
        return self.base + entry.path


def fetch(
    name: str | Dataset,
    dest: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    splits: str | Sequence[str] | None = None,
    progress: bool = True,
    *,
    datasets: Mapping[str, Dataset] | None = None,
    registry_file: str | os.PathLike | None = None,
    retries: int = DEFAULT_RETRIES,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Make ``dest`` hold the dataset's files (of ``splits``, default all) and return ``dest``.

    ``name`` is a dataset name or a :class:`Dataset` value (e.g. a test's own registry).
    ``mirror`` is a folder or an http(s) URL with the same relative paths as the dataset.
    ``datasets`` replaces the built-in registry and ``registry_file`` the dataset's file list
    (tests and maintainers point these at their own files). Files already in ``dest`` that pass
    their check are skipped, so calling this again is cheap and resumes an interrupted fetch.
    Raises a :class:`~data_fetch.errors.DataFetchError` subclass with a readable message.
    """
    dataset = name if isinstance(name, Dataset) else get_dataset(name, datasets)
    if registry_file is not None:
        dataset = replace(dataset, files=load_registry_file(registry_file))
    split_list = [s for s in splits.split(",") if s] if isinstance(splits, str) else list(splits or [])
    dataset.folders_for(split_list)  # unknown split names fail before anything else happens
    dest = Path(dest).expanduser().absolute()

    _say(f"{dataset.name}: {dataset.title}\n{dataset.notice}")
    source = _resolve_source(dataset, mirror)
    plan = _plan(dataset, split_list, source)
    writable_root = _check_destination(dest)
    todo = [entry for entry in plan if not _is_present(dest / entry.path, entry, dataset)]
    _check_free_space(writable_root, dest, todo, dataset)
    _announce_unverified(dataset, plan)

    if todo:
        _download_all(dataset, source, dest, plan, todo, progress, retries, timeout)
    _say(f"{dataset.name}: {len(plan)} files ready in {dest} "
         f"({len(todo)} fetched, {len(plan) - len(todo)} already present and checked)")
    return dest


def list_datasets(datasets: Mapping[str, Dataset] | None = None) -> list[Dataset]:
    """Known datasets, sorted by name (what ``python -m data_fetch --list`` prints)."""
    known = builtin_datasets() if datasets is None else datasets
    return [known[key] for key in sorted(known)]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _resolve_source(dataset: Dataset, mirror: str | os.PathLike | None) -> Source:
    """The base URL or folder to read from; mirror-only datasets explain how to get a copy."""
    if mirror is None:
        if dataset.base_url is None:
            raise ManualDownloadRequired(dataset.manual_download or f"{dataset.name} can only be fetched with --mirror")
        return Source("http", dataset.base_url.rstrip("/") + "/")
    mirror_text = os.fspath(mirror)
    if mirror_text.startswith(("http://", "https://")):
        if not dataset.files:
            raise ManualDownloadRequired(
                f"{dataset.name} needs --mirror to be a local folder (its files are discovered by "
                f"listing the folder, which HTTP cannot do); got {mirror_text}"
            )
        return Source("http", mirror_text.rstrip("/") + "/")
    root = Path(mirror_text).expanduser().resolve()
    if not root.is_dir():
        raise SourceUnreachableError(_("mirror folder {root} does not exist or is not a folder").format(root=root))
    if dataset.pairs and not (root / dataset.pairs[0]).is_dir() and (root / "data" / dataset.pairs[0]).is_dir():
        root = root / "data"  # the lab's archive unpacks to data/CameraRGB
    return Source("folder", str(root) + os.sep)


def _plan(dataset: Dataset, splits: list[str], source: Source) -> list[FileEntry]:
    """Every file the destination must end up with; folder mirrors are checked up front."""
    if not dataset.files:
        return _discover_pairs(dataset, source)
    plan = dataset.select(splits)
    if source.kind == "folder":
        missing = [entry.path for entry in plan if not os.path.isfile(source.locate(entry))]
        if missing:
            raise MissingFilesError(
                f"mirror {source.base.rstrip(os.sep)} lacks {len(missing)} of {len(plan)} files: "
                f"{first_few(missing)}{_split_hint(dataset, splits, source)}"
            )
    return plan


def _split_hint(dataset: Dataset, splits: list[str], source: Source) -> str:
    """When no --split was given, suggest the splits the mirror does hold in full."""
    if splits:
        return ""
    complete = [
        split for split in dataset.splits
        if all(os.path.isfile(source.locate(entry)) for entry in dataset.select([split]))
    ]
    return f" (to fetch only the splits it holds in full, pass --split {','.join(complete)})" if complete else ""


def _discover_pairs(dataset: Dataset, source: Source) -> list[FileEntry]:
    """File list of a registry-less dataset: the image/mask pairs found in the mirror folder."""
    if source.kind != "folder" or dataset.pairs is None:
        raise ManualDownloadRequired(dataset.manual_download or f"{dataset.name} needs --mirror DIR")
    root = Path(source.base)
    listings = []
    for folder in dataset.pairs:
        if not (root / folder).is_dir():
            raise MissingFilesError(
                f"mirror {root} has no {folder}/ folder; expected {'/ and '.join(dataset.pairs)}/ "
                f"with PNG pairs of the same names"
            )
        listings.append([p.name for p in (root / folder).iterdir() if p.suffix.lower() == ".png"])
    names = pair_names(listings[0], listings[1], *dataset.pairs)
    return [
        FileEntry(f"{folder}/{name}", None, (root / folder / name).stat().st_size)
        for name in names for folder in dataset.pairs
    ]


def _check_destination(dest: Path) -> Path:
    """Fail before writing if ``dest`` cannot be created or written; return its nearest existing folder."""
    probe = dest
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise DestinationNotWritableError(_("cannot create destination {dest}: {probe} is a file, not a folder").format(
            dest=dest, probe=probe))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DestinationNotWritableError(_("destination {dest} is not writable ({probe} does not allow writing)").format(
            dest=dest, probe=probe))
    return probe


def _is_present(path: Path, entry: FileEntry, dataset: Dataset) -> bool:
    """True if a complete, checked copy is already in place (so a rerun skips it)."""
    if not path.is_file():
        return False
    if entry.sha256 is not None:
        return pooch.file_hash(str(path)) == entry.sha256
    spec = dataset.png_specs.get(entry.folder)
    if spec is None:
        return path.stat().st_size > 0
    try:
        check_png(path, spec, entry.path)
    except DataFetchError:
        return False
    return True


def _estimated_size(entry: FileEntry, dataset: Dataset) -> int:
    """Known size, or the mean size of known files of the same format (for the space check)."""
    if entry.size is not None:
        return entry.size
    spec = dataset.png_specs.get(entry.folder)
    alike = [e.size for e in dataset.files if e.size is not None and dataset.png_specs.get(e.folder) == spec]
    known = alike or [e.size for e in dataset.files if e.size is not None]
    return sum(known) // len(known) if known else 1 << 20


def _check_free_space(writable_root: Path, dest: Path, todo: list[FileEntry], dataset: Dataset) -> None:
    needed = sum(_estimated_size(entry, dataset) for entry in todo)
    free = shutil.disk_usage(writable_root).free
    if needed > free:
        raise DiskFullError(_(
            "not enough free space for {name} in {dest}: {count} files need about {needed} but only {free} is"
            " free on that disk; free some space or choose another --dest"
        ).format(name=dataset.name, dest=dest, count=len(todo), needed=_megabytes(needed), free=_megabytes(free)))


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _announce_unverified(dataset: Dataset, plan: list[FileEntry]) -> None:
    unverified = [entry for entry in plan if entry.sha256 is None]
    if unverified:
        folders = sorted({entry.folder for entry in unverified})
        _say(
            f"note: {len(unverified)} file(s) in {', '.join(f + '/' for f in folders)} have no recorded "
            "hash: they are checked for being complete PNGs of the right size, mode and class ids, "
            "NOT by hash."
        )


class _CheckedTransfer:
    """A pooch downloader that checks each file before pooch moves it out of its temp name.

    Raising here (rather than letting pooch compare hashes) gives messages that name the
    file and both hashes, and pooch still deletes the temp file.
    """

    def __init__(self, source: Source, dataset: Dataset, todo: list[FileEntry], timeout: float):
        self.dataset = dataset
        self.entries = {source.locate(entry): entry for entry in todo}
        if source.kind == "http":
            self.transfer = pooch.HTTPDownloader(progressbar=False, timeout=timeout)
        else:
            self.transfer = _copy_from_folder

    def __call__(self, url: str, output_file: str, pooch_instance: pooch.Pooch) -> None:
        self.transfer(url, output_file, pooch_instance)
        entry = self.entries[url]
        if entry.sha256 is not None:
            got = pooch.file_hash(output_file)
            if got != entry.sha256:
                raise HashMismatchError(entry.path, url, f"sha256:{entry.sha256}", got)
        elif (spec := self.dataset.png_specs.get(entry.folder)) is not None:
            check_png(output_file, spec, entry.path)


def _copy_from_folder(url: str, output_file: str, pooch_instance: pooch.Pooch) -> None:
    """Pooch downloader for a folder mirror: ``url`` is a plain file path."""
    try:
        shutil.copyfile(url, output_file)
    except FileNotFoundError:
        raise MissingFilesError(f"{url} disappeared from the mirror while copying") from None


class _NotOnServer(Exception):
    """HTTP 404: collected so the final message lists every missing file, not just the first."""


def _download_all(
    dataset: Dataset,
    source: Source,
    dest: Path,
    plan: list[FileEntry],
    todo: list[FileEntry],
    progress: bool,
    retries: int,
    timeout: float,
) -> None:
    """Fetch ``todo`` through a staging folder; on any failure remove what this run left half-done."""
    created: list[Path] = []
    succeeded = False
    staging = dest / STAGING_DIR
    logger = pooch.get_logger()
    old_level = logger.level
    logger.setLevel("WARNING")  # pooch logs one line per file otherwise
    try:
        _make_dirs(dest, created)
        shutil.rmtree(staging, ignore_errors=True)  # leftovers of a killed run
        _make_dirs(staging, created)
        stash = pooch.Pooch(
            path=staging,
            base_url=source.base,
            registry={e.path: (f"sha256:{e.sha256}" if e.sha256 else None) for e in todo},
            retry_if_failed=retries if source.kind == "http" else 0,
        )
        transfer = _CheckedTransfer(source, dataset, todo, timeout)
        not_on_server = []
        with tqdm(total=len(plan), initial=len(plan) - len(todo), unit="file", desc=dataset.name,
                  disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
            for entry in todo:
                try:
                    staged = _fetch_one(stash, transfer, entry, source)
                except _NotOnServer:
                    not_on_server.append(entry.path)
                    continue
                target = dest / entry.path
                _make_dirs(target.parent, created)
                os.replace(staged, target)
                bar.update(1)
        if not_on_server:
            raise MissingFilesError(
                f"{source.base} lacks {len(not_on_server)} of {len(todo)} files (HTTP 404): "
                f"{first_few(not_on_server)}; the {len(todo) - len(not_on_server)} others were fetched and kept"
            )
        succeeded = True
    except OSError as error:
        raise _translate_os_error(error, dest) from None
    except KeyboardInterrupt:
        _say(f"interrupted: files already checked are kept in {dest}; rerun the same command to resume")
        raise
    finally:
        logger.setLevel(old_level)
        shutil.rmtree(staging, ignore_errors=True)
        if not succeeded:
            _remove_empty(created)


def _fetch_one(stash: pooch.Pooch, transfer: _CheckedTransfer, entry: FileEntry, source: Source) -> str:
    """One file through pooch, with transport errors turned into messages that say what to do."""
    url = source.locate(entry)
    try:
        return stash.fetch(entry.path, downloader=transfer)
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        if status == 404:
            raise _NotOnServer(entry.path) from None
        raise SourceUnreachableError(_(
            "{url} answered HTTP {status}; try again later, or pass --mirror DIR_OR_URL with a copy of the data"
        ).format(url=url, status=status)) from None
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as error:
        raise DownloadInterruptedError(_(
            "download of {path} from {url} was cut off before the end ({reason}); nothing partial was kept:"
            " rerun the same command to resume (files already fetched are skipped)"
        ).format(path=entry.path, url=url, reason=_short(error))) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        raise SourceUnreachableError(_(
            "cannot reach {url} ({reason}); check the network, or pass --mirror DIR_OR_URL pointing at a local"
            " copy of the data"
        ).format(url=url, reason=_short(error))) from None
    except requests.exceptions.RequestException as error:
        raise DownloadInterruptedError(_("download of {path} from {url} failed: {reason}").format(
            path=entry.path, url=url, reason=_short(error))) from None
    except ValueError as error:  # pooch's own hash check; ours normally fires first
        raise DataFetchError(f"{entry.path}: {error}") from None


def _short(error: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error chain, on one line."""
    text = str(error)
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.strip("()'\" ").split("\n")[0][:200]


def _translate_os_error(error: OSError, dest: Path) -> DataFetchError:
    if error.errno == errno.ENOSPC:
        return DiskFullError(_(
            "disk full while writing into {dest}; nothing partial was kept: free some space and rerun"
            " (files already fetched are kept and skipped)"
        ).format(dest=dest))
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        return DestinationNotWritableError(_("cannot write into {dest}: {reason} ({file})").format(
            dest=dest, reason=error.strerror, file=error.filename))
    return DataFetchError(f"fetch into {dest} failed: {error}")


def _remove_empty(folders: list[Path]) -> None:
    """Undo the folders a failed run made, deepest first, leaving any that hold kept files."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            pass


def _make_dirs(folder: Path, created: list[Path]) -> None:
    """mkdir -p that records which folders it made, so a failed run can remove them again."""
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)
