"""What Attention's weights are measured as (lipstudy.scale_attention): per image the mean weight per
scale and the share of pixels switched to one scale, pooled over pixels, the "attends" rule, per seed
and by person size; known answers from a stand-in network whose weights are set by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lipstudy import scale_attention as sa


class FixedWeights(torch.nn.Module):
    """A stand-in Attention: its weights over 3 scales are ``w`` at every pixel of the left half of the
    score map and ``v`` on the right half (the score map is the input at stride 8, as the real one)."""

    scales = (1.0, 0.75, 0.5)

    def __init__(self, w, v):
        super().__init__()
        self.w, self.v = torch.tensor(w), torch.tensor(v)

    def forward_parts(self, x):
        h, wd = x.shape[-2] // 8, x.shape[-1] // 8
        out = torch.empty(1, 3, h, wd)
        out[0, :, :, : wd // 2] = self.w[:, None, None]
        out[0, :, :, wd // 2:] = self.v[:, None, None]
        return {"weights": out}


def dataset(sizes):
    return [{"image": np.zeros((hgt, wid, 3), np.uint8), "id": f"im{i}"} for i, (hgt, wid) in enumerate(sizes)]


def test_summary_pooled_and_the_rule_known_answers():
    # left half switched to scale 1 (0.95 > 0.9), right half soft: the hard share is one half
    model = FixedWeights([0.95, 0.03, 0.02], [0.4, 0.35, 0.25])
    s = sa.summarize(model, dataset([(64, 64), (64, 128)]))
    assert s["ids"] == ["im0", "im1"] and list(s["pixels"]) == [64, 128]
    np.testing.assert_allclose(s["mean"][0], [(0.95 + 0.4) / 2, (0.03 + 0.35) / 2, (0.02 + 0.25) / 2], atol=1e-6)
    np.testing.assert_allclose(s["hard"], [0.5, 0.5])
    p = sa.pooled(s)
    np.testing.assert_allclose(p["mean"], [0.675, 0.19, 0.135], atol=1e-6)
    assert p["hard"] == pytest.approx(0.5) and p["images"] == 2
    assert not sa.attends(p)  # half the pixels switched: not under half
    assert sa.attends({"mean": [0.6, 0.3, 0.1], "hard": 0.1})
    assert not sa.attends({"mean": [0.96, 0.03, 0.01], "hard": 0.1})  # a scale at 1%: collapsed
    # pooling weights images by their pixels: an image of 3x the pixels counts 3x
    two = {"mean": np.array([[1.0, 0, 0], [0, 1.0, 0]]), "hard": np.array([1.0, 0.0]), "pixels": np.array([1, 3]),
           "scales": np.array([1.0, 0.75, 0.5])}
    np.testing.assert_allclose(sa.pooled(two)["mean"], [0.25, 0.75, 0.0])
    assert sa.pooled(two, np.array([False, True]))["hard"] == 0.0


def test_seed_table_and_by_size():
    soft = {"ids": ["a", "b"], "mean": np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]], np.float32),
            "hard": np.array([0.0, 0.2], np.float32), "pixels": np.array([10, 10]), "scales": np.array([1.0, 0.75, 0.5])}
    switch = {**soft, "mean": np.array([[0.98, 0.01, 0.01]] * 2, np.float32), "hard": np.array([1.0, 1.0], np.float32)}
    t = sa.seed_table({0: soft, 1: switch})
    assert list(t.index) == ["seed 0", "seed 1", "mean"]
    assert t.loc["seed 0", "scale 1"] == pytest.approx(40.0) and t.loc["seed 0", "scale 0.5"] == pytest.approx(30.0)
    assert t.loc["seed 0", "attends"] and not t.loc["seed 1", "attends"] and not t.loc["mean", "attends"]
    assert t.loc["mean", "pixels > 0.9 on one scale"] == pytest.approx((10.0 + 100.0) / 2)
    attrs = pd.DataFrame({"size_bin": ["large", "small"]}, index=["a", "b"])
    by = sa.by_size(soft, attrs)
    assert by.loc["small", "scale 0.5"] == pytest.approx(50.0) and by.loc["large", "scale 1"] == pytest.approx(60.0)
    assert by.loc["medium", "images"] == 0 and np.isnan(by.loc["medium", "scale 1"])
    assert by.loc["all", "images"] == 2
