"""One training stage's settings: :class:`TrainConfig` (the paper's Section 5.1 defaults) and the
network it describes.

A config is what a run's key hashes (through its profile), what a checkpoint carries (so a network
can be rebuilt from the checkpoint alone) and what ``lipstudy train --config`` reads. Fields in
:data:`EXECUTION_FIELDS` change how a run executes, not what it computes, so a resumed run may
change them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .labels import DATASETS
from .losses import MODES
from .paths import portable, resolve

# Fields that change how a run executes but not what it computes: a resume may change them.
EXECUTION_FIELDS = ("device", "workers", "max_steps", "checkpoint_every_steps", "channels_last", "compile", "cache_images")
AMP_MODES = ("auto", "bf16", "off")
PATH_FIELDS = ("data_root", "init", "backbone_init", "pretrained")
"""Fields that name files: a bundle writes them portable (:func:`lipstudy.paths.portable`), the
trainer resolves them (:meth:`TrainConfig.resolved`)."""
RETIRED_FIELDS = {"frozen_backbone_steps": 0, "frozen_bn_stats": False}
"""Fields that configs of earlier versions hold and this one no longer has, with the value that
meant "off": a saved config (a checkpoint's, a bundle's) holding that value is read without them,
since it trained what this version trains; another value is refused (this version cannot)."""
OPTIMIZERS = ("sgd", "adamw")
DATA_PIPELINES = ("loader", "resident")


@dataclass(frozen=True)
class TrainConfig:
    """One training stage. Defaults are the paper's settings (Section 5.1) and, where the paper
    is silent, those of the released DeepLabV2 / LIP_SSL Caffe recipe."""

    # The network (Section 3: SegNet, FCN-8s, DeepLabV2, Attention; all from VGG-16).
    model: str = "deeplabv2"
    width: float = 1.0  # channel multiplier; 1.0 = the paper's networks
    num_classes: int = 20
    dropout: float | None = None  # None = the model's own default
    # The fewest channels of fc6 / fc7 (FCN-8s, DeepLabV2's ASPP branches, Attention's LargeFOV);
    # 0 = width x the paper's (1024 or 4096). The cpu profiles set 128: at width 1/16 DeepLab's
    # 1024-channel fc6 / fc7 would be 64 wide while FCN-8s' 4096 are 256 (models/__init__.py).
    head_min: int = 0
    pretrained: str | None = None  # torchvision-format ImageNet VGG-16 file
    init: str | None = None  # checkpoint whose weights start this stage (stage 2)
    # Deviations the from-scratch cpu profiles make (the book lists them): a VGG-16-BN backbone for
    # every baseline (None = the paper's: BN in SegNet only), started from the synthetic
    # pretraining run's checkpoint ``backbone_init`` (models/pretrain.py) in place of ImageNet.
    batch_norm: bool | None = None
    backbone_init: str | None = None
    # Multiplier of the atrous rates of DeepLabV2's ASPP and the attention model's LargeFOV head
    # (1 = the paper's 6/12/18/24 and 12, sized for 321-px crops).
    atrous_scale: float = 1.0
    # Where the loss is computed, as the released Caffe training computes it (the full profile sets
    # both; False = how the cpu profiles' runs were trained, kept so their configs mean what they
    # meant). ``score_map_loss``: DeepLabV2 and Attention are trained on their stride-8 score maps
    # against the labels shrunk to them (DeepLab's Interp shrink_factor 8; models/deeplab.py), and
    # the joint structure loss is computed on that grid. ``aux_structure_weight``: in the
    # structure-sensitive modes, Attention's per-scale losses are weighted by the fused output's
    # L_joint too, as the LIP_SSL prototxt weights every softmax loss (losses.structure_weighted_aux_loss).
    score_map_loss: bool = False
    aux_structure_weight: bool = False
    # The data.
    dataset: str = "lip"  # "lip" | "ppp" | "atr" (reader kind; sets the flip pairs)
    data_root: str = "data/lip"  # a relative "data/..." is in the data folder (lipstudy.paths.resolve)
    split: str = "train"
    # The loss (lipstudy.losses.MODES): "off" = cross-entropy (stage 1); the others Eq. 2's modes (stage 2).
    loss: str = "off"
    # Optimisation. Section 5.1: "30 epochs" (stage 1; stage 2 "roughly 20 epochs"),
    # "batch size of 10 images, momentum of 0.9, and weight decay of 0.0005",
    # "The scale of the input images is fixed as 321x321".
    epochs: int = 30
    batch_size: int = 10
    crop: int = 321
    momentum: float = 0.9
    weight_decay: float = 0.0005
    # "sgd" (the paper's) or "adamw" (the cpu profiles': from-scratch thin networks on a budget
    # of minutes converge faster with it; ``momentum`` is then Adam's beta1). ``warmup_steps``:
    # linear learning-rate warm-up before the poly decay (0 = none, as the paper).
    optimizer: str = "sgd"
    warmup_steps: int = 0
    # Released DeepLabV2 recipe: base lr 1e-3, "poly" decay with power 0.9, classifier at 10x,
    # random scale 0.6-1.4 and mirroring.
    lr: float = 1e-3
    lr_power: float = 0.9
    classifier_lr_mult: float = 10.0
    scale_min: float = 0.6
    scale_max: float = 1.4
    flip: bool = True
    seed: int = 0
    # Where the augmentation runs: "loader" (decoded and augmented per image in DataLoader workers,
    # the CPU profiles') or "resident" (the split decoded once onto the training device and
    # augmented there in batched tensor ops, lipstudy.resident: what keeps a GPU fed). The same
    # random choices per (seed, epoch, index); the image resampling differs (no antialiasing when
    # scaling down), so it is part of what a run computes.
    data_pipeline: str = "loader"
    # Execution (not part of the result).
    device: str = "auto"
    workers: int = 2
    max_steps: int | None = None  # stop early (tests); the schedule still spans all epochs
    checkpoint_every_steps: int | None = None
    # Keep the split's decoded images in memory (uint8, in the process that loads them) after the
    # first epoch, instead of decoding every file every epoch: the same pixels, so the same run.
    # For splits that fit in memory (the cpu profiles' are ~100 MB); off for LIP at full scale.
    cache_images: bool = False
    # Precision: "auto" = bf16 autocast on CUDA and fp32 on the CPU; "bf16" forces autocast on any
    # device (so the CUDA numerics can be checked on a CPU); "off" = fp32 everywhere. It changes
    # the numbers a run computes, so unlike the memory layout below a resume may not change it.
    amp: str = "auto"
    channels_last: bool | None = None  # None = on CUDA only (where cuDNN prefers NHWC)
    compile: bool = False  # torch.compile the network (pays on a GPU after its compile time)

    def __post_init__(self):
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.data_pipeline not in DATA_PIPELINES:
            raise ValueError(f"data_pipeline must be one of {DATA_PIPELINES}, got {self.data_pipeline!r}")
        if self.loss not in MODES:
            raise ValueError(f"loss must be one of {MODES}, got {self.loss!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {tuple(DATASETS)}, got {self.dataset!r}")
        if self.batch_size < 1 or self.epochs < 1 or self.crop < 1:
            raise ValueError("batch_size, epochs and crop must be >= 1")
        # The score map of a crop of 8k + 1 px has k + 1 cells, as many as the labels shrunk by 8;
        # Attention's half scale needs 16k + 1 for its 16-fold shrunk labels. Said here, not at step 1.
        step = {"deeplabv2": 8, "attention": 16}.get(self.model)
        if self.score_map_loss and step and (self.crop - 1) % step:
            raise ValueError(f"score_map_loss: {self.model} needs a crop of {step}k + 1 px (as DeepLab's 321), "
                             f"so that its score map and the shrunk labels have the same size; got crop={self.crop}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resolved(self) -> "TrainConfig":
        """This config with the portable paths of a bundle's config (``data/...``, ``results/...``)
        resolved on this machine (:func:`lipstudy.paths.resolve`)."""
        return dataclasses.replace(self, **{f: resolve(v) for f in PATH_FIELDS if (v := getattr(self, f))})

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        used = sorted(k for k, off in RETIRED_FIELDS.items() if k in d and d[k] != off)
        if used:
            raise ValueError(f"this config sets {', '.join(f'{k}={d[k]!r}' for k in used)}, an option earlier versions "
                             f"had and this one no longer has")
        d = {k: v for k, v in d.items() if k not in RETIRED_FIELDS}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(unknown)}")
        return cls(**d)


def portable_config(d: dict) -> dict:
    """A TrainConfig's dict with the files it names written portable (:func:`lipstudy.paths.portable`)."""
    return {k: portable(v) if k in PATH_FIELDS and v else v for k, v in d.items()}


