"""Readers for human-parsing datasets on disk: LIP (paper Section 2), PASCAL-Person-Part and ATR
(Section 5.3 and Table 6), and `lipstudy check-data`, which validates a dataset directory.

LIP comes in several on-disk shapes, all read the same way:

- the official download (``TrainVal_images/train_images/<id>.jpg``, ``TrainVal_images/train_id.txt``,
  ``TrainVal_parsing_annotations/train_segmentations/<id>.png``, the same for ``val``, and
  ``Testing_images/testing_images/<id>.jpg`` with ``Testing_images/test_id.txt``);
- the same with the doubled folders unzipping produces (``TrainVal_images/TrainVal_images/...``);
- the flat layout of SCHP / mmseg copies (``train_images/``, ``train_segmentations/``,
  ``train_id.txt``, ..., ``test_images/``, ``test_id.txt``).

The test split has no labels: LIP keeps them on its evaluation server. Pass ``label_dir`` to read
them from elsewhere (our synthetic benchmark's ``server/test_segmentations``); they are never
picked up automatically, so hidden labels cannot leak into a run by accident.

PASCAL-Person-Part and ATR: ``<root>/JPEGImages/<id>.jpg``, labels in ``<root>/SegmentationPart/``
(PPP) or ``<root>/SegmentationClassAug/`` (ATR), id lists ``<split>_id.txt`` at the root or under
``list/``; every split has labels.

Labels are 8-bit class ids (``HxW`` uint8, 255 = ignore). Files are opened lazily, one item at a
time, and every problem raises :class:`DataError` naming the file and what is wrong with it.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from lipstudy.labels import (
    ATR_CLASSES,
    ATR_FLIP_PAIRS,
    IGNORE_INDEX,
    LIP_CLASSES,
    LIP_FLIP_PAIRS,
    LIP_PALETTE,
    PPP_CLASSES,
    PPP_FLIP_PAIRS,
)

SPLITS = ("train", "val", "test")
KINDS = ("lip", "ppp", "atr")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_ID_SUFFIXES = (".jpg", ".jpeg", ".png")


class DataError(ValueError):
    """A dataset file or folder is missing or unreadable; the message names it and the problem."""


# --------------------------------------------------------------------------------------------
# Reading single files
# --------------------------------------------------------------------------------------------

def _open_fully(path: Path) -> Image.Image:
    """Open and decode the whole file, so truncated or corrupt data fails here, not later.

    LOAD_TRUNCATED_IMAGES stays off: Pillow then raises on a cut-off file instead of padding it
    with grey. PNGs are also verified chunk by chunk (CRCs, the end marker), which catches a file
    cut after its pixel data.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with Image.open(path) as probe:
            if probe.format == "PNG":
                probe.verify()
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError as e:
        raise DataError(f"{path}: not a readable image (corrupt, or not an image format)") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        what = "is truncated" if "truncated" in str(e).lower() else "is corrupt"
        raise DataError(f"{path}: cannot decode image: the file {what} ({e})") from e
    return img


