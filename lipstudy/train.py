"""Training one stage of a parsing network (paper Sections 3 and 5.1).

A plain loop: SGD with momentum, the "poly" learning-rate schedule and 10x learning rate on the
classifier (the released DeepLabV2 recipe), bf16 autocast and channels_last on CUDA, fp32 on CPU,
DistributedDataParallel when started by ``torchrun``. Stage 1 trains a baseline with plain
cross-entropy for 30 epochs; stage 2 fine-tunes it with the structure-sensitive loss for 20 more
(``init`` = the stage-1 checkpoint, ``loss`` = "paper" / "released" / "plus_one" / "off").

Checkpoints hold everything the rest of the run depends on (weights, optimizer, step, RNG states,
the log so far, the config), written atomically, so a run killed at any moment and started again
with the same config ends with exactly the weights of an uninterrupted run.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .atomic import atomic_path, atomic_save, atomic_write_json
from .labels import DATASETS, IGNORE_INDEX
from .progress import RunProgress
from .transforms import TrainTransform

CHECKPOINT = "checkpoint.pt"
LOG_FIELDS = ("epoch", "step", "loss", "lr", "images_per_s", "seconds")
LOSS_MODES = ("off", "paper", "released", "plus_one")
# Fields that change how a run executes but not what it computes: a resume may change them.
EXECUTION_FIELDS = ("device", "workers", "max_steps", "checkpoint_every_steps", "channels_last")
AMP_MODES = ("auto", "bf16", "off")
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """One training stage. Defaults are the paper's settings (Section 5.1) and, where the paper
    is silent, those of the released DeepLabV2 / LIP_SSL Caffe recipe."""

    # The network (Section 3: SegNet, FCN-8s, DeepLabV2, Attention; all from VGG-16).
    model: str = "deeplabv2"
    width: float = 1.0  # channel multiplier; 1.0 = the paper's networks
    num_classes: int = 20
    dropout: float | None = None  # None = the model's own default
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
    # The data.
    dataset: str = "lip"  # "lip" | "ppp" | "atr" (reader kind; sets the flip pairs)
    data_root: str = "data/lip"
    split: str = "train"
    # The loss: "off" = cross-entropy (stage 1); the others: lipstudy.losses modes (stage 2).
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
    # Steps during which the pretrained backbone is frozen (weights and batch-norm statistics) and
    # only the new layers train: linear probing before fine-tuning (LP-FT, Kumar et al. 2022), so
    # the random head's first gradients do not distort the pretrained features. 0 = the paper's
    # (everything trains from the first step). Applies to a stage that starts from a pretrained
    # backbone (``backbone_init`` / ``pretrained``), not to one that starts from a whole trained
    # network (``init``: stage 2, whose head is trained already).
    frozen_backbone_steps: int = 0
    # Keep the backbone's batch-norm statistics as the pretrained network left them (its norms
    # normalise with their running statistics in training too; their scale and shift still
    # train), as detection and segmentation fine-tuning commonly does with small batches. With a
    # shared multi-scale backbone (attention-to-scale) batch statistics differ per input scale in
    # training, while evaluation would use one running average of all scales.
    frozen_bn_stats: bool = False
    # Released DeepLabV2 recipe: base lr 1e-3, "poly" decay with power 0.9, classifier at 10x,
    # random scale 0.6-1.4 and mirroring.
    lr: float = 1e-3
    lr_power: float = 0.9
    classifier_lr_mult: float = 10.0
    scale_min: float = 0.6
    scale_max: float = 1.4
    flip: bool = True
    seed: int = 0
    # Execution (not part of the result).
    device: str = "auto"
    workers: int = 2
    max_steps: int | None = None  # stop early (tests); the schedule still spans all epochs
    checkpoint_every_steps: int | None = None
    # Precision: "auto" = bf16 autocast on CUDA and fp32 on the CPU; "bf16" forces autocast on any
    # device (so the CUDA numerics can be checked on a CPU); "off" = fp32 everywhere. It changes
    # the numbers a run computes, so unlike the memory layout below a resume may not change it.
    amp: str = "auto"
    channels_last: bool | None = None  # None = on CUDA only (where cuDNN prefers NHWC)

    def __post_init__(self):
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.loss not in LOSS_MODES:
            raise ValueError(f"loss must be one of {LOSS_MODES}, got {self.loss!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {tuple(DATASETS)}, got {self.dataset!r}")
        if self.batch_size < 1 or self.epochs < 1 or self.crop < 1:
            raise ValueError("batch_size, epochs and crop must be >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(unknown)}")
        return cls(**d)


def config_changes(old: dict, new: TrainConfig) -> list[str]:
    """Fields (other than execution settings) whose value differs between a saved config and ``new``."""
    cur = new.to_dict()
    # A field an older checkpoint does not know had its default value when that run was trained.
    defaults = TrainConfig().to_dict()
    return [f"{k}: {old.get(k, defaults[k])!r} -> {cur[k]!r}" for k in cur
            if k not in EXECUTION_FIELDS and old.get(k, defaults[k]) != cur[k]]


# ----------------------------------------------------------------------------- environment

def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> this process's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


@dataclass(frozen=True)
class PrecisionPlan:
    """How the forward pass runs: autocast dtype (None = fp32) and memory layout."""

    autocast_dtype: torch.dtype | None
    channels_last: bool

    @property
    def autocast(self) -> bool:
        return self.autocast_dtype is not None

    def autocast_context(self, device: torch.device) -> torch.autocast:
        """The ``torch.autocast`` block of this plan on ``device`` (a no-op block for fp32)."""
        return torch.autocast(device.type, dtype=self.autocast_dtype or torch.bfloat16, enabled=self.autocast)


def precision_plan(device: torch.device, amp: str = "auto", channels_last: bool | None = None) -> PrecisionPlan:
    """The precision and layout a model runs with on ``device``. bf16 rather than fp16 because
    it keeps fp32's exponent range: no loss scaling, and the 10x classifier learning rate cannot
    overflow it. One function so that training, evaluation and the benchmarks agree."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    use_bf16 = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    nhwc = device.type == "cuda" if channels_last is None else bool(channels_last)
    return PrecisionPlan(torch.bfloat16 if use_bf16 else None, nhwc)


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the variables ``torchrun`` sets; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


