"""lipstudy.swaps (the search behind the paper's Fig. 2): side swaps counted on hand-made label maps,
and the search that keeps an image where one model swaps left and right and the other does not."""
from __future__ import annotations

import math

import numpy as np

from lipstudy.labels import LIP_ID, LIP_NUM_CLASSES
from lipstudy.metrics import confusion_matrix
from lipstudy.swaps import find_swaps, side_counts_of_maps

L_ARM, R_ARM, L_LEG, R_LEG = (LIP_ID[n] for n in ("left-arm", "right-arm", "left-leg", "right-leg"))


def person() -> np.ndarray:
    """A 20 x 20 ground truth: a left arm (40 px) and a right arm (40 px), a left leg and a right leg
    (30 px each), face in between."""
    gt = np.zeros((20, 20), np.uint8)
    gt[0:10, 0:4] = L_ARM
    gt[0:10, 16:20] = R_ARM
    gt[12:18, 5:10] = L_LEG
    gt[12:18, 10:15] = R_LEG
    gt[0:10, 8:12] = LIP_ID["face"]
    return gt


def mirrored(gt: np.ndarray) -> np.ndarray:
    """The same map with left and right labels exchanged (every limb on the wrong side)."""
    out = gt.copy()
    for a, b in ((L_ARM, R_ARM), (L_LEG, R_LEG)):
        out[gt == a], out[gt == b] = b, a
    return out


def cms(*preds, gt):
    return np.stack([confusion_matrix(p, gt, LIP_NUM_CLASSES) for p in preds])


def test_side_counts_on_hand_made_maps():
    gt = person()
    assert side_counts_of_maps(gt, gt).swapped == 0 and side_counts_of_maps(gt, gt).sided == 140
    swapped = side_counts_of_maps(mirrored(gt), gt)
    assert (swapped.swapped, swapped.sided, swapped.share) == (140, 140, 1.0)
    # the arms swapped, the legs right: 80 of 140 sided pixels
    half = gt.copy()
    half[gt == L_ARM], half[gt == R_ARM] = R_ARM, L_ARM
    assert side_counts_of_maps(half, gt).share == 80 / 140
    # a model that predicts no limb has no sided pixel: its share is undefined, not 0
    none = side_counts_of_maps(np.zeros_like(gt), gt)
    assert none.sided == 0 and math.isnan(none.share)


def test_the_search_finds_the_image_the_base_swaps_and_the_other_fixes():
    gt = person()
    half = gt.copy()
    half[gt == L_ARM], half[gt == R_ARM] = R_ARM, L_ARM
    nothing = np.zeros_like(gt)
    ids = ["right-both", "swap-fixed", "swap-both", "swap-vs-no-limbs", "half-fixed"]
    base = cms(gt, mirrored(gt), mirrored(gt), mirrored(gt), half, gt=gt)
    fixed = cms(gt, gt, mirrored(gt), nothing, gt, gt=gt)
    found = find_swaps(ids, base, fixed)
    # the image no model swaps, the one both swap and the one the other model has no limbs on are out;
    # the full swap ranks above the half one
    assert [s.id for s in found] == ["swap-fixed", "half-fixed"]
    assert found[0].base.share == 1.0 and found[0].fixed.share == 0.0
    # a stricter threshold keeps only the full swap; a base with too few swapped pixels keeps none
    assert [s.id for s in find_swaps(ids, base, fixed, swap_share=0.9)] == ["swap-fixed"]
    assert find_swaps(ids, base, fixed, min_pixels=200) == []


def test_the_search_over_two_evaluations_matches_images_by_id():
    from types import SimpleNamespace

    from lipstudy.swaps import search_evaluations

    gt = person()
    # the two runs list the images in different orders: the swap of "b" must be paired with "b"
    base = SimpleNamespace(ids=["a", "b", "c"], cms=cms(gt, mirrored(gt), gt, gt=gt))
    fixed = SimpleNamespace(ids=["c", "b", "a"], cms=cms(mirrored(gt), gt, gt, gt=gt))
    assert [s.id for s in search_evaluations(base, fixed)] == ["b"]


def test_fig1_examples_name_each_dataset_and_colour_it_with_its_own_labels(tmp_path):
    from lipstudy.annotation_examples import examples
    from lipstudy.data import synth
    from lipstudy.labels import PPP_CLASSES

    root = tmp_path / "ppp"
    synth.generate(root, train=2, val=4, test=2, seed=3, style="ppp", max_side=48, progress=False)
    ex = examples(root, "ppp", n=2)
    assert ex.title.startswith("PASCAL-Person-Part (synthetic") and ex.synthetic
    assert len(ex.images) == len(ex.colored) == 2 and ex.classes == tuple(PPP_CLASSES)
    assert ex.images[0].shape == ex.colored[0].shape and ex.present and max(ex.present) < len(PPP_CLASSES)
    # the same picks on every call
    again = examples(root, "ppp", n=2)
    assert all((a == b).all() for a, b in zip(ex.images, again.images))
