"""Attention to scale (Chen, Yang, Wang, Xu & Yuille, CVPR 2016), the "Attention" baseline of the
paper's Section 3 and the base network of its self-supervised structure-sensitive learning
(Section 5.1: "We utilize the publicly available model, Attention [5], as the basic architecture").

A DeepLab-LargeFOV network is shared across the input scales 1, 0.75 and 0.5: atrous VGG-16 whose
pool5 (3x3 max, stride 1) feeds fc6 (3x3, dilation 12, 1024) directly, as in the released LIP_SSL
prototxt (which has no LargeFOV-v1 average pool ``pool5a``), fc7 (1x1, 1024) and fc8. The fc7
features of every scale, resized to the scale-1 feature resolution, are concatenated and fed to the
attention model (conv 3x3 x 512 -> ReLU -> dropout -> conv 1x1 x S, S = number of scales); a softmax
across scales gives one weight map per scale. The fused score map is the attention-weighted sum of
the per-scale fc8 score maps (also resized to scale-1 resolution), bilinearly upsampled to the input
size. In training the per-scale score maps are returned as ``aux`` (upsampled to the input size) for
Chen et al.'s extra supervision of each scale.

The attention model's last layer starts at zero, so a new network weighs every scale equally: the
released model's attention layers start from a model "pretrained on coco" (its prototxt), not at
random, and no such model exists for the synthetic benchmark; from a random start the weights
saturated on one scale (results/benchmarks/attention_search.json).

With ``score_map_loss=True`` training follows the released LIP_SSL prototxt (``attention``), a
DeepLab-derived network trained as DeepLab's Caffe trains (see :mod:`lipstudy.models.deeplab`):
``out`` is the fused score map on the scale-1 grid (41 x 41 for 321 px, against the labels shrunk by
8), and each scale's ``aux`` map is on its own grid when 1/scale is an integer (scale 1: 41 x 41;
scale 0.5: 21 x 21, against the labels shrunk by 16, the prototxt's ``label_shrink16``) and else on
the scale-1 grid (scale 0.75, whose score map the prototxt interpolates: "interp layer does not
support 3/4 scale for ground truth, instead we interpolate score map").

At width 1 and 21 classes: 20,505,429 (LargeFOV: 14,714,688 + 4,719,616 + 1,049,600 + 21,525)
+ 14,156,288 (attention conv 3x3, 3 x 1024 -> 512) + 1,539 (conv 1x1, 512 -> 3) = 34,663,256.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from .deeplab import HEAD_CHANNELS, FCHead, pretrained_head_weights
from .vgg import (VGG16, backbone_weights, dropout_layer, init_classifier, init_weights, load_mapped,
                  read_torchvision_vgg, resize, scaled)

SCALES = (1.0, 0.75, 0.5)
ATTENTION_DROPOUT = 0.5
"""The attention model's dropout (the prototxt's ``drop_att_conv1``), kept whatever the head's: without it
the weights of a thin network saturated on one scale (results/benchmarks/attention_search.json)."""
LARGEFOV_RATE = 12
ATTENTION_CHANNELS = 512


class AttentionToScale(nn.Module):
    """Attention-to-scale over a shared DeepLab-LargeFOV. Eval: fused logits [B,C,H,W]; train:
    {"out": fused logits, "aux": [per-scale logits, one per scale]}, all at the input size, or on
    the score-map grids with ``score_map_loss`` (module docstring)."""

    def __init__(self, num_classes: int = 20, width: float = 1.0, dropout: float = 0.5,
                 scales: tuple[float, ...] = SCALES, batch_norm: bool = False, rate: int = LARGEFOV_RATE,
                 score_map_loss: bool = False, attention_dropout: float = ATTENTION_DROPOUT, head_min: int = 0):
        super().__init__()
        self.score_map_loss = score_map_loss
        if not scales or scales[0] != 1.0:
            raise ValueError(f"scales must start with 1.0 (the reference resolution), got {scales}")
        self.scales = tuple(scales)
        self.backbone = VGG16(width, batch_norm=batch_norm, atrous=True)
        channels = max(scaled(HEAD_CHANNELS, width), head_min)
        self.head = FCHead(self.backbone.out_channels, channels, num_classes, rate, dropout)
        hidden = scaled(ATTENTION_CHANNELS, width)
        self.attention = nn.Sequential(
            nn.Conv2d(len(scales) * channels, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            dropout_layer(attention_dropout),
            nn.Conv2d(hidden, len(scales), 1),
        )
        init_weights(self)
        init_classifier(self.head.fc8)
        nn.init.zeros_(self.attention[-1].weight)  # equal weights on every scale at the start
        nn.init.zeros_(self.attention[-1].bias)

    def forward_parts(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Everything at scale-1 feature resolution (stride 8): ``fused`` [B,C,h,w],
        ``per_scale`` (list of S score maps [B,C,h,w]) and ``weights`` [B,S,h,w] (softmax over S,
        so they sum to 1 at every pixel; Chen et al. Eq. 2); and ``per_scale_native``, each scale's
        score map on its own grid (before the resize to the scale-1 grid)."""
        h, w = x.shape[-2:]
        features, scores = [], []
        for s in self.scales:
            xs = x if s == 1.0 else resize(x, (max(1, round(h * s)), max(1, round(w * s))))
            f = self.head.features(self.backbone(xs)[-1])
            features.append(f)
            scores.append(self.head.fc8(f))
        size = features[0].shape[-2:]
        features = [resize(f, size) for f in features]
        native, scores = scores, [resize(sc, size) for sc in scores]
        weights = self.attention(torch.cat(features, dim=1)).softmax(dim=1)
        fused = (torch.stack(scores, dim=1) * weights.unsqueeze(2)).sum(dim=1)
        return {"fused": fused, "per_scale": scores, "weights": weights, "per_scale_native": native}

    def forward(self, x: torch.Tensor):
        parts = self.forward_parts(x)
        if self.training and self.score_map_loss:
            aux = [own if float(1 / s).is_integer() else on_grid
                   for s, own, on_grid in zip(self.scales, parts["per_scale_native"], parts["per_scale"])]
            return {"out": parts["fused"], "aux": aux}
        size = x.shape[-2:]
        logits = resize(parts["fused"], size)
        if not self.training:
            return logits
        return {"out": logits, "aux": [resize(sc, size) for sc in parts["per_scale"]]}

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Load conv1_1..conv5_3 from a torchvision ``vgg16`` state dict file and fc6 / fc7 of the
        LargeFOV head from VGG-16's decimated fc layers (DeepLab's initialisation); fc8 and the
        attention model stay random."""
        state = read_torchvision_vgg(path, batch_norm=False, need_fc=True)
        weights = backbone_weights(state, False, "backbone.")
        weights.update(pretrained_head_weights(state, "head."))
        load_mapped(self, weights, path)
