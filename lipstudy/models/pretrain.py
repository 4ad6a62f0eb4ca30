"""The cpu profiles' stand-in for ImageNet pretraining: one VGG-16-BN network trained once on a
separate synthetic split, from which every baseline starts.

The paper's four baselines all start from one ImageNet-pretrained VGG-16 (Section 3) and spend
their LIP training on fine-tuning: FCN-8s, DeepLabV2 and Attention-to-scale take its conv layers
*and* its fc6 / fc7 (DeepLab thins and dilates them), SegNet its conv layers only. ImageNet weights
cannot be downloaded on the machines this study is built on, and twelve networks trained from
scratch would each pay for "learning to see" out of a CPU budget of minutes. So the cpu profile
trains this network once, on a synthetic split disjoint from the benchmark's train / val / test
images, and copies its VGG-16 into each baseline (:func:`lipstudy.models.load_backbone`).

Its head mirrors what the baselines inherit from VGG-16: ``head.fc6`` / ``head.fc7`` in DeepLab's
thinned shape (3x3 x 1024, 1x1 x 1024, scaled by the width) on pool5, plus 1x1 score layers. The
paper's baselines get ImageNet's fc6 / fc7; here they get these (DeepLabV2's four ASPP branches and
Attention's LargeFOV head exactly; FCN-8s's wider 7x7 x 4096 fc6 / fc7 hold them as a quarter of
their filters, see :func:`lipstudy.models.load_backbone`). No baseline's classifier (fc8, score
layers) is pretrained, as none is in the paper.

It is a deviation, stated in the book: unlike ImageNet classification this pretraining task is
the parsing task itself (per-pixel labels of other synthetic people), so it is closer to "more
training data for the backbone" than to a generic feature extractor. Its output is a hypercolumn:
1x1 score layers on pool3 and pool4 and the fc7 classifier, upsampled and summed, so that fine
detail reaches the loss as in FCN-8s.
"""
from __future__ import annotations

import torch
from torch import nn

from .deeplab import HEAD_CHANNELS, FCHead
from .vgg import VGG16, init_classifier, init_weights, pad_to_multiple, resize, scaled


class BackbonePretrainNet(nn.Module):
    """VGG-16-BN (standard pools, as ImageNet's) + fc6 (3x3) / fc7 (1x1) on pool5 + a hypercolumn
    of 1x1 score layers on pool3 / pool4 / fc7. Eval: logits [B,C,H,W]; train: {"out", "aux": []}."""

    def __init__(self, num_classes: int = 20, width: float = 1.0, dropout: float = 0.5,
                 batch_norm: bool = True):
        super().__init__()
        if not batch_norm:
            raise ValueError("the pretraining backbone is VGG-16-BN (from-scratch training needs the norms)")
        self.backbone = VGG16(width, batch_norm=True)
        c3, c4, c5 = (s[-1] for s in self.backbone.stage_channels[2:])
        # fc6 at rate 1 on the stride-32 pool5: DeepLab's branches see it at stride 8 with dilation.
        self.head = FCHead(c5, scaled(HEAD_CHANNELS, width), num_classes, rate=1, dropout=dropout)
        self.score = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in (c3, c4))
        init_weights(self)
        for conv in (*self.score, self.head.fc8):
            init_classifier(conv)

    def forward(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, 32)  # five 2x2 pools: any image, however thin, keeps pool5 >= 1 px
        _, _, pool3, pool4, pool5 = self.backbone(padded)
        scores = (self.score[0](pool3), self.score[1](pool4), self.head(pool5))
        logits = sum(resize(s, padded.shape[-2:]) for s in scores)[..., :h, :w]
        return {"out": logits, "aux": []} if self.training else logits
