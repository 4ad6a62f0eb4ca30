"""Where a dataset's splits live on disk: LIP (paper Section 2), PASCAL-Person-Part and ATR
(Section 5.3 and Table 6), found from the folders of a dataset root.

LIP comes in several on-disk shapes, all resolved to the same :class:`SplitPaths`:

- the official download (``TrainVal_images/train_images/<id>.jpg``, ``TrainVal_images/train_id.txt``,
  ``TrainVal_parsing_annotations/train_segmentations/<id>.png``, the same for ``val``, and
  ``Testing_images/testing_images/<id>.jpg`` with ``Testing_images/test_id.txt``);
- the same with the doubled folders unzipping produces (``TrainVal_images/TrainVal_images/...``);
- the flat layout of SCHP / mmseg copies (``train_images/``, ``train_segmentations/``,
  ``train_id.txt``, ..., ``test_images/``, ``test_id.txt``).

The test split has no labels: LIP keeps them on its evaluation server, so no layout points at
them (see ``label_dir`` in :mod:`lipstudy.data.datasets`).

PASCAL-Person-Part and ATR: ``<root>/JPEGImages/<id>.jpg``, labels in ``<root>/SegmentationPart/``
(PPP) or ``<root>/SegmentationClassAug/`` (ATR), id lists ``<split>_id.txt`` at the root or under
``list/``; every split has labels.

Only folders and file names are looked at here; files are read by :mod:`lipstudy.data.decode`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lipstudy.data.decode import DataError
from lipstudy.labels import DATASETS

SPLITS = ("train", "val", "test")
KINDS = tuple(DATASETS)


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
