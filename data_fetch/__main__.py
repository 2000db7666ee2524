"""``python -m data_fetch``: the command-line face of :func:`data_fetch.fetch`.

Every known failure ends with one ``error: ...`` line and exit status 1 (no traceback), so a
student sees what to do rather than a stack of library frames.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

from data_fetch.errors import DataFetchError
from data_fetch.fetch import DEFAULT_RETRIES, fetch, list_datasets
from data_fetch.registry import Dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_fetch",
        description="Download a dataset (or copy it from a mirror) into a folder, checking every file.",
        epilog="examples:\n"
        "  python -m data_fetch --list\n"
        "  python -m data_fetch camvid --dest data/camvid --split train,val\n"
        "  python -m data_fetch camvid --dest data/camvid --mirror ../shared/data/camvid --split train,val\n"
        "  python -m data_fetch carla --dest data/carla --mirror ~/Downloads/carla",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", nargs="?", help="dataset name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the known datasets and exit")
    parser.add_argument("--dest", help="folder to put the files in (created if needed)")
    parser.add_argument("--mirror", help="local folder or http(s) URL with the same relative paths")
    parser.add_argument("--split", help="comma-separated splits, e.g. train,val (default: all)")
    parser.add_argument("--registry", help="registry file to use instead of the built-in one (maintainers)")
    parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="retries per file over HTTP")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def describe(datasets: Mapping[str, Dataset] | None = None) -> str:
    """One paragraph per dataset: name, title, splits, file count and size."""
    lines = []
    for dataset in list_datasets(datasets):
        lines.append(f"{dataset.name}: {dataset.title}")
        if dataset.files:
            known = sum(entry.size or 0 for entry in dataset.files)
            hashed = sum(entry.sha256 is not None for entry in dataset.files)
            lines.append(f"    {len(dataset.files)} files ({hashed} with SHA256), {known / 1e6:,.1f} MB of known size")
        if dataset.splits:
            lines.append(f"    splits: {', '.join(dataset.splits)}")
        lines.append(f"    source: {dataset.base_url or 'no public direct download: --mirror DIR only'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, datasets: Mapping[str, Dataset] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(describe(datasets))
        return 0
    if not args.dataset or not args.dest:
        parser.error("give a dataset and --dest DIR (or --list)")
    try:
        fetch(
            args.dataset, args.dest, mirror=args.mirror, splits=args.split, progress=not args.no_progress,
            datasets=datasets, registry_file=args.registry, retries=args.retries,
        )
    except DataFetchError as error:
        from unet_course.i18n import _

        print(_("error: {error}").format(error=error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
