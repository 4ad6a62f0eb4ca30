"""The study's runs: profiles, the named runs each chapter needs, and the run cache.

A chapter never trains inline: it asks :func:`ensure` for a :class:`Run` under a
:class:`Profile`. A run lives in ``results/runs/<key>/`` where ``key`` hashes everything that
determines its result (the run, the profile's training settings, the data fingerprint,
ENGINE_VERSION), so a finished run is reused by every chapter and a rerun redoes nothing. An
interrupted run resumes from its checkpoint; a lock stops two processes training the same run.

Files of a run: ``config.json`` (written first), ``train_config.json`` (the TrainConfig, usable
with ``lipstudy train --config`` e.g. under ``torchrun`` on several GPUs), ``checkpoint.pt``,
``train_log.csv`` / ``.json``, ``eval/<name>/{metrics.json, per_image_cm.npz}``,
``provenance.json``, and ``metrics.json`` (the val scores) written last: its presence means the
run is finished.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels as L
from .atomic import atomic_write_json

ENGINE_VERSION = "1"
"""Bump when a change to training or evaluation changes results: every run key changes with it."""

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = "checkpoint.pt"


# ----------------------------------------------------------------------------- profiles

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

    def training_settings(self) -> dict:
        """The profile's part of a run key (what changes a trained model)."""
        out = {"width": self.width, "crop": self.crop, "batch": self.batch, "lr": self.lr,
               "pretrained": self.pretrained}
        if self.recipe:
            out["recipe"] = dict(sorted(self.recipe.items()))
        return out


def _sizes(crop: int) -> tuple[int, ...]:
    return tuple(int(round(s * crop / 321)) for s in (153, 321, 513))


# The from-scratch CPU profiles' recipe beyond the paper's (see lipstudy/deviations.py).
CPU_RECIPE = {"batch_norm": True, "optimizer": "adamw", "weight_decay": 1e-4, "classifier_lr_mult": 1.0,
              "warmup_steps": 100}
CPU_LR = 2e-3

PROFILES: dict[str, Profile] = {
    # CI: every chapter in minutes. Scores are near chance; the point is that the whole
    # pipeline runs end to end.
    "smoke": Profile(
        name="smoke", width=0.0625, crop=64, batch=8, lr=0.01, epochs_stage1=2, epochs_stage2=1,
        lip_data={"train": 64, "val": 24, "test": 16, "max_side": 64},
        ppp_data={"train": 32, "val": 8, "test": 16, "max_side": 64},
        atr_data={"train": 4, "val": 4, "test": 16, "max_side": 64},
        eval_sizes=_sizes(64), seeds=(0,), workers=0),
    # `make book`: the whole book within 45 minutes on 2 CPU cores. Chosen by a measured search
    # (benchmarks/operating_point.py, shown in the reproducibility chapter): thin networks
    # (width 1/16) on 128-px crops of images up to 192 px, batch norm in every backbone, AdamW with
    # warm-up, and one backbone pretrained on a separate synthetic split that every stage-1 run
    # starts from, as the paper's start from ImageNet. Every deviation is listed in the book.
    "cpu": Profile(
        name="cpu", width=0.0625, crop=128, batch=10, lr=CPU_LR, epochs_stage1=8, epochs_stage2=4,
        lip_data={"train": 2000, "val": 400, "test": 200, "max_side": 192},
        ppp_data={"train": 800, "val": 100, "test": 200, "max_side": 192},
        atr_data={"train": 4, "val": 4, "test": 200, "max_side": 192},
        eval_sizes=_sizes(128), seeds=(0,), ssl_seeds=(1,), workers=1, recipe=CPU_RECIPE,
        pretrain={"train": 3000, "val": 100, "epochs": 8, "max_side": 192, "lr": 2e-3}),
    # The cpu profile at half its fine-tuning epochs (same data, same pretrained backbone): a second
    # budget for the book's figure of mean IoU against training compute.
    "cpu-short": Profile(
        name="cpu-short", width=0.0625, crop=128, batch=10, lr=CPU_LR, epochs_stage1=4, epochs_stage2=2,
        lip_data={"train": 2000, "val": 400, "test": 200, "max_side": 192},
        ppp_data={"train": 800, "val": 100, "test": 200, "max_side": 192},
        atr_data={"train": 4, "val": 4, "test": 200, "max_side": 192},
        eval_sizes=_sizes(128), seeds=(0,), workers=1, recipe=CPU_RECIPE,
        pretrain={"train": 3000, "val": 100, "epochs": 8, "max_side": 192, "lr": 2e-3}),
    # The paper's settings (Section 5.1) on a GPU: LIP-scale data (or real LIP via `data`).
    "full": Profile(
        name="full", width=1.0, crop=321, batch=10, lr=1e-3, epochs_stage1=30, epochs_stage2=20,
        lip_data={"train": 30462, "val": 10000, "test": 10000, "max_side": None},
        ppp_data={"train": 1716, "val": 100, "test": 1817, "max_side": None},
        atr_data={"train": 8, "val": 8, "test": 1000, "max_side": None},
        eval_sizes=_sizes(321), seeds=(0,), workers=8, pretrained=True, checkpoint_every_steps=500),
}


