"""Claims: each statistic on hand-built per-image confusion matrices with known answers, the
paper's values of the same statistics from its tables, and the verdict rule."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lipstudy import claims

C = 20
N = 40


def cm_images(n: int, acc_per_class: dict[int, float], seed: int = 0) -> np.ndarray:
    """n per-image matrices: every class 1..19 and background present with 100 pixels each;
    a fraction 1 - acc of class c's pixels is predicted as background."""
    cms = np.zeros((n, C, C), dtype=np.int64)
    for c in range(C):
        acc = acc_per_class.get(c, 1.0)
        right = int(round(100 * acc))
        cms[:, c, c] = right
        cms[:, c, 0] += 100 - right
    return cms


def fake_evidence(quality: dict[str, float], attributes=None, seeds=(0,), per_seed_shift=0.0, n=N, **kw):
    """Each method gets uniform per-class accuracy quality[method] (IoU falls with it)."""
    ids = [f"im{i:03d}" for i in range(n)]

    def evaluation(method, split, seed):
        q = quality[method] + per_seed_shift * seed
        return SimpleNamespace(ids=ids, cms=cm_images(n, {c: q for c in range(1, C)}))

    return claims.Evidence(evaluation, list(seeds), attributes, n_boot=200, **kw)


def test_decide():
    assert claims.decide(0.1, 2.0) == "supported"
    assert claims.decide(-2.0, -0.1) == "contradicted"
    assert claims.decide(-0.1, 0.1) == "inconclusive"
    assert claims.decide(np.nan, np.nan) == "no data"


def test_attention_best_known_answer_and_paper_value():
    evd = fake_evidence({"SegNet": 0.5, "FCN-8s": 0.6, "DeepLabV2": 0.8, "Attention": 0.9})
    v = claims.attention_best_baseline(evd, "mean_iou", "val")
    # IoU of class c with accuracy q (missed pixels go to background): q*100 / 100 = q; background
    # IoU = 100 / (100 + 19*(100-100q)). Mean over 20 classes:
    def miou(q):
        return (19 * q + 100 / (100 + 19 * 100 * (1 - q))) / 20
    assert v.estimate == pytest.approx(100 * (miou(0.9) - miou(0.8)), abs=1e-9)
    assert v.paper_value == pytest.approx(42.92 - 41.64)
    # Identical images: every resample gives the same difference, the interval is a point.
    assert v.low == pytest.approx(v.estimate) and v.high == pytest.approx(v.estimate)
    assert v.verdict == "supported" and v.n_images == N
    worse = fake_evidence({"SegNet": 0.5, "FCN-8s": 0.6, "DeepLabV2": 0.95, "Attention": 0.9})
    assert claims.attention_best_baseline(worse).verdict == "contradicted"
    assert claims.attention_best_baseline(worse, "mean_acc", "test").paper_value == pytest.approx(54.28 - 51.53)


