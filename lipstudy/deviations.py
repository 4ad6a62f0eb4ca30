"""Every way a profile's training recipe departs from the paper's (Section 5.1 and the released
DeepLabV2 / LIP_SSL recipe), with the reason: the book's one table of deviations.

The rows are computed from the profile itself (its fields and its ``recipe`` of TrainConfig
overrides) against the paper's settings, so the table cannot drift from what was run.
"""
from __future__ import annotations

import pandas as pd

from .paper import SPLITS as LIP_SPLITS
from .config import TrainConfig
from .profiles import get_profile

LIP_IMAGE_SIDE = "up to 640 px (LIP's own photos)"

REASONS = {
    "data": "LIP, ATR and PASCAL-Person-Part cannot be downloaded on the machines this study is built on; "
            "the synthetic benchmark has LIP's labels, attributes and layout. No synthetic number is a LIP number.",
    "images": "a CPU budget of minutes per run; more images at a good operating point buy less than epochs "
              "(benchmarks/operating_point.py)",
    "scale": "human parsing lives on resolution: thin networks on larger images beat wide networks on "
             "tiny ones at the same cost (benchmarks/operating_point.py)",
    "width": "a from-scratch VGG-16 at full width would take days per run on 2 CPU cores",
    "batch_norm": "the paper's networks start from ImageNet weights; from a random start, plain VGG-16 "
                  "trains poorly in a few epochs, and batch norm is the standard remedy",
    "init": "ImageNet weights cannot be downloaded here. One VGG-16-BN backbone is trained once on a "
            "separate synthetic split (disjoint scenes, the same 20 labels) and every baseline starts "
            "from it, as the paper's do from ImageNet. Unlike ImageNet, this pretraining sees the parsing "
            "task itself, so it is closer to more training data than to generic features.",
    "optimizer": "thin networks on a budget of minutes learn faster with AdamW than with SGD, in "
                 "pretraining and in fine-tuning alike (benchmarks/operating_point.py)",
    "classifier_lr_mult": "measured: the paper's 10x on the new layers with a lower base lr fine-tunes "
                          "worse here than one lr for every layer (benchmarks/operating_point.py)",
    "warmup": "AdamW and batch norm from a fresh start are unstable in the first steps",
    "epochs": "the budget: the whole book within 45 minutes on 2 cores",
    "crop": "scaled with the images (the paper's 321 px crops are ~half a LIP image side)",
    "eval_sizes": "Table 6's input sizes 153 / 321 / 513 scaled by crop / 321, so they mean the same "
                  "relative sizes",
    "atrous": "the paper's rates are sized for its 321-px crops (a 41-cell score map); on smaller crops "
              "the wide rates look past the map's edge and act as 1x1 layers. Scaled by crop / 321 they "
              "cover the same share of the image (measured in benchmarks/operating_point.py)",
    "dropout": "dropout sized for 1024- and 4096-channel layers, on layers thinned by the width",
    "frozen": "linear probing before fine-tuning (LP-FT): the random new head's first gradients would "
              "distort the pretrained features",
    "frozen_bn": "batch statistics of 10 crops are noisy, and attention-to-scale's shared backbone sees three "
                 "input scales whose statistics differ in training but are one running average in evaluation",
    "seeds": "run-to-run spread is part of a verdict when runs differ by a few points",
    "precision": "bf16 autocast on the GPU (fp32 accumulation and weights): about twice the matmul rate of "
                 "tf32 and no loss scaling; LIP's Caffe code trained in fp32",
    "data_pipeline": "a GPU at this width needs its batches faster than a per-image loader decodes them: the "
                     "split stays on the GPU and is augmented there (lipstudy.resident), with the same random "
                     "choices; bilinear sampling there does not antialias when it scales an image down",
}


