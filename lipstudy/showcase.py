"""The images the chapters' figures show, and each run's predictions of them, made once.

The qualitative chapter (Fig. 8, real photos, one CIHP image) and the SSL chapter (Figs. 6-7)
draw label maps that trained networks predict. Which images they show is decided here, by rule
from the data (:func:`fig8_picks`, :func:`ssl_picks`, the real samples), and the predictions of a
run are a cached artefact of its folder (``figures/<set>.npz``, label maps by image id), made
from its checkpoint once like an evaluation. So a book built from a bundle draws every figure
without the checkpoints, which at the gpu profile's width would not fit a bundle
(:mod:`lipstudy.bundles`), and no chapter holds inference logic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_save
from .locks import file_lock
from .paths import REAL_SAMPLES
from .profiles import get_profile
from .runs import paper_runs, profile_seeds

FIGURE_SETS = ("fig8", "ssl", "photos", "cihp")
"""fig8: one validation image per challenge type (Fig. 8); ssl: validation images with a visible
body (Figs. 6-7); photos: the real LIP photos; cihp: the one real CIHP image with a label."""

FIG8_PANELS = {"(a) upper-body": "upper_body", "(b) back-view": "back_view", "(c) head-missed": "head_missed",
               "(d) occlusion": "occlusion", "(e) full-body": "full_body"}
"""Fig. 8's panels (Sections 3.4 and 5.3) and the attribute that selects each one's image."""

SSL_IMAGES = 4
"""How many validation images Figs. 6-7 show."""

CIHP_IMAGE = REAL_SAMPLES / "image_0000002.jpg"
CIHP_LABEL = REAL_SAMPLES / "label_0000002.png"


def _val(root):
    from .data import statistics
    from .data.datasets import open_dataset

    ds = open_dataset(root, "val", kind="lip")
    return ds, statistics.image_attributes(root).reindex(ds.ids)


def fig8_picks(root) -> dict[str, int]:
    """Fig. 8's images: for each challenge type, one validation image of that type chosen at
    random (fixed seed), ``{panel title: index in the val split}``; a type without any image is
    left out."""
    _, attrs = _val(root)
    rng = np.random.default_rng(0)
    chosen = {}
    for title, col in FIG8_PANELS.items():
        idx = np.flatnonzero(attrs[col].fillna(0).astype(int).to_numpy() == 1)
        if len(idx):
            chosen[title] = int(rng.choice(idx))
    return chosen


def ssl_picks(root, n: int = SSL_IMAGES) -> list[int]:
    """Figs. 6-7's images: ``n`` validation images with a visible body, full-body ones first."""
    _, attrs = _val(root)
    order = attrs["full_body"].fillna(0).astype(int).to_numpy().argsort(kind="stable")[::-1]
    return [int(i) for i in order[:n]]


def photo_paths() -> list[Path]:
    """The real LIP photos (person crops, no labels), in name order."""
    return sorted(p for p in REAL_SAMPLES.glob("*_*.jpg") if not p.name.startswith("image_"))


def set_images(name: str, root) -> dict[str, np.ndarray]:
    """The RGB images of figure set ``name`` by id (a validation id or a photo's file stem);
    ``root``: the LIP-style dataset the validation images come from."""
    from PIL import Image

    if name in ("fig8", "ssl"):
        ds, _ = _val(root)
        picks = list(fig8_picks(root).values()) if name == "fig8" else ssl_picks(root)
        return {ds.ids[i]: ds[i]["image"] for i in dict.fromkeys(picks)}
    if name in ("photos", "cihp"):
        paths = photo_paths() if name == "photos" else [CIHP_IMAGE]
        return {p.stem: np.array(Image.open(p).convert("RGB")) for p in paths}
    raise ValueError(f"unknown figure set {name!r}; choose one of {', '.join(FIGURE_SETS)}")


def figure_sets(profile, seeds=None) -> dict:
    """Which runs' predictions the chapters draw, ``{run: [figure sets]}``: the paper's six LIP
    methods of the first seed on Fig. 8 and the CIHP image (qualitative chapter), DeepLabV2 and
    Attention + SSL on the real photos, and DeepLabV2 + SSL on the SSL chapter's images (Figs. 6-7:
    the SSL network that learns the most limbs here, so its joints can show left and right)."""
    runs = paper_runs(profile_seeds(get_profile(profile), seeds)[0])
    out = {run: ["fig8", "cihp"] for run in runs.values()}
    out[runs["DeepLabV2"]].append("photos")
    out[runs["Attention + SSL"]].append("photos")
    out[runs["DeepLabV2 + SSL"]].append("ssl")
    return out


def maps_path(run_dir, name: str) -> Path:
    """Where a run's predictions of figure set ``name`` are cached."""
    return Path(run_dir) / "figures" / f"{name}.npz"


def read_maps(path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def label_maps(res, name: str) -> dict[str, np.ndarray]:
    """The label maps (HxW uint8, at each image's size) that run ``res`` (a finished
    :class:`~lipstudy.store.RunResult`) predicts for figure set ``name``, by image id: read from
    ``figures/<name>.npz``, or predicted once from the run's checkpoint (the inference ``lipstudy
    parse`` uses) and cached there."""
    images = set_images(name, res.data)
    path = maps_path(res.dir, name)

    def cached():
        if not path.is_file():
            return None
        maps = read_maps(path)
        same = list(maps) == list(images) and all(maps[k].shape == images[k].shape[:2] for k in images)
        return maps if same else None

    maps = cached()
    if maps is not None:
        return maps
    if not Path(res.checkpoint).is_file():
        raise FileNotFoundError(
            f"{res.dir}: run {res.label!r} has no predictions of figure set {name!r} for these images "
            f"({path.name}) and no checkpoint to make them (imported from a bundle that lacks them?)")
    from .figures import predict_label_maps

    with file_lock(path.parent / f".{name}.lock"):
        maps = cached()
        if maps is None:
            preds = predict_label_maps(res.checkpoint, list(images.values()), device=res.device)
            maps = dict(zip(images, preds))
            atomic_save(path, lambda tmp: np.savez_compressed(tmp, **maps), suffix=".npz")
    return maps