def get_profile(name) -> Profile:
    """A profile by name (a Profile passes through)."""
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


# ----------------------------------------------------------------------------- runs

MODEL_LABELS = {"segnet": "SegNet", "fcn8s": "FCN-8s", "deeplabv2": "DeepLabV2", "attention": "Attention",
                "backbone": "VGG-16-BN backbone (synthetic pretraining)"}
PRETRAIN = "pretrain"  # the dataset name of the synthetic pretraining split


@dataclass(frozen=True)
class Run:
    """One trained model. Stage 1: ``epochs_stage1`` epochs from scratch (ImageNet backbone in the
    full profile) with cross-entropy. Stage 2: fine-tune the stage-1 run of the same
    model / dataset / seed for ``epochs_stage2`` epochs with ``loss``; ``loss="off"`` at stage 2 is
    the extra-epochs control the paper lacks."""

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
        if self.dataset not in ("lip", "ppp", PRETRAIN):
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


def paper_runs(seed: int = 0) -> dict[str, Run]:
    """The six methods of Tables 2-4 and 6, by the paper's names."""
    runs = [Run(m, seed=seed) for m in ("segnet", "fcn8s", "deeplabv2", "attention")]
    runs += [Run(m, "paper", stage=2, seed=seed) for m in ("deeplabv2", "attention")]
    return {r.label: r for r in runs}


PAPER_RUNS = paper_runs(0)


def control_runs(seed: int = 0) -> dict[str, Run]:
    """Controls for the SSL chapter: the stage-2 epochs without SSL, the released code's loss
    (forward weighted, gradient plain cross-entropy) and the 1 + L_joint weighting."""
    runs = [Run("deeplabv2", loss, stage=2, seed=seed) for loss in ("off", "released", "plus_one")]
    return {r.label: r for r in runs}


def ppp_runs(seed: int = 0) -> dict[str, Run]:
    """Table 5 on PASCAL-Person-Part. "DeepLab-LargeFOV" is our DeepLabV2 (ASPP) network.

    PPP merges left and right, so the nine LIP joints do not exist there; SSL on PPP uses six
    joints, the centres of the head, torso, upper-arms, lower-arms, upper-legs and lower-legs
    regions (see ``lipstudy.train.ppp_joint_view``).
    """
    return {"DeepLab-LargeFOV": Run("deeplabv2", dataset="ppp", seed=seed),
            "Attention": Run("attention", dataset="ppp", seed=seed),
            "Attention + SSL": Run("attention", "paper", dataset="ppp", stage=2, seed=seed)}


# ----------------------------------------------------------------------------- data

def results_dir() -> Path:
    env = os.environ.get("LIPSTUDY_RESULTS")
    return Path(env) if env else REPO / "results"


