"""Shared plotting for the book's chapters (matplotlib + seaborn).

Every figure is drawn from a run's files (per-image confusion matrices, predicted label maps,
attributes.csv), never pasted. Functions take tidy DataFrames or arrays and return the Figure, so a
chapter stays a list of calls. Scores are plotted in percent, like the paper.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from lipstudy.labels import LIP_CLASSES, LIP_PALETTE

SOURCE_PALETTE = {"paper": "#8c8c8c", "ours": "#1f77b4"}


def setup() -> None:
    """The book's plotting style (call once per chapter)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight", "axes.titleweight": "bold"})


def grouped_bars(df: pd.DataFrame, x: str, y: str, hue: str, *, title: str = "", ylabel: str = "",
                 palette=None, ax=None, rotate: int = 0, annotate: bool = False, width: float = 9.0,
                 legend_outside: bool = False):
    """Bars of ``y`` per ``x`` grouped by ``hue`` (a tidy frame, one row per bar). ``annotate``
    writes each bar's value on it (turned upright when more than two bars share a group, where
    level labels would overlap); ``legend_outside`` puts the legend right of the axes, where it
    covers no bar."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(width, 3.6))
    else:
        fig = ax.figure
    sns.barplot(data=df, x=x, y=y, hue=hue, palette=palette, ax=ax, errorbar=None)
    ax.set_title(title)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel or y)
    if rotate:
        ax.tick_params(axis="x", rotation=rotate)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
    if annotate:
        upright = df[hue].nunique() > 2
        for c in ax.containers:
            ax.bar_label(c, fmt="%.1f", fontsize=6 if upright else 7, padding=1, rotation=90 if upright else 0)
        if upright:  # room above the tallest bar for its upright label
            ax.set_ylim(top=ax.get_ylim()[1] * 1.15)
    if legend_outside:
        ax.legend(title=hue, fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False)
    else:
        ax.legend(title=hue, fontsize=8, title_fontsize=8, loc="best")
    return fig


def bars_with_ci(df: pd.DataFrame, x: str, y: str, hue: str, low: str, high: str, *, title: str = "",
                 ylabel: str = "", rotate: int = 0, width: float = 9.0, ref: float | None = None,
                 colors: list | None = None):
    """Grouped bars with intervals drawn from columns ``low``/``high`` (``colors``: one per hue, in order)."""
    fig, ax = plt.subplots(figsize=(width, 3.8))
    xs = list(dict.fromkeys(df[x]))
    hues = list(dict.fromkeys(df[hue]))
    w = 0.8 / max(len(hues), 1)
    colors = colors or sns.color_palette(n_colors=len(hues))
    for k, h in enumerate(hues):
        sub = df[df[hue] == h].set_index(x).reindex(xs)
        pos = np.arange(len(xs)) - 0.4 + w * (k + 0.5)
        vals = sub[y].to_numpy(float)
        err = np.vstack([vals - sub[low].to_numpy(float), sub[high].to_numpy(float) - vals])
        ax.bar(pos, vals, w, label=h, color=colors[k])
        ax.errorbar(pos, vals, yerr=np.nan_to_num(err), fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    if ref is not None:
        ax.axhline(ref, color="black", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(xs)), xs, rotation=rotate, ha="right" if rotate else "center")
    ax.set_title(title)
    ax.set_ylabel(ylabel or y)
    ax.legend(fontsize=8, ncols=min(len(hues), 3))
    return fig


def paper_vs_ours_bars(paper: pd.Series, ours: pd.Series, *, title: str = "", ylabel: str = "",
                       rotate: int = 0, width: float = 8.0):
    """Two bars per category: the paper's value and ours (same unit)."""
    df = pd.concat([pd.DataFrame({"category": paper.index, "value": paper.to_numpy(float), "source": "paper"}),
                    pd.DataFrame({"category": ours.index, "value": ours.to_numpy(float), "source": "ours"})],
                   ignore_index=True)
    return grouped_bars(df, "category", "value", "source", title=title, ylabel=ylabel,
                        palette=SOURCE_PALETTE, rotate=rotate, width=width, annotate=True)


