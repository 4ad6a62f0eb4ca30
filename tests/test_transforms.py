import numpy as np
import pytest
import torch

from lipstudy.labels import IGNORE_INDEX, LIP_FLIP_PAIRS, flip_labels
from lipstudy.transforms import (IMAGENET_MEAN, IMAGENET_STD, AugmentParams, EvalTransform, TrainTransform,
                                 normalize, sample_rng)


def _sample(h=40, w=30, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = rng.integers(0, 20, (h, w), dtype=np.uint8)
    return {"image": image, "label": label, "id": "x"}


def test_normalize_known_values():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255
    x = normalize(img)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full((2, 3), (1 - 0.485) / 0.229))
    assert torch.allclose(x[1], torch.full((2, 3), -0.456 / 0.224))
    assert torch.allclose(x[2], torch.full((2, 3), -0.406 / 0.225))


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


def test_scale_and_crop_known_answers():
    # Nearest-neighbour resizing samples source pixel floor((i + 0.5) / scale): at scale 2 every
    # pixel is repeated twice, at scale 0.5 every second pixel (the odd rows and columns) is kept.
    label = np.arange(40 * 30).reshape(40, 30) % 19 + 1
    label = label.astype(np.uint8)
    colour = np.array([10, 200, 30], np.uint8)
    image = np.broadcast_to(colour, (40, 30, 3)).copy()
    t = TrainTransform(crop=20, flip=False)
    assert t.scaled_size(40, 30, 2.0) == (80, 60) and t.scaled_size(40, 30, 0.5) == (20, 15)
    assert t.scaled_size(40, 30, 0.83) == (33, 25)  # rounded, not truncated (33.2, 24.9)
    x, y = t.apply(image, label, AugmentParams(2.0, top=7, left=11, flip=False))
    up = label.repeat(2, axis=0).repeat(2, axis=1)
    assert torch.equal(y, torch.from_numpy(up[7:27, 11:31]).long())
    # a uniform image stays uniform: every pixel normalises to (colour / 255 - mean) / std
    expected = torch.tensor([(c / 255 - m) / s for c, m, s in zip(colour, IMAGENET_MEAN, IMAGENET_STD)],
                            dtype=torch.float32)
    assert torch.allclose(x, expected.view(3, 1, 1).expand(3, 20, 20), atol=1e-6)
    # Scale 0.5: 20 x 15, padded on the right to the 20 x 20 crop with ignore and the mean colour.
    x, y = t.apply(image, label, AugmentParams(0.5, top=0, left=0, flip=False))
    assert torch.equal(y[:, :15], torch.from_numpy(label[1::2, 1::2]).long())
    assert (y[:, 15:] == IGNORE_INDEX).all()
    assert torch.allclose(x[:, :, :15], expected.view(3, 1, 1).expand(3, 20, 15), atol=1e-6)
    assert x[:, :, 15:].abs().max() < 0.01


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

def test_default_flip_pairs_are_lips():
    assert TrainTransform().flip_pairs == ((14, 15), (16, 17), (18, 19))
    assert TrainTransform().flip_pairs == tuple(LIP_FLIP_PAIRS)
