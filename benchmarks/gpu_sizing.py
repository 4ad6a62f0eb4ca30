"""How much compute a profile's book costs, from FLOP counts: what the gpu profile was sized by.

Every network's forward + backward FLOPs per training image at the profile's width and crop, and
forward FLOPs per evaluated image, are counted by torch.utils.flop_counter.FlopCounterMode on the
meta device (shapes only, nothing computed, seconds on any machine). Times the images and epochs
of every run of the book (lipstudy.runs.book_runs and what they start from) and every evaluation
the chapters read (lipstudy.store.book_products; an evaluated image counted at max_side x max_side,
an upper bound), it gives the book's FLOPs and the minutes they take at an assumed sustained rate.
Writes results/benchmarks/gpu_sizing.json.

    python benchmarks/gpu_sizing.py [--profile gpu] [--tflops 150] [--out FILE]
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from _common import write_result
from lipstudy.config import TrainConfig, build_network
from lipstudy.data.roots import PRETRAIN
from lipstudy.losses import training_loss
from lipstudy.profiles import get_profile
from lipstudy.runs import BACKBONE, Run, book_runs, epochs, with_ancestors
from lipstudy.store import ATR, TEST, Evaluation, book_products, train_config

H200_BF16_MATMUL = 790e12
"""The bf16 matmul rate measured on this workplace's H200 (about 790 TFLOP/s on 8192^3 products)."""


def flops_per_image(model: str, width: float, size: int, train: bool, recipe: dict, num_classes: int = 20) -> int:
    """FLOPs of one ``size`` x ``size`` image through ``model`` (forward, and backward when ``train``);
    ``recipe``: TrainConfig fields, of which those that shape the network count."""
    fields = {k: v for k, v in recipe.items() if k in ("batch_norm", "atrous_scale", "dropout")}
    cfg = TrainConfig(model=model, width=width, num_classes=num_classes, **fields)
    with torch.device("meta"):
        net = build_network(cfg).train(train)
        x = torch.randn(1, 3, size, size)
        with FlopCounterMode(display=False) as counter:
            if train:
                training_loss(net(x), torch.randint(0, num_classes, (1, size, size)), "off").backward()
            else:
                with torch.no_grad():
                    net(x)
    return counter.get_total_flops()


def plan(profile) -> dict:
    """The book's FLOPs under ``profile``: one row per run (training and evaluation FLOPs)."""
    prof = get_profile(profile)
    products = book_products(prof)
    cache: dict = {}

    def per_image(model, size, train, backbone):
        run = BACKBONE if backbone else Run(model)
        recipe = train_config(run, prof, "").to_dict()
        key = (model, size, train, backbone)
        if key not in cache:
            cache[key] = flops_per_image(model, prof.width, size, train, recipe)
        return cache[key]

    data = {"lip": prof.lip_data, "ppp": prof.ppp_data, PRETRAIN: prof.pretrain}
    side = lambda spec: spec.get("max_side") or 641  # noqa: E731  (LIP's own photos: up to ~640 px)
    rows = []
    for run in with_ancestors(book_runs(prof), prof):
        backbone = run.dataset == PRETRAIN
        spec = data[run.dataset]
        images = spec["train"] // prof.batch * prof.batch * epochs(run, prof)
        train = images * per_image(run.model, prof.crop, True, backbone)
        evals = {"val": (spec["val"], side(spec))}
        for ev in products.get(run, []):
            if isinstance(ev, Evaluation) and ev.size is not None:
                evals[ev.name] = (spec["val"], ev.size)
            elif ev in (TEST, ATR):
                evals[ev.name] = ((prof.atr_data if ev.atr else spec)["test"], side(spec))
        evaluate = sum(n * per_image(run.model, s, False, backbone) for n, s in evals.values())
        rows.append({"run": run.label, "dataset": run.dataset, "seed": run.seed, "stage": run.stage,
                     "train_images": images, "train_flop": train, "eval_images": sum(n for n, _ in evals.values()),
                     "eval_flop": evaluate})
    per_model = {m: per_image(m, prof.crop, True, m == "backbone") for m in sorted({k[0] for k in cache})}
    return {"profile": prof.name, "width": prof.width, "crop": prof.crop, "runs": rows,
            "train_flop_per_image": per_model,
            "train_flop": sum(r["train_flop"] for r in rows), "eval_flop": sum(r["eval_flop"] for r in rows)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="gpu")
    p.add_argument("--tflops", type=float, default=150.0,
                   help="assumed sustained TFLOP/s of the book's runs side by side (default 150: 19%% of the "
                        "H200's measured bf16 matmul rate)")
    p.add_argument("--out", help="result file (default results/benchmarks/gpu_sizing.json)")
    args = p.parse_args(argv)
    r = plan(args.profile)
    rate = args.tflops * 1e12
    for row in r["runs"]:
        seconds = (row["train_flop"] + row["eval_flop"]) / rate
        print(f"{row['run'][:44]:44s} {row['dataset']:8s} seed {row['seed']}  train {row['train_flop'] / 1e15:7.2f} "
              f"PFLOP  eval {row['eval_flop'] / 1e15:6.2f} PFLOP  {seconds:6.1f} s")
    total = r["train_flop"] + r["eval_flop"]
    print("per training image (GFLOP): "
          + ", ".join(f"{m} {f / 1e9:.1f}" for m, f in r["train_flop_per_image"].items()))
    print(f"profile {r['profile']}: {r['train_flop'] / 1e15:.1f} PFLOP training + {r['eval_flop'] / 1e15:.1f} PFLOP "
          f"evaluation = {total / rate / 60:.1f} min at {args.tflops:g} TFLOP/s ({100 * rate / H200_BF16_MATMUL:.0f}% "
          f"of the H200's {H200_BF16_MATMUL / 1e12:.0f} TFLOP/s bf16 matmul rate)")
    write_result("gpu_sizing", {**r, "assumed_flop_per_s": rate, "minutes_at_assumed_rate": total / rate / 60,
                                "h200_bf16_matmul_flop_per_s": H200_BF16_MATMUL}, args.out)


if __name__ == "__main__":
    main()
