"""Where the cpu profile's training step spends its time, and what each lever buys (issue 26).

Every figure is the cpu profile's own step: ``lipstudy.train.setup`` on the TrainConfig the run
cache gives a book run (batch norm, AdamW, channels_last, width 1/16, 128-px crops, batch 10, its
synthetic data), then ``lipstudy.train.train_step``. Weights start at random (the pretrained
backbone is not needed for speed). Parts (``--parts``, default all):

- ``profile``: torch.profiler over steps of every model, the synthetic backbone and DeepLabV2 with
  the structure-sensitive loss, at one thread (the book trains two one-thread runs side by side)
  and at two. Batches are loaded in the training process (workers=0) so that loading is counted:
  decoding, augmentation and collation. Time is split into categories; a backward node counts with
  the forward op that made it (autograd sequence numbers), "Python and framework" is the step's
  wall time not inside any operator.
- ``levers``: DeepLabV2's step at one thread with each lever against the unchanged step,
  interleaved A, B, A, B in one process (median of blocks of steps), so that both see the same
  load; levers that are process-wide (malloc, thread layout) run in child processes, alternated.

The step as the book runs it (whole runs, loader and all, against commit 1e251f8's package) is
``benchmarks/book_step.py``'s.

Writes ``results/benchmarks/train_profile.json`` (merged by part, so parts can be rerun alone).

    python benchmarks/train_profile.py [--parts profile levers] [--steps 8] [--repeats 5]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from _common import (REPO, RESULTS, device_info, interleaved, make_stage, matmul_rate, profile_config,
                     real_batch, write_result)

MODELS = ("backbone", "segnet", "fcn8s", "deeplabv2", "attention")
# Levers the trainer and the schedule use (bit-identical weights, measured faster); the rest were
# measured and left out: slower, no faster, or they change the numbers (the lead's call).
ADOPTED = {"glibc malloc keeps freed memory (keep_freed_memory)",
           "decoded images cached in memory (loader work per image)",
           "thread layout: two 1-thread runs side by side vs one 2-thread run (images/s of the machine)"}
CATEGORIES = ("convolution", "batch norm", "ReLU", "dropout", "pooling", "resize", "loss", "optimizer",
              "data loading", "other operators", "Python and framework")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    return {**device_info(torch.device("cpu")), "cpu": cpu_name(), "isa": torch.backends.cpu.get_cpu_capability(),
            "load_average": os.getloadavg()}


# ----------------------------------------------------------------------------- the cpu profile's stage

def cpu_config(model: str = "deeplabv2", loss: str = "off", **over):
    return profile_config("cpu", model, loss, **over)


def step_flops(stage, x, y) -> int:
    """Forward + backward FLOPs of one step (FlopCounterMode: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    from lipstudy.losses import training_loss

    x = x.contiguous(memory_format=torch.channels_last) if stage.plan.channels_last else x
    with FlopCounterMode(display=False) as fc:
        training_loss(stage.net(x), y, stage.cfg.loss, stage.cfg.dataset).backward()
    stage.model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


# ----------------------------------------------------------------------------- part 1: the profile

def _category(name: str) -> str:
    n = name.lower()
    for cat, keys in (("convolution", ("conv",)), ("batch norm", ("batch_norm", "batchnorm")),
                      ("ReLU", ("relu", "threshold")), ("dropout", ("dropout", "bernoulli")),
                      ("pooling", ("pool",)), ("resize", ("upsample", "interpolate"))):
        if any(k in n for k in keys):
            return cat
    return "other operators"


class _Scoped(torch.nn.Module):
    """The network, its forward pass marked for the profiler."""

    def __init__(self, net):
        super().__init__()
        self.inner = net

    def forward(self, x):
        with torch.profiler.record_function("forward"):
            return self.inner(x)


def profile_step(model: str, loss: str, threads: int, steps: int, top: int = 12, profile: str = "cpu") -> dict:
    """Shares of the profile's step by category, and the operators that take the most time."""
    import lipstudy.train as T
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as profiler

    torch.set_num_threads(threads)
    cfg = profile_config(profile, model, loss, workers=0)
    stage = make_stage(cfg)
    x0, y0 = real_batch(stage)
    flops = step_flops(stage, x0, y0)
    stage.net = _Scoped(stage.net)
    plain_loss = T.training_loss

    def scoped_loss(*a, **k):
        with record_function("loss"):
            return plain_loss(*a, **k)

    T.training_loss = scoped_loss
    try:
        from lipstudy.batches import ShardedBatches

        order = iter(ShardedBatches(len(stage.data), cfg.batch_size, cfg.seed, 0))

        def step():
            with record_function("data loading"):
                x, y = real_batch_of(stage, next(order))
            T.train_step(stage, x, y, cfg.lr)

        for _ in range(3):
            step()
        with profiler(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            wall = time.perf_counter() - t0
    finally:
        T.training_loss = plain_loss
    events = prof.events()
    scopes = {"forward", "loss", "data loading"}
    seq_cat: dict[int, str] = {}
    op_time = {c: 0.0 for c in CATEGORIES}
    forward_ops, backward_ops = [], []  # operators inside the forward / loss scopes; everything else
    for e in events:
        parent = e.cpu_parent
        if parent is not None and parent.name in ("forward", "loss") and e.name not in scopes:
            forward_ops.append((parent.name, e))
        elif parent is None and e.name not in scopes:
            backward_ops.append(e)
    for scope, e in forward_ops:
        cat = "loss" if scope == "loss" else _category(e.name)
        op_time[cat] += e.time_range.elapsed_us()
        if e.sequence_nr >= 0 and (cat != "other operators" or e.sequence_nr not in seq_cat):
            seq_cat[e.sequence_nr] = cat
    data_us = sum(e.time_range.elapsed_us() for e in events if e.name == "data loading")
    op_time["data loading"] += data_us
    for e in backward_ops:
        us = e.time_range.elapsed_us()
        if e.name.startswith("Optimizer."):
            op_time["optimizer"] += us
        elif e.name.startswith("autograd::engine::evaluate_function"):
            node = e.name.split(": ", 1)[-1]
            op_time[seq_cat.get(e.sequence_nr, _category(node))] += us
        else:
            op_time["other operators"] += us
    scoped = sum(e.time_range.elapsed_us() for e in events if e.name in ("forward", "loss"))
    inside = sum(e.time_range.elapsed_us() for _, e in forward_ops)
    outside = sum(e.time_range.elapsed_us() for e in backward_ops)
    op_time["Python and framework"] = max(0.0, wall * 1e6 - data_us - outside - inside)
    total = sum(op_time.values())
    table = sorted(prof.key_averages(), key=lambda a: -a.self_cpu_time_total)[:top]
    step_s = wall / steps
    return {
        "model": model, "loss": loss, "threads": threads, "steps": steps, "step_s": step_s,
        "images_per_s": cfg.batch_size / step_s, "train_flops_per_step": flops,
        "shares": {c: op_time[c] / total for c in CATEGORIES},
        "forward_scope_overhead_share": (scoped - inside) / total,
        "top_operators": [{"name": a.key, "calls_per_step": a.count / steps,
                           "self_ms_per_step": a.self_cpu_time_total / 1e3 / steps,
                           "self_share": a.self_cpu_time_total / (wall * 1e6)} for a in table],
    }


def real_batch_of(stage, keys):
    from lipstudy.batches import collate

    return collate([stage.data[k] for k in keys])


def part_profile(args) -> dict:
    from lipstudy.profiles import get_profile

    models = [m for m in args.models if m != "backbone" or get_profile(args.profile).pretrain]
    rows = []
    for threads in args.threads:
        for model, loss in [(m, "off") for m in models] + [("deeplabv2", "paper")] * ("deeplabv2" in models):
            r = profile_step(model, loss, threads, args.steps, profile=args.profile)
            rows.append(r)
            shares = "  ".join(f"{c} {100 * s:.0f}%" for c, s in r["shares"].items() if s >= 0.005)
            print(f"{model:9s} {loss:5s} {threads} thr  {r['images_per_s']:6.1f} img/s  {shares}", flush=True)
    return {"profile": args.profile, "rows": rows}


# ----------------------------------------------------------------------------- part 2: levers

def _optimizer_variant(stage, **kw):
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]}
              for g in stage.optimizer.param_groups]
    import inspect

    accepted = inspect.signature(type(stage.optimizer)).parameters
    defaults = {k: v for k, v in stage.optimizer.defaults.items() if k in accepted and k not in ("foreach", "fused")}
    stage.optimizer = type(stage.optimizer)(groups, **{**defaults, **kw})
    return stage


