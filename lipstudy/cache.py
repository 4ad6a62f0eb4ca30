"""The run cache: every trained model lives in ``results/runs/<key>/``, trained once, reused by
every chapter.

A chapter never trains inline: it asks :func:`ensure` for a :class:`~lipstudy.runs.Run` under a
:class:`~lipstudy.profiles.Profile`. The folder's ``key`` (:func:`run_key`) hashes everything that
determines the result: the run, the profile's training settings, the data fingerprint, the key of
the run it starts from, the ImageNet weights file, and :data:`ENGINE_VERSION`. So a finished run is
reused by every chapter and a rerun redoes nothing; an interrupted run resumes from its checkpoint;
a lock stops two processes training the same run.

Files of a run: ``config.json`` (written first), ``train_config.json`` (the TrainConfig, usable
with ``lipstudy train --config`` e.g. under ``torchrun`` on several GPUs), ``checkpoint.pt``,
``train_log.csv`` / ``.json``, ``eval/<name>/{metrics.json, per_image_cm.npz}``,
``figures/<set>.npz`` (the label maps the chapters' figures show, :mod:`lipstudy.showcase`),
``provenance.json``, and ``metrics.json`` (the val scores) written last: its presence means the
run is finished. A run imported from a bundle (:mod:`lipstudy.bundles`) also holds
``imported.json`` and may lack its checkpoint: its evaluations and figures came with it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels
from .atomic import atomic_write_json
from .data.roots import data_fingerprint, data_root
from .locks import file_lock, is_locked
from .paths import runs_dir
from .profiles import Profile, get_profile
from .runs import MODEL_LABELS, PRETRAIN, Run, base_lr, book_evaluations, epochs
from .runtime import CHECKPOINT

ENGINE_VERSION = "1"
"""Bump when a change to training or evaluation changes results: every run key changes with it."""

NO_TRAIN_ENV = "LIPSTUDY_NO_TRAIN"
"""Set to 1 and :func:`ensure` refuses to train: a book built from imported runs (``lipstudy book
--no-train``) fails naming a missing run instead of training it on a machine not meant to."""


# ----------------------------------------------------------------------------- keys

def pretrained_file(model: str, download: bool = True) -> str:
    """The ImageNet VGG-16 weights a profile with ``pretrained`` starts ``model`` from: the file
    named by LIPSTUDY_VGG16 (LIPSTUDY_VGG16_BN for SegNet), else torchvision's file in the torch hub
    cache, fetched there when missing (:mod:`lipstudy.models.imagenet`)."""
    from .models.imagenet import arch_of, weights_file

    return weights_file(arch_of(model), download=download)


def check_pretrained(profile, progress: bool = True) -> dict[str, str]:
    """Every ImageNet weights file a profile's runs start from, fetched now if missing:
    ``{architecture: path}`` ({} for a profile without ``pretrained``). The book runner calls it
    before generating data or training anything, so a missing file stops a build at once."""
    from .models.imagenet import arch_of, weights_file

    prof = get_profile(profile)
    if not prof.pretrained:
        return {}
    archs = sorted({arch_of(m) for m in MODEL_LABELS if m != "backbone"})
    return {a: weights_file(a, download=True, progress=progress) for a in archs}


def run_key(run: Run, profile: Profile, fingerprint: str, parent_key: str | None = None,
            pretrained: str | None = None) -> str:
    """Short sha256 of everything that determines a run's result, given its data's fingerprint,
    the key of the run it starts from and the ImageNet weights file (name and size)."""
    settings = profile.training_settings(backbone=run.dataset == PRETRAIN)
    if run.dataset == PRETRAIN:  # the backbone has its own lr (the pretrain spec): fine-tuning's is not its
        settings = {**settings, "lr": base_lr(run, profile), "pretrain": profile.pretrain}
    blob = {"engine": ENGINE_VERSION, "run": dataclasses.asdict(run), "profile": settings,
            "epochs": epochs(run, profile), "data": fingerprint, "init": parent_key,
            "pretrained": None if pretrained is None else [Path(pretrained).name, Path(pretrained).stat().st_size]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def run_data(run: Run, profile, data=None) -> Path:
    """The dataset a run trains on: ``data`` (a real LIP root) replaces the LIP benchmark only."""
    return data_root(profile, run.dataset, data if run.dataset == "lip" else None)


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
    """The key of ``run`` under ``profile``, derived through the runs it starts from (none of
    which needs to be trained: a key is known before the run exists)."""
    prof = get_profile(profile)
    parent = run.parent(prof)
    parent_key = key_plan(parent, prof, data).key if parent is not None else None
    root = run_data(run, prof, data)
    fingerprint = data_fingerprint(root)
    pretrained = pretrained_file(run.model) if prof.pretrained and run.stage == 1 else None
    return KeyPlan(run, root, fingerprint, parent_key, pretrained,
                   run_key(run, prof, fingerprint, parent_key, pretrained))


def is_finished(run_dir: Path) -> bool:
    """A run is finished when its ``metrics.json`` exists (written last, by rename)."""
    return (Path(run_dir) / "metrics.json").is_file()


def finished_key(run: Run, profile, data=None) -> str | None:
    """The cache key of ``run`` if it is finished, else None (nothing is trained)."""
    key = key_plan(run, profile, data).key
    return key if is_finished(runs_dir() / key) else None


# ----------------------------------------------------------------------------- results

@dataclass
class Evaluation:
    """A run's scores on one evaluation: per-image confusion matrices and the summary."""

    name: str
    metrics: dict
    ids: list
    cms: np.ndarray
    classes: tuple


