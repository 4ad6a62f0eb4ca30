"""lipstudy.resident: the training split on the device, augmented in batched tensor ops, against
known answers and against the per-image loader pipeline (lipstudy.transforms)."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from lipstudy.config import TrainConfig
from lipstudy.labels import IGNORE_INDEX, LIP_FLIP_PAIRS
from lipstudy.resident import ResidentSet, augment, flip_lut
from lipstudy.transforms import MEAN_COLOR, AugmentParams, TrainTransform, normalize, sample_rng


class Items:
    """A dataset of given (image, label) arrays."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        image, label = self.pairs[i]
        return {"image": image, "label": label, "id": f"img{i}"}


def random_item(rng, h, w, smooth=False):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if smooth:  # photo-like: what antialiasing changes little
        image = np.array(Image.fromarray(image[:4, :4]).resize((w, h), Image.BILINEAR))
    label = rng.integers(0, 20, (h, w), dtype=np.uint8)
    return image, label


def one(image, label, params, transform):
    """augment() on a batch of one."""
    h, w = label.shape
    x, y = augment(torch.from_numpy(image.transpose(2, 0, 1).copy())[None], torch.from_numpy(label)[None],
                   torch.tensor([[h, w]]), [params], transform, flip_lut(transform.flip_pairs))
    return x[0], y[0]


def test_a_crop_at_scale_one_is_the_slice_of_the_image():
    rng = np.random.default_rng(0)
    image, label = random_item(rng, 40, 30)
    t = TrainTransform(crop=16, flip=False)
    x, y = one(image, label, AugmentParams(1.0, 5, 7, False), t)
    assert torch.equal(y, torch.from_numpy(label[5:21, 7:23]).long())
    assert torch.allclose(x, normalize(image[5:21, 7:23]), atol=1e-5)


def test_a_flip_mirrors_and_swaps_left_and_right():
    # Left half: left-arm (14) and left-leg (16); right half: right-shoe (19) and background.
    label = np.zeros((8, 8), np.uint8)
    label[:4, :4], label[4:, :4], label[:4, 4:] = 14, 16, 19
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :4] = 200  # a bright left half
    t = TrainTransform(crop=8, flip_pairs=tuple(LIP_FLIP_PAIRS))
    x, y = one(image, label, AugmentParams(1.0, 0, 0, True), t)
    expected = np.zeros((8, 8), np.uint8)
    expected[:4, 4:], expected[4:, 4:], expected[:4, :4] = 15, 17, 18
    assert torch.equal(y, torch.from_numpy(expected).long())
    assert torch.allclose(x[:, :, 4:], normalize(np.full((8, 4, 3), 200, np.uint8)), atol=1e-5)
    assert torch.allclose(x[:, :, :4], normalize(np.zeros((8, 4, 3), np.uint8)), atol=1e-5)


def test_padding_is_ignore_and_the_mean_colour():
    rng = np.random.default_rng(1)
    image, label = random_item(rng, 10, 6)
    x, y = one(image, label, AugmentParams(1.0, 0, 0, False), TrainTransform(crop=16))
    assert torch.equal(y[:10, :6], torch.from_numpy(label).long())
    assert (y[10:] == IGNORE_INDEX).all() and (y[:, 6:] == IGNORE_INDEX).all()
    pad = normalize(np.full((1, 1, 3), MEAN_COLOR, np.uint8))[:, 0, 0]
    assert torch.allclose(x[:, 12, 12], pad, atol=1e-6) and torch.allclose(x[:, 3, 10], pad, atol=1e-6)


