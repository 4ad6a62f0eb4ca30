"""The cpu profiles' stand-in for ImageNet pretraining: one VGG-16-BN backbone trained once on a
separate synthetic split, from which every baseline starts.

The paper's four baselines all start from one ImageNet-pretrained VGG-16 (Section 3) and spend
their LIP training on fine-tuning. ImageNet weights cannot be downloaded on the machines this
study is built on, and twelve networks trained from scratch would each pay for "learning to see"
out of a CPU budget of minutes. So the cpu profile trains this network once, on a synthetic split
disjoint from the benchmark's train / val / test images, and copies its ``backbone`` (conv1_1 ...
conv5_3 with their batch norms) into each baseline (:func:`lipstudy.checkpoints.load_backbone`).

It is a deviation, stated in the book: unlike ImageNet classification this pretraining task is
the parsing task itself (per-pixel labels of other synthetic people), so it is closer to "more
training data for the backbone" than to a generic feature extractor. The head is deliberately
neutral: a 1x1 classifier on each of pool3, pool4 and pool5, upsampled and summed (a hypercolumn),
so no baseline's own head is pretrained.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vgg import VGG16, init_classifier, init_weights, pad_to_multiple


class BackbonePretrainNet(nn.Module):
    """VGG-16-BN (standard pools, as ImageNet's) + a hypercolumn of 1x1 score layers on
    pool3 / pool4 / pool5. Eval: logits [B,C,H,W]; train: {"out", "aux": []}."""

    def __init__(self, num_classes: int = 20, width: float = 1.0, dropout: float = 0.5,
                 batch_norm: bool = True):
        super().__init__()
        if not batch_norm:
            raise ValueError("the pretraining backbone is VGG-16-BN (from-scratch training needs the norms)")
        self.backbone = VGG16(width, batch_norm=True)
        self.score = nn.ModuleList(nn.Conv2d(s[-1], num_classes, 1) for s in self.backbone.stage_channels[2:])
        init_weights(self)
        for conv in self.score:
            init_classifier(conv)

    def forward(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, 32)  # five 2x2 pools: any image, however thin, keeps pool5 >= 1 px
        pools = self.backbone(padded)[2:]
        # F.interpolate, not models.vgg.resize (the same values up to rounding): the committed backbone
        # was trained with it, and its run key does not change.
        logits = sum(F.interpolate(score(p), size=padded.shape[-2:], mode="bilinear", align_corners=False)
                     for score, p in zip(self.score, pools))[..., :h, :w]
        return {"out": logits, "aux": []} if self.training else logits
