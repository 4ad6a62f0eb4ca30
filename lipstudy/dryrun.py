"""A dry run of a profile's book (``lipstudy book --profile full --dry-run``): does every run start,
how long does one step take, how much memory does it need, and how long will the whole book take
on this device, before hours are spent finding out.

Nothing of the profile's dataset is generated: a handful of synthetic images at the profile's image
size (a real LIP root's own images with ``--data``) stands in. For every run the book trains
(:func:`lipstudy.runs.book_runs` and the runs they start from, :func:`lipstudy.runs.with_ancestors`)
the dry run builds the network as that run's TrainConfig describes it (the profile's width, its
ImageNet weights, its loss) with the trainer's own :func:`lipstudy.train.setup`, runs
:func:`lipstudy.train.train_step` on one batch of the profile's crop, and evaluates one image of
crop x crop with the evaluator's :func:`lipstudy.evaluate.predict_logits`. Each run is measured in a
process of its own (spawned), so its peak memory is its own: ``torch.cuda.max_memory_allocated`` on
CUDA, the peak resident set (``VmHWM``) on a CPU. On CUDA one untimed step and evaluation come first
(cuDNN's algorithm search and the allocator's growth are not the steady state); on a CPU the first
step is representative and is the one timed.

The estimate of a run: steps per epoch (training images // batch) x its epochs x seconds per step,
plus its evaluations ("val", which every run gets, and those of :func:`lipstudy.store.book_products`)
at the measured seconds per image; Table 6's fixed input sizes are scaled by (size / crop)^2, and
the other evaluations are counted at the cost of a crop-sized image. Data loading, checkpoints and
the chapters themselves are not counted.

``width`` / ``crop`` / ``batch`` / ``max_side`` reduce the scale (the tests run the dry run so, in
seconds); the ImageNet files are then checked but not loaded (they fit width 1 only).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .profiles import get_profile
from .data.roots import PRETRAIN
from .runs import Run, book_runs, epochs, with_ancestors


@dataclass(frozen=True)
class Scale:
    """What the dry run builds and feeds: None = the profile's own (width, crop, batch; the image
    size of its LIP data)."""

    width: float | None = None
    crop: int | None = None
    batch: int | None = None
    max_side: int | None = None

    def resolve(self, prof) -> "Scale":
        side = self.max_side if self.max_side is not None else prof.lip_data.get("max_side")
        return Scale(self.width or prof.width, self.crop or prof.crop, self.batch or prof.batch, side)


# ---------------------------------------------------------------------------------------------
# one run, in its own process


def peak_memory_bytes(device) -> int:
    """The peak memory of this process so far: CUDA's ``max_memory_allocated`` on a CUDA device,
    else the peak resident set (``VmHWM`` of /proc/self/status, ``ru_maxrss`` where there is none)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _config(run: Run, prof, root: Path, scale: Scale, pretrained: str | None, device: str):
    """The run's TrainConfig as the run store would write it (:func:`lipstudy.store.train_config`),
    at the dry run's scale, started from nothing but the ImageNet weights (its parent is not trained)."""
    from .store import train_config

    cfg = train_config(run, prof, root, pretrained=pretrained if run.stage == 1 else None, device=device)
    return dataclasses.replace(cfg, width=scale.width, crop=scale.crop, batch_size=scale.batch, workers=0,
                               checkpoint_every_steps=None, pretrained=cfg.pretrained if scale.width == 1.0 else None)


def measure(task: dict) -> dict:
    """Train one step (after one untimed step on CUDA) and evaluate one crop-sized image of one run;
    its seconds and this process's peak memory. ``task``: run, profile, root, scale, pretrained,
    device, threads (what :func:`dry_run` sends)."""
    import torch

    from .batches import collate
    from .evaluate import predict_logits
    from .train import setup, train_step

    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    prof, scale = task["profile"], task["scale"]
    cfg = _config(task["run"], prof, Path(task["root"]), scale, task["pretrained"], task["device"])
    warm = 1 if cfg.device.startswith("cuda") else 0
    with tempfile.TemporaryDirectory(prefix="lipstudy-dry-") as out:
        state = setup(cfg, out)
        dev = state.device
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        state.net.train()
        n = len(state.data)
        seconds = []
        for step in range(warm + 1):
            images, labels = collate([state.data[(0, (step * cfg.batch_size + i) % n)] for i in range(cfg.batch_size)])
            sync()
            t0 = time.perf_counter()
            loss = train_step(state, images, labels, cfg.lr)
            sync()
            seconds.append(time.perf_counter() - t0)
        state.model.eval()
        image = torch.randn(3, cfg.crop, cfg.crop, generator=torch.Generator().manual_seed(0)).to(dev)
        eval_seconds = []
        for _ in range(warm + 1):
            sync()
            t0 = time.perf_counter()
            predict_logits(state.model, image, (cfg.crop, cfg.crop), amp=cfg.amp, channels_last=cfg.channels_last)
            sync()
            eval_seconds.append(time.perf_counter() - t0)
        return {"seconds_per_step": seconds[-1], "eval_seconds_per_image": eval_seconds[-1], "loss": loss,
                "peak_bytes": peak_memory_bytes(dev), "device": str(dev)}


