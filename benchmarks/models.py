"""Parameter counts and CPU forward speed of the four baselines.

Prints, for each model: learnable parameters at width 1 (21 classes, the published
architectures) and at width 0.25 (20 classes, the CPU profile), and eval-mode forward
images/s on 1x3x128x128 at width 0.25 on this machine's CPU (a torch.utils.benchmark.Timer
median over at least ``--min-time`` seconds of calls, benchmarks/_common.py). No pass/fail.

    python benchmarks/models.py [--width 0.25] [--size 128] [--min-time 1] [--threads N]
"""
from __future__ import annotations

import argparse

import torch

from _common import seconds_per_call
from lipstudy.models import MODEL_NAMES, build_model, num_parameters


def images_per_second(model: torch.nn.Module, x: torch.Tensor, min_run_time: float) -> float:
    def forward():
        with torch.inference_mode():
            model(x)

    return x.shape[0] / seconds_per_call(forward, min_run_time=min_run_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per model")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    print(f"CPU forward, eval mode, 1x3x{args.size}x{args.size}, width {args.width}, "
          f"{torch.get_num_threads()} threads, Timer median over >= {args.min_time:g} s")
    print(f"{'model':<10} {'params w=1 (21 cls)':>20} {f'params w={args.width}':>16} {'images/s':>10} "
          f"{'vs deeplabv2':>13}")
    rows = []
    for name in MODEL_NAMES:
        with torch.device("meta"):
            full = num_parameters(build_model(name, num_classes=21))
        model = build_model(name, width=args.width).eval()
        rows.append((name, full, num_parameters(model), images_per_second(model, x, args.min_time)))
    reference = dict((r[0], r[3]) for r in rows)["deeplabv2"]
    for name, full, thin, ips in rows:
        print(f"{name:<10} {full:>20,} {thin:>16,} {ips:>10.1f} {ips / reference:>12.2f}x")


if __name__ == "__main__":
    main()
