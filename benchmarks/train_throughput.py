"""Training and inference images/s of the four baselines, their model FLOPs and MFU.

MFU = achieved model FLOP/s (forward + backward FLOPs counted by
torch.utils.flop_counter.FlopCounterMode) / the matmul rate measured in the same run on the same
device, in the dtype the step computes in (bf16 under autocast, else fp32). Writes
results/benchmarks/train_throughput.json. The step is the trainer's: lipstudy.train's
precision_plan, optimizer and loss. On CPU it runs small widths and inputs (the cpu profile's
scale); on CUDA the paper's (width 1, 321x321, batch 10). ``--amp bf16 --channels-last`` runs the
CUDA precision path on a CPU. Times are torch.utils.benchmark.Timer medians (benchmarks/_common.py):
blocks of steps repeated for ``--min-time`` seconds, or exactly ``--steps`` steps.

``--profile cpu`` times a profile's own training step instead: ``lipstudy.train.setup`` on the
TrainConfig the run cache gives each book run (the cpu profile: batch norm, AdamW, channels_last,
width 1/16, 128-px crops, batch 10, fp32), then ``lipstudy.train.train_step``, for every model and
the synthetic backbone, at one thread by default (the book trains two one-thread runs side by
side). Its input is one augmented batch of the profile's own data, already in memory: the figure
is the step, not the loader (``benchmarks/train_profile.py`` times the loader too). Writes
results/benchmarks/train_throughput_<profile>.json.

    python benchmarks/train_throughput.py [--device cuda] [--width 1] [--size 321] [--batch 10]
        [--compile] [--models deeplabv2 attention] [--min-time 2] [--steps N]
    python benchmarks/train_throughput.py --profile cpu [--threads 1]
"""
from __future__ import annotations

import argparse
import os

import torch
from torch.utils.flop_counter import FlopCounterMode

from _common import (device_info, interleaved, make_stage, matmul_rate, profile_config, real_batch,
                     seconds_per_call, timing_note, write_result)
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


MATMUL_N = 512  # the CPU matmul of _common.matmul_rate


def bench_profile(profile: str, name: str, repeats: int, number: int) -> dict:
    """The profile's own training step of ``name`` (lipstudy.train.setup + train_step) on one
    augmented batch of its data, its inference pass on that batch, and the matmul rate in the
    step's dtype, timed in turn (blocks of ``number`` calls, ``repeats`` times), so that MFU is a
    ratio of two rates measured under the same load."""
    from lipstudy.train import train_step

    stage = make_stage(profile_config(profile, name, workers=0))
    cfg = stage.cfg
    x, y = real_batch(stage)
    xf = x.contiguous(memory_format=torch.channels_last) if stage.plan.channels_last else x
    flops = train_flops(stage.net, xf, y)
    dtype = stage.plan.autocast_dtype or torch.float32
    a, b = (torch.randn(MATMUL_N, MATMUL_N).to(dtype) for _ in range(2))

    def infer():
        with torch.no_grad(), stage.plan.autocast_context(stage.device):
            stage.model.eval()
            stage.model(xf)
            stage.model.train()

    s = interleaved({"train": lambda: train_step(stage, x, y, cfg.lr), "infer": infer,
                     "matmul": lambda: a @ b}, repeats, number)
    n = cfg.batch_size
    peak = 2 * MATMUL_N ** 3 / s["matmul"]
    return {"model": name, "train_images_per_s": n / s["train"], "infer_images_per_s": n / s["infer"],
            "train_step_s": s["train"], "train_flops_per_step": flops, "train_flop_per_s": flops / s["train"],
            "matmul_flop_per_s": peak, "mfu": flops / s["train"] / peak}


def main_profile(args) -> None:
    """``--profile``: every model's (and the backbone's) step as the profile's runs train it."""
    from lipstudy.config import TrainConfig
    from lipstudy.models import PRETRAIN_MODEL
    from lipstudy.profiles import get_profile
    from lipstudy.runtime import precision_plan

    torch.set_num_threads(args.threads or 1)
    dev = torch.device("cpu")
    cfg = profile_config(args.profile)
    plan = precision_plan(dev, cfg.amp, cfg.channels_last)
    dtype = "bf16" if plan.autocast else "fp32"
    repeats, number = args.repeats, args.steps or 3
    peak = matmul_rate(dev, plan.autocast_dtype or torch.float32)
    # the synthetic backbone too, where the profile pretrains one (by default, or when named)
    models = [m for m in args.models if m != PRETRAIN_MODEL]
    if get_profile(args.profile).pretrain and (args.models == list(MODEL_NAMES) or PRETRAIN_MODEL in args.models):
        models = [PRETRAIN_MODEL] + models
    rows = []
    for name in models:
        r = bench_profile(args.profile, name, repeats, number)
        rows.append(r)
        print(f"{name:10s} train {r['train_images_per_s']:7.1f} img/s  infer {r['infer_images_per_s']:7.1f} img/s  "
              f"{r['train_flops_per_step'] / 1e9:6.2f} GFLOP/step  MFU {100 * r['mfu']:.1f}%", flush=True)
    print(f"measured {dtype} matmul rate at {torch.get_num_threads()} thread(s): {peak / 1e9:.1f} GFLOP/s "
          "(each model's MFU uses the rate measured between its own steps)")
    write_result(f"train_throughput_{args.profile}", {
        **device_info(dev), "profile": args.profile, "width": cfg.width, "input_size": cfg.crop,
        "batch": cfg.batch_size, "precision": f"{dtype}, {'channels_last' if plan.channels_last else 'NCHW'}",
        "step": "lipstudy.train.setup + train_step (batch norm, AdamW), one augmented batch of the profile's data "
                "in memory", "compiled": False, "matmul_dtype": dtype, "matmul_flop_per_s": peak,
        "models": rows, "config": TrainConfig.to_dict(cfg), "load_average": os.getloadavg(),
        "timing": f"training step, inference pass and a {MATMUL_N}x{MATMUL_N} matmul timed in turn: median of "
                  f"{repeats} blocks of {number} calls each, after 2 warm-up calls",
    }, args.out)


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
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES),
                   help="with --profile also 'backbone' (the synthetic pretraining network; included by default)")
    p.add_argument("--out", help="result file (default results/benchmarks/train_throughput.json)")
    p.add_argument("--profile", help="time this profile's own training step (cpu): see the module docstring")
    p.add_argument("--threads", type=int, help="with --profile: torch threads (default 1, as the book trains)")
    p.add_argument("--repeats", type=int, default=7, help="with --profile: interleaved blocks per model")
    args = p.parse_args(argv)
    if args.profile:
        return main_profile(args)
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