def test_subset_claims_use_attributes_and_report_no_data():
    N = 100
    ids = [f"im{i:03d}" for i in range(N)]
    attrs = pd.DataFrame({c: [1 if i % 5 == k else 0 for i in range(N)] for k, c in enumerate(claims.CHALLENGES)},
                         index=ids)
    attrs["size_bin"] = ["small", "medium", "large", "large"] * (N // 4)

    def evaluation(method, split, seed):
        # Back-view images (i % 5 == 4) are parsed worse by every method.
        cms = np.stack([cm_images(1, {c: (0.5 if i % 5 == 4 else 0.9) for c in range(1, C)})[0]
                        for i in range(N)])
        return SimpleNamespace(ids=ids, cms=cms)

    evd = claims.Evidence(evaluation, [0], attrs, n_boot=100)
    v = claims.back_view_hardest(evd)
    assert v.verdict == "supported" and v.estimate > 10 and v.n_images == N // 5
    assert claims.upper_body_easiest(evd).verdict == "inconclusive"  # all other subsets equal
    attrs_none = attrs.assign(head_missed=0)
    v = claims.head_missed_second(claims.Evidence(evaluation, [0], attrs_none, n_boot=50))
    assert v.verdict == "no data" and v.n_images == 0
    few = attrs.assign(back_view=[1 if i < 3 else 0 for i in range(N)])
    assert claims.back_view_hardest(claims.Evidence(evaluation, [0], few, n_boot=50)).verdict == "too few images"
    with pytest.raises(ValueError, match="needs image attributes"):
        claims.back_view_hardest(claims.Evidence(evaluation, [0], None, n_boot=10))


def test_seeds_are_averaged_and_reported():
    evd = fake_evidence({"Attention": 0.8, "Attention + SSL": 0.8}, seeds=(0, 1, 2))
    # SSL model gets better with the seed index in this fake: gains 0, +, ++ .
    base = evd.evaluation

    def evaluation(method, split, seed):
        ev = base(method, split, seed)
        if method == "Attention + SSL":
            return SimpleNamespace(ids=ev.ids, cms=cm_images(N, {c: 0.8 + 0.05 * seed for c in range(1, C)}))
        return ev

    evd = claims.Evidence(evaluation, [0, 1, 2], None, n_boot=50)
    v = claims.ssl_improves(evd, "Attention", "val")
    assert len(v.per_seed) == 3 and v.per_seed[0] == pytest.approx(0.0)
    assert v.per_seed[0] < v.per_seed[1] < v.per_seed[2]
    assert v.estimate == pytest.approx(np.mean(v.per_seed))
    assert v.paper_value == pytest.approx(1.81)
    row = v.as_row()
    assert row["seed spread"] == pytest.approx(v.per_seed[2] - v.per_seed[0])


def test_paired_bootstrap_interval_covers_noisy_difference():
    rng = np.random.default_rng(0)
    ids = [f"im{i:03d}" for i in range(N)]
    noise = rng.uniform(0.3, 0.95, size=N)

    def evaluation(method, split, seed):
        shift = 0.03 if method == "Attention + SSL" else 0.0
        cms = np.stack([cm_images(1, {c: min(noise[i] + shift, 1.0) for c in range(1, C)})[0] for i in range(N)])
        return SimpleNamespace(ids=ids, cms=cms)

    v = claims.ssl_improves(claims.Evidence(evaluation, [0], None, n_boot=300), "Attention", "val")
    assert v.low <= v.estimate <= v.high
    assert v.low > 0  # paired: the per-image noise cancels, the shift remains
    assert v.verdict == "supported"


def test_ids_are_aligned_across_methods():
    ids = [f"im{i:03d}" for i in range(N)]
    cms = np.stack([cm_images(1, {c: 0.5 + 0.01 * i for c in range(1, C)})[0] for i in range(N)])

    def evaluation(method, split, seed):
        if method == "Attention + SSL":  # same images, listed in reverse order
            return SimpleNamespace(ids=ids[::-1], cms=cms[::-1])
        return SimpleNamespace(ids=ids, cms=cms)

    v = claims.ssl_improves(claims.Evidence(evaluation, [0], None, n_boot=50), "Attention", "val")
    assert v.estimate == pytest.approx(0.0) and v.low == pytest.approx(0.0) and v.high == pytest.approx(0.0)


def test_paper_values_from_tables():
    evd = fake_evidence({m: 0.8 for m in ["SegNet", "FCN-8s", "DeepLabV2", "Attention",
                                          "DeepLabV2 + SSL", "Attention + SSL"]})
    # Section 3.1: min(41.64, 42.92) - max(28.29, 18.17)
    assert claims.fcn_segnet_far_behind(evd).paper_value == pytest.approx(41.64 - 28.29)
    # Section 5.2: sunglasses, socks, gloves gains of Attention + SSL over Attention (Table 4).
    small = ((21.57 - 19.48) + (38.52 - 35.23) + (28.95 - 23.32)) / 3
    assert claims.ssl_helps_small_labels(evd).paper_value == pytest.approx(small, abs=0.01)
    # Table 6 right: the range reading is negative on the paper's own numbers.
    v = claims.ssl_smaller_input_size_range(
        fake_evidence({"DeepLabV2": 0.8, "DeepLabV2 + SSL": 0.8}), sizes=(64, 128))
    assert v.paper_value == pytest.approx((37.59 - 36.49) - (39.84 - 38.27))
    assert claims.attention_ssl_beats_deeplab(evd).paper_value == pytest.approx(3.09)
    assert claims.ssl_improves(evd, "DeepLabV2", "val").paper_value == pytest.approx(42.44 - 41.64)


def test_verdict_table_columns():
    evd = fake_evidence({"Attention": 0.8, "Attention + SSL": 0.85})
    t = claims.verdict_table([claims.ssl_improves(evd), claims.ssl_helps_small_labels(evd)])
    assert list(t["verdict"]) == ["supported", "supported"]
    assert {"paper (pp)", "ours (pp)", "CI low", "CI high", "seed spread"} <= set(t.columns)