# ---------------------------------------------------------------------------------------------
# the book


def _images(prof, dataset: str, split: str, data=None) -> int:
    """Images of a split the book reads: the profile's counts, or a real LIP root's."""
    if data is not None and dataset == "lip":
        from .data.datasets import open_dataset

        return len(open_dataset(data, split, kind="lip"))
    spec = {"lip": prof.lip_data, "ppp": prof.ppp_data, "atr": prof.atr_data, PRETRAIN: prof.pretrain}[dataset]
    return int(spec.get(split, 0))


def evaluation_images(run: Run, which, prof, data=None) -> float:
    """Crop-sized image equivalents of one evaluation of ``run`` (a :class:`lipstudy.store.Evaluation`
    or its name; see the module docstring)."""
    from .store import Evaluation

    ev = which if isinstance(which, Evaluation) else Evaluation.named(which)
    if ev.atr:
        return _images(prof, "atr", "test")
    images = _images(prof, run.dataset, ev.split, data)
    return images * (ev.size / prof.crop) ** 2 if ev.size is not None else images


def _tiny_data(prof, datasets, folder: Path, scale: Scale, data=None) -> dict[str, Path]:
    """A handful of training images per dataset (one batch), at the profile's image size."""
    from .data.synth import generate

    roots = {}
    for ds in sorted(datasets):
        if ds == "lip" and data is not None:
            roots[ds] = Path(data)
            continue
        seed, style = (1, "lip") if ds == PRETRAIN else (0, ds)
        roots[ds] = folder / ds
        generate(roots[ds], scale.batch, 0, 0, seed=seed, style=style, workers=1, max_side=scale.max_side,
                 progress=False)
    return roots


def _say(*parts) -> None:
    print(*parts, flush=True)  # a run's line as soon as it is measured, also into a file or a pipe


