"""Label taxonomies and the flip/colour helpers."""
import numpy as np
import pytest
import torch

from lipstudy import labels as L


def test_lip_taxonomy():
    assert len(L.LIP_CLASSES) == 20 and L.LIP_CLASSES[0] == "background"
    assert L.LIP_CLASSES[14:] == ("left-arm", "right-arm", "left-leg", "right-leg", "left-shoe", "right-shoe")
    assert L.LIP_PALETTE.shape == (20, 3) and L.LIP_PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in L.LIP_PALETTE}) == 20  # colours are distinct
    for a, b in L.LIP_FLIP_PAIRS:
        assert L.LIP_CLASSES[a].startswith("left") and L.LIP_CLASSES[b] == L.LIP_CLASSES[a].replace("left", "right")


def test_joint_groups_cover_the_paper_regions():
    names = {k: {L.LIP_CLASSES[i] for i in v} for k, v in L.JOINT_GROUPS.items()}
    assert names["head"] == {"hat", "hair", "sunglasses", "face"}
    assert names["upper-body"] == {"upper-clothes", "coat", "scarf"}
    assert names["lower-body"] == {"pants", "skirt"}
    used = set().union(*L.JOINT_GROUPS.values())
    assert {L.LIP_CLASSES[i] for i in set(range(1, 20)) - used} == {"glove", "dress", "socks", "jumpsuits"}
    assert list(L.JOINT_GROUPS) == list(L.JOINT_NAMES)
    for a, b in L.JOINT_FLIP_PAIRS:
        assert L.JOINT_NAMES[a].replace("left", "right") == L.JOINT_NAMES[b]


def test_atr_and_ppp():
    assert len(L.ATR_CLASSES) == 18 and len(L.PPP_CLASSES) == 7
    for a, b in L.ATR_FLIP_PAIRS:
        assert L.ATR_CLASSES[a].replace("left", "right") == L.ATR_CLASSES[b]
    # The mapping pairs every ATR category with the LIP category of the same name, except ATR's
    # belt and bag; LIP's glove, coat, socks and jumpsuits have no ATR counterpart.
    named = {L.ATR_CLASSES[atr]: L.LIP_CLASSES[lip] for atr, lip in L.ATR_TO_LIP.items()}
    assert named == {n: n for n in L.ATR_CLASSES if n not in ("belt", "bag")}
    assert {L.LIP_CLASSES[i] for i in set(range(20)) - set(L.ATR_LIP_SHARED)} == {"glove", "coat", "socks", "jumpsuits"}
    assert L.ATR_CLASSES[8] == "belt" and 8 not in L.ATR_TO_LIP and 16 not in L.ATR_TO_LIP
    assert len(L.ATR_LIP_SHARED) == 16
    m = L.atr_to_lip(np.array([[0, 8, 9, 16, 255]], np.uint8))
    assert m.tolist() == [[0, 255, 18, 255, 255]]
    # The mapping commutes with flipping (left/right pairs map onto left/right pairs).
    x = np.random.default_rng(0).integers(0, 18, (5, 7)).astype(np.uint8)
    assert np.array_equal(L.atr_to_lip(L.flip_labels(x, L.ATR_FLIP_PAIRS)), L.flip_labels(L.atr_to_lip(x)))


def test_flip_labels_numpy_torch_and_involution():
    x = np.array([[14, 0, 16, 255], [18, 5, 19, 15]], np.uint8)
    f = L.flip_labels(x)
    assert f.tolist() == [[255, 17, 0, 15], [14, 18, 5, 19]]
    assert np.array_equal(L.flip_labels(f), x)
    t = torch.from_numpy(x).long()[None]
    ft = L.flip_labels(t)
    assert ft.dtype == torch.long and ft.shape == (1, 2, 4)
    assert np.array_equal(ft[0].numpy(), f)


def test_colorize_and_overlay():
    x = np.array([[0, 1], [19, 255]], np.uint8)
    c = L.colorize(x)
    assert c.shape == (2, 2, 3) and c.dtype == np.uint8
    assert tuple(c[0, 1]) == (128, 0, 0) and tuple(c[1, 0]) == (255, 170, 0) and tuple(c[1, 1]) == (255, 255, 255)
    with pytest.raises(ValueError, match="no colour"):
        L.colorize(np.array([[7]], np.uint8), L.palette_for(7))
    img = np.full((2, 2, 3), 100, np.uint8)
    o = L.overlay(img, np.array([[0, 1], [0, 0]], np.uint8), alpha=0.5)
    assert tuple(o[0, 0]) == (100, 100, 100) and tuple(o[0, 1]) == (114, 50, 50)
