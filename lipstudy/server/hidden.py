"""The hidden test set: the ids the server expects and the secret labels it scores against.

Sections 1-2 of the paper: "the test set will be kept secret to avoid overfitting". The labels are read
with :func:`lipstudy.data.decode.read_label`, the validated reader every other part of the study uses, so a
colour-coded or out-of-range hidden label is an error naming its file, never a silent mis-score.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lipstudy.data.decode import DataError, read_ids, read_label
from lipstudy.labels import LIP_NUM_CLASSES

# Where a LIP-layout root keeps its test id list (official, doubled folders, flat).
ID_FILES = ("Testing_images/test_id.txt", "Testing_images/Testing_images/test_id.txt", "test_id.txt")


@dataclass
class HiddenTestSet:
    """Test ids (``test_id.txt``), a folder of ``<id>.png`` labels, and each label's size.

    ``sizes`` (width, height) come from the PNG headers only, so opening a LIP-sized set is quick; the
    server needs them to refuse a prediction of the wrong size before decoding it.
    """

    label_dir: Path
    ids: list[str]
    sizes: dict[str, tuple[int, int]]
    num_classes: int = LIP_NUM_CLASSES

    @classmethod
    def from_root(cls, root, label_dir=None, num_classes: int = LIP_NUM_CLASSES) -> "HiddenTestSet":
        """The hidden set of a benchmark root: labels in ``ROOT/server/test_segmentations/`` (where the
        synthetic benchmark writes them) unless ``label_dir`` is given; ids from the root's test id list,
        or every label file when the root has none."""
        root = Path(root)
        label_dir = Path(label_dir) if label_dir else root / "server" / "test_segmentations"
        if not label_dir.is_dir():
            raise DataError(f"{label_dir}: hidden test labels not found (give --labels DIR)")
        id_file = next((root / p for p in ID_FILES if (root / p).is_file()), None)
        ids = read_ids(id_file) if id_file else sorted(p.stem for p in label_dir.glob("*.png"))
        if not ids:
            raise DataError(f"{label_dir}: no test ids (no id list under {root}, looked for "
                            f"{', '.join(ID_FILES)}, and no <id>.png labels)")
        dups = [i for i, n in Counter(ids).items() if n > 1]
        if dups:
            raise DataError(f"{id_file}: ids listed twice, e.g. {', '.join(dups[:3])}")
        sizes = {}
        for image_id in ids:
            path = label_dir / f"{image_id}.png"
            try:
                with Image.open(path) as im:  # header only: the pixels are read when scoring
                    sizes[image_id] = im.size
            except FileNotFoundError:
                raise DataError(f"{path}: hidden label of test id {image_id!r} not found") from None
            except Exception as e:  # Pillow raises several types for a broken header
                raise DataError(f"{path}: hidden label unreadable ({e})") from None
        return cls(label_dir, ids, sizes, num_classes)

    def label_path(self, image_id: str) -> Path:
        return self.label_dir / f"{image_id}.png"

    def label(self, image_id: str) -> np.ndarray:
        """The validated label map of one test image (raises DataError naming the file)."""
        label = read_label(self.label_path(image_id), self.num_classes)
        if label.shape[::-1] != self.sizes[image_id]:
            w, h = self.sizes[image_id]
            raise DataError(f"{self.label_path(image_id)}: changed while the server was running "
                            f"(size {label.shape[1]}x{label.shape[0]}, was {w}x{h})")
        return label

    def check(self) -> list[str]:
        """Read every hidden label fully; every problem found (one message each), [] if none."""
        problems = []
        for image_id in self.ids:
            try:
                self.label(image_id)
            except DataError as e:
                problems.append(str(e))
        return problems
