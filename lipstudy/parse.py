"""Parse your own photos with a trained checkpoint (CPU or GPU).

Writes ``<stem>_parsing.png`` (8-bit grayscale LIP class ids, the format of LIP's annotations and
of its evaluation server) and ``<stem>_overlay.png`` (the palette-coloured parsing over the photo)
for every image. The checkpoint carries its training config, so the network is rebuilt from it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import labels
from .atomic import atomic_save
from .evaluate import class_map, predict_logits
from .transforms import EvalTransform


def parse_image(model: torch.nn.Module, image: np.ndarray, flip_pairs=(), flip: bool = False,
                input_size: int | None = None) -> np.ndarray:
    """The parsing (HxW uint8 class ids, at the photo's size) of an HxWx3 uint8 RGB image."""
    dev = next(model.parameters()).device
    x = EvalTransform(input_size)({"image": image, "id": ""})["image"].to(dev)
    logits = predict_logits(model, x, image.shape[:2], flip=flip, flip_pairs=flip_pairs)
    return class_map(logits).to(torch.uint8).cpu().numpy()


def _save(array: np.ndarray, path: Path) -> None:
    atomic_save(path, Image.fromarray(array).save, suffix=".png")


def main(argv: list[str]) -> int:
    from .checkpoints import model_from_checkpoint
    from .data.decode import DataError, read_image
    from .runtime import resolve_device

    p = argparse.ArgumentParser(prog="lipstudy parse", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default=".", help="output folder (default: the current one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--flip", action="store_true", help="average with the mirrored prediction")
    p.add_argument("--input-size", type=int, help="resize the longer side to N before the network")
    args = p.parse_args(argv)
    try:
        dev = resolve_device(args.device)
        model, cfg = model_from_checkpoint(args.checkpoint, dev)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"lipstudy parse: {e}", file=sys.stderr)
        return 2
    info = labels.DATASETS[cfg.dataset]
    palette = labels.palette_for(len(info["classes"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for path in map(Path, args.images):
        try:
            image = read_image(path)
        except (DataError, FileNotFoundError) as e:
            print(f"lipstudy parse: {e}", file=sys.stderr)
            status = 2
            continue
        parsing = parse_image(model, image, info["flip_pairs"], args.flip, args.input_size)
        _save(parsing, out / f"{path.stem}_parsing.png")
        _save(labels.overlay(image, parsing, palette=palette), out / f"{path.stem}_overlay.png")
        print(out / f"{path.stem}_parsing.png")
    return status
