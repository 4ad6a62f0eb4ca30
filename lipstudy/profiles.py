"""How big the study is run: the profiles (smoke, cpu, cpu-short, cpu-long, full, gpu, gpu-smoke).

A :class:`Profile` fixes the data (the synthetic benchmark's image counts and scale, or real LIP),
the networks' width, the training recipe and its budget. ``full`` is the paper's recipe (Section
5.1) on a GPU; the CPU profiles depart from it where a budget of minutes on 2 cores forces them to,
and :mod:`lipstudy.deviations` lists each departure with its reason in the book.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    """How big the study is run. ``lip_data`` / ``ppp_data`` / ``atr_data``: the synthetic
    benchmark's image counts per split and ``max_side`` (None = LIP scale). ``eval_sizes``: Table
    6's single input sizes 153 / 321 / 513 scaled by crop / 321 (the profile's image scale).
    ``pretrained``: start the backbones from ImageNet VGG-16 (VGG-16-BN for SegNet), as the paper
    does: torchvision's published files in the torch hub cache, fetched there when missing
    (:mod:`lipstudy.models.imagenet`)."""

    name: str
    width: float
    crop: int
    batch: int
    lr: float
    epochs_stage1: int
    epochs_stage2: int
    lip_data: dict
    ppp_data: dict
    atr_data: dict
    eval_sizes: tuple[int, ...]
    # The seeds every LIP run of the book is trained with (a claim is decided only on runs trained
    # with at least three: lipstudy.claims.engine), and those of the PASCAL-Person-Part runs.
    seeds: tuple[int, ...] = (0,)
    ppp_seeds: tuple[int, ...] = (0,)
    # The networks whose SSL gets a shuffled-weight control (lipstudy.runs.shuffled_runs).
    shuffled: tuple[str, ...] = ("deeplabv2",)
    # Stage 2 fine-tunes at this fraction of stage 1's base learning rate, constant, without a warm-up,
    # as the released LIP_SSL solver fine-tunes with SSL (base_lr 1e-4, constant, against DeepLab's 1e-3
    # with the poly decay for stage 1).
    stage2_lr: float = 0.1
    workers: int = 0
    pretrained: bool = False
    checkpoint_every_steps: int | None = None
    # TrainConfig fields this profile sets beyond the paper's recipe: its deviations, listed with
    # their reasons in the book (reproducibility chapter).
    recipe: dict = field(default_factory=dict)
    # The synthetic stand-in for ImageNet pretraining (models/pretrain.py): None = none, else
    # {"train": N, "val": N, "epochs": E, "max_side": PX, "lr": LR} of a synthetic split disjoint
    # from the benchmark's (another seed), on which one VGG-16-BN backbone is trained once.
    pretrain: dict | None = None
    # TrainConfig fields set on top of ``recipe`` for every run except the backbone's pretraining:
    # how a pretrained network is fine-tuned (the paper's classifier at 10x the backbone's lr).
    # Kept apart so that a change to fine-tuning reuses the cached backbone.
    finetune: dict = field(default_factory=dict)
    # TrainConfig fields by which the loss is the paper's as its released Caffe training computes it
    # (DeepLab's labels shrunk to the score map; the LIP_SSL prototxt's weighting of every softmax
    # loss), where the TrainConfig defaults, kept for the runs trained before them, are not. Part of
    # the run key when set; :mod:`lipstudy.deviations` lists what a profile leaves out.
    paper_losses: dict = field(default_factory=dict)
    # Memory layout (an execution setting, not part of a run key): None = channels_last on CUDA
    # only; the cpu profiles set True, measured faster on CPU for all but SegNet (reproducibility chapter).
    channels_last: bool | None = None
    # Execution settings for a GPU (not part of a run key): torch.compile every training network,
    # and how many runs train side by side on one device (None = lipstudy.process_pool's default).
    compile: bool = False
    jobs: int | None = None
    # Reasons for this profile's departures from the paper that differ from the cpu profiles'
    # (lipstudy.deviations.REASONS keys -> text), shown in the book's deviations table.
    reasons: dict = field(default_factory=dict)
    # Keep decoded training images in memory across epochs (an execution setting, not part of a
    # run key): for datasets small enough to hold (TrainConfig.cache_images).
    cache_images: bool = False
    # LIP methods whose runs (first seed) the checkout ships, trained once and imported by every
    # build (lipstudy.committed; an execution setting, not part of a run key): those that, at this
    # budget, no claim can weigh (every claim comparing them fails the claims' gate or holds by
    # construction; the claims chapter checks it on every build).
    shipped: tuple[str, ...] = ()
    # Images every challenge subset of the synthetic validation split is topped up to for the claims
    # about the challenges (lipstudy.data.synth.topup: an evaluation-only split of the short types);
    # None: no top-up. Not part of a run key (no run trains on it).
    challenge_topup: int | None = None


def _sizes(crop: int) -> tuple[int, ...]:
    return tuple(int(round(s * crop / 321)) for s in (153, 321, 513))


# The from-scratch CPU profiles' recipe beyond the paper's (see lipstudy/deviations.py).
CPU_RECIPE = {"batch_norm": True, "optimizer": "adamw", "weight_decay": 1e-4, "classifier_lr_mult": 1.0,
              "warmup_steps": 100}
CPU_LR = 2e-3
# How the cpu profiles' baselines fine-tune from the pretrained backbone beyond CPU_RECIPE: the
# atrous rates scaled with the 128-px crop (measured: results/benchmarks/operating_point.json); no
# dropout in the thinned fc heads and fc6 / fc7 at least 128 channels wide (measured:
# results/benchmarks/attention_search.json; the attention model keeps its own dropout).
CPU_FINETUNE = {"atrous_scale": 128 / 321, "dropout": 0.0, "head_min": 128}
# The synthetic pretraining split and schedule (16 epochs rather than 8: measured in
# results/benchmarks/operating_point.json, the decision in DESIGN.md's log).
CPU_PRETRAIN = {"train": 3000, "val": 100, "epochs": 16, "max_side": 192, "lr": 2e-3}


# The loss as the paper's released training computes it (see Profile.paper_losses): the full profile's.
PAPER_LOSSES = {"score_map_loss": True, "aux_structure_weight": True}

PROFILES: dict[str, Profile] = {
    # CI: every chapter in minutes. Scores are near chance; the point is that the whole
    # pipeline runs end to end.
    "smoke": Profile(
        name="smoke", width=0.0625, crop=64, batch=8, lr=0.01, epochs_stage1=2, epochs_stage2=1,
        lip_data={"train": 64, "val": 24, "test": 16, "max_side": 64},
        ppp_data={"train": 32, "val": 8, "test": 16, "max_side": 64},
        atr_data={"train": 4, "val": 4, "test": 16, "max_side": 64},
        eval_sizes=_sizes(64), seeds=(0,), workers=0, cache_images=True, finetune={"dropout": 0.0},
        challenge_topup=10),
    # `make book`: the whole book (31 runs) within about 75 minutes on 2 AVX2 cores (issue 34's bar; the
    # reproducibility chapter shows each build's minutes).
    # Chosen by a measured search (benchmarks/operating_point.py, shown in the reproducibility chapter): thin networks
    # (width 1/16) on 128-px crops of images up to 192 px, batch norm in every backbone, AdamW with
    # warm-up, atrous rates scaled with the crop, and one backbone pretrained (16 epochs) on a
    # separate synthetic split that every stage-1 run starts from, as the paper's start from
    # ImageNet. Every deviation is listed in the book.
    "cpu": Profile(
        name="cpu", width=0.0625, crop=128, batch=10, lr=CPU_LR, epochs_stage1=6, epochs_stage2=3,
        lip_data={"train": 2000, "val": 400, "test": 200, "max_side": 192},
        ppp_data={"train": 800, "val": 100, "test": 200, "max_side": 192},
        atr_data={"train": 4, "val": 4, "test": 200, "max_side": 192},
        eval_sizes=_sizes(128), seeds=(0, 1, 2), workers=1, recipe=CPU_RECIPE, channels_last=True,
        finetune=CPU_FINETUNE, pretrain=CPU_PRETRAIN, cache_images=True, challenge_topup=50),
    # The paper's settings (Section 5.1) on a GPU: LIP-scale data (or real LIP via `data`).
    "full": Profile(
        name="full", width=1.0, crop=321, batch=10, lr=1e-3, epochs_stage1=30, epochs_stage2=20,
        lip_data={"train": 30462, "val": 10000, "test": 10000, "max_side": None},
        ppp_data={"train": 1716, "val": 100, "test": 1817, "max_side": None},
        atr_data={"train": 8, "val": 8, "test": 1000, "max_side": None},
        eval_sizes=_sizes(321), seeds=(0, 1, 2), ppp_seeds=(0, 1, 2), workers=8, pretrained=True,
        checkpoint_every_steps=500,
        paper_losses=PAPER_LOSSES),
}

# The cpu profile at other fine-tuning budgets (same data, same pretrained backbone), for the book's
# figure of mean IoU against training compute; their summaries (results/budget/<name>.json) are
# committed, and `lipstudy budget --profile <name> --train` retrains one. No extra seeds: the figure
# compares budgets, not seeds.
PROFILES["cpu-short"] = dataclasses.replace(PROFILES["cpu"], name="cpu-short", epochs_stage1=3, epochs_stage2=2,
                                            seeds=(0,))
PROFILES["cpu-long"] = dataclasses.replace(PROFILES["cpu"], name="cpu-long", epochs_stage1=12, epochs_stage2=6,
                                           seeds=(0,))


# The gpu profile: the whole book trained and evaluated on one H200 inside one command of at most
# 8 minutes, its synthetic data generated there (benchmarks/gpu_book.sh), then built anywhere from
# its bundle (lipstudy.bundles). Sized from FLOP counts, run by run (benchmarks/gpu_sizing.py, its
# figures in results/benchmarks/gpu_sizing.json and DESIGN.md's log), at an assumed rate for thin
# networks side by side well below the H200's bf16 matmul rate, leaving the command room for its
# data, its benchmarks and its bundle; the script stops training at its budget and keeps every run
# finished by then. The recipe is the cpu
# profile's, which a measured search chose for networks that start from the synthetic backbone
# (the paper's SGD recipe assumes ImageNet weights and 30 epochs), with the data pipeline resident
# on the GPU (lipstudy.resident) and bf16 autocast.
GPU_SCALE_NOTE = ("sized from FLOP counts for one H200 command of at most 8 minutes (benchmarks/gpu_sizing.py; "
                  "results/benchmarks/gpu_sizing.json)")
GPU_REASONS = {
    "images": f"a sixth of LIP's training images, so that every compared run trains at 3 seeds: {GPU_SCALE_NOTE}",
    "scale": "images up to 256 px: the network at half width on 256-px crops fits the GPU command's budget",
    "width": f"half the channels of every layer: {GPU_SCALE_NOTE}",
    "epochs": f"6 + 3 epochs: {GPU_SCALE_NOTE}",
    "crop": "256 px, scaled with the images (the paper's 321-px crops are ~half a LIP image side)",
    "optimizer": "the cpu profiles' recipe, chosen by a measured search for networks that start from the "
                 "synthetic backbone in few epochs (benchmarks/operating_point.py); the GPU run could not be tuned",
}
PROFILES["gpu"] = Profile(
    name="gpu", width=0.5, crop=256, batch=10, lr=CPU_LR, epochs_stage1=6, epochs_stage2=3,
    lip_data={"train": 4800, "val": 500, "test": 500, "max_side": 256},
    ppp_data={"train": 1716, "val": 100, "test": 500, "max_side": 256},
    atr_data={"train": 4, "val": 4, "test": 500, "max_side": 256},
    eval_sizes=_sizes(256), seeds=(0, 1, 2), ppp_seeds=(0,), workers=3,
    recipe={**CPU_RECIPE, "data_pipeline": "resident", "amp": "bf16"}, finetune={"atrous_scale": 256 / 321},
    pretrain={"train": 8000, "val": 100, "epochs": 6, "max_side": 256, "lr": CPU_LR}, jobs=4, reasons=GPU_REASONS)
# The gpu profile at smoke scale, for the test that runs benchmarks/gpu_book.sh end to end on a CPU:
# the same recipe, data pipeline and runs (at one seed), on a few dozen 64-px images at
# width 1/16, one run at a time, in bf16 on a GPU only ("auto": bf16 on a CPU is emulated, and slow).
PROFILES["gpu-smoke"] = dataclasses.replace(
    PROFILES["gpu"], name="gpu-smoke", width=0.0625, crop=64, epochs_stage1=1, epochs_stage2=1,
    lip_data={"train": 20, "val": 8, "test": 6, "max_side": 64},
    ppp_data={"train": 20, "val": 4, "test": 6, "max_side": 64},
    atr_data={"train": 4, "val": 4, "test": 6, "max_side": 64},
    eval_sizes=_sizes(64), seeds=(0,), ppp_seeds=(0,), workers=0, recipe={**PROFILES["gpu"].recipe, "amp": "auto"},
    finetune={"atrous_scale": 64 / 321}, pretrain={"train": 20, "val": 4, "epochs": 1, "max_side": 64, "lr": CPU_LR},
    jobs=1)


def get_profile(name) -> Profile:
    """A profile by name (a Profile passes through)."""
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


WHERE = {"smoke": "CI (`make test`): every chapter in minutes", "cpu": "`make book`: the whole book on 2 CPU cores",
         "cpu-short": "the budget figure (less fine-tuning than cpu)", "cpu-long": "the budget figure (more fine-tuning)",
         "full": "a GPU: the paper's settings",
         "gpu": "one GPU command of minutes (benchmarks/gpu_book.sh); built anywhere from its bundle",
         "gpu-smoke": "the gpu profile's script on a CPU, at smoke scale (tests)"}


def summary() -> "pd.DataFrame":
    """One row per profile, read off its settings: its data, networks, training and seeds (the
    book's front page shows it, so no number in it is typed by hand)."""
    import pandas as pd

    def data(p: Profile) -> str:
        d = p.lip_data
        side = "LIP-scale" if d["max_side"] is None else f"up to {d['max_side']} px"
        real = " (or real LIP with DATA=)" if p.pretrained or p.name == "full" else ""
        return f"{d['train']:,} / {d['val']:,} / {d['test']:,} synthetic images, {side}{real}"

    rows = []
    for p in PROFILES.values():
        start = ("ImageNet VGG-16" if p.pretrained else
                 f"a synthetic VGG-16-BN backbone ({p.pretrain['epochs']} epochs)" if p.pretrain else "scratch")
        rows.append({"profile": p.name, "meant for": WHERE.get(p.name, ""), "LIP train / val / test": data(p),
                     "networks": f"width {p.width:g}, {p.crop}-px crops, from {start}",
                     "epochs (stage 1 + 2)": f"{p.epochs_stage1} + {p.epochs_stage2}",
                     "seeds": f"{len(p.seeds)} (PASCAL-Person-Part: {len(p.ppp_seeds)})"})
    return pd.DataFrame(rows)
