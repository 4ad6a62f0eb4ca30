"""Evaluation throughput: per-image confusion matrices/s at 473x473 (LIP's usual test size) and
inference images/s of the evaluation path (lipstudy.evaluate.predict_logits: single scale, flip,
multi-scale). Writes results/benchmarks/eval_throughput.json. Times are torch.utils.benchmark.Timer
medians over at least ``--min-time`` seconds of calls per figure (benchmarks/_common.py).

    python benchmarks/eval_throughput.py [--device cuda] [--width 1] [--batch 32]
    python benchmarks/eval_throughput.py --amp bf16 --channels-last   # the CUDA path, on a CPU
"""
from __future__ import annotations

import argparse

import torch

from _common import device_info, seconds_per_call, timing_note, write_result
from lipstudy.evaluate import predict_logits
from lipstudy.labels import LIP_FLIP_PAIRS
from lipstudy.metrics import batched_confusion_matrix
from lipstudy.models import build_model
from lipstudy.runtime import precision_plan


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=float)
    p.add_argument("--size", type=int, default=473)
    p.add_argument("--model", default="deeplabv2")
    p.add_argument("--batch", type=int, help="images per forward pass in the batched row (default 32 on CUDA, 4 on CPU)")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"))
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--min-time", type=float, help="seconds of timed calls per figure (default 1 on CUDA, 0.5 on CPU)")
    p.add_argument("--out", help="result file (default results/benchmarks/eval_throughput.json)")
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    width = args.width or (1.0 if gpu else 0.125)
    s = args.size
    timing = {"min_run_time": args.min_time or (1.0 if gpu else 0.5), "warmup": 3 if gpu else 1}

    # Confusion matrices: a batch of 16 prediction / label maps at s x s.
    g = torch.Generator(device="cpu").manual_seed(0)
    pred = torch.randint(0, 20, (16, s, s), generator=g).to(dev)
    label = torch.randint(0, 20, (16, s, s), generator=g).to(dev)
    cm_s = seconds_per_call(lambda: batched_confusion_matrix(pred, label, 20), **timing)
    cms_per_s = 16 / cm_s
    print(f"per-image confusion matrices at {s}x{s}: {cms_per_s:.0f} /s ({dev.type})", flush=True)

    model = build_model(args.model, width=width).to(dev).eval()
    plan = precision_plan(dev, args.amp, args.channels_last)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    precision = dict(amp=args.amp, channels_last=args.channels_last)
    x = torch.randn(3, s, s, device=dev)
    rows = {}
    for name, kw in (("single", {}), ("flip", {"flip": True}), ("multi-scale 0.75/1/1.25", {"scales": (0.75, 1.0, 1.25)})):
        t = seconds_per_call(lambda: predict_logits(model, x, (s, s), flip_pairs=LIP_FLIP_PAIRS, **precision, **kw),
                             **timing)
        rows[name] = 1 / t
        print(f"{args.model} (width {width}) inference, {name}: {1 / t:.1f} images/s "
              f"({rows['single'] / rows[name]:.2f}x the single-scale time)", flush=True)
    # A server or a sweep scores many images at once: the network's forward pass on a batch.
    batch = args.batch or (32 if gpu else 4)
    xb = torch.randn(batch, 3, s, s, device=dev)
    if plan.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.no_grad(), plan.autocast_context(dev):
            model(xb)
    rows[f"batched forward (batch {batch})"] = batch / seconds_per_call(forward, **timing)
    print(f"{args.model} (width {width}) batched forward, batch {batch}: "
          f"{rows[f'batched forward (batch {batch})']:.1f} images/s (goal on an H100 at width 1: >= 1500)")
    write_result("eval_throughput", {
        **device_info(dev), "size": s, "model": args.model, "width": width,
        "precision": f"{'bf16 autocast' if plan.autocast else 'fp32'}, "
                     f"{'channels_last' if plan.channels_last else 'NCHW'}",
        "confusion_matrices_per_s": cms_per_s, "inference_images_per_s": rows,
        "timing": timing_note(**timing)}, args.out)


if __name__ == "__main__":
    main()