@dataclass
class RunResult:
    """A finished run: its folder, config, provenance, training log and checkpoint."""

    run: Run
    profile: Profile
    dir: Path
    config: dict
    provenance: dict
    data: Path
    device: str = "auto"
    _evals: dict = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return self.run.label

    @property
    def checkpoint(self) -> Path:
        return self.dir / CHECKPOINT

    @property
    def train_log(self) -> pd.DataFrame:
        return pd.read_csv(self.dir / "train_log.csv")

    def evaluation(self, name: str = "val") -> Evaluation:
        """Scores under evaluation ``name`` (computed once, cached in ``dir/eval/<name>/``):
        "val", "test" (LIP: the evaluation server's hidden labels), "val-flip", "val-ms"
        (scales 0.75 / 1 / 1.25), "val@<size>" (fixed input size), "atr" (a LIP model on the ATR
        benchmark, labels mapped to LIP, scored on the shared classes), "challenge" (the top-up of
        the validation split's short challenge types)."""
        if name not in self._evals:
            self._evals[name] = _evaluation(self, name)
        return self._evals[name]

    def figure_maps(self, name: str) -> dict:
        """The label maps this run predicts for the chapters' figure set ``name``, by image id
        (computed once, cached in ``dir/figures/<name>.npz``; :mod:`lipstudy.showcase`)."""
        from .showcase import label_maps

        return label_maps(self, name)


FIGURES = "figures/"
"""Prefix of a figure set among a run's products (``figures/fig8``): the other products are
evaluation names."""


def product(res: RunResult, name: str):
    """Make (or read) one product of a finished run: an evaluation, or with the prefix
    :data:`FIGURES` the predictions of a figure set."""
    return res.figure_maps(name[len(FIGURES):]) if name.startswith(FIGURES) else res.evaluation(name)


def has_product(run_dir: Path, name: str) -> bool:
    """Whether a run folder holds product ``name`` already."""
    if name.startswith(FIGURES):
        return (Path(run_dir) / "figures" / f"{name[len(FIGURES):]}.npz").is_file()
    return (Path(run_dir) / "eval" / name / "metrics.json").is_file()


def book_products(profile, data=None, seeds=None) -> dict:
    """Everything the chapters read of the book's runs beyond "val", ``{run: [product names]}``:
    the evaluations of :func:`lipstudy.runs.book_evaluations` and the figure sets of
    :func:`lipstudy.showcase.figure_sets`."""
    from .showcase import figure_sets

    out = {run: list(names) for run, names in book_evaluations(profile, data, seeds).items()}
    for run, sets in figure_sets(profile, seeds).items():
        out.setdefault(run, []).extend(FIGURES + s for s in sets)
    return out


