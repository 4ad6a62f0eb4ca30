"""The decision rule (issue 36): conditions (a), (b), (c) each failing alone give undecided with
their reason; the margin measured against a reference build on another CPU; 80% power by hand;
"at every X" claims decided per bin; the gate tests only the methods a claim says are better; the
challenge top-up joins only its own subsets; generated sentences read right for 0, 1 and many."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lipstudy import words
from lipstudy.claims import catalogue, engine, render
from lipstudy.claims.engine import Reading, aggregate, detectable, rule

THREE = {"A + SSL": [0, 1, 2], "A control": [0, 1, 2]}

# ---------------------------------------------------------------------------------------------
# the rule, on numbers (pp)


def test_every_condition_holding_decides_both_ways():
    v, why = rule(1.0, 3.0, [1.5, 2.0, 2.5], THREE, 0.5, [0, 1, 2])
    assert v == "supported" and "clears 0 by more than the 0.50 pp margin" in why and "+1.50, +2.00, +2.50" in why
    v, why = rule(-3.0, -1.0, [-1.5, -2.0, -2.5], THREE, 0.5, [0, 1, 2])
    assert v == "contradicted" and "below 0" in why


def test_a_fewer_than_three_seeds_alone_gives_undecided():
    v, why = rule(1.0, 3.0, [2.0], {"A + SSL": [0, 1, 2], "A control": [0]}, 0.5, [0])
    assert v == "undecided" and why.startswith("(a) a decided verdict needs 3 seeds") and "A control: 1" in why
    assert "(b)" not in why and "(c)" not in why


def test_b_one_seed_of_the_other_sign_alone_gives_undecided():
    v, why = rule(1.0, 3.0, [1.5, -0.1, 2.5], THREE, 0.5, [0, 1, 2])
    assert v == "undecided" and why == "(b) seed 1 (-0.10) is not above 0"
    v, why = rule(-3.0, -1.0, [0.2, -2.0, 0.1], THREE, 0.5, [4, 5, 6])  # two seeds against a contradiction
    assert v == "undecided" and why == "(b) seeds 4 and 6 (+0.20, +0.10) are not below 0"


def test_c_an_interval_within_the_margin_alone_gives_undecided():
    v, why = rule(0.3, 3.0, [1.5, 2.0, 2.5], THREE, 0.5, [0, 1, 2])  # excludes 0, but by less than 0.5
    assert v == "undecided" and why == "(c) the interval [+0.30, +3.00] clears 0 by less than the 0.50 pp margin"
    v, why = rule(-0.2, 3.0, [1.5, 2.0, 2.5], THREE, 0.5, [0, 1, 2])
    assert v == "undecided" and why == "(c) the interval [-0.20, +3.00] contains 0"
    # a measured margin is applied as given
    assert rule(1.0, 3.0, [1.5, 2.0, 2.5], THREE, 1.2, [0, 1, 2])[0] == "undecided"
    assert rule(np.nan, np.nan, [1.0], THREE, 0.5)[0] == "undecided"


def test_every_failing_condition_is_named():
    v, why = rule(-0.2, 3.0, [1.5, -0.1], {"A + SSL": [0, 1], "A control": [0, 1]}, 0.5, [0, 1])
    assert v == "undecided" and why.startswith("(a)") and "(c)" in why and "(b) seed 1" in why


def test_power_is_80_percent_at_detectable():
    """An effect of size ``detectable`` has its estimate above margin + h (the interval clears the
    margin) with probability 0.8 when the estimate is normal with standard error se."""
    for half, se, margin in ((1.96, 1.0, 0.5), (4.3, 0.7, 0.5), (0.2, 0.1, 1.3)):
        d = detectable(half, se, margin)
        assert d == pytest.approx(margin + half + 0.841621 * se, rel=1e-6)
        assert stats.norm.sf(margin + half, loc=d, scale=se) == pytest.approx(0.8)
    # a normal interval: (z_0.975 + z_0.80) x se + margin
    assert detectable(1.959964, 1.0, 0.5) == pytest.approx((1.959964 + 0.841621) + 0.5, rel=1e-6)


def test_a_binned_claim_aggregates_its_bins():
    def bins(*verdicts):
        return [Reading(f"b{i}", None, 1.0, 0.0, 2.0, (1.0,), 0.5, "", 2.0, v, "", 50) for i, v in enumerate(verdicts)]

    assert aggregate(bins("supported", "supported", "supported"))[0] == "supported"
    v, why = aggregate(bins("supported", "contradicted", "undecided"))
    assert v == "contradicted" and why == "bin b1 is contradicted"
    v, why = aggregate(bins("supported", "undecided", "undecided"))
    assert v == "undecided" and why == "not every bin is supported: b0 supported; b1 and b2 undecided"


# ---------------------------------------------------------------------------------------------
# the rule through the engine, on constructed per-image matrices (tests/test_claims.py's world)

from test_claims import ATTRS, CONTROL, M, cm_images, miou, world  # noqa: E402


def test_per_bin_verdicts_of_every_size():
    def q(large):
        def quality(m, s, i):
            if m != "Attention + SSL":
                return 0.8
            return large if ATTRS["size_bin"].iloc[i] == "large" else 0.85
        return quality

    v = catalogue.ssl_better_every_size(world(q(0.85)))
    assert v.verdict == "supported" and [b.name for b in v.bins] == ["small", "medium", "large"]
    assert all(b.verdict == "supported" for b in v.bins) and v.estimate == pytest.approx(100 * (miou(0.85) - miou(0.8)))
    assert [b.paper_value for b in v.bins] == pytest.approx([1.77, 1.51, 1.83])  # Table 6, Attention + SSL - Attention
    record = v.as_record()
    assert [b["bin"] for b in record["bins"]] == ["small", "medium", "large"] and record["bins"][2]["images"] == M // 3
    # SSL equal to its control on large images: that bin is undecided, the claim with it, the others supported
    v = catalogue.ssl_better_every_size(world(q(0.8)))
    assert [b.verdict for b in v.bins] == ["supported", "supported", "undecided"] and v.verdict == "undecided"
    assert v.weakest_bin == "large" and v.estimate == pytest.approx(0.0)
    v = catalogue.ssl_better_every_size(world(q(0.7)))
    assert v.verdict == "contradicted" and v.reason == "bin large is contradicted"


def test_the_gate_tests_the_methods_a_claim_says_are_better():
    weak = {c: (0.8 if c < 5 else 0.0) for c in range(1, 20)}  # learns 4 of 19 parts (and background)

    def quality(weakling):
        strong = {"SegNet": 0.5, "FCN-8s": 0.6, "DeepLabV2": 0.8, "Attention": 0.9}
        return lambda m, s, i: weak if m == weakling else strong.get(m, 0.8)

    # SegNet too weak: "FCN-8s and SegNet score below DeepLabV2 and Attention" is what that predicts
    v = catalogue.fcn_segnet_below(world(quality("SegNet")))
    assert v.verdict == "supported", v.reason
    # Attention too weak: it is said to be better, so the claim is refused
    v = catalogue.fcn_segnet_below(world(quality("Attention")))
    assert v.verdict == "untestable" and v.reason.startswith("a method it says is better is too weak") \
        and "Attention scores IoU >= 1% on only" in v.reason
    # an SSL claim: a control that learns no arm, leg or shoe does not refuse it; an SSL model that learns none does
    als = catalogue.ARMS_LEGS_SHOES

    def arms(ssl, ctl):
        return lambda m, s, i: {c: (ssl if m == "DeepLabV2 + SSL" else ctl) if c in als else 0.8 for c in range(1, 20)}

    assert catalogue.ssl_improves_arms_legs_shoes(world(arms(0.5, 0.0)), "DeepLabV2").verdict == "supported"
    v = catalogue.ssl_improves_arms_legs_shoes(world(arms(0.0, 0.5)), "DeepLabV2")
    assert v.verdict == "untestable" and "DeepLabV2 + SSL scores IoU under 1% on left-arm" in v.reason
    # a claim that compares no groups gates every method (the label gaps average the four baselines)
    assert catalogue.lower_body_harder(world(quality("SegNet"))).verdict == "untestable"


def test_the_margin_is_measured_against_a_reference_on_another_cpu():
    q = lambda m, s, i: {"DeepLabV2 + SSL": 0.83, CONTROL["DeepLabV2"]: 0.8}.get(m, 0.8)  # noqa: E731
    evd = world(q)
    v = catalogue.ssl_improves(evd, "DeepLabV2")
    gain = 100 * (miou(0.83) - miou(0.8))
    assert v.verdict == "supported" and v.margin == 0.5 and "default" in v.margin_source
    evd = world(q)
    evd.reference, evd.reference_cpu = {(v.claim, None): gain - 0.2}, "AMD EPYC (AVX2)"
    assert catalogue.ssl_improves(evd, "DeepLabV2").margin == 0.5  # moved by 0.2: the default still holds
    evd.reference = {(v.claim, None): gain - 4.0}
    w = catalogue.ssl_improves(evd, "DeepLabV2")
    assert w.margin == pytest.approx(4.0) and "AMD EPYC (AVX2)" in w.margin_source
    assert gain < 4.0 and w.verdict == "undecided" and "(c)" in w.reason


def test_a_claim_the_papers_own_numbers_contradict_is_flagged():
    evd = world(lambda m, s, i: 0.8)
    v = catalogue.ssl_smaller_input_size_range(evd, sizes=(64, 128, 192))
    assert v.paper_value == pytest.approx(-0.47) and v.paper_opposite and v.as_record()["paper_opposite"]
    html = render.claim_block(v.as_record(), "x")
    assert "its tables contradict this reading of its sentence" in html and "-0.47" in html
    assert not catalogue.ssl_improves(evd, "DeepLabV2").paper_opposite
    assert render.flagged([v.as_record(), catalogue.ssl_improves(evd).as_record()]) == [v.as_record()]


def test_by_construction_shows_what_was_observed():
    qs = [0.5 if i % 5 == 4 else 0.9 for i in range(M)]  # back-view images parsed worse
    v = catalogue.back_view_drop_attention(world(lambda m, s, i: qs[i], synthetic=True))
    assert v.verdict == "by construction" and v.observed == "supported"
    assert "observed here: supported" in v.reason and "produced an effect this build detects" in v.reason
    flat = catalogue.back_view_drop_attention(world(lambda m, s, i: 0.9, synthetic=True))
    assert flat.verdict == "by construction" and flat.observed == "undecided"
    assert "produced no effect this build can detect at this size" in flat.reason


# ---------------------------------------------------------------------------------------------
# the challenge top-up in the evidence


def test_the_top_up_joins_only_its_own_subsets_and_is_resampled_apart():
    val = [f"v{i}" for i in range(8)]
    extra = [f"c{i}" for i in range(4)]
    attrs = pd.DataFrame({"split": ["val"] * 8 + ["challenge"] * 4,
                          "head_missed": [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1],
                          "occlusion": [1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]}, index=val + extra)
    evd = engine.Evidence(lambda *a: None, {}, attrs, topped_up=frozenset({"head_missed"}), n_boot=500)
    ids = val + extra
    assert evd.mask(ids, "head_missed").tolist() == [True] + [False] * 7 + [True, True, False, True]
    assert evd.mask(ids, "occlusion").tolist() == [True, True] + [False] * 10  # not topped up: val only
    assert evd.mask(ids, None).tolist() == [True] * 8 + [False] * 4           # the whole set: val only
    assert engine.Evidence(lambda *a: None, {}, attrs).mask(ids, "occlusion").sum() == 6  # without a top-up
    draws = evd._draws(ids, np.random.default_rng(0))
    assert draws.shape == (500, 12) and (draws[:, :8] < 8).all() and (draws[:, 8:] >= 8).all()
    # a population of one split draws exactly as before the top-up existed
    same = engine.Evidence(lambda *a: None, {}, attrs.iloc[:8], n_boot=50)._draws(val, np.random.default_rng(3))
    assert np.array_equal(same, np.random.default_rng(3).integers(0, 8, size=(50, 8)))


def test_challenge_claims_read_the_topped_up_evaluation():
    asked = []
    base = world(lambda m, s, i: 0.8)

    def evaluation(method, split, seed):
        asked.append(split)
        return base.evaluation(method, "val", seed)

    evd = engine.Evidence(evaluation, base.method_seeds, ATTRS, n_boot=20, challenge_split="val+challenge")
    v = catalogue.back_view_hardest(evd)
    assert set(asked) == {"val+challenge"} and "topped up to 50 images" in v.statistic


# ---------------------------------------------------------------------------------------------
# sentences


def test_counts_read_right_for_zero_one_and_many():
    assert [words.count(n, "claim") for n in (0, 1, 2)] == ["0 claims", "1 claim", "2 claims"]
    assert [words.be(n) for n in (0, 1, 2)] == ["are", "is", "are"]
    assert [words.seeds_text(s) for s in ([], [0], [0, 1], [0, 1, 2])] == \
        ["no seed", "seed 0", "seeds 0 and 1", "seeds 0, 1 and 2"]
    for n, expect in ((0, "**0 are supported**"), (1, "**1 is supported**"), (3, "**3 are supported**")):
        counts = {"supported": n, "contradicted": 1, "undecided": 0, "untestable": 2, "by construction": 1}
        text = render.tally_sentence(counts)
        assert expect in text and "1 is contradicted" in text and "0 are undecided" in text
        assert "1 holds by construction" in text and text.startswith(f"Of {n + 4} claims tested")
    one = render.tally_sentence({"supported": 1, "contradicted": 0, "undecided": 0, "untestable": 0,
                                 "by construction": 0})
    assert one.startswith("Of 1 claim tested") and "0 hold by construction" in one


def test_a_claim_names_the_seeds_its_value_uses():
    ids = [f"im{i:03d}" for i in range(40)]

    def evaluation(method, split, seed):
        return SimpleNamespace(ids=ids, cms=cm_images(40, {c: 0.8 for c in range(1, 20)}))

    seeds = {"DeepLabV2": [0, 1, 2], "Attention": [0], "SegNet": [0], "FCN-8s": [0]}
    v = catalogue.attention_best_baseline(engine.Evidence(evaluation, seeds, n_boot=20))
    record = v.as_record()
    assert record["seeds_used"] == [0] and len(record["per_seed"]) == 1
    html = render.claim_block(record, "x")
    assert "per seed +0.00 pp (seed 0)" in html and "seeds: seed 0, those every compared run has" in html
    assert "DeepLabV2: seeds 0, 1 and 2" in html and "Attention: seed 0" in html and " x3" not in html
    assert "seeds 0" not in html.replace("seeds 0, 1", "")  # never "seeds 0" for one seed
    assert "detectable at 80% power: " in html and "margin 0.50 pp" in html