def _same_weights(a, b, steps: int, x, y) -> bool:
    """Whether two stages (same seed) end ``steps`` steps with bit-identical weights."""
    import lipstudy.train as T

    torch.manual_seed(1)
    for _ in range(steps):
        T.train_step(a, x, y, a.cfg.lr)
    torch.manual_seed(1)
    for _ in range(steps):
        T.train_step(b, x, y, b.cfg.lr)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


class _RandDropout(torch.nn.Module):
    """Dropout whose mask is ``torch.rand_like(x) < 1 - p``: the same masks on every CPU, where
    ``torch.nn.Dropout``'s Bernoulli draws take MKL's generator on Intel CPUs and PyTorch's own,
    one double per element, elsewhere (so a run's dropout masks, and its weights, depend on the
    CPU's vendor)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) * (1.0 / (1.0 - self.p))


def _rand_dropout(cfg, x, y):
    stage = make_stage(cfg)
    for name, m in list(stage.model.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, torch.nn.Dropout):
                setattr(m, child_name, _RandDropout(child.p))
    return stage, x[:cfg.batch_size], y[:cfg.batch_size], None


def _variant_step(nchw_loss: bool = False, sync: bool = True):
    """train_step (CPU, one process) with the logits made NCHW-contiguous before the loss, or
    without its two host round trips (the finiteness check and the float of the loss)."""
    from lipstudy.losses import training_loss

    def bind(stage):
        def step(x, y):
            for g in stage.optimizer.param_groups:
                g["lr"] = stage.cfg.lr * g["lr_mult"]
            out = stage.net(x.contiguous(memory_format=torch.channels_last))
            if nchw_loss:
                out = {"out": out["out"].contiguous(), "aux": [a.contiguous() for a in out["aux"]]}
            loss = training_loss(out, y, stage.cfg.loss, stage.cfg.dataset)
            if sync and not torch.isfinite(loss):
                raise FloatingPointError("diverged")
            stage.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stage.optimizer.step()
            stage.step += 1
            return float(loss.detach()) if sync else loss.detach()
        return step

    return bind


def _score_resolution_step(stage):
    """DeepLabV2's step with the loss at the score map's resolution (labels subsampled by nearest
    neighbour, DeepLab's released recipe) instead of on logits upsampled to the crop."""
    import torch.nn.functional as F

    import lipstudy.models.deeplab as D
    from lipstudy.losses import training_loss

    def step(x, y):
        for g in stage.optimizer.param_groups:
            g["lr"] = stage.cfg.lr * g["lr_mult"]
        resize, D.resize = D.resize, (lambda t, size: t)
        try:
            out = stage.net(x.contiguous(memory_format=torch.channels_last))
        finally:
            D.resize = resize
        side = out["out"].shape[-2:]
        ys = F.interpolate(y[:, None].float(), size=side, mode="nearest")[:, 0].long()
        loss = training_loss(out, ys, stage.cfg.loss, stage.cfg.dataset)
        stage.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stage.optimizer.step()
        stage.step += 1
        return float(loss.detach())

    return step


def lever_pair(name: str, make_b, args, images_b: int | None = None, bit_identical_check: bool = True,
               number: int | None = None, repeats: int | None = None) -> dict:
    """DeepLabV2's step (A, unchanged) against the step with a lever (B), interleaved."""
    import lipstudy.train as T

    torch.set_num_threads(1)
    cfg = cpu_config("deeplabv2")
    a = make_stage(cfg)
    x, y = real_batch(a, 20)
    b, xb, yb, step_b = make_b(cfg, x, y)
    xa, ya = x[:cfg.batch_size], y[:cfg.batch_size]
    same = None
    if bit_identical_check:
        a2 = make_stage(cfg)
        b2, xb2, yb2, _ = make_b(cfg, x, y)
        # a lever that changes the batch changes what is trained
        same = False
        if xb2.shape == xa.shape:
            same = _same_weights(a2, b2, 3, xa, ya) if step_b is None else _same_with(a2, b2, step_b, xa, ya)
    fb = (lambda: T.train_step(b, xb, yb, cfg.lr)) if step_b is None else (lambda: step_b(b)(xb, yb))
    s = interleaved({"A": lambda: T.train_step(a, xa, ya, cfg.lr), "B": fb}, repeats or args.repeats,
                    number or args.number)
    ips_a, ips_b = cfg.batch_size / s["A"], (images_b or cfg.batch_size) / s["B"]
    print(f"  {name:42s} A {ips_a:6.1f}  B {ips_b:6.1f} img/s  ratio {ips_b / ips_a:.3f}"
          f"  bit-identical {same}", flush=True)
    return {"lever": name, "images_per_s_without": ips_a, "images_per_s_with": ips_b, "ratio": ips_b / ips_a,
            "bit_identical": same, "load_average": os.getloadavg()}


def _same_with(a, b, step_b, x, y) -> bool:
    import lipstudy.train as T

    torch.manual_seed(1)
    for _ in range(3):
        T.train_step(a, x, y, a.cfg.lr)
    torch.manual_seed(1)
    f = step_b(b)
    for _ in range(3):
        f(x, y)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


_PURE_STEPS = """
import json, resource, time, torch
torch.set_num_threads({threads})
import train_profile as P
import lipstudy.train as T
if not {keep}:
    T.keep_freed_memory = lambda: False
stage = P.make_stage(P.cpu_config("deeplabv2"))
x, y = P.real_batch(stage)
for _ in range(2):
    T.train_step(stage, x, y, stage.cfg.lr)
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range({steps}):
    T.train_step(stage, x, y, stage.cfg.lr)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"step_s": (time.perf_counter() - t) / {steps}, "page_faults": (r1.ru_minflt - r0.ru_minflt) / {steps},
                  "system_s": (r1.ru_stime - r0.ru_stime) / {steps}, "user_s": (r1.ru_utime - r0.ru_utime) / {steps}}}))
"""


def alternated_children(variants: dict, repeats: int, extra: dict | None = None) -> dict:
    """Each variant a list of child programs run together (side by side); variants alternated;
    the median over repeats of the images/s the programs make together. ``extra``, if given,
    collects the median per step of the children's page faults and user / system CPU seconds."""
    per = {k: [] for k in variants}
    counters = {k: {"page_faults": [], "system_s": [], "user_s": []} for k in variants}
    for _ in range(repeats):
        for k, (codes, threads, images) in variants.items():
            procs = [subprocess.Popen([sys.executable, "-c", c], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads),
                                                      "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'benchmarks'}"})
                     for c in codes]
            total = 0.0
            for p in procs:
                out, err = p.communicate()
                if p.returncode:
                    raise RuntimeError(err[-3000:])
                r = json.loads(out.strip().splitlines()[-1])
                total += images / r["step_s"]
                for c in counters[k]:
                    counters[k][c].append(r[c])
            per[k].append(total)
    if extra is not None:
        extra.update({k: {c: statistics.median(v) for c, v in cs.items()} for k, cs in counters.items()})
    return {k: statistics.median(v) for k, v in per.items()}


