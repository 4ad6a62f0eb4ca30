"""Claims: each statistic on hand-built per-image confusion matrices with known answers, the
paper's values of the same statistics from its tables, and the verdict rule."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lipstudy import metrics
from lipstudy.claims import catalogue, engine

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


THREE = (0, 1, 2)  # enough seeds of every compared run for a decided verdict (engine.MIN_SEEDS)


def fake_evidence(quality: dict[str, float], attributes=None, seeds=THREE, per_seed_shift=0.0, n=N, **kw):
    """Each method gets uniform per-class accuracy quality[method] (IoU falls with it), trained
    with ``seeds`` (identical results per seed unless ``per_seed_shift``)."""
    ids = [f"im{i:03d}" for i in range(n)]

    def evaluation(method, split, seed):
        q = quality[method] + per_seed_shift * seed
        return SimpleNamespace(ids=ids, cms=cm_images(n, {c: q for c in range(1, C)}))

    return engine.Evidence(evaluation, {m: list(seeds) for m in quality}, attributes, n_boot=200, **kw)


def test_attention_best_known_answer_and_paper_value():
    evd = fake_evidence({"SegNet": 0.5, "FCN-8s": 0.6, "DeepLabV2": 0.8, "Attention": 0.9})
    v = catalogue.attention_best_baseline(evd, "mean_iou", "val")
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
    assert catalogue.attention_best_baseline(worse).verdict == "contradicted"
    assert catalogue.attention_best_baseline(worse, "mean_acc", "test").paper_value == pytest.approx(54.28 - 51.53)


def test_subset_claims_use_attributes_and_report_no_data():
    N = 100
    ids = [f"im{i:03d}" for i in range(N)]
    attrs = pd.DataFrame({c: [1 if i % 5 == k else 0 for i in range(N)] for k, c in enumerate(engine.CHALLENGES)},
                         index=ids)
    attrs["size_bin"] = ["small", "medium", "large", "large"] * (N // 4)

    def evaluation(method, split, seed):
        # Back-view images (i % 5 == 4) are parsed worse by every method.
        cms = np.stack([cm_images(1, {c: (0.5 if i % 5 == 4 else 0.9) for c in range(1, C)})[0]
                        for i in range(N)])
        return SimpleNamespace(ids=ids, cms=cms)

    seeds = {m: list(THREE) for m in engine.BASELINES}
    evd = engine.Evidence(evaluation, seeds, attrs, n_boot=100)
    v = catalogue.back_view_hardest(evd)
    assert v.verdict == "supported" and v.estimate > 10 and v.n_images == N // 5
    assert catalogue.upper_body_easiest(evd).verdict == "undecided"  # all other subsets equal
    attrs_none = attrs.assign(head_missed=0)
    v = catalogue.head_missed_second(engine.Evidence(evaluation, seeds, attrs_none, n_boot=50))
    assert v.verdict == "untestable" and v.n_images == 0 and "0 images" in v.reason
    few = attrs.assign(back_view=[1 if i < 3 else 0 for i in range(N)])
    v = catalogue.back_view_hardest(engine.Evidence(evaluation, seeds, few, n_boot=50))
    assert v.verdict == "untestable" and "3 images (fewer than 10)" in v.reason
    with pytest.raises(ValueError, match="needs image attributes"):
        catalogue.back_view_hardest(engine.Evidence(evaluation, seeds, None, n_boot=10))
    # On the synthetic benchmark a claim about the data holds by construction: the renderer's rule is named.
    v = catalogue.back_view_hardest(engine.Evidence(evaluation, seeds, attrs, synthetic=True, n_boot=50))
    assert v.verdict == "by construction" and "back view hides the face" in v.reason and v.estimate > 10


def test_seeds_are_averaged_and_their_spread_is_in_the_interval():
    # The SSL model gets better with the seed index in this fake: gains 0, +, ++ over its control.
    ctl = "Attention + stage-2 epochs without SSL"
    evd = fake_evidence({"Attention": 0.8, "Attention + SSL": 0.8, ctl: 0.8})
    base = evd.evaluation

    def evaluation(method, split, seed):
        ev = base(method, split, seed)
        if method == "Attention + SSL":
            return SimpleNamespace(ids=ev.ids, cms=cm_images(N, {c: 0.8 + 0.05 * seed for c in range(1, C)}))
        return ev

    evd = engine.Evidence(evaluation, evd.method_seeds, None, n_boot=50)
    v = catalogue.ssl_improves(evd, "Attention", "val")
    assert v.control == ctl and "- mIoU(Attention + stage-2 epochs without SSL)" in v.statistic
    assert len(v.per_seed) == 3 and v.per_seed[0] == pytest.approx(0.0)
    assert v.per_seed[0] < v.per_seed[1] < v.per_seed[2]
    assert v.estimate == pytest.approx(np.mean(v.per_seed))
    assert v.paper_value == pytest.approx(1.81)
    assert v.as_row()["seed spread"] == pytest.approx(v.per_seed[2] - v.per_seed[0])
    # Identical images, so the image interval is a point: the whole width is the seeds', by hand
    # the Student t interval of three values (t_0.975 with 2 degrees of freedom: 4.303).
    sd = float(np.std(v.per_seed, ddof=1))
    assert v.image_low == pytest.approx(v.estimate) and v.image_high == pytest.approx(v.estimate)
    assert v.seed_sd == pytest.approx(sd) and "measured over 3 seeds" in v.seed_sd_source
    half = 4.302653 * sd / np.sqrt(3)
    assert v.high - v.estimate == pytest.approx(half, rel=1e-5)
    # 80% power, by hand: margin 0.5 + the half-width + z_0.80 (0.841621) x the standard error sd / sqrt(3)
    assert v.margin == 0.5 and v.detectable == pytest.approx(0.5 + half + 0.841621 * sd / np.sqrt(3), rel=1e-5)
    # The gains are all >= 0 but spread widely: the interval reaches below 0, so no verdict; seed 0's
    # gain is 0, not above it.
    assert v.low < 0 < v.high and v.verdict == "undecided" and "contains 0" in v.reason
    assert "(b) seed 0 (+0.00) is not above 0" in v.reason and v.seeds_used == (0, 1, 2)


def test_paired_bootstrap_interval_covers_noisy_difference():
    rng = np.random.default_rng(0)
    ids = [f"im{i:03d}" for i in range(N)]
    noise = rng.uniform(0.3, 0.95, size=N)

    def evaluation(method, split, seed):
        shift = 0.03 if method == "Attention + SSL" else 0.0
        cms = np.stack([cm_images(1, {c: min(noise[i] + shift, 1.0) for c in range(1, C)})[0] for i in range(N)])
        return SimpleNamespace(ids=ids, cms=cms)

    seeds = {"Attention + SSL": list(THREE), "Attention": list(THREE)}  # no control: compared with Attention
    v = catalogue.ssl_improves(engine.Evidence(evaluation, seeds, None, n_boot=300), "Attention", "val")
    assert v.low <= v.estimate <= v.high
    assert v.image_low > 0  # paired: the per-image noise cancels, the shift remains
    # ... but without a control the gain is confounded with the extra epochs: no verdict.
    assert v.control is None and v.verdict == "undecided" and "confounded with training length" in v.reason


def test_ids_are_aligned_across_methods():
    ids = [f"im{i:03d}" for i in range(N)]
    cms = np.stack([cm_images(1, {c: 0.5 + 0.01 * i for c in range(1, C)})[0] for i in range(N)])

    def evaluation(method, split, seed):
        if method == "Attention + SSL":  # same images, listed in reverse order
            return SimpleNamespace(ids=ids[::-1], cms=cms[::-1])
        return SimpleNamespace(ids=ids, cms=cms)

    seeds = {"Attention + SSL": list(THREE), "Attention": list(THREE)}
    v = catalogue.ssl_improves(engine.Evidence(evaluation, seeds, None, n_boot=50), "Attention", "val")
    assert v.estimate == pytest.approx(0.0) and v.low == pytest.approx(0.0) and v.high == pytest.approx(0.0)


def test_paper_values_from_tables():
    evd = fake_evidence({m: 0.8 for m in ["SegNet", "FCN-8s", "DeepLabV2", "Attention",
                                          "DeepLabV2 + SSL", "Attention + SSL"]})
    # Section 3.1: min(41.64, 42.92) - max(28.29, 18.17)
    assert catalogue.fcn_segnet_below(evd).paper_value == pytest.approx(41.64 - 28.29)
    # Section 5.2: sunglasses, socks, gloves gains of Attention + SSL over Attention (Table 4).
    small = ((21.57 - 19.48) + (38.52 - 35.23) + (28.95 - 23.32)) / 3
    assert catalogue.ssl_improves_small_labels(evd).paper_value == pytest.approx(small, abs=0.01)
    # ... and of DeepLabV2 + SSL over DeepLabV2: (20.05 - 18.40 + 36.12 - 34.51 + 28.76 - 28.50) / 3
    assert catalogue.ssl_improves_small_labels(evd, "DeepLabV2").paper_value == pytest.approx(1.17)  # 1.173, to 0.01
    # Table 6 right: the range reading is negative on the paper's own numbers.
    v = catalogue.ssl_smaller_input_size_range(
        fake_evidence({"DeepLabV2": 0.8, "DeepLabV2 + SSL": 0.8}), sizes=(64, 128))
    assert v.paper_value == pytest.approx((37.59 - 36.49) - (39.84 - 38.27))
    assert catalogue.attention_ssl_beats_deeplab(evd).paper_value == pytest.approx(3.09)
    assert catalogue.ssl_improves(evd, "DeepLabV2", "val").paper_value == pytest.approx(42.44 - 41.64)


def test_verdict_table_columns():
    evd = fake_evidence({"Attention": 0.8, "Attention + SSL": 0.85, "Attention + stage-2 epochs without SSL": 0.8})
    t = catalogue.verdict_table([catalogue.ssl_improves(evd), catalogue.ssl_improves_small_labels(evd)])
    assert list(t["verdict"]) == ["supported", "supported"]
    assert {"paper (pp)", "ours (pp)", "CI low", "CI high", "margin (pp)", "detectable at 80% power (pp)",
            "seed spread", "control", "reason"} <= set(t.columns)


# ---------------------------------------------------------------------------------------------
# Every claim on constructed per-image matrices whose verdict and value are known by hand.
#
# ``image_cm(q)``: one image whose part labels (1..19) have accuracy q (a float for all, or a dict
# class -> accuracy), the missed pixels predicted as background. Part class c then has no false
# positive, so the IoU of c over any set of images is the mean of q_c over them, and the IoU of a
# class subset ("miou:<ids>") is exact arithmetic. With every part at q_i in image i, background
# IoU = n / (n + 19 * sum(1 - q_i)) (its 100 pixels per image plus every missed part pixel), which
# ``miou_images`` uses for the 20-class mean IoU.

M = 120  # images: five challenge types (i % 5) and three size bins (i % 3), each with as many
IDS = [f"im{i:03d}" for i in range(M)]  # even as odd i, so a +-jitter by parity averages to 0


def image_cm(q) -> np.ndarray:
    acc = q if isinstance(q, dict) else {c: q for c in range(1, C)}
    return cm_images(1, acc)[0]


def miou_images(qs) -> float:
    qs = np.asarray(qs, dtype=float)
    background = len(qs) / (len(qs) + 19 * np.sum(1 - qs))
    return (19 * qs.mean() + background) / 20


def miou(q) -> float:
    return miou_images([q])


def jitter(i: int, size: float = 0.05) -> float:
    """+size on even images, -size on odd ones: zero on average over any subset used here."""
    return size if i % 2 == 0 else -size


ATTRS = pd.DataFrame({c: [int(i % 5 == k) for i in range(M)] for k, c in enumerate(engine.CHALLENGES)},
                     index=IDS)
ATTRS["size_bin"] = [engine.SIZE_BINS[i % 3] for i in range(M)]


def challenge(i: int) -> str:
    return engine.CHALLENGES[i % 5]


CONTROL = {m: f"{m} + stage-2 epochs without SSL" for m in ("DeepLabV2", "Attention")}
METHODS = (*engine.BASELINES, "DeepLabV2 + SSL", "Attention + SSL", *CONTROL.values(), "ppp/DeepLabV2", "ppp/Attention",
           "ppp/Attention + SSL", "ppp/Attention + stage-2 epochs without SSL")


def world(quality, calls=None, seeds=THREE, n_boot=200, methods=METHODS, synthetic=False):
    """Evidence whose image i, evaluated by ``method`` on ``split``, has part accuracy
    ``quality(method, split, i)`` for every seed; ``calls`` collects the (method, split) pairs asked for."""
    cache = {}

    def evaluation(method, split, seed):
        if calls is not None:
            calls.append((method, split))
        if (method, split) not in cache:
            cache[method, split] = np.stack([image_cm(quality(method, split, i)) for i in range(M)])
        return SimpleNamespace(ids=IDS, cms=cache[method, split])

    return engine.Evidence(evaluation, {m: list(seeds) for m in methods}, ATTRS, synthetic=synthetic, n_boot=n_boot)


def by_method(q: dict):
    return lambda method, split, i: q[method]


def check(v, verdict, estimate=None):
    assert v.verdict == verdict, (v.claim, v.verdict, v.estimate, v.low, v.high)
    assert v.low <= v.estimate + 1e-9 and v.estimate <= v.high + 1e-9
    if estimate is not None:
        assert v.estimate == pytest.approx(estimate, abs=1e-9)
    if verdict == "undecided":
        assert v.low < 0 < v.high


BASE = {"SegNet": 0.5, "FCN-8s": 0.6, "DeepLabV2": 0.8, "Attention": 0.9}


def test_fcn_segnet_below_known_answers():
    # min(mIoU DeepLabV2, Attention) - max(mIoU FCN-8s, SegNet) = DeepLabV2 - FCN-8s here
    check(catalogue.fcn_segnet_below(world(by_method(BASE))), "supported", 100 * (miou(0.8) - miou(0.6)))
    check(catalogue.fcn_segnet_below(world(by_method({**BASE, "FCN-8s": 0.85}))), "contradicted",
          100 * (miou(0.8) - miou(0.85)))
    tie = {"SegNet": lambda i: 0.5, "FCN-8s": lambda i: 0.7 - jitter(i), "DeepLabV2": lambda i: 0.7 + jitter(i),
           "Attention": lambda i: 0.9}
    check(catalogue.fcn_segnet_below(world(lambda m, s, i: tie[m](i))), "undecided", 0.0)


def test_attention_best_baseline_undecided_on_a_tie():
    tie = lambda m, s, i: {"Attention": 0.8 + jitter(i), "DeepLabV2": 0.8 - jitter(i)}.get(m, 0.5)  # noqa: E731
    check(catalogue.attention_best_baseline(world(tie)), "undecided", 0.0)


def test_back_view_drop_attention_known_answers():
    qs = [0.5 if challenge(i) == "back_view" else 0.9 for i in range(M)]
    v = catalogue.back_view_drop_attention(world(lambda m, s, i: qs[i]))
    check(v, "supported", 100 * (miou_images(qs) - miou(0.5)))
    assert v.paper_value == pytest.approx(42.92 - 33.50) and v.n_images == M // 5
    qs = [0.95 if challenge(i) == "back_view" else 0.8 for i in range(M)]
    check(catalogue.back_view_drop_attention(world(lambda m, s, i: qs[i])), "contradicted",
          100 * (miou_images(qs) - miou(0.95)))


def test_back_view_hardest_contradicted():
    q = lambda m, s, i: 0.95 if challenge(i) == "back_view" else 0.8  # noqa: E731
    # min over the other challenges (all 0.8) - back-view (0.95)
    check(catalogue.back_view_hardest(world(q)), "contradicted", 100 * (miou(0.8) - miou(0.95)))


def test_head_missed_second_known_answers():
    def q(head_missed):
        return lambda m, s, i: head_missed(i) if challenge(i) == "head_missed" else 0.9

    check(catalogue.head_missed_second(world(q(lambda i: 0.6))), "supported", 100 * (miou(0.9) - miou(0.6)))
    check(catalogue.head_missed_second(world(q(lambda i: 0.95))), "contradicted", 100 * (miou(0.9) - miou(0.95)))
    check(catalogue.head_missed_second(world(q(lambda i: 0.9 + jitter(i)))), "undecided", 0.0)


def test_head_missed_below_average_for_every_baseline():
    def q(segnet_head_missed):
        def quality(m, s, i):
            if challenge(i) != "head_missed":
                return 0.9
            return segnet_head_missed if m == "SegNet" else 0.6
        return quality

    all_qs = [0.6 if challenge(i) == "head_missed" else 0.9 for i in range(M)]
    check(catalogue.head_missed_below_average_all(world(q(0.6))), "supported", 100 * (miou_images(all_qs) - miou(0.6)))
    # One baseline (SegNet) does better on head-missed images: the minimum over baselines is its gap.
    segnet_qs = [0.95 if challenge(i) == "head_missed" else 0.9 for i in range(M)]
    check(catalogue.head_missed_below_average_all(world(q(0.95))), "contradicted",
          100 * (miou_images(segnet_qs) - miou(0.95)))


def test_upper_body_easiest_known_answers():
    def q(upper):
        return lambda m, s, i: upper if challenge(i) == "upper_body" else 0.8

    check(catalogue.upper_body_easiest(world(q(0.95))), "supported", 100 * (miou(0.95) - miou(0.8)))
    check(catalogue.upper_body_easiest(world(q(0.7))), "contradicted", 100 * (miou(0.7) - miou(0.8)))


def test_full_body_closest_to_average_known_answers():
    def case(per_challenge):
        qs = [per_challenge[challenge(i)] for i in range(M)]
        avg = miou_images(qs)
        gap = {c: abs(miou(q) - avg) for c, q in per_challenge.items()}
        expected = 100 * (min(g for c, g in gap.items() if c != "full_body") - gap["full_body"])
        return catalogue.full_body_closest_to_average(world(lambda m, s, i: qs[i])), expected

    near = {"occlusion": 0.6, "full_body": 0.8, "upper_body": 0.97, "head_missed": 0.62, "back_view": 0.97}
    v, expected = case(near)
    check(v, "supported", expected)
    assert expected > 5
    v, expected = case({**near, "occlusion": 0.8, "full_body": 0.6})  # occlusion is now the closest
    check(v, "contradicted", expected)


def label_quality(groups: dict[tuple[int, ...], float], default: float = 1.0) -> dict[int, float]:
    q = {c: default for c in range(1, C)}
    for ids, acc in groups.items():
        q.update({c: acc for c in ids})
    return q


def test_lower_body_harder_known_answers():
    up, low = catalogue.UPPER_BODY_LABELS, catalogue.LOWER_BODY_LABELS
    # class-subset mean IoUs are the accuracies themselves: 0.9 - 0.6 = 30 pp
    v = catalogue.lower_body_harder(world(lambda m, s, i: label_quality({up: 0.9, low: 0.6})))
    check(v, "supported", 30.0)
    # Table 4, mean of (upper-body labels - lower-body labels) over the four baselines.
    assert v.paper_value == pytest.approx(10.46)
    check(catalogue.lower_body_harder(world(lambda m, s, i: label_quality({up: 0.6, low: 0.9}))), "contradicted", -30.0)
    swap = lambda m, s, i: label_quality({up: 0.8 + jitter(i, 0.1), low: 0.8 - jitter(i, 0.1)})  # noqa: E731
    check(catalogue.lower_body_harder(world(swap)), "undecided", 0.0)


def test_large_labels_easier_known_answers():
    large, small = catalogue.LARGE_LABELS_33, catalogue.SMALL_LABELS_33
    v = catalogue.large_labels_easier(world(lambda m, s, i: label_quality({large: 0.9, small: 0.4})))
    check(v, "supported", 50.0)
    # Table 4: e.g. DeepLabV2 (69.70 + 60.94 + 47.03 + 64.00) / 4 - (18.40 + 14.29 + 18.74) / 3 = 43.27;
    # SegNet 34.09, FCN-8s 45.24, Attention 44.80: mean 41.85.
    assert v.paper_value == pytest.approx(41.85)
    check(catalogue.large_labels_easier(world(lambda m, s, i: label_quality({large: 0.4, small: 0.9}))),
          "contradicted", -50.0)


def test_multiscale_better_on_small_weights_each_label_once():
    assert catalogue.SMALL_LABELS == catalogue._ids("sunglasses", "scarf", "skirt", "socks", "glove")
    sunglasses, others = catalogue._ids("sunglasses"), catalogue._ids("scarf", "skirt", "socks", "glove")

    def q(multi_scale_sunglasses, single_scale_sunglasses):
        def quality(m, s, i):
            sg = multi_scale_sunglasses if m in ("DeepLabV2", "Attention") else single_scale_sunglasses
            return label_quality({sunglasses: sg, others: 0.5})
        return quality

    # Only sunglasses differ, by 0.5, among five labels: 10 pp (counting it twice would give 16.67).
    v = catalogue.multiscale_better_on_small(world(q(1.0, 0.5)))
    check(v, "supported", 10.0)
    assert "sunglasses, scarf, skirt, socks, gloves" in v.statistic
    # Table 4 over the five labels: DeepLabV2 114.44 / 5, Attention 111.28 / 5, FCN-8s 26.22 / 5,
    # SegNet 3.60 / 5 -> (22.888 + 22.256) / 2 - (5.244 + 0.72) / 2 = 19.59 (19.22 with sunglasses twice).
    assert v.paper_value == pytest.approx(19.59)
    check(catalogue.multiscale_better_on_small(world(q(0.5, 1.0))), "contradicted", -10.0)
    tie = lambda m, s, i: label_quality(  # noqa: E731
        {sunglasses + others: 0.5 + (jitter(i) if m in ("DeepLabV2", "Attention") else -jitter(i))})
    check(catalogue.multiscale_better_on_small(world(tie)), "undecided", 0.0)


def test_attention_ssl_beats_deeplab_trained_as_long_known_answers():
    q = lambda ssl, ctl: by_method({"Attention + SSL": ssl, CONTROL["DeepLabV2"]: ctl, "DeepLabV2": 0.1})  # noqa: E731
    v = catalogue.attention_ssl_beats_deeplab(world(q(0.9, 0.8)))
    check(v, "supported", 100 * (miou(0.9) - miou(0.8)))  # against the control, not DeepLabV2's 0.1
    assert v.control == CONTROL["DeepLabV2"]
    check(catalogue.attention_ssl_beats_deeplab(world(q(0.75, 0.8))), "contradicted", 100 * (miou(0.75) - miou(0.8)))


def test_ssl_improves_deeplab_against_its_control_known_answers():
    q = lambda ssl, ctl: by_method({"DeepLabV2 + SSL": ssl, CONTROL["DeepLabV2"]: ctl, "DeepLabV2": 0.5})  # noqa: E731
    check(catalogue.ssl_improves(world(q(0.9, 0.8)), "DeepLabV2"), "supported", 100 * (miou(0.9) - miou(0.8)))
    check(catalogue.ssl_improves(world(q(0.8, 0.85)), "DeepLabV2"), "contradicted", 100 * (miou(0.8) - miou(0.85)))
    # Without the control in the build the claim is confounded: compared with the stage-1 network, undecided.
    no_control = [m for m in METHODS if m != CONTROL["DeepLabV2"]]
    v = catalogue.ssl_improves(world(q(0.9, 0.8), methods=no_control), "DeepLabV2")
    assert v.control is None and v.verdict == "undecided" and "confounded" in v.reason
    assert v.estimate == pytest.approx(100 * (miou(0.9) - miou(0.5)))


def test_structure_not_reweighting_is_ssl_against_its_shuffled_weights_known_answers():
    """SSL minus the shuffled-weight control: supported when SSL leads it, contradicted when the
    shuffled weights do as well or better; absent (None) from a build without that control."""
    shuffled = "DeepLabV2 + SSL with shuffled L_joint"
    methods = (*METHODS, shuffled)
    def q(ssl, shuf):  # every other method at 0.1
        return lambda method, split, i: {"DeepLabV2 + SSL": ssl, shuffled: shuf}.get(method, 0.1)

    v = catalogue.structure_not_reweighting(world(q(0.9, 0.8), methods=methods))
    check(v, "supported", 100 * (miou(0.9) - miou(0.8)))  # against the shuffled control, not the 0.1 one
    assert v.control == shuffled and v.paper_value is None and v.section == "5.2"
    check(catalogue.structure_not_reweighting(world(q(0.8, 0.85), methods=methods)), "contradicted",
          100 * (miou(0.8) - miou(0.85)))
    assert catalogue.structure_not_reweighting(world(q(0.9, 0.8))) is None
    names = [v.claim for v in catalogue.all_claims(world(q(0.9, 0.8), methods=methods))]
    assert "the structure term, not the reweighting, gives SSL's effect (DeepLabV2)" in names
    assert "the structure term, not the reweighting, gives SSL's effect (Attention)" not in names  # no such control


def test_ssl_improves_every_challenge_known_answers():
    def q(ssl_back_view):
        def quality(m, s, i):
            if m != "Attention + SSL":
                return 0.8
            return ssl_back_view if challenge(i) == "back_view" else 0.85
        return quality

    check(catalogue.ssl_improves_every_challenge(world(q(0.85))), "supported", 100 * (miou(0.85) - miou(0.8)))
    # Better everywhere but on back-view images: the minimum over the five types is that loss.
    check(catalogue.ssl_improves_every_challenge(world(q(0.75))), "contradicted", 100 * (miou(0.75) - miou(0.8)))


def test_ssl_improves_arms_legs_shoes_is_the_gain_on_those_labels():
    als = catalogue.ARMS_LEGS_SHOES

    def q(ssl_als, base: str):
        return lambda m, s, i: label_quality({als: ssl_als if m == f"{base} + SSL" else 0.7}, default=0.5)

    for base in ("Attention", "DeepLabV2"):
        v = catalogue.ssl_improves_arms_legs_shoes(world(q(0.9, base)), base)
        check(v, "supported", 20.0)  # the six labels' mean IoU: 0.9 - 0.7 against the control
        assert v.control == CONTROL[base]
        check(catalogue.ssl_improves_arms_legs_shoes(world(q(0.6, base)), base), "contradicted", -10.0)
    # Table 4, the gain on l/r-arm, leg, shoe: Attention 244.57 / 6 - 233.54 / 6 = 1.84; DeepLabV2 1.29.
    evd = world(q(0.9, "Attention"))
    assert catalogue.ssl_improves_arms_legs_shoes(evd, "Attention").paper_value == pytest.approx(1.84)
    assert catalogue.ssl_improves_arms_legs_shoes(evd, "DeepLabV2").paper_value == pytest.approx(1.29)


def test_ssl_improves_small_labels_known_answers():
    small = catalogue.SMALL_LABELS_52
    q = lambda ssl, base: lambda m, s, i: label_quality({small: ssl if m == "Attention + SSL" else base})  # noqa: E731
    check(catalogue.ssl_improves_small_labels(world(q(0.8, 0.6))), "supported", 20.0)
    check(catalogue.ssl_improves_small_labels(world(q(0.6, 0.8))), "contradicted", -20.0)


def test_ssl_improves_ppp_reads_the_ppp_runs():
    calls = []
    ppp_ctl = "ppp/Attention + stage-2 epochs without SSL"
    v = catalogue.ssl_improves_ppp(world(by_method({"ppp/Attention + SSL": 0.9, ppp_ctl: 0.8}), calls))
    check(v, "supported", 100 * (miou(0.9) - miou(0.8)))
    assert v.control == ppp_ctl
    assert set(calls) >= {("ppp/Attention + SSL", "ppp-test"), (ppp_ctl, "ppp-test")}
    assert v.paper_value == pytest.approx(2.97)
    v = catalogue.ssl_improves_ppp(world(by_method({"ppp/Attention + SSL": 0.7, ppp_ctl: 0.8})))
    check(v, "contradicted", 100 * (miou(0.7) - miou(0.8)))


def test_ppp_ssl_beats_deeplab_is_table_5s_order_known_answers():
    calls = []
    v = catalogue.ppp_ssl_beats_deeplab(world(by_method({"ppp/Attention + SSL": 0.9, "ppp/DeepLabV2": 0.6}), calls))
    check(v, "supported", 100 * (miou(0.9) - miou(0.6)))
    assert set(calls) == {("ppp/Attention + SSL", "ppp-test"), ("ppp/DeepLabV2", "ppp-test")}
    assert v.paper_value == pytest.approx(59.36 - 51.78) and "DeepLab-LargeFOV" in v.note
    check(catalogue.ppp_ssl_beats_deeplab(world(by_method({"ppp/Attention + SSL": 0.6, "ppp/DeepLabV2": 0.9}))),
          "contradicted", 100 * (miou(0.6) - miou(0.9)))


def test_lip_harder_than_atr_known_answers():
    def shared_miou(q):  # 16 shared classes: background and 15 parts
        return (15 * q + 1 / (1 + 19 * (1 - q))) / 16

    calls = []
    v = catalogue.lip_harder_than_atr(world(lambda m, s, i: 0.9 if s == "atr" else 0.7, calls))
    check(v, "supported", 100 * (shared_miou(0.9) - shared_miou(0.7)))
    assert {s for _, s in calls} == {"atr", "val"} and {m for m, _ in calls} == set(engine.BASELINES)
    # Table 6 left, ATR - LIP: SegNet -6.00, FCN-8s 2.16, DeepLabV2 4.67, Attention 3.97 -> mean 1.20
    assert v.paper_value == pytest.approx(1.20)
    check(catalogue.lip_harder_than_atr(world(lambda m, s, i: 0.7 if s == "atr" else 0.9)), "contradicted",
          100 * (shared_miou(0.7) - shared_miou(0.9)))


def test_ssl_better_every_size_known_answers():
    def q(ssl_large):
        def quality(m, s, i):
            if m != "Attention + SSL":
                return 0.8
            return ssl_large if ATTRS["size_bin"].iloc[i] == "large" else 0.85
        return quality

    v = catalogue.ssl_better_every_size(world(q(0.85)))
    check(v, "supported", 100 * (miou(0.85) - miou(0.8)))
    assert v.n_images == M // 3
    # Table 6 middle, SSL - Attention: small 1.77, medium 1.51, large 1.83 -> min 1.51
    assert v.paper_value == pytest.approx(1.51)
    check(catalogue.ssl_better_every_size(world(q(0.75))), "contradicted", 100 * (miou(0.75) - miou(0.8)))


def test_ssl_better_every_input_size_known_answers():
    sizes = (64, 128, 192)
    dl = {"val@64": 0.6, "val@128": 0.7, "val@192": 0.8}

    def q(ssl):
        return lambda m, s, i: ssl[s] if m == "DeepLabV2 + SSL" else dl[s]

    ssl = {"val@64": 0.65, "val@128": 0.72, "val@192": 0.85}
    v = catalogue.ssl_better_every_input_size(world(q(ssl)), sizes)
    check(v, "supported", 100 * (miou(0.72) - miou(0.7)))  # the smallest of the three gains
    # Table 6 right, SSL - DeepLabV2: 153: 1.78, 321: 1.38, 513: 2.56 -> min 1.38
    assert v.paper_value == pytest.approx(1.38)
    check(catalogue.ssl_better_every_input_size(world(q({**ssl, "val@192": 0.75})), sizes), "contradicted",
          100 * (miou(0.75) - miou(0.8)))


def test_ssl_smaller_input_size_range_known_answers():
    sizes = (64, 128)

    def q(dl, ssl):
        return lambda m, s, i: (ssl if m == "DeepLabV2 + SSL" else dl)[s]

    v = catalogue.ssl_smaller_input_size_range(world(q({"val@64": 0.6, "val@128": 0.8},
                                                    {"val@64": 0.7, "val@128": 0.75})), sizes)
    check(v, "supported", 100 * ((miou(0.8) - miou(0.6)) - (miou(0.75) - miou(0.7))))
    v = catalogue.ssl_smaller_input_size_range(world(q({"val@64": 0.7, "val@128": 0.75},
                                                    {"val@64": 0.6, "val@128": 0.8})), sizes)
    check(v, "contradicted", 100 * ((miou(0.75) - miou(0.7)) - (miou(0.8) - miou(0.6))))


# ---------------------------------------------------------------------------------------------
# all_claims and experiment_evidence


def _claim_functions() -> dict:
    import inspect

    return {name: f for name, f in vars(catalogue).items()
            if inspect.isfunction(f) and f.__module__ == catalogue.__name__ and not name.startswith("_")
            and inspect.signature(f).return_annotation in ("Verdict", "Verdict | None")}


def test_all_claims_runs_every_claim_function_in_the_papers_order(monkeypatch):
    functions = _claim_functions()
    called = []
    for name, f in functions.items():
        monkeypatch.setattr(catalogue, name, lambda *a, _n=name, _f=f, **k: called.append(_n) or _f(*a, **k))
    shuffled = tuple(f"{m} + SSL with shuffled L_joint" for m in ("DeepLabV2", "Attention"))
    evd = world(lambda m, s, i: 0.8, n_boot=20, methods=METHODS + shuffled)
    verdicts = catalogue.all_claims(evd, sizes=(64, 128, 192))
    assert set(called) == set(functions)
    # attention_best_baseline and ssl_improves each run three times (val / mean acc / test, and
    # Attention / DeepLabV2 / test), the label-group, size and shuffled-control claims twice (Attention,
    # DeepLabV2), every other claim function once
    assert called.count("attention_best_baseline") == called.count("ssl_improves") == 3
    assert all(called.count(f) == 2 for f in ("ssl_improves_arms_legs_shoes", "ssl_improves_small_labels",
                                              "ssl_better_every_size", "structure_not_reweighting"))
    assert len(verdicts) == len(functions) + 8 and len({v.claim for v in verdicts}) == len(verdicts)
    sections = [v.section for v in verdicts]
    assert sections == sorted(sections, key=lambda s: tuple(map(int, s.split("."))))
    assert set(sections) == {"3.1", "3.2", "3.3", "5.2", "5.4"}
    # Equal methods, subsets and labels everywhere: every statistic is 0 (up to rounding).
    assert all(abs(v.estimate) < 1e-9 and abs(v.low) < 1e-9 and abs(v.high) < 1e-9 for v in verdicts)
    # The optional groups drop exactly their claims.
    called.clear()
    short = catalogue.all_claims(evd, sizes=(64,), with_ppp=False, with_atr=False)
    assert len(short) == len(verdicts) - 5
    assert set(functions) - set(called) == {"ssl_improves_ppp", "ppp_ssl_beats_deeplab", "lip_harder_than_atr",
                                            "ssl_better_every_input_size", "ssl_smaller_input_size_range"}


def test_the_claims_chapter_tests_every_claim(monkeypatch, tmp_path):
    from lipstudy.claims import evidence
    from lipstudy.profiles import PROFILES

    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path))  # book_verdicts writes the claims file there
    text = (Path(__file__).resolve().parents[1] / "book" / "claims.md").read_text()
    # The chapter's table: book_verdicts = all_claims with the profile's input sizes, PPP and ATR on.
    assert "book_verdicts(profile, data=data, device=device, seeds=seeds)" in text
    assert "catalogue.UNTESTABLE" in text
    assert list(catalogue.UNTESTABLE["section"]) == ["3.1", "5.1", "5.3"]
    called, functions = [], _claim_functions()
    for name, f in functions.items():
        monkeypatch.setattr(catalogue, name, lambda *a, _n=name, _f=f, **k: called.append(_n) or _f(*a, **k))
    shuffled = tuple(f"{m} + SSL with shuffled L_joint" for m in ("DeepLabV2", "Attention"))
    monkeypatch.setattr(evidence, "experiment_evidence",
                        lambda *a, **k: world(lambda m, s, i: 0.8, n_boot=20, methods=METHODS + shuffled))
    monkeypatch.setattr(evidence, "load_reference", lambda profile: None)  # a committed reference is not this test's
    for profile in PROFILES:
        called.clear()
        _, verdicts = evidence.book_verdicts(profile)
        assert len(verdicts) == len(functions) + 8 and set(called) == set(functions), profile


def test_experiment_evidence_routes_methods_to_runs(monkeypatch, tmp_path):
    from lipstudy.claims import evidence
    from lipstudy.profiles import get_profile
    from lipstudy.runs import paper_runs, ppp_runs

    asked = []

    class FakeResult:
        def __init__(self, run, data):
            self.run, self.data = run, data

        def evaluation(self, split):
            asked.append((self.run, self.data, split))
            return SimpleNamespace(ids=["a"], cms=np.eye(C, dtype=np.int64)[None])

    attrs = pd.DataFrame({"back_view": [1]}, index=["a"])
    monkeypatch.setattr(evidence, "data_root", lambda prof, dataset="lip", data=None: tmp_path / dataset)
    monkeypatch.setattr(evidence, "ensure", lambda run, prof, data=None, device="auto", progress=True:
                        FakeResult(run, data))
    monkeypatch.setattr(evidence, "image_attributes", lambda root: attrs if root == tmp_path / "lip" else None)
    evd = evidence.experiment_evidence("smoke", data="real/LIP", device="cpu", n_boot=7)
    assert evd.method_seeds["SegNet"] == list(get_profile("smoke").seeds) and evd.n_boot == 7
    assert evd.attributes is attrs and set(evd.method_seeds) >= {"Attention + stage-2 epochs without SSL",
                                                                  "ppp/Attention + stage-2 epochs without SSL"}
    evd = evidence.experiment_evidence("smoke", data="real/LIP", device="cpu", seeds=["1", 2], n_boot=7)
    assert evd.method_seeds["SegNet"] == [1, 2]
    evd.evaluation("Attention + SSL", "val@64", 1)
    evd.evaluation("ppp/Attention + SSL", "ppp-test", 0)  # PASCAL-Person-Part at the profile's ppp_seeds
    evd.evaluation("SegNet", "atr", 1)
    assert asked == [(paper_runs(1)["Attention + SSL"], "real/LIP", "val@64"),
                     (ppp_runs(0)["Attention + SSL"], None, "test"),   # PPP runs use their own data
                     (paper_runs(1)["SegNet"], "real/LIP", "atr")]
    with pytest.raises(KeyError):
        evd.evaluation("SegNet", "val", 0)  # not a seed of this build


# --------------------------------------------------------------------------------------------
# Seeds per method, seed noise in the interval, the gates, and the claims as data


def test_method_seeds_average_only_the_seeds_every_compared_method_has():
    # The DeepLabV2 trio has seeds 0, 1, 2; the rest only seed 0. Seed s adds 0.05 * s to
    # DeepLabV2 + SSL's accuracy only, so the SSL gain differs between the seeds.
    ids = [f"im{i:03d}" for i in range(N)]
    ctl = CONTROL["DeepLabV2"]
    base = {"DeepLabV2": 0.6, "DeepLabV2 + SSL": 0.62, ctl: 0.61, "Attention": 0.7, "SegNet": 0.4, "FCN-8s": 0.5}
    seen = []

    def evaluation(method, split, seed):
        seen.append((method, seed))
        q = base[method] + (0.05 * seed if method == "DeepLabV2 + SSL" else 0.0)
        return SimpleNamespace(ids=ids, cms=cm_images(N, {c: q for c in range(1, C)}))

    trio = ("DeepLabV2", "DeepLabV2 + SSL", ctl)
    evd = engine.Evidence(evaluation, {m: [0, 1, 2] if m in trio else [0] for m in base}, None, n_boot=50)
    assert evd.seeds_for(["DeepLabV2", "DeepLabV2 + SSL"]) == [0, 1, 2]
    assert evd.seeds_for(["DeepLabV2", "Attention"]) == [0]
    v = catalogue.ssl_improves(evd, "DeepLabV2", "val")
    assert len(v.per_seed) == 3 and v.per_seed[2] > v.per_seed[1] > v.per_seed[0] > 0
    assert v.estimate == pytest.approx(np.mean(v.per_seed)) and v.seeds == {"DeepLabV2 + SSL": [0, 1, 2], ctl: [0, 1, 2]}
    # a baseline claim never asks for seed 1
    catalogue.attention_best_baseline(evd)
    assert ("Attention", 1) not in seen and ("SegNet", 1) not in seen


def test_one_seed_borrows_the_pooled_run_noise_and_is_never_decided():
    """Methods with one seed: their claim's seed noise is the pooled run-to-run standard deviation of
    the seeded methods' val mean IoU, x sqrt(compared methods), by hand; a clear interval still
    gives no decided verdict."""
    ids = [f"im{i:03d}" for i in range(N)]
    seeded = {"DeepLabV2": (0.6, 0.62, 0.64), CONTROL["DeepLabV2"]: (0.6, 0.6, 0.63)}  # accuracies by seed
    single = {"SegNet": 0.3, "FCN-8s": 0.35, "Attention": 0.8}

    def evaluation(method, split, seed):
        q = seeded[method][seed] if method in seeded else single[method]
        return SimpleNamespace(ids=ids, cms=cm_images(N, {c: q for c in range(1, C)}))

    evd = engine.Evidence(evaluation, {**{m: [0, 1, 2] for m in seeded}, **{m: [0] for m in single}}, None, n_boot=50)

    def miou(q):
        return (19 * q + 100 / (100 + 19 * 100 * (1 - q))) / 20

    values = [[miou(q) for q in qs] for qs in seeded.values()]
    pooled = np.sqrt(sum(np.var(v, ddof=1) * 2 for v in values) / 4)  # 2 + 2 degrees of freedom
    sd, df, methods = evd.run_noise()
    assert sd == pytest.approx(pooled) and df == 4 and methods == list(seeded)
    v = catalogue.fcn_segnet_below(evd)  # SegNet and FCN-8s far below: 4 compared methods
    assert "borrowed" in v.seed_sd_source and v.seed_sd == pytest.approx(100 * pooled * 2)
    half = 2.776445 * 100 * pooled * 2  # t_0.975 with 4 degrees of freedom
    assert v.high - v.estimate == pytest.approx(half, rel=1e-5) and v.low > 0
    assert v.verdict == "undecided" and "needs 3 seeds" in v.reason and "SegNet: 1" in v.reason


def test_the_gate_makes_claims_on_weak_models_untestable():
    ids = [f"im{i:03d}" for i in range(N)]
    weak_classes = catalogue.ARMS_LEGS_SHOES

    def evaluation(method, split, seed, few=False):
        acc = {c: 0.8 for c in range(1, C)}
        acc.update({c: 0.005 for c in weak_classes})  # IoU 0.5%: under the gate's 1%
        if few:  # learns 5 classes of 20 at all
            acc = {c: (0.8 if c < 5 else 0.0) for c in range(1, C)}
        return SimpleNamespace(ids=ids, cms=cm_images(N, acc))

    methods = {m: list(THREE) for m in ("Attention", "Attention + SSL", CONTROL["Attention"])}
    v = catalogue.ssl_improves_arms_legs_shoes(engine.Evidence(evaluation, methods, None, n_boot=50))
    assert v.verdict == "untestable" and "under 1% on left-arm" in v.reason and "right-shoe" in v.reason
    # the whole-mIoU claim does not average over a named class: only the "half the classes" gate applies
    assert catalogue.ssl_improves(engine.Evidence(evaluation, methods, None, n_boot=50)).verdict == "undecided"
    few = engine.Evidence(lambda m, s, seed: evaluation(m, s, seed, few=(m == "Attention + SSL")), methods, None,
                          n_boot=50)
    v = catalogue.ssl_improves(few)
    assert v.verdict == "untestable" and "Attention + SSL scores IoU >= 1% on only 5 of its 20 classes" in v.reason


def test_the_claims_file_is_what_the_verdicts_say(monkeypatch, tmp_path):
    from lipstudy.claims import evidence, render

    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path))
    monkeypatch.setattr(evidence, "experiment_evidence", lambda *a, **k: world(lambda m, s, i: 0.8, n_boot=20))
    monkeypatch.setattr(evidence, "load_reference", lambda profile: None)
    _, verdicts = evidence.book_verdicts("smoke")
    records = evidence.load_claims("smoke")
    assert evidence.claims_file("smoke") == tmp_path / "claims" / "smoke.json"
    assert [r["claim"] for r in records] == [v.claim for v in verdicts]
    for r, v in zip(records, verdicts):
        assert {"claim", "section", "statistic", "paper", "ours", "low", "high", "seeds", "control", "detectable",
                "verdict", "reason"} <= set(r)
        assert r["verdict"] == v.verdict and r["ours"] == pytest.approx(v.estimate, abs=1e-4)
        assert r["verdict"] in engine.VERDICTS
    assert sum(render.tally(records).values()) == len(records)
    html = render.claims_html(records)
    assert html.count('class="lipstudy-claim"') == len(records)
    assert all(f'id="{a}"' in html for a in evidence.claim_anchors([r["claim"] for r in records]))
    with pytest.raises(ValueError, match="no readable claims file"):
        evidence.load_claims("cpu")


def test_across_budgets_applies_the_same_noise_and_rule_to_the_summaries():
    from lipstudy.claims import budgets

    rows = []
    for profile, dl, ssl in (("short", 0.10, 0.13), ("long", 0.20, 0.205)):
        for method, v in {"DeepLabV2": dl, "DeepLabV2 + SSL": ssl, "Attention": 0.1, "Attention + SSL": 0.1,
                          "SegNet": 0.05, "FCN-8s": 0.06}.items():
            rows.append({"profile": profile, "method": method, "seed": 0, "val_miou": v})
    # three seeds of the SSL pair at another budget: gains +2, +3, +4 pp
    for seed, gain in enumerate((0.02, 0.03, 0.04)):
        rows += [{"profile": "three", "method": "DeepLabV2", "seed": seed, "val_miou": 0.1},
                 {"profile": "three", "method": "DeepLabV2 + SSL", "seed": seed, "val_miou": 0.1 + gain}]
    t = budgets.across_budgets(pd.DataFrame(rows), ["short", "long", "three"], run_sd=0.005, df=10)
    ssl = t[t["claim"].str.startswith("SSL improves DeepLabV2")].set_index("profile")
    half = 100 * 2.228139 * 0.005 * np.sqrt(2)  # t_0.975 with 10 degrees of freedom, two methods, one seed
    assert ssl.loc["short", "ours (pp)"] == pytest.approx(3.0) and ssl.loc["long", "ours (pp)"] == pytest.approx(0.5)
    assert ssl.loc[["short", "long"], "half-width (pp)"].tolist() == pytest.approx([half, half], rel=1e-5)
    # One seed is never decided, whatever the side of 0 (+3.0 +- 1.6 would clear the margin): condition (a).
    assert ssl.loc["short", "verdict"] == "undecided" and ssl.loc["short", "reason"].startswith("(a)")
    assert "(c)" in ssl.loc["long", "reason"]  # 0.5 +- 1.6 contains 0
    # Three seeds: the seed noise is measured on the three gains (SD 1, t_0.975(2) = 4.303): +3 +- 2.48
    assert ssl.loc["three", "half-width (pp)"] == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert ssl.loc["three", "verdict"] == "supported" and ssl.loc["three", "seeds"] == 3
    assert set(t.loc[t["profile"] != "three", "verdict"]) == {"undecided"}
    wide = budgets.wide(t)
    assert list(wide.columns) == ["short", "long", "three"]
    claim = "SSL improves DeepLabV2 (val), against the stage-1 network"
    assert wide.loc[claim, "short"].endswith("1 seed: undecided") and wide.loc[claim, "three"] == "+3.00 \u00b1 2.48, 3 seeds: supported"
