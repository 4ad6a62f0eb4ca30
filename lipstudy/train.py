"""Training one stage of a parsing network (paper Sections 3 and 5.1).

A plain loop in the manner of torchvision's ``references/segmentation``: :func:`setup` builds the
network, optimiser and data of a :class:`~lipstudy.config.TrainConfig`, :func:`resume` restores an
interrupted attempt, :func:`train_one_epoch` runs the steps of one epoch (or what is left of it)
and :func:`save_checkpoint` writes the state. SGD with momentum, the "poly" learning-rate schedule
and 10x learning rate on the classifier (the released DeepLabV2 recipe), bf16 autocast and
channels_last on CUDA, fp32 on CPU (:mod:`lipstudy.runtime`), DistributedDataParallel when started
by ``torchrun``. Stage 1 trains a baseline with plain cross-entropy for 30 epochs; stage 2
fine-tunes it with the structure-sensitive loss for 20 more (``init`` = the stage-1 checkpoint,
``loss`` = "paper" / "released" / "plus_one" / "off"; :func:`lipstudy.losses.training_loss`).

Checkpoints hold everything the rest of the run depends on (weights, optimizer, step, RNG states,
the log so far, the config), written atomically, so a run killed at any moment and started again
with the same config ends with exactly the weights of an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from .atomic import atomic_save, atomic_write_json
from .batches import AugmentedSet, ShardedBatches, StageLoader
from .checkpoints import CHECKPOINT, load_checkpoint, rng_state, set_rng_state
from .config import TrainConfig, build_network, command_line_parser, config_changes, config_from_args
from .labels import DATASETS
from .losses import training_loss
from .progress import RunProgress
from .runtime import PrecisionPlan, dist_env, keep_freed_memory, precision_plan, resolve_device
from .transforms import TrainTransform

LOG_FIELDS = ("epoch", "step", "loss", "lr", "images_per_s", "seconds")
"""The fields of a training log's row (one per epoch; ``seconds``: the epoch's training time)."""


# ----------------------------------------------------------------------------- optimiser

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


# ----------------------------------------------------------------------------- checkpoints

def write_log(out: Path, log: list[dict]) -> None:
    """The per-epoch log as ``train_log.json``, one row of :data:`LOG_FIELDS` per epoch (rewritten
    whole, atomically)."""
    atomic_write_json(out / "train_log.json", log)


# ----------------------------------------------------------------------------- one stage

@dataclass
class EpochStats:
    """What the log's row of the current epoch accumulates (kept in checkpoints, so a resumed
    epoch's row counts the steps before the interruption too)."""

    loss_sum: float = 0.0
    steps: int = 0
    images: int = 0
    seconds: float = 0.0