def conv_padding(args) -> list[dict]:
    """The cpu DeepLabV2's 3x3 convolution shapes (width 1/16: stages of 8, 8, 16, 32, 32 channels
    at 128, 65, 33, 17, 17 px; the ASPP's fc6 at 64) against the same layer with twice the
    channels: does a thin layer cost less, or is it padded to the vector width?"""
    torch.set_num_threads(1)
    rows = []
    for c_in, c_out, side in ((3, 8, 128), (8, 8, 128), (8, 8, 65), (8, 16, 33), (16, 16, 33), (16, 32, 17),
                              (32, 32, 17), (32, 64, 17)):
        fns, flops = {}, {}
        for k, (ci, co) in (("thin", (c_in, c_out)), ("double", (c_in if c_in == 3 else 2 * c_in, 2 * c_out))):
            conv = torch.nn.Conv2d(ci, co, 3, padding=1).to(memory_format=torch.channels_last)
            x = torch.randn(10, ci, side, side).contiguous(memory_format=torch.channels_last).requires_grad_()

            def f(conv=conv, x=x):
                conv(x).sum().backward()

            fns[k], flops[k] = f, 3 * 2 * 10 * side * side * ci * co * 9
        s = interleaved(fns, args.repeats, 3)
        rows.append({"layer": f"{c_in}->{c_out} @ {side}px", "ms_thin": 1e3 * s["thin"], "ms_double": 1e3 * s["double"],
                     "gflop_per_s_thin": flops["thin"] / s["thin"] / 1e9,
                     "gflop_per_s_double": flops["double"] / s["double"] / 1e9,
                     "time_ratio_double_over_thin": s["double"] / s["thin"],
                     "flop_ratio": flops["double"] / flops["thin"]})
        r = rows[-1]
        print(f"  conv {r['layer']:16s} thin {r['ms_thin']:6.2f} ms ({r['gflop_per_s_thin']:5.1f} GFLOP/s)  "
              f"2x channels {r['ms_double']:6.2f} ms ({r['gflop_per_s_double']:5.1f} GFLOP/s)  "
              f"time x{r['time_ratio_double_over_thin']:.2f} for FLOPs x{r['flop_ratio']:.0f}", flush=True)
    return rows


