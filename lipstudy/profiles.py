"""How big the study is run: the profiles (smoke, cpu, cpu-short, cpu-long, full).

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
    ``pretrained``: start the backbones from ImageNet VGG-16 files named by the environment
    variables LIPSTUDY_VGG16 (and LIPSTUDY_VGG16_BN for SegNet), as the paper does."""

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
    seeds: tuple[int, ...] = (0,)
    # Extra seeds of DeepLabV2, DeepLabV2 + SSL and the extra-epochs control (the SSL claims
    # compare runs a few points apart, so their seed spread is part of the verdict).
    ssl_seeds: tuple[int, ...] = ()
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
    # Memory layout (an execution setting, not part of a run key): None = channels_last on CUDA
    # only; the cpu profiles set True, measured faster on CPU for all but SegNet (reproducibility chapter).
    channels_last: bool | None = None
    # Keep decoded training images in memory across epochs (an execution setting, not part of a
    # run key): for datasets small enough to hold (TrainConfig.cache_images).
    cache_images: bool = False

    def training_settings(self, backbone: bool = False) -> dict:
        """The profile's part of a run key (what changes a trained model); ``backbone``: for the
        synthetic pretraining run, whose key leaves out the fine-tuning settings."""
        out = {"width": self.width, "crop": self.crop, "batch": self.batch, "lr": self.lr,
               "pretrained": self.pretrained}
        if self.recipe:
            out["recipe"] = dict(sorted(self.recipe.items()))
        if self.finetune and not backbone:
            out["finetune"] = dict(sorted(self.finetune.items()))
        return out

    def run_recipe(self, backbone: bool = False) -> dict:
        """TrainConfig overrides of one run: ``recipe``, plus ``finetune`` unless it is the backbone."""
        return dict(self.recipe) if backbone else {**self.recipe, **self.finetune}


def _sizes(crop: int) -> tuple[int, ...]:
    return tuple(int(round(s * crop / 321)) for s in (153, 321, 513))


# The from-scratch CPU profiles' recipe beyond the paper's (see lipstudy/deviations.py).
CPU_RECIPE = {"batch_norm": True, "optimizer": "adamw", "weight_decay": 1e-4, "classifier_lr_mult": 1.0,
              "warmup_steps": 100}
CPU_LR = 2e-3
# How the cpu profiles' baselines fine-tune from the pretrained backbone beyond CPU_RECIPE: the
# atrous rates scaled with the 128-px crop (benchmarks/operating_point.py: +1.3 pp for DeepLabV2).
CPU_FINETUNE = {"atrous_scale": 128 / 321}
# The synthetic pretraining split and schedule (16 epochs: the backbone alone scores 22.5% val mIoU
# against 17.2% after 8, and DeepLabV2 fine-tuned from it 17.8% against 15.8%).
CPU_PRETRAIN = {"train": 3000, "val": 100, "epochs": 16, "max_side": 192, "lr": 2e-3}

PROFILES: dict[str, Profile] = {
    # CI: every chapter in minutes. Scores are near chance; the point is that the whole
    # pipeline runs end to end.
    "smoke": Profile(
        name="smoke", width=0.0625, crop=64, batch=8, lr=0.01, epochs_stage1=2, epochs_stage2=1,
        lip_data={"train": 64, "val": 24, "test": 16, "max_side": 64},
        ppp_data={"train": 32, "val": 8, "test": 16, "max_side": 64},
        atr_data={"train": 4, "val": 4, "test": 16, "max_side": 64},
        eval_sizes=_sizes(64), seeds=(0,), workers=0, cache_images=True),
    # `make book`: the whole book within 45 minutes on 2 CPU cores. Chosen by a measured search
    # (benchmarks/operating_point.py, shown in the reproducibility chapter): thin networks
    # (width 1/16) on 128-px crops of images up to 192 px, batch norm in every backbone, AdamW with
    # warm-up, atrous rates scaled with the crop, and one backbone pretrained (16 epochs) on a
    # separate synthetic split that every stage-1 run starts from, as the paper's start from
    # ImageNet. Every deviation is listed in the book.
    "cpu": Profile(
        name="cpu", width=0.0625, crop=128, batch=10, lr=CPU_LR, epochs_stage1=6, epochs_stage2=3,
        lip_data={"train": 2000, "val": 400, "test": 200, "max_side": 192},
        ppp_data={"train": 800, "val": 100, "test": 200, "max_side": 192},
        atr_data={"train": 4, "val": 4, "test": 200, "max_side": 192},
        eval_sizes=_sizes(128), seeds=(0,), ssl_seeds=(1,), workers=1, recipe=CPU_RECIPE, channels_last=True,
        finetune=CPU_FINETUNE, pretrain=CPU_PRETRAIN, cache_images=True),
    # The paper's settings (Section 5.1) on a GPU: LIP-scale data (or real LIP via `data`).
    "full": Profile(
        name="full", width=1.0, crop=321, batch=10, lr=1e-3, epochs_stage1=30, epochs_stage2=20,
        lip_data={"train": 30462, "val": 10000, "test": 10000, "max_side": None},
        ppp_data={"train": 1716, "val": 100, "test": 1817, "max_side": None},
        atr_data={"train": 8, "val": 8, "test": 1000, "max_side": None},
        eval_sizes=_sizes(321), seeds=(0,), workers=8, pretrained=True, checkpoint_every_steps=500),
}

# The cpu profile at other fine-tuning budgets (same data, same pretrained backbone), for the book's
# figure of mean IoU against training compute; their summaries (results/budget/<name>.json) are
# committed, and `lipstudy budget --profile <name> --train` retrains one (cpu-long: about 30 minutes
# on 2 cores). No extra seeds: the figure compares budgets, not seeds.
PROFILES["cpu-short"] = dataclasses.replace(PROFILES["cpu"], name="cpu-short", epochs_stage1=3, epochs_stage2=2,
                                            ssl_seeds=())
PROFILES["cpu-long"] = dataclasses.replace(PROFILES["cpu"], name="cpu-long", epochs_stage1=12, epochs_stage2=6,
                                           ssl_seeds=())


def get_profile(name) -> Profile:
    """A profile by name (a Profile passes through)."""
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
