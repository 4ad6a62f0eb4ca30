"""The study's runs: the named runs each chapter needs, their data, and the run cache (the
profiles they run under are in :mod:`lipstudy.profiles`).

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
from .profiles import CPU_LR, CPU_RECIPE, PROFILES, Profile, get_profile  # noqa: F401  (re-exported)
from .atomic import atomic_write_json

ENGINE_VERSION = "1"
"""Bump when a change to training or evaluation changes results: every run key changes with it."""

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = "checkpoint.pt"


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
    settings = profile.training_settings(backbone=run.dataset == PRETRAIN)
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


def _load_result(run, prof, run_dir, data, device, reused: bool = True) -> RunResult:
    from .progress import report_reused

    if reused:  # a run trained in this call has its own "[lipstudy] trained" line
        report_reused(run_dir)
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
            workers=prof.workers, checkpoint_every_steps=prof.checkpoint_every_steps,
            channels_last=prof.channels_last, **prof.run_recipe(backbone=run.dataset == PRETRAIN))
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
    return _load_result(run, prof, run_dir, root, device, reused=False)


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
