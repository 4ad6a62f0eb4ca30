"""Inference and scoring on a split (paper Section 3: "the standard intersection over union (IoU)
criterion and pixel-wise accuracy").

Predictions are made at the annotation's own resolution: the network's logits are resized back
to the label size before the argmax. Options: flip (average the logits with those of the mirrored
image, mirrored back and with left/right channels swapped), multi-scale (average over input
scales), and a fixed input size (the longer side resized to N before the network: Table 6,
right). Each image gets its own confusion matrix (``per_image_cm.npz``, keyed by image id); every
table is an aggregation of those. Predictions can be written as LIP-format PNGs (grayscale class
ids: what the evaluation server takes) and palette-coloured PNGs.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import labels
from .atomic import atomic_save, atomic_write_json
from .joints import NUM_JOINTS, joint_terms
from .losses import JOINT_STRIDE
from .metrics import batched_confusion_matrix, scores
from .runtime import precision_plan
from .transforms import EvalTransform

LABEL_MAPS: dict[str, Callable] = {"atr_to_lip": labels.atr_to_lip}
"""Ground-truth relabellings by name (recorded by name in metrics.json)."""


@dataclass(frozen=True)
class EvalSettings:
    """How predictions are made and scored. ``label_map`` names an entry of LABEL_MAPS applied to
    the ground truth (``"atr_to_lip"`` for Table 6's ATR column); ``classes_subset`` restricts the
    class averages to those ids (Table 6 uses ``labels.ATR_LIP_SHARED``)."""

    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    input_size: int | None = None
    label_map: str | None = None
    classes_subset: tuple[int, ...] | None = None

    def __post_init__(self):
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive, got {self.scales}")
        if self.label_map is not None and self.label_map not in LABEL_MAPS:
            raise ValueError(f"unknown label_map {self.label_map!r}; known: {', '.join(LABEL_MAPS)}")


def flip_logits(logits: torch.Tensor, flip_pairs) -> torch.Tensor:
    """Mirror ``[..., C, H, W]`` logits horizontally and swap the left/right class channels: the
    prediction of a mirrored image, expressed for the original image."""
    perm = list(range(logits.shape[-3]))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return logits.flip(-1)[..., perm, :, :]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, image: torch.Tensor, out_size: tuple[int, int],
                   flip: bool = False, flip_pairs=(), scales=(1.0,), amp: str = "auto",
                   channels_last: bool | None = None) -> torch.Tensor:
    """Averaged logits ``[C, h, w]`` (float32) of one normalised image ``[3,H,W]`` (already on the
    model's device) at ``out_size``: over ``scales`` (input resized bilinearly by each factor) and,
    with ``flip``, over the mirrored input too (its logits mirrored back, left/right swapped).
    ``amp`` / ``channels_last``: as in :func:`lipstudy.runtime.precision_plan` (bf16 and NHWC on
    CUDA by default)."""
    x = image[None]
    total = None
    dev = image.device
    plan = precision_plan(dev, amp, channels_last)
    for s in scales:
        xs = x
        if s != 1.0:
            size = (max(1, round(x.shape[-2] * s)), max(1, round(x.shape[-1] * s)))
            xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if flip:
            xs = torch.cat([xs, xs.flip(-1)])
        if plan.channels_last:
            xs = xs.contiguous(memory_format=torch.channels_last)
        with plan.autocast_context(dev):
            out = model(xs)
        out = F.interpolate(out.float(), size=out_size, mode="bilinear", align_corners=False)
        if flip:
            out = torch.stack([out[0], flip_logits(out[1], flip_pairs)])
        out = out.sum(0)
        total = out if total is None else total + out
    return total / (len(scales) * (2 if flip else 1))


def class_map(logits: torch.Tensor) -> torch.Tensor:
    """The class of each pixel of ``[C, H, W]`` logits: the first largest, exactly as
    ``argmax(0)``, whose reduction across the class axis is slower on CPU than ``max(0)``'s (the
    measurement is in DESIGN.md's decisions log)."""
    return logits.max(0).indices


def _atomic_png(array: np.ndarray, path: Path) -> None:
    atomic_save(path, Image.fromarray(array).save, suffix=".png")


def score_summary(cm: np.ndarray, classes, classes_subset=None) -> dict:
    """metrics.json's scores of a summed confusion matrix. With ``classes_subset`` the mean
    accuracy and mean IoU average those classes only (IoU still counts every false positive)."""
    s = scores(cm)
    ids = list(range(len(classes))) if classes_subset is None else list(classes_subset)
    iou, acc = s["per_class_iou"][ids], s["per_class_acc"][ids]
    with np.errstate(invalid="ignore"):
        mean_iou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
        mean_acc = float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")
    return {"overall_acc": s["overall_acc"], "mean_acc": mean_acc, "mean_iou": mean_iou,
            "per_class_iou": {classes[i]: (None if np.isnan(s["per_class_iou"][i]) else
                                           float(s["per_class_iou"][i])) for i in ids}}


def evaluate(model: torch.nn.Module, dataset, classes, flip_pairs=(), settings: EvalSettings = EvalSettings(),
             out=None, save_png: bool = False, save_color: bool = False, device="cpu",
             progress: bool = True, workers: int = 0, joint_terms: bool = False) -> dict:
    """Evaluate ``model`` (eval mode, on ``device``) on ``dataset`` (items with image, label, id).

    Returns ``{"ids": [...], "cms": int64 [N,C,C], "metrics": {...}}``. With ``out``, writes
    ``per_image_cm.npz`` (id -> [C,C]), then ``metrics.json`` last (its presence means the
    evaluation is complete); with ``save_png`` LIP-format predictions ``pred/<id>.png`` and with
    ``save_color`` coloured ones ``color/<id>.png``. Unlabelled items (test split without the
    server's labels) are predicted but not scored. With ``joint_terms`` (LIP labels) each scored
    image's Eq. 1 terms between its prediction and its label are kept too (``"joint_terms"``: ids and
    :func:`lipstudy.joints.joint_terms`' arrays, written to ``joint_terms.npz`` before ``metrics.json``):
    what the structure-sensitive loss would weigh the image by, at no extra inference.
    """
    device = torch.device(device)
    num_classes = len(classes)
    transform = EvalTransform(settings.input_size)
    label_map = LABEL_MAPS[settings.label_map] if settings.label_map else None
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for sub, on in (("pred", save_png), ("color", save_color)):
            if on:
                (out / sub).mkdir(exist_ok=True)
    palette = labels.palette_for(num_classes)

    loader = torch.utils.data.DataLoader(
        _Mapped(dataset, transform), batch_size=None, num_workers=workers,
        pin_memory=device.type == "cuda")
    if progress:
        from tqdm.auto import tqdm
        loader = tqdm(loader, total=len(dataset), desc="evaluate", unit="img", dynamic_ncols=True)
    model.eval()
    # Images of every size: cuDNN's autotuning (on while training on fixed crops) would tune each new
    # shape again, costing more than it saves.
    benchmark, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
    try:
        ids, cms, terms = _predict_and_score(model, loader, device, settings, flip_pairs, num_classes, label_map,
                                             out, save_png, save_color, palette, joint_terms)
    finally:
        torch.backends.cudnn.benchmark = benchmark
    cms_arr = np.stack(cms) if cms else np.zeros((0, num_classes, num_classes), np.int64)
    metrics = score_summary(cms_arr.sum(0), classes, settings.classes_subset) if cms else {}
    metrics.update({"n_images": len(ids), "n_predicted": len(dataset), "classes": list(classes),
                    "settings": asdict(settings)})
    if out is not None:
        atomic_save(out / "per_image_cm.npz", lambda tmp: np.savez_compressed(tmp, **dict(zip(ids, cms_arr))),
                    suffix=".npz")
        if terms is not None:
            atomic_save(out / JOINT_TERMS, lambda tmp: np.savez_compressed(tmp, **terms), suffix=".npz")
        atomic_write_json(out / "metrics.json", metrics, allow_nan=True)
    result = {"ids": ids, "cms": cms_arr, "metrics": metrics}
    if terms is not None:
        result["joint_terms"] = terms
    return result


def _predict_and_score(model, loader, device, settings, flip_pairs, num_classes, label_map, out, save_png,
                       save_color, palette, with_joint_terms: bool = False) -> tuple[list, list, dict | None]:
    """The loop of :func:`evaluate`: each image's prediction (written as PNGs when asked) and, when
    it has a label, its confusion matrix."""
    ids, cms, terms = [], [], []
    for item in loader:
        image = item["image"].to(device, non_blocking=True)
        logits = predict_logits(model, image, item["size"], settings.flip, flip_pairs, settings.scales)
        pred = class_map(logits)
        pred_np = pred.to(torch.uint8).cpu().numpy()
        if out is not None and save_png:
            _atomic_png(pred_np, out / "pred" / f"{item['id']}.png")
        if out is not None and save_color:
            _atomic_png(labels.colorize(pred_np, palette), out / "color" / f"{item['id']}.png")
        label = item["label"]
        if label is None:
            continue
        if label_map is not None:
            label = label_map(label.to(torch.uint8)).long()
        cm = batched_confusion_matrix(pred[None], label.to(device)[None], num_classes)
        ids.append(item["id"])
        cms.append(cm[0].cpu().numpy())
        if with_joint_terms:
            terms.append([t.cpu().numpy() for t in joint_terms(pred, label.to(device), stride=JOINT_STRIDE)])
    if not with_joint_terms:
        return ids, cms, None
    empty = np.zeros((0, NUM_JOINTS))
    sq, pp, pg = (np.stack(t) for t in zip(*terms)) if terms else (empty, empty, empty)
    return ids, cms, {"ids": np.asarray(ids, dtype=str), "sq": sq.astype(np.float32),
                      "present_pred": pp.astype(bool), "present_gt": pg.astype(bool)}


JOINT_TERMS = "joint_terms.npz"
"""An evaluation's per-image Eq. 1 terms (:func:`evaluate` with ``joint_terms``)."""


def load_joint_terms(path) -> dict:
    """Read ``joint_terms.npz`` -> ``{"ids": [...], "sq", "present_pred", "present_gt": [N, 9]}``."""
    with np.load(path) as z:
        return {"ids": [str(i) for i in z["ids"]], "sq": z["sq"], "present_pred": z["present_pred"],
                "present_gt": z["present_gt"]}


class _Mapped(torch.utils.data.Dataset):
    """A dataset with the eval transform applied (picklable, for loader workers)."""

    def __init__(self, base, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        return self.transform(self.base[i])


def load_cms(path) -> tuple[list[str], np.ndarray]:
    """Read ``per_image_cm.npz`` -> (ids in stored order, int64 [N,C,C])."""
    with np.load(path) as z:
        ids = list(z.files)
        return ids, (np.stack([z[i] for i in ids]).astype(np.int64) if ids else np.zeros((0, 0, 0), np.int64))


def evaluate_checkpoint(checkpoint, data, split: str = "val", kind: str = "auto",
                        settings: EvalSettings = EvalSettings(), out=None, save_png: bool = False,
                        save_color: bool = False, device: str = "auto", progress: bool = True,
                        label_dir=None, workers: int = 0, joint_terms: bool = False) -> dict:
    """Evaluate a training checkpoint on a dataset split (see :func:`evaluate`). The classes and
    flip pairs are the training dataset's; the data may be of another kind when ``settings``
    maps its labels (a LIP model on ATR with ``label_map="atr_to_lip"``)."""
    from .data.datasets import open_dataset
    from .checkpoints import model_from_checkpoint
    from .runtime import resolve_device

    dev = resolve_device(device)
    model, cfg = model_from_checkpoint(checkpoint, dev)
    info = labels.DATASETS[cfg.dataset]
    kw = {"label_dir": label_dir} if label_dir is not None else {}
    dataset = open_dataset(data, split, kind=kind, **kw)
    return evaluate(model, dataset, info["classes"], info["flip_pairs"], settings, out=out,
                    save_png=save_png, save_color=save_color, device=dev, progress=progress,
                    workers=workers, joint_terms=joint_terms)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lipstudy evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="dataset root (LIP, PPP or ATR layout)")
    p.add_argument("--split", default="val")
    p.add_argument("--kind", default="auto", choices=("auto", *labels.DATASETS))
    p.add_argument("--label-dir", help="labels for an unlabelled split (the server's hidden test labels)")
    p.add_argument("--flip", action="store_true", help="average with the mirrored prediction")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0], help="e.g. 0.75 1 1.25")
    p.add_argument("--input-size", type=int, help="resize the longer side to N before the network")
    p.add_argument("--label-map", choices=sorted(LABEL_MAPS), help="relabel the ground truth")
    p.add_argument("--classes", type=int, nargs="+", help="average over these class ids only")
    p.add_argument("--out", help="write per_image_cm.npz, metrics.json (and PNGs) here")
    p.add_argument("--save-png", action="store_true", help="LIP-format predictions in OUT/pred/")
    p.add_argument("--save-color", action="store_true", help="coloured predictions in OUT/color/")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    if (args.save_png or args.save_color) and not args.out:
        p.error("--save-png / --save-color need --out")
    try:
        settings = EvalSettings(args.flip, tuple(args.scales), args.input_size, args.label_map,
                                tuple(args.classes) if args.classes else None)
        res = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.kind, settings, args.out,
                                  args.save_png, args.save_color, args.device, label_dir=args.label_dir,
                                  workers=args.workers)
    except (ValueError, FileNotFoundError) as e:
        print(f"lipstudy evaluate: {e}", file=sys.stderr)
        return 2
    m = res["metrics"]
    if m.get("n_images"):
        print(f"{m['n_images']} images: overall acc {100 * m['overall_acc']:.2f}  "
              f"mean acc {100 * m['mean_acc']:.2f}  mean IoU {100 * m['mean_iou']:.2f}")
    else:
        print(f"{m['n_predicted']} images predicted, none labelled (nothing scored)")
    return 0
