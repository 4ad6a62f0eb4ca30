"""lipstudy.tables (seed averages and spreads: known answers) and lipstudy.data.statistics (the
derived-attributes cache of real data: written atomically, then reused)."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lipstudy import tables
from lipstudy.data import statistics


def _metrics(overall, mean_acc, mean_iou, per_class):
    return {"overall_acc": overall, "mean_acc": mean_acc, "mean_iou": mean_iou, "per_class_iou": per_class,
            "n_images": 4}


SEEDS = [
    _metrics(0.50, 0.20, 0.30, {"background": 0.9, "hat": 0.2, "hair": None, "glove": 0.1}),
    _metrics(0.60, 0.40, 0.40, {"background": 0.8, "hat": 0.4, "hair": None}),  # glove not scored
    _metrics(0.70, 0.30, 0.80, {"background": 0.7, "hat": None, "hair": None, "glove": 0.4}),
]


def test_seed_mean_known_answer():
    m = tables.seed_mean(SEEDS)
    assert set(m) == {"overall_acc", "mean_acc", "mean_iou", "per_class_iou"}
    assert m["overall_acc"] == pytest.approx(0.6)
    assert m["mean_acc"] == pytest.approx(0.3)
    assert m["mean_iou"] == pytest.approx(0.5)
    pc = m["per_class_iou"]
    assert list(pc) == ["background", "hat", "hair", "glove"]  # the first seed's classes, in order
    assert pc["background"] == pytest.approx(0.8)
    assert pc["hat"] == pytest.approx(0.3)     # None (class skipped) leaves the mean over 2 seeds
    assert pc["glove"] == pytest.approx(0.25)  # missing from a seed's dict: also skipped
    assert math.isnan(pc["hair"])              # skipped by every seed
    # One seed: its own values.
    one = tables.seed_mean(SEEDS[:1])
    assert one["mean_iou"] == 0.3 and one["per_class_iou"]["hat"] == 0.2 and math.isnan(one["per_class_iou"]["hair"])


def test_seed_spread_known_answer():
    assert tables.seed_spread(SEEDS) == pytest.approx(50.0)  # max - min of mean IoU, in percent
    assert tables.seed_spread(SEEDS, "overall_acc") == pytest.approx(20.0)
    assert tables.seed_spread(SEEDS, "mean_acc") == pytest.approx(20.0)  # not last - first (10)
    assert math.isnan(tables.seed_spread(SEEDS[:1]))


def test_real_data_attributes_are_cached_atomically(tmp_path, monkeypatch):
    """Real data has no attributes.csv: attributes are derived from the val labels once, written to
    <results>/cache/ by rename, and read back the next time."""
    root = tmp_path / "LIP"
    (root / "val_images").mkdir(parents=True)
    (root / "val_segmentations").mkdir()
    labels = {"a": np.zeros((20, 10), np.uint8), "b": np.zeros((20, 10), np.uint8)}
    labels["a"][2:18, 2:8] = 5    # 96 person pixels
    labels["b"][0:4, 0:3] = 13    # 12 person pixels
    for i, lab in labels.items():
        Image.fromarray(np.zeros((20, 10, 3), np.uint8)).save(root / "val_images" / f"{i}.jpg")
        Image.fromarray(lab).save(root / "val_segmentations" / f"{i}.png")
    (root / "val_id.txt").write_text("a\nb\n")
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    df = statistics.image_attributes(root)
    assert list(df.index) == ["a", "b"] and list(df["person_area"]) == [96, 12]
    assert list(df["size_bin"]) == ["small", "small"] and list(df["split"]) == ["val", "val"]
    cache = tmp_path / "results" / "cache"
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith("attributes-") and files[0].endswith(".csv")  # no temporary
    monkeypatch.setattr(statistics, "derive_dataset_attributes",
                        lambda *a, **k: pytest.fail("derived again instead of reading the cache"))
    again = statistics.image_attributes(root)
    assert list(again.index) == ["a", "b"] and list(again["person_area"]) == [96, 12]


def test_the_headline_shows_seed_means_with_their_spread_and_each_control_beside_its_ssl_row():
    from lipstudy.runs import control_label

    values = {"DeepLabV2": {0: 16.77, 1: 18.54, 2: 18.45}, "DeepLabV2 + SSL": {2: 18.0, 0: 19.0, 1: 18.65},
              control_label("DeepLabV2"): {0: 19.5, 1: 19.4, 2: 19.54}, "SegNet": {0: 10.49}}
    summary = tables.seed_summary(values)
    assert summary.loc["DeepLabV2", "mean"] == pytest.approx((16.77 + 18.54 + 18.45) / 3)
    assert summary.loc["DeepLabV2", "sd"] == pytest.approx(np.std([16.77, 18.54, 18.45], ddof=1))
    assert summary.loc["DeepLabV2 + SSL", "seeds"] == "0, 1, 2" and summary.loc["DeepLabV2", "n"] == 3
    assert math.isnan(summary.loc["SegNet", "sd"]) and summary.loc["SegNet", "n"] == 1
    order = tables.with_controls([control_label("DeepLabV2"), "SegNet", "DeepLabV2", "DeepLabV2 + SSL"], control_label)
    assert order == ["SegNet", "DeepLabV2", "DeepLabV2 + SSL", control_label("DeepLabV2")]
    head = tables.headline(summary.loc[order], pd.Series({"SegNet [3]": 18.17, "DeepLabV2 [4]": 41.64,
                                                          "DeepLabV2 + SSL": 42.44}),
                           {"SegNet": "SegNet [3]", "DeepLabV2": "DeepLabV2 [4]"})
    assert list(head.index) == ["SegNet [3]", "DeepLabV2 [4]", "DeepLabV2 + SSL", control_label("DeepLabV2")]
    assert head.loc["DeepLabV2 [4]", "seeds"] == "3 (0, 1, 2)" and head.loc["SegNet [3]", "seeds"] == "1 (0)"
    assert head.loc["DeepLabV2 [4]", "difference (pp)"] == pytest.approx(summary.loc["DeepLabV2", "mean"] - 41.64)
    assert math.isnan(head.loc[control_label("DeepLabV2"), "paper (%)"])  # the paper has no control
    # the best model by its mean over seeds is the control here, not DeepLabV2 + SSL (its seed 0 is its best)
    assert summary["mean"].idxmax() == control_label("DeepLabV2")


def test_seed_means_averages_each_cell_and_names_each_rows_seeds():
    per_seed = {
        0: pd.DataFrame({"head": [10.0, 40.0, 5.0], "Avg": [20.0, 50.0, 7.0]}, index=["A", "B", "ppp"]),
        1: pd.DataFrame({"head": [14.0, 44.0], "Avg": [22.0, 53.0]}, index=["A", "B"]),
        2: pd.DataFrame({"head": [12.0, 42.0], "Avg": [27.0, 50.0]}, index=["A", "B"]),
    }
    t = tables.seed_means(per_seed, spread="Avg")
    assert list(t.columns) == ["head", "Avg", "Avg \u00b1 SD (pp)", "seeds"]
    assert list(t.index) == ["A", "B", "ppp"]
    assert t.loc["A", "head"] == pytest.approx(12.0) and t.loc["A", "Avg"] == pytest.approx(23.0)
    # SD of 20, 22, 27 (n - 1): sqrt(((−3)² + (−1)² + 4²) / 2) = sqrt(13)
    assert t.loc["A", "Avg \u00b1 SD (pp)"] == pytest.approx(math.sqrt(13.0))
    assert t.loc["B", "Avg \u00b1 SD (pp)"] == pytest.approx(math.sqrt(3.0))
    # a method trained at seed 0 only keeps its own number, no spread, and says so
    assert t.loc["ppp", "Avg"] == 7.0 and math.isnan(t.loc["ppp", "Avg \u00b1 SD (pp)"])
    assert t.loc["A", "seeds"] == "0, 1, 2" and t.loc["ppp", "seeds"] == "0"
    # the rows in a given order; no spread column without ``spread``
    t2 = tables.seed_means(per_seed, order=["B", "A"])
    assert list(t2.index) == ["B", "A"] and list(t2.columns) == ["head", "Avg", "seeds"]
    with pytest.raises(ValueError):
        tables.seed_means({})


def test_the_caption_names_the_dataset_the_paper_column_comes_from(tmp_path):
    def synthetic(style):
        root = tmp_path / style
        root.mkdir()
        (root / "manifest.json").write_text(json.dumps({"generator_version": "1", "style": style, "seed": 0,
                                                        "counts": {}, "fingerprint": "0123456789ab"}))
        return root

    assert "the paper's column is LIP," in tables.ours_caption(synthetic("lip"), "smoke")
    ppp = tables.ours_caption(synthetic("ppp"), "smoke")
    assert "not PASCAL-Person-Part numbers" in ppp and "LIP" not in ppp
    assert "not ATR numbers" in tables.ours_caption(synthetic("atr"), "smoke")
    both = tables.ours_caption(tmp_path / "atr", "smoke", paper_data="ATR and LIP")
    assert "not ATR and LIP numbers" in both and "the paper's columns are ATR and LIP" in both
    real = tmp_path / "real"
    real.mkdir()
    assert "not" not in tables.ours_caption(real, "smoke")


def test_label_gains_leave_out_background_and_labels_both_models_miss():
    ssl = pd.Series({"hat": 12.0, "l-leg": 17.77, "r-leg": 17.91, "scarf": 0.0, "glove": np.nan, "Bkg": 80.04,
                     "Avg": 20.0})
    base = pd.Series({"hat": 12.5, "l-leg": 10.67, "r-leg": 1.43, "scarf": 0.0, "glove": 0.0, "Bkg": 80.0,
                      "Avg": 18.0})
    gains, missed = tables.label_gains(ssl, base)
    assert list(gains.index) == ["hat", "l-leg", "r-leg"] and missed == ["scarf", "glove"]
    assert gains["l-leg"] == pytest.approx(7.10) and gains["hat"] == pytest.approx(-0.5)
    assert int((gains > 0).sum()) == 2  # background's +0.04 and the two missed labels do not count
    # a label one model learns and the other misses is testable (a gain from 0 is a gain)
    gains, missed = tables.label_gains(pd.Series({"scarf": 3.0}), pd.Series({"scarf": 0.0}))
    assert gains["scarf"] == 3.0 and missed == []


def test_agreement_table_counts_are_integers_and_rates_percent():
    raw = pd.DataFrame({"support": [8.0, 0.0], "derived": [4.0, 1.0], "precision": [1.0, 0.0],
                        "recall": [0.5, np.nan], "accuracy": [0.875, 0.9]}, index=["occlusion", "lower_body"])
    t = tables.agreement_table(raw)
    assert t["images with it (renderer)"].dtype.kind == "i" and t.loc["occlusion", "images with it (derived)"] == 4
    assert t.loc["occlusion", "recall (%)"] == 50.0 and t.loc["occlusion", "accuracy (%)"] == 87.5
    assert math.isnan(t.loc["lower_body", "recall (%)"])
    html = tables.style(t, digits=1).to_html()
    assert ">8<" in html and "8.0" not in html and "87.5" in html


def test_seed_breakdown_means_over_seeds_with_the_seed_range_or_one_seeds_interval():
    def frame(v_a, v_b):
        return pd.DataFrame({"method": ["A", "A"], "subset": ["all", "back-view"], "images": [24, 10],
                             "value": [v_a, v_b], "low": [v_a - 1, v_b - 3], "high": [v_a + 1, v_b + 3]})

    t = tables.seed_breakdown({0: frame(20.0, 10.0), 1: frame(22.0, 14.0), 2: frame(24.0, 12.0)})
    row = t.set_index("subset").loc["back-view"]
    assert row["value"] == pytest.approx(12.0) and (row["low"], row["high"]) == (10.0, 14.0)
    assert row["n_seeds"] == 3 and row["seeds"] == "0, 1, 2" and row["images"] == 10
    one = tables.seed_breakdown({0: frame(20.0, 10.0)}).set_index("subset").loc["back-view"]
    assert (one["value"], one["low"], one["high"], one["seeds"]) == (10.0, 7.0, 13.0, "0")
