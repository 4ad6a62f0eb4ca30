"""``lipstudy runs``: list the runs, and move a profile's book between machines.

Train where the accelerator is, build the book where the reader is::

    lipstudy runs data --profile gpu                    # generate the profile's data, print fingerprints
    lipstudy runs train --profile gpu --bundle OUT.tar.xz   # train the book's runs, bundle as they finish
    lipstudy runs export --profile gpu -o OUT.tar.xz    # bundle the finished runs
    lipstudy runs import OUT.tar.xz                     # verify and move them into results/runs
    lipstudy book --profile gpu --no-train              # build the book from them
    lipstudy runs commit --profile cpu                  # the profile's committed runs (its synthetic backbone,
                                                        # its shipped runs) written from the finished ones
                                                        # here into results/backbones/ and results/shipped/
                                                        # (lipstudy.committed)
    lipstudy runs reference --profile cpu               # the finished book, evaluations only, committed
                                                        # as results/reference/<profile>.tar.xz (lipstudy.reference)
    lipstudy runs compare BUNDLE                        # this build against a reference build (lipstudy.compare)

``runs train`` rewrites its bundle after every finished run (in a background thread, so the
device keeps training), so a job stopped at any moment leaves a bundle of every run finished
before it (:mod:`lipstudy.bundles`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from pathlib import Path

import pandas as pd

from .bundles import CHECKPOINT_CHOICES, BundleError, import_bundle
from .export import export
from .store import is_finished
from .train_run import prepare_runs
from .locks import is_locked
from .paths import runs_dir
from .profiles import PROFILES, get_profile
from .runtime import CHECKPOINT


class BundleWriter:
    """Rewrites a bundle of what is finished whenever asked, one export at a time in a
    background thread; requests made during an export are served by one more export after it."""

    def __init__(self, export_once):
        self.export_once, self.lock = export_once, threading.Lock()
        self.pending, self.thread, self.error = False, None, None

    def request(self, *_):
        with self.lock:
            self.pending = True
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, daemon=True)
                self.thread.start()

    def _loop(self):
        while True:
            with self.lock:
                if not self.pending:
                    return
                self.pending = False
            try:
                self.export_once()
            except Exception as e:  # noqa: BLE001  a failed rewrite must not stop the training; reported at the end
                self.error = e

    def wait(self):
        while self.thread is not None and self.thread.is_alive():
            self.thread.join()


def train_and_bundle(profile, bundle=None, data=None, device: str = "auto", jobs: int | None = None, seeds=None,
                     checkpoints: str = "figures", train_committed: bool = False, log=print) -> None:
    """Train every run of ``profile``'s book with everything its chapters read
    (:func:`lipstudy.store.book_products`), ``jobs`` side by side, rewriting ``bundle`` after each
    finished run, and once more, complete, at the end. The committed runs are imported unless
    ``train_committed``."""
    from . import process_pool
    from .store import book_products
    from .runs import book_runs

    prof = get_profile(profile)
    jobs = jobs or prof.jobs or process_pool.training_jobs(device)
    t0 = time.perf_counter()
    log(f"[runs] training the {prof.name} profile's book, {jobs} runs at a time")
    writer = BundleWriter(lambda: export(prof, bundle, data, seeds, checkpoints, partial=True, device=device, log=log))

    def finished(run):
        log(f"[runs] {time.perf_counter() - t0:6.0f} s  finished {run.label} ({run.dataset}, seed {run.seed})")
        if bundle is not None:
            writer.request()

    process_pool.ensure_all(book_runs(prof, seeds), prof, data, device, jobs=jobs,
                            products=book_products(prof, data, seeds), on_done=finished,
                            train_committed=train_committed, log=log)
    writer.wait()
    if writer.error is not None:
        log(f"[runs] a rewrite of the bundle failed (written again now): {writer.error}")
    if bundle is not None:
        export(prof, bundle, data, seeds, checkpoints, device=device, log=log)
    log(f"[runs] the {prof.name} profile's book trained in {time.perf_counter() - t0:.0f} s")


def generate_data(profile, data=None, log=print) -> dict:
    """Generate (or find) every dataset of a profile; ``{dataset: fingerprint}``."""
    from .data.roots import data_fingerprint, data_root, profile_datasets

    prof, out = get_profile(profile), {}
    for ds in profile_datasets(prof):
        t0 = time.perf_counter()
        root = data_root(prof, ds, data if ds == "lip" else None)
        out[ds] = data_fingerprint(root)
        log(f"[runs] {ds}: {root} (fingerprint {out[ds][:16]}..., {time.perf_counter() - t0:.0f} s)")
    return out


def list_runs(profile: str | None = None) -> pd.DataFrame:
    """Every run folder under results/runs: key, label, profile, status, val mean IoU."""
    rows = []
    folder = runs_dir()
    for d in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not (d / "config.json").is_file():
            continue
        cfg = json.loads((d / "config.json").read_text())
        if profile and cfg.get("profile") != profile:
            continue
        done = is_finished(d)
        status = ("finished" if done else "running" if is_locked(d / ".lock")
                  else "interrupted" if (d / CHECKPOINT).is_file() else "not started")
        miou = json.loads((d / "metrics.json").read_text()).get("mean_iou") if done else None
        rows.append({"key": d.name, "label": cfg.get("label"), "profile": cfg.get("profile"),
                     "dataset": cfg.get("run", {}).get("dataset"), "seed": cfg.get("run", {}).get("seed"),
                     "status": status, "val mIoU (%)": None if miou is None else round(100 * miou, 2)})
    return pd.DataFrame(rows, columns=["key", "label", "profile", "dataset", "seed", "status", "val mIoU (%)"])


def list_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lipstudy runs", description="List the runs in results/runs "
                                "(or $LIPSTUDY_RESULTS/runs) with their status and val mean IoU.")
    p.add_argument("--profile", help="only the runs of this profile (smoke, cpu, full, ...)")
    p.add_argument("--prepare", action="store_true",
                   help="write train_config.json for every unfinished run of the profile's book and print "
                        "the run folders in training order, one per line (to train each under torchrun)")
    p.add_argument("--data", help="with --prepare: a real LIP root, as `lipstudy book --data`")
    p.add_argument("--seeds", nargs="+", type=int, help="with --prepare: the book's seeds (default the profile's)")
    args = p.parse_args(argv)
    if args.prepare:
        if not args.profile:
            p.error("--prepare needs --profile")
        try:
            folders = prepare_runs(args.profile, args.data, args.seeds)
        except (ValueError, FileNotFoundError) as err:
            print(f"lipstudy runs: {err}", file=sys.stderr)
            return 2
        print(f"{len(folders)} runs to train, in this order (each after the runs it starts from):", file=sys.stderr)
        for folder in folders:
            print(folder)
        return 0
    if args.data or args.seeds:
        p.error("--data and --seeds apply with --prepare only")
    df = list_runs(args.profile)
    if df.empty:
        print(f"no runs in {runs_dir()}")
    else:
        print(df.to_string(index=False))
    return 0


def runs_main(argv: list[str]) -> int:
    commands = ("data", "train", "export", "import", "commit", "reference", "compare")
    if not argv or argv[0] not in commands:
        return list_main(argv)
    p = argparse.ArgumentParser(prog=f"lipstudy runs {argv[0]}", description=__doc__.split("\n\n")[0])
    if argv[0] == "commit":  # results/backbones/<key>.tar.xz and results/shipped/<key>.tar.xz
        p.add_argument("--profile", default="cpu", choices=[n for n, q in PROFILES.items() if q.pretrain or q.shipped])
        a = p.parse_args(argv[1:])
        from .committed import export as export_committed

        try:
            export_committed(a.profile)
        except (BundleError, ValueError) as e:
            print(f"lipstudy runs commit: {e}", file=sys.stderr)
            return 2
        return 0
    if argv[0] == "compare":  # this build against a reference build (lipstudy.compare)
        p.add_argument("bundle",
                       help="a reference build (`lipstudy runs reference`), e.g. results/reference/cpu.tar.xz")
        p.add_argument("--data", help="a real LIP root, as the runs were trained with")
        a = p.parse_args(argv[1:])
        from .compare import compare, report
        from .reference import read_reference

        try:
            print(report(compare(read_reference(a.bundle).manifest["profile"], a.bundle, a.data)))
        except (BundleError, ValueError, KeyError, FileNotFoundError) as e:
            print(f"lipstudy runs compare: {e}", file=sys.stderr)
            return 2
        return 0
    if argv[0] == "import":
        p.add_argument("bundle", help="a bundle written by `lipstudy runs export` or `lipstudy runs train`")
    else:
        p.add_argument("--profile", default="cpu", choices=PROFILES)
        p.add_argument("--seeds", nargs="+", type=int, help="default: the profile's seeds")
    p.add_argument("--data", help="a real LIP root, as the runs were trained with (default: the synthetic benchmark)")
    if argv[0] in ("train", "export"):
        p.add_argument("--device", default="auto")
        p.add_argument("--checkpoints", default="figures", choices=CHECKPOINT_CHOICES,
                       help="checkpoints in the bundle: of the runs the figures come from (default), none, all")
    if argv[0] == "export":
        p.add_argument("-o", "--out", required=True, help="the bundle to write (.tar.xz)")
        p.add_argument("--partial", action="store_true", help="leave out unfinished runs instead of refusing")
    if argv[0] == "train":
        p.add_argument("--bundle", help="rewrite this bundle as runs finish")
        p.add_argument("--jobs", type=int, help="runs side by side (default: the profile's, else the process pool's)")
        p.add_argument("--compile", action="store_true", help="torch.compile every network (an execution setting)")
        p.add_argument("--train-committed", action="store_true",
                       help="train the runs the checkout commits (its backbone, shipped runs or book) instead of "
                            "importing them")
    a = p.parse_args(argv[1:])
    try:
        if argv[0] == "import":
            import_bundle(a.bundle, a.data)
        elif argv[0] == "data":
            generate_data(a.profile, a.data)
        elif argv[0] == "export":
            export(a.profile, Path(a.out), a.data, a.seeds, a.checkpoints, a.partial, a.device)
        elif argv[0] == "reference":  # results/reference/<profile>.tar.xz: the finished book, evaluations only
            from .reference import write_reference

            write_reference(a.profile, a.data, a.seeds)
        else:
            prof = dataclasses.replace(get_profile(a.profile), compile=True) if a.compile else a.profile
            train_and_bundle(prof, a.bundle and Path(a.bundle), a.data, a.device, a.jobs, a.seeds, a.checkpoints,
                             a.train_committed)
    except (BundleError, ValueError, FileNotFoundError) as e:
        print(f"lipstudy runs {argv[0]}: {e}", file=sys.stderr)
        return 2
    return 0
