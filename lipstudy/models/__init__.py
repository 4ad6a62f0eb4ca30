"""The four baselines of the paper's Section 3 (SegNet, FCN-8s, DeepLabV2, Attention), all on
VGG-16, looked up by name.

Every model takes a float tensor [B,3,H,W] normalised with ImageNet's mean / std, of any size.
In eval mode it returns logits [B,C,H,W] at the input resolution; in train mode a dict
``{"out": logits at input resolution, "aux": [extra logits at input resolution, ...]}`` where
``aux`` holds attention-to-scale's per-scale score maps (empty for the others).
"""
from __future__ import annotations

import os

import torch
from torch import nn

from .attention import LARGEFOV_RATE, AttentionToScale
from .deeplab import ASPP_RATES, DeepLabV2
from .fcn import FCN8s
from .pretrain import BackbonePretrainNet
from .segnet import SegNet

MODELS = {
    "segnet": SegNet,
    "fcn8s": FCN8s,
    "deeplabv2": DeepLabV2,
    "attention": AttentionToScale,
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
# Not a baseline: the cpu profiles' synthetic stand-in for ImageNet pretraining (models/pretrain.py).
PRETRAIN_MODEL = "backbone"


def build_model(name: str, num_classes: int = 20, width: float = 1.0,
                pretrained: str | os.PathLike | None = None, dropout: float = 0.5,
                batch_norm: bool | None = None, atrous_scale: float = 1.0) -> nn.Module:
    """Build baseline ``name`` (one of :data:`MODEL_NAMES`).

    ``width`` thins every layer (channels = max(8, round(c * width))); ``dropout`` is the rate of
    every dropout layer (0 removes them all, for a deterministic model; SegNet has none).
    ``pretrained`` is a file holding a torchvision-format ImageNet VGG-16 state dict (VGG-16-BN
    for SegNet), loaded into the backbone (and fc6 / fc7 where the model has them); it needs
    width=1.0. Without it, convs get Kaiming-normal weights (as torchvision's VGG), score layers
    N(0, 0.01^2), transposed convs bilinear kernels. ``batch_norm``: VGG-16-BN backbone (None =
    the paper's: BN for SegNet only); the cpu profiles train every baseline with it, since they
    train from scratch. ``name="backbone"`` builds the pretraining network of models/pretrain.py.
    ``atrous_scale`` multiplies the dilation rates of DeepLabV2's ASPP (6/12/18/24) and of the
    attention model's LargeFOV head (12), rounded, at least 1: the paper's rates are sized for
    321-px crops (a 41-cell score map); on smaller crops the same rates look past the map's edge.
    """
    if name == PRETRAIN_MODEL:
        return BackbonePretrainNet(num_classes=num_classes, width=width)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    kw = {} if batch_norm is None else {"batch_norm": batch_norm}
    if atrous_scale != 1.0:
        if atrous_scale <= 0:
            raise ValueError(f"atrous_scale must be > 0, got {atrous_scale}")
        rate = lambda r: max(1, int(round(r * atrous_scale)))  # noqa: E731
        if name == "deeplabv2":
            kw["rates"] = tuple(rate(r) for r in ASPP_RATES)
        elif name == "attention":
            kw["rate"] = rate(LARGEFOV_RATE)
    model = MODELS[name](num_classes=num_classes, width=width, dropout=dropout, **kw)
    if pretrained is not None:
        model.load_pretrained(pretrained)
    return model


def backbone_of(model: nn.Module) -> nn.Module:
    """The VGG-16 feature stack of a baseline (SegNet calls it its encoder)."""
    return model.encoder if isinstance(model, SegNet) else model.backbone


def load_backbone(model: nn.Module, path: str | os.PathLike) -> None:
    """Copy the VGG-16 of a pretraining checkpoint (``lipstudy.train`` format, model
    ``"backbone"``) into ``model``, which must have the same width and batch norms: the conv layers
    into every baseline, and the pretrained fc6 / fc7 (``head.fc6`` / ``head.fc7``, in DeepLab's
    thinned shape) where the paper's baseline takes VGG-16's fc6 / fc7 (Section 3): each of
    DeepLabV2's ASPP branches (as DeepLab initialises all four from one VGG fc6 / fc7), the
    LargeFOV head of Attention-to-scale, and FCN-8s. FCN-8s's fc6 / fc7 are wider (7x7 x 4096 and
    4096 x 4096, scaled): the pretrained ones fill their first filters, fc6's 3x3 kernel at the
    centre of the 7x7 one and zeros around it (a 3x3 kernel with padding 1 is that 7x7 kernel with
    padding 3), and fc7's weights from the other filters zero, so those first fc7 channels compute
    exactly the pretrained fc7; the other filters keep their random initialisation. A checkpoint
    without fc6 / fc7 (pretrained before they existed) gives the conv layers only. Classifiers
    (fc8, score layers) are never copied. Raises ValueError naming the file when it does not fit."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        weights = {k[len("backbone."):]: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
        fc = {k[len("head."):]: v for k, v in ckpt["model"].items() if k.startswith(("head.fc6.", "head.fc7."))}
    except Exception as e:  # noqa: BLE001 - a missing / corrupt / foreign file: say which
        raise ValueError(f"{os.fspath(path)}: not a readable pretraining checkpoint ({e})") from e
    try:
        backbone_of(model).load_state_dict(weights)
        if fc:
            _load_fc(model, fc)
    except RuntimeError as e:
        raise ValueError(f"{os.fspath(path)}: its backbone does not fit this model (same width and "
                         f"batch_norm=True needed): {' '.join(str(e).split())[:300]}") from e


def _load_fc(model: nn.Module, fc: dict[str, torch.Tensor]) -> None:
    """fc6 / fc7 of the pretraining net into ``model`` (see :func:`load_backbone`)."""
    if isinstance(model, DeepLabV2):
        for branch in model.aspp:
            branch.load_state_dict(fc, strict=False)
    elif isinstance(model, AttentionToScale):
        model.head.load_state_dict(fc, strict=False)
    elif isinstance(model, FCN8s):
        w6, b6, w7, b7 = fc["fc6.weight"], fc["fc6.bias"], fc["fc7.weight"], fc["fc7.bias"]
        k, r = w6.shape[0], w6.shape[-1] // 2
        c = model.fc6.kernel_size[0] // 2
        if w6.shape[1] != model.fc6.in_channels or k > model.fc6.out_channels or r > c:
            raise RuntimeError(f"fc6 {tuple(w6.shape)} does not fit FCN-8s's fc6 {tuple(model.fc6.weight.shape)}")
        with torch.no_grad():
            model.fc6.weight[:k].zero_()
            model.fc6.weight[:k, :, c - r:c + r + 1, c - r:c + r + 1] = w6
            model.fc6.bias[:k] = b6
            model.fc7.weight[:k].zero_()
            model.fc7.weight[:k, :k] = w7
            model.fc7.bias[:k] = b7


def num_parameters(model: nn.Module) -> int:
    """Number of learnable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "MODEL_NAMES", "PRETRAIN_MODEL", "ASPP_RATES", "LARGEFOV_RATE", "build_model", "load_backbone", "backbone_of",
           "num_parameters", "BackbonePretrainNet",
           "SegNet", "FCN8s", "DeepLabV2", "AttentionToScale"]
