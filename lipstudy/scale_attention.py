"""What attention to scale attends to: the per-scale weight maps of a trained Attention network
(Chen, Yang, Wang, Xu & Yuille, CVPR 2016, Eq. 2 and Fig. 4; the paper's "Attention" baseline and the
base network of its SSL, Sections 3 and 5.1).

Attention-to-scale fuses the score maps of the inputs at scales 1, 0.75 and 0.5 with a softmax over the
scales at every pixel. Whether it *attends* (soft weights that depend on the content, Chen et al.'s
small objects favouring the larger input scales) or has collapsed into a hard per-pixel switch is a
property of a trained network, so it is measured here from a run's checkpoint, once, like an
evaluation: per validation image the mean weight of each scale and the share of its pixels that put
more than :data:`HARD` on one scale (:func:`summarize`), and the weight maps of a few images for the
book's figure (:func:`weight_maps`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_save

HARD = 0.9
"""A pixel whose largest scale weight exceeds this is "switched" to one scale rather than attending."""
MIN_WEIGHT, MAX_HARD = 0.05, 0.5
"""Attention that has not collapsed (issue "Attention-to-scale that attends"): every scale's mean weight
above ``MIN_WEIGHT`` and under ``MAX_HARD`` of the pixels switched to one scale."""


@torch.no_grad()
def weights_of(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The attention weights ``[S, h, w]`` (softmax over the S scales, on the scale-1 score map's grid)
    of one normalised image ``[3, H, W]`` through ``model`` (an :class:`~lipstudy.models.AttentionToScale`
    in eval mode)."""
    return model.forward_parts(image[None])["weights"][0].float()


@torch.no_grad()
def summarize(model: torch.nn.Module, dataset, device="cpu") -> dict:
    """Per image of ``dataset`` (items with ``image``, ``id``): ``mean`` ``[N, S]``, each scale's mean
    weight over the image's pixels, and ``hard`` ``[N]``, the share of its pixels with one scale weighted
    above :data:`HARD`; ``pixels`` ``[N]`` the pixels of its weight map (to pool images), ``ids``."""
    from .transforms import EvalTransform

    model.eval().to(device)
    transform = EvalTransform()
    ids, means, hard, pixels = [], [], [], []
    for i in range(len(dataset)):
        sample = transform(dataset[i])
        w = weights_of(model, sample["image"].to(device))
        ids.append(sample["id"])
        means.append(w.mean(dim=(1, 2)).cpu().numpy())
        hard.append(float((w.max(0).values > HARD).float().mean()))
        pixels.append(w[0].numel())
    return {"ids": ids, "mean": np.stack(means).astype(np.float32), "hard": np.asarray(hard, np.float32),
            "pixels": np.asarray(pixels, np.int64), "scales": np.asarray(model.scales, np.float32)}


@torch.no_grad()
def weight_maps(model: torch.nn.Module, images: dict, device="cpu") -> dict[str, np.ndarray]:
    """The weight maps of each RGB image (``{id: HxWx3 uint8}``) at the image's size, ``{id: float16
    [S, H, W]}`` (for the figure in the style of Chen et al.'s Fig. 4)."""
    from .transforms import EvalTransform

    model.eval().to(device)
    transform = EvalTransform()
    out = {}
    for key, rgb in images.items():
        sample = transform({"image": rgb, "id": key})
        w = weights_of(model, sample["image"].to(device))
        w = F.interpolate(w[None], size=rgb.shape[:2], mode="bilinear", align_corners=False)[0]
        out[key] = w.cpu().numpy().astype(np.float16)
    return out


def pooled(summary: dict, index=None) -> dict:
    """Pixel-weighted statistics over the images of ``summary`` (all, or a boolean / integer ``index``):
    ``mean`` per scale and the ``hard`` share, as the whole validation set's pixels give them."""
    idx = slice(None) if index is None else index
    px = summary["pixels"][idx].astype(np.float64)
    total = px.sum()
    if total == 0:
        return {"mean": np.full(len(summary["scales"]), np.nan), "hard": np.nan, "images": 0}
    return {"mean": (summary["mean"][idx] * px[:, None]).sum(0) / total,
            "hard": float((summary["hard"][idx] * px).sum() / total), "images": int(np.size(px))}


