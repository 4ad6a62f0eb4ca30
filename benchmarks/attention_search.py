"""Why Attention-to-scale learns few classes at the cpu budget, measured (issue: "Attention-to-scale that
attends").

Each setting trains one stage-1 network of the cpu profile (same data, backbone, recipe and seed as the
book's Attention run) with one thing changed in the network or its optimisation, then scores it on the
synthetic validation split: mean IoU, the classes at >= 1% IoU, the limbs' IoU, and for attention models
how the attention weights are spread over the scales (mean weight per scale, the share of pixels that put
more than 0.9 on one scale, the attention logits' standard deviation). Rows are merged into
``results/benchmarks/attention_search.json``, which the decisions log cites.

The variants are built here, not in ``lipstudy.models``: this script searches, the package keeps what the
search chose. Runs go to ``results/search/attention/<setting>-s<seed>/``. Two settings can run side by side,
one per core: ``python attention_search.py --only A --threads 1 & python attention_search.py --only B ...``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from _common import REPO, RESULTS, device_info

OUT = REPO / "results" / "search" / "attention"
from lipstudy.config import build_network as BUILD_NETWORK  # noqa: E402  (the package's networks)


@dataclasses.dataclass(frozen=True)
class Variant:
    """An attention-to-scale network with the knobs the search turns (defaults: the book's Attention)."""

    scales: tuple = (1.0, 0.75, 0.5)
    pool5a: bool = True           # DeepLab-LargeFOV v1's 3x3 average pool after pool5 (the released LIP_SSL lacks it)
    rate: int | None = None       # the LargeFOV rate (None: 12 x the profile's atrous_scale, rounded)
    rates: tuple | None = None    # several fc6 branches, summed (DeepLabV2's ASPP) instead of one LargeFOV branch
    head_channels: int | None = None  # fc6 / fc7 channels (None: 1024 x width)
    head_dropout: float | None = None  # None: the config's dropout
    att_zero_init: bool = False   # the attention model's last layer starts at 0: equal weights on every scale
    att_dropout: bool = True
    att_lr_mult: float = 1.0      # the attention model's lr relative to the base lr
    att_input: str = "fc7"        # what the attention model sees: "fc7" features or "scores" (fc8)
    score_map: bool = False       # train on the score maps against shrunk labels (DeepLab's Caffe loss)


# "cfg": TrainConfig fields replaced (crop, dropout, score_map_loss, model); "model": "deeplabv2" trains the
# package's DeepLabV2 (the variant knobs then do not apply).
SMAP = {"crop": 129, "score_map_loss": True}
# Stage 2 (issue "SSL isolated"): the control and SSL fine-tuned from the DeepLabV2 stage-1 run above
# (deeplab-nodrop, seed 0) for the cpu profile's 3 epochs, at the released solver's schedule (a tenth of
# the base rate, constant) and at the previous restart (the stage-1 peak with warm-up and poly decay).
S1 = OUT / "deeplab-nodrop-s0" / "checkpoint.pt"
STAGE2 = {"model": "deeplabv2", "dropout": 0.0, "init": str(S1), "backbone_init": None, "epochs": 3}
CONSTANT = {"lr": 2e-4, "lr_power": 0.0, "warmup_steps": 0}
SETTINGS: dict[str, dict] = {
    "s2-unit-const2e-4": dict(cfg={**STAGE2, **CONSTANT, "loss": "unit"}),
    "s2-paper-const2e-4": dict(cfg={**STAGE2, **CONSTANT, "loss": "paper"}),
    "s2-unit-restart": dict(cfg={**STAGE2, "loss": "unit"}),
    "s2-paper-restart": dict(cfg={**STAGE2, "loss": "paper"}),
    "s2-unit-const6e-4": dict(cfg={**STAGE2, **CONSTANT, "lr": 6e-4, "loss": "unit"}),
    "s2-paper-const6e-4": dict(cfg={**STAGE2, **CONSTANT, "lr": 6e-4, "loss": "paper"}),
    "deeplab-nodrop": dict(cfg={"model": "deeplabv2", "dropout": 0.0}),
    "deeplab-nodrop-128": dict(head_channels=128, cfg={"model": "deeplabv2", "dropout": 0.0}),
    "att-nopool5a-nodrop-zero-128": dict(pool5a=False, head_dropout=0.0, att_dropout=False, att_zero_init=True,
                                         head_channels=128),
    # The design the search points at: the head without dropout at 128 channels, the attention model
    # keeping the prototxt's dropout, its last layer at zero; and the same at LargeFOV rate 2.
    "att-128-attdrop": dict(pool5a=False, head_dropout=0.0, att_zero_init=True, head_channels=128),
    "att-128-attdrop-rate2": dict(pool5a=False, head_dropout=0.0, att_zero_init=True, head_channels=128, rate=2),
    "att-nopool5a-nodrop-zero-256": dict(pool5a=False, head_dropout=0.0, att_dropout=False, att_zero_init=True,
                                         head_channels=256),
    "deeplab-nodrop-smap": dict(cfg={"model": "deeplabv2", "dropout": 0.0, **SMAP}),
    "att-nopool5a-nodrop-zero-smap": dict(pool5a=False, head_dropout=0.0, att_dropout=False, att_zero_init=True,
                                          score_map=True, cfg=SMAP),
    "att-nopool5a-hnodrop-zero-smap": dict(pool5a=False, head_dropout=0.0, att_zero_init=True,
                                           score_map=True, cfg=SMAP),
    "book": {},
    # The LargeFOV network alone (one scale): is the weakness already there?
    "largefov": dict(scales=(1.0,)),
    "largefov-nopool5a": dict(scales=(1.0,), pool5a=False),
    "largefov-nopool5a-rate2": dict(scales=(1.0,), pool5a=False, rate=2),
    "largefov-nopool5a-nodrop": dict(scales=(1.0,), pool5a=False, head_dropout=0.0),
    "largefov-nopool5a-256": dict(scales=(1.0,), pool5a=False, head_channels=256),
    "largefov-nopool5a-rate2-nodrop": dict(scales=(1.0,), pool5a=False, rate=2, head_dropout=0.0),
    "largefov-nopool5a-rate2-256": dict(scales=(1.0,), pool5a=False, rate=2, head_channels=256),
    "largefov-nopool5a-rate2-256-nodrop": dict(scales=(1.0,), pool5a=False, rate=2, head_channels=256,
                                               head_dropout=0.0),
    "largefov-nopool5a-rate3": dict(scales=(1.0,), pool5a=False, rate=3),
    "largefov-nopool5a-rate2-128": dict(scales=(1.0,), pool5a=False, rate=2, head_channels=128),
    "largefov-nopool5a-rate2-128-drop.1": dict(scales=(1.0,), pool5a=False, rate=2, head_channels=128,
                                               head_dropout=0.1),
    # Attention with the released model's head (no pool5a) and an attention that starts uniform.
    "att-nopool5a-zero": dict(pool5a=False, att_zero_init=True),
    "att-nopool5a-zero-lr.1": dict(pool5a=False, att_zero_init=True, att_lr_mult=0.1),
    # Without dropout (the cause the LargeFOV rows point at): does the attention still collapse?
    "att-nopool5a-nodrop": dict(pool5a=False, head_dropout=0.0, att_dropout=False),
    "att-nopool5a-nodrop-zero": dict(pool5a=False, head_dropout=0.0, att_dropout=False, att_zero_init=True),
    "att-nopool5a-nodrop-zero-lr.1": dict(pool5a=False, head_dropout=0.0, att_dropout=False, att_zero_init=True,
                                          att_lr_mult=0.1),
}


class _Head(nn.Module):
    def __init__(self, c_in, channels, num_classes, rates, dropout):
        super().__init__()
        from lipstudy.models.deeplab import FCHead
        self.branches = nn.ModuleList(FCHead(c_in, channels, num_classes, r, dropout) for r in rates)

    def features(self, x):  # concatenated fc7 features of every branch
        return torch.cat([b.features(x) for b in self.branches], 1)

    def scores_of(self, feats):
        c = feats.shape[1] // len(self.branches)
        return torch.stack([b.fc8(feats[:, i * c:(i + 1) * c]) for i, b in enumerate(self.branches)]).sum(0)


class SearchNet(nn.Module):
    """Attention to scale (or one LargeFOV / ASPP network when ``scales == (1.0,)``) with the knobs of
    :class:`Variant`; forward as :class:`lipstudy.models.attention.AttentionToScale`."""

    def __init__(self, v: Variant, num_classes, width, dropout, batch_norm, atrous_scale):
        super().__init__()
        from lipstudy.models.vgg import VGG16, dropout_layer, init_classifier, init_weights, scaled
        self.v = v
        self.scales = tuple(v.scales)
        self.backbone = VGG16(width, batch_norm=batch_norm, atrous=True)
        self.pool5a = nn.AvgPool2d(3, stride=1, padding=1) if v.pool5a else nn.Identity()
        rates = v.rates or (v.rate or max(1, int(round(12 * atrous_scale))),)
        channels = v.head_channels or scaled(1024, width)
        hd = dropout if v.head_dropout is None else v.head_dropout
        self.head = _Head(self.backbone.out_channels, channels, num_classes, rates, hd)
        if len(self.scales) > 1:
            att_in = len(self.scales) * (channels * len(rates) if v.att_input == "fc7" else num_classes)
            hidden = scaled(512, width)
            self.attention = nn.Sequential(nn.Conv2d(att_in, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                           dropout_layer(dropout if v.att_dropout else 0.0),
                                           nn.Conv2d(hidden, len(self.scales), 1))
        init_weights(self)
        for b in self.head.branches:
            init_classifier(b.fc8)
        if len(self.scales) > 1 and v.att_zero_init:
            nn.init.zeros_(self.attention[-1].weight)
            nn.init.zeros_(self.attention[-1].bias)

    def forward_parts(self, x):
        from lipstudy.models.vgg import resize
        h, w = x.shape[-2:]
        feats, scores = [], []
        for s in self.scales:
            xs = x if s == 1.0 else resize(x, (max(1, round(h * s)), max(1, round(w * s))))
            f = self.head.features(self.pool5a(self.backbone(xs)[-1]))
            feats.append(f)
            scores.append(self.head.scores_of(f))
        size = feats[0].shape[-2:]
        scores = [resize(sc, size) for sc in scores]
        if len(self.scales) == 1:
            return {"fused": scores[0], "per_scale": scores, "weights": None}
        att_in = [resize(f, size) for f in feats] if self.v.att_input == "fc7" else scores
        logits = self.attention(torch.cat(att_in, 1))
        weights = logits.softmax(1)
        fused = (torch.stack(scores, 1) * weights.unsqueeze(2)).sum(1)
        return {"fused": fused, "per_scale": scores, "weights": weights, "att_logits": logits}

    def forward(self, x):
        from lipstudy.models.vgg import resize
        p = self.forward_parts(x)
        if self.training and self.v.score_map:
            return {"out": p["fused"], "aux": p["per_scale"] if len(self.scales) > 1 else []}
        size = x.shape[-2:]
        out = resize(p["fused"], size)
        if not self.training:
            return out
        aux = [resize(s, size) for s in p["per_scale"]] if len(self.scales) > 1 else []
        return {"out": out, "aux": aux}


def book_config(seed: int):
    """The cpu profile's TrainConfig of the book's Attention run of ``seed`` (from the committed backbone)."""
    from lipstudy import committed
    from lipstudy.paths import runs_dir
    from lipstudy.profiles import PROFILES
    from lipstudy.runs import Run
    from lipstudy.runtime import CHECKPOINT
    from lipstudy.store import key_plan, train_config
    from lipstudy.train_run import make_inputs

    prof = PROFILES["cpu"]
    run = Run("attention", seed=seed)
    make_inputs(run, prof)
    committed.install(prof, runs=[run.parent(prof)], log=lambda *a: None)
    plan = key_plan(run, prof)
    return train_config(run, prof, plan.root, str(runs_dir() / plan.parent_key / CHECKPOINT), device="cpu")


def builder(v: Variant):
    def build(cfg):
        return SearchNet(v, cfg.num_classes, cfg.width, 0.5 if cfg.dropout is None else cfg.dropout,
                         bool(cfg.batch_norm), cfg.atrous_scale)
    return build


def patch_optimizer(v: Variant):
    """The attention model's learning rate at ``att_lr_mult`` x the base rate (its own param group)."""
    import lipstudy.train as T
    original = T.make_optimizer

    def make(model, cfg):
        opt = original(model, cfg)
        if v.att_lr_mult == 1.0 or not hasattr(model, "attention"):
            return opt
        att = {id(p) for p in model.attention.parameters()}
        for g in opt.param_groups:
            g["params"] = [p for p in g["params"] if id(p) not in att]
        opt.add_param_group({"params": list(model.attention.parameters()), "lr_mult": v.att_lr_mult,
                             "lr": cfg.lr * v.att_lr_mult})
        return opt
    T.make_optimizer = make


@torch.no_grad()
def attention_stats(model, dataset, n: int = 400) -> dict | None:
    """Mean attention weight per scale over the pixels of ``n`` validation images at their own size, the
    share of pixels with one scale weighted above 0.9, and the attention logits' standard deviation."""
    from lipstudy.transforms import EvalTransform
    if len(model.scales) == 1:
        return None
    v, was_training = model.v, model.training
    model.v = dataclasses.replace(v, score_map=False)
    model.eval()
    t = EvalTransform()
    sums, n_px, hard, logit_sq, logit_sum, logit_n = 0.0, 0, 0, 0.0, 0.0, 0
    for i in range(min(n, len(dataset))):
        p = model.forward_parts(t(dataset[i])["image"][None])
        w = p["weights"][0]
        sums = sums + w.sum((1, 2)).double()
        n_px += w[0].numel()
        hard += int((w.max(0).values > 0.9).sum())
        lg = p["att_logits"][0] - p["att_logits"][0].mean(0, keepdim=True)
        logit_sq += float((lg.double() ** 2).sum())
        logit_sum += float(lg.double().sum())
        logit_n += lg.numel()
    model.train(was_training)
    model.v = v
    mean = (sums / n_px).tolist()
    return {"mean_weight_per_scale": [round(m, 4) for m in mean], "share_above_0.9": round(hard / n_px, 4),
            "logit_sd": round(float(np.sqrt(logit_sq / logit_n - (logit_sum / logit_n) ** 2)), 3)}


def measure(tag: str, seed: int) -> dict:
    import lipstudy.train as T
    from lipstudy.data.datasets import open_dataset
    from lipstudy.evaluate import evaluate
    from lipstudy.labels import LIP_CLASSES, LIP_FLIP_PAIRS
    from lipstudy.metrics import scores

    spec = dict(SETTINGS[tag])
    over = spec.pop("cfg", {})
    v = Variant(**spec)
    cfg = dataclasses.replace(book_config(seed), **over)
    out = OUT / f"{tag}-s{seed}"
    if cfg.model == "deeplabv2" and v.head_channels:
        import lipstudy.models.deeplab as D
        D.HEAD_CHANNELS = round(v.head_channels / cfg.width)
    T.build_network = builder(v) if cfg.model == "attention" else BUILD_NETWORK
    if cfg.model == "attention":
        patch_optimizer(v)
    trajectory = []
    val = open_dataset(cfg.data_root, "val", kind="lip")
    probe = [val[i] for i in range(16)]

    def on_step(step):  # the attention's spread on 16 validation images once an epoch
        state = holder.get("state")
        if cfg.model != "attention" or step % 200 or state is None:
            return
        trajectory.append({"step": step, **attention_stats(state.model, probe, n=16)})
        state.model.train()

    holder = {}
    original_setup = T.setup

    def setup(c, o):
        holder["state"] = original_setup(c, o)
        return holder["state"]
    T.setup = setup
    t0 = time.perf_counter()
    T.train(cfg, out, progress=False, report=False, on_step=on_step)
    T.setup = original_setup
    minutes = (time.perf_counter() - t0) / 60
    model = builder(v)(cfg) if cfg.model == "attention" else T.build_network(cfg)
    model.load_state_dict(T.load_checkpoint(out / "checkpoint.pt")["model"])
    model.eval()
    res = evaluate(model, val, LIP_CLASSES, LIP_FLIP_PAIRS, progress=False)
    cm = res["cms"].sum(0)
    iou = scores(cm)["per_class_iou"]
    named = {c: (None if np.isnan(x) else round(100 * float(x), 2)) for c, x in zip(LIP_CLASSES, iou)}
    return {"setting": tag, "seed": seed, "variant": dataclasses.asdict(v), "train_minutes": round(minutes, 2),
            "val_miou": round(100 * res["metrics"]["mean_iou"], 2),
            "classes_at_1pct": int(sum(x is not None and x >= 1 for x in named.values())),
            "per_class_iou": named, "attention": attention_stats(model, val) if cfg.model == "attention" else None,
            "config": portable_fields(over), "attention_over_training": trajectory,
            "threads": torch.get_num_threads()}


def portable_fields(over: dict) -> dict:
    """A setting's TrainConfig changes as the result file records them: the files they name relative to
    the results or data folder (:func:`lipstudy.paths.portable`), never this machine's absolute path."""
    from lipstudy.config import PATH_FIELDS
    from lipstudy.paths import portable

    return {k: portable(v) if k in PATH_FIELDS and isinstance(v, str) else v for k, v in over.items()}


def merge_row(row: dict) -> None:
    from lipstudy.atomic import atomic_write_json
    from lipstudy.locks import file_lock

    path = RESULTS / "attention_search.json"
    with file_lock(path.with_name(".attention_search.lock")):
        doc = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
        doc["rows"][f"{row['setting']} [seed {row['seed']}]"] = row
        doc.update(device_info(torch.device("cpu")), note=__doc__.split("\n\n")[0])
        atomic_write_json(path, doc)
    limbs = [row["per_class_iou"][c] for c in ("left-arm", "right-arm", "left-leg", "right-leg")]
    print(f"{row['setting']} seed {row['seed']}: {row['train_minutes']} min, val mIoU {row['val_miou']}%, "
          f"{row['classes_at_1pct']} classes >= 1%, arms/legs {limbs}, attention {row['attention']}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for tag in a.only:
        for seed in a.seeds:
            merge_row(measure(tag, seed))


if __name__ == "__main__":
    main()