def _eval_plan(res: RunResult, name: str):
    """(data root, split, reader kind, label_dir, EvalSettings) of evaluation ``name``."""
    from .evaluate import EvalSettings

    kind = res.run.kind
    m = re.fullmatch(r"val@(\d+)", name)
    if name == "val":
        return res.data, "val", kind, None, EvalSettings()
    if name == "val-flip":
        return res.data, "val", kind, None, EvalSettings(flip=True)
    if name == "val-ms":
        return res.data, "val", kind, None, EvalSettings(scales=(0.75, 1.0, 1.25))
    if m:
        return res.data, "val", kind, None, EvalSettings(input_size=int(m.group(1)))
    if name == "test":
        if kind != "lip":
            return res.data, "test", kind, None, EvalSettings()
        hidden = res.data / "server" / "test_segmentations"
        if not hidden.is_dir():
            raise FileNotFoundError(f"{hidden}: no hidden test labels; LIP's test split is scored by "
                                    f"its evaluation server (submit the predictions of `lipstudy evaluate "
                                    f"--split test --save-png`)")
        return res.data, "test", kind, hidden, EvalSettings()
    if name == "challenge":  # the challenge top-up of the validation split (lipstudy.data.synth.topup)
        if kind != "lip":
            raise ValueError("the challenge top-up is for LIP models")
        return data_root(res.profile, "challenge"), "val", "lip", None, EvalSettings()
    if name == "atr":
        if kind != "lip":
            raise ValueError("the ATR evaluation is for LIP models (Table 6)")
        return (data_root(res.profile, "atr"), "test", "atr", None,
                EvalSettings(label_map="atr_to_lip", classes_subset=labels.ATR_LIP_SHARED))
    raise ValueError(f"unknown evaluation {name!r}; use val, test, val-flip, val-ms, val@<size>, atr or challenge")


def _eval_workers(res: RunResult) -> int:
    """Loader workers of an evaluation: the profile's on a GPU, which they keep fed; none on a CPU,
    where the book evaluates in one-thread processes side by side and a worker only takes the core
    its process computes on (two 400-image passes side by side: 17.5 s without, 20.6 s with one;
    the same matrices)."""
    from .runtime import resolve_device

    return res.profile.workers if resolve_device(res.device).type == "cuda" else 0


def _evaluation(res: RunResult, name: str) -> Evaluation:
    from .evaluate import evaluate_checkpoint, load_cms

    out = res.dir / "eval" / name
    classes = tuple(labels.DATASETS[res.run.kind]["classes"])
    if not (out / "metrics.json").is_file():
        root, split, kind, label_dir, settings = _eval_plan(res, name)
        if not res.checkpoint.is_file():
            raise FileNotFoundError(f"{res.dir}: run {res.label!r} has no evaluation {name!r} and no checkpoint "
                                    f"to compute it (imported from a bundle that lacks it?)")
        with file_lock(res.dir / "eval" / f".{name}.lock"):
            if not (out / "metrics.json").is_file():
                evaluate_checkpoint(res.checkpoint, root, split, kind, settings, out=out, device=res.device,
                                    progress=False, label_dir=label_dir, workers=_eval_workers(res))
    metrics = json.loads((out / "metrics.json").read_text())
    ids, cms = load_cms(out / "per_image_cm.npz")
    return Evaluation(name, metrics, ids, cms, classes)


# ----------------------------------------------------------------------------- training

def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj, default=str)


def _load_result(run, prof, run_dir, data, device, reused: bool = True) -> RunResult:
    from .progress import report_reused

    if reused:  # a run trained in this call has its own "[lipstudy] trained" line
        report_reused(run_dir)
    return RunResult(run, prof, run_dir, json.loads((run_dir / "config.json").read_text()),
                     json.loads((run_dir / "provenance.json").read_text()), data, device)


def train_config(plan: KeyPlan, profile: Profile, device: str, parent_checkpoint: str | None):
    """The TrainConfig of a run: its stage's settings under the profile, started from
    ``parent_checkpoint`` (the stage-1 checkpoint of a stage-2 run, or the pretrained backbone)."""
    from .config import TrainConfig

    run = plan.run
    stage2 = run.stage == 2
    return TrainConfig(
        model=run.model, width=profile.width, num_classes=len(labels.DATASETS[run.kind]["classes"]),
        pretrained=plan.pretrained, init=parent_checkpoint if stage2 else None,
        backbone_init=None if stage2 else parent_checkpoint, dataset=run.kind, data_root=str(plan.root),
        split="train", loss=run.loss, epochs=epochs(run, profile), batch_size=profile.batch, crop=profile.crop,
        lr=base_lr(run, profile), seed=run.seed, device=device, workers=profile.workers,
        checkpoint_every_steps=profile.checkpoint_every_steps, channels_last=profile.channels_last,
        compile=profile.compile, cache_images=profile.cache_images, **profile.run_recipe(backbone=run.dataset == PRETRAIN))