# ----------------------------------------------------------------------------- a run's product

def folder(run_dir) -> Path:
    return Path(run_dir) / "attention"


def read(run_dir) -> dict:
    """A run's cached weights: :func:`summarize`'s arrays and ``maps`` (``{id: [S, H, W]}``)."""
    with np.load(folder(run_dir) / "val.npz") as z:
        summary = {k: z[k] for k in z.files}
    summary["ids"] = [str(i) for i in summary["ids"]]
    with np.load(folder(run_dir) / "maps.npz") as z:
        summary["maps"] = {k: z[k] for k in z.files}
    return summary


def of_run(res) -> dict:
    """The attention weights of the finished Attention run ``res`` (a :class:`lipstudy.store.RunResult`)
    on its validation split, and the weight maps of the chapters' Fig. 8 images: read from
    ``attention/``, or computed once from the run's checkpoint and kept there."""
    from .data.datasets import open_dataset
    from .locks import file_lock
    from .runtime import model_from_checkpoint, resolve_device
    from .showcase import set_images

    out = folder(res.dir)
    if not (out / "val.npz").is_file():
        if not Path(res.checkpoint).is_file():
            raise FileNotFoundError(f"{res.dir}: run {res.label!r} has no attention weights ({out}) and no "
                                    f"checkpoint to compute them (imported from a bundle that lacks them?)")
        with file_lock(out / ".lock"):
            if not (out / "val.npz").is_file():
                device = resolve_device(res.device)
                model, _ = model_from_checkpoint(res.checkpoint, device)
                summary = summarize(model, open_dataset(res.data, "val", kind="lip"), device)
                maps = weight_maps(model, set_images("fig8", res.data), device)
                summary["ids"] = np.asarray(summary["ids"], dtype=str)
                atomic_save(out / "maps.npz", lambda tmp: np.savez_compressed(tmp, **maps), suffix=".npz")
                atomic_save(out / "val.npz", lambda tmp: np.savez_compressed(tmp, **summary), suffix=".npz")
    return read(res.dir)


def attends(p: dict) -> bool:
    """Whether :func:`pooled` statistics ``p`` show attention rather than a switch (:data:`MIN_WEIGHT`,
    :data:`MAX_HARD`)."""
    return bool(np.all(np.asarray(p["mean"]) > MIN_WEIGHT) and p["hard"] < MAX_HARD)


def seed_table(summaries: dict) -> "pd.DataFrame":
    """``{seed: summary}`` -> one row per seed (then their mean): each scale's mean weight and the share
    of pixels switched to one scale over the whole validation split (percent), and :func:`attends`."""
    import pandas as pd

    rows = {}
    for seed, summary in summaries.items():
        p = pooled(summary)
        rows[f"seed {seed}"] = {**{f"scale {s:g}": 100 * m for s, m in zip(summary["scales"], p["mean"])},
                                f"pixels > {HARD:g} on one scale": 100 * p["hard"], "attends": attends(p)}
    table = pd.DataFrame(rows).T
    if len(rows) > 1:
        numeric = table.drop(columns="attends").astype(float)
        table.loc["mean"] = {**numeric.mean().to_dict(), "attends": bool(table["attends"].all())}
    return table


def by_size(summary: dict, attrs, bins=("small", "medium", "large")):
    """Each scale's mean weight (pixel-weighted over the images) on the whole validation split and in
    each person-size bin of Table 6 (``attrs``: :func:`lipstudy.data.statistics.image_attributes`),
    with the share of pixels switched to one scale: Chen et al.'s observation is that small objects
    favour the larger input scales. A DataFrame, one row per group, percent."""
    import pandas as pd

    size = attrs.reindex(summary["ids"])["size_bin"].to_numpy()
    groups = {"all": np.ones(len(size), bool), **{b: size == b for b in bins}}
    rows = []
    for name, mask in groups.items():
        p = pooled(summary, mask)
        rows.append({"images": p["images"], **{f"scale {s:g}": 100 * m for s, m in zip(summary["scales"], p["mean"])},
                     f"pixels > {HARD:g} on one scale": 100 * p["hard"], "group": name})
    return pd.DataFrame(rows).set_index("group")
