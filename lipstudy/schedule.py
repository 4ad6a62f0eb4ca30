"""Training the book's runs ahead of its chapters, several side by side.

A chapter asks :func:`lipstudy.experiments.ensure` for each run it needs, one after another in its
kernel. Before the chapters execute, the book runner trains every run they will ask for
(:func:`lipstudy.experiments.book_runs`) and computes their evaluations
(:func:`book_evaluations`) with :func:`ensure_all`, in separate processes where that is faster; the
chapters then find everything in the cache.
"""
from __future__ import annotations

import os

from .experiments import PRETRAIN, Run, data_root, ensure, finished_key, get_profile, paper_runs, ppp_runs, \
    results_dir, run_epochs

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
