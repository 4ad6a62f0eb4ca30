"""The four baselines of the paper's Section 3 (SegNet, FCN-8s, DeepLabV2, Attention), all on
VGG-16, looked up by name.

Every model takes a float tensor [B,3,H,W] normalised with ImageNet's mean / std, of any size.
In eval mode it returns logits [B,C,H,W] at the input resolution; in train mode a dict
``{"out": logits at input resolution, "aux": [extra logits at input resolution, ...]}`` where
``aux`` holds attention-to-scale's per-scale score maps (empty for the others). With
``score_map_loss`` the DeepLab-derived networks (DeepLabV2, Attention) give their score maps instead,
for a loss against shrunk labels as DeepLab's Caffe training computes it (models/deeplab.py).
"""
from __future__ import annotations

import os

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
DEEPLAB_DERIVED: tuple[str, ...] = ("deeplabv2", "attention")
"""The networks whose released training is DeepLab's Caffe training (loss on the stride-8 score map
against shrunk labels): DeepLabV2, and Attention (a DeepLab-LargeFOV; the LIP_SSL prototxt)."""
ARCHITECTURE_VERSIONS: dict[str, int] = {"deeplabv2": 2, "attention": 2}
"""The version of a network's definition, for the networks whose definition changed after runs of them
were trained (a run's key holds it, so a changed network is trained again): Attention 2 has no
LargeFOV-v1 ``pool5a`` and starts its attention at equal weights (models/attention.py); both resize
their score maps by matrix products (:func:`lipstudy.models.vgg.resize`: the same values up to float
rounding, not the same bits). A network not listed is at its first definition."""
# Not a baseline: the cpu profiles' synthetic stand-in for ImageNet pretraining (models/pretrain.py).
PRETRAIN_MODEL = "backbone"


def build_model(name: str, num_classes: int = 20, width: float = 1.0,
                pretrained: str | os.PathLike | None = None, dropout: float = 0.5,
                batch_norm: bool | None = None, atrous_scale: float = 1.0,
                score_map_loss: bool = False, head_min: int = 0) -> nn.Module:
    """Build baseline ``name`` (one of :data:`MODEL_NAMES`).

    ``width`` thins every layer (channels = max(8, round(c * width))); ``dropout`` is the rate of
    every dropout layer (0 removes them; SegNet has none) but the attention model's, which keeps the
    prototxt's 0.5 (:data:`lipstudy.models.attention.ATTENTION_DROPOUT`).
    ``pretrained`` is a file holding a torchvision-format ImageNet VGG-16 state dict (VGG-16-BN
    for SegNet), loaded into the backbone (and fc6 / fc7 where the model has them); it needs
    width=1.0. Without it, convs get Kaiming-normal weights (as torchvision's VGG), score layers
    N(0, 0.01^2), transposed convs bilinear kernels. ``batch_norm``: VGG-16-BN backbone (None =
    the paper's: BN for SegNet only); the cpu profiles train every baseline with it, since they
    train from scratch. ``name="backbone"`` builds the pretraining network of models/pretrain.py.
    ``atrous_scale`` multiplies the dilation rates of DeepLabV2's ASPP (6/12/18/24) and of the
    attention model's LargeFOV head (12), rounded, at least 1: the paper's rates are sized for
    321-px crops (a 41-cell score map); on smaller crops the same rates look past the map's edge.
    ``score_map_loss``: DeepLabV2 and Attention give their score maps in train mode (the loss then
    shrinks the labels to them, as DeepLab's Caffe training); FCN-8s and SegNet, whose released
    training scores their input-size output, ignore it.
    ``head_min``: the fewest channels of fc6 / fc7 (FCN-8s' 4096, DeepLabV2's and Attention's 1024,
    thinned by ``width``). Thinning every layer alike leaves DeepLab's heads four times narrower than
    FCN-8s' (64 against 256 channels at width 1/16), and at 64 channels a validation search found them
    the bottleneck: DeepLabV2 18.79 -> 19.35 and Attention 13.96 -> 16.51 mean IoU at 128
    (results/benchmarks/attention_search.json). SegNet has no fc layers.
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
    if score_map_loss and name in DEEPLAB_DERIVED:
        kw["score_map_loss"] = True
    if head_min < 0:
        raise ValueError(f"head_min must be >= 0, got {head_min}")
    if head_min and name != "segnet":
        kw["head_min"] = head_min
    model = MODELS[name](num_classes=num_classes, width=width, dropout=dropout, **kw)
    if pretrained is not None:
        model.load_pretrained(pretrained)
    return model


def backbone_of(model: nn.Module) -> nn.Module:
    """The VGG-16 feature stack of a baseline (SegNet calls it its encoder)."""
    return model.encoder if isinstance(model, SegNet) else model.backbone


def num_parameters(model: nn.Module) -> int:
    """Number of learnable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "MODEL_NAMES", "ARCHITECTURE_VERSIONS", "DEEPLAB_DERIVED", "PRETRAIN_MODEL", "ASPP_RATES", "LARGEFOV_RATE", "build_model", "backbone_of",
           "num_parameters", "BackbonePretrainNet",
           "SegNet", "FCN8s", "DeepLabV2", "AttentionToScale"]
