"""The SSL chapter's reading of the runs (lipstudy.ssl_effect): the seed table, paired per-seed
differences and L_joint's composition, on stand-in run results with known numbers."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lipstudy import ssl_effect
from lipstudy.evaluate import JOINT_TERMS


def result(miou, folder=None, label="run"):
    ev = SimpleNamespace(metrics={"mean_iou": miou})
    return SimpleNamespace(evaluation=lambda which="val": ev, dir=Path(folder or "."), label=label)


def test_seed_table_and_paired_differences_known_answers():
    t = ssl_effect.seed_table({"A + SSL": {0: result(0.20), 1: result(0.22)},
                               "A control": {0: result(0.19), 1: result(0.23)},
                               "B": {0: result(0.10)}})
    assert list(t.columns) == ["seed 0", "seed 1", "mean", "spread (pp)"]
    assert t.loc["A + SSL", "mean"] == pytest.approx(21.0) and t.loc["A control", "spread (pp)"] == pytest.approx(4.0)
    assert np.isnan(t.loc["B", "seed 1"]) and t.loc["B", "mean"] == pytest.approx(10.0)
    d = ssl_effect.paired_differences(t, {"A: SSL - control": ("A + SSL", "A control"), "missing": ("A + SSL", "C"),
                                          "B - A": ("B", "A + SSL")})
    assert list(d["comparison"]) == ["A: SSL - control", "A: SSL - control", "B - A"]  # B has no seed 1
    np.testing.assert_allclose(d["difference (pp)"], [1.0, -1.0, -10.0])
    assert list(d["seed"]) == [0, 1, 0]


def test_l_joint_composition_reads_each_runs_validation_terms(tmp_path):
    # two images, 9 joints: image 0 misses joint 0 in its prediction (sq 2.0) and displaces joint 1 (sq 1.0);
    # image 1 has every joint in both maps, joint 2 displaced (sq 1.0)
    sq = np.zeros((2, 9), np.float32)
    sq[0, 0], sq[0, 1], sq[1, 2] = 2.0, 1.0, 1.0
    pg = np.ones((2, 9), bool)
    pp = pg.copy()
    pp[0, 0] = False
    folder = tmp_path / "run"
    (folder / "eval" / "val").mkdir(parents=True)
    np.savez(folder / "eval" / "val" / JOINT_TERMS, ids=np.array(["a", "b"]), sq=sq, present_pred=pp, present_gt=pg)
    t = ssl_effect.l_joint_composition({"DeepLabV2": result(0.2, folder)})
    assert t.loc["DeepLabV2", "one-map share (%)"] == pytest.approx(50.0)
    assert t.loc["DeepLabV2", "displaced share (%)"] == pytest.approx(50.0)
    assert t.loc["DeepLabV2", "mean L_joint"] == pytest.approx((3.0 + 1.0) / 2 / 18)  # Eq. 1: 1/(2N), N = 9
    assert t.loc["DeepLabV2", "one-map joints per image"] == pytest.approx(0.5)
    assert t["images"].dtype.kind == "i" and t.loc["DeepLabV2", "images"] == 2
    with pytest.raises(FileNotFoundError, match="no validation joint terms"):
        ssl_effect.l_joint_composition({"x": result(0.2, tmp_path / "other", label="DeepLabV2")})
