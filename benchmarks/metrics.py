"""Confusion-matrix throughput for 473x473 label maps (the LIP evaluation size); goal >= 1,000 maps/s per
CPU core. Prints figures, asserts nothing. Times are torch.utils.benchmark.Timer medians over at
least ``--min-time`` seconds of calls (benchmarks/_common.py).

    python benchmarks/metrics.py [--n 256] [--size 473] [--threads 1] [--min-time 1]
"""
import argparse

import numpy as np
import torch

from _common import seconds_per_call
from lipstudy import metrics as M


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=473)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per figure")
    args = ap.parse_args()

    def rate(fn, n: int) -> float:
        return n / seconds_per_call(fn, min_run_time=args.min_time)

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    t = rng.integers(0, 20, (args.n, args.size, args.size), dtype=np.uint8)
    p = np.where(rng.random(t.shape) < 0.7, t, rng.integers(0, 20, t.shape)).astype(np.uint8)
    t[:, :8] = 255
    tt, pt = torch.from_numpy(t), torch.from_numpy(p)
    rows = [
        ("numpy uint8, per image", rate(lambda: [M.confusion_matrix(p[i], t[i], 20) for i in range(args.n)], args.n)),
        ("numpy uint8, batched", rate(lambda: M.batched_confusion_matrix(p, t, 20), args.n)),
        ("torch cpu, batched", rate(lambda: M.batched_confusion_matrix(pt, tt, 20), args.n)),
        ("torch bincount path (GPU code) on cpu", rate(lambda: M._cm_torch(pt, tt, 20, 255, True), args.n)),
    ]
    if torch.cuda.is_available():
        tc, pc = tt.cuda(), pt.cuda()

        def gpu():
            M.batched_confusion_matrix(pc, tc, 20)
            torch.cuda.synchronize()

        rows.append((f"torch {torch.cuda.get_device_name()}, batched", rate(gpu, args.n)))
    print(f"{args.n} maps of {args.size}x{args.size}, 20 classes, {args.threads} thread(s)")
    for name, r in rows:
        print(f"  {name:<40} {r:10.0f} maps/s   {r / 1000:5.2f}x the 1,000 maps/s/core goal")


if __name__ == "__main__":
    main()