def data_levers(args) -> list[dict]:
    """The loader's work per image: decoding + augmentation, against augmentation of cached
    decoded images (the same pixels), interleaved."""
    from lipstudy.data.datasets import DecodedCache

    torch.set_num_threads(1)
    stage = make_stage(cpu_config("deeplabv2", workers=0))
    base = stage.data.base.base if isinstance(stage.data.base, DecodedCache) else stage.data.base
    cached = DecodedCache(base)
    n = 50
    for i in range(n):
        cached[i]
    tf = stage.data.transform
    epoch = [0]

    def fresh():
        epoch[0] += 1
        for i in range(n):
            tf(base[i], epoch[0], i)

    def from_cache():
        for i in range(n):
            tf(cached[i], epoch[0], i)

    def decode_only():
        for i in range(n):
            base[i]

    s = interleaved({"decode+augment": fresh, "augment cached": from_cache, "decode": decode_only}, args.repeats, 1)
    same = all(torch.equal(tf(base[i], 3, i)["image"], tf(cached[i], 3, i)["image"]) for i in range(10))
    ms = {k: 1e3 * v / n for k, v in s.items()}
    print(f"  loader work per image: decode + augment {ms['decode+augment']:.2f} ms, augment of a cached image "
          f"{ms['augment cached']:.2f} ms (decode alone {ms['decode']:.2f} ms); identical pixels {same}", flush=True)
    return [{"lever": "decoded images cached in memory (loader work per image)", "ms_per_image_without":
             ms["decode+augment"], "ms_per_image_with": ms["augment cached"], "ms_decode": ms["decode"],
             "ratio": ms["decode+augment"] / ms["augment cached"], "bit_identical": same,
             "load_average": os.getloadavg()}]


