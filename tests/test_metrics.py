"""Metrics against small hand-computed examples (ignore pixels, absent classes, both conventions)."""
import math

import numpy as np
import pytest
import torch

from lipstudy import metrics as M

# 3 classes, one 2x4 image. Hand count (rows = ground truth, cols = prediction):
#   target 0 0 1 1      pred 0 1 1 1
#          2 2 255 2         2 0 2 1   (the 255 pixel is ignored whatever is predicted)
TARGET = np.array([[0, 0, 1, 1], [2, 2, 255, 2]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1], [2, 0, 2, 1]], dtype=np.uint8)
CM = np.array([[1, 1, 0],
               [0, 2, 0],
               [1, 1, 1]], dtype=np.int64)


def test_confusion_matrix_by_hand_numpy_and_torch():
    assert np.array_equal(M.confusion_matrix(PRED, TARGET, 3), CM)
    cm_t = M.confusion_matrix(torch.from_numpy(PRED), torch.from_numpy(TARGET), 3)
    assert isinstance(cm_t, torch.Tensor) and cm_t.dtype == torch.int64
    assert np.array_equal(cm_t.numpy(), CM)
    # int64 inputs (argmax output) give the same matrix
    assert np.array_equal(M.confusion_matrix(PRED.astype(np.int64), TARGET.astype(np.int64), 3), CM)


def test_torch_bincount_path_matches():
    # The GPU path (one bincount over the batch) exercised on CPU tensors directly.
    p = torch.from_numpy(np.stack([PRED, PRED[:, ::-1].copy()]))
    t = torch.from_numpy(np.stack([TARGET, TARGET]))
    batched = M._cm_torch(p, t, 3, 255, batched=True)
    assert np.array_equal(batched[0].numpy(), CM)
    assert np.array_equal(batched.numpy(), M.batched_confusion_matrix(p.numpy(), t.numpy(), 3))
    assert np.array_equal(M._cm_torch(p[0], t[0], 3, 255, batched=False).numpy(), CM)


def test_batched_equals_per_image_and_sum():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 5, (6, 9, 7), dtype=np.uint8)
    p = rng.integers(0, 5, (6, 9, 7), dtype=np.uint8)
    t[:, 0, :] = 255
    b = M.batched_confusion_matrix(p, t, 5)
    assert b.shape == (6, 5, 5) and b.dtype == np.int64
    for i in range(6):
        assert np.array_equal(b[i], M.confusion_matrix(p[i], t[i], 5))
    assert np.array_equal(M.aggregate(b), M.confusion_matrix(p, t, 5))
    assert b.sum() == 6 * 8 * 7  # every non-ignored pixel counted once


def test_scores_by_hand():
    s = M.scores(CM)
    assert s["overall_acc"] == pytest.approx(4 / 7)
    # per-class accuracy: 1/2, 2/2, 1/3
    assert s["mean_acc"] == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    # IoU: c0 = 1/(2+2-1) = 1/3; c1 = 2/(2+4-2) = 1/2; c2 = 1/(3+1-1) = 1/3
    assert np.allclose(s["per_class_iou"], [1 / 3, 1 / 2, 1 / 3])
    assert s["mean_iou"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)


