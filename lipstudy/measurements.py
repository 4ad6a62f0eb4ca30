"""The committed measurements of ``results/benchmarks/`` as the reproducibility chapter's tables:
the engine's speed (``benchmarks/*.py``, each file naming the device that produced it) and the cpu
profile's operating-point search (``benchmarks/operating_point.py``)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import paper
from .paths import committed_results


def benchmark_table(directory: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per figure in the benchmark result files ``results/benchmarks/*.json`` and
    ``results/benchmarks/<machine>/*.json`` (written by
    ``benchmarks/*.py``): which benchmark, the device that produced it, the settings and the value,
    with the paper's figure or the project's goal where there is one (the paper's only speed
    figure: 0.5 s per test image on a TITAN X, Section 5.1). Empty when no file exists."""
    directory = Path(directory) if directory else committed_results("benchmarks")
    rows = []

    def add(bench, r, setting, figure, value, reference=""):
        rows.append({"benchmark": bench, "device": r.get("device"), "torch": r.get("torch"),
                     "settings": setting, "figure": figure, "value": value, "paper / goal": reference})

    # A machine's figures may sit in a folder of their own (results/benchmarks/gpu/, from benchmarks/gpu_book.sh).
    for path in sorted([*directory.glob("*.json"), *directory.glob("*/*.json")]) if directory.is_dir() else []:
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


def operating_point_table(path: Path | None = None) -> pd.DataFrame:
    """The cpu profile's operating-point search (``benchmarks/operating_point.py``): one row per
    setting, stage 1 of one baseline (DeepLabV2 unless the row says otherwise) on the synthetic val
    split, percentages and minutes."""
    path = path or committed_results("benchmarks") / "operating_point.json"
    if not path.is_file():
        return pd.DataFrame()
    doc = json.loads(path.read_text())
    rows = []
    for r in doc["rows"].values():
        pre = r.get("pretrain")
        recipe = r.get("recipe") or {}
        tune = r.get("finetune") or {}  # fine-tuning's own settings, on top of the recipe
        extra = ", ".join(f"{k} {v:.3g}" for k, v in sorted(tune.items()) if k != "optimizer")
        rows.append({
            "setting": r["setting"], "model": r.get("model", "deeplabv2"), "width": f"{r['width']:g}", "crop": r["crop"], "image side <=": r["max_side"],
            "optimiser": f"{tune.get('optimizer', recipe.get('optimizer', 'sgd'))} (lr {r['lr']:g})",
            "batch norm": bool(recipe.get("batch_norm")), "fine-tuning": extra or "-",
            # what the baseline inherits from the pretrained network: its conv layers, unless the row says
            "init": (f"synthetic pretraining ({pre['epochs']} ep x {pre['train']} img, "
                     f"{r.get('backbone', 'convs')})") if pre else "scratch",
            "epochs": r["epochs"], "train min": r["train_minutes"], "pretrain min": r.get("pretrain_minutes"),
            "min per book run": r["minutes_per_book_run"],
            "val mIoU (%)": round(100 * r["val_miou"], 1), "background IoU (%)": round(100 * r["background_iou"], 1),
            "drawn classes > 0": f"{r['drawn_classes_above_0']} / {r['drawn_classes']}",
        })
    return pd.DataFrame(rows).sort_values("val mIoU (%)").set_index("setting")
