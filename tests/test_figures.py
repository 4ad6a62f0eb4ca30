"""lipstudy.figures: each function drawn on matplotlib's Agg canvas, and what it drew read back
(bar heights, error bar ends, line data, annotations, images, legends) against known values."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from lipstudy import figures  # noqa: E402
from lipstudy.labels import LIP_CLASSES, LIP_PALETTE, colorize  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def bar_heights(ax) -> list[list[float]]:
    """Heights of each bar container's bars (one container per hue level)."""
    return [[float(b.get_height()) for b in c] for c in ax.containers if hasattr(c, "patches")]


def errorbar_segments(ax) -> list[np.ndarray]:
    return [seg for coll in ax.collections if isinstance(coll, LineCollection) for seg in coll.get_segments()]


def test_grouped_bars_draws_one_bar_per_row():
    df = pd.DataFrame({"class": ["hat", "hair", "face"] * 2, "iou": [10.0, 20.0, 30.0, 15.0, 25.0, 35.5],
                       "source": ["paper"] * 3 + ["ours"] * 3})
    fig = figures.grouped_bars(df, "class", "iou", "source", title="T", ylabel="IoU (%)", annotate=True)
    ax = fig.axes[0]
    assert bar_heights(ax) == [[10.0, 20.0, 30.0], [15.0, 25.0, 35.5]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["hat", "hair", "face"]
    assert ax.get_title() == "T" and ax.get_ylabel() == "IoU (%)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["paper", "ours"]
    assert sorted(t.get_text() for t in ax.texts) == sorted(["10.0", "20.0", "30.0", "15.0", "25.0", "35.5"])


def test_paper_vs_ours_bars_colours_and_values():
    paper = pd.Series([42.92, 41.64], index=["Attention", "DeepLabV2"])
    ours = pd.Series([30.0, 31.25], index=["Attention", "DeepLabV2"])
    ax = figures.paper_vs_ours_bars(paper, ours, title="Table 2").axes[0]
    assert bar_heights(ax) == [[42.92, 41.64], [30.0, 31.25]]
    paper_bars, ours_bars = (c for c in ax.containers if hasattr(c, "patches"))
    # seaborn draws bars at saturation 0.75 of the palette colour (the grey has none to lose)
    for bars, source in ((paper_bars, "paper"), (ours_bars, "ours")):
        colour = sns.desaturate(figures.SOURCE_PALETTE[source], 0.75)
        assert all(b.get_facecolor()[:3] == pytest.approx(to_rgb(colour)) for b in bars), source
    assert paper_bars[0].get_facecolor()[:3] == pytest.approx(to_rgb(figures.SOURCE_PALETTE["paper"]))
    assert {t.get_text() for t in ax.texts} == {"42.9", "41.6", "30.0", "31.2"}


def test_bars_with_ci_draws_intervals_and_reference():
    df = pd.DataFrame({"subset": ["all", "back", "all", "back"], "method": ["A", "A", "B", "B"],
                       "v": [40.0, 30.0, 45.0, 35.0], "lo": [38.0, 25.0, 44.0, np.nan], "hi": [41.0, 33.0, 47.0, np.nan]})
    ax = figures.bars_with_ci(df, "subset", "v", "method", "lo", "hi", ref=42.0).axes[0]
    assert bar_heights(ax) == [[40.0, 30.0], [45.0, 35.0]]
    # Vertical error bars from low to high at each bar's centre; a missing interval has no length.
    spans = sorted((round(s[0, 0], 6), float(min(s[:, 1])), float(max(s[:, 1]))) for s in errorbar_segments(ax))
    centres = [-0.2, 0.8, 0.2, 1.2]  # two hues: bar width 0.4, centres at x -/+ 0.2
    assert spans == sorted([(pytest.approx(centres[0]), 38.0, 41.0), (pytest.approx(centres[1]), 25.0, 33.0),
                            (pytest.approx(centres[2]), 44.0, 47.0), (pytest.approx(centres[3]), 35.0, 35.0)],
                           key=lambda t: t[0].expected)
    assert any(list(line.get_ydata()) == [42.0, 42.0] for line in ax.lines)  # the reference line


def test_count_bars():
    counts = pd.Series([120, 0, 37], index=["hat", "hair", "glove"])
    ax = figures.count_bars(counts, title="Fig. 3").axes[0]
    assert [p.get_height() for p in ax.patches] == [120.0, 0.0, 37.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["hat", "hair", "glove"]
    assert ax.get_ylabel() == "images"


def test_heatmap_annotates_every_cell():
    table = pd.DataFrame([[1.234, 50.0], [99.96, np.nan]], index=["SegNet", "Attention"], columns=["hat", "hair"])
    fig = figures.heatmap(table, fmt=".1f", cbar_label="IoU (%)")
    ax = fig.axes[0]
    mesh = ax.collections[0]
    assert np.ma.getdata(mesh.get_array()).reshape(2, 2)[0].tolist() == [1.234, 50.0]
    assert [t.get_text() for t in ax.texts] == ["1.2", "50.0", "100.0"]  # the NaN cell is left blank
    assert fig.axes[1].get_ylabel() == "IoU (%)"  # the colour bar


def test_line_plot_one_line_per_hue():
    df = pd.DataFrame({"size": [153, 321, 513] * 2, "miou": [36.5, 37.6, 37.3, 38.3, 39.0, 39.8],
                       "method": ["DeepLabV2"] * 3 + ["DeepLabV2 + SSL"] * 3})
    ax = figures.line_plot(df, "size", "miou", "method", xlabel="input size").axes[0]
    lines = [l for l in ax.get_lines() if len(l.get_xdata()) == 3]
    assert [list(l.get_ydata()) for l in lines] == [[36.5, 37.6, 37.3], [38.3, 39.0, 39.8]]
    assert all(list(l.get_xdata()) == [153, 321, 513] for l in lines)
    assert ax.get_xlabel() == "input size"


def test_ci_errorbar_table_points_and_intervals():
    df = pd.DataFrame({"claim": ["first", "second", "third"], "est": [2.0, -1.0, 0.5],
                       "lo": [1.0, -3.0, np.nan], "hi": [4.0, -0.5, np.nan]})
    ax = figures.ci_errorbar_table(df, "est", "lo", "hi", "claim", xlabel="pp").axes[0]
    # First row on top: y = 2, 1, 0.
    assert [t.get_text() for t in ax.get_yticklabels()] == ["first", "second", "third"]
    assert list(ax.get_yticks()) == [2, 1, 0]
    points = next(l for l in ax.get_lines() if len(l.get_xdata()) == 3)
    assert list(points.get_xdata()) == [2.0, -1.0, 0.5] and list(points.get_ydata()) == [2, 1, 0]
    spans = sorted((float(s[0, 1]), float(min(s[:, 0])), float(max(s[:, 0]))) for s in errorbar_segments(ax))
    assert spans == [(0.0, 0.5, 0.5), (1.0, -3.0, -0.5), (2.0, 1.0, 4.0)]
    assert any(list(l.get_xdata()) == [0.0, 0.0] for l in ax.get_lines())  # the zero line


def test_image_grid_of_parsings_and_legend():
    image = np.full((4, 6, 3), 100, np.uint8)
    gt = np.zeros((4, 6), np.uint8)
    gt[1:3, 1:3] = 13
    pred = gt.copy()
    pred[0, 0] = 2
    row = [image, colorize(gt), colorize(pred)]
    classes = figures.present_classes(gt, pred)
    assert classes == [2, 13]
    fig = figures.image_grid([row, [image]], row_titles=["a", "b"], col_titles=["image", "truth", "ours"],
                             legend_classes=classes)
    axes = fig.axes
    assert len(axes) == 6
    drawn = [ax for ax in axes if ax.images]
    assert len(drawn) == 4  # three in the first row, one in the second
    assert np.array_equal(axes[1].images[0].get_array(), row[1])
    assert [axes[j].get_title() for j in range(3)] == ["image", "truth", "ours"]
    assert axes[0].get_ylabel() == "a" and axes[3].get_ylabel() == "b"
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [LIP_CLASSES[2], LIP_CLASSES[13]]
    assert [tuple(h.get_facecolor()[:3]) for h in legend.legend_handles] == \
        [pytest.approx(tuple(LIP_PALETTE[c] / 255.0)) for c in classes]


def test_present_classes_leaves_out_background_and_ignore():
    assert figures.present_classes(np.array([[0, 255, 5], [5, 19, 0]]), np.array([[3]])) == [3, 5, 19]
    assert figures.present_classes(np.zeros((2, 2)), ignore=(255,)) == [0]


def test_predict_label_maps_with_a_known_network(tmp_path):
    """A network whose output is the constant logit vector of its last bias predicts that class
    everywhere, at each image's own size."""
    from lipstudy.config import TrainConfig, build_network

    cfg = TrainConfig(model="deeplabv2", width=0.0625, dropout=0.0)
    model = build_network(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.aspp[0].fc8.bias[7] = 1.0
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, path)
    images = [np.zeros((21, 17, 3), np.uint8), np.full((9, 30, 3), 255, np.uint8)]
    maps = figures.predict_label_maps(path, images, device="cpu", input_size=16)
    assert [m.shape for m in maps] == [(21, 17), (9, 30)] and all(m.dtype == np.uint8 for m in maps)
    assert all((m == 7).all() for m in maps)


def test_grouped_bars_with_many_hues_keeps_labels_apart_and_the_legend_off_the_bars():
    df = pd.DataFrame({"part": ["head", "torso"] * 4, "IoU (%)": [50.0, 40.0, 52.0, 41.0, 55.0, 44.0, 49.0, 39.0],
                       "method": [m for m in "ABCD" for _ in range(2)]})
    fig = figures.grouped_bars(df, "part", "IoU (%)", "method", annotate=True, legend_outside=True)
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text()]
    assert len(labels) == 8 and all(t.get_rotation() == 90 for t in labels)
    assert ax.get_ylim()[1] >= 55.0 * 1.15 - 1e-6  # room above the tallest bar for its label
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the axes: it covers no bar
    # two hues: level labels, the legend inside (the default)
    two = figures.grouped_bars(df[df.method.isin(["A", "B"])], "part", "IoU (%)", "method", annotate=True)
    assert all(t.get_rotation() == 0 for t in two.axes[0].texts if t.get_text())
