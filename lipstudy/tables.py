"""The book's tables: paper | ours | difference, which data and profile "ours" came from, and
scores averaged over seeds.

Every table in the book compares the number the paper prints (``lipstudy.paper``) with the number
this run measured, and names the data (synthetic benchmark or a real dataset, with the manifest
fingerprint) and the profile behind "ours". Scores arrive as fractions (``lipstudy.metrics``) and are
shown as percentages, like the paper.
"""
from __future__ import annotations

import html
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


# ---------------------------------------------------------------------------------------------
# which data


def read_manifest(root: str | os.PathLike) -> dict | None:
    """The synthetic benchmark's ``manifest.json`` under ``root``, or None for real data."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def is_synthetic(root: str | os.PathLike) -> bool:
    """True when ``root`` holds the synthetic benchmark (it has a generator manifest)."""
    m = read_manifest(root)
    return m is not None and "generator_version" in m


def data_label(root: str | os.PathLike, short: bool = False) -> str:
    """How a table names its data: synthetic (style, fingerprint, counts) or real (the folder)."""
    m = read_manifest(root)
    if m is None or "generator_version" not in m:
        return f"real data at {Path(root).name}" if short else f"real data at {root} (no synthetic manifest)"
    fp = str(m.get("fingerprint", ""))[:12]
    counts = m.get("counts", {})
    n = "/".join(str(counts.get(k, "?")) for k in ("train", "val", "test"))
    if short:
        return f"synthetic {m.get('style', 'lip')} benchmark, fingerprint {fp}"
    return (f"synthetic {m.get('style', 'lip')}-style benchmark (generator {m.get('generator_version')}, "
            f"seed {m.get('seed')}, train/val/test {n}, fingerprint {fp})")


PAPER_DATASETS = {"lip": "LIP", "ppp": "PASCAL-Person-Part", "atr": "ATR"}
"""The real dataset the paper's numbers of each synthetic style come from."""


def ours_caption(root, profile: str, what: str = "", paper_data: str | None = None) -> str:
    """One sentence (HTML, for a table caption) naming the data and profile behind "ours". On
    synthetic data it warns that these are not the paper's dataset's numbers; that dataset is the
    one the synthetic style imitates (LIP, PASCAL-Person-Part or ATR) unless ``paper_data`` names
    it (e.g. "ATR and LIP" for a table with both)."""
    m = read_manifest(root)
    synth = m is not None and "generator_version" in m
    paper_data = paper_data or PAPER_DATASETS.get(str((m or {}).get("style", "lip")), "LIP")
    columns = "columns are" if " and " in paper_data else "column is"
    warn = (f"These are <b>not {html.escape(paper_data)} numbers</b>: the paper's {columns} "
            f"{html.escape(paper_data)}, ours the synthetic benchmark." if synth else "")
    lead = f"{what} " if what else ""
    return f"{lead}\"Ours\": profile <code>{html.escape(profile)}</code>, {html.escape(data_label(root))}. {warn}".strip()


# ---------------------------------------------------------------------------------------------
# paper | ours | difference


def percent(x):
    """Fractions (scalars, arrays, Series, DataFrames) -> percentages."""
    return x * 100.0


