"""A training split resident on the training device, augmented there in batched tensor ops.

On a GPU the per-image pipeline (decode a JPEG, resize, crop and flip in a DataLoader worker)
cannot feed a network that takes a few milliseconds per batch. Here a split is decoded once into
two uint8 tensors on the device (images padded to the largest size, labels padded with ignore),
and each batch is augmented by one gather and one ``grid_sample``: random scale, crop with
mean-colour / ignore padding, and horizontal flip with the dataset's left/right labels swapped.

The random choices are :class:`~lipstudy.transforms.TrainTransform`'s, drawn from the same
generator of (seed, epoch, index), so a batch does not depend on the process layout and a resumed
run sees the batches of an uninterrupted one. The labels are sampled exactly as Pillow's nearest
resize samples them (its index tables, rounding included), so they equal the loader
pipeline's; the images are sampled bilinearly as Pillow does when scaling up, but without its
antialiasing when scaling down (the one way the two pipelines differ).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from .labels import IGNORE_INDEX
from .transforms import IMAGENET_MEAN, IMAGENET_STD, MEAN_COLOR, AugmentParams, TrainTransform, sample_rng


def flip_lut(flip_pairs, device=None) -> torch.Tensor:
    """A 256-entry uint8 table mapping each label id to its mirror's (left <-> right)."""
    lut = torch.arange(256, dtype=torch.uint8)
    for a, b in flip_pairs:
        lut[a], lut[b] = b, a
    return lut.to(device)


def pillow_nearest(size: int, scaled: int) -> np.ndarray:
    """The source index Pillow's nearest resize reads for each of the ``scaled`` output pixels
    of an axis of ``size`` pixels: its scale path (Geometry.c, ImagingScaleAffine) starts at
    half a step and adds the step ``size / scaled`` once per pixel in double precision, so the
    table is that running sum, truncated (a sequential sum: the rounding of the additions is part
    of the answer)."""
    step = size / scaled
    pos = np.add.accumulate(np.concatenate([[step * 0.5], np.full(scaled - 1, step)]))
    return np.minimum(pos.astype(np.int64), size - 1)