def deviations(profile) -> pd.DataFrame:
    """One row per departure of ``profile`` from the paper: setting, paper, this profile, reason."""
    prof = get_profile(profile)
    paper = TrainConfig()  # the paper's defaults
    cfg = TrainConfig(**prof.run_recipe())  # how the baselines train (the backbone's is its own)
    rows = []

    def add(setting, ours, theirs, reason, differs=None):
        if (str(ours) != str(theirs)) if differs is None else differs:
            rows.append({"setting": setting, "paper": theirs, f"profile {prof.name}": ours,
                         "reason": prof.reasons.get(reason, REASONS[reason])})

    add("data", "the synthetic LIP-style benchmark by default (real LIP with DATA=...)", "LIP", "data")
    add("training images", prof.lip_data["train"], LIP_SPLITS["train"], "images")
    side = prof.lip_data["max_side"]
    add("image size", LIP_IMAGE_SIDE if side is None else f"longest side <= {side} px", LIP_IMAGE_SIDE, "scale")
    add("crop", f"{prof.crop} x {prof.crop}", "321 x 321", "crop")
    add("network width", f"{prof.width:g} x the channels of every layer", "1 (VGG-16)", "width",
        differs=prof.width != 1.0)
    bn = "every baseline" if cfg.batch_norm else "SegNet only"
    add("batch norm in the backbone", bn, "SegNet only (VGG-16-BN)", "batch_norm", differs=bool(cfg.batch_norm))
    if prof.pretrain:
        init = (f"VGG-16-BN trained {prof.pretrain['epochs']} epochs on {prof.pretrain['train']} "
                f"other synthetic images (models/pretrain.py)")
    else:
        init = "ImageNet VGG-16" if prof.pretrained else "random (from scratch)"
    add("initialisation", init, "ImageNet VGG-16", "init")
    opt = (f"AdamW (lr {prof.lr:g}, betas ({cfg.momentum:g}, 0.999), weight decay {cfg.weight_decay:g})"
           if cfg.optimizer == "adamw" else
           f"SGD (lr {prof.lr:g}, momentum {cfg.momentum:g}, weight decay {cfg.weight_decay:g})")
    add("optimiser", opt, f"SGD (lr {paper.lr:g}, momentum {paper.momentum:g}, weight decay "
        f"{paper.weight_decay:g})", "optimizer")
    add("classifier learning rate", f"{cfg.classifier_lr_mult:g}x", f"{paper.classifier_lr_mult:g}x",
        "classifier_lr_mult")
    if cfg.atrous_scale != 1.0:
        from .models import ASPP_RATES, LARGEFOV_RATE

        rate = lambda r: max(1, int(round(r * cfg.atrous_scale)))  # noqa: E731  (as build_model)
        add("atrous rates (ASPP; attention's LargeFOV)",
            f"{'/'.join(str(rate(r)) for r in ASPP_RATES)}; {rate(LARGEFOV_RATE)} (x {cfg.atrous_scale:.3g})",
            f"{'/'.join(map(str, ASPP_RATES))}; {LARGEFOV_RATE}", "atrous")
    if cfg.dropout is not None:
        add("dropout", f"{cfg.dropout:g}", "0.5", "dropout")
    if cfg.frozen_bn_stats:
        add("batch-norm statistics in fine-tuning", "kept as pretrained (scale and shift train)",
            "updated (SegNet's; the other networks have no norms)", "frozen_bn")
    if cfg.frozen_backbone_steps:
        add("backbone frozen", f"the first {cfg.frozen_backbone_steps} steps of stage 1", "never", "frozen")
    add("warm-up", f"{cfg.warmup_steps} steps, linear" if cfg.warmup_steps else "none", "none", "warmup")
    add("precision", "bf16 autocast", "fp32", "precision", differs=cfg.amp == "bf16")
    add("augmentation", "on the GPU, batched (scale, crop, flip)", "per image (Caffe's data layer)", "data_pipeline",
        differs=cfg.data_pipeline == "resident")
    add("epochs (stage 1 + stage 2)", f"{prof.epochs_stage1} + {prof.epochs_stage2}", "30 + 20", "epochs")
    add("Table 6 input sizes", " / ".join(str(s) for s in prof.eval_sizes), "153 / 321 / 513", "eval_sizes")
    seeds = f"{len(prof.seeds)} (+{len(prof.ssl_seeds)} for the SSL comparison)" if prof.ssl_seeds else len(prof.seeds)
    add("seeds", seeds, "1 (not stated)", "seeds", differs=bool(prof.ssl_seeds) or len(prof.seeds) > 1)
    return pd.DataFrame(rows, columns=["setting", "paper", f"profile {prof.name}", "reason"])
