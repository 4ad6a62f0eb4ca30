"""Joints, heatmaps and the joint structure loss (paper Section 4.2, Eq. 1)."""
import math

import numpy as np
import pytest
import torch

from lipstudy.joints import (
    JOINT_COLORS, NUM_JOINTS, draw_joints, gaussian_heatmaps, heatmap_overlay, joint_centers,
    joint_heatmaps, joint_structure_loss,
)
from lipstudy.labels import JOINT_FLIP_PAIRS, JOINT_GROUPS, JOINT_NAMES, flip_labels
from lipstudy.paths import REAL_SAMPLES

HEAD, UPPER, LOWER, LARM, RARM, LLEG, RLEG, LSHOE, RSHOE = range(9)


def person(h=40, w=32) -> np.ndarray:
    """A blocky person with every joint region, a glove, socks and some ignore pixels."""
    m = np.zeros((h, w), np.uint8)
    m[2:4, 12:18] = 1      # hat
    m[4:6, 11:19] = 2      # hair
    m[6:10, 12:18] = 13    # face
    m[10:20, 10:20] = 5    # upper-clothes
    m[12:16, 11:13] = 11   # scarf
    m[10:20, 4:10] = 14    # left arm (image left; the labels are the person's own)
    m[10:18, 20:27] = 15   # right arm
    m[20:24, 4:6] = 3      # glove: feeds no joint
    m[20:28, 10:20] = 9    # pants
    m[28:35, 10:14] = 16   # left leg
    m[28:36, 15:20] = 17   # right leg
    m[35:37, 10:14] = 8    # socks: no joint
    m[37:39, 9:14] = 18    # left shoe
    m[36:38, 15:21] = 19   # right shoe
    m[0:2, :] = 255        # ignore padding
    return m


def reference_centers(m: np.ndarray):
    """Region means computed plainly with np.nonzero, one joint at a time."""
    coords = np.zeros((NUM_JOINTS, 2))
    present = np.zeros(NUM_JOINTS, bool)
    for j, name in enumerate(JOINT_NAMES):
        ys, xs = np.nonzero(np.isin(m, JOINT_GROUPS[name]))
        if len(xs):
            coords[j] = xs.mean(), ys.mean()
            present[j] = True
    return coords, present


def test_head_centre_is_mean_of_hand_listed_pixels():
    m = torch.zeros(6, 8, dtype=torch.uint8)
    m[2:4, 3:5] = 13   # 2x2 face block
    m[1, 2:5] = 1      # 1x3 hat
    pixels = [(3, 2), (4, 2), (3, 3), (4, 3), (2, 1), (3, 1), (4, 1)]  # (x, y)
    coords, present = joint_centers(m)
    assert coords.shape == (9, 2) and present.shape == (9,)
    assert present.tolist() == [True] + [False] * 8
    expected = torch.tensor([sum(p[0] for p in pixels) / 7, sum(p[1] for p in pixels) / 7])
    assert torch.allclose(coords[HEAD], expected)
    assert torch.equal(coords[1:], torch.zeros(8, 2))  # absent joints are (0, 0)


def test_centres_match_plain_region_means_and_ignore_counts_nothing():
    m = person()
    coords, present = joint_centers(torch.from_numpy(m))
    ref_c, ref_p = reference_centers(m)
    assert present.numpy().tolist() == ref_p.tolist() == [True] * 9
    np.testing.assert_allclose(coords.numpy(), ref_c, rtol=0, atol=1e-5)
    # Turning head pixels into ignore (255) removes exactly them from the head's mean.
    m2 = m.copy()
    m2[2:4, 12:18] = 255
    c2, _ = joint_centers(m2)
    np.testing.assert_allclose(c2.numpy(), reference_centers(m2)[0], atol=1e-5)
    assert not np.allclose(c2[HEAD].numpy(), coords[HEAD].numpy())


def test_non_joint_labels_feed_nothing():
    m = np.zeros((10, 10), np.uint8)
    m[1:4, 1:4] = 3   # glove
    m[5:8, 5:8] = 6   # dress
    m[0, 9] = 8       # socks
    m[9, 0] = 10      # jumpsuits
    coords, present = joint_centers(m)
    assert not present.any()
    assert torch.equal(coords, torch.zeros(9, 2))


