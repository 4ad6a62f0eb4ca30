"""Every number the paper reports, written down once.

Gong et al., "Look into Person", CVPR 2017. Tables are pandas DataFrames whose rows are the methods as
the paper names them and whose columns are the paper's headers; values are as printed (percentages for
scores). A "-" in the paper is NaN here. Nothing in the study should retype one of these numbers:
chapters import them from this module, and ``tests/test_paper.py`` checks the paper's own arithmetic.
"""
from __future__ import annotations

import math

import pandas as pd

NA = math.nan

# Table 1: overview of public human parsing datasets (annotated persons per split, categories incl. bkg).
TABLE1 = pd.DataFrame(
    {
        "#Training": [456, 1716, 16000, 30462],
        "#Validation": [NA, NA, 700, 10000],
        "#Test": [229, 1817, 1000, 10000],
        "Categories": [56, 7, 18, 20],
    },
    index=pd.Index(["Fashionista [31]", "PASCAL-Person-Part [6]", "ATR [17]", "LIP"], name="Dataset"),
)

_OVERALL_COLS = ["Overall accuracy", "Mean accuracy", "Mean IoU"]
_LIP_METHODS = ["SegNet [3]", "FCN-8s [21]", "DeepLabV2 [4]", "Attention [5]",
                "DeepLabV2 + SSL", "Attention + SSL"]

# Table 2: LIP validation set.
TABLE2 = pd.DataFrame(
    [
        [69.04, 24.00, 18.17],
        [76.06, 36.75, 28.29],
        [82.66, 51.64, 41.64],
        [83.43, 54.39, 42.92],
        [83.16, 52.55, 42.44],
        [84.36, 54.94, 44.73],
    ],
    index=pd.Index(_LIP_METHODS, name="Method"), columns=_OVERALL_COLS,
)

# Table 3: LIP test set.
TABLE3 = pd.DataFrame(
    [
        [69.10, 24.26, 18.37],
        [76.28, 37.18, 28.69],
        [82.89, 51.53, 41.56],
        [83.56, 54.28, 42.97],
        [83.37, 52.53, 42.46],
        [84.53, 54.81, 44.59],
    ],
    index=pd.Index(_LIP_METHODS, name="Method"), columns=_OVERALL_COLS,
)

# Table 4: per-class IoU on LIP val. Columns in the paper's order, which is LIP id order with the
# background moved to the end (see labels.LIP_TABLE4_NAMES).
TABLE4_COLUMNS = ["hat", "hair", "gloves", "sunglasses", "u-clothes", "dress", "coat", "socks", "pants",
                  "jumpsuits", "scarf", "skirt", "face", "l-arm", "r-arm", "l-leg", "r-leg", "l-shoe",
                  "r-shoe", "Bkg", "Avg"]
TABLE4 = pd.DataFrame(
    [
        [26.60, 44.01, 0.01, 0.00, 34.46, 0.00, 15.97, 3.59, 33.56, 0.01, 0.00, 0.00, 52.38, 15.30,
         24.23, 13.82, 13.17, 9.26, 6.47, 70.62, 18.17],
        [39.79, 58.96, 5.32, 3.08, 49.08, 12.36, 26.82, 15.66, 49.41, 6.48, 0.00, 2.16, 62.65, 29.78,
         36.63, 28.12, 26.05, 17.76, 17.70, 78.02, 28.29],
        [57.94, 66.11, 28.50, 18.40, 60.94, 23.17, 47.03, 34.51, 64.00, 22.38, 14.29, 18.74, 69.70, 49.44,
         51.66, 37.49, 34.60, 28.22, 22.41, 83.25, 41.64],
        [58.87, 66.78, 23.32, 19.48, 63.20, 29.63, 49.70, 35.23, 66.04, 24.73, 12.84, 20.41, 70.58, 50.17,
         54.03, 38.35, 37.70, 26.20, 27.09, 84.00, 42.92],
        [58.41, 66.22, 28.76, 20.05, 62.26, 21.18, 48.17, 36.12, 65.16, 22.94, 14.84, 19.37, 70.01, 50.45,
         53.39, 37.59, 36.96, 26.29, 26.87, 83.67, 42.44],
        [59.75, 67.25, 28.95, 21.57, 65.30, 29.49, 51.92, 38.52, 68.02, 24.48, 14.92, 24.32, 71.01, 52.64,
         55.79, 40.23, 38.80, 28.08, 29.03, 84.56, 44.73],
    ],
    index=pd.Index(_LIP_METHODS, name="Method"), columns=TABLE4_COLUMNS,
)