def eval_levers(args, n: int = 40) -> list[dict]:
    """The evaluator's single-scale pass over ``n`` val images (decoded and normalised already, as
    its loader worker hands them over) of DeepLabV2 after a few training steps: as the book
    evaluates on CPU (NCHW), against channels_last; and its cost per image against a training
    step's."""
    import copy

    import lipstudy.train as T
    from lipstudy.data.datasets import open_dataset
    from lipstudy.evaluate import predict_logits
    from lipstudy.transforms import EvalTransform

    torch.set_num_threads(1)
    cfg = cpu_config("deeplabv2")
    stage = make_stage(cfg)
    x, y = real_batch(stage)
    for _ in range(3):
        T.train_step(stage, x, y, cfg.lr)
    nchw = copy.deepcopy(stage.model).to(memory_format=torch.contiguous_format).eval()
    nhwc = copy.deepcopy(stage.model).to(memory_format=torch.channels_last).eval()
    val = open_dataset(cfg.data_root, "val", kind=cfg.dataset)
    items = [EvalTransform()(val[i]) for i in range(n)]

    def run(model, cl):
        return [predict_logits(model, it["image"], it["size"], channels_last=cl).argmax(0) for it in items]

    same = all(torch.equal(a, b) for a, b in zip(run(nchw, False), run(nhwc, True)))
    s = interleaved({"A": lambda: run(nchw, False), "B": lambda: run(nhwc, True), "step": lambda: T.train_step(
        stage, x, y, cfg.lr)}, args.repeats, 1, warmup=1)
    ms = {k: 1e3 * v / (n if k != "step" else cfg.batch_size) for k, v in s.items()}
    print(f"  evaluation per val image: {ms['A']:.2f} ms NCHW (the book's), {ms['B']:.2f} ms channels_last, ratio "
          f"{ms['A'] / ms['B']:.3f}, identical predictions {same}; a training step per image {ms['step']:.2f} ms",
          flush=True)
    return [{"lever": "evaluation in channels_last (val, single scale)", "ms_per_image_without": ms["A"],
             "ms_per_image_with": ms["B"], "ratio": ms["A"] / ms["B"], "bit_identical": None,
             "identical_predictions": same, "training_ms_per_image": ms["step"], "load_average": os.getloadavg()}]