def test_batched_equals_per_image():
    rng = np.random.default_rng(0)
    maps = np.stack([person(), np.roll(person(), 5, axis=1), rng.integers(0, 20, (40, 32), dtype=np.uint8),
                     np.zeros((40, 32), np.uint8)])
    coords, present = joint_centers(torch.from_numpy(maps))
    assert coords.shape == (4, 9, 2) and present.shape == (4, 9) and coords.dtype == torch.float32
    for i, m in enumerate(maps):
        c, p = joint_centers(torch.from_numpy(m))
        assert torch.equal(coords[i], c) and torch.equal(present[i], p)
        np.testing.assert_allclose(c.numpy(), reference_centers(m)[0], atol=1e-5)
    assert not present[3].any()
    heat = joint_heatmaps(torch.from_numpy(maps), stride=4)
    for i, m in enumerate(maps):
        assert torch.equal(heat[i], joint_heatmaps(torch.from_numpy(m), stride=4))


def test_flip_mirrors_x_and_swaps_left_right_joints():
    m = torch.from_numpy(person())
    w = m.shape[1]
    coords, present = joint_centers(m)
    fc, fp = joint_centers(flip_labels(m))
    perm = list(range(9))
    for a, b in JOINT_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    expected = coords[perm].clone()
    expected[:, 0] = (w - 1) - expected[:, 0]
    assert torch.allclose(fc, expected, atol=1e-5)
    assert torch.equal(fp, present[perm])
    # The person is not symmetric, so a flip without the label swap would give other joints.
    assert not torch.allclose(fc[LARM], torch.stack([w - 1 - coords[LARM, 0], coords[LARM, 1]]), atol=0.5)
    assert fc[LARM, 0].item() == pytest.approx(w - 1 - coords[RARM, 0].item(), abs=1e-5)


def test_heatmap_peak_and_gaussian_values_on_the_grid():
    # One square region whose centre lands on grid point (x=2, y=3) after stride-4 subsampling:
    # sampled pixels are rows/cols 0,4,8,...; rows 8..16 and cols 4..12 give grid rows 2..4, cols 1..3.
    m = torch.zeros(24, 20, dtype=torch.uint8)
    m[8:17, 4:13] = 9  # pants -> lower body
    heat = joint_heatmaps(m, stride=4, sigma=1.5)
    assert heat.shape == (9, math.ceil(24 / 4), math.ceil(20 / 4))
    lower = heat[LOWER]
    assert lower.max().item() == pytest.approx(1.0, abs=1e-7)
    assert lower[3, 2].item() == pytest.approx(1.0, abs=1e-7)
    assert lower[3, 3].item() == pytest.approx(math.exp(-1 / (2 * 1.5 ** 2)), rel=1e-6)
    assert lower[5, 0].item() == pytest.approx(math.exp(-(4 + 4) / (2 * 1.5 ** 2)), rel=1e-6)
    others = torch.cat([heat[:LOWER], heat[LOWER + 1:]])
    assert torch.equal(others, torch.zeros_like(others))  # absent joints: all-zero maps


def test_heatmap_grid_size_is_ceil_and_subsampling_is_every_stride_th_pixel():
    assert joint_heatmaps(torch.zeros(2, 321, 321, dtype=torch.uint8)).shape == (2, 9, 41, 41)
    assert joint_heatmaps(torch.zeros(33, 17, dtype=torch.uint8), stride=8).shape == (9, 5, 3)
    # A region that only covers pixels between the sampled rows is invisible to the heatmaps.
    m = torch.zeros(32, 32, dtype=torch.uint8)
    m[1:8, 1:8] = 18
    assert joint_centers(m)[1][LSHOE]
    assert not joint_heatmaps(m, stride=8).any()


def test_gaussian_heatmaps_fractional_centre():
    coords = torch.tensor([[[1.5, 0.25]]])
    present = torch.tensor([[True]])
    heat = gaussian_heatmaps(coords, present, 3, 4, sigma=2.0)
    ys, xs = np.mgrid[0:3, 0:4]
    ref = np.exp(-((xs - 1.5) ** 2 + (ys - 0.25) ** 2) / (2 * 2.0 ** 2))
    np.testing.assert_allclose(heat[0, 0].numpy(), ref, rtol=1e-6)
    assert not gaussian_heatmaps(coords, ~present, 3, 4).any()
    with pytest.raises(ValueError, match="sigma"):
        gaussian_heatmaps(coords, present, 3, 4, sigma=0)


