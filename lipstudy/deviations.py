"""Every way a profile's recipe departs from the paper's (Section 5.1 and the released DeepLabV2 /
LIP_SSL recipe), with the reason: the book's one table of deviations.

The rows are computed from the profile itself (its fields and its ``recipe`` / ``finetune`` of
TrainConfig overrides) and from the code's fixed choices, against the paper's settings, so the table
cannot drift from what was run. A reason cites a measurement only where one exists (the rows of
``results/benchmarks/operating_point.json`` are named; those of ``attention_search.json`` are read from
it, cpu profile, seed 0).
"""
from __future__ import annotations

import pandas as pd

from .config import TrainConfig
from .measurements import search_miou as m
from .paper import SPLITS as LIP_SPLITS
from .paper import TABLE1
from .profiles import get_profile
from .runs import Run
from .store import train_config

LIP_IMAGE_SIDE = "up to 640 px (LIP's own photos)"
JOINT_STRIDE = 8  # lipstudy.losses / joints: the joints see every 8th pixel, as the released code's 41x41 grid


def _grid(crop: int) -> int:
    """Side of the joint heatmap grid for a crop at the joints' stride (321 -> 41, as Caffe's shrink)."""
    return (crop - 1) // JOINT_STRIDE + 1


REASONS = {
    "data": "LIP, ATR and PASCAL-Person-Part cannot be downloaded on the machines this study is built on; "
            "the synthetic benchmark has LIP's labels, attributes and layout. No synthetic number is a LIP number.",
    "images": "a CPU budget of minutes per run (not measured against other image counts)",
    "eval_images": "evaluation minutes: every run is evaluated on each split and input size; the intervals "
                   "of the claims chapter carry the sampling noise of these smaller splits",
    "scale": "human parsing lives on resolution: thin networks on larger images beat a wider network on "
             "smaller ones (operating_point.json: old-cpu, width 1/8 on 64-px crops, 7.6%; scratch-10ep, "
             "width 1/16 on 128-px crops, 12.7%)",
    "width": "a VGG-16 at full width would take days per run on 2 CPU cores (FLOP count)",
    "batch": "the profile's budget: fewer crops per step on a machine that trains for minutes",
    "batch_norm": "the paper's networks start from ImageNet weights; from a random or synthetic start, plain "
                  "VGG-16 trains poorly in a few epochs, and batch norm is the standard remedy",
    "init": "ImageNet weights cannot be downloaded here. One VGG-16-BN backbone is trained once on a "
            "separate synthetic split (disjoint scenes, the same 20 labels) and every baseline starts "
            "from it, as the paper's do from ImageNet; like ImageNet weights it ships with the checkout "
            "(results/backbones/) rather than being trained by each build. Unlike ImageNet, this pretraining sees the parsing "
            "task itself, so it is closer to more training data than to generic features.",
    "heads": "measured: a synthetic backbone that also pretrains fc6 / fc7 for the heads to inherit gave "
             "DeepLabV2 14.2% against 19.1% from the convolutions alone (operating_point.json: fc-head-6ep, "
             "pretrain16-6ep-atrous0.4)",
    "optimizer": "measured for fine-tuning: SGD with the paper's 10x classifier lr scored 11.7% "
                 "(operating_point.json: pretrain-6ep-sgd-ft) where AdamW on the same backbone scored "
                 "13.3-16.4%; SGD was not measured for the backbone's pretraining",
    "adamw_scale": "a consequence of AdamW: its update divides by the gradient's running scale, so a factor "
                   "common to the batch cancels (a per-image weight still shifts the gradient's direction)",
    "classifier_lr_mult": "measured: the paper's 10x on the new layers at base lr 5e-4 / 2e-4 scored 13.3% / "
                          "11.7% (operating_point.json: pretrain-6ep-head10-lr5e-4, -lr2e-4) against 16.4% "
                          "with one lr for every layer (pretrain-8ep)",
    "warmup": "AdamW and batch norm from a fresh start are unstable in the first steps",
    "stage2": "the released LIP_SSL solver fine-tunes with SSL at base_lr 1e-4, a tenth of DeepLab's 1e-3, "
              "constant (its step size, 200,000, is past its 100,000 iterations); the ratio is kept, since an AdamW "
              "rate is not an SGD rate. Measured on DeepLabV2 (stage 2 from one stage-1 run; control / SSL): "
              f"{m('s2-unit-const2e-4')} / {m('s2-paper-const2e-4')} at a tenth, constant; "
              f"{m('s2-unit-const6e-4')} / {m('s2-paper-const6e-4')} at 0.3, constant; "
              f"{m('s2-unit-restart')} / {m('s2-paper-restart')} restarting stage 1's schedule (peak, warm-up, "
              f"decay; the earlier recipe), from {m('deeplab-nodrop')} at stage 1. The restart is longer training "
              "at stage 1's pace, not fine-tuning; SSL trails its control under all three (one seed), so the "
              "schedule does not decide the sign of SSL's effect here",
    "epochs": "the budget: the whole book (31 runs) within about 75 minutes on 2 cores",
    "crop": "scaled with the images (the paper's 321 px crops are ~half a LIP image side)",
    "grid": "the joints see every 8th pixel of the crop, as the released code's; a smaller crop gives a "
            "smaller grid",
    "ppp_joints": "PASCAL-Person-Part merges left and right and has no clothes, so LIP's nine joints do not "
                  "exist there; the paper does not say how SSL was applied on it",
    "eval_sizes": "Table 6's input sizes 153 / 321 / 513 scaled by crop / 321, so they mean the same "
                  "relative sizes",
    "atrous": "the paper's rates are sized for its 321-px crops (a 41-cell score map); on smaller crops the "
              "wide rates look past the map's edge and act as 1x1 layers. Measured: DeepLabV2 19.1% with the "
              "rates scaled by crop / 321, 17.8% without (operating_point.json: pretrain16-6ep-atrous0.4, "
              "pretrain16-6ep)",
    "dropout": "dropout sized for 1024- and 4096-channel layers, on layers thinned by the width. Measured: "
               "DeepLabV2 16.99 / 18.15 / 18.74% with dropout 0.5 and 18.42 / 18.52 / 18.47% without (seeds 0-2; "
               "operating_point.json: cpu, cpu-nodropout); Attention's single-scale network (LargeFOV) "
               f"{m('largefov-nopool5a')} with it, "
               f"{m('largefov-nopool5a-nodrop')} without; the attention model keeps the prototxt's 0.5 "
               f"(Attention at 128 channels: {m('att-128-attdrop')} with it, {m('att-nopool5a-nodrop-zero-128')} "
               "without, the weights soft either way)",
    "head_min": "thinning every layer by the width leaves DeepLab's 1024-channel fc6 / fc7 at 64 channels, a "
                "quarter of FCN-8s' (4096 x 1/16 = 256). Measured: DeepLabV2 "
                f"{m('deeplab-nodrop')} at 64 channels, {m('deeplab-nodrop-128')} at 128; Attention "
                f"{m('att-nopool5a-nodrop-zero')} at 64, {m('att-nopool5a-nodrop-zero-128')} at 128, "
                f"{m('att-nopool5a-nodrop-zero-256')} at 256",
    "seeds": "run-to-run spread is part of a verdict when runs differ by a few points: a claim is decided "
             "only on runs trained with at least three seeds (claims chapter)",
    "controls": "the paper compares '+ SSL' with the stage-1 network, which trained fewer epochs: a control "
                "trained the same extra epochs with the same loss but every L_joint = 1 separates the structure "
                "weight from the training length and the averaging; the shuffled control keeps SSL's weights "
                "and breaks their link to each image's structure",
    "data_pipeline": "a GPU at this width needs its batches faster than a per-image loader decodes them: the "
                     "split stays on the GPU and is augmented there (lipstudy.resident), with the same random "
                     "choices; bilinear sampling there does not antialias when it scales an image down",
}