def data_dir() -> Path:
    env = os.environ.get("LIPSTUDY_DATA")
    return Path(env) if env else REPO / "data"


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock (fcntl.flock) held for the block; released if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def is_locked(path: Path) -> bool:
    """Whether another process holds the lock at ``path`` now."""
    if not path.exists():
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def data_root(profile, dataset: str = "lip", data=None) -> Path:
    """The dataset a profile uses: the real dataset folder ``data`` if given, else the synthetic
    benchmark ``data/synth-<profile>-<dataset>-<spec digest>/`` (generated, under a lock, if missing)."""
    if data is not None:
        root = Path(data)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: dataset folder not found")
        return root
    prof = get_profile(profile)
    if dataset not in ("lip", "ppp", "atr", PRETRAIN):
        raise ValueError(f"unknown dataset {dataset!r}; expected lip, ppp, atr or {PRETRAIN}")
    if dataset == PRETRAIN and not prof.pretrain:
        raise ValueError(f"profile {prof.name!r} has no synthetic pretraining split")
    spec = {"lip": prof.lip_data, "ppp": prof.ppp_data, "atr": prof.atr_data, PRETRAIN: prof.pretrain}[dataset]
    # The folder names the spec it was generated from, so a changed spec is never served stale data.
    spec = {k: v for k, v in spec.items() if k not in ("epochs", "lr")}  # training settings, not data
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    root = data_dir() / f"synth-{prof.name}-{dataset}-{digest}"
    if (root / "manifest.json").is_file():
        return root
    from .data.synth import generate

    # The pretraining split is rendered from another seed, so it shares no scene with the benchmark.
    seed, style = (1, "lip") if dataset == PRETRAIN else (0, dataset)
    with file_lock(root.parent / f".{root.name}.lock"):
        if not (root / "manifest.json").is_file():
            generate(root, spec["train"], spec["val"], spec.get("test", 0), seed=seed, style=style,
                     workers=max(1, os.cpu_count() or 1), max_side=spec["max_side"], progress=False,
                     force=root.exists())
    return root


def data_fingerprint(root: Path) -> str:
    """The synthetic benchmark's manifest fingerprint, or for a real dataset a digest of its file
    names and sizes (cheap, and changes when the dataset does)."""
    manifest = Path(root) / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())["fingerprint"]
    h = hashlib.sha256()
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for f in sorted(files):
            p = Path(dirpath) / f
            h.update(f"{p.relative_to(root)}\0{p.stat().st_size}\n".encode())
    return h.hexdigest()