@dataclass
class TrainState:
    """One training stage while it runs: its config and output folder, the process layout, the
    network (``net`` is ``model`` wrapped for DDP when there are several processes), optimiser,
    data, and the progress so far (``step``, the per-epoch ``log``, the current epoch's stats)."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    rank: int
    world: int
    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    plan: PrecisionPlan
    data: AugmentedSet
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    log: list = field(default_factory=list)
    stats: EpochStats = field(default_factory=EpochStats)
    resident: object = None  # lipstudy.resident.ResidentSet when cfg.data_pipeline == "resident"
    loader: StageLoader | None = None  # made by the first epoch, kept for the next

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT


def setup(cfg: TrainConfig, out) -> TrainState:
    """Everything a training stage needs before its first step: processes, data, the seeded network (from
    the stage-1 checkpoint ``init``, the pretrained ``backbone_init`` or ImageNet ``pretrained``)
    and its optimiser. Seeding happens before the network is built, so a seed fixes the weights."""
    from .data.datasets import DecodedCache, open_dataset
    from .checkpoints import load_backbone

    cfg = cfg.resolved()  # a bundle's config names its files relative to the data / results folders
    out = Path(out)
    rank, world, local_rank = dist_env()
    device = resolve_device(cfg.device, local_rank)
    if world > 1 and device.type == "cuda":
        # A run folder's train_config.json names the GPU its single process used ("cuda:0"); under
        # torchrun each process takes its own, as torchrun's LOCAL_RANK says.
        device = torch.device("cuda", local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        keep_freed_memory()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    base = open_dataset(cfg.data_root, cfg.split, kind=cfg.dataset)
    if cfg.cache_images:
        base = DecodedCache(base)
    if len(base) < cfg.batch_size:
        raise ValueError(f"{cfg.data_root} ({cfg.split}): {len(base)} images, fewer than one batch "
                         f"of {cfg.batch_size}")
    transform = TrainTransform(crop=cfg.crop, scale_range=(cfg.scale_min, cfg.scale_max), flip=cfg.flip,
                               flip_pairs=tuple(DATASETS[cfg.dataset]["flip_pairs"]), seed=cfg.seed)
    steps_per_epoch = len(base) // cfg.batch_size

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    model = build_network(cfg)
    if world > 1:
        # Same initial weights everywhere (seeded above), then distinct dropout masks per process.
        torch.manual_seed(cfg.seed + 7919 * rank)
    if cfg.init:
        model.load_state_dict(load_checkpoint(cfg.init)["model"])
    elif cfg.backbone_init:
        load_backbone(model, cfg.backbone_init)
    model.to(device)
    plan = precision_plan(device, cfg.amp, cfg.channels_last)
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    return TrainState(cfg, out, device, rank, world, model, net, optimizer, plan, AugmentedSet(base, transform),
                      steps_per_epoch, steps_per_epoch * cfg.epochs)


def resume(state: TrainState) -> None:
    """Continue from ``out/checkpoint.pt`` when there is one, refusing if the config changed
    (other than its execution settings)."""
    path = state.checkpoint
    if not path.exists():
        return
    ckpt = load_checkpoint(path)
    changes = config_changes(ckpt["config"], state.cfg)
    if changes:
        raise ValueError(f"{path}: cannot resume, the config changed: " + "; ".join(changes))
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.step, state.log, state.stats = ckpt["step"], ckpt["log"], EpochStats(**ckpt["epoch_stats"])
    set_rng_state(ckpt["rng"])


def save_checkpoint(state: TrainState, finished: bool = False) -> None:
    """Write the whole state (rank 0, atomically), then let every process go on together."""
    if state.rank == 0:
        ckpt = {"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                "step": state.step, "epoch": state.step // state.steps_per_epoch,
                "step_in_epoch": state.step % state.steps_per_epoch, "log": state.log,
                "epoch_stats": dataclasses.asdict(state.stats), "rng": rng_state(),
                "config": state.cfg.to_dict(), "finished": finished, "world_size": state.world}
        atomic_save(state.checkpoint, lambda tmp: torch.save(ckpt, tmp))
    if state.world > 1:
        dist.barrier()


def train_step(state: TrainState, images: torch.Tensor, labels: torch.Tensor, lr: float) -> float:
    """One optimiser step on one batch; the batch's loss (averaged over processes)."""
    cfg = state.cfg
    for g in state.optimizer.param_groups:
        g["lr"] = lr * g["lr_mult"]
    images = images.to(state.device, non_blocking=True)
    labels = labels.to(state.device, non_blocking=True)
    if state.plan.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with state.plan.autocast_context(state.device):
        outputs = state.net(images)
    loss = training_loss(outputs, labels, cfg.loss, cfg.dataset, aux_structure=cfg.aux_structure_weight)
    if not torch.isfinite(loss):
        # Stop rather than write NaN weights into a checkpoint that would be resumed.
        raise FloatingPointError(f"loss is {loss.item()} at step {state.step + 1} (lr {lr:.3g}): training "
                                 f"diverged; lower the learning rate (lr={cfg.lr})")
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    state.step += 1
    loss_value = loss.detach()
    if state.world > 1:
        dist.all_reduce(loss_value)
        loss_value /= state.world
    return float(loss_value)  # one device sync per step, shared by the log, bar and report


