"""Left/right swaps of a parsing (the paper's Fig. 2): an image where one model labels a left arm,
leg or shoe as the right one (or the reverse) and another model does not.

Side confusion is measured on an image's confusion matrix (rows: ground truth, columns:
prediction; :func:`lipstudy.metrics.confusion_matrix`), so the search runs over the per-image
matrices every evaluation already keeps, with no new inference. Of the ground-truth pixels of the
left/right parts that a model gives *some* left/right label of the same part (left arm or right arm
for an arm), the **swap share** is the fraction given the mirrored side. A model that predicts no
limb at all has no such pixels, so it is neither swapping nor "not swapping": the search asks both
models to have at least ``min_pixels`` of them, otherwise a model that learns no limbs would pass
as one that fixes the swaps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import LIP_FLIP_PAIRS, LIP_NUM_CLASSES
from .metrics import confusion_matrix


@dataclass(frozen=True)
class SideCounts:
    """Of an image's ground-truth left/right part pixels given a label of the same part: how many
    got the mirrored side (``swapped``) out of how many (``sided``)."""

    swapped: int
    sided: int

    @property
    def share(self) -> float:
        """``swapped / sided`` (NaN when no pixel is sided)."""
        return self.swapped / self.sided if self.sided else float("nan")


def side_counts(cm: np.ndarray, pairs=LIP_FLIP_PAIRS) -> SideCounts:
    """The :class:`SideCounts` of one image's confusion matrix ``[C, C]`` (rows ground truth)."""
    cm = np.asarray(cm)
    swapped = sum(int(cm[a, b]) + int(cm[b, a]) for a, b in pairs)
    right = sum(int(cm[a, a]) + int(cm[b, b]) for a, b in pairs)
    return SideCounts(swapped, swapped + right)


def side_counts_of_maps(pred: np.ndarray, gt: np.ndarray, num_classes: int = LIP_NUM_CLASSES,
                        pairs=LIP_FLIP_PAIRS) -> SideCounts:
    """:func:`side_counts` of a predicted and a ground-truth label map."""
    return side_counts(confusion_matrix(np.asarray(pred), np.asarray(gt), num_classes), pairs)


@dataclass(frozen=True)
class Swap:
    """One image where ``base`` swaps sides and ``fixed`` does not, with both models' counts."""

    id: str
    base: SideCounts
    fixed: SideCounts


def find_swaps(ids, base_cms, fixed_cms, *, swap_share: float = 0.5, min_pixels: int = 20,
               pairs=LIP_FLIP_PAIRS) -> list[Swap]:
    """The images where the model of ``base_cms`` swaps left and right and the model of
    ``fixed_cms`` does not, best first.

    ``base_cms`` and ``fixed_cms``: per-image confusion matrices ``[N, C, C]`` of the same images
    (``ids``, in the same order). The base model *swaps* on an image when at least ``swap_share`` of
    its sided pixels have the mirrored side and at least ``min_pixels`` pixels are swapped; the
    other model *does not* when it has at least ``min_pixels`` sided pixels and less than half
    ``swap_share`` of them swapped. Ordered by the difference of the two shares, then by the
    swapped pixels of the base model."""
    found = []
    for i, image in enumerate(ids):
        b, f = side_counts(base_cms[i], pairs), side_counts(fixed_cms[i], pairs)
        if (b.swapped >= min_pixels and b.share >= swap_share
                and f.sided >= min_pixels and f.share < swap_share / 2):
            found.append(Swap(str(image), b, f))
    return sorted(found, key=lambda s: (s.base.share - s.fixed.share, s.base.swapped), reverse=True)


def search_evaluations(base, fixed, **kw) -> list[Swap]:
    """:func:`find_swaps` over two runs' evaluations of the same split (``Scores`` of
    :meth:`lipstudy.store.RunResult.evaluation`), matched by image id: a run's per-image matrices
    are in its own evaluation's order."""
    where = {image: i for i, image in enumerate(fixed.ids)}
    common = [image for image in base.ids if image in where]
    b = {image: i for i, image in enumerate(base.ids)}
    return find_swaps(common, base.cms[[b[i] for i in common]], fixed.cms[[where[i] for i in common]], **kw)
