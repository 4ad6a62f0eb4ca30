"""What the SSL chapter measures on the book's runs (Section 5; issue "SSL isolated"): each method's
validation mean IoU per seed, "+ SSL" against its controls seed by seed, and what L_joint is made of.

The controls (:mod:`lipstudy.runs`) fine-tune the same stage-1 network for the same stage-2 epochs
with Eq. 2's loss and every L_joint = 1 ("without SSL") or with each image's L_joint taken from
another image of its batch ("shuffled"), so a paired difference per seed is the structure weight's
effect alone (the same stage-1 network, data order and schedule).

L_joint's composition reads each run's validation joint terms (``eval/val/joint_terms.npz``,
:func:`lipstudy.evaluate.load_joint_terms`): at a coarse joint grid most of Eq. 1's sum can come
from joints present in one map only (a part missed or invented) rather than from displaced ones.
"""
from __future__ import annotations

import pandas as pd

from .evaluate import JOINT_TERMS, load_joint_terms
from .joints import composition


def val_miou(result) -> float:
    """A finished run's validation mean IoU (%)."""
    return 100.0 * float(result.evaluation("val").metrics["mean_iou"])


def seed_table(results: dict[str, dict[int, object]]) -> pd.DataFrame:
    """``{method: {seed: RunResult}}`` -> validation mean IoU (%) with one column per seed, then the
    mean over seeds and the spread (max - min); one row per method, in the given order."""
    seeds = sorted({s for by_seed in results.values() for s in by_seed})
    rows = {m: {f"seed {s}": val_miou(by_seed[s]) if s in by_seed else float("nan") for s in seeds}
            for m, by_seed in results.items()}
    table = pd.DataFrame(rows).T
    per_seed = table[[f"seed {s}" for s in seeds]]
    table["mean"] = per_seed.mean(axis=1)
    table["spread (pp)"] = per_seed.max(axis=1) - per_seed.min(axis=1)
    return table


def paired_differences(table: pd.DataFrame, pairs: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Per seed, ``a - b`` for each named pair ``{name: (a, b)}`` of :func:`seed_table`'s rows (pp):
    a tidy frame with columns ``comparison``, ``seed``, ``difference (pp)``. Pairs whose rows the
    table lacks are left out."""
    seeds = [c for c in table.columns if c.startswith("seed ")]
    out = [{"comparison": name, "seed": int(c.removeprefix("seed ")), "difference (pp)": table.loc[a, c] - table.loc[b, c]}
           for name, (a, b) in pairs.items() if a in table.index and b in table.index for c in seeds
           if pd.notna(table.loc[a, c]) and pd.notna(table.loc[b, c])]
    return pd.DataFrame(out, columns=["comparison", "seed", "difference (pp)"])


def joint_terms_of(result) -> dict:
    """A LIP run's validation joint terms (:func:`lipstudy.evaluate.load_joint_terms`)."""
    path = result.dir / "eval" / "val" / JOINT_TERMS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run {result.label!r} has no validation joint terms (evaluated by a "
                                "version that did not keep them, or imported from a bundle without them)")
    return load_joint_terms(path)


def l_joint_composition(results: dict[str, object]) -> pd.DataFrame:
    """``{name: RunResult}`` -> one row per run: the share of its validation L_joint from joints present
    in one map only and from joints displaced in both (:func:`lipstudy.joints.composition`), the mean
    L_joint (Eq. 1) and the mean number of one-map joints per image."""
    rows = {}
    for name, res in results.items():
        t = joint_terms_of(res)
        c = composition(t["sq"], t["present_pred"], t["present_gt"])
        rows[name] = {"one-map share (%)": 100 * c["one_map_share"], "displaced share (%)": 100 * c["displaced_share"],
                      "mean L_joint": c["mean_l_joint"], "one-map joints per image": c["one_map_joints_per_image"],
                      "images": c["images"]}
    table = pd.DataFrame(rows).T
    return table.astype({c: float for c in table.columns if c != "images"} | {"images": int})
