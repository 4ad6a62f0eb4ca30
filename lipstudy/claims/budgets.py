"""The claims about whole validation mean IoU across training budgets: the same statistics, the
same seed noise and the same decision rule (:func:`lipstudy.claims.engine.rule`), applied to the
committed budget summaries (``results/budget/``), so a reader sees which claims would turn with
more training.

The summaries keep each method's validation mean IoU per seed, not per-image matrices: the interval
here has the seed noise only (measured over the seeds with at least ``MIN_SEEDS`` of them, else the
build's pooled run-to-run standard deviation, as :meth:`lipstudy.claims.engine.Evidence.run_noise`
measures it, times sqrt(k) for k compared methods), and the budgets' runs have no SSL controls, so
their SSL statistics compare with the stage-1 network (confounded with the extra epochs, as the
paper's own numbers are). A profile with fewer seeds than the rule needs reads *undecided*.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from .engine import DEFAULT_MARGIN_PP, MIN_SEEDS, rule

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


def across_budgets(summaries: pd.DataFrame, profiles, run_sd: float, df: int, alpha: float = 0.05,
                   margin: float = DEFAULT_MARGIN_PP) -> pd.DataFrame:
    """One row per claim and profile of ``profiles`` (fewest epochs first): the statistic (pp, the
    mean over the seeds every compared method has of its value per seed), the half-width of its
    seed-noise interval, the seeds, and the verdict and reason by the claims' decision rule with
    ``margin`` (pp). ``run_sd`` (a fraction) and ``df``: the pooled run-to-run noise, used when a
    profile has fewer than ``MIN_SEEDS`` seeds."""
    rows = []
    for claim, methods, statistic in WHOLE_MIOU_CLAIMS:
        for profile in profiles:
            sub = summaries[(summaries["profile"] == profile) & summaries["method"].isin(methods)]
            if set(sub["method"]) != set(methods):
                continue
            by_seed = sub.pivot_table(index="seed", columns="method", values="val_miou").dropna()
            if by_seed.empty:
                continue
            per_seed = [100 * statistic(by_seed.loc[s].to_dict()) for s in by_seed.index]
            n, value = len(per_seed), float(np.mean(per_seed))
            if n >= MIN_SEEDS:
                sd, dof = float(np.std(per_seed, ddof=1)), n - 1
            else:
                sd, dof = 100 * run_sd * math.sqrt(len(methods)), df
            half = float(stats.t.ppf(1 - alpha / 2, dof)) * sd / math.sqrt(n) if dof > 0 else math.nan
            seeds = {m: sorted(sub.loc[sub["method"] == m, "seed"]) for m in methods}
            verdict, reason = rule(value - half, value + half, per_seed, seeds, margin, list(by_seed.index))
            rows.append({"claim": claim, "profile": profile, "ours (pp)": value, "half-width (pp)": half,
                         "seeds": n, "verdict": verdict, "reason": reason})
    columns = ["claim", "profile", "ours (pp)", "half-width (pp)", "seeds", "verdict", "reason"]
    return pd.DataFrame(rows, columns=columns)


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`across_budgets` with one row per claim and a column per profile: "value +- half,
    n seeds: verdict"."""
    if table.empty:
        return table
    cell = table.assign(cell=[(f"{v:+.2f} \u00b1 {h:.2f}" if np.isfinite(h) else f"{v:+.2f}")
                              + f", {n} seed{'s' if n != 1 else ''}: {verdict}"
                              for v, h, n, verdict in zip(table["ours (pp)"], table["half-width (pp)"],
                                                          table["seeds"], table["verdict"])])
    out = cell.pivot(index="claim", columns="profile", values="cell")
    return out[list(dict.fromkeys(table["profile"]))].loc[list(dict.fromkeys(table["claim"]))]