def deviations(profile, device: str | None = None) -> pd.DataFrame:
    """One row per departure of ``profile`` from the paper: setting, paper, this profile, reason.
    ``device``: where the book runs ("auto" when None), for what depends on it (the precision)."""
    prof = get_profile(profile)
    paper = TrainConfig()  # the paper's defaults
    cfg = train_config(Run("deeplabv2"), prof, "")  # how the baselines train (the backbone's is its own)
    rows = []

    def add(setting, ours, theirs, reason, differs=None):
        if (str(ours) != str(theirs)) if differs is None else differs:
            rows.append({"setting": setting, "paper": theirs, f"profile {prof.name}": ours,
                         "reason": prof.reasons.get(reason, REASONS[reason])})

    def count(x) -> str:
        return f"{int(x):,}"

    ppp, atr = TABLE1.loc["PASCAL-Person-Part [6]"], TABLE1.loc["ATR [17]"]
    add("data", "the synthetic LIP-style benchmark by default (real LIP with DATA=...)", "LIP", "data")
    add("training images", count(prof.lip_data["train"]), count(LIP_SPLITS["train"]), "images")
    add("validation / test images", f"{count(prof.lip_data['val'])} / {count(prof.lip_data['test'])}",
        f"{count(LIP_SPLITS['val'])} / {count(LIP_SPLITS['test'])}", "eval_images")
    add("PASCAL-Person-Part training / test images", f"{count(prof.ppp_data['train'])} / {count(prof.ppp_data['test'])}",
        f"{count(ppp['#Training'])} / {count(ppp['#Test'])}", "eval_images")
    add("ATR test images (Table 6)", count(prof.atr_data["test"]), count(atr["#Test"]), "eval_images")
    side = prof.lip_data["max_side"]
    add("image size", LIP_IMAGE_SIDE if side is None else f"longest side <= {side} px", LIP_IMAGE_SIDE, "scale")
    add("crop", f"{prof.crop} x {prof.crop}", "321 x 321", "crop")
    add("joint heatmap grid (stride 8)", f"{_grid(prof.crop)} x {_grid(prof.crop)}", f"{_grid(321)} x {_grid(321)}",
        "grid")
    add("batch", prof.batch, paper.batch_size, "batch")
    add("network width", f"{prof.width:g} x the channels of every layer", "1 (VGG-16)", "width",
        differs=prof.width != 1.0)
    bn = "every baseline" if cfg.batch_norm else "SegNet only"
    add("batch norm in the backbone", bn, "SegNet only (VGG-16-BN)", "batch_norm", differs=bool(cfg.batch_norm))
    if prof.pretrain:
        init = (f"VGG-16-BN trained {prof.pretrain['epochs']} epochs on {count(prof.pretrain['train'])} "
                f"other synthetic images (models/pretrain.py)")
        add("fc6 / fc7 (DeepLabV2's ASPP branches, Attention's LargeFOV head, FCN-8s)", "random: the synthetic "
            "backbone pretrains the convolutions only", "ImageNet VGG-16's fc6 / fc7", "heads")
    else:
        init = "ImageNet VGG-16" if prof.pretrained else "random (from scratch)"
    add("initialisation", init, "ImageNet VGG-16", "init")
    opt = (f"AdamW (lr {prof.lr:g}, betas ({cfg.momentum:g}, 0.999), weight decay {cfg.weight_decay:g})"
           if cfg.optimizer == "adamw" else
           f"SGD (lr {prof.lr:g}, momentum {cfg.momentum:g}, weight decay {cfg.weight_decay:g})")
    add("optimiser", opt, f"SGD (lr {paper.lr:g}, momentum {paper.momentum:g}, weight decay "
        f"{paper.weight_decay:g})", "optimizer")
    if cfg.optimizer == "adamw":
        add("L_joint's scale (Eq. 2)", "a batch-wide scale cancels in AdamW's update; the per-image weights remain",
            "scales SGD's step as well as weighting the images", "adamw_scale", differs=True)
    add("classifier learning rate", f"{cfg.classifier_lr_mult:g}x", f"{paper.classifier_lr_mult:g}x",
        "classifier_lr_mult")
    if cfg.atrous_scale != 1.0:
        from .models import ASPP_RATES, LARGEFOV_RATE

        rate = lambda r: max(1, int(round(r * cfg.atrous_scale)))  # noqa: E731  (as build_model)
        add("atrous rates (ASPP; attention's LargeFOV)",
            f"{'/'.join(str(rate(r)) for r in ASPP_RATES)}; {rate(LARGEFOV_RATE)} (x {cfg.atrous_scale:.3g})",
            f"{'/'.join(map(str, ASPP_RATES))}; {LARGEFOV_RATE}", "atrous")
    if cfg.dropout is not None:
        from .models.attention import ATTENTION_DROPOUT

        add("dropout", f"{cfg.dropout:g} in fc6 / fc7; {ATTENTION_DROPOUT:g} in Attention's attention model",
            "0.5", "dropout", differs=cfg.dropout != 0.5)
    if cfg.head_min:
        add("fc6 / fc7 channels", f"at least {cfg.head_min} (DeepLabV2 and Attention: "
            f"{max(cfg.head_min, round(1024 * prof.width))}; FCN-8s: {max(cfg.head_min, round(4096 * prof.width))})",
            "1024 (DeepLabV2's ASPP branches, Attention's LargeFOV) / 4096 (FCN-8s), x the width", "head_min",
            differs=True)
    add("warm-up", f"{cfg.warmup_steps} steps, linear" if cfg.warmup_steps else "none", "none", "warmup")
    s2 = train_config(Run("deeplabv2", "paper", stage=2), prof, "")
    add("stage 2's schedule", f"a new optimiser state at {prof.stage2_lr:g} x the base rate ({s2.lr:g}), "
        "constant, no warm-up", "not stated (released solver: 1e-4, constant, batch 1 x iter_size 2)", "stage2",
        differs=True)
    # (precision: code_departures, which knows the device)
    add("augmentation", "on the GPU, batched (scale, crop, flip)", "per image (Caffe's data layer)", "data_pipeline",
        differs=cfg.data_pipeline == "resident")
    add("epochs (stage 1 + stage 2)", f"{prof.epochs_stage1} + {prof.epochs_stage2}", "30 + 20", "epochs")
    add("Table 6 input sizes", " / ".join(str(s) for s in prof.eval_sizes), "153 / 321 / 513", "eval_sizes")
    add("SSL on PASCAL-Person-Part", "six proxy joints: the centres of head, torso, upper / lower arms, upper / "
        "lower legs (losses.PPP_JOINT_VIEW)", "not described", "ppp_joints", differs=True)
    seeds = f"{len(prof.seeds)} (PASCAL-Person-Part: {len(prof.ppp_seeds)})"
    add("seeds", seeds, "1 (not stated)", "seeds", differs=len(prof.seeds) > 1 or len(prof.ppp_seeds) > 1)
    shuffled = " and ".join({"deeplabv2": "DeepLabV2", "attention": "Attention"}[x] for x in prof.shuffled)
    add("SSL controls", "DeepLabV2 and Attention (LIP, PASCAL-Person-Part) fine-tuned the same stage-2 epochs with "
        "Eq. 2 and every L_joint = 1" + (f"; {shuffled} with each image's L_joint from another image of its batch"
                                         if shuffled else ""), "none", "controls", differs=True)
    rows += [{"setting": setting, "paper": theirs, f"profile {prof.name}": ours, "reason": reason}
             for setting, theirs, ours, reason in code_departures(prof, cfg, device)]
    return pd.DataFrame(rows, columns=["setting", "paper", f"profile {prof.name}", "reason"])


