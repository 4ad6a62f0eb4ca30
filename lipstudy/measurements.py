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
        if name.startswith("train_throughput"):
            setting = f"width {r['width']}, {r['input_size']}x{r['input_size']}, batch {r['batch']}, {r['precision']}"
            if r.get("profile"):  # the profile's own step (benchmarks/train_throughput.py --profile)
                setting = f"{r['profile']} profile's step, {setting}, {r['threads']} thread(s)"
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


def train_profile_tables(path: Path | None = None) -> dict[str, pd.DataFrame]:
    """The cpu profile's training step (``benchmarks/train_profile.py``): ``"shares"``, the share of
    a step's time per category for each model and thread count (percent), with its images/s; and
    ``"levers"``, each lever's images/s with it over without it, measured side by side, whether it
    leaves the trained weights bit-identical and whether the trainer uses it; and ``"book"``, from
    ``book_step.json`` beside it, two runs side by side trained by this checkout's package and an
    earlier commit's: images/s of the pair per epoch, and the seconds of the whole run (ratio:
    earlier over now, so above 1 is faster). Empty when the files (or parts) are missing."""
    path = path or committed_results("benchmarks") / "train_profile.json"
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    out = {}
    if "profile" in doc:
        rows = []
        for r in doc["profile"]["rows"]:
            model = r["model"] if r["loss"] == "off" else f"{r['model']} + SSL ({r['loss']})"
            rows.append({"model": model, "threads": r["threads"], "images/s": round(r["images_per_s"], 1),
                         **{k: round(100 * v, 1) for k, v in r["shares"].items()}})
        out["shares"] = pd.DataFrame(rows).set_index(["model", "threads"])
    if "levers" in doc:
        rows = []
        for r in doc["levers"]["rows"]:
            same = r.get("bit_identical")
            rows.append({"lever": r["lever"], "with / without": round(r["ratio"], 3),
                         "bit-identical weights": "-" if same is None else ("yes" if same else "no"),
                         "adopted": "yes" if r.get("adopted") else "no"})
        out["levers"] = pd.DataFrame(rows).set_index("lever")
    step = path.with_name("book_step.json")
    if step.is_file():  # benchmarks/book_step.py: whole runs against an earlier commit's package
        b = json.loads(step.read_text())
        a_, b_ = b["median"]["A"], b["median"]["B"]
        rows = [{"measure": f"epoch {e + 1}: images/s of the pair", b["commit"]: round(x, 1),
                 "this checkout": round(y, 1), "speed-up": round(y / x, 3)}
                for e, (x, y) in enumerate(zip(a_["images_per_s_by_epoch"], b_["images_per_s_by_epoch"]))]
        rows.append({"measure": f"whole run ({b['epochs']} epochs, setup included): seconds", b["commit"]:
                     round(a_["wall_s"], 1), "this checkout": round(b_["wall_s"], 1),
                     "speed-up": round(b["ratio_train_call"], 3)})
        out["book"] = pd.DataFrame(rows).set_index("measure")
    return out


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


def search_rows(name: str = "attention_search") -> dict[str, dict]:
    """The rows of a committed search (``results/benchmarks/<name>.json``, e.g.
    ``benchmarks/attention_search.py``) by setting, ``{}`` when the file is absent."""
    path = committed_results("benchmarks") / f"{name}.json"
    return json.loads(path.read_text())["rows"] if path.is_file() else {}


def search_miou(setting: str, seed: int = 0, name: str = "attention_search") -> str:
    """A searched setting's validation mean IoU as the deviations table cites it ("16.51%"), or
    "not measured" when the committed search has no such row."""
    row = search_rows(name).get(f"{setting} [seed {seed}]")
    return f"{row['val_miou']:.2f}%" if row else "not measured"


def attention_search_table() -> pd.DataFrame:
    """The search for Attention's weakness at the cpu budget (``benchmarks/attention_search.py``): one
    row per setting and seed, its validation mean IoU, the classes at >= 1% IoU, the limbs' IoU and,
    for attention networks, each scale's mean weight and the share of pixels switched to one scale."""
    rows = []
    for key, r in search_rows().items():
        att = r.get("attention") or {}
        iou = r["per_class_iou"]
        rows.append({"setting": key, "minutes": r["train_minutes"], "val mIoU": r["val_miou"],
                     "classes >= 1%": r["classes_at_1pct"],
                     "arms / legs": " / ".join(f"{iou[c]:.1f}" for c in ("left-arm", "right-arm", "left-leg", "right-leg")),
                     "weight per scale (1 / 0.75 / 0.5)": " / ".join(f"{w:.2f}" for w in att.get("mean_weight_per_scale", [])),
                     "pixels > 0.9 on one scale": att.get("share_above_0.9")})
    return pd.DataFrame(rows)
