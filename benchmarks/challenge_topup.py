"""What the challenge top-up (lipstudy/data/synth/topup.py) costs each run: seconds of one evaluation
pass over the top-up's images against one over the validation split, same settings, one thread,
for the runs the profile ships (their slim checkpoints are committed, so nothing is trained).
The minimum of ``--repeats`` passes each. Prints figures, asserts nothing.

    python benchmarks/challenge_topup.py [--profile cpu] [--repeats 2]
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch

from lipstudy import committed
from lipstudy.data.roots import data_root, profile_datasets
from lipstudy.evaluate import EvalSettings, evaluate_checkpoint
from lipstudy.paths import runs_dir
from lipstudy.profiles import get_profile
from lipstudy.store import key_plan


def seconds(checkpoint: Path, root: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        evaluate_checkpoint(checkpoint, root, "val", "lip", EvalSettings(), out=Path(tmp), device="cpu",
                            progress=False)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    prof = get_profile(args.profile)
    for ds in profile_datasets(prof):  # a run key is read off its data: generated first
        data_root(prof, ds)
    committed.install(prof, log=lambda *a: None)
    roots = {"val": data_root(prof, "lip"), "challenge": data_root(prof, "challenge")}
    sizes = {name: len((root / "TrainVal_images" / "val_id.txt").read_text().split()) for name, root in roots.items()}
    print(f"profile {prof.name}: validation split {sizes['val']} images, challenge top-up {sizes['challenge']} images")
    for kind, method, run in committed.committed_runs(prof):
        if kind is not committed.SHIPPED:
            continue
        checkpoint = runs_dir() / key_plan(run, prof).key / "checkpoint.pt"
        best = {name: min(seconds(checkpoint, root) for _ in range(args.repeats)) for name, root in roots.items()}
        print(f"{method:40s} val {best['val']:6.1f} s   top-up {best['challenge']:5.1f} s   "
              f"ratio {best['challenge'] / best['val']:.3f}")


if __name__ == "__main__":
    main()