def test_absent_class_conventions():
    # Class 3 never occurs (neither in ground truth nor prediction); class 2 is predicted but absent
    # from the ground truth: its IoU is 0 in both conventions, its accuracy is undefined (skipped).
    cm = np.zeros((4, 4), dtype=np.int64)
    cm[0, 0], cm[1, 1], cm[1, 2] = 3, 1, 1
    skip = M.scores(cm, absent="skip")
    assert math.isnan(skip["per_class_iou"][3])
    assert skip["per_class_iou"][2] == 0.0
    assert skip["mean_iou"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert skip["mean_acc"] == pytest.approx((1 + 0.5) / 2)
    zero = M.scores(cm, absent="zero")
    assert zero["mean_iou"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert zero["mean_acc"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    with pytest.raises(ValueError, match="absent"):
        M.scores(cm, absent="drop")


def test_all_ignored_image_counts_nothing():
    t = np.full((3, 3), 255, np.uint8)
    cm = M.confusion_matrix(np.zeros((3, 3), np.uint8), t, 4)
    assert cm.sum() == 0
    assert math.isnan(M.scores(cm)["overall_acc"])


def test_bad_values_and_shapes_raise():
    t = TARGET.copy()
    t[0, 0] = 7
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        M.confusion_matrix(PRED, t, 3)
    p = PRED.copy()
    p[1, 1] = 3
    with pytest.raises(ValueError, match=r"prediction values \[3\]"):
        M.confusion_matrix(p, TARGET, 3)
    with pytest.raises(ValueError, match="outside"):
        M.confusion_matrix(PRED.astype(np.int64) - 1, TARGET, 3)
    with pytest.raises(ValueError, match="shape"):
        M.confusion_matrix(PRED[:, :3], TARGET, 3)
    with pytest.raises(ValueError, match=r"label values \[9\]"):
        M.confusion_matrix(torch.zeros(2, 2, dtype=torch.long),
                           torch.full((2, 2), 9, dtype=torch.long), 3)
    with pytest.raises(ValueError, match=r"label values \[9\]"):  # the GPU path's own check
        M._cm_torch(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 9, dtype=torch.long), 3, 255, False)


def test_aggregate_subsets_and_select():
    cms = np.stack([CM, 2 * CM, np.eye(3, dtype=np.int64)])
    assert np.array_equal(M.aggregate(cms, [0, 2]), CM + np.eye(3, dtype=np.int64))
    assert np.array_equal(M.aggregate(cms, np.array([False, True, False])), 2 * CM)
    with pytest.raises(ValueError, match="mask"):
        M.aggregate(cms, np.array([True, False]))
    assert list(M.select(["a", "b", "c"], ["c", "a"])) == [2, 0]
    with pytest.raises(KeyError):
        M.select(["a"], ["z"])


def test_stat_functions():
    stack = np.stack([CM, CM]).astype(float)
    assert np.allclose(M.stat_fn("mean_iou")(stack), M.scores(CM)["mean_iou"])
    assert np.allclose(M.stat_fn("iou:1")(stack), 0.5)
    assert np.allclose(M.stat_fn("miou:0,1")(stack), (1 / 3 + 1 / 2) / 2)
    with pytest.raises(ValueError, match="unknown statistic"):
        M.stat_fn("f1")


def test_bootstrap_ci_brackets_value_and_paired_difference():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 4, (40, 12, 12), dtype=np.uint8)
    good = np.where(rng.random(t.shape) < 0.8, t, rng.integers(0, 4, t.shape)).astype(np.uint8)
    bad = np.where(rng.random(t.shape) < 0.4, t, rng.integers(0, 4, t.shape)).astype(np.uint8)
    cg = M.batched_confusion_matrix(good, t, 4)
    cb = M.batched_confusion_matrix(bad, t, 4)
    ci = M.bootstrap_ci(cg, "mean_iou", n_boot=300, seed=0)
    assert ci["low"] <= ci["value"] <= ci["high"] and ci["n"] == 40
    assert ci["value"] == pytest.approx(M.scores(M.aggregate(cg))["mean_iou"])
    # The same interval from an independent resampling loop: the same seed draws the same images
    # (n_boot rows of n indices), each resample's matrix is the sum of the drawn images' matrices.
    draws = np.random.default_rng(0).integers(0, 40, size=(300, 40))
    good = np.array([M.scores(cg[d].sum(0))["mean_iou"] for d in draws])
    worse = np.array([M.scores(cb[d].sum(0))["mean_iou"] for d in draws])
    assert (ci["low"], ci["high"]) == pytest.approx(tuple(np.quantile(good, [0.025, 0.975])), abs=1e-12)
    assert ci["high"] - ci["low"] > 0.005  # a real interval, not a point
    diff = M.bootstrap_ci(cg, "mean_iou", n_boot=300, other=cb)
    assert diff["value"] == pytest.approx(M.scores(cg.sum(0))["mean_iou"] - M.scores(cb.sum(0))["mean_iou"])
    # Paired: both methods are scored on the same resample, then differenced.
    assert (diff["low"], diff["high"]) == pytest.approx(tuple(np.quantile(good - worse, [0.025, 0.975])), abs=1e-12)
    ci90 = M.bootstrap_ci(cg, "overall_acc", n_boot=300, alpha=0.1, seed=0)
    acc = [M.scores(cg[d].sum(0))["overall_acc"] for d in draws]
    assert (ci90["low"], ci90["high"]) == pytest.approx(tuple(np.quantile(acc, [0.05, 0.95])), abs=1e-12)
    # identical methods: the paired difference is exactly zero
    same = M.bootstrap_ci(cg, "overall_acc", n_boot=50, other=cg)
    assert same["value"] == same["low"] == same["high"] == 0.0
    # same seed, same interval
    assert M.bootstrap_ci(cg, n_boot=100, seed=3) == M.bootstrap_ci(cg, n_boot=100, seed=3)
    with pytest.raises(ValueError, match="same images"):
        M.bootstrap_ci(cg, other=cb[:5])