def part_levers(args) -> dict:
    import lipstudy.train as T

    rows = []

    def same_stage(**over):
        def make(cfg, x, y):
            st = make_stage(dataclasses.replace(cfg, **over))
            n = st.cfg.batch_size
            return st, x[:n], y[:n], None
        return make

    def optim(**kw):
        def make(cfg, x, y):
            return _optimizer_variant(make_stage(cfg), **kw), x[:10], y[:10], None
        return make

    def custom(fn):
        def make(cfg, x, y):
            return make_stage(cfg), x[:10], y[:10], fn
        return make

    def want(name):
        return not args.levers or any(k in name for k in args.levers)

    def pair(name, make, **kw):
        if want(name):
            rows.append(lever_pair(name, make, args, **kw))

    print("levers on DeepLabV2's step, 1 thread (A = the cpu profile's step, B = with the lever):", flush=True)
    pair("AdamW foreach=True", optim(foreach=True))
    pair("AdamW fused=True", optim(fused=True))
    pair("no finiteness check / float per step", custom(_variant_step(sync=False)))
    pair("logits NCHW-contiguous before the loss", custom(_variant_step(nchw_loss=True)))
    pair("NCHW layout (channels_last off)", same_stage(channels_last=False))
    pair("loss at the score map's resolution (DeepLab's released recipe)", custom(_score_resolution_step))
    pair("no dropout", same_stage(dropout=0.0))
    pair("dropout masks from torch.rand (the same on every CPU vendor)", _rand_dropout)
    pair("batch 20", same_stage(batch_size=20), images_b=20)
    pair("batch 5", same_stage(batch_size=5), images_b=5)
    pair("bf16 autocast", same_stage(amp="bf16"), number=1, repeats=3)
    if want("torch.compile (inductor)"):
        rows.append(compile_lever(args))
    if want("decoded images cached in memory (loader work per image)"):
        rows.extend(data_levers(args))
    if want("evaluation in channels_last (val, single scale)"):
        rows.extend(eval_levers(args))

    print("process-wide levers (child processes, alternated):", flush=True)
    steps = 12
    name = "glibc malloc keeps freed memory (keep_freed_memory)"
    if want(name):
        keep = {k: ([_PURE_STEPS.format(threads=1, keep=k, steps=steps)], 1, 10) for k in (False, True)}
        per_step: dict = {}
        r = alternated_children(keep, args.child_repeats, per_step)
        rows.append({"lever": name, "images_per_s_without": r[False], "images_per_s_with": r[True],
                     "ratio": r[True] / r[False], "bit_identical": True,
                     "per_step_without": per_step[False], "per_step_with": per_step[True],
                     "bit_identical_test": "tests/test_train.py::test_cpu_execution_levers_give_bit_identical_weights",
                     "load_average": os.getloadavg()})
        print(f"  malloc keeps freed memory: {r[False]:.1f} -> {r[True]:.1f} img/s, ratio {r[True] / r[False]:.3f}; "
              f"page faults per step {per_step[False]['page_faults']:.0f} -> {per_step[True]['page_faults']:.0f}, "
              f"kernel CPU per step {1e3 * per_step[False]['system_s']:.1f} -> {1e3 * per_step[True]['system_s']:.1f} ms, "
              f"user CPU per step {1e3 * per_step[False]['user_s']:.0f} -> {1e3 * per_step[True]['user_s']:.0f} ms",
              flush=True)
    name = "thread layout: two 1-thread runs side by side vs one 2-thread run (images/s of the machine)"
    if want(name):
        layout = {"one": ([_PURE_STEPS.format(threads=2, keep=True, steps=steps)], 2, 10),
                  "two": ([_PURE_STEPS.format(threads=1, keep=True, steps=steps)] * 2, 1, 10)}
        r = alternated_children(layout, args.child_repeats)
        rows.append({"lever": name, "images_per_s_without": r["one"], "images_per_s_with": r["two"],
                     "ratio": r["two"] / r["one"], "bit_identical": None, "load_average": os.getloadavg()})
        print(f"  thread layout: one 2-thread run {r['one']:.1f} img/s, two 1-thread runs {r['two']:.1f} img/s "
              f"together, ratio {r['two'] / r['one']:.3f}", flush=True)
    for r in rows:
        r["adopted"] = r["lever"] in ADOPTED
    out = {"rows": rows}
    if want("convolution cost against channel count"):
        print("convolution cost against channel count (oneDNN's padding):", flush=True)
        out["conv_padding"] = conv_padding(args)
    return out