def count_bars(counts: pd.Series, *, title: str = "", ylabel: str = "images", color=None, rotate: int = 45):
    """One bar per category (e.g. Fig. 3: images per label)."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.bar(np.arange(len(counts)), counts.to_numpy(float), color=color or SOURCE_PALETTE["ours"])
    ax.set_xticks(np.arange(len(counts)), list(counts.index), rotation=rotate, ha="right" if rotate else "center")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    return fig


def heatmap(table: pd.DataFrame, *, title: str = "", fmt: str = ".1f", cmap: str = "viridis",
            center: float | None = None, width: float = 11.0, cbar_label: str = ""):
    """Annotated heatmap (e.g. per-class IoU: methods x classes)."""
    h = 0.45 * len(table) + 1.4
    fig, ax = plt.subplots(figsize=(width, h))
    sns.heatmap(table.astype(float), annot=True, fmt=fmt, cmap=cmap, center=center, ax=ax,
                annot_kws={"fontsize": 7}, cbar_kws={"label": cbar_label})
    ax.set_title(title)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", rotation=60)
    return fig


def line_plot(df: pd.DataFrame, x: str, y: str, hue: str, *, title: str = "", ylabel: str = "",
              xlabel: str = "", width: float = 6.0, marker: str = "o"):
    """Lines of ``y`` over ``x`` per ``hue`` (e.g. mean IoU over input size, training curves)."""
    fig, ax = plt.subplots(figsize=(width, 3.4))
    sns.lineplot(data=df, x=x, y=y, hue=hue, marker=marker, ax=ax)
    ax.set_title(title)
    ax.set_ylabel(ylabel or y)
    ax.set_xlabel(xlabel or x)
    return fig


def paired_differences(df: pd.DataFrame, *, title: str = "", width: float = 6.0):
    """One row per comparison, one dot per seed (``df``: columns ``comparison``, ``seed``,
    ``difference (pp)``), the seeds' mean as a bar, and 0 marked: a paired per-seed plot."""
    names = list(dict.fromkeys(df["comparison"]))
    fig, ax = plt.subplots(figsize=(width, 0.6 + 0.55 * max(1, len(names))))
    ax.axvline(0.0, color="#444444", lw=1)
    for i, name in enumerate(names):
        d = df[df["comparison"] == name]
        ax.plot([d["difference (pp)"].mean()] * 2, [i - 0.3, i + 0.3], color="#d62728", lw=2)
        ax.scatter(d["difference (pp)"], [i] * len(d), color="#1f77b4", zorder=3)
        for _, row in d.iterrows():
            ax.annotate(f"s{int(row['seed'])}", (row["difference (pp)"], i), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=7)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("difference in validation mean IoU (pp); red: mean over seeds")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def training_curves(logs: dict, before: dict | None = None, *, title: str = "", per_row: int = 3,
                    size: float = 2.6):
    """One panel per run (``logs``: ``{name: training log}``, columns ``step`` and ``loss`` per epoch),
    against the steps of its whole training: a stage-2 run's curve drawn after the log of the stage-1
    run it fine-tunes (``before[name]``, dashed), from that run's last step. Each panel has its own y
    scale (the losses of different networks and loss modes do not share one)."""
    before = before or {}
    names = list(logs)
    n_rows = -(-len(names) // per_row)
    fig, axes = plt.subplots(n_rows, per_row, figsize=(size * per_row, size * 0.8 * n_rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        log, offset = logs[name], 0
        first = before.get(name)
        if first is not None:
            if len(first):
                ax.plot(first["step"], first["loss"], ls="--", color="#8c8c8c", marker=".", label="stage 1")
                offset = int(first["step"].iloc[-1])
        if len(log):
            ax.plot(log["step"] + offset, log["loss"], color="#1f77b4", marker=".",
                    label="stage 2" if offset else "stage 1")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=7)
        if offset:
            ax.legend(fontsize=6, frameon=False)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def image_grid(rows: list[list[np.ndarray]], row_titles=(), col_titles=(), *, size: float = 1.7,
               legend_classes=None, palette=LIP_PALETTE, classes=LIP_CLASSES):
    """A grid of RGB images (rows x columns), titled, optionally with a colour legend of classes."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows * 1.15), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(row) and row[j] is not None:
                ax.imshow(row[j])
            if i == 0 and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=8)
            if j == 0 and i < len(row_titles):
                ax.set_ylabel(row_titles[i], fontsize=8)
    if legend_classes is not None:
        handles = [Patch(color=np.asarray(palette[c]) / 255.0, label=classes[c]) for c in legend_classes]
        fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 7), fontsize=7,
                   frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout()
    return fig


def scale_weight_grid(images: dict, maps: dict, scales, *, size: float = 1.8, title: str = ""):
    """Chen et al.'s Fig. 4: per image (``{id: HxWx3 uint8}``), the image and its attention weight map
    for each input scale (``maps``: ``{id: [S, H, W]}`` in [0, 1]), one shared colour scale 0-1."""
    ids = [i for i in images if i in maps]
    n_cols = 1 + len(scales)
    fig, axes = plt.subplots(len(ids), n_cols, figsize=(size * n_cols + 0.6, size * len(ids) * 1.1), squeeze=False)
    shown = None
    for i, key in enumerate(ids):
        panels = [images[key]] + [np.asarray(maps[key][k], dtype=np.float32) for k in range(len(scales))]
        for j, panel in enumerate(panels):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.imshow(panel)
                ax.set_ylabel(key, fontsize=7)
            else:
                shown = ax.imshow(panel, vmin=0.0, vmax=1.0, cmap="magma")
            if i == 0:
                ax.set_title("image" if j == 0 else f"weight of scale {scales[j - 1]:g}", fontsize=8)
    if shown is not None:
        fig.colorbar(shown, ax=axes, fraction=0.02, pad=0.01, label="attention weight")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def present_classes(*label_maps, ignore=(0, 255)) -> list[int]:
    """Class ids that occur in any of the maps (for a legend), background and ignore left out."""
    ids = set()
    for m in label_maps:
        ids.update(int(v) for v in np.unique(np.asarray(m)))
    return sorted(ids - set(ignore))


def ci_errorbar_table(df: pd.DataFrame, value: str, low: str, high: str, label: str, *, title: str = "",
                      xlabel: str = "", ref: float = 0.0, width: float = 7.0):
    """Horizontal points with CIs, one per row (e.g. a claim's effect and its bootstrap interval)."""
    fig, ax = plt.subplots(figsize=(width, 0.38 * len(df) + 1.0))
    y = np.arange(len(df))[::-1]
    v = df[value].to_numpy(float)
    err = np.vstack([v - df[low].to_numpy(float), df[high].to_numpy(float) - v])
    ax.errorbar(v, y, xerr=np.nan_to_num(err), fmt="o", color="#1f77b4", ecolor="black", capsize=3)
    ax.axvline(ref, color="black", lw=0.8, ls="--")
    ax.set_yticks(y, list(df[label]))
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return fig


def predict_label_maps(checkpoint, images: list[np.ndarray], device: str = "cpu",
                       input_size: int | None = None) -> list[np.ndarray]:
    """Label maps (HxW uint8) a trained checkpoint predicts for RGB images, for figures only (the
    scores of every table come from ``lipstudy.evaluate``'s per-image confusion matrices), by the
    inference ``lipstudy parse`` uses."""
    from lipstudy.parse import parse_image
    from lipstudy.checkpoints import model_from_checkpoint
    from lipstudy.runtime import resolve_device

    model, _ = model_from_checkpoint(checkpoint, resolve_device(device))
    return [parse_image(model, img, input_size=input_size) for img in images]