def read_image(path) -> np.ndarray:
    """Read an image as ``HxWx3`` uint8 RGB.

    Grayscale, CMYK, palette and RGBA JPEG/PNGs (LIP has a few grayscale and CMYK photos) are
    converted to RGB. EXIF orientation is deliberately ignored: the annotations are aligned with
    the stored pixels, not with the rotated view a photo viewer shows.
    """
    path = Path(path)
    img = _open_fully(path)
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot convert image mode {img.mode!r} to RGB ({e})") from e
    return np.array(img, dtype=np.uint8)


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC label colormap (bit-interleaved), the palette of VOC-style indexed PNGs."""
    ids = np.arange(n)
    cmap = np.zeros((n, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (ids >> (3 * shift + channel)) & 1
            cmap[:, channel] |= bit << (7 - shift)
    return cmap.astype(np.uint8)


_VOC_COLORMAP = voc_colormap()


def _colour_label_error(path: Path, what: str) -> DataError:
    return DataError(
        f"{path}: {what}: this is a colour-coded label map, but labels must be class ids "
        f"(8-bit grayscale, one id per pixel). Convert it by mapping each palette colour to its "
        f"index in lipstudy.labels.LIP_PALETTE, e.g. rgb = np.asarray(Image.open(path)"
        f".convert('RGB')); ids = (rgb[..., None, :] == LIP_PALETTE).all(-1).argmax(-1)"
        f".astype(np.uint8), and save ids as a mode 'L' PNG"
    )


def is_colour_coded_palette(img: Image.Image, index: np.ndarray | None = None) -> bool:
    """Whether a mode-P label image encodes classes by colour rather than by index.

    VOC-style indexed PNGs store the class ids as the pixel indices, whatever the palette (VOC's
    colormap, LIP's colours in id order as SCHP writes them, grayscale, all black): accept those.
    A colour label map saved through a palette (quantised) has LIP colours at indices that are
    not their classes: reading its indices would give wrong ids. ``index`` is the image's pixel
    indices when the caller already holds them (it spares a second copy of the pixels).
    """
    if index is None:
        index = np.asarray(img)
    pal = np.array(img.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
    used = np.flatnonzero(np.bincount(index.ravel(), minlength=256))
    used = used[used < len(pal)]
    colours = pal[used]
    if len(used) == 0:
        return False
    lip_match = (colours[:, None, :] == LIP_PALETTE[None]).all(-1)  # [used, 20]
    if not lip_match.any(1).all():
        return False  # some colour is not a LIP colour: an ordinary palette
    if (colours == _VOC_COLORMAP[used]).all():
        return False  # VOC colormap (it shares a few colours with LIP's)
    colour_class = lip_match.argmax(1)
    # Black is LIP's background and also the fill of unused or blank palettes: it proves nothing.
    return bool(((colour_class != used) & colours.any(1)).any())


def _label_values(path: Path, img: Image.Image) -> np.ndarray:
    """Class ids of a decoded label PNG, whatever the mode it was saved in."""
    mode = img.mode
    if mode in ("L", "I", "I;16", "I;16B", "I;16L"):
        return np.asarray(img)
    if mode == "LA":
        return np.asarray(img)[..., 0]
    if mode == "P":
        index = np.asarray(img)
        if is_colour_coded_palette(img, index):
            raise _colour_label_error(
                path, "mode 'P' PNG whose palette holds the LIP colours at indices that are not "
                      "their class ids")
        return index
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(img)[..., :3]
        # A grayscale id map saved as RGB (R == G == B) still holds ids; any colour means a
        # colour-coded map.
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0]
        raise _colour_label_error(path, f"mode {mode!r} PNG with colours")
    raise DataError(f"{path}: unsupported label image mode {mode!r} (expected 8-bit grayscale 'L' "
                    f"or indexed 'P' class ids)")


def read_label(path, num_classes: int = len(LIP_CLASSES)) -> np.ndarray:
    """Read a label map of class ids as ``HxW`` uint8 and validate it.

    Accepts 8-bit grayscale ('L') and indexed ('P', indices = class ids) PNGs, and 16-bit or
    RGB grayscale copies; rejects colour-coded label maps (RGB colours, or a palette PNG whose
    indices are not the classes of their LIP colours) and values outside ``0..num_classes-1``
    other than 255 (ignore).
    """
    path = Path(path)
    values = _label_values(path, _open_fully(path))
    bad = ((values < 0) | (values >= num_classes)) & (values != IGNORE_INDEX)
    if bad.any():
        bad_values = np.unique(values[bad]).tolist()
        shown = ", ".join(str(v) for v in bad_values[:10]) + (" ..." if len(bad_values) > 10 else "")
        raise DataError(f"{path}: label values {shown} are outside 0..{num_classes - 1} "
                        f"({int(bad.sum())} pixels); only class ids and {IGNORE_INDEX} (ignore) are allowed")
    return values.astype(np.uint8)


def read_ids(path) -> list[str]:
    """Read an id list: one id per line, whitespace stripped, blank lines ignored.

    Some copies list file names (``<id>.jpg``) or VOC-style pairs (``/JPEGImages/<id>.jpg
    /SegmentationClassAug/<id>.png``): the id is the first entry's file name without extension.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: id list not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the id list as text ({e})") from e
    ids = []
    for line in lines:
        if not line.strip():
            continue
        name = line.split()[0].replace("\\", "/").rsplit("/", 1)[-1]
        stem, ext = os.path.splitext(name)
        ids.append(stem if ext.lower() in _ID_SUFFIXES else name)
    if not ids:
        raise DataError(f"{path}: the id list is empty (no ids in it)")
    return ids


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SplitPaths:
    """Where one split lives. ``labels`` is None where the layout ships no labels (LIP test)."""

    images: Path
    ids: Path
    labels: Path | None
    layout: str  # "official", "official (doubled folders)", "flat", "ppp", "atr"


@dataclass(frozen=True)
class Layout:
    """The resolved layout of a dataset root: its kind and the paths of each split found."""

    kind: str
    root: Path
    splits: dict[str, SplitPaths]
    looked_for: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per split, the folders and files tried (relative to root), for error messages."""

    def split(self, name: str) -> SplitPaths:
        """The paths of one split, or a DataError saying what was looked for."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        if name not in self.splits:
            tried = ", ".join(self.looked_for.get(name, ())) or "nothing"
            raise DataError(f"{self.root}: split {name!r} not found in this {self.kind.upper()} "
                            f"dataset; looked for {tried}")
        return self.splits[name]


# LIP layout families, tried in order; each maps a split to (images, id list, labels).
def _lip_families(split: str) -> list[tuple[str, str, str, str | None]]:
    if split == "test":
        return [
            ("official", "Testing_images/testing_images", "Testing_images/test_id.txt", None),
            ("official (doubled folders)", "Testing_images/Testing_images/testing_images",
             "Testing_images/Testing_images/test_id.txt", None),
            ("flat", "test_images", "test_id.txt", None),
            ("flat", "testing_images", "test_id.txt", None),
        ]
    return [
        ("official", f"TrainVal_images/{split}_images", f"TrainVal_images/{split}_id.txt",
         f"TrainVal_parsing_annotations/{split}_segmentations"),
        ("official (doubled folders)", f"TrainVal_images/TrainVal_images/{split}_images",
         f"TrainVal_images/TrainVal_images/{split}_id.txt",
         f"TrainVal_parsing_annotations/TrainVal_parsing_annotations/{split}_segmentations"),
        ("flat", f"{split}_images", f"{split}_id.txt", f"{split}_segmentations"),
    ]


def _first_existing(root: Path, rels, is_dir: bool) -> Path | None:
    for rel in rels:
        p = root / rel
        if (p.is_dir() if is_dir else p.is_file()):
            return p
    return None


def _lip_layout(root: Path) -> Layout:
    splits, looked = {}, {}
    for split in SPLITS:
        fams = _lip_families(split)
        looked[split] = tuple(dict.fromkeys(r + "/" for _, r, _, _ in fams))
        for name, images, ids, labels in fams:
            if (root / images).is_dir():
                # The id list and labels are taken from the same family when present there,
                # else from any other family (people move the pieces of a download around).
                id_path = _first_existing(root, [ids] + [f[2] for f in fams], is_dir=False)
                label_rels = [labels] + [f[3] for f in fams] if labels else []
                label_path = _first_existing(root, [r for r in label_rels if r], is_dir=True)
                if labels and label_path is None:
                    label_path = root / labels  # missing: reported when the split is opened
                splits[split] = SplitPaths(root / images, id_path or root / ids, label_path, name)
                break
    return Layout("lip", root, splits, looked)


_PART_LABEL_DIRS = {"ppp": "SegmentationPart", "atr": "SegmentationClassAug"}


def _part_layout(root: Path, kind: str) -> Layout:
    label_dir = _PART_LABEL_DIRS[kind]
    splits, looked = {}, {}
    for split in SPLITS:
        id_rels = [f"{split}_id.txt", f"list/{split}_id.txt"]
        looked[split] = tuple(id_rels)
        id_path = _first_existing(root, id_rels, is_dir=False)
        if id_path is not None:
            splits[split] = SplitPaths(root / "JPEGImages", id_path, root / label_dir, kind)
    return Layout(kind, root, splits, looked)


def detect_kind(root) -> str:
    """Which dataset a root holds: ``"lip"``, ``"ppp"`` or ``"atr"``, from its folders."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root does not exist (or is not a folder)")
    found = [k for k, d in _PART_LABEL_DIRS.items() if (root / d).is_dir()]
    if _lip_layout(root).splits:
        found.append("lip")
    if len(found) == 1:
        return found[0]
    if not found:
        lip = sorted({r for rs in _lip_layout(root).looked_for.values() for r in rs})
        raise DataError(
            f"{root}: no LIP, PASCAL-Person-Part or ATR dataset found; looked for LIP folders "
            f"({', '.join(lip)}), PPP labels (SegmentationPart/) and ATR labels "
            f"(SegmentationClassAug/)")
    raise DataError(f"{root}: holds several datasets ({', '.join(found)}); pass kind= one of them")


def find_layout(root, kind: str = "auto") -> Layout:
    """Resolve where each split of the dataset at ``root`` lives (``kind`` "auto" detects it)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root does not exist (or is not a folder)")
    if kind == "auto":
        kind = detect_kind(root)
    if kind == "lip":
        return _lip_layout(root)
    if kind in _PART_LABEL_DIRS:
        if not (root / "JPEGImages").is_dir():
            raise DataError(f"{root}: no JPEGImages/ folder for the {kind.upper()} images")
        return _part_layout(root, kind)
    raise DataError(f"unknown dataset kind {kind!r}; expected auto, {', '.join(KINDS)}")


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------

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


def open_dataset(root, split: str, kind: str = "auto", **kw) -> ParsingDataset:
    """Open one split of a LIP, PPP or ATR dataset; ``kind="auto"`` detects it from the folders."""
    if kind == "auto":
        kind = detect_kind(root)
    if kind not in DATASET_CLASSES:
        raise DataError(f"unknown dataset kind {kind!r}; expected auto, {', '.join(KINDS)}")
    return DATASET_CLASSES[kind](root, split, **kw)


# --------------------------------------------------------------------------------------------
# Validation: `lipstudy check-data`
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckReport:
    kind: str | None
    problems: list[str]
    checked: dict[str, int]  # split -> items checked
    layouts: dict[str, str]  # split -> layout name


def _check(root, kind: str = "auto", splits=None, workers: int = 1) -> CheckReport:
    try:
        layout = find_layout(root, kind)
    except DataError as e:
        return CheckReport(None, [str(e)], {}, {})
    problems: list[str] = []
    checked: dict[str, int] = {}
    layouts: dict[str, str] = {}
    wanted = list(splits) if splits else [s for s in SPLITS if s in layout.splits]
    if not wanted:
        problems.append(f"{layout.root}: no split of this {layout.kind.upper()} dataset found; "
                        f"looked for " + ", ".join(r for rs in layout.looked_for.values() for r in rs))
    for split in wanted:
        try:
            ds = DATASET_CLASSES[layout.kind](layout.root, split)
        except DataError as e:
            problems.append(str(e))
            continue
        layouts[split] = ds.layout
        for id_, n in Counter(ds.ids).items():
            if n > 1:
                problems.append(f"{ds.id_file}: id {id_!r} is listed {n} times")
        # Pillow releases the GIL while decoding, so threads give a real speed-up here.
        with ThreadPoolExecutor(max(1, workers)) as pool:
            results = pool.map(ds.problems, range(len(ds)))
            for item_problems in tqdm(results, total=len(ds), desc=f"check {split}",
                                      unit="img", file=sys.stderr, mininterval=0.5):
                problems.extend(item_problems)
        checked[split] = len(ds)
    return CheckReport(layout.kind, problems, checked, layouts)


def check_dataset(root, kind: str = "auto", splits=None, workers: int = 1) -> list[str]:
    """Validate every item of every present split (or of ``splits``), reading every file fully.

    Returns all problems found (one message each, naming the file), [] for a clean dataset.
    """
    return _check(root, kind, splits, workers).problems


def check_main(argv: list[str]) -> int:
    """``lipstudy check-data ROOT [--kind K] [--split S ...]``: exit 0 clean, 1 problems, 2 usage."""
    parser = argparse.ArgumentParser(
        prog="lipstudy check-data",
        description="Validate a LIP, PASCAL-Person-Part or ATR dataset folder: every id list, image "
                    "and label is read in full; all problems are listed.")
    parser.add_argument("root", help="dataset root folder")
    parser.add_argument("--kind", default="auto", choices=("auto",) + KINDS,
                        help="dataset kind (default: detect from the folders)")
    parser.add_argument("--split", dest="splits", action="extend", nargs="+", choices=SPLITS,
                        help="splits to check (default: every split present)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="decoding threads (default: %(default)s)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    report = _check(args.root, args.kind, args.splits, args.workers)
    for problem in report.problems:
        print(problem)
    total = sum(report.checked.values())
    per_split = ", ".join(f"{s} {n} ({report.layouts[s]} layout)" for s, n in report.checked.items())
    kind = report.kind.upper() if report.kind else "no"
    print(f"{kind} dataset at {args.root}: checked {total} items"
          + (f" ({per_split})" if per_split else "")
          + f"; {len(report.problems)} problem{'s' if len(report.problems) != 1 else ''}")
    return 1 if report.problems else 0