# ----------------------------------------------------------------------------- data

class AugmentedSet(Dataset):
    """A dataset indexed by (epoch, index): the item ``index`` augmented with the randomness of
    (seed, epoch, index). Indexing by the pair keeps augmentation independent of workers."""

    def __init__(self, base, transform: TrainTransform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        epoch, index = key
        return self.transform(self.base[index], epoch, index)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order in which an epoch visits the n images: fixed by (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class ShardedBatches:
    """Batches of one epoch for one process: global batch ``step`` is
    ``perm[step*B:(step+1)*B]`` and process ``rank`` takes its ``rank``-th slice of B/world images,
    so 2 processes x batch 5 see exactly the images of 1 process x batch 10. The last incomplete
    batch is dropped (as Caffe's epoch arithmetic). ``start`` skips steps already done (resume)."""

    def __init__(self, n: int, batch: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                 start: int = 0):
        if batch % world:
            raise ValueError(f"batch size {batch} is not divisible by the {world} processes")
        self.perm = epoch_permutation(n, seed, epoch).tolist()
        self.batch, self.epoch, self.rank, self.world, self.start = batch, epoch, rank, world, start
        self.steps = n // batch

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        local = self.batch // self.world
        for step in range(self.start, self.steps):
            lo = step * self.batch + self.rank * local
            yield [(self.epoch, i) for i in self.perm[lo:lo + local]]


def collate(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([it["image"] for it in items]), torch.stack([it["label"] for it in items])


# ----------------------------------------------------------------------------- model, optimiser

def build(cfg: TrainConfig) -> torch.nn.Module:
    """The network of ``cfg`` (fresh, or with the ``pretrained`` ImageNet backbone)."""
    from .models import build_model

    kw = {} if cfg.dropout is None else {"dropout": cfg.dropout}
    return build_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width,
                       pretrained=cfg.pretrained, batch_norm=cfg.batch_norm, atrous_scale=cfg.atrous_scale, **kw)


# Modules that are new on top of the ImageNet backbone and get the classifier's learning rate:
# DeepLabV2's fc8 (the released recipe's lr_mult 10), FCN's score layers, SegNet's classifier,
# attention-to-scale's attention branch.
CLASSIFIER_MODULES = ("classifier", "score", "fc8", "attention")


def classifier_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters that get the classifier's 10x learning rate: those of modules
    whose name starts with one of CLASSIFIER_MODULES."""
    return {n for n, _ in model.named_parameters()
            if any(part.startswith(CLASSIFIER_MODULES) for part in n.split(".")[:-1])}


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    head = classifier_parameter_names(model)
    base = [p for n, p in model.named_parameters() if n not in head]
    cls = [p for n, p in model.named_parameters() if n in head]
    groups = [{"params": base, "lr_mult": 1.0}]
    if cls:
        groups.append({"params": cls, "lr_mult": cfg.classifier_lr_mult})
    for g in groups:
        g["lr"] = cfg.lr * g["lr_mult"]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def poly_lr(base: float, step: int, total: int, power: float, warmup: int = 0) -> float:
    """DeepLab's "poly" policy: ``base * (1 - step/total)^power``, after ``warmup`` steps of
    linear warm-up from ``base / warmup``."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * (1.0 - min(step, total) / total) ** power


def aux_loss(aux: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Plain cross-entropy of the extra score maps (Attention's per-scale supervision), each the
    mean over images of the image's mean over its valid pixels."""
    total = target.new_zeros((), dtype=torch.float32)
    valid = (target != IGNORE_INDEX).sum(dim=(1, 2)).clamp(min=1)
    for a in aux:
        ce = F.cross_entropy(a.float(), target, ignore_index=IGNORE_INDEX, reduction="none")
        total = total + (ce.sum(dim=(1, 2)) / valid).mean()
    return total


# PASCAL-Person-Part has no left/right and no clothes, so the nine LIP joints do not exist there.
# SSL on PPP uses six joints, the centres of its six part regions, by placing each PPP class on a
# LIP id that forms a joint of its own: head -> face (head joint), torso -> upper-clothes
# (upper-body joint), upper-arms -> left-arm, lower-arms -> right-arm, upper-legs -> left-leg,
# lower-legs -> right-leg. (The lower-body and shoe joints are then always missing.)
PPP_JOINT_VIEW = (0, 13, 5, 14, 15, 16, 17)


def ppp_joint_view(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PPP logits ``[B,7,H,W]`` and target as 20-class LIP ones (see PPP_JOINT_VIEW) so that the
    LIP structure-sensitive loss sees the six PPP part centres as joints. The other 13 channels get
    a logit of -1e4 (probability exactly 0 in float32), so the cross-entropy and its gradient are
    those of the 7-class problem."""
    b, _, h, w = logits.shape
    big = logits.new_full((b, 20, h, w), -1e4)
    big = big.index_copy(1, torch.tensor(PPP_JOINT_VIEW, device=logits.device), logits)
    lut = torch.full((256,), IGNORE_INDEX, dtype=torch.long, device=target.device)
    lut[:len(PPP_JOINT_VIEW)] = torch.tensor(PPP_JOINT_VIEW, device=target.device)
    return big, lut[target.long()]


def compute_loss(out, target: torch.Tensor, mode: str, dataset: str = "lip") -> torch.Tensor:
    """Training loss: the structure-sensitive loss (``mode``, lipstudy.losses) of the main output
    plus plain cross-entropy of any auxiliary outputs. On PPP the joints are its part centres
    (:func:`ppp_joint_view`)."""
    from .losses import structure_sensitive_loss

    if isinstance(out, torch.Tensor):
        out = {"out": out, "aux": []}
    logits, main_target = out["out"].float(), target
    if dataset == "ppp" and mode != "off":
        logits, main_target = ppp_joint_view(logits, target)
    loss = structure_sensitive_loss(logits, main_target, mode=mode, ignore_index=IGNORE_INDEX)
    return loss + aux_loss(out.get("aux", []), target)


# ----------------------------------------------------------------------------- checkpoints

def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not a lipstudy checkpoint (no 'model' / 'config')")
    return ckpt


def model_from_checkpoint(path, device="cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """Rebuild the network a checkpoint was trained as, with its weights, in eval mode."""
    ckpt = load_checkpoint(path)
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build(dataclasses.replace(cfg, pretrained=None, backbone_init=None))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), cfg


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_log(out: Path, log: list[dict]) -> None:
    """The per-epoch log as ``train_log.csv`` and ``train_log.json`` (rewritten whole, atomically)."""
    with atomic_path(out / "train_log.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(log)
    atomic_write_json(out / "train_log.json", log)


# ----------------------------------------------------------------------------- the loop

def train(cfg: TrainConfig, out, progress: bool = True,
          on_step: Callable[[int], None] | None = None) -> Path:
    """Train one stage into directory ``out`` and return the path of its final checkpoint.

    Resumes from ``out/checkpoint.pt`` when present (refusing if the config changed). Under
    ``torchrun`` (env RANK / WORLD_SIZE) each process trains its shard of every global batch with
    DistributedDataParallel; rank 0 writes the files. ``on_step(step)`` is called after each
    optimiser step (tests use it to interrupt a run at a known point).
    """
    from .data.datasets import open_dataset

    out = Path(out)
    rank, world, local_rank = dist_env()
    device = resolve_device(cfg.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    base = open_dataset(cfg.data_root, cfg.split, kind=cfg.dataset)
    if len(base) < cfg.batch_size:
        raise ValueError(f"{cfg.data_root} ({cfg.split}): {len(base)} images, fewer than one batch "
                         f"of {cfg.batch_size}")
    transform = TrainTransform(crop=cfg.crop, scale_range=(cfg.scale_min, cfg.scale_max), flip=cfg.flip,
                               flip_pairs=tuple(DATASETS[cfg.dataset]["flip_pairs"]), seed=cfg.seed)
    data = AugmentedSet(base, transform)
    steps_per_epoch = len(base) // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    model = build(cfg)
    if world > 1:
        # Same initial weights everywhere (seeded above), then distinct dropout masks per process.
        torch.manual_seed(cfg.seed + 7919 * rank)
    if cfg.init:
        model.load_state_dict(load_checkpoint(cfg.init)["model"])
    elif cfg.backbone_init:
        from .models import load_backbone
        load_backbone(model, cfg.backbone_init)
    model.to(device)
    plan = precision_plan(device, cfg.amp, cfg.channels_last)
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)

    step, log, stats = 0, [], {"loss_sum": 0.0, "steps": 0, "images": 0, "seconds": 0.0}
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        changes = config_changes(ckpt["config"], cfg)
        if changes:
            raise ValueError(f"{ckpt_path}: cannot resume, the config changed: " + "; ".join(changes))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, log, stats = ckpt["step"], ckpt["log"], ckpt["epoch_stats"]
        _set_rng_state(ckpt["rng"])

    net = model
    freeze_steps = cfg.frozen_backbone_steps if (cfg.backbone_init or cfg.pretrained) and not cfg.init else 0
    if cfg.frozen_bn_stats and not (cfg.backbone_init or cfg.pretrained or cfg.init):
        raise ValueError("frozen_bn_stats keeps pretrained batch-norm statistics: it needs a pretrained start "
                         "(backbone_init, pretrained or init), not a random one")
    if freeze_steps and world > 1:
        raise ValueError("frozen_backbone_steps needs a single training process (DDP needs every "
                         "parameter to take part in every step)")
    from .models import backbone_of
    backbone = backbone_of(model)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def state(finished: bool) -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "epoch": step // steps_per_epoch, "step_in_epoch": step % steps_per_epoch,
                "log": log, "epoch_stats": stats, "rng": _rng_state(), "config": cfg.to_dict(),
                "finished": finished, "world_size": world}

    def save(finished: bool = False) -> None:
        if rank == 0:
            atomic_save(ckpt_path, lambda tmp: torch.save(state(finished), tmp))
        if world > 1:
            dist.barrier()

    last = total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps)
    # Under the book runner, progress goes through lipstudy.progress (lines on the runner's
    # terminal, one summary line in the notebook) instead of a tqdm bar in the notebook.
    report = RunProgress(cfg, out, step, last, steps_per_epoch) if rank == 0 else None
    bar = None
    if progress and rank == 0 and not report.replaces_bar:
        from tqdm.auto import tqdm
        bar = tqdm(total=last, initial=min(step, last), desc=f"train {cfg.model}", unit="step",
                   dynamic_ncols=True)
    net.train()

    def set_backbone_mode(at_step: int) -> None:
        """Frozen backbone (weights and norms) before ``freeze_steps``; norms in eval mode with
        ``frozen_bn_stats``; else everything trains."""
        frozen = at_step < freeze_steps
        backbone.requires_grad_(not frozen)
        backbone.train(not frozen)
        if cfg.frozen_bn_stats:
            for m in backbone.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    start_step = step
    while step < last:
        epoch, start = divmod(step, steps_per_epoch)
        batches = ShardedBatches(len(base), cfg.batch_size, cfg.seed, epoch, rank, world, start)
        # A private generator for the loader keeps the global torch RNG (dropout) untouched.
        loader = DataLoader(data, batch_sampler=batches, num_workers=cfg.workers, collate_fn=collate,
                            pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed))
        t0 = time.perf_counter()
        epoch_done = False
        for images, labels in loader:
            lr = poly_lr(cfg.lr, step, total_steps, cfg.lr_power, cfg.warmup_steps)
            for g in optimizer.param_groups:
                g["lr"] = lr * g["lr_mult"]
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if plan.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if (freeze_steps or cfg.frozen_bn_stats) and step in (start_step, freeze_steps):  # mode changes only here
                set_backbone_mode(step)
            with plan.autocast_context(device):
                outputs = net(images)
            loss = compute_loss(outputs, labels, cfg.loss, cfg.dataset)
            if not torch.isfinite(loss):
                # Stop rather than write NaN weights into a checkpoint that would be resumed.
                raise FloatingPointError(f"loss is {loss.item()} at step {step + 1} (lr {lr:.3g}): training "
                                         f"diverged; lower the learning rate (lr={cfg.lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_value = loss.detach()
            if world > 1:
                dist.all_reduce(loss_value)
                loss_value /= world
            loss_float = float(loss_value)  # one device sync per step, shared by the log, bar and report
            stats["loss_sum"] += loss_float
            stats["steps"] += 1
            stats["images"] += cfg.batch_size
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_float:.4f}", lr=f"{lr:.2e}")
            if report is not None:
                report.step(step, loss_float)
            epoch_done = step % steps_per_epoch == 0
            if epoch_done:
                stats["seconds"] += time.perf_counter() - t0
                log.append({"epoch": step // steps_per_epoch, "step": step,
                            "loss": stats["loss_sum"] / max(stats["steps"], 1), "lr": lr,
                            "images_per_s": stats["images"] / max(stats["seconds"], 1e-9),
                            "seconds": stats["seconds"]})
                stats = {"loss_sum": 0.0, "steps": 0, "images": 0, "seconds": 0.0}
                save()
                if rank == 0:
                    write_log(out, log)
            elif cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0:
                stats["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                save()
            if on_step is not None:
                on_step(step)
            if step >= last:
                break
        if step >= last and not epoch_done:
            stats["seconds"] += time.perf_counter() - t0
    if bar is not None:
        bar.close()
    if report is not None:
        report.finish(step)
    save(finished=True)
    if rank == 0:
        write_log(out, log)
    return ckpt_path


# ----------------------------------------------------------------------------- command line

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


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lipstudy train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="JSON file of TrainConfig fields (command-line options override it)")
    p.add_argument("--out", required=True, help="run directory (resumed if it holds a checkpoint)")
    p.add_argument("--no-progress", action="store_true")
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
    args = p.parse_args(argv)
    fields: dict = {}
    if args.config:
        try:
            fields = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            p.error(f"{args.config}: cannot read the config ({e})")
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name)
        if v is not None:
            fields[f.name] = v
    try:
        cfg = TrainConfig.from_dict(fields)
        path = train(cfg, args.out, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"lipstudy train: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0
