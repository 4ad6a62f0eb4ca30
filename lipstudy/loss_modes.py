"""What the loss modes train, measured through the real trainer (paper Section 4.2 against the
released code).

:mod:`lipstudy.losses` states that the released code's loss ("released": the forward value
weighted by the joint structure loss, the gradient of plain cross-entropy) trains exactly the
baseline ("off"), while Eq. 2 ("paper") does not. :func:`compare_training` checks it where it
matters: a few steps of :func:`lipstudy.train.train` from the same start with the profile's recipe
(optimiser, batch norm, dropout and its random masks, memory layout), comparing the weights bit for
bit. The SSL chapter shows the outcome, and a test asserts it.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from .config import TrainConfig
from .checkpoints import load_checkpoint


def trained_weights(cfg: TrainConfig, folder) -> dict[str, torch.Tensor]:
    """The weights :func:`lipstudy.train.train` leaves after training ``cfg`` into ``folder``."""
    from .train import train

    return load_checkpoint(train(cfg, folder, progress=False, report=False))["model"]


def largest_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two state dicts' tensors (0.0: bit-identical)."""
    if a.keys() != b.keys():
        raise ValueError("the two networks have different parameters")
    return max((float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0) for k in a)


def compare_training(cfg: TrainConfig, modes=("off", "released", "paper")) -> dict[str, float]:
    """Train ``cfg`` once per loss mode from the same start (same seed, data, settings) and return,
    for each mode, the largest absolute weight difference from the first mode's network."""
    with tempfile.TemporaryDirectory(prefix="lipstudy-loss-modes-") as tmp:
        weights = {m: trained_weights(dataclasses.replace(cfg, loss=m), Path(tmp) / m) for m in modes}
    first = weights[modes[0]]
    return {m: largest_difference(w, first) for m, w in weights.items()}


def profile_config(profile, data_root, steps: int = 3, model: str = "deeplabv2") -> TrainConfig:
    """A few steps of ``model`` as the profile's book trains it (:func:`lipstudy.store.train_config`:
    width, crop, batch, optimiser, batch norm, dropout, warm-up, memory layout) on the LIP data in
    ``data_root``, from a random start, in this process on the CPU."""
    from .runs import Run
    from .store import train_config

    cfg = train_config(Run(model), profile, data_root, device="cpu")
    return dataclasses.replace(cfg, epochs=1, max_steps=steps, workers=0, checkpoint_every_steps=None,
                               cache_images=False, compile=False)