# ---------------------------------------------------------------------------------------------
# What the code does differently from the paper's released training, whatever the profile's budget
# (issue 22: the full profile's remaining departures, each found by reading the paper, the LIP_SSL
# prototxts and the DeepLab prototxts against this code).

NOT_MEASURED_CPU = "not measured on the cpu profile yet"

CODE_REASONS = {
    "score_map_loss": "measured on DeepLabV2 (129-px crops, as DeepLab's shrinking needs 8k + 1 px): "
                      f"{m('deeplab-nodrop-smap')} with the loss on the score map against {m('deeplab-nodrop')} at "
                      "the input size; at a 17-cell score map the shrunk labels lose the thin parts. The full "
                      "profile computes the loss as DeepLab's Caffe does",
    "aux_structure": f"{NOT_MEASURED_CPU}; the full profile weights them as the released prototxt does",
    "imagenet": "the paper's Caffe models need Caffe to read; torchvision's files are the ImageNet VGG-16 a PyTorch "
                "lab has (the same networks, trained separately), fetched and hash-checked as torchvision does. "
                "Attention's attention layers therefore start afresh (at equal weights) and learn at the "
                "classifier's rate",
    "bias": "not implemented: a detail of Caffe's prototxts, its effect not measured",
    "scales": "not implemented: a continuous range covers the same scales; its effect not measured",
    "baselines_recipe": "the paper gives no settings for SegNet and FCN-8s; one recipe for all four networks keeps "
                        "the comparison about the networks",
    "attention_init": "no attention model pretrained on the synthetic benchmark exists; from a random start at 64 "
                      "channels the weights saturated on one scale (att-nopool5a-nodrop: mean weights 1.00 / 0.00 "
                      "/ 0.00, every pixel above 0.9 on scale 1). A zero last layer starts every scale at 1/3, and "
                      f"at 128 channels Attention scored {m('att-128-attdrop')} with soft weights",
    "joint_n": "the paper does not say how N is counted (joints present in the ground truth, the prediction or "
               "either); with N = 9 a joint missing from both maps adds nothing, and the released code has no 1/N "
               "(a constant factor, joints.py)",
    "precision": "bf16 runs on a GPU's fast units at half the activation memory of fp32, and keeps fp32's "
                 "exponent range (no loss scaling); on a CPU the book runs in fp32",
}


