"""Label taxonomies of the datasets in the study, and the helpers every other module uses.

LIP (paper Section 2.1): 19 part labels plus background, in the id order of the dataset files
(the paper lists them in another order; Table 4 follows the ids). Left and right are the
person's own, so a horizontal flip must swap them.
"""
from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255
"""Label value excluded from losses and metrics (padding introduced by augmentation)."""

LIP_CLASSES: tuple[str, ...] = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat",
    "socks", "pants", "jumpsuits", "scarf", "skirt", "face", "left-arm", "right-arm",
    "left-leg", "right-leg", "left-shoe", "right-shoe",
)
LIP_NUM_CLASSES = len(LIP_CLASSES)
LIP_ID: dict[str, int] = {name: i for i, name in enumerate(LIP_CLASSES)}
"""LIP class id by name, so that code names the labels it means."""

# Column names of the paper's Table 4, in LIP id order (background last in the paper).
LIP_TABLE4_NAMES: dict[str, str] = {
    "background": "Bkg", "hat": "hat", "hair": "hair", "glove": "gloves",
    "sunglasses": "sunglasses", "upper-clothes": "u-clothes", "dress": "dress", "coat": "coat",
    "socks": "socks", "pants": "pants", "jumpsuits": "jumpsuits", "scarf": "scarf",
    "skirt": "skirt", "face": "face", "left-arm": "l-arm", "right-arm": "r-arm",
    "left-leg": "l-leg", "right-leg": "r-leg", "left-shoe": "l-shoe", "right-shoe": "r-shoe",
}

LIP_PALETTE = np.array(
    [
        (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0),
        (0, 0, 85), (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128),
        (0, 128, 0), (0, 0, 255), (51, 170, 221), (0, 255, 255), (85, 255, 170),
        (170, 255, 85), (255, 255, 0), (255, 170, 0),
    ],
    dtype=np.uint8,
)
"""The standard LIP colours (as used by the LIP evaluation tools and the released code)."""

LIP_FLIP_PAIRS: list[tuple[int, int]] = [(14, 15), (16, 17), (18, 19)]

# The nine joints of Section 4.2, each the centre of a merged region. Glove, dress, socks and
# jumpsuits feed no joint (released LIP_SSL code and the paper's list).
JOINT_NAMES: tuple[str, ...] = (
    "head", "upper-body", "lower-body", "left-arm", "right-arm",
    "left-leg", "right-leg", "left-shoe", "right-shoe",
)
JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "head": (1, 2, 4, 13),          # hat, hair, sunglasses, face
    "upper-body": (5, 7, 11),       # upper-clothes, coat, scarf
    "lower-body": (9, 12),          # pants, skirt
    "left-arm": (14,),
    "right-arm": (15,),
    "left-leg": (16,),
    "right-leg": (17,),
    "left-shoe": (18,),
    "right-shoe": (19,),
}
JOINT_FLIP_PAIRS: list[tuple[int, int]] = [(3, 4), (5, 6), (7, 8)]
"""Joint indices (into JOINT_NAMES) that swap under a horizontal flip."""

ATR_CLASSES: tuple[str, ...] = (
    "background", "hat", "hair", "sunglasses", "upper-clothes", "skirt", "pants", "dress",
    "belt", "left-shoe", "right-shoe", "face", "left-leg", "right-leg", "left-arm",
    "right-arm", "bag", "scarf",
)
ATR_NUM_CLASSES = len(ATR_CLASSES)
ATR_FLIP_PAIRS: list[tuple[int, int]] = [(9, 10), (12, 13), (14, 15)]

PPP_CLASSES: tuple[str, ...] = (
    "background", "head", "torso", "upper-arms", "lower-arms", "upper-legs", "lower-legs",
)
PPP_NUM_CLASSES = len(PPP_CLASSES)
PPP_FLIP_PAIRS: list[tuple[int, int]] = []  # PASCAL-Person-Part merges left and right
# Column names of the paper's Table 5, in PPP id order (background last in the paper).
PPP_TABLE5_NAMES: dict[str, str] = {
    "background": "Bkg", "head": "head", "torso": "torso", "upper-arms": "u-arms",
    "lower-arms": "l-arms", "upper-legs": "u-legs", "lower-legs": "l-legs",
}

