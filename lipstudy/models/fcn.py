"""FCN-8s (Long, Shelhamer & Darrell, CVPR 2015; the "at-once" variant of the TPAMI 2017
version), the fully convolutional baseline of the paper's Section 3.

VGG-16 with fc6 / fc7 recast as convolutions (7x7 x 4096, 1x1 x 4096, each followed by ReLU
and dropout), a 1x1 score layer on fc7 and two skips: score_pool4 on pool4 scaled by 0.01 and
score_pool3 on pool3 scaled by 0.0001 (the at-once net's fixed scaling, which keeps the skips
from dominating early training). Upsampling is learned transposed convolution initialised to
bilinear: x2 (upscore2), x2 (upscore_pool4), x8 (upscore8), no bias. At width 1 and 21 classes
this is 134,489,759 parameters: 134,362,751 in the convolutions plus 127,008 in the three
upsampling kernels (7,056 + 7,056 + 112,896).

Alignment (our choice, instead of the original's 100-pixel conv1 padding and Caffe crop layers):
the input is zero-padded at the bottom/right to a multiple of 32; fc6 uses padding 3 so it keeps
pool5's size; each transposed conv (kernel 2s, stride s, padding s/2) exactly multiplies the
size by s, so score maps line up with pool4 / pool3 without offsets, and the x8 output is
cropped back to the input size. Same receptive fields, no off-centre crops, any input size.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .vgg import (FC_CHANNELS, VGG16, backbone_weights, bilinear_kernel, dropout_layer, fc_as_conv,
                  init_classifier, init_weights, load_mapped, pad_to_multiple, read_torchvision_vgg,
                  scaled)

POOL4_SCALE = 0.01
POOL3_SCALE = 0.0001


def upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Learned x``factor`` transposed conv, initialised to bilinear interpolation."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2,
                            bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


class FCN8s(nn.Module):
    """FCN-8s on a (thinned) VGG-16. Eval: logits [B,C,H,W]; train: {"out", "aux": []}."""

    def __init__(self, num_classes: int = 20, width: float = 1.0, dropout: float = 0.5,
                 batch_norm: bool = False, head_min: int = 0):
        super().__init__()
        self.backbone = VGG16(width, batch_norm=batch_norm)
        c3, c4, c5 = (s[-1] for s in self.backbone.stage_channels[2:])
        fc = max(scaled(FC_CHANNELS, width), head_min)
        self.fc6 = nn.Conv2d(c5, fc, 7, padding=3)
        self.drop6 = dropout_layer(dropout)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.drop7 = dropout_layer(dropout)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
        self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
        init_weights(self)
        for score in (self.score_fr, self.score_pool4, self.score_pool3):
            init_classifier(score)
        # created after init_weights, which leaves transposed convs alone anyway
        self.upscore2 = upsampler(num_classes, 2)
        self.upscore_pool4 = upsampler(num_classes, 2)
        self.upscore8 = upsampler(num_classes, 8)

    def forward(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        _, _, pool3, pool4, pool5 = self.backbone(pad_to_multiple(x, 32))
        fc7 = self.drop7(F.relu(self.fc7(self.drop6(F.relu(self.fc6(pool5))))))
        score = self.upscore2(self.score_fr(fc7))                                   # stride 16
        score = self.upscore_pool4(score + self.score_pool4(pool4 * POOL4_SCALE))   # stride 8
        score = self.upscore8(score + self.score_pool3(pool3 * POOL3_SCALE))        # stride 1
        logits = score[..., :h, :w]
        return {"out": logits, "aux": []} if self.training else logits

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Load conv1_1..conv5_3 and fc6 / fc7 (reshaped to 7x7 and 1x1 convs) from a torchvision
        ``vgg16`` state dict file, as FCN's "convolutionalised" VGG-16. Score layers stay random."""
        state = read_torchvision_vgg(path, batch_norm=False, need_fc=True)
        weights = backbone_weights(state, False, "backbone.")
        fc6_w, fc6_b, fc7_w, fc7_b = fc_as_conv(state)
        weights.update({"fc6.weight": fc6_w, "fc6.bias": fc6_b, "fc7.weight": fc7_w, "fc7.bias": fc7_b})
        load_mapped(self, weights, path)
