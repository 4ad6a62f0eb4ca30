"""The synthetic benchmark on disk: image ids and the LIP / PPP / ATR layouts, :func:`generate`
(rendering in parallel, byte-identical whatever the number of workers), the attribute file read
back, an example gallery, and the ``lipstudy synth`` command."""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lipstudy.atomic import atomic_save
from lipstudy.data.attributes import ATTRIBUTES
from lipstudy.data.synth.label_ids import ATR_LUT
from lipstudy.data.synth.scene import LIP_FULL_SIDE, render_scale, render_scene
from lipstudy.labels import DATASETS

GENERATOR_VERSION = "1.0"
SPLITS = ("train", "val", "test")
STYLES = tuple(DATASETS)  # a style per benchmark: its layout and label set
CSV_COLUMNS = ("id", "split", *ATTRIBUTES, "person_area", "size_bin", "width", "height")
# Fixed codes, not positions in SPLITS / STYLES: they seed every image's random stream.
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_STYLE_CODE = {"lip": 0, "ppp": 1, "atr": 2}


def image_id(split: str, index: int) -> str:
    """Stable, globally unique ids (PPP / ATR keep all splits in one folder)."""
    return f"synth_{split}_{index:06d}"


def _render_item(task) -> tuple[str, str, bytes, bytes, dict]:
    """Worker: one image, its RNG derived from (seed, style, split, index) only."""
    seed, style, split, index, max_side = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STYLE_CODE[style], _SPLIT_CODE[split], index]))
    img, lip, ppp, attrs = render_scene(rng, style, max_side)
    label = {"lip": lip, "ppp": ppp, "atr": ATR_LUT[lip]}[style]
    jpg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(img).save(jpg, format="JPEG", quality=int(rng.integers(55, 96)))
    Image.fromarray(label, mode="L").save(png, format="PNG", compress_level=1)
    return split, image_id(split, index), jpg.getvalue(), png.getvalue(), attrs


def item_paths(style: str, split: str, ident: str) -> tuple[str, str]:
    """(image path, label path) relative to the dataset root."""
    if style == "lip":
        if split == "test":
            return f"Testing_images/testing_images/{ident}.jpg", f"server/test_segmentations/{ident}.png"
        return (f"TrainVal_images/{split}_images/{ident}.jpg",
                f"TrainVal_parsing_annotations/{split}_segmentations/{ident}.png")
    label_dir = "SegmentationPart" if style == "ppp" else "SegmentationClassAug"
    return f"JPEGImages/{ident}.jpg", f"{label_dir}/{ident}.png"


def _id_list_path(style: str, split: str) -> str:
    if style == "lip":
        return "Testing_images/test_id.txt" if split == "test" else f"TrainVal_images/{split}_id.txt"
    return f"{split}_id.txt"


