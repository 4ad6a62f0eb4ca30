"""Training and inference images/s of the four baselines (on CUDA also model FLOPs and MFU).

MFU = achieved model FLOP/s (forward + backward FLOPs counted by
torch.utils.flop_counter.FlopCounterMode) / the bf16 matmul rate measured in the same run on the
same device. Writes results/benchmarks/train_throughput.json. On CPU it runs small widths and
inputs (the cpu profile's scale); on CUDA the paper's (width 1, 321x321, batch 10).

    python benchmarks/train_throughput.py [--device cuda] [--width 1] [--size 321] [--batch 10]
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
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lipstudy.models import MODEL_NAMES, build_model  # noqa: E402
from lipstudy.train import compute_loss, make_optimizer, TrainConfig  # noqa: E402


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def matmul_rate(dev, n=8192, reps=20) -> float | None:
    """Measured bf16 matmul FLOP/s on ``dev`` (the denominator of MFU)."""
    if dev.type != "cuda":
        return None
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(dev)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def train_flops(model, x, y) -> int:
    """FLOPs of one forward + backward pass (FlopCounterMode counts matmuls and convolutions)."""
    with FlopCounterMode(display=False) as fc:
        loss = compute_loss(model(x), y, "off")
        loss.backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def bench(name, dev, width, size, batch, steps, warmup):
    cfg = TrainConfig(model=name, width=width, crop=size, batch_size=batch)
    model = build_model(name, width=width).to(dev)
    amp = dev.type == "cuda"
    if amp:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.randint(0, 20, (batch, size, size), device=dev)
    if amp:
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    flops = train_flops(model, x, y)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        loss = compute_loss(out, y, "off")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    train_s = (time.perf_counter() - t) / steps
    model.eval()
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
        for _ in range(warmup):
            model(x)
        sync(dev)
        t = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync(dev)
    infer_s = (time.perf_counter() - t) / steps
    return {"model": name, "train_images_per_s": batch / train_s, "infer_images_per_s": batch / infer_s,
            "train_step_s": train_s, "train_flops_per_step": flops, "train_flop_per_s": flops / train_s}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=float)
    p.add_argument("--size", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks" / "train_throughput.json"))
    args = p.parse_args()
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    width = args.width or (1.0 if gpu else 0.25)
    size = args.size or (321 if gpu else 96)
    batch = args.batch or 10
    steps = args.steps or (20 if gpu else 3)
    peak = matmul_rate(dev)
    rows = []
    for name in args.models:
        r = bench(name, dev, width, size, batch, steps, warmup=3 if gpu else 1)
        r["mfu"] = r["train_flop_per_s"] / peak if peak else None
        rows.append(r)
        mfu = f"  MFU {100 * r['mfu']:.1f}%" if peak else ""
        print(f"{name:10s} train {r['train_images_per_s']:8.1f} img/s  infer {r['infer_images_per_s']:8.1f} img/s  "
              f"{r['train_flops_per_step'] / 1e9:8.1f} GFLOP/step{mfu}", flush=True)
    base = rows[0]["train_images_per_s"]
    for r in rows:
        print(f"{r['model']:10s} training speed relative to {rows[0]['model']}: {r['train_images_per_s'] / base:.2f}x")
    if peak:
        print(f"measured bf16 matmul rate: {peak / 1e12:.1f} TFLOP/s")
    result = {
        "device": torch.cuda.get_device_name(dev) if gpu else f"CPU {platform.processor() or platform.machine()}",
        "torch": torch.__version__, "cuda": torch.version.cuda if gpu else None,
        "threads": torch.get_num_threads(), "width": width, "input_size": size, "batch": batch,
        "precision": "bf16 autocast, channels_last" if gpu else "fp32",
        "matmul_bf16_flop_per_s": peak, "models": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
