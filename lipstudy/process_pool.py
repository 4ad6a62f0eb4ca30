"""The book's runs trained ahead of its chapters, several side by side in a pool of processes.

A chapter asks for each run it needs, one after another in its kernel. Before the chapters
execute, the book runner trains every run they will ask for (:func:`lipstudy.runs.book_runs`) and
makes what they read of them (:func:`lipstudy.store.book_products`) with :func:`ensure_all`, in
separate processes where that is faster (each run through :func:`lipstudy.train_run.ensure`); the
chapters then find everything in the store. :func:`progress_plan` tells the progress printer what
is left to train.
"""
from __future__ import annotations

import os

from . import committed
from .data.roots import PRETRAIN, data_root
from .paths import runs_dir
from .profiles import get_profile
from .progress import PlannedRun
from .runs import Run, book_runs, epochs, with_ancestors
from .store import ATR, CHALLENGE, finished_key, run_data
from .train_run import ensure

# Relative cost of one epoch per model (images/s of DeepLabV2 / of the model, width 0.0625, 1
# thread): the longest runs start first so that two workers finish together.
_COST = {"backbone": 0.9, "segnet": 1.1, "fcn8s": 0.9, "deeplabv2": 1.0, "attention": 1.5}


def training_jobs(device: str = "auto") -> int:
    """Runs trained side by side: two one-thread runs on a CPU (more images per second than one
    two-thread run on 2 cores: DESIGN.md's log, benchmarks/operating_point.py), one at a time on a GPU."""
    from .runtime import resolve_device

    cores = os.cpu_count() or 1
    return 1 if resolve_device(device).type == "cuda" or cores < 2 else 2


def _ensure_in_worker(args) -> str:
    run, profile, data, device, threads, products, train, events = args
    import torch

    torch.set_num_threads(threads)
    res = ensure(run, profile, data, device, progress=False, train=train, events=events)
    for p in products:
        p.make(res)
    return res.dir.name


def _cost(run: Run, prof, n_products: int) -> float:
    """Rough minutes of a task (training + its products), to order the ready tasks."""
    per_epoch = _COST.get(run.model, 1.0) * {"lip": 1.0, "ppp": 0.4, PRETRAIN: 1.5}[run.dataset]
    return per_epoch * epochs(run, prof) + 0.3 * n_products


def pending_tasks(runs, profile, data=None, products=None) -> tuple[dict, dict]:
    """The tasks left to do: ``{run: [products]}`` for every run not yet finished (with the
    products it will need, made right after it trains) and every finished run that lacks a
    product, and ``{run: the run it waits for}`` among those tasks. The runs' data must exist."""
    prof = get_profile(profile)
    tasks: dict = {}
    for r in runs:
        if finished_key(r, prof, data) is None:
            tasks[r] = []
            dep = r.parent(prof)
            while dep is not None and dep not in tasks and finished_key(dep, prof, data) is None:
                tasks[dep] = []  # a missing dependency (the backbone) is a task too
                dep = dep.parent(prof)
    for r, wanted in (products or {}).items():
        key = finished_key(r, prof, data)
        wanted = [p for p in wanted if key is None or not p.made(runs_dir() / key)]
        if wanted:
            tasks.setdefault(r, []).extend(wanted)
    waits = {r: d for r in tasks if (d := r.parent(prof)) in tasks}
    return tasks, waits


