"""What each dataset's class ids mean: names, display colours and the void (ignore) id.

One table per on-disk layout, so that the pipeline, the plots, the metrics and the data
generator all agree on what id 7 is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """Class table and file layout of one dataset family.

    ``void_id`` is the label that is never scored (``None`` if every id is a real class).
    ``layout`` is ``"carla"`` (CameraRGB/CameraMask, id in the mask's red channel) or
    ``"camvid"`` (SegNet layout: <split>/ and <split>annot/, grayscale ids).
    """

    name: str
    layout: str
    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    void_id: int | None
    image_size: tuple[int, int]  # (height, width) of the files on disk

    @property
    def n_classes(self) -> int:
        """Number of ids the model predicts (void included: it is an output like any other)."""
        return len(self.class_names)

    @property
    def scored_ids(self) -> list[int]:
        """Ids that count in mIoU: every id but the void one."""
        return [i for i in range(self.n_classes) if i != self.void_id]


# CARLA 0.9 semantic tags, as in the CameraMask frames of the classic U-Net assignment
# (ids 0-22, class id in the red channel). Colours: CARLA's CityScapesPalette.
CARLA = DatasetInfo(
    name="carla",
    layout="carla",
    class_names=(
        "Unlabeled", "Building", "Fence", "Other", "Pedestrian", "Pole", "RoadLine", "Road",
        "Sidewalk", "Vegetation", "Vehicle", "Wall", "TrafficSign", "Sky", "Ground", "Bridge",
        "RailTrack", "GuardRail", "TrafficLight", "Static", "Dynamic", "Water", "Terrain",
    ),
    colors=(
        (0, 0, 0), (70, 70, 70), (100, 40, 40), (55, 90, 80), (220, 20, 60), (153, 153, 153),
        (157, 234, 50), (128, 64, 128), (244, 35, 232), (107, 142, 35), (0, 0, 142),
        (102, 102, 156), (220, 220, 0), (70, 130, 180), (81, 0, 81), (150, 100, 100),
        (230, 150, 140), (180, 165, 180), (250, 170, 30), (110, 190, 160), (170, 120, 50),
        (45, 60, 150), (145, 170, 100),
    ),
    void_id=0,
    image_size=(480, 640),
)

# CamVid as prepared for SegNet (11 classes + void), colours from the SegNet scripts.
CAMVID = DatasetInfo(
    name="camvid",
    layout="camvid",
    class_names=(
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
        "Pedestrian", "Bicyclist", "Unlabelled",
    ),
    colors=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
        (0, 0, 0),
    ),
    void_id=11,
    image_size=(360, 480),
)

# The embedded default dataset is synthetic but written in the CARLA encoding, so it shares
# CARLA's class table: the same notebook code reads both.
SYNTHETIC = DatasetInfo(
    name="synthetic",
    layout="carla",
    class_names=CARLA.class_names,
    colors=CARLA.colors,
    void_id=CARLA.void_id,
    image_size=CARLA.image_size,
)

DATASETS = {info.name: info for info in (SYNTHETIC, CARLA, CAMVID)}


def get_dataset_info(name: str) -> DatasetInfo:
    """Look a dataset up by name, with a message that lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(f"Unknown dataset {name!r}; known datasets: {known}.") from None
