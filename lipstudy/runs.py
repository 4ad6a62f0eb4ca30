"""The study's runs and how they depend on each other: the run graph, defined once.

A :class:`Run` names one trained model (network, loss, dataset, stage, seed). What it starts from
is :meth:`Run.parent`: a stage-2 run fine-tunes its stage-1 run; a stage-1 run of a profile with
synthetic pretraining starts from the pretrained backbone (:data:`BACKBONE`); otherwise it starts
from ImageNet weights or from scratch. The run store (:mod:`lipstudy.store`), training
(:mod:`lipstudy.train_run`, :mod:`lipstudy.process_pool`), the bundles and the progress plan all
follow this one method.

The catalogue (:func:`paper_runs`, :func:`control_runs`, :func:`ppp_runs`, :func:`book_runs`)
is what the book's chapters ask for, by the paper's names (what they read of each run:
:func:`lipstudy.store.book_products`).
"""
from __future__ import annotations

from dataclasses import dataclass

from .data.roots import PRETRAIN
from .profiles import Profile, get_profile

MODEL_LABELS = {"segnet": "SegNet", "fcn8s": "FCN-8s", "deeplabv2": "DeepLabV2", "attention": "Attention",
                "backbone": "VGG-16-BN backbone (synthetic pretraining)"}
TRAIN_DATASETS = ("lip", "ppp", PRETRAIN)
"""What runs train on: the LIP benchmark, PASCAL-Person-Part, and the backbone's pretraining split."""


@dataclass(frozen=True)
class Run:
    """One trained model. Stage 1: ``epochs_stage1`` epochs from its start (ImageNet backbone in
    the full profile, the synthetic backbone in the cpu profiles) with cross-entropy. Stage 2:
    fine-tune the stage-1 run of the same model / dataset / seed for ``epochs_stage2`` epochs with
    ``loss`` (:data:`lipstudy.losses.MODES`); ``loss="unit"`` at stage 2 is the control the paper
    lacks (Eq. 2 with every L_joint 1: the same extra epochs, the same averaging, no structure
    weight), ``loss="shuffled"`` the control with each image's weight taken from another image."""

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
                "unit": control_label(name),
                "shuffled": shuffled_label(name),
                "off": f"{name} + stage-2 epochs of plain cross-entropy"}[self.loss]

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


def control_label(method: str) -> str:
    """The name of a method's control: the same network fine-tuned for the same stage-2 epochs with
    Eq. 2's formula and every L_joint set to 1 ("DeepLabV2" -> "DeepLabV2 + stage-2 epochs without
    SSL")."""
    return f"{method} + stage-2 epochs without SSL"


def shuffled_label(method: str) -> str:
    """The name of a method's shuffled-weight control ("DeepLabV2 + SSL with shuffled L_joint")."""
    return f"{method} + SSL with shuffled L_joint"


def control_runs(seed: int = 0) -> dict[str, Run]:
    """The controls of the SSL claims on LIP: DeepLabV2 and Attention fine-tuned for the same stage-2
    epochs as "+ SSL" with the same loss but every L_joint set to 1 (loss "unit"). The paper has
    none: without them an SSL gain cannot be told from the gain of training longer."""
    runs = [Run(m, "unit", stage=2, seed=seed) for m in ("deeplabv2", "attention")]
    return {r.label: r for r in runs}


def shuffled_runs(seed: int = 0, models=("deeplabv2",)) -> dict[str, Run]:
    """The shuffled-weight controls (loss "shuffled"): "+ SSL" with each image's L_joint taken from
    another image of its batch, the same weights with their structure link broken. SSL minus this
    control is what the structure term adds beyond reweighting the images."""
    runs = [Run(m, "shuffled", stage=2, seed=seed) for m in models]
    return {r.label: r for r in runs}


def ppp_runs(seed: int = 0) -> dict[str, Run]:
    """Table 5 on PASCAL-Person-Part, and the control of its SSL claim. Our "DeepLabV2" (ASPP) stands
    where the paper's table has DeepLab-LargeFOV (quoted there from its authors; the chapter says so).

    PPP merges left and right, so the nine LIP joints do not exist there; SSL on PPP uses six
    joints, the centres of the head, torso, upper-arms, lower-arms, upper-legs and lower-legs
    regions (see ``lipstudy.losses.ppp_joint_view``).
    """
    return {"DeepLabV2": Run("deeplabv2", dataset="ppp", seed=seed),
            "Attention": Run("attention", dataset="ppp", seed=seed),
            "Attention + SSL": Run("attention", "paper", dataset="ppp", stage=2, seed=seed),
            control_label("Attention"): Run("attention", "unit", dataset="ppp", stage=2, seed=seed)}


def profile_seeds(profile, seeds=None) -> list[int]:
    """The seeds a build uses: ``seeds`` when given, else the profile's."""
    return [int(s) for s in seeds] if seeds else list(get_profile(profile).seeds)


def method_runs(profile, seeds=None) -> dict[str, dict[int, Run]]:
    """Every method of the book by the name its claims use ("ppp/<method>" on PASCAL-Person-Part),
    with the run of each seed it is trained with: ``{method: {seed: run}}``. LIP's methods, their
    controls and shuffled-weight controls (``profile.shuffled``) at the build's seeds (``seeds``, or
    the profile's), PASCAL-Person-Part's at ``profile.ppp_seeds``."""
    prof = get_profile(profile)
    out: dict[str, dict[int, Run]] = {}

    def add(runs: dict[str, Run], prefix: str = ""):
        for name, run in runs.items():
            out.setdefault(prefix + name, {})[run.seed] = run

    for s in profile_seeds(prof, seeds):
        add(paper_runs(s))
        add(control_runs(s))
        add(shuffled_runs(s, prof.shuffled))
    for s in prof.ppp_seeds:
        add(ppp_runs(s), "ppp/")
    return out


def book_runs(profile, seeds=None) -> list[Run]:
    """Every run the book's chapters ask for under ``profile``: the paper's six LIP methods, the SSL
    controls and the shuffled-weight controls at each seed, and the PASCAL-Person-Part runs at each
    of its seeds (:func:`method_runs`)."""
    runs = [run for by_seed in method_runs(profile, seeds).values() for run in by_seed.values()]
    return list(dict.fromkeys(sorted(runs, key=lambda r: (r.seed, r.dataset != "lip", r.stage, r.model, r.loss))))


def with_ancestors(runs, profile) -> list[Run]:
    """``runs`` and every run they start from, each after the runs it starts from."""
    out: list[Run] = []
    for run in runs:
        for r in run.lineage(profile):
            if r not in out:
                out.append(r)
    return out
