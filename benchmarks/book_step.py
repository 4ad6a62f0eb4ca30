"""The cpu profile's training as the book runs it, this checkout's package against a commit's.

Two one-thread runs side by side (the book's layout on 2 cores), each training the cpu profile's
own config of one model (its data, recipe, crop, batch, loader worker) for a few epochs through
the package's public ``train()``: the commit's package (extracted with ``git archive``, default
1e251f8, the trainer before issue 26) and this checkout's, alternated. Reported: each epoch's
images/s of the pair as the trainers log them, the wall seconds of a whole ``train()`` call
(setup, workers, every epoch), their ratios, and whether the two packages trained bit-identical
weights (they should: the levers of issue 26 change where memory and decoded images live, not
the arithmetic).

    python benchmarks/book_step.py [--commit 1e251f8] [--model deeplabv2] [--epochs 3] [--repeats 2]

Writes results/benchmarks/book_step.json. The numbers are this machine's; the ratios are the point.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

from _common import REPO, RESULTS, profile_config, write_result

_CHILD = r"""
import dataclasses, json, sys, time
import torch
torch.set_num_threads(1)
try:
    from lipstudy.config import TrainConfig
except ImportError:  # before issue 19 the config lived in the trainer
    from lipstudy.train import TrainConfig
from lipstudy.train import load_checkpoint, train
wanted = json.loads(sys.argv[1])
known = {f.name for f in dataclasses.fields(TrainConfig)}
cfg = TrainConfig(**{k: v for k, v in wanted.items() if k in known})
t = time.perf_counter()
path = train(cfg, sys.argv[2], progress=False)
seconds = time.perf_counter() - t
ck = load_checkpoint(path)
print(json.dumps({"seconds": seconds, "log": ck["log"], "dropped": sorted(set(wanted) - known)}))
"""


def extract(commit: str, into: Path) -> Path:
    """The commit's ``lipstudy`` package, unpacked under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "src.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", commit, "lipstudy"], stdout=f, check=True)
    with tarfile.open(archive) as t:
        t.extractall(into, filter="data")
    return into


def pair(package: Path, cfg: dict, out: Path) -> list[dict]:
    """Two runs of ``cfg`` side by side, one thread each, with ``package`` first on the path."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(package)}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(cfg), str(out / str(i))], cwd=str(out),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    runs = []
    for p in procs:
        stdout, stderr = p.communicate()
        if p.returncode:
            raise RuntimeError(f"{package}: {stderr[-3000:]}")
        runs.append(json.loads(stdout.strip().splitlines()[-1]))
    return runs


def same_weights(a: Path, b: Path) -> bool:
    from lipstudy.checkpoints import load_checkpoint

    x, y = load_checkpoint(a), load_checkpoint(b)
    return x["model"].keys() == y["model"].keys() and all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--commit", default="1e251f8", help="the package to compare against")
    p.add_argument("--model", default="deeplabv2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", help="result file (default results/benchmarks/book_step.json)")
    args = p.parse_args(argv)

    cfg = profile_config("cpu", args.model, epochs=args.epochs).to_dict()
    if not Path(cfg["data_root"]).is_dir():
        raise SystemExit(f"{cfg['data_root']}: the cpu profile's data is not here; run "
                         f"'python -m lipstudy.cli runs data --profile cpu' first")
    work = Path(tempfile.mkdtemp(prefix="lipstudy_book_step_"))
    packages = {"A": extract(args.commit, work / "old"), "B": REPO}
    print(f"{args.model}, the cpu profile's config, {args.epochs} epochs, two 1-thread runs side by side; "
          f"A = {args.commit}'s package, B = this checkout's; alternated {args.repeats} times", flush=True)
    results = {"A": [], "B": []}
    for r in range(args.repeats):
        for name in ("A", "B"):
            out = work / f"{name}{r}"
            out.mkdir()
            runs = pair(packages[name], cfg, out)
            by_epoch = [sum(run["log"][e]["images_per_s"] for run in runs) for e in range(args.epochs)]
            wall = max(run["seconds"] for run in runs)
            results[name].append({"images_per_s_by_epoch": by_epoch, "wall_s": wall, "dropped": runs[0]["dropped"],
                                  "load_average": os.getloadavg()})
            print(f"  {name} repeat {r}: pair images/s by epoch " + ", ".join(f"{v:.1f}" for v in by_epoch)
                  + f"; train() {wall:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    med = {k: {"images_per_s_by_epoch": [statistics.median(x["images_per_s_by_epoch"][e] for x in v)
                                         for e in range(args.epochs)],
               "wall_s": statistics.median(x["wall_s"] for x in v)} for k, v in results.items()}
    ratio_epochs = [b / a for a, b in zip(med["A"]["images_per_s_by_epoch"], med["B"]["images_per_s_by_epoch"])]
    ratio_wall = med["A"]["wall_s"] / med["B"]["wall_s"]
    identical = same_weights(work / "A0" / "0" / "checkpoint.pt", work / "B0" / "0" / "checkpoint.pt")
    print(f"ratio B / A by epoch: " + ", ".join(f"{x:.3f}" for x in ratio_epochs)
          + f"; whole train() {ratio_wall:.3f}x; bit-identical weights: {identical}", flush=True)
    # the data folder relative to the repository: the file is committed and read on other machines
    shown = {**cfg, "data_root": os.path.relpath(cfg["data_root"], REPO)}
    doc = {"commit": args.commit, "model": args.model, "epochs": args.epochs, "config": shown,
           "dropped_for_commit": results["A"][0]["dropped"], "runs": results, "median": med,
           "ratio_by_epoch": ratio_epochs, "ratio_train_call": ratio_wall, "bit_identical": identical,
           "cpu_count": os.cpu_count()}
    write_result("book_step", doc, Path(args.out) if args.out else RESULTS / "book_step.json")


if __name__ == "__main__":
    main()
