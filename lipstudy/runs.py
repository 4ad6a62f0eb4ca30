"""The study's runs and how they depend on each other: the run graph, defined once.

A :class:`Run` names one trained model (network, loss, dataset, stage, seed). What it starts from
is :meth:`Run.parent`: a stage-2 run fine-tunes its stage-1 run; a stage-1 run of a profile with
synthetic pretraining starts from the pretrained backbone (:data:`BACKBONE`); otherwise it starts
from ImageNet weights or from scratch. The run cache (:mod:`lipstudy.cache`), the scheduler
(:mod:`lipstudy.schedule`), the bundles and the progress plan all follow this one method.

The catalogue (:func:`paper_runs`, :func:`control_runs`, :func:`ppp_runs`, :func:`book_runs`,
:func:`book_evaluations`) is what the book's chapters ask for, by the paper's names.
"""
from __future__ import annotations

from dataclasses import dataclass

from .profiles import Profile, get_profile

MODEL_LABELS = {"segnet": "SegNet", "fcn8s": "FCN-8s", "deeplabv2": "DeepLabV2", "attention": "Attention",
                "backbone": "VGG-16-BN backbone (synthetic pretraining)"}
PRETRAIN = "pretrain"
"""The dataset name of the synthetic pretraining split (a LIP-style split of its own)."""
TRAIN_DATASETS = ("lip", "ppp", PRETRAIN)
"""What runs train on: the LIP benchmark, PASCAL-Person-Part, and the backbone's pretraining split."""


@dataclass(frozen=True)
class Run:
    """One trained model. Stage 1: ``epochs_stage1`` epochs from its start (ImageNet backbone in
    the full profile, the synthetic backbone in the cpu profiles) with cross-entropy. Stage 2:
    fine-tune the stage-1 run of the same model / dataset / seed for ``epochs_stage2`` epochs with
    ``loss``; ``loss="off"`` at stage 2 is the extra-epochs control the paper lacks."""

    model: str
    loss: str = "off"
    dataset: str = "lip"
    stage: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.model not in MODEL_LABELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODEL_LABELS)}")
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.dataset not in TRAIN_DATASETS:
            raise ValueError(f"runs train on 'lip' or 'ppp', got {self.dataset!r}")
        if (self.model == "backbone") != (self.dataset == PRETRAIN):
            raise ValueError("the backbone is pretrained on the 'pretrain' split, and only it is")

    @property
    def kind(self) -> str:
        """The reader / label set of the run's data (the pretraining split is LIP-style)."""
        return "lip" if self.dataset == PRETRAIN else self.dataset

    @property
    def label(self) -> str:
        """The paper's name of the method (and a descriptive one for the controls)."""
        name = MODEL_LABELS[self.model]
        if self.stage == 1:
            return name if self.loss == "off" else f"{name} (trained with loss {self.loss})"
        return {"paper": f"{name} + SSL",
                "released": f"{name} + SSL (released code)",
                "plus_one": f"{name} + SSL (1 + L_joint)",
                "off": f"{name} + stage-2 epochs without SSL"}[self.loss]

    def stage1(self) -> "Run":
        return Run(self.model, "off", self.dataset, 1, self.seed)

    def parent(self, profile) -> "Run | None":
        """The run this one starts from under ``profile``: its stage-1 run, the pretrained
        backbone, or None (ImageNet weights or a random start)."""
        if self.stage == 2:
            return self.stage1()
        if get_profile(profile).pretrain and self.dataset != PRETRAIN:
            return BACKBONE
        return None

    def lineage(self, profile) -> list["Run"]:
        """This run and the runs it starts from, the first ancestor first."""
        chain, run = [], self
        while run is not None:
            chain.append(run)
            run = run.parent(profile)
        return chain[::-1]


BACKBONE = Run("backbone", dataset=PRETRAIN)
"""The cpu profiles' synthetic stand-in for ImageNet: one backbone every stage-1 run starts from."""


def epochs(run: Run, profile: Profile) -> int:
    """Epochs of a run under a profile (stage 1, stage 2, or the backbone's pretraining)."""
    if run.dataset == PRETRAIN:
        return int(profile.pretrain["epochs"])
    return profile.epochs_stage1 if run.stage == 1 else profile.epochs_stage2


