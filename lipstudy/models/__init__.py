"""The four baselines of the paper's Section 3 (SegNet, FCN-8s, DeepLabV2, Attention), all on
VGG-16, looked up by name.

Every model takes a float tensor [B,3,H,W] normalised with ImageNet's mean / std, of any size.
In eval mode it returns logits [B,C,H,W] at the input resolution; in train mode a dict
``{"out": logits at input resolution, "aux": [extra logits at input resolution, ...]}`` where
``aux`` holds attention-to-scale's per-scale score maps (empty for the others).
"""
from __future__ import annotations

import os

from torch import nn

from .attention import AttentionToScale
from .deeplab import DeepLabV2
from .fcn import FCN8s
from .segnet import SegNet

MODELS = {
    "segnet": SegNet,
    "fcn8s": FCN8s,
    "deeplabv2": DeepLabV2,
    "attention": AttentionToScale,
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def build_model(name: str, num_classes: int = 20, width: float = 1.0,
                pretrained: str | os.PathLike | None = None, dropout: float = 0.5) -> nn.Module:
    """Build baseline ``name`` (one of :data:`MODEL_NAMES`).

    ``width`` thins every layer (channels = max(8, round(c * width))); ``dropout`` is the rate of
    every dropout layer (0 removes them all, for a deterministic model; SegNet has none).
    ``pretrained`` is a file holding a torchvision-format ImageNet VGG-16 state dict (VGG-16-BN
    for SegNet), loaded into the backbone (and fc6 / fc7 where the model has them); it needs
    width=1.0. Without it, convs get Kaiming-normal weights (as torchvision's VGG), score layers
    N(0, 0.01^2), transposed convs bilinear kernels.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    model = MODELS[name](num_classes=num_classes, width=width, dropout=dropout)
    if pretrained is not None:
        model.load_pretrained(pretrained)
    return model


def num_parameters(model: nn.Module) -> int:
    """Number of learnable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "MODEL_NAMES", "build_model", "num_parameters",
           "SegNet", "FCN8s", "DeepLabV2", "AttentionToScale"]