def compile_lever(args) -> dict:
    """torch.compile (inductor) of the network: steady-state images/s and the compile time,
    which a run of the book's length pays once."""
    import lipstudy.train as T

    torch.set_num_threads(1)
    cfg = cpu_config("deeplabv2")
    a, b = make_stage(cfg), make_stage(cfg)
    x, y = real_batch(a)
    t = time.perf_counter()
    b.net = torch.compile(b.model)
    T.train_step(b, x, y, cfg.lr)
    T.train_step(b, x, y, cfg.lr)
    compile_s = time.perf_counter() - t
    s = interleaved({"A": lambda: T.train_step(a, x, y, cfg.lr), "B": lambda: T.train_step(b, x, y, cfg.lr)},
                    args.repeats, args.number)
    ips_a, ips_b = 10 / s["A"], 10 / s["B"]
    steps = 1200  # a stage-1 run of the cpu profile: 6 epochs of 200 steps
    run_ratio = (steps * s["A"]) / (steps * s["B"] + compile_s)
    print(f"  {'torch.compile (inductor)':42s} A {ips_a:6.1f}  B {ips_b:6.1f} img/s  ratio {ips_b / ips_a:.3f}; "
          f"compile {compile_s:.0f} s, over a 1,200-step run {run_ratio:.3f}", flush=True)
    return {"lever": "torch.compile (inductor)", "images_per_s_without": ips_a, "images_per_s_with": ips_b,
            "ratio": ips_b / ips_a, "compile_s": compile_s, "ratio_over_a_stage1_run": run_ratio,
            "bit_identical": False, "load_average": os.getloadavg()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", default=["profile", "levers"], choices=("profile", "levers"))
    p.add_argument("--profile", default="cpu", help="the profile whose step the 'profile' part times (levers: "
                   "the cpu profile's)")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--steps", type=int, default=8, help="profiled steps per model")
    p.add_argument("--repeats", type=int, default=5, help="interleaved blocks per lever")
    p.add_argument("--number", type=int, default=3, help="steps per block")
    p.add_argument("--child-repeats", type=int, default=5, help="alternations of the process-wide levers")
    p.add_argument("--out", help="result file (default results/benchmarks/train_profile.json)")
    p.add_argument("--levers", nargs="+", help="only the levers whose names contain one of these")
    p.add_argument("--tag", default="", help="store the parts under '<part> <tag>' (a repeat kept beside the first)")
    args = p.parse_args(argv)
    path = Path(args.out) if args.out else RESULTS / "train_profile.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    start = machine()
    torch.set_num_threads(1)
    rates = {"fp32": matmul_rate(torch.device("cpu"), torch.float32),
             "bf16": matmul_rate(torch.device("cpu"), torch.bfloat16)}
    print(f"{start['cpu']} ({start['isa']}), load {start['load_average'][0]:.1f}; matmul at 1 thread: "
          f"fp32 {rates['fp32'] / 1e9:.1f}, bf16 {rates['bf16'] / 1e9:.1f} GFLOP/s", flush=True)
    for part in args.parts:
        res = {"part_profile": part_profile, "part_levers": part_levers}[f"part_{part}"](args)
        res.update(machine=start, load_average_after=os.getloadavg(), matmul_flop_per_s_1_thread=rates)
        key = f"{part} {args.tag}".strip()
        if part == "levers" and args.levers and key in doc:  # a subset remeasured: merged by lever name
            new = {r["lever"]: r for r in res["rows"]}
            res["rows"] = [new.pop(r["lever"], r) for r in doc[key]["rows"]] + list(new.values())
            res.setdefault("conv_padding", doc[key].get("conv_padding"))
        elif key in doc:  # the run before is kept beside the new one: a repeat, not a replacement
            doc[f"{key} previous"] = doc[key]
        doc[key] = res
        write_result("train_profile", doc, path)


if __name__ == "__main__":
    main()