def base_lr(run: Run, profile: Profile) -> float:
    """Base learning rate of a run: the profile's, or the pretraining spec's ``lr`` for the backbone."""
    if run.dataset == PRETRAIN:
        return float(profile.pretrain.get("lr", profile.lr))
    return profile.lr


# ---------------------------------------------------------------------------------------------
# the catalogue: what the chapters ask for


def paper_runs(seed: int = 0) -> dict[str, Run]:
    """The six methods of Tables 2-4 and 6, by the paper's names."""
    runs = [Run(m, seed=seed) for m in ("segnet", "fcn8s", "deeplabv2", "attention")]
    runs += [Run(m, "paper", stage=2, seed=seed) for m in ("deeplabv2", "attention")]
    return {r.label: r for r in runs}


def control_runs(seed: int = 0) -> dict[str, Run]:
    """Controls for the SSL chapter: the stage-2 epochs without SSL, the released code's loss
    (forward weighted, gradient plain cross-entropy) and the 1 + L_joint weighting."""
    runs = [Run("deeplabv2", loss, stage=2, seed=seed) for loss in ("off", "released", "plus_one")]
    return {r.label: r for r in runs}


def ppp_runs(seed: int = 0) -> dict[str, Run]:
    """Table 5 on PASCAL-Person-Part. "DeepLab-LargeFOV" is our DeepLabV2 (ASPP) network.

    PPP merges left and right, so the nine LIP joints do not exist there; SSL on PPP uses six
    joints, the centres of the head, torso, upper-arms, lower-arms, upper-legs and lower-legs
    regions (see ``lipstudy.losses.ppp_joint_view``).
    """
    return {"DeepLab-LargeFOV": Run("deeplabv2", dataset="ppp", seed=seed),
            "Attention": Run("attention", dataset="ppp", seed=seed),
            "Attention + SSL": Run("attention", "paper", dataset="ppp", stage=2, seed=seed)}


def profile_seeds(profile, seeds=None) -> list[int]:
    """The seeds a build uses: ``seeds`` when given, else the profile's."""
    return [int(s) for s in seeds] if seeds else list(get_profile(profile).seeds)


def book_runs(profile, seeds=None) -> list[Run]:
    """Every run the book's chapters ask for under ``profile``: the paper's six LIP methods, the
    SSL controls and the PASCAL-Person-Part runs for each seed, plus the extra seeds
    (``profile.ssl_seeds``) of DeepLabV2, DeepLabV2 + SSL and the extra-epochs control, whose
    comparison is a few points and needs a seed spread."""
    prof = get_profile(profile)
    runs: list[Run] = []
    for s in profile_seeds(prof, seeds):
        runs += [*paper_runs(s).values(), *control_runs(s).values(), *ppp_runs(s).values()]
    for s in prof.ssl_seeds:
        runs += [Run("deeplabv2", seed=s), Run("deeplabv2", "paper", stage=2, seed=s),
                 Run("deeplabv2", "off", stage=2, seed=s)]
    return list(dict.fromkeys(runs))


def book_evaluations(profile, data=None, seeds=None) -> dict[Run, list[str]]:
    """The evaluations the chapters ask for beyond "val" (which every run gets when it finishes):
    the test split (the synthetic benchmark's hidden labels; real LIP's go to its server), ATR
    (Table 6, left) and the fixed input sizes (Table 6, right) of the paper's six LIP methods, and
    PASCAL-Person-Part's test split."""
    prof = get_profile(profile)
    out: dict = {}
    for s in profile_seeds(prof, seeds):
        for run in paper_runs(s).values():
            out[run] = (["test"] if data is None else []) + ["atr"] + [f"val@{size}" for size in prof.eval_sizes]
        for run in ppp_runs(s).values():
            out[run] = ["test"]
    return out


def with_ancestors(runs, profile) -> list[Run]:
    """``runs`` and every run they start from, each after the runs it starts from."""
    out: list[Run] = []
    for run in runs:
        for r in run.lineage(profile):
            if r not in out:
                out.append(r)
    return out
