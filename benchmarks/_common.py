"""What every benchmark shares: one way to time a call (``torch.utils.benchmark.Timer``), the
measured matmul rate (MFU's denominator), a description of the machine, and the atomic write of
``results/benchmarks/<name>.json``."""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "results" / "benchmarks"

from lipstudy.atomic import atomic_write  # noqa: E402  (needs REPO on the path when run from a checkout)


def seconds_per_call(fn, *, min_run_time: float = 0.2, number: int | None = None, warmup: int = 1) -> float:
    """Seconds per call of ``fn``, measured by ``torch.utils.benchmark.Timer`` with this process's
    thread count (Timer's own default is one thread). Timer synchronises the accelerator before
    reading the clock, so asynchronous CUDA work is counted.

    By default ``blocked_autorange``: calls are grouped in blocks long enough for the timer's own
    overhead to vanish, blocks are repeated for at least ``min_run_time`` seconds, and the median
    block is reported (robust to a busy machine). ``number=k`` times one block of exactly k calls
    instead (a fixed budget, or one sample of an interleaved comparison); ``Timer.timeit`` first
    makes max(k // 100, 2) untimed calls of its own. ``warmup`` untimed calls come before either
    (allocator, cuDNN / oneDNN kernel selection, lazy initialisation).
    """
    for _ in range(warmup):
        fn()
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    if number is not None:
        return timer.timeit(number).median
    return timer.blocked_autorange(min_run_time=min_run_time).median


def interleaved(fns: dict, repeats: int, number: int, warmup: int = 2) -> dict:
    """Seconds per call of each function of ``fns``, timed in turn (A, B, C, A, B, C, ...): the
    median over ``repeats`` blocks of ``number`` calls. On a shared machine every variant then sees
    the same load, so their ratio holds where their absolute times do not."""
    import statistics
    import time

    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(number):
                f()
            times[k].append((time.perf_counter() - t) / number)
    return {k: statistics.median(v) for k, v in times.items()}


def timing_note(min_run_time: float = 0.2, number: int | None = None, warmup: int = 1) -> str:
    """How :func:`seconds_per_call` timed a figure (its keywords), in words for a result file."""
    how = (f"one block of {number} calls" if number
           else f"blocked_autorange, median block, >= {min_run_time:g} s of calls")
    return f"torch.utils.benchmark.Timer, {how}, after {warmup} warm-up call(s)"


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int | None = None, min_run_time: float = 0.5) -> float:
    """Measured dense matmul FLOP/s on ``device`` in ``dtype``: the denominator of MFU, measured in
    the same run so that a figure never leans on a datasheet peak the machine cannot reach."""
    n = n or (8192 if device.type == "cuda" else 512)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    seconds = seconds_per_call(lambda: a @ b, min_run_time=min_run_time, warmup=3)
    return 2 * n ** 3 / seconds


def device_info(device: torch.device) -> dict:
    """Device name, torch and CUDA versions and CPU threads, for a result file."""
    gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if gpu else f"CPU {platform.processor() or platform.machine()}"
    return {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda if gpu else None,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


def profile_config(profile: str = "cpu", model: str = "deeplabv2", loss: str = "off", **over):
    """The TrainConfig the run store gives ``profile``'s book run of ``model`` (the synthetic
    backbone for "backbone"; stage 2 when ``loss`` is not "off"), on the profile's data (generated
    if missing), from random weights instead of the checkpoint it starts from (speed does not
    depend on the weights), with ``over`` replaced."""
    import dataclasses

    from lipstudy.data.roots import PRETRAIN, data_root
    from lipstudy.profiles import get_profile
    from lipstudy.runs import Run
    from lipstudy.store import train_config

    prof = get_profile(profile)
    run = Run(model, dataset=PRETRAIN) if model == "backbone" else Run(model, loss, stage=1 if loss == "off" else 2)
    return dataclasses.replace(train_config(run, prof, data_root(prof, run.dataset), device="cpu"), **over)


def make_stage(cfg, trainer=None):
    """A training stage of ``cfg`` built by the trainer (``lipstudy.train`` unless another module
    with its ``setup`` is given), in train mode, writing into a temporary folder."""
    import tempfile

    import lipstudy.train

    stage = (trainer or lipstudy.train).setup(cfg, tempfile.mkdtemp(prefix="lipstudy_bench_"))
    stage.net.train()
    return stage


def real_batch(stage, n: int | None = None):
    """One augmented batch of the stage's own data (epoch 0, its first ``n`` images)."""
    from lipstudy.batches import collate

    return collate([stage.data[(0, i)] for i in range(n or stage.cfg.batch_size)])


def write_result(name: str, result: dict, out: str | Path | None = None) -> Path:
    """Write ``result`` as ``results/benchmarks/<name>.json`` (or ``out``) via a temporary file."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    atomic_write(path, json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return path