def _write(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def generate(out, train: int, val: int, test: int, seed: int = 0, style: str = "lip", workers: int = 1,
             max_side: int | None = None, progress: bool = True, force: bool = False) -> dict:
    """Render the benchmark into ``out`` (LIP layout for ``style="lip"``, PPP / ATR layouts
    otherwise) and return its manifest. Rendering goes to ``<out>.tmp-<pid>``, renamed to ``out``
    at the end; an existing non-empty ``out`` is refused unless ``force``."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    counts = {"train": int(train), "val": int(val), "test": int(test)}
    if min(counts.values()) < 0:
        raise ValueError(f"image counts must be >= 0, got {counts}")
    if max_side is not None and max_side < 16:
        raise ValueError(f"max_side must be at least 16 px, got {max_side}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(f"{out}: exists and is not empty; choose another --out or pass --force")
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    scale = render_scale(style, max_side)
    tasks = [(int(seed), style, split, i, max_side) for split in SPLITS for i in range(counts[split])]
    digest, rows, ids = hashlib.sha256(), [], {s: [] for s in SPLITS}
    try:
        pool = Pool(workers) if workers > 1 else None
        results = pool.imap(_render_item, tasks, chunksize=8) if pool else map(_render_item, tasks)
        for split, ident, jpg, png, attrs in tqdm(results, total=len(tasks), disable=not progress,
                                                  desc=f"synth {style}", unit="img"):
            img_rel, lab_rel = item_paths(style, split, ident)
            _write(tmp / img_rel, jpg)
            _write(tmp / lab_rel, png)
            digest.update(png)
            digest.update(jpg)
            ids[split].append(ident)
            rows.append({"id": ident, "split": split, **attrs})
        if pool:
            pool.close()
            pool.join()
        for split in SPLITS:
            _write(tmp / _id_list_path(style, split), "".join(f"{i}\n" for i in ids[split]).encode())
        with open(tmp / "attributes.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        manifest = {"generator_version": GENERATOR_VERSION, "style": style, "seed": int(seed),
                    "counts": counts, "max_side": max_side, "scale": scale,
                    "fingerprint": digest.hexdigest()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_attributes(root):
    """``<root>/attributes.csv`` as a DataFrame (ids as strings, attribute columns as ints)."""
    import pandas as pd

    path = Path(root) / "attributes.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no attributes.csv (not a synthetic benchmark?)")
    return pd.read_csv(path, dtype={"id": str, "split": str, "size_bin": str})


def gallery(root, out_png=None, n: int = 2, split: str | None = None, seed: int = 0):
    """A figure of example images (top) and their label overlays (below), one column per
    attribute (full-body, upper-body, lower-body, head-missed, back-view, occlusion); ``n``
    examples per column. For the book's first chapter (the paper's Fig. 1 / Fig. 4 in spirit)."""
    import matplotlib

    if out_png is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from lipstudy.labels import overlay, palette_for

    root = Path(root)
    style = json.loads((root / "manifest.json").read_text())["style"]
    df = read_attributes(root)
    if split is not None:
        df = df[df.split == split]
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(2 * n, len(ATTRIBUTES), figsize=(2.2 * len(ATTRIBUTES), 2.4 * 2 * n),
                             squeeze=False)
    for c, attr in enumerate(ATTRIBUTES):
        pick = df[df[attr] == 1]
        pick = pick.iloc[rng.permutation(len(pick))[:n]] if len(pick) else pick
        axes[0, c].set_title(attr.replace("_", "-"), fontsize=10)
        for r in range(n):
            for ax in (axes[2 * r, c], axes[2 * r + 1, c]):
                ax.axis("off")
            if r >= len(pick):
                continue
            row = pick.iloc[r]
            img_rel, lab_rel = item_paths(style, row.split, row.id)
            img = np.asarray(Image.open(root / img_rel).convert("RGB"))
            lab = np.asarray(Image.open(root / lab_rel))
            axes[2 * r, c].imshow(img)
            palette = palette_for(len(DATASETS[style]["classes"]))
            axes[2 * r + 1, c].imshow(overlay(img, lab, palette=palette))
    fig.tight_layout()
    if out_png is not None:
        atomic_save(out_png, lambda tmp: fig.savefig(tmp, dpi=100), suffix=".png")
    return fig


def main(argv: list[str]) -> int:
    import lipstudy.data.synth as package  # the command describes the benchmark, not this module

    p = argparse.ArgumentParser(prog="lipstudy synth", description=package.__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", choices=STYLES, default="lip")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-side", type=int, default=None,
                   help=f"render smaller: longest side <= PX (LIP scale: {LIP_FULL_SIDE})")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    a = p.parse_args(argv)
    try:
        m = generate(a.out, a.train, a.val, a.test, a.seed, a.style, a.workers, a.max_side, force=a.force)
    except (FileExistsError, ValueError) as e:
        print(f"lipstudy synth: {e}")
        return 2
    print(json.dumps(m, indent=2))
    return 0
