"""Maintainer script: write a dataset's registry file from a trusted local copy of its files.

    python -m data_fetch.make_registry camvid --mirror /work/shared/data/camvid \\
        --names-from segnet_test.txt

Hashes and sizes come from the files themselves, so the committed registry pins exactly the
bytes we checked. Files named in ``--names-from`` lists (SegNet ``CamVid/*.txt`` format) but
absent from the mirror are kept as unverified entries (hash ``None``); entries already in the
registry that the mirror lacks are kept unchanged, so re-running never loses information.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pooch

from data_fetch.registry import (
    REGISTRY_FOLDERS,
    FileEntry,
    builtin_registry_path,
    format_registry,
    load_registry_file,
)


def hash_folder(root: Path, folders: Iterable[str]) -> list[FileEntry]:
    """A hashed entry for every PNG under ``root/<folder>/``."""
    entries = []
    for folder in folders:
        if not (root / folder).is_dir():
            continue
        for path in sorted((root / folder).glob("*.png")):
            entries.append(FileEntry(f"{folder}/{path.name}", pooch.file_hash(str(path)), path.stat().st_size))
    return entries


def names_from_segnet_list(text: str, folders: Iterable[str]) -> list[FileEntry]:
    """Unverified entries from SegNet list lines: '/SegNet/CamVid/test/X.png /SegNet/CamVid/testannot/X.png'."""
    allowed = set(folders)
    entries = []
    for token in text.split():
        parts = token.strip().split("/")
        if len(parts) >= 2 and parts[-2] in allowed and parts[-1].endswith(".png"):
            entries.append(FileEntry(f"{parts[-2]}/{parts[-1]}", None, None))
    return entries


def merge(*layers: Iterable[FileEntry]) -> list[FileEntry]:
    """Later layers win, except that an unverified entry never replaces a hashed one."""
    merged: dict[str, FileEntry] = {}
    for layer in layers:
        for entry in layer:
            old = merged.get(entry.path)
            if old is None or entry.sha256 is not None or old.sha256 is None:
                merged[entry.path] = entry
    return list(merged.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_fetch.make_registry", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=sorted(REGISTRY_FOLDERS))
    parser.add_argument("--mirror", required=True, help="trusted local copy of (some of) the files")
    parser.add_argument("--names-from", action="append", default=[], help="SegNet-style list file of extra names")
    parser.add_argument("--note", action="append", default=[], help="provenance line for the file's header")
    parser.add_argument("--out", help="registry file to write (default: the packaged one)")
    args = parser.parse_args(argv)

    folders = REGISTRY_FOLDERS[args.dataset]
    out = Path(args.out) if args.out else Path(os.fspath(builtin_registry_path(args.dataset)))
    existing = load_registry_file(out) if out.is_file() else ()
    listed = [entry for name in args.names_from for entry in names_from_segnet_list(Path(name).read_text(), folders)]
    hashed = hash_folder(Path(args.mirror), folders)
    entries = merge(listed, existing, hashed)
    header = [
        f"{args.dataset} registry for data_fetch: one file per line, 'path sha256:<hex> size_in_bytes'.",
        "'None -' = hash and size unknown: data_fetch checks such files by PNG format, not by hash.",
        *args.note,
        f"{sum(e.sha256 is not None for e in entries)} hashed, {sum(e.sha256 is None for e in entries)} unverified.",
        "Regenerate with: python -m data_fetch.make_registry (see data_fetch/make_registry.py).",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(format_registry(entries, header), encoding="utf-8")
    print(f"wrote {out}: {len(hashed)} files hashed from {args.mirror}, {len(entries)} entries in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
