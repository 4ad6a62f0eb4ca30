"""What every benchmark shares: device timing, the measured matmul rate (MFU's denominator), a
description of the machine, and the atomic write of ``results/benchmarks/<name>.json``."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "results" / "benchmarks"


def sync(device: torch.device) -> None:
    """Wait for the device: CUDA kernels are asynchronous, so a timer must not stop before them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, reps: int, device: torch.device, warmup: int = 1) -> float:
    """Mean seconds per call of ``fn`` over ``reps`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / reps


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 10) -> float:
    """Measured dense matmul FLOP/s on ``device`` in ``dtype``: the denominator of MFU, measured in
    the same run so that a figure never leans on a datasheet peak the machine cannot reach."""
    n = n or (8192 if device.type == "cuda" else 512)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    seconds = timed(lambda: a @ b, reps, device, warmup=3)
    return 2 * n ** 3 / seconds


def device_info(device: torch.device) -> dict:
    """Device name, torch and CUDA versions and CPU threads, for a result file."""
    gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if gpu else f"CPU {platform.processor() or platform.machine()}"
    return {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda if gpu else None,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


def write_result(name: str, result: dict, out: str | Path | None = None) -> Path:
    """Write ``result`` as ``results/benchmarks/<name>.json`` (or ``out``) via a temporary file."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path
