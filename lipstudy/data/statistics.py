"""Dataset statistics (paper Sections 2.2-2.3): images per label (Fig. 3) and each image's
visibility attributes and person size (Fig. 4, and the subsets of Sections 3.2 and 5.4)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_save
from ..labels import DATASETS
from ..paper import TABLE6_SIZE_BINS
from ..paths import results_dir
from .attributes import derive_dataset_attributes
from .datasets import open_dataset
from .decode import read_label


def images_per_label(root, splits=("train", "val"), kind: str = "lip") -> pd.Series:
    """Fig. 3: how many images contain each label (background left out), over ``splits``.

    Reads the label maps only (no JPEG decoding)."""
    classes = DATASETS[kind]["classes"]
    counts = np.zeros(len(classes), dtype=np.int64)
    for split in splits:
        ds = open_dataset(root, split, kind=kind)
        for i in range(len(ds)):
            path = ds.label_path(i)
            if path is None:
                raise ValueError(f"{root}: split {split!r} has no labels (image {ds.ids[i]})")
            lab = read_label(path, num_classes=len(classes))
            counts += np.bincount(lab[lab < len(classes)].ravel(), minlength=len(classes)) > 0
    return pd.Series(counts[1:], index=list(classes[1:]), name="images")


def image_attributes(root, real_splits=("val",)) -> pd.DataFrame:
    """Per-image visibility attributes indexed by id: the synthetic benchmark's attributes.csv, or
    for real data (no attribute file) attributes derived from the label maps of ``real_splits``
    (``lipstudy.data.attributes``), with the person area (non-background pixels) and the size bin
    of Section 5.4. Derived attributes are cached under ``<results>/cache/``."""
    path = Path(root) / "attributes.csv"
    if path.is_file():
        df = pd.read_csv(path, dtype={"id": str, "split": str, "size_bin": str})
        return df.set_index("id", drop=False)
    datasets = {s: open_dataset(root, s, kind="lip") for s in real_splits}
    key = hashlib.sha256(json.dumps([str(Path(root).resolve())] + [[s, d.ids] for s, d in datasets.items()])
                         .encode()).hexdigest()[:16]
    cache = results_dir() / "cache" / f"attributes-{key}.csv"
    if cache.is_file():
        return pd.read_csv(cache, dtype={"id": str, "split": str, "size_bin": str}).set_index("id", drop=False)
    parts = []
    for split, ds in datasets.items():
        df = derive_dataset_attributes(ds)
        areas = []
        for i in range(len(ds)):
            lab = read_label(ds.label_path(i))
            areas.append(int(((lab != 0) & (lab != 255)).sum()))
        df.insert(1, "split", split)
        df["person_area"] = areas
        df["size_bin"] = [next(b for b, (lo, hi) in TABLE6_SIZE_BINS.items() if lo <= a < hi) for a in areas]
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    atomic_save(cache, lambda tmp: df.to_csv(tmp, index=False), suffix=".csv")
    return df.set_index("id", drop=False)
