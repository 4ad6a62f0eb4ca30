"""Scores on subsets of the evaluated images (paper Sections 3.2 and 5.4: the challenge types of
Fig. 5, the person-size bins of Table 6), aggregated from per-image confusion matrices, with
bootstrap intervals over the subset's images."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics
from .tables import percent


def stat_value(cms, stat: str = "mean_iou", index=None) -> float:
    """A ``metrics.stat_fn`` statistic of the summed per-image matrices (all, or a subset)."""
    cm = metrics.aggregate(cms, index)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(metrics.stat_fn(stat)(cm.astype(np.float64)))


def subset_mask(ids, attrs: pd.DataFrame, subset: str | None) -> np.ndarray:
    """Images of ``ids`` in an attributes subset: a 0/1 column (``back_view``) or ``size:<bin>``."""
    if subset is None:
        return np.ones(len(ids), dtype=bool)
    a = attrs.reindex(list(ids))
    if subset.startswith("size:"):
        return (a["size_bin"] == subset[5:]).to_numpy()
    return a[subset].fillna(0).astype(int).to_numpy() == 1


def breakdown(evaluations: dict, attrs: pd.DataFrame, subsets: dict[str, str | None], stat: str = "mean_iou",
              n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Score of each method on each image subset, aggregated from per-image matrices, with a
    bootstrap interval over the subset's images (percent). ``evaluations``: {method: evaluation}
    (``.ids``, ``.cms``); ``subsets``: {label: attribute column, ``size:<bin>`` or None = all}."""
    rows = []
    for method, ev in evaluations.items():
        cms = np.asarray(ev.cms)
        for label, subset in subsets.items():
            m = subset_mask(ev.ids, attrs, subset)
            n = int(m.sum())
            if n == 0:
                rows.append({"method": method, "subset": label, "images": 0, "value": np.nan,
                             "low": np.nan, "high": np.nan})
                continue
            ci = metrics.bootstrap_ci(cms[m], stat=stat, n_boot=n_boot, seed=seed)
            rows.append({"method": method, "subset": label, "images": n, "value": percent(ci["value"]),
                         "low": percent(ci["low"]), "high": percent(ci["high"])})
    return pd.DataFrame(rows)


def table6(results: dict, attrs: pd.DataFrame, input_sizes, no_single_scale=("Attention", "Attention + SSL"),
           size_bins=("small", "medium", "large")) -> pd.DataFrame:
    """Table 6 (Section 5.4) of this run, percent, one row per method of ``results`` ({method: run
    result}): left, mean IoU on ATR and on LIP val over the categories the two share; middle, mean
    IoU on the val images of each person-size bin; right, mean IoU at each single input size
    (``input_sizes``: the paper's 153 / 321 / 513 scaled to the profile, named by the paper's sizes
    in the columns). Methods in ``no_single_scale`` get NaN at single sizes (the paper's "-": their
    attention is over input scales)."""
    from .labels import ATR_LIP_SHARED
    from .paper import TABLE6_INPUT_SIZES

    shared = metrics.miou_of(ATR_LIP_SHARED)
    size_cols = dict(zip(input_sizes, [str(s) for s in TABLE6_INPUT_SIZES]))
    rows = {}
    for method, res in results.items():
        val = res.evaluation("val")
        row = {"ATR": percent(stat_value(res.evaluation("atr").cms, shared)),
               "LIP": percent(stat_value(val.cms, shared))}
        for b in size_bins:
            mask = subset_mask(val.ids, attrs, f"size:{b}")
            row[b] = percent(stat_value(val.cms, "mean_iou", mask)) if mask.any() else np.nan
        for s in input_sizes:
            row[size_cols[s]] = (np.nan if method in no_single_scale
                                 else percent(res.evaluation(f"val@{s}").metrics["mean_iou"]))
        rows[method] = row
    return pd.DataFrame.from_dict(rows, orient="index")
