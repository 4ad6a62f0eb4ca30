"""The parsing loss and the self-supervised structure-sensitive loss (paper Section 4.2, Eq. 1-2).

``L_structure = L_joint * L_parsing`` (Eq. 2): each image's pixel-wise softmax cross-entropy is
weighted by the joint structure loss between the joints of its predicted parsing (the argmax of
the logits) and of its ground truth (Eq. 1, ``lipstudy.joints``). The argmax has no gradient, so
``L_joint`` is a per-image weight, not a term that is optimised itself.

Modes of :func:`structure_sensitive_loss`:

- ``"paper"``: Eq. 2 as written, with autograd through ``L_parsing`` only: the gradient of image
  ``i`` is its cross-entropy gradient scaled by ``L_joint_i`` (averaged over the batch).
- ``"released"``: what the released Caffe code (github Engineering-Course/LIP_SSL) trains with.
  Its layers multiply the forward loss by the joint error but back-propagate the plain softmax
  cross-entropy gradient. We reproduce that exactly: the forward value equals ``"paper"``'s and
  the gradient equals ``"off"``'s, so "SSL" training with the released code is
  gradient-identical to the baseline.
- ``"off"``: plain cross-entropy (the baseline).
- ``"plus_one"``: ``(1 + L_joint) * L_parsing``, an ablation. With ``"paper"`` an image whose
  predicted joints already match the ground truth exactly gets weight 0 and stops learning,
  however wrong its pixels are (joints are region means, so very different parsings can share
  them); adding 1 keeps the plain cross-entropy and adds the structure weight on top.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .joints import joint_structure_loss
from .labels import IGNORE_INDEX

MODES = ("paper", "released", "off", "plus_one")


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B,C,H,W], got shape {tuple(logits.shape)}")
    if target.dim() != 3 or target.shape[0] != logits.shape[0] or target.shape[1:] != logits.shape[2:]:
        raise ValueError(f"target must be [B,H,W] = {(logits.shape[0], *logits.shape[2:])} to match the "
                         f"logits, got shape {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer label ids, got dtype {target.dtype}")


def _ce_sums(logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    """Per-image sum of pixel cross-entropies ``[B]`` (with gradient) and valid pixel counts ``[B]``."""
    target = target.long()
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")  # 0 at ignored
    valid = (target != ignore_index).sum(dim=(1, 2))
    return ce.sum(dim=(1, 2)), valid


def parsing_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                 reduction: str = "mean") -> torch.Tensor:
    """Pixel-wise softmax cross-entropy ``L_parsing`` over non-ignored pixels.

    ``logits [B,C,H,W]``, ``target [B,H,W]`` integer ids (``ignore_index`` pixels excluded).
    ``reduction="mean"``: the mean over all valid pixels of the batch (``F.cross_entropy``'s
    value); ``"none"``: each image's mean over its own valid pixels, ``[B]``. A batch or an image
    with no valid pixel contributes 0 (not NaN), so padding-only crops cannot poison training.
    """
    _check(logits, target)
    sums, valid = _ce_sums(logits, target, ignore_index)
    if reduction == "none":
        return sums / valid.clamp(min=1)
    if reduction == "mean":
        return sums.sum() / valid.sum().clamp(min=1)
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _joint_weights(logits, target, ignore_index, convention, stride, sigma) -> torch.Tensor:
    """Per-image ``L_joint`` (Eq. 1) between argmax(logits) and the target, no gradient, float32 ``[B]``."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    with torch.no_grad():
        # The joints only ever see every stride-th pixel, so subsample before the argmax: the
        # same result at 1/stride^2 of the cost (the argmax over channels dominates otherwise).
        pred = logits[:, :, ::stride, ::stride].argmax(dim=1)
        target = target[:, ::stride, ::stride].long()
        # Ignore pixels are padding from augmentation, not image: they move neither the
        # ground-truth joints nor the predicted ones.
        ignored = target == ignore_index
        fill = torch.full_like(pred, IGNORE_INDEX)
        pred = torch.where(ignored, fill, pred)
        gt = torch.where(ignored, fill, target)
        return joint_structure_loss(pred, gt, stride=1, sigma=sigma, convention=convention).float()


def structure_sensitive_terms(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                              convention: str = "paper", stride: int = 8, sigma: float = 1.0):
    """Per-image ``(L_joint [B], L_parsing [B])`` of Eq. 2, for logging and analysis.

    ``L_joint`` (Eq. 1, ``convention`` "paper" or "released", see
    :func:`lipstudy.joints.joint_structure_loss`) has no gradient; ``L_parsing`` is each image's
    mean cross-entropy over its valid pixels and carries the gradient (detach it to log).
    """
    _check(logits, target)
    l_joint = _joint_weights(logits, target, ignore_index, convention, stride, sigma)
    return l_joint, parsing_loss(logits, target, ignore_index, reduction="none")


def structure_sensitive_loss(logits: torch.Tensor, target: torch.Tensor, mode: str = "paper",
                             ignore_index: int = IGNORE_INDEX, convention: str = "paper",
                             stride: int = 8, sigma: float = 1.0, return_terms: bool = False):
    """The structure-sensitive loss ``L_structure = L_joint * L_parsing`` (Eq. 2), a scalar.

    ``mode`` (see the module docstring): ``"paper"`` = mean over images of the detached
    ``L_joint_i`` times image ``i``'s cross-entropy; ``"released"`` = the same forward value with
    exactly the gradient of plain cross-entropy; ``"off"`` = plain cross-entropy
    (``F.cross_entropy``, mean over the batch's valid pixels); ``"plus_one"`` = mean of
    ``(1 + L_joint_i) * L_parsing_i``. Note ``"off"`` averages pixels over the whole batch, the
    weighted modes average per image first; with fixed-size crops the two agree up to the
    share of ignore pixels (and exactly at batch size 1, the released code's setting).

    With ``return_terms=True`` returns ``(loss, l_joint [B], l_parsing [B])``, both terms
    detached, so a training loop can log them without computing them twice.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _check(logits, target)
    sums, valid = _ce_sums(logits, target, ignore_index)
    per_image = sums / valid.clamp(min=1)
    plain = sums.sum() / valid.sum().clamp(min=1)
    l_joint = None
    if mode != "off" or return_terms:
        l_joint = _joint_weights(logits, target, ignore_index, convention, stride, sigma)
        weight = l_joint.to(per_image.dtype)

    if mode == "off":
        loss = plain
    elif mode == "paper":
        loss = (weight * per_image).mean()
    elif mode == "plus_one":
        loss = ((1.0 + weight) * per_image).mean()
    else:  # released: forward = paper's value, backward = plain cross-entropy's gradient
        value = (weight * per_image.detach()).mean()
        loss = value + plain - plain.detach()

    if return_terms:
        return loss, l_joint, per_image.detach()
    return loss
