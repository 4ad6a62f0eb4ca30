"""Is the synthetic benchmark hard in the right way? A per-pixel colour classifier (multinomial
logistic regression on RGB) should fail, while a small CNN that sees shape and context learns it.

Prints val mean IoU (LIP convention: classes absent from both ground truth and prediction are
skipped) for both, and the ratio. Usage:
    python benchmarks/synth_difficulty.py [--train 600] [--val 200] [--max-side 96] [--minutes 4]
"""
from __future__ import annotations

import argparse
import tempfile
import functools
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lipstudy.data import synth
from lipstudy.data.datasets import LIPDataset

C = 20
print = functools.partial(print, flush=True)  # noqa: A001  (progress shows when piped)


def load(root, split, size):
    """Images and labels resized (nearest for labels) to a fixed ``size`` x ``size`` batch."""
    ds = LIPDataset(root, split)
    xs, ys = [], []
    for i in range(len(ds)):
        it = ds[i]
        x = torch.from_numpy(it["image"]).permute(2, 0, 1).float()[None] / 255
        y = torch.from_numpy(it["label"].astype(np.int64))[None, None].float()
        xs.append(F.interpolate(x, (size, size), mode="bilinear", align_corners=False))
        ys.append(F.interpolate(y, (size, size), mode="nearest").long()[:, 0])
    return torch.cat(xs), torch.cat(ys)


def miou(pred, target):
    cm = torch.bincount(target.flatten() * C + pred.flatten(), minlength=C * C).reshape(C, C).double()
    inter, union = cm.diag(), cm.sum(0) + cm.sum(1) - cm.diag()
    present = union > 0
    return float((inter[present] / union[present]).mean()), float(cm.diag().sum() / cm.sum())


def logistic_regression(xtr, ytr, xva, yva, steps=600):
    mean, std = xtr.mean((0, 2, 3), keepdim=True), xtr.std((0, 2, 3), keepdim=True)
    # RGB plus pairwise products: a quadratic colour model, still per pixel
    feats = lambda x: torch.cat([(x - mean) / std, ((x - mean) / std)[:, [0, 0, 1]] * ((x - mean) / std)[:, [1, 2, 2]]], 1)  # noqa: E731
    model = nn.Conv2d(6, C, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    # a random 200k-pixel sample is plenty for 6 x 20 weights
    ftr = feats(xtr).permute(0, 2, 3, 1).reshape(-1, 6)
    keep = torch.randperm(len(ftr), generator=torch.Generator().manual_seed(0))[:200_000]
    ftr, ysub = ftr[keep].T[None, :, :, None], ytr.reshape(-1)[keep][None, :, None]
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(ftr), ysub).backward()
        opt.step()
    with torch.no_grad():
        return miou(model(feats(xva)).argmax(1), yva)


class SmallCNN(nn.Module):
    def __init__(self, w=16):
        super().__init__()
        def block(i, o, d=1):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=d, dilation=d), nn.BatchNorm2d(o), nn.ReLU())
        self.enc = nn.Sequential(block(3, w), block(w, w), nn.MaxPool2d(2), block(w, 2 * w), block(2 * w, 2 * w),
                                 nn.MaxPool2d(2), block(2 * w, 4 * w), block(4 * w, 4 * w, 2), block(4 * w, 4 * w, 4),
                                 block(4 * w, 4 * w, 8))
        self.head = nn.Conv2d(4 * w, C, 1)

    def forward(self, x):
        return F.interpolate(self.head(self.enc(x)), x.shape[-2:], mode="bilinear", align_corners=False)


def cnn(xtr, ytr, xva, yva, minutes):
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    mean, std = xtr.mean((0, 2, 3), keepdim=True), xtr.std((0, 2, 3), keepdim=True)
    t0, step = time.time(), 0
    while time.time() - t0 < 60 * minutes:
        idx = torch.randint(len(xtr), (16,))
        x, y = xtr[idx], ytr[idx]
        flip = torch.rand(()) < 0.5
        if flip:  # mirror with left/right swap
            x = x.flip(-1)
            y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 14, 17, 16, 19, 18])[y.flip(-1)]
        model.train()
        opt.zero_grad()
        F.cross_entropy(model((x - mean) / std), y).backward()
        opt.step()
        step += 1
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model((xva[i:i + 32] - mean) / std).argmax(1) for i in range(0, len(xva), 32)])
    return miou(pred, yva), step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--max-side", type=int, default=96)
    p.add_argument("--size", type=int, default=64, help="training resolution (square)")
    p.add_argument("--minutes", type=float, default=4.0)
    a = p.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = f"{tmp}/ds"
        synth.generate(root, a.train, a.val, 0, seed=0, max_side=a.max_side, workers=2, progress=False)
        xtr, ytr = load(root, "train", a.size)
        xva, yva = load(root, "val", a.size)
    (lr_miou, lr_acc) = logistic_regression(xtr, ytr, xva, yva)
    print(f"per-pixel colour classifier (logistic regression, quadratic RGB): val mIoU {lr_miou:.3f}, "
          f"pixel acc {lr_acc:.3f}")
    (cnn_miou, cnn_acc), steps = cnn(xtr, ytr, xva, yva, a.minutes)
    print(f"small CNN ({steps} steps of 16, {a.minutes} min CPU): val mIoU {cnn_miou:.3f}, pixel acc {cnn_acc:.3f}")
    print(f"ratio CNN / colour mIoU: {cnn_miou / max(lr_miou, 1e-9):.2f}")


if __name__ == "__main__":
    main()
