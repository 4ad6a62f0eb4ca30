"""The paper's numbers, transcribed once: check its own arithmetic so a typo cannot hide."""
import numpy as np
import pytest

from lipstudy import paper
from lipstudy.labels import LIP_CLASSES, LIP_TABLE4_NAMES, PPP_CLASSES, PPP_TABLE5_NAMES


def test_table4_avg_is_row_mean_and_matches_table2():
    t4 = paper.TABLE4
    per_class = t4.drop(columns="Avg")
    assert per_class.shape[1] == 20
    # Each printed Avg equals the mean of the 20 printed IoUs to rounding (two decimals).
    assert np.allclose(per_class.mean(axis=1), t4["Avg"], atol=0.011)
    # Table 4's Avg is Table 2's mean IoU for every method.
    assert np.array_equal(t4["Avg"].values, paper.TABLE2["Mean IoU"].values)


def test_table4_columns_follow_lip_ids():
    expected = [LIP_TABLE4_NAMES[c] for c in LIP_CLASSES[1:]] + ["Bkg", "Avg"]
    assert list(paper.TABLE4.columns) == expected


def test_table5_avg_is_row_mean():
    t5 = paper.TABLE5
    assert np.allclose(t5.drop(columns="Avg").mean(axis=1), t5["Avg"], atol=0.011)
    assert list(t5.columns[:-2]) == [PPP_TABLE5_NAMES[c] for c in PPP_CLASSES[1:]]


def test_table6_lip_column_vs_table2_and_size_bins():
    # Table 6's "LIP" column is not Table 2's val mIoU (e.g. DeepLabV2 43.97 vs 41.64): record that the
    # paper reports them separately, and that Attention has no input-size entries ("-").
    t6 = paper.TABLE6
    assert t6.loc["Attention [5]", ["153", "321", "513"]].isna().all()
    assert t6.loc["DeepLab + SSL", "321"] == 38.97
    assert paper.TABLE6_SIZE_BINS["medium"] == (153**2, 321**2)


def test_quoted_gains_follow_from_tables():
    t5, t2 = paper.TABLE5["Avg"], paper.TABLE2["Mean IoU"]
    g = paper.QUOTED_GAINS
    assert t5["Attention + SSL"] - t5["DeepLab-LargeFOV [4]"] == pytest.approx(g["ppp_vs_deeplab_largefov"])
    assert t5["Attention + SSL"] - t5["Attention [5]"] == pytest.approx(g["ppp_vs_attention"])
    assert t2["Attention + SSL"] - t2["DeepLabV2 [4]"] == pytest.approx(g["lip_val_vs_deeplabv2"])
    assert t2["Attention + SSL"] - t2["Attention [5]"] == pytest.approx(g["lip_val_vs_attention"])
    assert paper.BACK_VIEW_IOU["all"] == t2["Attention [5]"]


def test_counts_are_consistent():
    assert sum(paper.SPLITS.values()) == paper.DATASET_SIZE
    lip = paper.TABLE1.loc["LIP"]
    assert (lip["#Training"], lip["#Validation"], lip["#Test"]) == (30462, 10000, 10000)
    assert paper.TABLE1["Categories"]["LIP"] == len(LIP_CLASSES)
    assert paper.VISIBILITY_COUNTS["occlusion"] == 21028
    # Section 2.3: "more than half of the images suffer occlusions" (21,028 of 50,462 is 41.7%: the
    # paper's own statement does not hold; the book reports this).
    assert paper.VISIBILITY_COUNTS["occlusion"] / paper.DATASET_SIZE < 0.5
    assert list(paper.VAL_CHALLENGE_COUNTS.values()) == [4277, 5452, 793, 112, 661]
    assert all(v < paper.SPLITS["val"] for v in paper.VAL_CHALLENGE_COUNTS.values())


def test_method_rows_exist_in_tables():
    for row in paper.METHOD_ROWS.values():
        assert row in paper.TABLE2.index and row in paper.TABLE3.index and row in paper.TABLE4.index
    for row in paper.TABLE6_ROWS.values():
        assert row in paper.TABLE6.index
    assert paper.TRAINING["batch_size"] == 10 and paper.TEST_TIME_S == 0.5
