"""The paper's Fig. 1 from this build's data: annotated examples of the three datasets side by side
(ATR, PASCAL-Person-Part and LIP), each coloured with its own label set.

On the synthetic benchmarks these are renderings in each dataset's style (its labels, its layout),
not the datasets' photos: the figure says which each row is. With a real LIP root, the LIP row is
real; ATR and PASCAL-Person-Part stay synthetic unless the profile reads real ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.datasets import open_dataset
from .labels import DATASETS, colorize, palette_for
from .tables import is_synthetic

NAMES = {"atr": "ATR", "ppp": "PASCAL-Person-Part", "lip": "LIP"}
"""The datasets of Fig. 1, in its order, by the paper's names."""


@dataclass
class Examples:
    """``n`` annotated images of one dataset: the images, their coloured label maps, the ids of the
    classes they show (for a legend), the label set and palette, and whether the data is synthetic."""

    dataset: str
    title: str
    images: list[np.ndarray]
    colored: list[np.ndarray]
    present: list[int]
    classes: tuple[str, ...]
    palette: np.ndarray
    synthetic: bool


def examples(root, dataset: str, n: int = 3, split: str = "val", seed: int = 0) -> Examples:
    """``n`` images of ``split`` of the ``dataset`` ("lip", "atr", "ppp") at ``root``, drawn at random
    with ``seed`` (the same picks on every build of the same data), with their label maps coloured.
    The title names the dataset and says "synthetic" when ``root`` is a synthetic rendering."""
    ds = open_dataset(root, split, kind=dataset)
    picks = sorted(np.random.default_rng(seed).permutation(len(ds))[:n].tolist())
    classes = tuple(DATASETS[dataset]["classes"])
    palette = palette_for(len(classes))
    samples = [ds[i] for i in picks]
    present = sorted({int(v) for s in samples for v in np.unique(s["label"])} - {0, 255})
    synthetic = is_synthetic(root)
    title = f"{NAMES[dataset]} ({'synthetic, in its style' if synthetic else 'real'}: {Path(root).name})"
    return Examples(dataset, title, [s["image"] for s in samples],
                    [colorize(s["label"], palette) for s in samples], present, classes, palette, synthetic)