def augment(images: torch.Tensor, labels: torch.Tensor, sizes: torch.Tensor, params: list[AugmentParams],
            transform: TrainTransform, lut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch, augmented: ``images`` uint8 [B,3,H,W] and ``labels`` uint8 [B,H,W] (each
    sample's content in its top-left ``sizes[b] = (h, w)``), with the random choices ``params``
    of ``transform``. Returns normalised float32 images [B,3,c,c] and int64 labels [B,c,c]."""
    dev = images.device
    c = transform.crop
    n, _, hm, wm = images.shape
    f64 = dict(dtype=torch.float64, device=dev)
    hw = torch.as_tensor(sizes, **f64)
    scaled = torch.tensor([transform.scaled_size(int(h), int(w), p.scale) for (h, w), p in zip(sizes.tolist(), params)],
                          **f64)
    top = torch.tensor([p.top for p in params], **f64)[:, None]
    left = torch.tensor([p.left for p in params], **f64)[:, None]
    flip = torch.tensor([p.flip for p in params], dtype=torch.bool, device=dev)
    steps = torch.arange(c, **f64)[None]
    # Position of each output pixel in the scaled, padded image; a flipped crop reads its columns
    # right to left (TrainTransform crops, then mirrors).
    y = top + steps
    x = left + torch.where(flip[:, None], c - 1 - steps, steps)
    inside = (y < scaled[:, :1])[:, :, None] & (x < scaled[:, 1:])[:, None, :]
    ratio_y, ratio_x = hw[:, :1] / scaled[:, :1], hw[:, 1:] / scaled[:, 1:]
    # Labels: Pillow's nearest neighbour, exactly (its tables, indexed by position in the
    # scaled image; positions outside it are padding, read from anywhere and replaced below).
    ly, lx = [], []
    for (h, w), (sh, sw), p in zip(sizes.tolist(), scaled.long().tolist(), params):
        ly.append(pillow_nearest(h, sh)[np.minimum(p.top + np.arange(c), sh - 1)])
        cols = p.left + (np.arange(c)[::-1] if p.flip else np.arange(c))
        lx.append(pillow_nearest(w, sw)[np.minimum(cols, sw - 1)])
    ly = torch.from_numpy(np.stack(ly)).to(dev)
    lx = torch.from_numpy(np.stack(lx)).to(dev)
    batch = torch.arange(n, device=dev)[:, None, None]
    lab = labels[batch, ly[:, :, None], lx[:, None, :]]
    lab = torch.where(flip[:, None, None], lut[lab.long()], lab)
    lab = torch.where(inside, lab, torch.full_like(lab, IGNORE_INDEX)).long()
    # Images: bilinear between pixel centres, clamped at the content's edges.
    sy = ((y + 0.5) * ratio_y - 0.5).clamp(min=0).minimum(hw[:, :1] - 1)
    sx = ((x + 0.5) * ratio_x - 0.5).clamp(min=0).minimum(hw[:, 1:] - 1)
    gy = (2 * sy / max(hm - 1, 1) - 1)[:, :, None].expand(n, c, c)
    gx = (2 * sx / max(wm - 1, 1) - 1)[:, None, :].expand(n, c, c)
    grid = torch.stack([gx, gy], dim=-1).float()
    img = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    pad = torch.tensor(MEAN_COLOR, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    img = torch.where(inside[:, None], img, pad)
    mean = torch.tensor(IMAGENET_MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=dev).view(1, 3, 1, 1)
    return (img / 255.0 - mean) / std, lab


class ResidentSet:
    """A dataset split decoded once onto ``device``; :meth:`batch` augments the items of one
    step. ``base``: items with ``image`` (HxWx3 uint8), ``label`` and ``id``; ``transform``: the
    stage's :class:`TrainTransform` (crop, scale range, flip, flip pairs, seed)."""

    def __init__(self, base, transform: TrainTransform, device, threads: int = 4):
        self.transform, self.device = transform, torch.device(device)
        # Decoding releases the GIL (Pillow), so threads share it out.
        with ThreadPoolExecutor(max(1, threads)) as pool:
            items = list(pool.map(base.__getitem__, range(len(base))))
        for it in items:
            if it["label"] is None:
                raise ValueError(f"sample {it['id']!r} has no label: cannot train on it")
            if it["image"].shape[:2] != it["label"].shape[:2]:
                raise ValueError(f"sample {it['id']!r}: image {it['image'].shape[:2]} and label "
                                 f"{it['label'].shape[:2]} differ in size")
        hm = max(it["label"].shape[0] for it in items)
        wm = max(it["label"].shape[1] for it in items)
        images = np.zeros((len(items), 3, hm, wm), np.uint8)
        labels = np.full((len(items), hm, wm), IGNORE_INDEX, np.uint8)
        for i, it in enumerate(items):
            h, w = it["label"].shape
            images[i, :, :h, :w] = it["image"].transpose(2, 0, 1)
            labels[i, :h, :w] = it["label"]
        self.sizes = [tuple(it["label"].shape) for it in items]
        self.images = torch.from_numpy(images).to(self.device)
        self.labels = torch.from_numpy(labels).to(self.device)
        self.lut = flip_lut(transform.flip_pairs, self.device)

    def __len__(self) -> int:
        return len(self.sizes)

    def params(self, epoch: int, index: int) -> AugmentParams:
        """The random choices of item ``index`` in ``epoch`` (TrainTransform's, same generator)."""
        return self.transform.draw(sample_rng(self.transform.seed, epoch, index), *self.sizes[index])

    def batch(self, keys: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented images and labels of the (epoch, index) pairs ``keys``."""
        idx = [i for _, i in keys]
        params = [self.params(e, i) for e, i in keys]
        at = torch.tensor(idx, device=self.device)
        return augment(self.images[at], self.labels[at], torch.tensor([self.sizes[i] for i in idx]), params,
                       self.transform, self.lut)

    def epoch_batches(self, batches):
        """The batches of one epoch's sampler (lists of (epoch, index), e.g. ShardedBatches)."""
        for keys in batches:
            yield self.batch(keys)


def attach(state) -> None:
    """Give a training stage (lipstudy.train.TrainState) its split resident on its device."""
    state.resident = ResidentSet(state.data.base, state.data.transform, state.device,
                                 threads=max(1, torch.get_num_threads()))