def dry_run(profile, data=None, device: str = "auto", seeds=None, scale: Scale = Scale(), isolate: bool = True,
            runs=None, log=_say) -> list[dict]:
    """Measure every run of ``profile``'s book (or ``runs``) and estimate the book's time on
    ``device``; print the table through ``log`` and return its rows. ``isolate=False`` measures in
    this process (the peak memory is then this process's so far, not each run's)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from .models.imagenet import arch_of, fetch_all
    from .store import Evaluation, book_products
    from .runtime import resolve_device

    prof = get_profile(profile)
    res = scale.resolve(prof)
    weights = fetch_all() if prof.pretrained else {}  # first: a missing file stops here, before any work
    all_runs = with_ancestors(runs if runs is not None else book_runs(prof, seeds), prof)
    evals = {run: [p for p in wanted if isinstance(p, Evaluation)]
             for run, wanted in book_products(prof, data, seeds).items()}
    dev = resolve_device(device)
    log(f"[dry-run] profile {prof.name} on {dev}: {len(all_runs)} runs at width {res.width:g}, crop {res.crop}, "
        f"batch {res.batch}" + (f", images up to {res.max_side} px" if res.max_side else ", images at LIP scale"))
    for arch, path in weights.items():
        log(f"[dry-run] ImageNet {arch}: {path}" + ("" if res.width == 1.0 else " (checked; not loaded below width 1)"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="lipstudy-dry-data-") as tmp:
        roots = _tiny_data(prof, {r.dataset for r in all_runs}, Path(tmp), res, data)
        tasks = [{"run": r, "profile": prof, "root": str(roots[r.dataset]), "scale": res, "device": str(dev),
                  "pretrained": weights.get(arch_of(r.model)), "threads": None} for r in all_runs]
        for run, task in zip(all_runs, tasks):
            t0 = time.perf_counter()
            if isolate:
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    m = pool.submit(measure, task).result()
            else:
                m = measure(task)
            rows.append(_row(run, prof, m, evals.get(run, []), data))
            log(f"[dry-run] {rows[-1]['run']}: {m['seconds_per_step']:.2f} s/step, peak "
                f"{m['peak_bytes'] / 2**30:.2f} GiB ({time.perf_counter() - t0:.0f} s)")
    log(format_table(rows, dev, isolate))
    return rows


def _row(run: Run, prof, m: dict, extra_evals: list, data) -> dict:
    dataset = run.dataset
    steps = _images(prof, dataset, "train", data) // prof.batch * epochs(run, prof)
    names = ["val"] + list(extra_evals)  # Evaluations, or their names
    images = sum(evaluation_images(run, n, prof, data) for n in names)
    train_h = steps * m["seconds_per_step"] / 3600
    eval_h = images * m["eval_seconds_per_image"] / 3600
    return {"run": f"{run.label} ({dataset}, seed {run.seed})", "steps": steps,
            "s/step": m["seconds_per_step"], "peak GiB": m["peak_bytes"] / 2**30,
            "eval s/image": m["eval_seconds_per_image"], "evaluations": len(names), "eval images": images,
            "train h": train_h, "eval h": eval_h, "total h": train_h + eval_h}


COLUMNS = ("run", "steps", "s/step", "peak GiB", "eval s/image", "evaluations", "eval images",
           "train h", "eval h", "total h")


def format_table(rows: list[dict], device, isolate: bool = True) -> str:
    """The dry run's table: one line per run, then the whole book."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    total = {c: "" for c in COLUMNS}
    total.update({"run": "the whole book", "steps": int(df["steps"].sum()), "evaluations": int(df["evaluations"].sum()),
                  "eval images": df["eval images"].sum(), "train h": df["train h"].sum(),
                  "eval h": df["eval h"].sum(), "total h": df["total h"].sum(),
                  "peak GiB": df["peak GiB"].max() if len(df) else 0.0})
    df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    memory = ("torch.cuda.max_memory_allocated per run" if str(device).startswith("cuda")
              else "peak resident set per run" if isolate else "peak resident set of this process so far")
    fmt = {"s/step": "{:.3f}".format, "eval s/image": "{:.3f}".format, "peak GiB": "{:.2f}".format,
           "eval images": "{:.0f}".format, "train h": "{:.2f}".format, "eval h": "{:.2f}".format,
           "total h": "{:.2f}".format}
    body = df.to_string(index=False, formatters={k: (lambda f: lambda v: v if v == "" else f(v))(f)
                                                 for k, f in fmt.items()})
    return (f"[dry-run] estimate on {device} (memory: {memory}; steps = training images // batch x epochs; "
            f"evaluations at the measured seconds per crop-sized image)\n{body}")


# ---------------------------------------------------------------------------------------------
# command line (options of `lipstudy book`)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``lipstudy book``'s dry-run options."""
    g = p.add_argument_group("dry run", "measure one step of every run instead of building the book")
    g.add_argument("--dry-run", action="store_true",
                   help="build every network, run one training step and one evaluation per run of the "
                        "book, print seconds per step, peak memory and the book's estimated time")
    g.add_argument("--dry-width", type=float, help="network width instead of the profile's (smaller: faster)")
    g.add_argument("--dry-crop", type=int, help="crop instead of the profile's")
    g.add_argument("--dry-batch", type=int, help="batch instead of the profile's")
    g.add_argument("--dry-max-side", type=int, help="longest side of the stand-in images (default: the profile's)")


def main_from_args(p: argparse.ArgumentParser, args) -> int:
    """Run the dry run that ``args`` (``lipstudy book`` with ``--dry-run``) asks for."""
    scale = Scale(args.dry_width, args.dry_crop, args.dry_batch, args.dry_max_side)
    for name, value in dataclasses.asdict(scale).items():
        if value is not None and not (value > 0 and math.isfinite(value)):
            p.error(f"--dry-{name.replace('_', '-')} must be a positive number, got {value}")
    try:
        dry_run(args.profile, args.data, args.device, args.seeds, scale)
    except (ValueError, FileNotFoundError) as err:  # a bad scale, a missing ImageNet file
        print(f"lipstudy book: {err}", file=sys.stderr)
        return 2
    return 0


def check_args(p: argparse.ArgumentParser, args) -> None:
    """The dry-run options make sense with --dry-run only."""
    given = [f"--dry-{n.replace('_', '-')}" for n in ("width", "crop", "batch", "max_side")
             if getattr(args, f"dry_{n}") is not None]
    if given and not args.dry_run:
        p.error(f"{', '.join(given)} only apply with --dry-run")