# ATR id -> LIP id for the categories both datasets define (Table 6, left: a model trained on LIP
# is scored on ATR over these only). ATR's belt and bag, and LIP's glove, coat, socks and
# jumpsuits, have no counterpart.
ATR_TO_LIP: dict[int, int] = {
    0: 0, 1: 1, 2: 2, 3: 4, 4: 5, 5: 12, 6: 9, 7: 6, 9: 18, 10: 19,
    11: 13, 12: 16, 13: 17, 14: 14, 15: 15, 17: 11,
}
ATR_LIP_SHARED: tuple[int, ...] = tuple(sorted(ATR_TO_LIP.values()))
"""LIP ids of the categories shared with ATR (the classes Table 6's ATR column averages over)."""

DATASETS = {
    "lip": {"classes": LIP_CLASSES, "flip_pairs": LIP_FLIP_PAIRS},
    "ppp": {"classes": PPP_CLASSES, "flip_pairs": PPP_FLIP_PAIRS},
    "atr": {"classes": ATR_CLASSES, "flip_pairs": ATR_FLIP_PAIRS},
}
"""The label sets by dataset name, the one list of the benchmarks the study reads."""


def swap_lut(pairs=LIP_FLIP_PAIRS) -> np.ndarray:
    """A 256-entry uint8 lookup table that swaps each (left, right) pair and keeps the rest."""
    lut = np.arange(256, dtype=np.uint8)
    for a, b in pairs:
        lut[a], lut[b] = b, a
    return lut


def flip_labels(label, pairs=LIP_FLIP_PAIRS):
    """Mirror a label map (or a batch ``[..., H, W]``) horizontally and swap left/right labels.

    This is what LIP ships as its ``*_reversed`` annotations. Works on numpy arrays and torch
    tensors (any device); values outside the pairs (255 included) are kept.
    """
    lut = swap_lut(pairs)
    if isinstance(label, np.ndarray):
        return lut[label[..., ::-1]]
    import torch

    table = torch.as_tensor(lut.astype(np.int64), device=label.device)
    return table[label.flip(-1).long()].to(label.dtype)


def map_labels(label, mapping: dict[int, int], default: int = IGNORE_INDEX):
    """Relabel with ``mapping`` (ids not in it become ``default``); numpy or torch."""
    lut = np.full(256, default, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    if isinstance(label, np.ndarray):
        return lut[label]
    import torch

    table = torch.as_tensor(lut.astype(np.int64), device=label.device)
    return table[label.long()].to(label.dtype)


def atr_to_lip(label):
    """ATR label map -> LIP ids; ATR classes without a LIP counterpart become ignore (255)."""
    return map_labels(label, ATR_TO_LIP)


def palette_for(num_classes: int) -> np.ndarray:
    """The LIP palette for up to 20 classes (ATR and PPP reuse its first colours)."""
    if num_classes > len(LIP_PALETTE):
        raise ValueError(f"no palette for {num_classes} classes (at most {len(LIP_PALETTE)})")
    return LIP_PALETTE[:num_classes]


def colorize(label, palette: np.ndarray = LIP_PALETTE, ignore_color=(255, 255, 255)) -> np.ndarray:
    """Colour a label map ``HxW`` (numpy or torch) with the palette -> ``HxWx3`` uint8.

    Ignore pixels (255) are drawn in ``ignore_color``; any other id beyond the palette raises.
    """
    label = np.asarray(label.cpu() if hasattr(label, "cpu") else label)
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = palette
    table[IGNORE_INDEX] = ignore_color
    bad = (label >= len(palette)) & (label != IGNORE_INDEX)
    if bad.any():
        raise ValueError(f"label ids {sorted(np.unique(label[bad]).tolist())} have no colour "
                         f"in a {len(palette)}-colour palette")
    return table[label]


def overlay(image: np.ndarray, label, alpha: float = 0.55, palette: np.ndarray = LIP_PALETTE) -> np.ndarray:
    """Blend the coloured label map over an RGB image (background pixels stay as the image)."""
    colors = colorize(label, palette).astype(np.float32)
    img = np.asarray(image).astype(np.float32)
    mask = (np.asarray(label) != 0)[..., None]
    out = np.where(mask, (1 - alpha) * img + alpha * colors, img)
    return out.round().clip(0, 255).astype(np.uint8)