def test_joint_structure_loss_known_values():
    gt = torch.zeros(1, 16, 16, dtype=torch.uint8)
    gt[0, 4:9, 4:9] = 17  # right leg, centre (6, 6) -> grid (3, 3) at stride 2
    pred_same = gt.clone()
    pred_missing = torch.zeros_like(gt)  # the prediction misses the leg entirely
    assert joint_structure_loss(pred_same, gt, stride=2).tolist() == [0.0]
    ys, xs = np.mgrid[0:8, 0:8]
    g = np.exp(-((xs - 3) ** 2 + (ys - 3) ** 2) / 2.0)
    sq = float((g ** 2).sum())
    paper = joint_structure_loss(pred_missing, gt, stride=2, convention="paper")
    released = joint_structure_loss(pred_missing, gt, stride=2, convention="released")
    assert paper.item() == pytest.approx(sq / (2 * 9), rel=1e-6)
    assert released.item() == pytest.approx(0.05 * 0.5 * sq, rel=1e-6)
    # Symmetric in its arguments, and the single-map form gives a scalar.
    assert joint_structure_loss(gt, pred_missing, stride=2).item() == pytest.approx(paper.item())
    assert joint_structure_loss(gt[0], pred_missing[0], stride=2).shape == ()


def test_joint_structure_loss_batched_equals_per_image_and_grows_with_displacement():
    gt = np.stack([person()] * 3)
    pred = np.stack([person(), np.roll(person(), 2, axis=1), np.roll(person(), 6, axis=1)])
    loss = joint_structure_loss(torch.from_numpy(pred), torch.from_numpy(gt), stride=4)
    assert loss.shape == (3,)
    for i in range(3):
        single = joint_structure_loss(torch.from_numpy(pred[i]), torch.from_numpy(gt[i]), stride=4)
        assert single.item() == pytest.approx(loss[i].item(), rel=1e-6)
    assert loss[0] == 0 and 0 < loss[1] < loss[2]


def test_bad_inputs():
    with pytest.raises(TypeError, match="integer"):
        joint_centers(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"\[H,W\] or \[B,H,W\]"):
        joint_centers(torch.zeros(1, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="0..255"):
        joint_centers(torch.full((4, 4), 300, dtype=torch.long))
    with pytest.raises(ValueError, match="differ in shape"):
        joint_structure_loss(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="convention"):
        joint_structure_loss(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long),
                             convention="caffe")
    with pytest.raises(ValueError, match="stride"):
        joint_heatmaps(torch.zeros(4, 4, dtype=torch.long), stride=0)
    with pytest.raises(TypeError):
        joint_centers([[0, 1], [2, 3]])


def test_draw_joints_circles_bones_and_absent_joints():
    image = np.full((60, 50, 3), 40, np.uint8)
    coords = torch.zeros(9, 2)
    present = torch.zeros(9, dtype=torch.bool)
    coords[HEAD] = torch.tensor([25.0, 8.0])
    coords[UPPER] = torch.tensor([25.0, 40.0])
    coords[LSHOE] = torch.tensor([5.0, 55.0])
    present[[HEAD, UPPER]] = True  # the left shoe has coords but is absent
    out = draw_joints(image, coords, present, radius=3, thickness=3, bone_color=(200, 200, 200))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == 40).all()  # the input is not modified
    assert out[8, 25].tolist() == JOINT_COLORS[HEAD].tolist()
    assert out[40, 25].tolist() == JOINT_COLORS[UPPER].tolist()
    assert out[24, 25].tolist() == [200, 200, 200]      # midpoint of the head-upper body bone
    assert out[55, 5].tolist() == [40, 40, 40]          # absent joint not drawn
    assert out[24, 45].tolist() == [40, 40, 40]         # far from everything
    grey = draw_joints(np.zeros((20, 20), np.uint8), coords / 3, present)
    assert grey.shape == (20, 20, 3)
    with pytest.raises(ValueError, match=r"\[9,2\]"):
        draw_joints(image, coords[:5], present[:5])


def test_heatmap_overlay_blends_only_near_joints():
    canvas = np.zeros((80, 64), np.uint8)
    canvas[:40, :32] = person()
    m = torch.from_numpy(canvas)
    image = np.full((80, 64, 3), 128, np.uint8)
    heat = joint_heatmaps(m, stride=4)
    out = heatmap_overlay(image, heat, alpha=0.6)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)
    unchanged = heatmap_overlay(image, torch.zeros_like(heat))
    assert np.array_equal(unchanged, image)
    # At a joint the map is ~1 and the pixel moves towards the colormap; in a far corner it does not.
    cx, cy = joint_centers(m)[0][UPPER].round().int().tolist()
    assert np.abs(out[cy, cx].astype(int) - 128).max() > 30
    assert np.abs(out[79, 63].astype(int) - 128).max() <= 2