def _write_configs(run_dir: Path, plan: KeyPlan, prof: Profile, cfg) -> None:
    _write_json(run_dir / "config.json", {
        "key": plan.key, "label": plan.run.label, "run": dataclasses.asdict(plan.run), "profile": prof.name,
        "profile_settings": dataclasses.asdict(prof),
        "data": {"root": str(plan.root), "fingerprint": plan.fingerprint},
        "init_run": plan.parent_key, "engine_version": ENGINE_VERSION, "train": cfg.to_dict()})
    _write_json(run_dir / "train_config.json", cfg.to_dict())


def prepare_runs(profile, data=None, seeds=None) -> list[Path]:
    """Write ``train_config.json`` (and ``config.json``) into the folder of every run of the book
    that is not finished, each after the runs it starts from, and return those folders in that
    order: what ``torchrun ... -m lipstudy.cli train --config <folder>/train_config.json --out
    <folder>`` trains one by one on several GPUs (README). A stage-2 config names its stage-1 run's
    checkpoint, there once that run is trained. The configs say ``device: auto`` (each torchrun
    process takes its own GPU); ``ensure`` later finds the trained checkpoints, evaluates and
    finishes the runs without training them again. A run another process is training is left alone."""
    from .runs import book_runs, with_ancestors

    prof = get_profile(profile)
    folders = []
    for run in with_ancestors(book_runs(prof, seeds), prof):
        plan = key_plan(run, prof, data)
        run_dir = runs_dir() / plan.key
        if is_finished(run_dir) or is_locked(run_dir / ".lock"):
            continue
        parent = str(runs_dir() / plan.parent_key / CHECKPOINT) if plan.parent_key else None
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_configs(run_dir, plan, prof, train_config(plan, prof, "auto", parent))
        folders.append(run_dir)
    return folders


def ensure(run: Run, profile, data=None, device: str = "auto", progress: bool = True) -> RunResult:
    """The finished run ``run`` under ``profile``: reused from ``results/runs/<key>/`` when there,
    otherwise trained now (the run it starts from first), resuming an interrupted attempt.
    ``data``: a real LIP folder in place of the synthetic benchmark (LIP runs only)."""
    from .provenance import now, run_record
    from .runtime import resolve_device
    from .train import train

    prof = get_profile(profile)
    plan = key_plan(run, prof, data)
    run_dir = runs_dir() / plan.key
    if is_finished(run_dir):
        return _load_result(run, prof, run_dir, plan.root, device)
    if os.environ.get(NO_TRAIN_ENV) == "1":
        raise RuntimeError(f"run {run.label!r} ({run.dataset}, seed {run.seed}) of profile {prof.name} is not in "
                           f"{runs_dir()} (key {plan.key}) and training is off (${NO_TRAIN_ENV}=1): import the "
                           f"bundle that holds it (lipstudy runs import FILE) or train it")
    parent = run.parent(prof)
    parent_checkpoint = str(ensure(parent, prof, data, device, progress).checkpoint) if parent else None

    run_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(run_dir / ".lock"):
        if is_finished(run_dir):  # finished by another process meanwhile
            return _load_result(run, prof, run_dir, plan.root, device)
        started, t0 = now(), time.perf_counter()
        dev = resolve_device(device)
        cfg = train_config(plan, prof, str(dev), parent_checkpoint)
        resumed = (run_dir / CHECKPOINT).is_file()
        _write_configs(run_dir, plan, prof, cfg)
        train(cfg, run_dir, progress=progress)
        result = RunResult(run, prof, run_dir, json.loads((run_dir / "config.json").read_text()), {}, plan.root,
                           device)
        val = result.evaluation("val")
        train_seconds = (float(result.train_log["seconds"].sum())
                         if (run_dir / "train_log.csv").stat().st_size else 0.0)
        _write_json(run_dir / "provenance.json",
                    run_record(dev, started, time.perf_counter() - t0, resumed, train_seconds))
        # metrics.json last: its presence marks the run finished.
        _write_json(run_dir / "metrics.json", val.metrics)
    return _load_result(run, prof, run_dir, plan.root, device, reused=False)