def train_one_epoch(state: TrainState, last: int, report: RunProgress | None = None, bar=None,
                    on_step: Callable[[int], None] | None = None) -> None:
    """The steps of the current epoch up to step ``last``: each step's learning rate, the log row
    and a checkpoint at the epoch's end (and every ``checkpoint_every_steps``)."""
    cfg = state.cfg
    epoch, start = divmod(state.step, state.steps_per_epoch)
    batches = ShardedBatches(len(state.data), cfg.batch_size, cfg.seed, epoch, state.rank, state.world, start)
    if state.resident is not None:  # the same batches, augmented on the device
        loader = state.resident.epoch_batches(batches)
    else:
        if state.loader is None:
            state.loader = StageLoader(state.data, cfg.workers, cfg.seed, pin_memory=state.device.type == "cuda")
        loader = state.loader.epoch(batches)
    t0 = time.perf_counter()
    epoch_done = False
    for images, labels in loader:
        lr = poly_lr(cfg.lr, state.step, state.total_steps, cfg.lr_power, cfg.warmup_steps)
        loss = train_step(state, images, labels, lr)
        stats = state.stats
        stats.loss_sum += loss
        stats.steps += 1
        stats.images += cfg.batch_size
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if report is not None:
            report.step(state.step, loss)
        epoch_done = state.step % state.steps_per_epoch == 0
        if epoch_done:
            stats.seconds += time.perf_counter() - t0
            state.log.append({"epoch": state.step // state.steps_per_epoch, "step": state.step,
                              "loss": stats.loss_sum / max(stats.steps, 1), "lr": lr,
                              "images_per_s": stats.images / max(stats.seconds, 1e-9), "seconds": stats.seconds})
            state.stats = EpochStats()
            save_checkpoint(state)
            if state.rank == 0:
                write_log(state.out, state.log)
        elif cfg.checkpoint_every_steps and state.step % cfg.checkpoint_every_steps == 0:
            stats.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save_checkpoint(state)
        if on_step is not None:
            on_step(state.step)
        if state.step >= last:
            break
    if state.step >= last and not epoch_done:
        state.stats.seconds += time.perf_counter() - t0


def train(cfg: TrainConfig, out, progress: bool = True, on_step: Callable[[int], None] | None = None,
          report: bool = True, events=None) -> Path:
    """Train one stage into directory ``out`` and return the path of its final checkpoint.

    Resumes from ``out/checkpoint.pt`` when present (refusing if the config changed). Under
    ``torchrun`` (env RANK / WORLD_SIZE) each process trains its shard of every global batch with
    DistributedDataParallel; rank 0 writes the files. ``on_step(step)`` is called after each
    optimiser step (tests use it to interrupt a run at a known point). ``report=False``: not a run
    of the book (a chapter's own few steps): no summary line is printed. ``events``: the progress
    file a book runner follows (:class:`lipstudy.progress.RunProgress`), in place of the tqdm bar.
    """
    state = setup(cfg, out)
    if cfg.data_pipeline == "resident":
        from .resident import attach

        attach(state)
    if cfg.compile:
        state.net = torch.compile(state.net)
    if state.device.type == "cuda":  # one crop size: cuDNN tunes each convolution once (evaluate turns it off)
        torch.backends.cudnn.benchmark = True
    resume(state)
    last = state.total_steps if cfg.max_steps is None else min(state.total_steps, cfg.max_steps)
    # Under the book runner, progress goes through lipstudy.progress (lines on the runner's
    # terminal) instead of a tqdm bar.
    run_progress = (RunProgress(cfg, state.out, state.step, last, state.steps_per_epoch, path=events)
                    if state.rank == 0 and report else None)
    bar = None
    if progress and state.rank == 0 and (run_progress is None or not run_progress.replaces_bar):
        from tqdm.auto import tqdm
        bar = tqdm(total=last, initial=min(state.step, last), desc=f"train {cfg.model}", unit="step",
                   dynamic_ncols=True)
    state.net.train()
    try:
        while state.step < last:
            train_one_epoch(state, last, run_progress, bar, on_step)
    finally:
        if state.loader is not None:
            state.loader, loader = None, state.loader
            loader.close()
    if bar is not None:
        bar.close()
    if run_progress is not None:
        run_progress.finish(state.step)
    save_checkpoint(state, finished=True)
    if state.rank == 0:
        write_log(state.out, state.log)
    return state.checkpoint


# ----------------------------------------------------------------------------- command line

def main(argv: list[str]) -> int:
    p = command_line_parser("lipstudy train", __doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run directory (resumed if it holds a checkpoint)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = config_from_args(args, p)
        path = train(cfg, args.out, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"lipstudy train: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0
