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
- ``"off"``: plain cross-entropy over the batch's valid pixels (stage 1, the baseline).
- ``"unit"``: Eq. 2 with every ``L_joint`` set to 1: the mean over images of each image's mean
  cross-entropy. The control of an SSL run: it differs from ``"paper"`` in the structure weight
  alone (the same per-image averaging, the same formula), so "SSL minus control" is the weight's
  effect. ``"off"`` would also change how pixels are averaged, which differs from the per-image
  mean wherever crops carry padding (ignore pixels).
- ``"shuffled"``: Eq. 2 with each image's ``L_joint`` taken from the next image of its batch (the
  weights rolled by one): the same weights, their link to the image's own structure broken. Its
  difference from ``"paper"`` is the structure term's, apart from the reweighting.
- ``"plus_one"``: ``(1 + L_joint) * L_parsing``, an ablation. With ``"paper"`` an image whose
  predicted joints already match the ground truth exactly gets weight 0 and stops learning,
  however wrong its pixels are (joints are region means, so very different parsings can share
  them); adding 1 keeps the plain cross-entropy and adds the structure weight on top.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .joints import joint_structure_loss
from .labels import IGNORE_INDEX, LIP_ID, LIP_NUM_CLASSES

MODES = ("off", "paper", "released", "plus_one", "unit", "shuffled")
"""The training losses a run may name (:class:`lipstudy.config.TrainConfig` validates against this)."""


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

    ``mode`` (see the module docstring): ``"off"`` = plain cross-entropy (``F.cross_entropy``, the
    mean over the batch's valid pixels); the others weigh each image's mean cross-entropy
    ``L_parsing_i`` and average over the images (:func:`weigh`). At batch size 1 without ignore
    pixels (the released code's setting) ``"off"`` and ``"unit"`` agree.

    With ``return_terms=True`` returns ``(loss, l_joint [B], l_parsing [B])``, both terms
    detached, so a training loop can log them without computing them twice.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _check(logits, target)
    sums, valid = _ce_sums(logits, target, ignore_index)
    per_image = sums / valid.clamp(min=1)
    plain = sums.sum() / valid.sum().clamp(min=1)
    needs_joints = return_terms or mode not in ("off", "unit")
    l_joint = _joint_weights(logits, target, ignore_index, convention, stride, sigma) if needs_joints else None
    loss = plain if mode == "off" else weigh(per_image, l_joint, mode, plain)
    if return_terms:
        return loss, l_joint, per_image.detach()
    return loss


def weigh(per_image: torch.Tensor, l_joint: torch.Tensor | None, mode: str,
          plain: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 2 over a batch: the mean over images of ``w_i * L_parsing_i`` (``per_image [B]``, with
    gradient), with ``w`` from the detached ``l_joint [B]`` by ``mode``: ``"paper"`` L_joint,
    ``"plus_one"`` 1 + L_joint, ``"unit"`` 1 (``l_joint`` may be None), ``"shuffled"`` the next
    image's L_joint (rolled by one within the batch; a batch of one keeps its own), ``"released"``
    the paper's value with the gradient of ``plain`` (the batch's plain cross-entropy, as the
    released Caffe layers back-propagate). ``"off"`` is not a weighting: ``plain`` itself."""
    if mode == "off":
        return plain
    if mode == "unit":
        return per_image.mean()
    w = l_joint.detach().to(per_image.dtype)
    if mode == "paper":
        return (w * per_image).mean()
    if mode == "shuffled":
        return (w.roll(1) * per_image).mean()
    if mode == "plus_one":
        return ((1.0 + w) * per_image).mean()
    if mode == "released":
        return (w * per_image.detach()).mean() + plain - plain.detach()
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


# ---------------------------------------------------------------------------------------------
# The training loss of a network's outputs


def aux_loss(aux: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Plain cross-entropy of the extra score maps (Attention's per-scale supervision), each the
    mean over images of the image's mean over its valid pixels. A map smaller than the target is
    scored against the labels shrunk to it (:func:`labels_on_grid`)."""
    total = target.new_zeros((), dtype=torch.float32)
    for a in aux:
        t = labels_on_grid(target, a.shape[-2:]).long()
        valid = (t != IGNORE_INDEX).sum(dim=(1, 2)).clamp(min=1)
        ce = F.cross_entropy(a.float(), t, ignore_index=IGNORE_INDEX, reduction="none")
        total = total + (ce.sum(dim=(1, 2)) / valid).mean()
    return total


# ---------------------------------------------------------------------------------------------
# The loss where DeepLab's Caffe training computes it (the full profile; models/deeplab.py)

JOINT_STRIDE = 8
"""The joints' grid in input pixels: every 8th pixel (the released code's 41 x 41 for 321 px), the
grid of a DeepLab-derived network's score map."""


def shrink_labels(target: torch.Tensor, factor: int) -> torch.Tensor:
    """Label maps ``[..., H, W]`` shrunk as DeepLab's Caffe ``Interp`` layer with ``shrink_factor``
    shrinks them for the loss: ``(H - 1) // factor + 1`` rows and columns (321 -> 41 for 8, -> 21 for
    16), taken at rows / columns 0, factor, 2 * factor, ... Ignore pixels (255) stay 255.

    Caffe interpolates bilinearly with corners aligned, which for a size whose ``H - 1`` is a
    multiple of the factor (DeepLab's 321 and 513 crops) samples exactly those pixels, so this
    is Caffe's result there; elsewhere Caffe would blend neighbouring label ids, and nearest
    sampling keeps them valid."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"shrink factor must be an integer >= 1, got {factor!r}")
    if target.dim() < 2 or target.dtype.is_floating_point:
        raise ValueError(f"labels must be integer maps [..., H, W], got {target.dtype} of shape {tuple(target.shape)}")
    return target[..., ::factor, ::factor]


def grid_factor(label_size, grid_size) -> int:
    """The Caffe shrink factor that takes a label map of ``label_size`` (H, W) to a score map of
    ``grid_size`` (h, w): 1 when they are equal, else the integer f with ``(n - 1) // f + 1`` equal
    to the grid in both dimensions. Raises ValueError when there is none (the crop does not fit the
    network's stride, e.g. 128 px gives a 17-cell score map and 16 shrunk rows)."""
    (H, W), (h, w) = (tuple(int(n) for n in label_size), tuple(int(n) for n in grid_size))
    if (H, W) == (h, w):
        return 1
    n_in, n_out = (H, h) if h > 1 else (W, w)
    factor = (n_in - 1) // (n_out - 1) if n_out > 1 else max(H, W)
    if factor < 1 or (H - 1) // factor + 1 != h or (W - 1) // factor + 1 != w:
        raise ValueError(f"a {h}x{w} score map is not the {H}x{W} label map shrunk by an integer factor, as "
                         f"DeepLab's Caffe shrinks labels ((n - 1) // f + 1): train with score_map_loss on "
                         f"crops of 8k + 1 px (16k + 1 for Attention), as DeepLab's 321 and 513")
    return factor


def labels_on_grid(target: torch.Tensor, grid_size) -> torch.Tensor:
    """``target [B,H,W]`` as the labels of a score map of ``grid_size``: itself when the sizes are
    equal, else shrunk by :func:`grid_factor` (:func:`shrink_labels`)."""
    return shrink_labels(target, grid_factor(target.shape[-2:], grid_size))


def structure_weighted_aux_loss(aux: list[torch.Tensor], target: torch.Tensor, mode: str,
                                l_joint: torch.Tensor) -> torch.Tensor:
    """Attention's per-scale losses as the released LIP_SSL prototxt (``attention``) computes them
    in SSL training: every ``SoftmaxWithLoss`` (the fused output's and each scale's) takes the same
    ``heatmap_error`` bottom, the joint structure loss of the *fused* prediction, so each scale's
    cross-entropy of image i is weighted by the fused output's ``L_joint_i`` (``l_joint [B]``,
    detached). ``mode`` as :func:`weigh` ("off": each map's plain per-image mean, as
    :func:`aux_loss`). Each map is scored against the labels on its grid (:func:`labels_on_grid`)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if l_joint.dim() != 1 or l_joint.shape[0] != target.shape[0]:
        raise ValueError(f"l_joint must be [B] = [{target.shape[0]}], got shape {tuple(l_joint.shape)}")
    total = target.new_zeros((), dtype=torch.float32)
    for a in aux:
        t = labels_on_grid(target, a.shape[-2:])
        sums, valid = _ce_sums(a.float(), t, IGNORE_INDEX)
        per_image = sums / valid.clamp(min=1)
        total = total + weigh(per_image, l_joint, mode, per_image.mean())
    return total


# PASCAL-Person-Part has no left/right and no clothes, so the nine LIP joints do not exist there.
# SSL on PPP uses six joints, the centres of its six part regions, by placing each PPP class on a
# LIP label that forms a joint of its own (the lower-body and shoe joints are then always missing).
PPP_JOINT_VIEW = tuple(LIP_ID[name] for name in (
    "background",     # background
    "face",           # head       -> the head joint
    "upper-clothes",  # torso      -> the upper-body joint
    "left-arm",       # upper-arms
    "right-arm",      # lower-arms
    "left-leg",       # upper-legs
    "right-leg",      # lower-legs
))
"""PPP class id -> the LIP id it stands in for under the structure-sensitive loss."""


def ppp_joint_view(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PPP logits ``[B,7,H,W]`` and target as 20-class LIP ones (see PPP_JOINT_VIEW) so that the
    LIP structure-sensitive loss sees the six PPP part centres as joints. The other 13 channels get
    a logit of -1e4 (probability exactly 0 in float32), so the cross-entropy and its gradient are
    those of the 7-class problem."""
    b, _, h, w = logits.shape
    big = logits.new_full((b, LIP_NUM_CLASSES, h, w), -1e4)
    big = big.index_copy(1, torch.tensor(PPP_JOINT_VIEW, device=logits.device), logits)
    lut = torch.full((256,), IGNORE_INDEX, dtype=torch.long, device=target.device)
    lut[:len(PPP_JOINT_VIEW)] = torch.tensor(PPP_JOINT_VIEW, device=target.device)
    return big, lut[target.long()]


def training_loss(out, target: torch.Tensor, mode: str, dataset: str = "lip",
                  aux_structure: bool = False) -> torch.Tensor:
    """The loss a training step minimises: the structure-sensitive loss (``mode``) of the main
    output plus cross-entropy of any auxiliary outputs. ``out`` is a model's train-mode
    output (a dict ``{"out", "aux"}``, or a logits tensor). On PPP the joints are its part
    centres (:func:`ppp_joint_view`).

    An output smaller than the target is a score map (``score_map_loss``, models/deeplab.py): it is
    scored against the labels shrunk to it, as DeepLab's Caffe does, and its joints are those of
    that grid (the released code's 41 x 41 heatmaps), so no further subsampling. The auxiliary
    losses are plain cross-entropy, or with ``aux_structure`` weighted by the main output's
    ``L_joint`` as the released prototxt weights them (:func:`structure_weighted_aux_loss`)."""
    if isinstance(out, torch.Tensor):
        out = {"out": out, "aux": []}
    logits = out["out"].float()
    factor = grid_factor(target.shape[-2:], logits.shape[-2:])
    main_target = shrink_labels(target, factor)
    view_logits, view_target = logits, main_target
    if dataset == "ppp" and mode != "off":
        view_logits, view_target = ppp_joint_view(logits, main_target)
    weighted_aux = aux_structure and mode != "off" and bool(out.get("aux"))
    res = structure_sensitive_loss(view_logits, view_target, mode=mode, ignore_index=IGNORE_INDEX,
                                   stride=max(1, JOINT_STRIDE // factor), return_terms=weighted_aux)
    if weighted_aux:
        loss, l_joint, _ = res
        return loss + structure_weighted_aux_loss(out["aux"], target, mode, l_joint)
    return res + aux_loss(out.get("aux", []), target)


def compare_modes(model: torch.nn.Module, images: torch.Tensor, target: torch.Tensor,
                  modes=("off", "paper", "released", "plus_one")) -> tuple[dict, float]:
    """The loss modes on one batch through one network (same weights, same images): for each mode
    its loss value, the largest absolute difference of its gradient from plain cross-entropy's
    (``"off"``, which ``modes`` must include) and the ratio of the two gradients' norms; and the
    batch's mean ``L_joint``. What the module docstring states about "released" (the gradient of
    "off") and "paper" (each image's gradient scaled by its ``L_joint``), measured."""
    if "off" not in modes:
        raise ValueError("modes must include 'off', the gradient the others are compared with")
    grads, values, l_joint = {}, {}, None
    for mode in modes:
        model.zero_grad()
        loss, l_joint, _ = structure_sensitive_loss(model(images), target, mode=mode, return_terms=True)
        loss.backward()
        grads[mode] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()
        values[mode] = float(loss.detach())
    ref = grads["off"]
    table = {mode: {"loss value": values[mode],
                    "max |grad - grad(off)|": float((grads[mode] - ref).abs().max()),
                    "|grad| / |grad(off)|": float(grads[mode].norm() / ref.norm())} for mode in modes}
    return table, float(l_joint.mean())
