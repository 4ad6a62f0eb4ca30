"""Data augmentation and normalisation (paper Section 5.1 and the released DeepLabV2 recipe).

Training: random scale in [0.6, 1.4] (bilinear image, nearest label), pad to the crop size
(image with the mean colour, label with 255 = ignore), random crop (321x321 at paper settings),
horizontal flip with the left/right labels swapped, ImageNet mean/std normalisation.
Evaluation: normalisation only, optionally resizing so the longer side equals a fixed input size
(Table 6, right).

Every random choice of a training sample is drawn from a generator seeded by
(seed, epoch, index), so an augmented batch is the same whatever the number of loader workers or
training processes, and a resumed run sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .labels import IGNORE_INDEX, LIP_FLIP_PAIRS, flip_labels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Padding colour: the mean colour, which is 0 after normalisation (as Caffe's mean_value padding).
MEAN_COLOR = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one training sample's augmentation: a function of (seed, epoch, index) only."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def normalize(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> float32 tensor [3,H,W] standardised with the ImageNet mean and std."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an HxWx3 uint8 image."""
    if image.shape[:2] == (height, width):
        return image
    return np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def resize_label(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an HxW uint8 label map (never invents label ids)."""
    if label.shape[:2] == (height, width):
        return label
    return np.array(Image.fromarray(label).resize((width, height), Image.NEAREST))


@dataclass(frozen=True)
class AugmentParams:
    """The random choices for one sample: scale factor, crop offsets (in the padded, scaled
    image) and whether to flip."""

    scale: float
    top: int
    left: int
    flip: bool


@dataclass(frozen=True)
class TrainTransform:
    """Training augmentation of Section 5.1 / the released DeepLabV2 recipe.

    ``crop``: side of the square training crop (321 in the paper). ``scale_range``: random scale
    factor range (0.6-1.4 in the released code). ``flip_pairs``: (left, right) label ids swapped
    under a horizontal flip (the dataset's; empty for PASCAL-Person-Part).
    """

    crop: int = 321
    scale_range: tuple[float, float] = (0.6, 1.4)
    flip: bool = True
    flip_pairs: tuple[tuple[int, int], ...] = tuple(LIP_FLIP_PAIRS)
    seed: int = 0

    def scaled_size(self, height: int, width: int, scale: float) -> tuple[int, int]:
        return max(1, int(round(height * scale))), max(1, int(round(width * scale)))

    def draw(self, rng: np.random.Generator, height: int, width: int) -> AugmentParams:
        """Draw one sample's random choices for an image of the given size."""
        lo, hi = self.scale_range
        scale = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
        sh, sw = self.scaled_size(height, width, scale)
        top = int(rng.integers(0, max(sh, self.crop) - self.crop + 1))
        left = int(rng.integers(0, max(sw, self.crop) - self.crop + 1))
        flip = bool(rng.random() < 0.5) if self.flip else False
        return AugmentParams(scale, top, left, flip)

    def apply(self, image: np.ndarray, label: np.ndarray, p: AugmentParams
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale, pad, crop, flip and normalise with fixed choices ``p``.

        Returns the image as float32 [3,crop,crop] and the label as int64 [crop,crop].
        """
        if image.shape[:2] != label.shape[:2]:
            raise ValueError(f"image {image.shape[:2]} and label {label.shape[:2]} differ in size")
        sh, sw = self.scaled_size(*label.shape[:2], p.scale)
        image, label = resize_image(image, sh, sw), resize_label(label, sh, sw)
        ph, pw = max(sh, self.crop), max(sw, self.crop)
        if (ph, pw) != (sh, sw):
            # Pad bottom/right as Caffe's DeepLab data layer does.
            padded_img = np.empty((ph, pw, 3), np.uint8)
            padded_img[:] = MEAN_COLOR
            padded_img[:sh, :sw] = image
            padded_lab = np.full((ph, pw), IGNORE_INDEX, np.uint8)
            padded_lab[:sh, :sw] = label
            image, label = padded_img, padded_lab
        c = self.crop
        image = image[p.top:p.top + c, p.left:p.left + c]
        label = label[p.top:p.top + c, p.left:p.left + c]
        if p.flip:
            image = image[:, ::-1]
            label = flip_labels(label, self.flip_pairs)
        return normalize(image), torch.from_numpy(np.ascontiguousarray(label)).long()

    def __call__(self, sample: dict, epoch: int, index: int) -> dict:
        """Augment one dataset item; its randomness comes from (self.seed, epoch, index)."""
        image, label = sample["image"], sample["label"]
        if label is None:
            raise ValueError(f"sample {sample.get('id')!r} has no label: cannot train on it")
        p = self.draw(sample_rng(self.seed, epoch, index), *label.shape[:2])
        x, y = self.apply(image, label, p)
        return {"image": x, "label": y, "id": sample["id"]}


@dataclass(frozen=True)
class EvalTransform:
    """Evaluation input: normalisation only, or first a bilinear resize so that the longer side
    equals ``input_size`` (Table 6's single input sizes). The label keeps its original size:
    predictions are scored at the annotation's resolution."""

    input_size: int | None = None

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        if self.input_size is None:
            return height, width
        s = self.input_size / max(height, width)
        return max(1, int(round(height * s))), max(1, int(round(width * s)))

    def __call__(self, sample: dict) -> dict:
        image = sample["image"]
        h, w = self.input_shape(*image.shape[:2])
        out = {"image": normalize(resize_image(image, h, w)), "id": sample["id"],
               "size": tuple(image.shape[:2])}
        label = sample.get("label")
        out["label"] = None if label is None else torch.from_numpy(np.ascontiguousarray(label)).long()
        return out
