"""Tables and provenance blocks for the book: paper | ours | difference, and where "ours" came from.

Every table in the book compares the number the paper prints (``lipstudy.paper``) with the number
this run measured, and names the data (synthetic benchmark or a real dataset, with the manifest
fingerprint) and the profile behind "ours". Scores arrive as fractions (``lipstudy.metrics``) and are
shown as percentages, like the paper. Every chapter ends with :func:`provenance_block`.
"""
from __future__ import annotations

import html
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_save

PACKAGES = ("torch", "numpy", "scipy", "pandas", "pillow", "scikit-image", "matplotlib", "seaborn",
            "papermill", "jupytext", "jupyter-book", "myst-nb")
WHICH = ("paper", "ours", "difference")


# ---------------------------------------------------------------------------------------------
# data labels


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


def ours_caption(root, profile: str, what: str = "") -> str:
    """One sentence (HTML, for a table caption) naming the data and profile behind "ours"."""
    synth = is_synthetic(root)
    warn = ("These are <b>not LIP numbers</b>: the paper's column is LIP, ours is the synthetic benchmark."
            if synth else "")
    lead = f"{what} " if what else ""
    return f"{lead}\"Ours\": profile <code>{html.escape(profile)}</code>, {html.escape(data_label(root))}. {warn}".strip()


# ---------------------------------------------------------------------------------------------
# tables


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


