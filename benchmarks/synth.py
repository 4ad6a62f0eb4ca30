"""Rendering speed of the synthetic benchmark: images/s for max_side None (LIP scale) and 160
(the CPU profile), with 1 and 2 workers, and the projected time for a LIP-sized benchmark
(50,462 images). Also reports CPU time per image, which is what the projection scales with
when the machine is shared. Usage: python benchmarks/synth.py [--n 300] [--n-full 40]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from lipstudy.data import synth

LIP_IMAGES = 50_462


def measure(n: int, max_side, workers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), os.times()
        synth.generate(f"{tmp}/ds", n, 0, 0, seed=0, max_side=max_side, workers=workers, progress=False)
        wall = time.perf_counter() - t0
        c1 = os.times()
        cpu = (c1.user - c0.user) + (c1.system - c0.system) + (c1.children_user - c0.children_user) \
            + (c1.children_system - c0.children_system)
    return n / wall, cpu / n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=300, help="images per measurement at max_side 160")
    p.add_argument("--n-full", type=int, default=40, help="images per measurement at LIP scale")
    a = p.parse_args()
    print(f"{'max_side':>9} {'workers':>7} {'img/s':>8} {'cpu ms/img':>10} {'50,462 images':>14}")
    for max_side, n in ((160, a.n), (None, a.n_full)):
        base = None
        for workers in (1, 2):
            rate, cpu = measure(n, max_side, workers)
            base = base or rate
            print(f"{str(max_side):>9} {workers:>7} {rate:8.1f} {1000 * cpu:10.2f} "
                  f"{LIP_IMAGES / rate / 60:11.1f} min   (x{rate / base:.2f} vs 1 worker)")


if __name__ == "__main__":
    main()