def ensure_all(runs, profile, data=None, device: str = "auto", jobs: int = 1, products=None, on_done=None,
               train: bool = True, train_committed: bool = False, events=None, on_plan=None, log=print) -> int:
    """Train every missing run of ``runs`` and make ``products`` ({run: [Evaluation or FigureSet]},
    e.g. :func:`lipstudy.store.book_products`), ``jobs`` at a time in separate processes of
    ``cpu_count // jobs`` threads each: the one place where a build's runs are made. First the data
    they need is generated and the committed runs are imported (:func:`lipstudy.committed.install`;
    ``train_committed``: trained here instead); then ``on_plan()`` is called (what is left to train
    is known), and the tasks run. ``train=False`` (or a committed book) trains nothing: a missing
    run fails by name. ``events``: the progress file the training runs report to
    (:mod:`lipstudy.progress`). ``on_done(run)`` is called after each task (a run with its
    products), e.g. to write a bundle of what is finished. On 2 CPU cores two one-thread runs side
    by side train more images per second than one run on two threads
    (benchmarks/operating_point.py measures both).

    A task starts as soon as the run it starts from is finished (a stage-2 run waits for its
    stage-1 run only, not for every stage-1 run), longest chain first, so no core idles at the end
    of a "wave". The pretrained backbone, which every stage-1 run waits for, trains alone with
    every thread. Runs and products already made cost nothing; the store's locks make this
    safe beside a chapter asking for the same. Returns the number of tasks it had to do."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    prof = get_profile(profile)
    everything = with_ancestors(runs, prof)
    wanted = [p for ps in (products or {}).values() for p in ps]
    datasets = {r.dataset for r in everything} | {"atr" for p in wanted if p == ATR} \
        | {"challenge" for p in wanted if p == CHALLENGE}
    for ds in sorted(datasets):  # data first, once, with every core: the runs' keys are computed from it
        data_root(prof, ds, data if ds == "lip" else None)
    installed = committed.install(prof, data, everything, products, train_here=train_committed, log=log)
    train = train and "book" not in installed  # a profile's committed book: nothing trains here
    tasks, waits = pending_tasks(runs, prof, data, products)
    if on_plan is not None:
        on_plan()
    if not tasks:
        return 0

    # Priority: the task's own cost plus the longest chain of tasks waiting on it.
    children: dict = {}
    for r, d in waits.items():
        children.setdefault(d, []).append(r)

    def chain(r) -> float:
        return _cost(r, prof, len(tasks[r])) + max((chain(c) for c in children.get(r, [])), default=0.0)

    priority = {r: chain(r) for r in tasks}
    order = sorted(tasks, key=lambda r: -priority[r])
    cores = os.cpu_count() or 1
    if jobs <= 1:
        done: set = set()
        while len(done) < len(order):  # the dependencies first, else longest chain first
            r = next(r for r in order if r not in done and (waits.get(r) is None or waits[r] in done))
            res = ensure(r, prof, data, device, progress=False, train=train, events=events)
            for p in tasks[r]:
                p.make(res)
            done.add(r)
            if on_done is not None:
                on_done(r)
        return len(tasks)
    # Spawned (no forked torch thread pools), one task per process, and not daemonic as a
    # multiprocessing.Pool's are: a run's DataLoader workers and the data generator's pool are its children.
    done, running = set(), {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        while len(done) < len(order):
            ready = [r for r in order if r not in done and r not in running.values()
                     and (waits.get(r) is None or waits[r] in done)]
            for r in ready:
                alone = r.dataset == PRETRAIN  # everything else waits for it: give it every thread
                if len(running) >= jobs or (alone and running) or any(
                        v.dataset == PRETRAIN for v in running.values()):
                    break
                threads = cores if alone else max(1, cores // jobs)
                running[pool.submit(_ensure_in_worker, (r, prof, data, device, threads, tasks[r], train, events))] = r
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in finished:
                f.result()  # a failed run stops the book here, with its error
                r = running.pop(f)
                done.add(r)
                if on_done is not None:
                    on_done(r)
    return len(tasks)


def progress_plan(profile, data=None, seeds=None) -> list[PlannedRun]:
    """The book's training runs (each after the runs it starts from), their training steps, and
    whether each is finished: the N of "run i of N" and the steps behind the book's time left."""
    from .data.datasets import open_dataset

    prof = get_profile(profile)
    sizes, out = {}, []
    for run in with_ancestors(book_runs(prof, seeds), prof):
        if run.dataset not in sizes:
            sizes[run.dataset] = len(open_dataset(run_data(run, prof, data), "train", kind=run.kind))
        out.append(PlannedRun(run.label, run.kind, run.seed, run.model, run.stage,
                              sizes[run.dataset] // prof.batch * epochs(run, prof),
                              finished_key(run, prof, data) is not None))
    return out