def config_changes(old: dict, new: TrainConfig) -> list[str]:
    """Fields (other than execution settings) whose value differs between a saved config and ``new``."""
    cur = new.to_dict()
    # A field an older checkpoint does not know had its default value when that run was trained.
    defaults = TrainConfig().to_dict()
    return [f"{k}: {old.get(k, defaults[k])!r} -> {cur[k]!r}" for k in cur
            if k not in EXECUTION_FIELDS and old.get(k, defaults[k]) != cur[k]]


def build_network(cfg: TrainConfig) -> torch.nn.Module:
    """The network of ``cfg`` (fresh, or with the ``pretrained`` ImageNet backbone)."""
    from .models import build_model

    kw = {} if cfg.dropout is None else {"dropout": cfg.dropout}
    return build_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width,
                       pretrained=cfg.pretrained, batch_norm=cfg.batch_norm, atrous_scale=cfg.atrous_scale,
                       score_map_loss=cfg.score_map_loss, head_min=cfg.head_min, **kw)


BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True,
              "false": False, "0": False, "no": False, "off": False}


def parse_bool(text: str) -> bool:
    """A command-line boolean: true/false, 1/0, yes/no, on/off (any case). Anything else is an
    error, so that a typo such as ``--flip ture`` cannot silently turn an option off."""
    try:
        return BOOL_WORDS[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"expected true or false (or 1/0, yes/no, on/off), got {text!r}") from None


def command_line_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with ``--config FILE`` and one ``--field-name`` option per TrainConfig field."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", help="JSON file of TrainConfig fields (command-line options override it)")
    for f in dataclasses.fields(TrainConfig):
        name = "--" + f.name.replace("_", "-")
        if f.type in ("bool", "bool | None"):
            p.add_argument(name, type=parse_bool, default=None, metavar="true|false")
        elif f.type in ("int", "int | None"):
            p.add_argument(name, type=int, default=None)
        elif f.type in ("float", "float | None"):
            p.add_argument(name, type=float, default=None)
        else:
            p.add_argument(name, default=None)
    return p


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    """The TrainConfig of :func:`command_line_parser`'s options: the ``--config`` file's fields,
    then each option given on the command line (ValueError for a field that does not validate)."""
    fields: dict = {}
    if args.config:
        try:
            fields = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            parser.error(f"{args.config}: cannot read the config ({e})")
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name)
        if v is not None:
            fields[f.name] = v
    return TrainConfig.from_dict(fields)
