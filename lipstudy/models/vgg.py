"""The VGG-16 feature stack shared by the four baselines (paper Section 3), and the reading of
ImageNet weights saved in torchvision's format.

All four baselines of the paper start from VGG-16 (Simonyan & Zisserman 2015): FCN-8s and
DeepLabV2 / Attention from plain VGG-16, SegNet from VGG-16 with batch normalisation. The layers
are written out here (torchvision is not a dependency) as five stages of 3x3 conv(-bn)-relu, each
followed by a max-pool:

    stage:     1        2         3              4              5
    convs:   64,64   128,128   256,256,256    512,512,512    512,512,512

``width`` thins every layer (channels = max(8, round(c * width))) so the CPU profiles can train
the same architectures in minutes. ``atrous=True`` applies DeepLab's changes (Chen et al. 2016,
DeepLab-v2 VGG-16): 3x3 max-pools with padding 1 (Caffe's ceil rounding), pool4 and pool5 with
stride 1, conv5 dilated by 2, so the output stride is 8 instead of 32.

Pretrained weights: a file written by ``torch.save(torchvision.models.vgg16(...).state_dict())``
(or ``vgg16_bn``) holds ``features.<i>.weight`` / ``.bias`` (plus BN statistics), with i counting
torchvision's flat ``nn.Sequential`` (conv, [bn,] relu, ..., pool), and the fully connected layers
``classifier.0`` (fc6, 4096 x 25088) and ``classifier.3`` (fc7, 4096 x 4096).
:func:`read_torchvision_vgg` checks such a file and :func:`torchvision_feature_keys` maps its
feature keys onto this module's parameter names.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
FC_CHANNELS = 4096  # VGG-16's fc6 / fc7 width
BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def scaled(channels: int, width: float) -> int:
    """Channels of a layer thinned by ``width``: ``max(8, round(channels * width))``."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(8, round(channels * width))