def compare(paper: pd.DataFrame, ours: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """paper | ours | difference (ours - paper) for each column, rows in the paper's order.

    Both frames are in the same unit (percent). Rows or columns only one side has are kept, with
    NaN on the other side. The result has MultiIndex columns ``(column, paper|ours|difference)``.
    """
    columns = list(columns if columns is not None else paper.columns)
    rows = list(paper.index) + [r for r in ours.index if r not in paper.index]
    p = paper.reindex(index=rows, columns=columns).astype(float)
    o = ours.reindex(index=rows, columns=columns).astype(float)
    parts = {}
    for col in columns:
        parts[(col, "paper")] = p[col]
        parts[(col, "ours")] = o[col]
        parts[(col, "difference")] = o[col] - p[col]
    out = pd.DataFrame(parts, index=pd.Index(rows, name=paper.index.name))
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out


def style(table: pd.DataFrame, caption: str | None = None, digits: int = 2):
    """A pandas Styler: fixed decimals, "-" for missing, differences in colour."""
    def colour(v):
        if not isinstance(v, (int, float)) or np.isnan(v):
            return ""
        return "color: #1a7f37" if v > 0 else ("color: #cf222e" if v < 0 else "")

    st = table.style.format(precision=digits, na_rep="-")
    # Styler's HTML has no cell padding of its own: without it, adjacent numbers run together.
    st = st.set_table_styles([{"selector": "td, th", "props": "padding: 0.15em 0.55em;"}], overwrite=False)
    diff_cols = [c for c in table.columns if (c[-1] if isinstance(c, tuple) else c) == "difference"]
    if diff_cols:
        st = st.map(colour, subset=diff_cols)
    if caption:
        st = st.set_caption(caption)
    return st


def ours_table(metrics: dict[str, dict], columns: dict[str, str], rows: dict[str, str] | None = None,
               per_class: dict[str, str] | None = None) -> pd.DataFrame:
    """Percent table from ``{method: ev.metrics}``: ``columns`` maps a paper column to a metrics key
    (e.g. ``{"Mean IoU": "mean_iou"}``), ``per_class`` maps a paper column to a class name in
    ``metrics["per_class_iou"]``; ``rows`` renames our methods to the paper's row names."""
    rows = rows or {}
    out = {}
    for method, m in metrics.items():
        row = {col: percent(float(m[key])) for col, key in columns.items()}
        for col, cls in (per_class or {}).items():
            v = m["per_class_iou"].get(cls, np.nan)
            row[col] = percent(float(v)) if v is not None else np.nan
        out[rows.get(method, method)] = row
    return pd.DataFrame.from_dict(out, orient="index")


# ---------------------------------------------------------------------------------------------
# scores of runs (fractions in, percent out)


SCORE_COLUMNS = {"Overall accuracy": "overall_acc", "Mean accuracy": "mean_acc", "Mean IoU": "mean_iou"}


def seed_mean(metrics_list) -> dict:
    """The mean over seeds of evaluation metrics dicts (overall_acc, mean_acc, mean_iou and the
    per_class_iou mapping); NaN classes are averaged over the seeds that have them."""
    out = {k: float(np.mean([m[k] for m in metrics_list])) for k in SCORE_COLUMNS.values()}
    names = list(metrics_list[0].get("per_class_iou", {}))
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["per_class_iou"] = {n: float(np.nanmean([np.nan if m["per_class_iou"].get(n) is None
                                                         else m["per_class_iou"][n] for m in metrics_list]))
                                    for n in names}
    return out


def seed_spread(metrics_list, key: str = "mean_iou") -> float:
    """Max - min over seeds of one score, in percent (NaN with one seed)."""
    vals = [m[key] for m in metrics_list]
    return percent(max(vals) - min(vals)) if len(vals) > 1 else float("nan")


def seed_summary(values: dict[str, dict]) -> pd.DataFrame:
    """One row per method of ``{method: {seed: score}}``: ``mean`` over its seeds, ``sd`` (the
    standard deviation over them, n - 1; NaN with one seed), ``n`` and ``seeds`` (which), in the
    unit given."""
    rows = {}
    for method, by_seed in values.items():
        v = np.array([by_seed[s] for s in sorted(by_seed)], dtype=float)
        rows[method] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else np.nan,
                        "n": len(v), "seeds": ", ".join(str(s) for s in sorted(by_seed))}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["mean", "sd", "n", "seeds"])


def with_controls(methods, control_of) -> list[str]:
    """``methods`` with each SSL method's control (``control_of(base)``) placed right after it,
    when the control is among ``methods``; the other controls are left where they are."""
    methods = list(methods)
    controls = {control_of(m[:-len(" + SSL")]): m for m in methods if m.endswith(" + SSL")}
    out = []
    for m in methods:
        if m in controls and controls[m] in methods:
            continue
        out.append(m)
        if m.endswith(" + SSL") and control_of(m[:-len(" + SSL")]) in methods:
            out.append(control_of(m[:-len(" + SSL")]))
    return out


def headline(summary: pd.DataFrame, paper_scores: pd.Series, rows: dict[str, str]) -> pd.DataFrame:
    """The front page's table: per method (our names, renamed by ``rows`` to the paper's), the
    paper's score, ours as mean +- SD over its seeds with how many, and the difference of the means.
    Controls (methods the paper has not) show no paper number."""
    out = pd.DataFrame({
        "paper (%)": [paper_scores.get(rows.get(m, m), np.nan) for m in summary.index],
        "ours, mean (%)": summary["mean"].to_numpy(),
        "\u00b1 SD (pp)": summary["sd"].to_numpy(),
        "seeds": [f"{n} ({s})" for n, s in zip(summary["n"], summary["seeds"])]},
        index=pd.Index([rows.get(m, m) for m in summary.index], name="method"))
    out["difference (pp)"] = out["ours, mean (%)"] - out["paper (%)"]
    return out


