"""The claims about whole validation mean IoU across training budgets: the same statistics and the
same seed noise, applied to the committed budget summaries (``results/budget/``), so a reader sees
which claims would turn with more training.

The summaries keep each method's validation mean IoU per seed, not per-image matrices: the interval
here has the seed noise only (the build's pooled run-to-run standard deviation, as
:meth:`lipstudy.claims.engine.Evidence.run_noise` measures it, times sqrt(k) for k compared methods),
and the budgets' runs have no SSL controls, so their SSL statistics compare with the stage-1 network
(confounded with the extra epochs, as the paper's own numbers are).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from .engine import MIN_SEEDS, decide

# (claim, methods compared, statistic of {method: val mean IoU})
WHOLE_MIOU_CLAIMS = (
    ("Attention is the best of the four baselines in mean IoU (val)", ("Attention", "SegNet", "FCN-8s", "DeepLabV2"),
     lambda m: m["Attention"] - max(m["SegNet"], m["FCN-8s"], m["DeepLabV2"])),
    ("FCN-8s and SegNet score below DeepLabV2 and Attention", ("SegNet", "FCN-8s", "DeepLabV2", "Attention"),
     lambda m: min(m["DeepLabV2"], m["Attention"]) - max(m["FCN-8s"], m["SegNet"])),
    ("SSL improves DeepLabV2 (val), against the stage-1 network", ("DeepLabV2 + SSL", "DeepLabV2"),
     lambda m: m["DeepLabV2 + SSL"] - m["DeepLabV2"]),
    ("SSL improves Attention (val), against the stage-1 network", ("Attention + SSL", "Attention"),
     lambda m: m["Attention + SSL"] - m["Attention"]),
    ("Attention + SSL beats DeepLabV2", ("Attention + SSL", "DeepLabV2"),
     lambda m: m["Attention + SSL"] - m["DeepLabV2"]),
)


def across_budgets(summaries: pd.DataFrame, profiles, run_sd: float, df: int, alpha: float = 0.05) -> pd.DataFrame:
    """One row per claim and profile of ``profiles`` (fewest epochs first): the statistic (pp, mean
    over the profile's seeds), the half-width of its seed-noise interval and the verdict that
    interval gives by the claims chapter's rule (undecided with fewer than ``MIN_SEEDS`` seeds:
    then "sign" shows which side it would fall on). ``run_sd`` (a fraction) and ``df``: the pooled
    run-to-run noise."""
    t = float(stats.t.ppf(1 - alpha / 2, df)) if df > 0 else math.nan
    rows = []
    for claim, methods, statistic in WHOLE_MIOU_CLAIMS:
        for profile in profiles:
            sub = summaries[(summaries["profile"] == profile) & summaries["method"].isin(methods)]
            by_method = sub.groupby("method")["val_miou"].agg(["mean", "count"])
            if set(by_method.index) != set(methods):
                continue
            value = 100 * statistic(by_method["mean"].to_dict())
            seeds = int(by_method["count"].min())
            half = 100 * t * run_sd * math.sqrt(len(methods)) / math.sqrt(seeds)
            sign = decide(value - half, value + half)
            rows.append({"claim": claim, "profile": profile, "ours (pp)": value, "half-width (pp)": half,
                         "seeds": seeds, "sign": sign, "verdict": sign if seeds >= MIN_SEEDS else "undecided"})
    return pd.DataFrame(rows, columns=["claim", "profile", "ours (pp)", "half-width (pp)", "seeds", "sign", "verdict"])


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`across_budgets` with one row per claim and a column per profile: "value +- half (sign)"."""
    if table.empty:
        return table
    cell = table.assign(cell=[f"{v:+.2f} \u00b1 {h:.2f} ({s})" if np.isfinite(h) else f"{v:+.2f}"
                              for v, h, s in zip(table["ours (pp)"], table["half-width (pp)"], table["sign"])])
    out = cell.pivot(index="claim", columns="profile", values="cell")
    return out[list(dict.fromkeys(table["profile"]))].loc[list(dict.fromkeys(table["claim"]))]
