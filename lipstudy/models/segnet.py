"""SegNet (Badrinarayanan et al., TPAMI 2017), the encoder-decoder baseline of the paper's
Section 3 (Tables 2-4, 6).

Encoder: VGG-16 with batch normalisation (13 conv-bn-relu layers, five 2x2 max-pools that
remember where each maximum came from). Decoder: the mirror image. Each decoder stage first
places its input back at the encoder's argmax positions (``MaxUnpool2d``, zeros elsewhere), then
densifies the sparse map with conv-bn-relu layers; the last layer of each decoder stage narrows
to the channels of the encoder stage below it, and a final 3x3 conv gives the class scores
(no BN / ReLU), as in SegNet's released Caffe model. At width 1 and 21 classes this is
29,455,125 parameters (paper: 29.5M).

Inputs of any size are zero-padded at the bottom/right to a multiple of 32 (the five pools) and
the scores cropped back, so every pool and unpool sees even sizes. The basic SegNet has no
dropout (Bayesian SegNet adds it); ``dropout`` is accepted for a uniform constructor and unused.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from .vgg import (VGG16, backbone_weights, conv_block, dropout_layer, init_classifier, init_weights,
                  load_mapped, pad_to_multiple, read_torchvision_vgg)


class SegNet(nn.Module):
    """SegNet with a (thinned) VGG-16-BN encoder. Eval: logits [B,C,H,W]; train: {"out", "aux": []}."""

    def __init__(self, num_classes: int = 20, width: float = 1.0, dropout: float = 0.5,
                 batch_norm: bool = True):
        super().__init__()
        dropout_layer(dropout)  # validate only: SegNet has no dropout
        if not batch_norm:
            raise ValueError("SegNet's encoder is VGG-16-BN: batch_norm=False is not SegNet")
        self.encoder = VGG16(width, batch_norm=True, return_indices=True)
        channels = self.encoder.stage_channels
        decoders = []
        for i in reversed(range(len(channels))):  # decoders[0] mirrors stage 5
            c, n = channels[i][-1], len(channels[i])
            layers: list[nn.Module] = []
            for _ in range(n - 1):
                layers += conv_block(c, c, batch_norm=True)
            if i > 0:
                layers += conv_block(c, channels[i - 1][-1], batch_norm=True)
            decoders.append(nn.Sequential(*layers))
        self.decoders = nn.ModuleList(decoders)
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        self.classifier = nn.Conv2d(channels[0][-1], num_classes, 3, padding=1)
        init_weights(self)
        init_classifier(self.classifier)

    def forward(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, 32)
        indices, sizes = [], []
        for stage, pool in zip(self.encoder.stages, self.encoder.pools):
            x = stage(x)
            sizes.append(x.shape[-2:])
            x, idx = pool(x)
            indices.append(idx)
        for decoder, idx, size in zip(self.decoders, reversed(indices), reversed(sizes)):
            x = decoder(self.unpool(x, idx, output_size=size))
        logits = self.classifier(x)[..., :h, :w]
        return {"out": logits, "aux": []} if self.training else logits

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Load the encoder from a torchvision ``vgg16_bn`` state dict file (conv and BN weights
        and BN running statistics); the decoder keeps its random initialisation, as SegNet's."""
        state = read_torchvision_vgg(path, batch_norm=True, need_fc=False)
        load_mapped(self, backbone_weights(state, True, "encoder."), path)