def seed_means(per_seed: dict[int, pd.DataFrame], spread: str | None = None, order=None) -> pd.DataFrame:
    """The mean over seeds of tables of one layout (rows: methods, columns: scores, one table per
    seed: ``{seed: frame}``), with the seeds behind each row named, so that no table of the book
    shows one seed as if it were the method.

    A row averages the seeds whose table holds it (a method trained at fewer seeds, such as the
    PASCAL-Person-Part runs, keeps only its own). With ``spread`` (a column), a column
    ``"<spread> ± SD (pp)"`` holds the standard deviation of that column over the row's seeds
    (n - 1; NaN with one seed) right after it; a last column ``seeds`` lists the row's seeds.
    ``order``: the rows, in order (default: the first table's, then any others).
    """
    if not per_seed:
        raise ValueError("no seed: nothing to average")
    seeds = sorted(per_seed)
    rows = list(order) if order is not None else list(dict.fromkeys(r for s in seeds for r in per_seed[s].index))
    columns = list(dict.fromkeys(c for s in seeds for c in per_seed[s].columns))
    stack = np.stack([per_seed[s].reindex(index=rows, columns=columns).to_numpy(float) for s in seeds])
    present = ~np.isnan(stack).all(axis=2)  # (seed, row): the row is in that seed's table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column no seed scored stays NaN
        out = pd.DataFrame(np.nanmean(stack, axis=0), index=pd.Index(rows, name=per_seed[seeds[0]].index.name),
                           columns=columns)
    if spread is not None:
        k = columns.index(spread)
        sd = [float(np.std(stack[present[:, i], i, k], ddof=1)) if present[:, i].sum() > 1 else np.nan
              for i in range(len(rows))]
        out.insert(k + 1, f"{spread} \u00b1 SD (pp)", sd)
    out["seeds"] = [", ".join(str(s) for s, p in zip(seeds, present[:, i]) if p) or "none" for i in range(len(rows))]
    return out


def label_gains(ssl: pd.Series, base: pd.Series, skip=("Bkg", "Avg")) -> tuple[pd.Series, list[str]]:
    """Per-label IoU gain (pp) of a model over another (``ssl - base``, one value per label) on
    the labels that can show one, and the labels that cannot: a label of ``skip`` (background and
    the average are not part labels) is left out, and so is one both models miss (IoU 0 or not
    scored for both), where a "gain" of 0 says nothing about the method. Returns (gains of the
    testable labels, the labels both miss)."""
    labels = [c for c in ssl.index if c not in skip]
    a = ssl.reindex(labels).astype(float)
    b = base.reindex(labels).astype(float)
    missed = [c for c in labels if (np.isnan(a[c]) or a[c] == 0) and (np.isnan(b[c]) or b[c] == 0)]
    keep = [c for c in labels if c not in missed]
    return (a[keep] - b[keep]).rename("gain (pp)"), missed


def agreement_table(agreement: pd.DataFrame) -> pd.DataFrame:
    """:func:`lipstudy.data.attributes.attribute_agreement` for a reader: the counts as integers,
    precision, recall and accuracy in percent, columns named with their units."""
    out = pd.DataFrame({
        "images with it (renderer)": agreement["support"].astype(int),
        "images with it (derived)": agreement["derived"].astype(int),
        "precision (%)": percent(agreement["precision"].astype(float)),
        "recall (%)": percent(agreement["recall"].astype(float)),
        "accuracy (%)": percent(agreement["accuracy"].astype(float))}, index=agreement.index)
    out.index.name = "attribute"
    return out


def seed_breakdown(per_seed: dict[int, pd.DataFrame], keys=("method", "subset")) -> pd.DataFrame:
    """Tidy per-seed scores (one frame per seed with ``keys``, ``value``, ``low``, ``high`` and
    ``images``, e.g. :func:`lipstudy.subsets.breakdown`) -> one row per key: ``value`` the mean over
    the seeds, ``low`` / ``high`` the lowest and highest seed's value when there are several seeds
    (the seed range), else that seed's own interval; ``n_seeds`` and ``seeds`` say which."""
    frames = [f.assign(seed=s) for s, f in sorted(per_seed.items())]
    if not frames:
        raise ValueError("no seed: nothing to average")
    allf = pd.concat(frames, ignore_index=True)
    rows = []
    for key, g in allf.groupby(list(keys), sort=False):
        many = len(g) > 1
        rows.append(dict(zip(keys, key)) | {
            "images": int(g["images"].iloc[0]), "value": float(g["value"].mean()),
            "low": float(g["value"].min() if many else g["low"].iloc[0]),
            "high": float(g["value"].max() if many else g["high"].iloc[0]),
            "n_seeds": len(g), "seeds": ", ".join(str(s) for s in g["seed"])})
    return pd.DataFrame(rows)