def long_compare(paper: pd.DataFrame, ours: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """:func:`compare` for wide tables (Table 4): one row per (method, column), columns
    paper | ours | difference, so 20 classes do not make 60 columns."""
    wide = compare(paper, ours, columns)
    out = wide.stack(level=0, future_stack=True)
    out.index = out.index.set_names([paper.index.name or "method", "column"])
    return out[list(WHICH)]


def style(table: pd.DataFrame, caption: str | None = None, digits: int = 2):
    """A pandas Styler: fixed decimals, "-" for missing, differences in colour."""
    def colour(v):
        if not isinstance(v, (int, float)) or np.isnan(v):
            return ""
        return "color: #1a7f37" if v > 0 else ("color: #cf222e" if v < 0 else "")

    st = table.style.format(precision=digits, na_rep="-")
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
# provenance


def package_versions(names=PACKAGES) -> dict[str, str]:
    """Installed versions of the packages the numbers depend on."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def environment() -> dict:
    """Where this notebook ran: Python, platform, CPU count, accelerator, package versions."""
    env = {"python": sys.version.split()[0], "platform": platform.platform(),
           "cpus": os.cpu_count(), "device": "cpu"}
    try:
        import torch

        if torch.cuda.is_available():
            env["device"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    env["packages"] = package_versions()
    return env


def _first(d: dict, *keys, default=None):
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return default


def run_row(res) -> dict:
    """One run's provenance as a flat row (key, what it is, commit, dirty, device, duration)."""
    prov = dict(getattr(res, "provenance", None) or {})
    cfg = dict(getattr(res, "config", None) or {})
    run = cfg.get("run", cfg)
    git = prov.get("git", {}) if isinstance(prov.get("git"), dict) else {}
    wall = _first(prov, "wall_time_s", "wall_s", "seconds", "duration_s")
    return {
        "run": Path(getattr(res, "dir", "")).name,
        "model": _first(run, "model", default=""),
        "loss": _first(run, "loss", default=""),
        "dataset": _first(run, "dataset", default=""),
        "stage": _first(run, "stage", default=""),
        "seed": _first(run, "seed", default=""),
        "commit": str(_first(prov, "commit", "git_commit", default=_first(git, "commit", default="")))[:10],
        "dirty": _first(prov, "dirty", "git_dirty", default=_first(git, "dirty", default="")),
        "device": _first(prov, "device", default=""),
        "wall time (s)": round(float(wall), 1) if wall not in (None, "") else np.nan,
        "started": _first(prov, "start", "started", "start_time", default=""),
        "finished": _first(prov, "end", "finished", "end_time", default=""),
    }


def provenance_frame(results) -> pd.DataFrame:
    """One row per run (see :func:`run_row`), in the order given, duplicates removed."""
    seen, rows = set(), []
    for res in results:
        key = str(getattr(res, "dir", id(res)))
        if key in seen:
            continue
        seen.add(key)
        rows.append(run_row(res))
    return pd.DataFrame(rows)


def provenance_html(results, data_roots=(), profile: str | None = None, seconds: float | None = None) -> str:
    """The HTML of a chapter's closing provenance block."""
    env = environment()
    frame = provenance_frame(results)
    pk = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    items = [f"<b>profile</b>: {html.escape(str(profile))}" if profile else None,
             *(f"<b>data</b>: {html.escape(data_label(r))}" for r in data_roots),
             f"<b>this notebook ran on</b>: {html.escape(env['platform'])}, Python {env['python']}, "
             f"{env['cpus']} CPUs, device {html.escape(str(env['device']))}",
             f"<b>packages</b>: {html.escape(pk)}",
             f"<b>notebook time</b>: {seconds:.1f} s" if seconds is not None else None]
    dirty = frame["dirty"].astype(str).str.lower().isin(["true", "1"]).any() if len(frame) else False
    if dirty:
        items.append("<b>warning</b>: some runs were made from a working tree with uncommitted changes "
                     "(dirty = True): their commit alone does not reproduce them.")
    lis = "".join(f"<li>{i}</li>" for i in items if i)
    table = (frame.to_html(index=False, na_rep="-", border=0) if len(frame)
             else "<p>This chapter used no training runs.</p>")
    return (f"<details class='lipstudy-provenance' open><summary><b>Provenance</b> "
            f"({len(frame)} run{'s' if len(frame) != 1 else ''})</summary><ul>{lis}</ul>{table}</details>")


def provenance_block(results, data_roots=(), profile: str | None = None, seconds: float | None = None):
    """Display a chapter's provenance: its runs' commit and dirty flag, package versions, device,
    durations, and the data behind them (call it in the chapter's last cell)."""
    from IPython.display import HTML

    return HTML(provenance_html(results, data_roots, profile, seconds))


class _RunFiles:
    """A finished run read from its folder (``config.json``, ``provenance.json``)."""

    def __init__(self, path: Path):
        self.dir = path
        self.config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
        self.provenance = (json.loads((path / "provenance.json").read_text())
                           if (path / "provenance.json").is_file() else {})


def all_runs(results: str | os.PathLike | None = None) -> pd.DataFrame:
    """Provenance of every finished run under ``<results>/runs`` (a run is finished when its
    ``metrics.json`` exists: runs write it last, by rename), oldest first."""
    from lipstudy.runner import results_root

    runs_dir = results_root(results) / "runs"
    found = sorted((p for p in runs_dir.glob("*") if (p / "metrics.json").is_file()),
                   key=lambda p: (p / "metrics.json").stat().st_mtime) if runs_dir.is_dir() else []
    return provenance_frame([_RunFiles(p) for p in found])


def benchmark_table(directory: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per figure in the benchmark result files ``results/benchmarks/*.json`` (written by
    ``benchmarks/*.py``): which benchmark, the device that produced it, the settings and the value,
    with the paper's figure or the project's goal where there is one (the paper's only speed
    figure: 0.5 s per test image on a TITAN X, Section 5.1). Empty when no file exists."""
    from . import paper

    directory = Path(directory) if directory else Path(__file__).resolve().parents[1] / "results" / "benchmarks"
    rows = []

    def add(bench, r, setting, figure, value, reference=""):
        rows.append({"benchmark": bench, "device": r.get("device"), "torch": r.get("torch"),
                     "settings": setting, "figure": figure, "value": value, "paper / goal": reference})

    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable benchmark result ({e})") from None
        name = path.stem
        if name == "train_throughput":
            setting = f"width {r['width']}, {r['input_size']}x{r['input_size']}, batch {r['batch']}, {r['precision']}"
            for m in r["models"]:
                add(name, r, setting, f"{m['model']} training images/s", round(m["train_images_per_s"], 1))
                add(name, r, setting, f"{m['model']} MFU (vs {r['matmul_dtype']} matmul "
                    f"{r['matmul_flop_per_s'] / 1e12:.2f} TFLOP/s)", f"{100 * m['mfu']:.1f}%", ">= 50% on a GPU")
        elif name == "eval_throughput":
            setting = f"{r['model']} width {r['width']}, {r['size']}x{r['size']}, {r['precision']}"
            add(name, r, f"{r['size']}x{r['size']}", "per-image confusion matrices/s",
                round(r["confusion_matrices_per_s"]), ">= 20,000 on a GPU")
            for k, v in r["inference_images_per_s"].items():
                ref = (f"{1 / paper.TEST_TIME_S:g} (paper, TITAN X, width 1)" if k == "single"
                       else ">= 1,500 on an H100 at width 1" if k.startswith("batched") else "")
                add(name, r, setting, f"inference images/s, {k}", round(v, 1), ref)
        elif name == "ssl_overhead":
            setting = f"deeplabv2 width {r['width']}, {r['input_size']}x{r['input_size']}, batch {r['batch']}"
            add(name, r, setting, "joint term, share of a training step",
                f"{100 * r['joint_term_fraction_of_step']:.2f}%", "<= 3%")
            add(name, r, setting, "paired step overhead (median)", f"{100 * r['paired_step_overhead']:+.2f}%", "<= 3%")
    return pd.DataFrame(rows, columns=["benchmark", "device", "torch", "settings", "figure", "value", "paper / goal"])


# ---------------------------------------------------------------------------------------------
# dataset statistics (Section 2)


def images_per_label(root, splits=("train", "val"), kind: str = "lip") -> pd.Series:
    """Fig. 3: how many images contain each label (background left out), over ``splits``.

    Reads the label maps only (no JPEG decoding)."""
    from lipstudy.data.datasets import open_dataset
    from lipstudy.data.decode import read_label
    from lipstudy.labels import DATASETS

    classes = DATASETS[kind]["classes"]
    counts = np.zeros(len(classes), dtype=np.int64)
    for split in splits:
        ds = open_dataset(root, split, kind=kind)
        for i in range(len(ds)):
            path = ds.label_path(i)
            if path is None:
                raise ValueError(f"{root}: split {split!r} has no labels (image {ds.ids[i]})")
            lab = read_label(path, num_classes=len(classes))
            counts += np.bincount(lab[lab < len(classes)].ravel(), minlength=len(classes)) > 0
    return pd.Series(counts[1:], index=list(classes[1:]), name="images")


def image_attributes(root, real_splits=("val",)) -> pd.DataFrame:
    """Per-image visibility attributes indexed by id: the synthetic benchmark's attributes.csv, or
    for real data (no attribute file) attributes derived from the label maps of ``real_splits``
    (``lipstudy.data.attributes``), with the person area (non-background pixels) and the size bin
    of Section 5.4. Derived attributes are cached under ``<results>/cache/``."""
    path = Path(root) / "attributes.csv"
    if path.is_file():
        df = pd.read_csv(path, dtype={"id": str, "split": str, "size_bin": str})
        return df.set_index("id", drop=False)
    import hashlib

    from lipstudy.data.attributes import derive_dataset_attributes
    from lipstudy.data.datasets import open_dataset
    from lipstudy.data.decode import read_label
    from lipstudy.paper import TABLE6_SIZE_BINS
    from lipstudy.runner import results_root

    datasets = {s: open_dataset(root, s, kind="lip") for s in real_splits}
    key = hashlib.sha256(json.dumps([str(Path(root).resolve())] + [[s, d.ids] for s, d in datasets.items()])
                         .encode()).hexdigest()[:16]
    cache = results_root() / "cache" / f"attributes-{key}.csv"
    if cache.is_file():
        return pd.read_csv(cache, dtype={"id": str, "split": str, "size_bin": str}).set_index("id", drop=False)
    parts = []
    for split, ds in datasets.items():
        df = derive_dataset_attributes(ds)
        areas = []
        for i in range(len(ds)):
            lab = read_label(ds.label_path(i))
            areas.append(int(((lab != 0) & (lab != 255)).sum()))
        df.insert(1, "split", split)
        df["person_area"] = areas
        df["size_bin"] = [next(b for b, (lo, hi) in TABLE6_SIZE_BINS.items() if lo <= a < hi) for a in areas]
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    atomic_save(cache, lambda tmp: df.to_csv(tmp, index=False), suffix=".csv")
    return df.set_index("id", drop=False)
# ---------------------------------------------------------------------------------------------
# scores of runs (fractions in, percent out)


SCORE_COLUMNS = {"Overall accuracy": "overall_acc", "Mean accuracy": "mean_acc", "Mean IoU": "mean_iou"}


def seed_mean(metrics_list) -> dict:
    """The mean over seeds of evaluation metrics dicts (overall_acc, mean_acc, mean_iou and the
    per_class_iou mapping); NaN classes are averaged over the seeds that have them."""
    out = {k: float(np.mean([m[k] for m in metrics_list])) for k in SCORE_COLUMNS.values()}
    names = list(metrics_list[0].get("per_class_iou", {}))
    with np.errstate(all="ignore"):
        import warnings

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


def stat_value(cms, stat: str = "mean_iou", index=None) -> float:
    """A ``metrics.stat_fn`` statistic of the summed per-image matrices (all, or a subset)."""
    from lipstudy import metrics

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
    from lipstudy import metrics

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
