"""Training one run of the store into its folder: :func:`ensure` (the finished run, trained now
when it is missing, after the runs it starts from) and :func:`prepare_runs` (the configs that
``torchrun`` trains on several GPUs, which :func:`ensure` then finishes).

A run trains from its :func:`lipstudy.store.train_config` into ``results/runs/<key>/`` under a
lock, so two processes never train the same run; an interrupted run resumes from its checkpoint
(:func:`lipstudy.train.train`), and a finished one is never trained again. The book's runs are
trained side by side by :mod:`lipstudy.process_pool`.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from .atomic import atomic_write_json
from .data.roots import data_root
from .locks import file_lock, is_locked
from .paths import runs_dir
from .profiles import Profile, get_profile
from .runs import Run, book_runs, with_ancestors
from .runtime import CHECKPOINT
from .store import ENGINE_VERSION, KeyPlan, RunResult, is_finished, key_plan, load_result, train_config


def make_inputs(run: Run, profile, data=None) -> None:
    """Generate the data ``run`` and the runs it starts from train on, and fetch the ImageNet
    weights of a profile that starts from them: what its key is computed from."""
    prof = get_profile(profile)
    for r in run.lineage(prof):
        data_root(prof, r.dataset, data if r.dataset == "lip" else None)
        if prof.pretrained and r.stage == 1:
            from .models.imagenet import arch_of, weights_file

            weights_file(arch_of(r.model), download=True)


def _write_configs(run_dir: Path, plan: KeyPlan, prof: Profile, cfg) -> None:
    atomic_write_json(run_dir / "config.json", {
        "key": plan.key, "label": plan.run.label, "run": dataclasses.asdict(plan.run), "profile": prof.name,
        "profile_settings": dataclasses.asdict(prof),
        "data": {"root": str(plan.root), "fingerprint": plan.fingerprint},
        "init_run": plan.parent_key, "engine_version": ENGINE_VERSION, "train": cfg.to_dict()}, default=str)
    atomic_write_json(run_dir / "train_config.json", cfg.to_dict(), default=str)


def _start(plan: KeyPlan) -> str | None:
    """The checkpoint a run starts from: that of the run its key names as its parent."""
    return str(runs_dir() / plan.parent_key / CHECKPOINT) if plan.parent_key else None


def prepare_runs(profile, data=None, seeds=None) -> list[Path]:
    """Write ``train_config.json`` (and ``config.json``) into the folder of every run of the book
    that is not finished, each after the runs it starts from, and return those folders in that
    order: what ``torchrun ... -m lipstudy.cli train --config <folder>/train_config.json --out
    <folder>`` trains one by one on several GPUs (README). A stage-2 config names its stage-1 run's
    checkpoint, there once that run is trained. The configs say ``device: auto`` (each torchrun
    process takes its own GPU); :func:`ensure` later finds the trained checkpoints, evaluates and
    finishes the runs without training them again. A run another process is training is left alone."""
    prof = get_profile(profile)
    folders = []
    for run in with_ancestors(book_runs(prof, seeds), prof):
        make_inputs(run, prof, data)
        plan = key_plan(run, prof, data)
        run_dir = runs_dir() / plan.key
        if is_finished(run_dir) or is_locked(run_dir / ".lock"):
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_configs(run_dir, plan, prof, train_config(run, prof, plan.root, _start(plan), plan.pretrained))
        folders.append(run_dir)
    return folders


def ensure(run: Run, profile, data=None, device: str = "auto", progress: bool = True, train: bool = True,
           events=None) -> RunResult:
    """The finished run ``run`` under ``profile``: found in ``results/runs/<key>/``, or else
    trained now (its inputs first, then the run it starts from), resuming an interrupted attempt.
    ``data``: a real LIP folder in place of the synthetic benchmark (LIP runs only). ``train=False``
    (a book built from imported runs) refuses to train, naming the missing run. ``progress``: a
    tqdm bar; ``events``: the progress file a book runner follows (:mod:`lipstudy.progress`)."""
    from .provenance import now, run_record
    from .runtime import resolve_device
    from .train import train as train_stage

    prof = get_profile(profile)
    make_inputs(run, prof, data)
    found = load_result(run, prof, data, device)
    if found is not None:
        return found
    plan = key_plan(run, prof, data)
    if not train:
        raise RuntimeError(f"run {run.label!r} ({run.dataset}, seed {run.seed}) of profile {prof.name} is not in "
                           f"{runs_dir()} (key {plan.key}) and training is off: import the bundle that holds it "
                           f"(lipstudy runs import FILE) or train it")
    parent = run.parent(prof)
    if parent is not None:
        ensure(parent, prof, data, device, progress, train, events)

    run_dir = runs_dir() / plan.key
    run_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(run_dir / ".lock"):
        trained = not is_finished(run_dir)  # else finished by another process meanwhile
        if trained:
            started, t0 = now(), time.perf_counter()
            dev = resolve_device(device)
            cfg = train_config(run, prof, plan.root, _start(plan), plan.pretrained, device=str(dev))
            resumed = (run_dir / CHECKPOINT).is_file()
            _write_configs(run_dir, plan, prof, cfg)
            train_stage(cfg, run_dir, progress=progress, events=events)
            result = RunResult(run, prof, run_dir, json.loads((run_dir / "config.json").read_text()), {}, plan.root,
                               device)
            val = result.evaluation()
            train_seconds = float(result.train_log["seconds"].sum())
            atomic_write_json(run_dir / "provenance.json",
                              run_record(dev, started, time.perf_counter() - t0, resumed, train_seconds), default=str)
            # metrics.json last: its presence marks the run finished.
            atomic_write_json(run_dir / "metrics.json", val.metrics, default=str)
    return dataclasses.replace(load_result(run, prof, data, device), trained=trained)
