"""Datasets of one split (LIP, PASCAL-Person-Part, ATR): the ids of its id list, each item's image
and label read lazily, one item at a time, and checked against each other.

The test split of LIP has no labels (LIP keeps them on its evaluation server). Pass ``label_dir``
to read them from elsewhere (our synthetic benchmark's ``server/test_segmentations``); they are
never picked up automatically, so hidden labels cannot leak into a run by accident.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from lipstudy.data.decode import DataError, read_ids, read_image, read_label
from lipstudy.data.layout import KINDS, detect_kind, find_layout
from lipstudy.labels import (
    ATR_CLASSES,
    ATR_FLIP_PAIRS,
    LIP_CLASSES,
    LIP_FLIP_PAIRS,
    PPP_CLASSES,
    PPP_FLIP_PAIRS,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ParsingDataset:
    """Images and label maps of one split, listed by an id file and read lazily.

    Items are dicts ``{"image": HxWx3 uint8 RGB, "label": HxW uint8 or None, "id": str}``, passed
    through ``transform(sample) -> sample`` when one is given. Subclasses fix the dataset kind.
    """

    kind: str = ""
    classes: tuple[str, ...] = ()
    num_classes: int = 0
    flip_pairs: list[tuple[int, int]] = []

    def __init__(self, root, split: str, transform: Callable[[dict], dict] | None = None,
                 label_dir=None):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        paths = find_layout(self.root, self.kind).split(split)
        self.layout = paths.layout
        self.image_dir = paths.images
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: image folder of split {split!r} not found")
        self.label_dir = Path(label_dir) if label_dir is not None else paths.labels
        if self.label_dir is not None and not self.label_dir.is_dir():
            raise DataError(f"{self.label_dir}: label folder of split {split!r} not found")
        self.id_file = paths.ids
        self.ids: list[str] = read_ids(paths.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        labels = self.label_dir if self.label_dir is not None else "none"
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"{len(self)} items, layout={self.layout!r}, labels={str(labels)!r})")

    def image_path(self, i: int) -> Path:
        """The image file of item ``i`` (``<id>.jpg``; ``.jpeg``/``.png`` copies are accepted)."""
        stem = self.image_dir / self.ids[i]
        for suffix in IMAGE_SUFFIXES:
            p = stem.with_name(stem.name + suffix)
            if p.is_file():
                return p
        raise DataError(f"{stem}.jpg: image of id {self.ids[i]!r} (listed in {self.id_file}) "
                        f"not found")

    def label_path(self, i: int) -> Path | None:
        """The label file of item ``i`` (``<id>.png``), or None for a split without labels."""
        if self.label_dir is None:
            return None
        p = self.label_dir / f"{self.ids[i]}.png"
        if not p.is_file():
            raise DataError(f"{p}: label of id {self.ids[i]!r} (listed in {self.id_file}) not found")
        return p

    def _load(self, i: int) -> dict:
        image_path = self.image_path(i)
        image = read_image(image_path)
        label = None
        label_path = self.label_path(i)
        if label_path is not None:
            label = read_label(label_path, self.num_classes)
            if label.shape != image.shape[:2]:
                raise DataError(
                    f"{label_path}: label size {label.shape[1]}x{label.shape[0]} (WxH) differs "
                    f"from image {image_path.name} size {image.shape[1]}x{image.shape[0]}")
        return {"image": image, "label": label, "id": self.ids[i]}

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        sample = self._load(i % len(self))
        return self.transform(sample) if self.transform is not None else sample

    def problems(self, i: int) -> list[str]:
        """Every problem of item ``i`` (image and label checked independently), [] if none."""
        out, image, label = [], None, None
        try:
            image_path = self.image_path(i)
            image = read_image(image_path)
        except DataError as e:
            out.append(str(e))
        try:
            label_path = self.label_path(i)
            if label_path is not None:
                label = read_label(label_path, self.num_classes)
        except DataError as e:
            out.append(str(e))
        if image is not None and label is not None and label.shape != image.shape[:2]:
            out.append(f"{label_path}: label size {label.shape[1]}x{label.shape[0]} (WxH) differs "
                       f"from image {image_path.name} size {image.shape[1]}x{image.shape[0]}")
        return out


class LIPDataset(ParsingDataset):
    """LIP (paper Section 2): 20 classes; splits train / val / test (test without labels unless
    ``label_dir`` points at a folder of ``<id>.png``)."""

    kind = "lip"
    classes = LIP_CLASSES
    num_classes = len(LIP_CLASSES)
    flip_pairs = LIP_FLIP_PAIRS


class PPPDataset(ParsingDataset):
    """PASCAL-Person-Part (Section 5.3, Table 5): 7 classes, labels in ``SegmentationPart/``."""

    kind = "ppp"
    classes = PPP_CLASSES
    num_classes = len(PPP_CLASSES)
    flip_pairs = PPP_FLIP_PAIRS


class ATRDataset(ParsingDataset):
    """ATR (Table 6, cross-dataset): 18 classes, labels in ``SegmentationClassAug/``."""

    kind = "atr"
    classes = ATR_CLASSES
    num_classes = len(ATR_CLASSES)
    flip_pairs = ATR_FLIP_PAIRS


DATASET_CLASSES: dict[str, type[ParsingDataset]] = {
    "lip": LIPDataset, "ppp": PPPDataset, "atr": ATRDataset,
}


class DecodedCache:
    """A dataset whose items are decoded once and then served from memory (uint8 arrays, as
    decoded). For a training stage that reads its split every epoch: the cpu profile's loader
    spends about as long decoding a JPEG and a PNG as augmenting them. Items are shared, not
    copied: a transform must not write into them (TrainTransform never does). The cache lives in
    the process that reads, so a loader worker keeps it only while it lives (persistent workers)."""

    def __init__(self, base):
        self.base = base
        self._items: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = self._items.get(i)
        if item is None:
            item = self._items[i] = self.base[i]
        return item


def open_dataset(root, split: str, kind: str = "auto", **kw) -> ParsingDataset:
    """Open one split of a LIP, PPP or ATR dataset; ``kind="auto"`` detects it from the folders."""
    if kind == "auto":
        kind = detect_kind(root)
    if kind not in DATASET_CLASSES:
        raise DataError(f"unknown dataset kind {kind!r}; expected auto, {', '.join(KINDS)}")
    return DATASET_CLASSES[kind](root, split, **kw)
