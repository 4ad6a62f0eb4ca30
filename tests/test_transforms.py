import numpy as np
import pytest
import torch

from lipstudy.labels import IGNORE_INDEX, LIP_FLIP_PAIRS, flip_labels
from lipstudy.transforms import (AugmentParams, EvalTransform, TrainTransform, denormalize,
                                 normalize, sample_rng)


def _sample(h=40, w=30, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = rng.integers(0, 20, (h, w), dtype=np.uint8)
    return {"image": image, "label": label, "id": "x"}


def test_normalize_known_values_and_round_trip():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255
    x = normalize(img)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full((2, 3), (1 - 0.485) / 0.229))
    assert torch.allclose(x[1], torch.full((2, 3), -0.456 / 0.224))
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(denormalize(normalize(img)), img)


@pytest.mark.parametrize("scale", [1.0, 1.4])
def test_flip_swap_equivariance(scale):
    # Sizes chosen so that nearest-neighbour sampling has no ties at scale 1.4 (40->56, 30->42).
    s = _sample(40, 30)
    t = TrainTransform(crop=28, flip=False)
    sh, sw = t.scaled_size(40, 30, scale)
    p = AugmentParams(scale=scale, top=5, left=1, flip=False)
    x, y = t.apply(s["image"], s["label"], p)
    # Flipped input, label flipped with left/right swapped, crop mirrored horizontally.
    mirrored = AugmentParams(scale=scale, top=5, left=sw - 28 - 1, flip=False)
    xf, yf = t.apply(np.ascontiguousarray(s["image"][:, ::-1]), flip_labels(s["label"]), mirrored)
    assert torch.equal(yf, flip_labels(y))
    assert torch.allclose(xf, x.flip(-1), atol=2.5 / 255 / 0.224)
    # The transform's own flip gives the same flipped-and-swapped output.
    xt, yt = t.apply(s["image"], s["label"], AugmentParams(scale, 5, 1, True))
    assert torch.equal(yt, flip_labels(y)) and torch.equal(xt, x.flip(-1))


def test_flip_swaps_left_and_right_known_answer():
    label = np.zeros((4, 4), np.uint8)
    label[:, :2] = 14  # left-arm on the image's left half
    image = np.zeros((4, 4, 3), np.uint8)
    t = TrainTransform(crop=4)
    _, y = t.apply(image, label, AugmentParams(1.0, 0, 0, True))
    expected = np.zeros((4, 4), np.int64)
    expected[:, 2:] = 15  # mirrored to the right half and renamed right-arm
    assert torch.equal(y, torch.from_numpy(expected))


def test_padding_uses_ignore_and_mean_colour():
    s = _sample(10, 8)
    t = TrainTransform(crop=16)
    x, y = t.apply(s["image"], s["label"], AugmentParams(1.0, 0, 0, False))
    assert x.shape == (3, 16, 16) and y.shape == (16, 16) and y.dtype == torch.int64
    assert (y[10:, :] == IGNORE_INDEX).all() and (y[:, 8:] == IGNORE_INDEX).all()
    assert torch.equal(y[:10, :8], torch.from_numpy(s["label"]).long())
    assert x[:, 10:, :].abs().max() < 0.01  # the mean colour normalises to ~0


def test_scale_keeps_label_ids_and_sizes():
    s = _sample(40, 30)
    t = TrainTransform(crop=20)
    for scale in (0.6, 0.83, 1.4):
        p = AugmentParams(scale, 0, 0, False)
        x, y = t.apply(s["image"], s["label"], p)
        assert x.shape == (3, 20, 20)
        assert set(torch.unique(y).tolist()) <= set(np.unique(s["label"]).tolist()) | {IGNORE_INDEX}


def test_randomness_depends_only_on_seed_epoch_index():
    s = _sample(40, 30)
    t = TrainTransform(crop=24, seed=3)
    a, b = t(s, epoch=2, index=7), t(s, epoch=2, index=7)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    draws = {t.draw(sample_rng(3, e, 7), 40, 30) for e in range(20)}
    assert len(draws) == 20  # a fresh draw every epoch
    scales = [t.draw(sample_rng(3, 0, i), 40, 30).scale for i in range(500)]
    assert 0.6 <= min(scales) < 0.65 and 1.35 < max(scales) <= 1.4
    flips = [t.draw(sample_rng(3, 0, i), 40, 30).flip for i in range(500)]
    assert 200 < sum(flips) < 300


def test_unlabelled_sample_refused():
    s = _sample()
    s["label"] = None
    with pytest.raises(ValueError, match="no label"):
        TrainTransform(crop=8)(s, 0, 0)


def test_eval_transform_input_size():
    s = _sample(40, 30)
    out = EvalTransform(input_size=20)(s)
    assert out["image"].shape == (3, 20, 15)
    assert out["label"].shape == (40, 30) and out["size"] == (40, 30)
    out = EvalTransform()(s)
    assert out["image"].shape == (3, 40, 30)
    assert LIP_FLIP_PAIRS  # the default pairs are the LIP ones