@pytest.mark.parametrize("flip_pairs", [tuple(LIP_FLIP_PAIRS), ()])
def test_the_same_batches_as_the_loader_pipeline(flip_pairs):
    """For the random choices of (seed, epoch, index), the labels equal TrainTransform's exactly
    (Pillow's nearest resize) and the images are close (bilinear; Pillow also antialiases when it
    scales down, which changes smooth images little)."""
    rng = np.random.default_rng(2)
    pairs = [random_item(rng, int(rng.integers(20, 60)), int(rng.integers(20, 60)), smooth=True) for _ in range(12)]
    t = TrainTransform(crop=32, scale_range=(0.6, 1.4), flip_pairs=flip_pairs, seed=3)
    res = ResidentSet(Items(pairs), t, "cpu", threads=2)
    keys = [(epoch, i) for epoch in (0, 1) for i in range(len(pairs))]
    x, y = res.batch(keys)
    up = []
    for k, (epoch, i) in enumerate(keys):
        image, label = pairs[i]
        p = t.draw(sample_rng(3, epoch, i), *label.shape)
        ref_x, ref_y = t.apply(image, label, p)
        assert torch.equal(y[k], ref_y), (epoch, i, p)
        if p.scale >= 1:  # both bilinear: differences of rounding only
            up.append((x[k] - ref_x).abs().mean().item())
        assert (x[k] - ref_x).abs().mean() < 0.05, (epoch, i, p)
    assert up and max(up) < 0.02, up


def test_batches_depend_on_seed_epoch_and_index_only():
    rng = np.random.default_rng(4)
    pairs = [random_item(rng, 30, 20) for _ in range(6)]
    t = TrainTransform(crop=24, seed=5)
    a = ResidentSet(Items(pairs), t, "cpu")
    b = ResidentSet(Items(pairs), t, "cpu", threads=1)
    xa, ya = a.batch([(2, 1), (2, 4)])
    xb, yb = b.batch([(2, 4)])  # another grouping of the same item
    assert torch.equal(xa[1], xb[0]) and torch.equal(ya[1], yb[0])
    x1, _ = a.batch([(3, 1)])
    assert not torch.equal(xa[0], x1[0])  # another epoch, other choices
    other = ResidentSet(Items(pairs), dataclasses.replace(t, seed=6), "cpu")
    assert not torch.equal(xa[0], other.batch([(2, 1)])[0][0])


def test_an_unlabelled_item_is_refused():
    rng = np.random.default_rng(5)
    image, _ = random_item(rng, 10, 10)
    with pytest.raises(ValueError, match="img0.*no label"):
        ResidentSet(Items([(image, None)]), TrainTransform(crop=8), "cpu")


def test_the_setting_is_checked():
    assert TrainConfig().data_pipeline == "loader"
    with pytest.raises(ValueError, match="data_pipeline"):
        TrainConfig(data_pipeline="gpu")


def test_training_on_the_resident_split(tmp_path):
    """The trainer with data_pipeline="resident": without resampling (scale 1) it trains exactly the
    weights the loader pipeline trains, and a run stopped and resumed ends with the weights of an
    uninterrupted one."""
    from test_train import tiny_config, write_tiny_lip

    from lipstudy.runtime import load_checkpoint
    from lipstudy.train import train

    root = write_tiny_lip(tmp_path / "d", n_train=8)
    same = dict(epochs=2, dropout=0.5, scale_min=1.0, scale_max=1.0)
    loader = load_checkpoint(train(tiny_config(root, **same), tmp_path / "loader", progress=False))
    resident = load_checkpoint(train(tiny_config(root, data_pipeline="resident", **same), tmp_path / "resident",
                                     progress=False))
    assert resident["step"] == loader["step"] == 4
    assert all(torch.allclose(loader["model"][k].float(), resident["model"][k].float(), atol=1e-6)
               for k in loader["model"])
    assert [r["loss"] for r in loader["log"]] == pytest.approx([r["loss"] for r in resident["log"]], rel=1e-5)

    cfg = tiny_config(root, data_pipeline="resident", epochs=2, dropout=0.5)  # scale 0.6-1.4, flips
    whole = load_checkpoint(train(cfg, tmp_path / "whole", progress=False))
    train(dataclasses.replace(cfg, max_steps=3), tmp_path / "cut", progress=False)
    resumed = load_checkpoint(train(cfg, tmp_path / "cut", progress=False))
    assert resumed["step"] == whole["step"] == 4
    assert all(torch.equal(whole["model"][k], resumed["model"][k]) for k in whole["model"])
    # Not vacuous: scaled images are resampled otherwise than by the loader (no antialiasing), so
    # the resident run's weights are its own.
    other = load_checkpoint(train(dataclasses.replace(cfg, data_pipeline="loader"), tmp_path / "other",
                                  progress=False))
    assert not all(torch.allclose(other["model"][k].float(), whole["model"][k].float(), atol=1e-6)
                   for k in whole["model"])