def _pretrained_file(model: str) -> str:
    var = "LIPSTUDY_VGG16_BN" if model == "segnet" else "LIPSTUDY_VGG16"
    path = os.environ.get(var)
    if not path or not Path(path).is_file():
        raise FileNotFoundError(
            f"this profile starts {MODEL_LABELS[model]} from ImageNet VGG-16 weights: set {var} to a "
            f"torchvision-format state dict file ({'vgg16_bn' if model == 'segnet' else 'vgg16'})")
    return str(Path(path).resolve())


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
        benchmark, labels mapped to LIP, scored on the shared classes)."""
        if name not in self._evals:
            self._evals[name] = _evaluation(self, name)
        return self._evals[name]


def _eval_plan(res: RunResult, name: str):
    """(data root, split, reader kind, label_dir, EvalSettings) of evaluation ``name``."""
    from .evaluate import EvalSettings

    ds = res.run.kind
    m = re.fullmatch(r"val@(\d+)", name)
    if name == "val":
        return res.data, "val", ds, None, EvalSettings()
    if name == "val-flip":
        return res.data, "val", ds, None, EvalSettings(flip=True)
    if name == "val-ms":
        return res.data, "val", ds, None, EvalSettings(scales=(0.75, 1.0, 1.25))
    if m:
        return res.data, "val", ds, None, EvalSettings(input_size=int(m.group(1)))
    if name == "test":
        if ds != "lip":
            return res.data, "test", ds, None, EvalSettings()
        hidden = res.data / "server" / "test_segmentations"
        if not hidden.is_dir():
            raise FileNotFoundError(f"{hidden}: no hidden test labels; LIP's test split is scored by "
                                    f"its evaluation server (submit the predictions of `lipstudy evaluate "
                                    f"--split test --save-png`)")
        return res.data, "test", ds, hidden, EvalSettings()
    if name == "atr":
        if ds != "lip":
            raise ValueError("the ATR evaluation is for LIP models (Table 6)")
        return (data_root(res.profile, "atr"), "test", "atr", None,
                EvalSettings(label_map="atr_to_lip", classes_subset=L.ATR_LIP_SHARED))
    raise ValueError(f"unknown evaluation {name!r}; use val, test, val-flip, val-ms, val@<size> or atr")


def _evaluation(res: RunResult, name: str) -> Evaluation:
    from .evaluate import evaluate_checkpoint, load_cms

    out = res.dir / "eval" / name
    classes = tuple(L.DATASETS[res.run.kind]["classes"])
    if not (out / "metrics.json").is_file():
        root, split, kind, label_dir, settings = _eval_plan(res, name)
        with file_lock(res.dir / "eval" / f".{name}.lock"):
            if not (out / "metrics.json").is_file():
                evaluate_checkpoint(res.checkpoint, root, split, kind, settings, out=out, device=res.device,
                                    progress=False, label_dir=label_dir, workers=res.profile.workers)
    metrics = json.loads((out / "metrics.json").read_text())
    ids, cms = load_cms(out / "per_image_cm.npz")
    return Evaluation(name, metrics, ids, cms, classes)


# ----------------------------------------------------------------------------- the cache

def run_epochs(run: Run, profile: Profile) -> int:
    """Epochs of a run under a profile (stage 1, stage 2, or the backbone's pretraining)."""
    if run.dataset == PRETRAIN:
        return int(profile.pretrain["epochs"])
    return profile.epochs_stage1 if run.stage == 1 else profile.epochs_stage2


def run_lr(run: Run, profile: Profile) -> float:
    """Base learning rate of a run: the profile's, or the pretraining spec's ``lr`` for the backbone."""
    if run.dataset == PRETRAIN:
        return float(profile.pretrain.get("lr", profile.lr))
    return profile.lr


def run_key(run: Run, profile: Profile, fingerprint: str, init_key: str | None = None,
            pretrained: str | None = None) -> str:
    """Short sha256 of everything that determines a run's result."""
    epochs = run_epochs(run, profile)
    settings = profile.training_settings()
    if run.dataset == PRETRAIN:  # the backbone has its own lr (the pretrain spec): fine-tuning's is not its
        settings = {**settings, "lr": run_lr(run, profile), "pretrain": profile.pretrain}
    blob = {"engine": ENGINE_VERSION, "run": dataclasses.asdict(run), "profile": settings,
            "epochs": epochs, "data": fingerprint, "init": init_key,
            "pretrained": None if pretrained is None else [Path(pretrained).name, Path(pretrained).stat().st_size]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _git() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if head.returncode:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _packages() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "scipy", "pandas", "pillow", "scikit-image", "lipstudy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj, default=str)


def _load_result(run, prof, run_dir, data, device) -> RunResult:
    return RunResult(run, prof, run_dir, json.loads((run_dir / "config.json").read_text()),
                     json.loads((run_dir / "provenance.json").read_text()), data, device)


def ensure(run: Run, profile, data=None, device: str = "auto", progress: bool = True) -> RunResult:
    """The finished run ``run`` under ``profile``: reused from ``results/runs/<key>/`` when there,
    otherwise trained now (its stage-1 run first for a stage-2 run), resuming an interrupted
    attempt. ``data``: a real LIP folder in place of the synthetic benchmark (LIP runs only)."""
    from .train import TrainConfig, resolve_device, train

    prof = get_profile(profile)
    root = data_root(prof, run.dataset, data if run.dataset == "lip" else None)
    init_key = init = backbone = None
    if run.stage == 2:
        first = ensure(run.stage1(), prof, data, device, progress)
        init_key, init = first.dir.name, str(first.checkpoint)
    elif prof.pretrain and run.dataset != PRETRAIN:
        first = ensure(Run("backbone", dataset=PRETRAIN, seed=0), prof, None, device, progress)
        init_key, backbone = first.dir.name, str(first.checkpoint)
    pretrained = _pretrained_file(run.model) if prof.pretrained and run.stage == 1 else None
    key = run_key(run, prof, data_fingerprint(root), init_key, pretrained)
    run_dir = results_dir() / "runs" / key
    if (run_dir / "metrics.json").is_file():
        return _load_result(run, prof, run_dir, root, device)

    run_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(run_dir / ".lock"):
        if (run_dir / "metrics.json").is_file():  # finished by another process meanwhile
            return _load_result(run, prof, run_dir, root, device)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        dev = resolve_device(device)
        cfg = TrainConfig(
            model=run.model, width=prof.width, num_classes=len(L.DATASETS[run.kind]["classes"]),
            pretrained=pretrained, init=init, backbone_init=backbone, dataset=run.kind, data_root=str(root),
            split="train", loss=run.loss, epochs=run_epochs(run, prof),
            batch_size=prof.batch, crop=prof.crop, lr=run_lr(run, prof), seed=run.seed, device=str(dev),
            workers=prof.workers, checkpoint_every_steps=prof.checkpoint_every_steps, **prof.recipe)
        resumed = (run_dir / CHECKPOINT).is_file()
        _write_json(run_dir / "config.json", {
            "key": key, "label": run.label, "run": dataclasses.asdict(run), "profile": prof.name,
            "profile_settings": dataclasses.asdict(prof), "data": {"root": str(root),
                                                                    "fingerprint": data_fingerprint(root)},
            "init_run": init_key, "engine_version": ENGINE_VERSION, "train": cfg.to_dict()})
        _write_json(run_dir / "train_config.json", cfg.to_dict())
        train(cfg, run_dir, progress=progress)
        result = RunResult(run, prof, run_dir, json.loads((run_dir / "config.json").read_text()), {}, root,
                           device)
        val = result.evaluation("val")
        provenance = {"git": _git(), "packages": _packages(), "device": _device_name(dev),
                      "start": started, "end": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "wall_time_s": time.perf_counter() - t0, "resumed": resumed,
                      "train_seconds": float(result.train_log["seconds"].sum()) if
                      (run_dir / "train_log.csv").stat().st_size else 0.0,
                      "command": " ".join(sys.argv)}
        _write_json(run_dir / "provenance.json", provenance)
        # metrics.json last: its presence marks the run finished.
        _write_json(run_dir / "metrics.json", val.metrics)
    return _load_result(run, prof, run_dir, root, device)


def book_runs(profile, seeds=None) -> list[Run]:
    """Every run the book's chapters ask for under ``profile``: the paper's six LIP methods, the
    SSL controls and the PASCAL-Person-Part runs for each seed, plus the extra seeds
    (``profile.ssl_seeds``) of DeepLabV2, DeepLabV2 + SSL and the extra-epochs control, whose
    comparison is a few points and needs a seed spread."""
    prof = get_profile(profile)
    seeds = list(seeds) if seeds else list(prof.seeds)
    runs: list[Run] = []
    for s in seeds:
        runs += [*paper_runs(s).values(), *control_runs(s).values(), *ppp_runs(s).values()]
    for s in prof.ssl_seeds:
        runs += [Run("deeplabv2", seed=s), Run("deeplabv2", "paper", stage=2, seed=s),
                 Run("deeplabv2", "off", stage=2, seed=s)]
    return list(dict.fromkeys(runs))


# Relative cost of one epoch per model (images/s of DeepLabV2 / of the model, width 0.0625, 1
# thread): the longest runs start first so that two workers finish together.
_COST = {"backbone": 0.9, "segnet": 1.1, "fcn8s": 0.9, "deeplabv2": 1.0, "attention": 1.5}


def book_evaluations(profile, data=None, seeds=None) -> dict:
    """The evaluations the chapters ask for beyond "val" (which every run gets when it finishes):
    the test split (the synthetic benchmark's hidden labels; real LIP's go to its server), ATR
    (Table 6, left) and the fixed input sizes (Table 6, right) of the paper's six LIP methods, and
    PASCAL-Person-Part's test split."""
    prof = get_profile(profile)
    out: dict = {}
    for s in (list(seeds) if seeds else list(prof.seeds)):
        for run in paper_runs(s).values():
            out[run] = (["test"] if data is None else []) + ["atr"] + [f"val@{size}" for size in prof.eval_sizes]
        for run in ppp_runs(s).values():
            out[run] = ["test"]
    return out


def _ensure_in_worker(args) -> str:
    run, profile, data, device, threads, evaluations = args
    import torch

    torch.set_num_threads(threads)
    res = ensure(run, profile, data, device, progress=False)
    for name in evaluations:
        res.evaluation(name)
    return res.dir.name


def ensure_all(runs, profile, data=None, device: str = "auto", jobs: int = 1, evaluations=None) -> None:
    """Train every missing run of ``runs``, ``jobs`` at a time in separate processes of
    ``cpu_count // jobs`` threads each. On 2 CPU cores two one-thread runs side by side train
    ~20% more images per second than one run on two threads (benchmarks/operating_point.py
    measures both). Dependencies go in waves: the pretrained backbone (alone, with every thread),
    then the stage-1 runs, then the stage-2 runs; then ``evaluations`` ({run: [evaluation name,
    ...]}, e.g. :func:`book_evaluations`), also side by side. Runs and evaluations already
    finished cost nothing; the cache's locks make this safe beside a chapter asking for the same."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    prof = get_profile(profile)
    pending = [r for r in runs if finished_key(r, prof, data) is None]
    todo = {}
    for r, names in (evaluations or {}).items():
        key = finished_key(r, prof, data)
        names = [n for n in names if key is None or not (results_dir() / "runs" / key / "eval" / n
                                                          / "metrics.json").is_file()]
        if names:
            todo[r] = names
    if not pending and not todo:
        return
    datasets = {r.dataset for r in pending} | {"atr" for names in todo.values() if "atr" in names}
    if prof.pretrain and pending:
        datasets.add(PRETRAIN)
    for ds in sorted(datasets):  # data first, once, with every core
        data_root(prof, ds, data if ds == "lip" else None)
    cores = os.cpu_count() or 1
    waves = [[(Run("backbone", dataset=PRETRAIN), [])] if prof.pretrain and pending else [],
             [(r, []) for r in pending if r.stage == 1 and r.dataset != PRETRAIN],
             [(r, []) for r in pending if r.stage == 2],
             sorted(todo.items(), key=lambda kv: -_COST.get(kv[0].model, 1.0) * len(kv[1]))]
    for i, wave in enumerate(waves):
        if i < 3:
            wave = sorted(wave, key=lambda t: -_COST.get(t[0].model, 1.0) * run_epochs(t[0], prof)
                          * {"lip": 1.0, "ppp": 0.4, PRETRAIN: 1.5}[t[0].dataset])
        if jobs <= 1 or len(wave) <= 1:
            for r, names in wave:
                res = ensure(r, prof, data, device, progress=False)
                for name in names:
                    res.evaluation(name)
            continue
        # Spawned (no forked torch thread pools), one task per process, and not daemonic as a
        # multiprocessing.Pool's are: a run's DataLoader workers and the data generator's pool are
        # its children.
        with ProcessPoolExecutor(min(jobs, len(wave)), mp_context=multiprocessing.get_context("spawn"),
                                 max_tasks_per_child=1) as pool:
            list(pool.map(_ensure_in_worker,
                          [(r, prof, data, device, max(1, cores // jobs), names) for r, names in wave]))


def finished_key(run: Run, profile, data=None) -> str | None:
    """The cache key of ``run`` if it and every run it starts from are finished, else None
    (nothing is trained)."""
    prof = get_profile(profile)
    root = data_root(prof, run.dataset, data if run.dataset == "lip" else None)
    dep = (run.stage1() if run.stage == 2 else
           Run("backbone", dataset=PRETRAIN) if prof.pretrain and run.dataset != PRETRAIN else None)
    init_key = None
    if dep is not None:
        init_key = finished_key(dep, prof, data if dep.dataset == "lip" else None)
        if init_key is None:
            return None
    pretrained = _pretrained_file(run.model) if prof.pretrained and run.stage == 1 else None
    key = run_key(run, prof, data_fingerprint(root), init_key, pretrained)
    return key if (results_dir() / "runs" / key / "metrics.json").is_file() else None


# ----------------------------------------------------------------------------- command line

def list_runs(profile: str | None = None) -> pd.DataFrame:
    """Every run folder under results/runs: key, label, profile, status, val mean IoU."""
    rows = []
    runs = results_dir() / "runs"
    for d in sorted(runs.iterdir()) if runs.is_dir() else []:
        if not (d / "config.json").is_file():
            continue
        cfg = json.loads((d / "config.json").read_text())
        if profile and cfg.get("profile") != profile:
            continue
        done = (d / "metrics.json").is_file()
        status = ("finished" if done else "running" if is_locked(d / ".lock")
                  else "interrupted" if (d / CHECKPOINT).is_file() else "not started")
        miou = json.loads((d / "metrics.json").read_text()).get("mean_iou") if done else None
        rows.append({"key": d.name, "label": cfg.get("label"), "profile": cfg.get("profile"),
                     "dataset": cfg.get("run", {}).get("dataset"), "seed": cfg.get("run", {}).get("seed"),
                     "status": status, "val mIoU (%)": None if miou is None else round(100 * miou, 2)})
    return pd.DataFrame(rows, columns=["key", "label", "profile", "dataset", "seed", "status", "val mIoU (%)"])


def runs_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lipstudy runs", description="List the runs in results/runs "
                                "(or $LIPSTUDY_RESULTS/runs) with their status and val mean IoU.")
    p.add_argument("--profile", help="only the runs of this profile (smoke, cpu, full, ...)")
    args = p.parse_args(argv)
    df = list_runs(args.profile)
    if df.empty:
        print(f"no runs in {results_dir() / 'runs'}")
    else:
        print(df.to_string(index=False))
    return 0