def code_departures(prof, cfg: TrainConfig, device: str | None = None) -> list[tuple[str, str, str, str]]:
    """(setting, paper, this profile, reason) of each way the code trains differently from the paper
    and its released training (the LIP_SSL and DeepLab prototxts and solvers), for ``prof`` whose
    baselines train with ``cfg``."""
    from .runtime import precision_plan, resolve_device

    out = []
    if not cfg.score_map_loss:
        out.append(("loss of DeepLabV2 and Attention",
                    "on the score map (41 x 41 for 321-px crops) against the labels shrunk by 8, as DeepLab's "
                    "Caffe; the joints on that grid",
                    "at the input size (score maps upsampled); the joints from every 8th pixel",
                    CODE_REASONS["score_map_loss"]))
    if not cfg.aux_structure_weight:
        out.append(("Attention's per-scale losses in SSL",
                    "each weighted by the fused prediction's L_joint (LIP_SSL prototxt)", "plain cross-entropy",
                    CODE_REASONS["aux_structure"]))
    if prof.pretrained:
        out.append(("ImageNet weights",
                    "the Caffe VGG-16 models DeepLabV2 provides (BGR, mean subtracted); the prototxt's attention "
                    "layers at 1x, \"since it has been pretrained on coco\"",
                    "torchvision's vgg16 / vgg16_bn files (RGB, ImageNet mean and std); attention layers random, "
                    f"at {cfg.classifier_lr_mult:g}x",
                    CODE_REASONS["imagenet"]))
    if cfg.optimizer == "sgd":
        out.append(("biases", "2x the weights' learning rate, no weight decay (lr_mult 2, decay_mult 0)",
                    "the weights' learning rate and weight decay", CODE_REASONS["bias"]))
    out.append(("random scale", "one of 0.6 / 0.8 / 1 / 1.2 / 1.4 (the prototxt's scale_factors)",
                f"uniform in [{cfg.scale_min:g}, {cfg.scale_max:g}]", CODE_REASONS["scales"]))
    out.append(("SegNet and FCN-8s training", "their authors' released code (settings not given)",
                "the recipe of this table, as DeepLabV2's", CODE_REASONS["baselines_recipe"]))
    out.append(("Attention's attention model at the start", "pretrained on COCO (the LIP_SSL prototxt)",
                "its last layer at zero: every scale weighted 1/3", CODE_REASONS["attention_init"]))
    out.append(("N in Eq. 1", "the joints of the body in the image (9 for a full body)", "9 for every image",
                CODE_REASONS["joint_n"]))
    if precision_plan(resolve_device(device or "auto"), cfg.amp).autocast:
        out.append(("precision", "fp32 (Caffe)", "bf16 autocast in training and evaluation", CODE_REASONS["precision"]))
    return out