def test_real_annotation_and_its_shipped_reversed_version():
    """A real CIHP annotation (LIP ids) and the dataset's own flipped-and-swapped copy."""
    from pathlib import Path

    from PIL import Image

    real = REAL_SAMPLES
    label = np.array(Image.open(real / "label_0000002.png"))
    reversed_ = np.array(Image.open(real / "label_reversed_0000002.png"))
    coords, present = joint_centers(label)
    ref_c, ref_p = reference_centers(label)
    assert present.numpy().tolist() == ref_p.tolist()
    # hair/face, upper-clothes and both arms are annotated; no pants, skirt, legs or shoes.
    assert present[[HEAD, UPPER, LARM, RARM]].all() and not present[[LOWER, LLEG, RLEG, LSHOE, RSHOE]].any()
    np.testing.assert_allclose(coords.numpy(), ref_c, atol=1e-4)
    rc, rp = joint_centers(reversed_)
    perm = list(range(9))
    for a, b in JOINT_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    expected = coords[perm].clone()
    expected[:, 0] = (label.shape[1] - 1) - expected[:, 0]
    assert torch.equal(rp, present[perm])
    assert torch.allclose(rc[rp], expected[rp], atol=1e-3)
    image = np.array(Image.open(real / "image_0000002.jpg").convert("RGB"))
    drawn = draw_joints(image, coords, present, radius=3)
    assert drawn.shape == image.shape
    # Each present joint is a disk of its own colour at its centre (joints drawn over the bones)...
    for j in np.flatnonzero(present.numpy()):
        x, y = coords[j].round().int().tolist()
        assert tuple(drawn[y, x]) == tuple(JOINT_COLORS[j]), JOINT_NAMES[j]
    # ... and pixels far from every present joint and bone are the photo's own.
    far = np.ones(image.shape[:2], bool)
    yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
    pts = coords[present].numpy()
    x_lo, x_hi, y_lo, y_hi = pts[:, 0].min() - 10, pts[:, 0].max() + 10, pts[:, 1].min() - 10, pts[:, 1].max() + 10
    far &= ~((xx >= x_lo) & (xx <= x_hi) & (yy >= y_lo) & (yy <= y_hi))
    assert far.any() and np.array_equal(drawn[far], image[far])


def test_joint_terms_add_up_to_the_joint_structure_loss_and_split_by_presence():
    """Eq. 1 joint by joint, by hand: a 16x16 map at stride 1 whose prediction moves the head by 2
    columns, misses the left arm and invents a right shoe. The head's term is the energy two unit
    Gaussians 2 apart do not share, the arm's and the shoe's a whole Gaussian's energy, every other
    joint (present in both, unmoved, or in neither) adds nothing."""
    from lipstudy.joints import composition, joint_structure_loss, joint_terms

    gt = torch.zeros(16, 16, dtype=torch.uint8)
    gt[2:4, 6:8] = 13      # face: the head joint at (6.5, 2.5)
    gt[6:10, 5:9] = 5      # upper-clothes
    gt[6:10, 2:4] = 14     # left arm
    pred = gt.clone()
    pred[2:4, 6:8] = 0
    pred[2:4, 8:10] = 13   # the head 2 columns to the right
    pred[6:10, 2:4] = 0    # the left arm missed
    pred[14:16, 12:14] = 19  # a right shoe invented
    sq, pp, pg = joint_terms(pred, gt, stride=1)
    g = torch.arange(16.0)
    bump = lambda x, y: torch.exp(-((g[None] - x) ** 2 + (g[:, None] - y) ** 2) / 2)  # noqa: E731
    names = list(JOINT_NAMES)
    head, arm, shoe = names.index("head"), names.index("left-arm"), names.index("right-shoe")
    assert sq[head].item() == pytest.approx(((bump(8.5, 2.5) - bump(6.5, 2.5)) ** 2).sum().item(), rel=1e-5)
    assert sq[arm].item() == pytest.approx((bump(2.5, 7.5) ** 2).sum().item(), rel=1e-5)
    assert sq[shoe].item() == pytest.approx((bump(12.5, 14.5) ** 2).sum().item(), rel=1e-5)
    others = [i for i in range(9) if i not in (head, arm, shoe)]
    assert torch.equal(sq[others], torch.zeros(len(others)))
    assert sq.sum().item() / 18 == pytest.approx(joint_structure_loss(pred, gt, stride=1).item(), rel=1e-6)
    c = composition(sq[None], pp[None], pg[None])
    assert c["one_map_share"] == pytest.approx((sq[arm] + sq[shoe]).item() / sq.sum().item())
    assert c["one_map_share"] + c["displaced_share"] == pytest.approx(1.0)
    assert c["one_map_joints_per_image"] == 2 and c["images"] == 1