def dropout_layer(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or an identity when ``p == 0`` so a model can be made deterministic."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return nn.Dropout(p) if p > 0 else nn.Identity()


def conv_block(c_in: int, c_out: int, batch_norm: bool, dilation: int = 1) -> list[nn.Module]:
    """3x3 conv (padding keeps the size) [+ BN] + ReLU, in torchvision's order."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return layers


class VGG16(nn.Module):
    """VGG-16 convolutional layers (conv1_1 ... pool5), optionally thinned, with BN, or atrous.

    ``forward`` returns the five pooled stage outputs [pool1, ..., pool5] (FCN-8s uses pool3,
    pool4 and pool5; DeepLab uses pool5). SegNet walks ``stages`` and ``pools`` itself because it
    needs the pooling indices (``return_indices=True``).
    """

    def __init__(self, width: float = 1.0, batch_norm: bool = False, atrous: bool = False,
                 return_indices: bool = False):
        super().__init__()
        if atrous and return_indices:
            raise ValueError("atrous VGG-16 has overlapping pools; pooling indices are not supported")
        self.batch_norm = batch_norm
        self.stage_channels = tuple(tuple(scaled(c, width) for c in s) for s in VGG16_STAGES)
        stages, pools = [], []
        c_in = 3
        for i, channels in enumerate(self.stage_channels):
            dilation = 2 if atrous and i == 4 else 1
            layers: list[nn.Module] = []
            for c in channels:
                layers += conv_block(c_in, c, batch_norm, dilation)
                c_in = c
            stages.append(nn.Sequential(*layers))
            if atrous:
                # DeepLab (Caffe): 3x3 pools with pad 1; pool4/pool5 keep the resolution.
                pools.append(nn.MaxPool2d(3, stride=2 if i < 3 else 1, padding=1, ceil_mode=True))
            else:
                pools.append(nn.MaxPool2d(2, stride=2, return_indices=return_indices))
        self.stages = nn.ModuleList(stages)
        self.pools = nn.ModuleList(pools)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage, pool in zip(self.stages, self.pools):
            x = pool(stage(x))
            if isinstance(x, tuple):  # return_indices=True: (values, indices)
                x = x[0]
            outputs.append(x)
        return outputs


def init_weights(module: nn.Module) -> None:
    """The random initialisation used when no pretrained file is given, as torchvision's VGG:
    Kaiming-normal (fan_out, ReLU) conv weights, zero biases, BN weight 1 / bias 0. Transposed
    convolutions are left to their owners (bilinear, see :func:`bilinear_kernel`)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_classifier(conv: nn.Conv2d) -> None:
    """Score layers (fc8 / score_*) start from N(0, 0.01^2) with zero bias, as DeepLab's fc8."""
    nn.init.normal_(conv.weight, std=0.01)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights [channels, channels, k, k] making a stride-k/2 transposed conv a bilinear upsampler
    (FCN's ``upsample_filt`` surgery): channel c maps to itself only. For k = 4 the 1-D profile is
    [0.25, 0.75, 0.75, 0.25]."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = (filt1d[:, None] * filt1d[None, :]).float()
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = filt
    return weight


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad [B,C,H,W] at the bottom/right to the next multiple of ``multiple``.
    After ImageNet normalisation zero is the mean colour, so padding reads as a grey border."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of a [B,C,H,W] map (no-op when the size already matches): ``F.interpolate``'s
    bilinear resampling with ``align_corners=False`` and no antialiasing, computed as two matrix
    products (rows, then columns; :func:`bilinear_matrix`). The same values up to float rounding; its
    backward pass is two matrix products too, where ``F.interpolate``'s scatters on a CPU: upsampling
    the score maps of a cpu-profile batch to the crop took 3.6x less time forward and backward."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    rows = bilinear_matrix(x.shape[-2], size[0], x.dtype, x.device)
    cols = bilinear_matrix(x.shape[-1], size[1], x.dtype, x.device)
    return torch.matmul(rows, torch.matmul(x, cols.t()))


def bilinear_matrix(n_in: int, n_out: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The ``[n_out, n_in]`` matrix of 1-D bilinear resampling as ``F.interpolate`` computes it with
    ``align_corners=False``: output i reads input ``(i + 0.5) * n_in / n_out - 0.5`` (clamped at 0),
    shared between its two neighbours (the last one repeated at the edge)."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, lo), 1 - frac, accumulate=True)
    m.index_put_((rows, hi), frac, accumulate=True)
    return m.to(dtype=dtype, device=device)


# ----------------------------------------------------------------------------------------------
# torchvision-format weights


def _torchvision_convs(batch_norm: bool):
    """Walk VGG-16's convs: (torchvision index, stage, index inside our stage, c_in, c_out).
    torchvision numbers one flat Sequential (conv, [bn,] relu per conv, a pool per stage); ours
    restarts the numbering inside each stage and keeps the pools apart."""
    step = 3 if batch_norm else 2
    tv, c_in = 0, 3
    for s, stage in enumerate(VGG16_STAGES):
        for j, c_out in enumerate(stage):
            yield tv, s, j * step, c_in, c_out
            tv, c_in = tv + step, c_out
        tv += 1  # the stage's max-pool


def torchvision_feature_keys(batch_norm: bool) -> dict[str, str]:
    """Map torchvision ``features.<i>.<field>`` keys to :class:`VGG16` keys ``stages.<s>.<j>.<field>``."""
    mapping: dict[str, str] = {}
    for tv, s, j, _, _ in _torchvision_convs(batch_norm):
        mapping.update({f"features.{tv}.{f}": f"stages.{s}.{j}.{f}" for f in ("weight", "bias")})
        if batch_norm:
            mapping.update({f"features.{tv + 1}.{f}": f"stages.{s}.{j + 1}.{f}" for f in BN_FIELDS})
    return mapping


def read_torchvision_vgg(path: str | os.PathLike, batch_norm: bool, need_fc: bool) -> dict[str, torch.Tensor]:
    """Load a torchvision VGG-16 (``batch_norm=False``) or VGG-16-BN state dict from ``path`` and
    check that it holds every key the caller needs with VGG-16's shapes; ``need_fc`` adds
    fc6/fc7 (``classifier.0`` / ``classifier.3``). Raises FileNotFoundError / ValueError naming
    the file and the problem."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights {path!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt / foreign file: say which one
        raise ValueError(f"pretrained weights {path!r}: not a readable torch state dict ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"pretrained weights {path!r}: expected a state dict of tensors "
                         "(torch.save(torchvision.models.vgg16(...).state_dict()))")
    expected = _expected_shapes(batch_norm, need_fc)
    missing = [k for k in expected if k not in state]
    if missing:
        kind = "VGG-16-BN (vgg16_bn)" if batch_norm else "VGG-16 (vgg16)"
        other = ("features.1.running_mean" in state) != batch_norm
        hint = " (it looks like the other VGG variant)" if other else ""
        raise ValueError(f"pretrained weights {path!r}: not a torchvision {kind} state dict{hint}; "
                         f"missing {len(missing)} keys, e.g. {missing[:3]}")
    wrong = [f"{k}: {tuple(state[k].shape)} != {shape}" for k, shape in expected.items()
             if tuple(state[k].shape) != shape]
    if wrong:
        raise ValueError(f"pretrained weights {path!r}: shapes differ from VGG-16: {wrong[:3]}")
    return {k: state[k] for k in expected}


def _expected_shapes(batch_norm: bool, need_fc: bool) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for tv, _, _, c_in, c in _torchvision_convs(batch_norm):
        shapes[f"features.{tv}.weight"], shapes[f"features.{tv}.bias"] = (c, c_in, 3, 3), (c,)
        if batch_norm:
            shapes.update({f"features.{tv + 1}.{f}": (c,) for f in BN_FIELDS[:4]})
            shapes[f"features.{tv + 1}.num_batches_tracked"] = ()
    if need_fc:
        shapes["classifier.0.weight"] = (FC_CHANNELS, 512 * 7 * 7)
        shapes["classifier.0.bias"] = (FC_CHANNELS,)
        shapes["classifier.3.weight"] = (FC_CHANNELS, FC_CHANNELS)
        shapes["classifier.3.bias"] = (FC_CHANNELS,)
    return shapes


def backbone_weights(state: dict[str, torch.Tensor], batch_norm: bool, prefix: str) -> dict[str, torch.Tensor]:
    """The file's feature tensors renamed to ``<prefix><our key>`` (e.g. ``backbone.stages.0.0.weight``)."""
    return {prefix + ours: state[tv] for tv, ours in torchvision_feature_keys(batch_norm).items()}


def fc_as_conv(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """fc6 / fc7 reshaped to convolutions: fc6 [4096,512,7,7], fc7 [4096,4096,1,1] (FCN Section 3.1)."""
    fc6_w = state["classifier.0.weight"].reshape(FC_CHANNELS, 512, 7, 7)
    fc7_w = state["classifier.3.weight"].reshape(FC_CHANNELS, FC_CHANNELS, 1, 1)
    return fc6_w, state["classifier.0.bias"], fc7_w, state["classifier.3.bias"]


def decimated_fc(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """DeepLab's initialisation of its thinner fc6 / fc7 from VGG-16's (DeepLab Section 3.1 /
    DeepLab-LargeFOV): keep every 4th filter (4096 -> 1024) and decimate the 7x7 kernel to 3x3
    (rows/cols 0, 3, 6); fc7 keeps every 4th row and column. Returns fc6 [1024,512,3,3] and
    fc7 [1024,1024,1,1] weights with their biases."""
    fc6_w, fc6_b, fc7_w, fc7_b = fc_as_conv(state)
    keep = slice(None, None, 4)
    return (fc6_w[keep, :, ::3, ::3], fc6_b[keep],
            fc7_w[keep][:, keep], fc7_b[keep])


def load_mapped(model: nn.Module, weights: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Copy ``weights`` (our key -> tensor) into ``model`` bit-exactly, after checking every key
    exists and every shape fits; otherwise raise ValueError naming the file (e.g. width != 1)."""
    own = model.state_dict()
    unknown = [k for k in weights if k not in own]
    if unknown:
        raise ValueError(f"pretrained weights {os.fspath(path)!r}: model has no parameters {unknown[:3]}")
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in weights.items()
             if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ValueError(f"pretrained weights {os.fspath(path)!r} do not fit this model "
                         f"(ImageNet VGG-16 weights need width=1.0): {wrong[:3]}")
    with torch.no_grad():
        for k, v in weights.items():
            own[k].copy_(v)

