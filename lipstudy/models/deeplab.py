"""DeepLabV2 with VGG-16 (Chen et al., TPAMI 2017, "DeepLab-ASPP-L"), without the dense CRF, as
the paper uses it (Section 3: "For DeepLabV2, we use the VGG-16 model without dense CRFs").

Atrous VGG-16 (output stride 8, conv5 dilated by 2; see :class:`~lipstudy.models.vgg.VGG16`),
then atrous spatial pyramid pooling: four parallel branches with rates 6, 12, 18, 24, each
fc6 (3x3, dilation r, 1024) -> ReLU -> dropout 0.5 -> fc7 (1x1, 1024) -> ReLU -> dropout 0.5 ->
fc8 (1x1, classes); the four score maps are summed and bilinearly upsampled to the input size.

Where the loss sees the scores: DeepLab's Caffe training (the released DeepLabV2 prototxts, and the
LIP_SSL prototxt the paper's models come from) computes the loss on the stride-8 score map (41 x 41
for a 321-px crop) against the label map shrunk to it (``Interp`` with ``shrink_factor: 8``), and
upsamples only at test time. ``score_map_loss=True`` does the same: in train mode ``out`` is the
score map itself, and :func:`lipstudy.losses.training_loss` shrinks the labels to it
(:func:`lipstudy.losses.shrink_labels`). With ``False`` (the default, what the cpu profiles were
trained with) train mode upsamples too, so the loss sees the input resolution. Eval mode always
returns input-size logits, as the evaluator expects. DeepLabV2 and Attention (a DeepLab-LargeFOV) are
the DeepLab-derived networks that train this way; FCN-8s and SegNet upsample inside the network
and their own released training scores the input-size output, so they have no such option.

At width 1 and 21 classes: 14,714,688 (VGG-16 convs) + 4 x (4,719,616 + 1,049,600 + 21,525)
= 37,877,652 parameters. (The ~20.5M often quoted for DeepLab VGG-16 is DeepLab-LargeFOV, the
single rate-12 branch used by :mod:`lipstudy.models.attention`.)

``FCHead`` (one branch) is shared with the attention-to-scale model, whose backbone is
DeepLab-LargeFOV.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .vgg import (VGG16, backbone_weights, decimated_fc, dropout_layer, init_classifier, init_weights,
                  load_mapped, read_torchvision_vgg, resize, scaled)

ASPP_RATES = (6, 12, 18, 24)
HEAD_CHANNELS = 1024  # DeepLab's thinned fc6 / fc7


class FCHead(nn.Module):
    """DeepLab's fc6 (3x3, dilation ``rate``) -> ReLU -> dropout -> fc7 (1x1) -> ReLU -> dropout
    -> fc8 (1x1 classifier). ``features`` stops at fc7 (what attention-to-scale looks at)."""

    def __init__(self, c_in: int, channels: int, num_classes: int, rate: int, dropout: float):
        super().__init__()
        self.fc6 = nn.Conv2d(c_in, channels, 3, padding=rate, dilation=rate)
        self.drop6 = dropout_layer(dropout)
        self.fc7 = nn.Conv2d(channels, channels, 1)
        self.drop7 = dropout_layer(dropout)
        self.fc8 = nn.Conv2d(channels, num_classes, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop7(F.relu(self.fc7(self.drop6(F.relu(self.fc6(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.features(x))


def pretrained_head_weights(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """fc6 / fc7 of one :class:`FCHead` (keys under ``prefix``) from VGG-16's decimated fc layers."""
    fc6_w, fc6_b, fc7_w, fc7_b = decimated_fc(state)
    return {f"{prefix}fc6.weight": fc6_w, f"{prefix}fc6.bias": fc6_b,
            f"{prefix}fc7.weight": fc7_w, f"{prefix}fc7.bias": fc7_b}


class DeepLabV2(nn.Module):
    """DeepLabV2 (VGG-16, ASPP 6/12/18/24, no CRF). Eval: logits [B,C,H,W]; train: {"out", "aux": []},
    ``out`` at the input size, or the stride-8 score map with ``score_map_loss`` (module docstring)."""

    def __init__(self, num_classes: int = 20, width: float = 1.0, dropout: float = 0.5,
                 rates: tuple[int, ...] = ASPP_RATES, batch_norm: bool = False, score_map_loss: bool = False,
                 head_min: int = 0):
        super().__init__()
        self.score_map_loss = score_map_loss
        self.backbone = VGG16(width, batch_norm=batch_norm, atrous=True)
        channels = max(scaled(HEAD_CHANNELS, width), head_min)
        self.aspp = nn.ModuleList(FCHead(self.backbone.out_channels, channels, num_classes, r, dropout)
                                  for r in rates)
        init_weights(self)
        for branch in self.aspp:
            init_classifier(branch.fc8)

    def forward(self, x: torch.Tensor):
        pool5 = self.backbone(x)[-1]
        score = torch.stack([branch(pool5) for branch in self.aspp]).sum(0)
        if self.training and self.score_map_loss:
            return {"out": score, "aux": []}
        logits = resize(score, x.shape[-2:])
        return {"out": logits, "aux": []} if self.training else logits

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Load conv1_1..conv5_3 from a torchvision ``vgg16`` state dict file and initialise every
        branch's fc6 / fc7 from VGG-16's fc6 / fc7 by DeepLab's decimation
        (:func:`~lipstudy.models.vgg.decimated_fc`); fc8 stays random."""
        state = read_torchvision_vgg(path, batch_norm=False, need_fc=True)
        weights = backbone_weights(state, False, "backbone.")
        for i in range(len(self.aspp)):
            weights.update(pretrained_head_weights(state, f"aspp.{i}."))
        load_mapped(self, weights, path)
