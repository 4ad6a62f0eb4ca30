"""The synthetic backbone the checkout ships: the cpu profiles' stand-in for downloaded ImageNet weights.

Every stage-1 run of the cpu profiles starts from one VGG-16-BN backbone trained on a synthetic split
of its own (:mod:`lipstudy.models.pretrain`, ``Profile.pretrain``), as the paper's runs start from one
ImageNet model (Section 5.1) that the authors downloaded rather than trained. Training it is a fifth
of the cpu book (19 minutes of 89 on 2 cores of an AVX2 machine) and decides no verdict, so the
checkout keeps the trained backbone as a one-run bundle, ``results/backbones/<key>.tar.xz``
(:mod:`lipstudy.bundles`: every file hashed; on import its key is recomputed here from the profile,
the engine version and the generated pretraining split), and the book imports it before training.
Its provenance (commit, machine, minutes, training log) comes with it, and the reproducibility
chapter says which backbone a build used. ``$LIPSTUDY_TRAIN_BACKBONE=1`` trains it here instead;
``lipstudy runs backbone`` writes the file from the backbone a results folder holds.

A checkout whose settings, engine or generated data give the backbone another key finds no file of
that key and trains its own, as before: the shipped file is never used for settings it was not
trained with.
"""
from __future__ import annotations

from pathlib import Path

from .store import is_finished, key_plan
from .paths import committed_results, runs_dir
from .profiles import get_profile
from .runs import BACKBONE
from .committed import install_run, run_origin

TRAIN_ENV = "LIPSTUDY_TRAIN_BACKBONE"
"""Set (to anything but "" or "0") to train the backbone here rather than import the committed one."""


def committed_backbone(key: str) -> Path:
    """Where the checkout keeps the backbone of run key ``key``."""
    return committed_results("backbones") / f"{key}.tar.xz"


def install(profile, data=None, log=print) -> str:
    """Make ``profile``'s backbone a finished run of ``results/runs`` from the committed file when it
    is not one yet. Returns what happened: "none" (the profile has no synthetic pretraining),
    "finished" (already here), "imported", or "train" (no committed file of this key, a file
    refused, or ``$LIPSTUDY_TRAIN_BACKBONE``: the scheduler trains it, as for any run)."""
    prof = get_profile(profile)
    if not prof.pretrain:
        return "none"
    return install_run(BACKBONE, prof, data, committed_backbone(key_plan(BACKBONE, prof, data).key), TRAIN_ENV,
                       "backbone", log)


def export_backbone(profile, log=print) -> Path:
    """Write the finished backbone of ``profile`` in ``results/runs`` to its committed file (weights
    and config, its evaluation, its provenance and training log); returns the path."""
    from .bundles import export

    prof = get_profile(profile)
    if not prof.pretrain:
        raise ValueError(f"profile {prof.name!r} has no synthetic pretraining: no backbone to export")
    plan = key_plan(BACKBONE, prof)
    out = committed_backbone(plan.key)
    out.parent.mkdir(parents=True, exist_ok=True)
    export(prof, out, runs=[BACKBONE], checkpoints="all", log=log)
    return out


def origin(profile, data=None) -> dict | None:
    """Where this results folder's backbone of ``profile`` came from, for the book: ``key``,
    ``imported`` (the committed file's name, or None when trained here), ``commit`` and ``machine``
    that trained it, ``minutes`` of its training, ``val_miou``. None when it is not finished (or the
    profile has none). Does not generate data: an absent pretraining split means no backbone."""
    from .data.roots import synthetic_root

    prof = get_profile(profile)
    if not prof.pretrain or not (synthetic_root(prof, "pretrain") / "manifest.json").is_file():
        return None
    run_dir = runs_dir() / key_plan(BACKBONE, prof, data).key
    return run_origin(run_dir) if is_finished(run_dir) else None
