"""Training and inference images/s of the four baselines, their model FLOPs and MFU.

MFU = achieved model FLOP/s (forward + backward FLOPs counted by
torch.utils.flop_counter.FlopCounterMode) / the matmul rate measured in the same run on the same
device, in the dtype the step computes in (bf16 under autocast, else fp32). Writes
results/benchmarks/train_throughput.json. The step is the trainer's: lipstudy.train's
precision_plan, optimizer and loss. On CPU it runs small widths and inputs (the cpu profile's
scale); on CUDA the paper's (width 1, 321x321, batch 10). ``--amp bf16 --channels-last`` runs the
CUDA precision path on a CPU. Times are torch.utils.benchmark.Timer medians (benchmarks/_common.py):
blocks of steps repeated for ``--min-time`` seconds, or exactly ``--steps`` steps.

    python benchmarks/train_throughput.py [--device cuda] [--width 1] [--size 321] [--batch 10]
        [--compile] [--models deeplabv2 attention] [--min-time 2] [--steps N]
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from _common import device_info, matmul_rate, seconds_per_call, timing_note, write_result
from lipstudy.models import MODEL_NAMES, build_model
from lipstudy.config import TrainConfig
from lipstudy.losses import training_loss
from lipstudy.runtime import precision_plan
from lipstudy.train import make_optimizer


def train_flops(model, x, y) -> int:
    """FLOPs of one forward + backward pass (FlopCounterMode counts matmuls and convolutions)."""
    with FlopCounterMode(display=False) as fc:
        loss = training_loss(model(x), y, "off")
        loss.backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def bench(name, dev, plan, width, size, batch, timing: dict, compile_model=False):
    """One model's training step and inference pass; ``timing``: seconds_per_call's keywords."""
    cfg = TrainConfig(model=name, width=width, crop=size, batch_size=batch)
    model = build_model(name, width=width).to(dev)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    # Data already on the device, as uint8-decoded batches would be: the step alone is timed.
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.randint(0, 20, (batch, size, size), device=dev)
    if plan.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    flops = train_flops(model, x, y)
    net = torch.compile(model) if compile_model else model

    def step():
        with plan.autocast_context(dev):
            out = net(x)
        loss = training_loss(out, y, "off")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_s = seconds_per_call(step, **timing)
    model.eval()

    def infer():
        with torch.no_grad(), plan.autocast_context(dev):
            net(x)

    infer_s = seconds_per_call(infer, **timing)
    return {"model": name, "train_images_per_s": batch / train_s, "infer_images_per_s": batch / infer_s,
            "train_step_s": train_s, "train_flops_per_step": flops, "train_flop_per_s": flops / train_s}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=float)
    p.add_argument("--size", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int, help="time exactly this many steps (default: as many as --min-time allows)")
    p.add_argument("--min-time", type=float, help="seconds of timed steps per figure (default 2 on CUDA, 1 on CPU)")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"))
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    p.add_argument("--out", help="result file (default results/benchmarks/train_throughput.json)")
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True
    plan = precision_plan(dev, args.amp, args.channels_last)
    width = args.width or (1.0 if gpu else 0.25)
    size = args.size or (321 if gpu else 96)
    batch = args.batch or 10
    timing = {"min_run_time": args.min_time or (2.0 if gpu else 1.0), "number": args.steps,
              "warmup": 3 if gpu else 1}
    peak = matmul_rate(dev, plan.autocast_dtype or torch.float32, min_run_time=min(timing["min_run_time"], 0.5))
    rows = []
    for name in args.models:
        r = bench(name, dev, plan, width, size, batch, timing, compile_model=args.compile)
        r["mfu"] = r["train_flop_per_s"] / peak
        rows.append(r)
        print(f"{name:10s} train {r['train_images_per_s']:8.1f} img/s  infer {r['infer_images_per_s']:8.1f} img/s  "
              f"{r['train_flops_per_step'] / 1e9:8.1f} GFLOP/step  MFU {100 * r['mfu']:.1f}%", flush=True)
    base = rows[0]["train_images_per_s"]
    for r in rows:
        print(f"{r['model']:10s} training speed relative to {rows[0]['model']}: {r['train_images_per_s'] / base:.2f}x")
    dtype = "bf16" if plan.autocast else "fp32"
    print(f"measured {dtype} matmul rate: {peak / 1e12:.3f} TFLOP/s")
    write_result("train_throughput", {
        **device_info(dev), "width": width, "input_size": size, "batch": batch,
        "precision": f"{'bf16 autocast' if plan.autocast else 'fp32'}, "
                     f"{'channels_last' if plan.channels_last else 'NCHW'}",
        "compiled": args.compile, "matmul_dtype": dtype, "matmul_flop_per_s": peak, "models": rows,
        "timing": timing_note(**timing),
    }, args.out)


if __name__ == "__main__":
    main()