# Table 5: PASCAL-Person-Part, per-part IoU.
TABLE5_COLUMNS = ["head", "torso", "u-arms", "l-arms", "u-legs", "l-legs", "Bkg", "Avg"]
TABLE5 = pd.DataFrame(
    [
        [78.09, 54.02, 37.29, 36.85, 33.73, 29.61, 92.85, 51.78],
        [80.79, 59.11, 43.05, 42.76, 38.99, 34.46, 93.59, 56.11],
        [81.47, 59.06, 44.15, 42.50, 38.28, 35.62, 93.65, 56.39],
        [82.72, 60.99, 45.40, 47.76, 42.33, 37.96, 88.63, 57.97],
        [83.26, 62.40, 47.80, 45.58, 42.32, 39.48, 94.68, 59.36],
    ],
    index=pd.Index(["DeepLab-LargeFOV [4]", "HAZN [28]", "Attention [5]", "LG-LSTM [15]", "Attention + SSL"],
                   name="Method"),
    columns=TABLE5_COLUMNS,
)

# Table 6: mean IoU. Left: test sets (ATR on the categories shared with LIP, and LIP);
# middle: object sizes (small < 153^2 <= medium < 321^2 <= large); right: single input sizes.
TABLE6 = pd.DataFrame(
    [
        [15.79, 21.79, 16.53, 18.58, 18.18, 16.92, 18.37, 16.44],
        [34.44, 32.28, 22.37, 29.41, 28.09, 14.52, 15.55, 16.25],
        [48.64, 43.97, 28.77, 40.74, 43.02, 36.49, 37.59, 37.28],
        [49.35, 45.38, 31.71, 41.61, 44.90, NA, NA, NA],
        [49.92, 44.81, 30.05, 41.50, 44.10, 38.27, 38.97, 39.84],
        [52.69, 46.85, 33.48, 43.12, 46.73, NA, NA, NA],
    ],
    index=pd.Index(["SegNet [3]", "FCN-8s [21]", "DeepLabV2 [4]", "Attention [5]", "DeepLab + SSL",
                    "Attention + SSL"], name="Method"),
    columns=["ATR", "LIP", "small", "medium", "large", "153", "321", "513"],
)
TABLE6_SIZE_BINS = {"small": (0, 153**2), "medium": (153**2, 321**2), "large": (321**2, math.inf)}
"""Object-size bins of Section 5.4 (person area in pixels, following MS-COCO)."""
TABLE6_INPUT_SIZES = (153, 321, 513)

# Our method labels -> the row names the paper uses in each table (Table 6 writes "DeepLab + SSL").
METHOD_ROWS = {
    "SegNet": "SegNet [3]",
    "FCN-8s": "FCN-8s [21]",
    "DeepLabV2": "DeepLabV2 [4]",
    "Attention": "Attention [5]",
    "DeepLabV2 + SSL": "DeepLabV2 + SSL",
    "Attention + SSL": "Attention + SSL",
}
TABLE6_ROWS = {**METHOD_ROWS, "DeepLabV2 + SSL": "DeepLab + SSL"}

# Section 2.2: the whole dataset, by visibility (Fig. 4 shows these as bars).
DATASET_SIZE = 50462
SPLITS = {"train": 30462, "val": 10000, "test": 10000}
VISIBILITY_COUNTS = {
    "full_body": 19081,
    "upper_body": 13672,
    "lower_body": 403,
    "head_missed": 3386,
    "back_view": 2778,
    "occlusion": 21028,
}

# Section 3.2: the validation images per challenge (Fig. 5's groups).
VAL_CHALLENGE_COUNTS = {
    "occlusion": 4277,
    "full_body": 5452,
    "upper_body": 793,
    "head_missed": 112,
    "back_view": 661,
}

# Section 3.2: "the IoU of Attention [5] drops from 42.92% to 33.50%" on back-view images.
BACK_VIEW_IOU = {"method": "Attention [5]", "all": 42.92, "back_view": 33.50}

# Section 5.1: experimental settings.
TRAINING = {
    "input_size": 321,            # "fixed as 321 x 321 for training networks based on Attention"
    "stage1_epochs": 30,          # "train the basic network on our LIP dataset for 30 epochs"
    "stage1_days": 2.0,           # "which takes about two days"
    "stage2_epochs": 20,          # "fine-tune the networks for roughly 20 epochs"
    "stage2_days": 1.5,           # "about one and a half days"
    "batch_size": 10,
    "momentum": 0.9,
    "weight_decay": 0.0005,
    "gpu": "NVIDIA GeForce GTX TITAN X (12GB)",
    "framework": "Caffe",
}
TEST_TIME_S = 0.5
"""Section 5.1: "In the testing stage, one images takes 0.5 second on average"."""

# Section 5.2: gains quoted in the text (percentage points of mean IoU).
QUOTED_GAINS = {
    "ppp_vs_deeplab_largefov": 7.58,   # 59.36 - 51.78
    "ppp_vs_attention": 2.97,          # 59.36 - 56.39
    "lip_val_vs_deeplabv2": 3.09,      # 44.73 - 41.64
    "lip_val_vs_attention": 1.81,      # 44.73 - 42.92
}
