"""The run store: every trained model lives in ``results/runs/<key>/``, trained once and read by
every chapter; what identifies a run, its key, its folder and its products.

What identifies a run is defined once, by :func:`run_settings`: the run, the settings of its
profile it trains with, and its epochs. The run's key (:func:`run_key`) hashes them with the
fingerprint of its data, the key of the run it starts from (:meth:`lipstudy.runs.Run.parent`),
the ImageNet weights file and :data:`ENGINE_VERSION`; its :class:`~lipstudy.config.TrainConfig`
(:func:`train_config`) is built from the same settings, so whatever a config computes is in the
key, and a resume (:func:`lipstudy.config.config_changes`) may change only the execution
settings the key leaves out. Computing a key has no side effect: it reads the data's manifest, so
the data must have been generated (by the book runner, ``lipstudy runs data`` or
:func:`lipstudy.train_run.ensure`), else :class:`lipstudy.data.roots.DataMissing` names the command.

A run's folder holds ``config.json`` (written first), ``train_config.json`` (the TrainConfig, for
``lipstudy train --config`` under ``torchrun``), ``checkpoint.pt``, ``train_log.json``, its
products (:class:`Evaluation`: ``eval/<name>/{metrics.json, per_image_cm.npz}``;
:class:`FigureSet`: ``figures/<set>.npz``, :mod:`lipstudy.showcase`), ``provenance.json`` and
``metrics.json`` (the val scores), written last: its presence means the run is finished. A run
imported from a bundle (:mod:`lipstudy.bundles`) also holds ``imported.json`` and may lack its
checkpoint: its products came with it. Training a run into its folder is :mod:`lipstudy.train_run`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels
from .config import EXECUTION_FIELDS, TrainConfig
from .data.roots import PRETRAIN, data_fingerprint, data_root, existing_root
from .locks import file_lock
from .models import ARCHITECTURE_VERSIONS
from .models.imagenet import weights_for
from .paths import runs_dir
from .profiles import Profile, get_profile
from .runs import Run, base_lr, epochs, method_runs
from .runtime import CHECKPOINT

ENGINE_VERSION = "1"
"""Bump when a change to training or evaluation changes results: every run key changes with it."""


# ----------------------------------------------------------------------------- what identifies a run

STAGE2_SCHEDULE = {"lr_power": 0.0, "warmup_steps": 0}
"""Stage 2's schedule in every profile, as the released LIP_SSL solver fine-tunes (``lr_policy: "step"``
with a step size past its last iteration): constant, no warm-up, from :attr:`Profile.stage2_lr` x the
base rate."""


def run_settings(run: Run, profile) -> dict:
    """What identifies ``run`` under ``profile``, apart from its data and what it starts from: the
    run, the profile's settings it trains with (width, crop, batch, lr, ImageNet start, the recipe's
    departures, fine-tuning's beyond them unless it is the backbone, the paper's losses, stage 2's
    schedule) and its epochs. The run key hashes it and :func:`train_config` is built from it."""
    prof = get_profile(profile)
    backbone = run.dataset == PRETRAIN
    settings = {"width": prof.width, "crop": prof.crop, "batch": prof.batch, "lr": prof.lr,
                "pretrained": prof.pretrained}
    if prof.recipe:
        settings["recipe"] = dict(sorted(prof.recipe.items()))
    if prof.finetune and not backbone:  # kept apart so that a change to fine-tuning reuses the backbone
        settings["finetune"] = dict(sorted(prof.finetune.items()))
    if prof.paper_losses:
        settings["paper_losses"] = dict(sorted(prof.paper_losses.items()))
    if backbone:  # its own lr and split (the pretrain spec): fine-tuning's lr is not its
        settings.update(lr=base_lr(run, prof), pretrain=prof.pretrain)
    if run.model in ARCHITECTURE_VERSIONS:
        settings["architecture"] = ARCHITECTURE_VERSIONS[run.model]
    if run.stage == 2:  # the released fine-tuning: a fraction of the base rate, constant, no warm-up
        settings.update(lr=prof.lr * prof.stage2_lr, stage2=dict(STAGE2_SCHEDULE))
        if "recipe" in settings:  # what stage 2's schedule replaces does not identify the run
            settings["recipe"] = {k: v for k, v in settings["recipe"].items() if k not in STAGE2_SCHEDULE}
    return {"run": dataclasses.asdict(run), "profile": settings, "epochs": epochs(run, prof)}


def execution_settings(profile) -> dict:
    """The TrainConfig fields a profile sets that change how a run executes, not what it computes
    (:data:`lipstudy.config.EXECUTION_FIELDS`: not in a run key, changeable on resume)."""
    prof = get_profile(profile)
    out = {"workers": prof.workers, "checkpoint_every_steps": prof.checkpoint_every_steps,
           "channels_last": prof.channels_last, "compile": prof.compile, "cache_images": prof.cache_images}
    assert set(out) <= set(EXECUTION_FIELDS), set(out) - set(EXECUTION_FIELDS)
    return out


def train_config(run: Run, profile, data_root, start: str | None = None, pretrained: str | None = None,
                 device: str = "auto") -> TrainConfig:
    """The TrainConfig of ``run`` under ``profile``: :func:`run_settings` on the data in
    ``data_root``, started from the checkpoint ``start`` (what the run starts from: a stage-2 run's
    stage-1 run, a stage-1 run's synthetic backbone) or the ImageNet weights file ``pretrained``,
    with the profile's :func:`execution_settings`."""
    prof = get_profile(profile)
    settings = run_settings(run, prof)
    given = settings["profile"]
    departures = {**given.get("paper_losses", {}), **given.get("recipe", {}), **given.get("finetune", {}),
                  **given.get("stage2", {})}
    stage2 = run.stage == 2
    return TrainConfig(
        model=run.model, loss=run.loss, seed=run.seed, dataset=run.kind,
        num_classes=len(labels.DATASETS[run.kind]["classes"]), width=given["width"], crop=given["crop"],
        batch_size=given["batch"], lr=given["lr"], epochs=settings["epochs"], **departures,
        data_root=str(data_root), split="train", init=start if stage2 else None,
        backbone_init=None if stage2 else start, pretrained=pretrained, device=device, **execution_settings(prof))


def run_key(run: Run, profile: Profile, fingerprint: str, parent_key: str | None = None,
            pretrained: str | None = None) -> str:
    """Short sha256 of everything that determines a run's result: :func:`run_settings`, its data's
    fingerprint, the key of the run it starts from and the ImageNet weights file (name and size)."""
    blob = {"engine": ENGINE_VERSION, **run_settings(run, profile), "data": fingerprint, "init": parent_key,
            "pretrained": None if pretrained is None else [Path(pretrained).name, Path(pretrained).stat().st_size]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def run_data(run: Run, profile, data=None) -> Path:
    """The dataset a run trains on (``data``, a real LIP root, replaces the LIP benchmark only),
    which must exist: :class:`lipstudy.data.roots.DataMissing` otherwise."""
    return existing_root(profile, run.dataset, data if run.dataset == "lip" else None)


@dataclass(frozen=True)
class KeyPlan:
    """How a run's key is derived: its data, that data's fingerprint, the key of the run it starts
    from, the ImageNet weights file, and the key itself."""

    run: Run
    root: Path
    fingerprint: str
    parent_key: str | None
    pretrained: str | None
    key: str


def key_plan(run: Run, profile, data=None) -> KeyPlan:
    """The key of ``run`` under ``profile``, derived through the runs it starts from (none of which
    needs to be trained: a key is known before the run exists). Generates and downloads nothing."""
    prof = get_profile(profile)
    parent = run.parent(prof)
    parent_key = key_plan(parent, prof, data).key if parent is not None else None
    root = run_data(run, prof, data)
    fingerprint = data_fingerprint(root)
    pretrained = weights_for(run.model) if prof.pretrained and run.stage == 1 else None
    return KeyPlan(run, root, fingerprint, parent_key, pretrained,
                   run_key(run, prof, fingerprint, parent_key, pretrained))


def is_finished(run_dir: Path) -> bool:
    """A run is finished when its ``metrics.json`` exists (written last, by rename)."""
    return (Path(run_dir) / "metrics.json").is_file()


def finished_key(run: Run, profile, data=None) -> str | None:
    """The key of ``run`` if it is finished in the store, else None."""
    key = key_plan(run, profile, data).key
    return key if is_finished(runs_dir() / key) else None


# ----------------------------------------------------------------------------- products

@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a run, kept in ``eval/<name>/``: the ``split`` ("val" or "test") of its
    own dataset, or with ``atr`` a LIP model on ATR's test split, labels mapped to LIP and scored on
    the shared classes (Table 6, left), or with ``challenge`` a LIP model on the challenge top-up of
    the synthetic validation split (its one split, "val": :mod:`lipstudy.data.synth.topup`, for the
    claims about the challenges); on its own "val" one of: a fixed input ``size`` (Table 6, right),
    ``flip``, or ``multiscale`` (scales 0.75 / 1 / 1.25)."""

    split: str = "val"
    size: int | None = None
    flip: bool = False
    multiscale: bool = False
    atr: bool = False
    challenge: bool = False

    def __post_init__(self):
        variants = sum((self.size is not None, self.flip, self.multiscale))
        if self.split not in ("val", "test") or variants > 1 or (variants and (self.split != "val" or self.challenge)) \
                or (self.atr and self.split != "test") or (self.challenge and (self.split != "val" or self.atr)) \
                or (self.size is not None and self.size < 1):
            raise ValueError(f"not an evaluation of this study: {self}")

    @property
    def name(self) -> str:
        """The folder's name: val, val@<size>, val-flip, val-ms, test, atr or challenge."""
        if self.atr:
            return "atr"
        if self.challenge:
            return "challenge"
        if self.split == "test":
            return "test"
        return ("val" + (f"@{self.size}" if self.size is not None else "") + ("-flip" if self.flip else "")
                + ("-ms" if self.multiscale else ""))

    @classmethod
    def named(cls, name: str) -> "Evaluation":
        """The evaluation of folder ``name`` (:attr:`name`'s inverse)."""
        fixed = {e.name: e for e in (VAL, TEST, ATR, VAL_FLIP, VAL_MS, CHALLENGE)}
        if name in fixed:
            return fixed[name]
        prefix, _, size = name.partition("@")
        if prefix == "val" and size.isdigit():
            return cls(size=int(size))
        raise ValueError(f"unknown evaluation {name!r}; use val, test, val-flip, val-ms, val@<size>, atr or challenge")

    def made(self, run_dir: Path) -> bool:
        return (Path(run_dir) / "eval" / self.name / "metrics.json").is_file()

    def make(self, res: "RunResult"):
        return res.evaluation(self)


VAL, TEST, ATR = Evaluation(), Evaluation("test"), Evaluation("test", atr=True)
VAL_FLIP, VAL_MS = Evaluation(flip=True), Evaluation(multiscale=True)
CHALLENGE = Evaluation(challenge=True)


@dataclass(frozen=True)
class FigureSet:
    """A run's predictions of one figure set of the chapters (:data:`lipstudy.showcase.FIGURE_SETS`),
    kept in ``figures/<name>.npz``."""

    name: str

    def made(self, run_dir: Path) -> bool:
        return (Path(run_dir) / "figures" / f"{self.name}.npz").is_file()

    def make(self, res: "RunResult"):
        return res.figure_maps(self.name)


@dataclass(frozen=True)
class ScaleWeights:
    """An Attention run's attention weights on its validation split, with the weight maps of the Fig. 8
    images (:mod:`lipstudy.scale_attention`), kept in ``attention/``."""

    name: str = "attention"

    def made(self, run_dir: Path) -> bool:
        from .scale_attention import folder

        return (folder(run_dir) / "val.npz").is_file()

    def make(self, res: "RunResult"):
        from .scale_attention import of_run

        return of_run(res)


SCALE_WEIGHTS = ScaleWeights()


def book_products(profile, data=None, seeds=None) -> dict[Run, list]:
    """What the chapters read of the book's runs beyond "val" (which every run gets when it
    finishes), ``{run: [Evaluation, FigureSet or ScaleWeights]}``: for the LIP methods and SSL controls
    the test split (the synthetic benchmark's hidden labels; real LIP's go to its server), ATR (Table 6,
    left), the challenge top-up of the synthetic validation split when the profile has one (the
    challenge claims), the fixed input sizes (Table 6, right) but for Attention's runs (the paper's "-":
    their attention is over input scales), Attention's weights (stage 1); nothing more for the
    shuffled-weight controls; PASCAL-Person-Part's test split; the figure sets of
    :func:`lipstudy.showcase.figure_sets`."""
    from .showcase import figure_sets

    prof = get_profile(profile)
    whole = ([TEST] if data is None else []) + [ATR]
    whole += [CHALLENGE] if data is None and prof.challenge_topup else []
    sizes = [Evaluation(size=s) for s in prof.eval_sizes]
    out: dict = {}
    for by_seed in method_runs(prof, seeds).values():
        for run in by_seed.values():
            if run.dataset == "ppp":
                out[run] = [TEST]
            elif run.loss == "shuffled":  # compared on val only (claims: SSL against it)
                out[run] = []
            elif run.model == "attention":  # no single-size rows (Table 6: its attention is over scales)
                out[run] = whole + ([SCALE_WEIGHTS] if run.stage == 1 else [])
            else:
                out[run] = whole + sizes
    for run, sets in figure_sets(prof, seeds).items():
        out.setdefault(run, []).extend(FigureSet(s) for s in sets)
    return out


@dataclass
class Scores:
    """A run's scores on one evaluation: per-image confusion matrices and the summary."""

    name: str
    metrics: dict
    ids: list
    cms: np.ndarray
    classes: tuple


@dataclass
class RunResult:
    """A finished run: its folder, config, provenance, data and products. ``trained``: whether this
    process trained it (else it was found finished)."""

    run: Run
    profile: Profile
    dir: Path
    config: dict
    provenance: dict
    data: Path
    device: str = "auto"
    trained: bool = False
    _scores: dict = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return self.run.label

    @property
    def checkpoint(self) -> Path:
        return self.dir / CHECKPOINT

    @property
    def train_log(self) -> pd.DataFrame:
        """The training log, a row per epoch (:data:`lipstudy.train.LOG_FIELDS`)."""
        from .train import LOG_FIELDS

        return pd.DataFrame(json.loads((self.dir / "train_log.json").read_text()), columns=list(LOG_FIELDS))

    def evaluation(self, which: Evaluation | str = VAL) -> Scores:
        """Scores under an :class:`Evaluation` (or its folder name, e.g. "val@64"), computed once
        and kept in ``dir/eval/<name>/``."""
        ev = which if isinstance(which, Evaluation) else Evaluation.named(which)
        if ev not in self._scores:
            self._scores[ev] = _scores(self, ev)
        return self._scores[ev]

    def figure_maps(self, name: str) -> dict:
        """The label maps this run predicts for the chapters' figure set ``name``, by image id
        (computed once, kept in ``dir/figures/<name>.npz``; :mod:`lipstudy.showcase`)."""
        from .showcase import label_maps

        return label_maps(self, name)


def load_result(run: Run, profile, data=None, device: str = "auto") -> RunResult | None:
    """The finished run ``run`` from the store, or None when it is not finished."""
    prof = get_profile(profile)
    plan = key_plan(run, prof, data)
    run_dir = runs_dir() / plan.key
    if not is_finished(run_dir):
        return None
    return RunResult(run, prof, run_dir, json.loads((run_dir / "config.json").read_text()),
                     json.loads((run_dir / "provenance.json").read_text()), plan.root, device)


def _eval_plan(res: RunResult, ev: Evaluation):
    """(data root, split, reader kind, label_dir, EvalSettings) of evaluation ``ev``."""
    from .evaluate import EvalSettings

    kind = res.run.kind
    if ev.atr:
        if kind != "lip":
            raise ValueError("the ATR evaluation is for LIP models (Table 6)")
        return (data_root(res.profile, "atr"), "test", "atr", None,
                EvalSettings(label_map="atr_to_lip", classes_subset=labels.ATR_LIP_SHARED))
    if ev.challenge:
        if kind != "lip":
            raise ValueError("the challenge top-up is for LIP models")
        return data_root(res.profile, "challenge"), "val", "lip", None, EvalSettings()
    settings = EvalSettings(flip=ev.flip, scales=(0.75, 1.0, 1.25) if ev.multiscale else (1.0,), input_size=ev.size)
    if ev.split == "test" and kind == "lip":
        hidden = res.data / "server" / "test_segmentations"
        if not hidden.is_dir():
            raise FileNotFoundError(f"{hidden}: no hidden test labels; LIP's test split is scored by "
                                    f"its evaluation server (submit the predictions of `lipstudy evaluate "
                                    f"--split test --save-png`)")
        return res.data, "test", kind, hidden, settings
    return res.data, ev.split, kind, None, settings


def _eval_workers(res: RunResult) -> int:
    """Loader workers of an evaluation: the profile's on a GPU, which they keep fed; none on a CPU,
    where the book evaluates in one-thread processes side by side and a worker only takes the core
    its process computes on (the same matrices; DESIGN.md's decisions log has the measurement)."""
    from .runtime import resolve_device

    return res.profile.workers if resolve_device(res.device).type == "cuda" else 0


def _scores(res: RunResult, ev: Evaluation) -> Scores:
    from .evaluate import evaluate_checkpoint, load_cms

    out = res.dir / "eval" / ev.name
    classes = tuple(labels.DATASETS[res.run.kind]["classes"])
    if not ev.made(res.dir):
        root, split, kind, label_dir, settings = _eval_plan(res, ev)
        if not res.checkpoint.is_file():
            raise FileNotFoundError(f"{res.dir}: run {res.label!r} has no evaluation {ev.name!r} and no checkpoint "
                                    f"to compute it (imported from a bundle that lacks it?)")
        with file_lock(res.dir / "eval" / f".{ev.name}.lock"):
            if not ev.made(res.dir):
                # LIP's validation pass keeps each image's Eq. 1 terms (what L_joint is made of: SSL chapter)
                evaluate_checkpoint(res.checkpoint, root, split, kind, settings, out=out, device=res.device,
                                    progress=False, label_dir=label_dir, workers=_eval_workers(res),
                                    joint_terms=ev == VAL and kind == "lip")
    metrics = json.loads((out / "metrics.json").read_text())
    ids, cms = load_cms(out / "per_image_cm.npz")
    return Scores(ev.name, metrics, ids, cms, classes)
