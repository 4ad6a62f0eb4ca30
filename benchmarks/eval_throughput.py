"""Evaluation throughput: per-image confusion matrices/s at 473x473 (LIP's usual test size) and
inference images/s of the evaluation path (lipstudy.evaluate.predict_logits: single scale, flip,
multi-scale). Writes results/benchmarks/eval_throughput.json.

    python benchmarks/eval_throughput.py [--device cuda] [--width 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lipstudy.evaluate import predict_logits  # noqa: E402
from lipstudy.labels import LIP_FLIP_PAIRS  # noqa: E402
from lipstudy.metrics import batched_confusion_matrix  # noqa: E402
from lipstudy.models import build_model  # noqa: E402


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, reps, dev) -> float:
    fn()
    sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(dev)
    return (time.perf_counter() - t) / reps


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=float)
    p.add_argument("--size", type=int, default=473)
    p.add_argument("--model", default="deeplabv2")
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks" / "eval_throughput.json"))
    args = p.parse_args()
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    width = args.width or (1.0 if gpu else 0.125)
    s = args.size

    # Confusion matrices: a batch of 16 prediction / label maps at s x s.
    g = torch.Generator(device="cpu").manual_seed(0)
    pred = torch.randint(0, 20, (16, s, s), generator=g).to(dev)
    label = torch.randint(0, 20, (16, s, s), generator=g).to(dev)
    cm_s = timed(lambda: batched_confusion_matrix(pred, label, 20), 5 if gpu else 3, dev)
    cms_per_s = 16 / cm_s
    print(f"per-image confusion matrices at {s}x{s}: {cms_per_s:.0f} /s ({dev.type})", flush=True)

    model = build_model(args.model, width=width).to(dev).eval()
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(3, s, s, device=dev)
    reps = 10 if gpu else 2
    rows = {}
    for name, kw in (("single", {}), ("flip", {"flip": True}), ("multi-scale 0.75/1/1.25", {"scales": (0.75, 1.0, 1.25)})):
        t = timed(lambda: predict_logits(model, x, (s, s), flip_pairs=LIP_FLIP_PAIRS, **kw), reps, dev)
        rows[name] = 1 / t
        print(f"{args.model} (width {width}) inference, {name}: {1 / t:.1f} images/s "
              f"({rows['single'] / rows[name]:.2f}x the single-scale time)", flush=True)
    result = {"device": torch.cuda.get_device_name(dev) if gpu else f"CPU {platform.processor() or platform.machine()}",
              "torch": torch.__version__, "cuda": torch.version.cuda if gpu else None,
              "threads": torch.get_num_threads(), "size": s, "model": args.model, "width": width,
              "confusion_matrices_per_s": cms_per_s, "inference_images_per_s": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
