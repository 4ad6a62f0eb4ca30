"""How the study's numbers depend on its training budget.

A verdict computed from small models may be an artefact of the budget: an ordering of baselines
or an SSL gain that flips when the models train longer. :func:`summarise` reads a profile's
finished runs (it never trains) and reports, for the four baselines and DeepLabV2 / Attention +
SSL, the validation mean IoU against the training compute that produced it, in one accounting for
every profile:

- *fine-tuning*: the images (and minutes) of the run itself and of the run it fine-tunes (a stage-2
  run's stage-1 run), the compute the paper's own 30 + 20 epochs count;
- *total*: fine-tuning plus the whole of the synthetic backbone's pretraining, which the paper's
  ImageNet weights stand in for (counted once per run, whatever the number of runs that share it).

``lipstudy budget --profile P`` writes it to ``results/budget/<P>.json``, a small file that is
committed, so the book can plot every budget without retraining. The file records the recipe its runs
trained with (:func:`recipe_of`: everything but the epochs); :func:`load_all` leaves out a summary
whose recipe is not its profile's any more (trained before the recipe changed), and :func:`stale`
names them, so a budget trend never mixes recipes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_write_json
from .data.roots import DataMissing
from .store import finished_key, run_settings
from .paths import results_dir, runs_dir
from .profiles import PROFILES, get_profile
from .runs import Run, paper_runs, profile_seeds

COLUMNS = ["profile", "method", "seed", "val_miou", "images_finetune", "images_total", "minutes_finetune",
           "minutes_total", "device"]
ACCOUNTS = {"images_finetune": "fine-tuning images (the run and its stage-1 run)",
            "images_total": "total images (fine-tuning + the synthetic backbone's pretraining)"}


def recipe_of(profile) -> str:
    """A short hash of what ``profile``'s runs train with apart from their epochs: the settings that
    identify a stage-1 DeepLabV2 and Attention run and a stage-2 SSL run (:func:`lipstudy.store.run_settings`,
    networks' versions included), without their seed and epochs."""
    prof = get_profile(profile)
    runs = (Run("deeplabv2"), Run("attention"), Run("deeplabv2", "paper", stage=2))
    blob = [run_settings(r, prof)["profile"] | {"architecture": run_settings(r, prof).get("architecture")}
            for r in runs]
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_cost(run_dir: Path) -> tuple[float, float]:
    """(images seen, training minutes) of one finished run folder, from its training log."""
    log = json.loads((run_dir / "train_log.json").read_text()) if (run_dir / "train_log.json").is_file() else []
    cfg = json.loads((run_dir / "config.json").read_text())["train"]
    images = log[-1]["step"] * cfg["batch_size"] if log else 0
    # the training log's per-epoch seconds: training only (wall time would add the evaluation)
    return float(images), float(sum(row["seconds"] for row in log)) / 60


def summarise(profile, data=None, seeds=None) -> pd.DataFrame:
    """One row per finished method x seed of ``profile`` (see the module docstring)."""
    prof = get_profile(profile)
    folder = runs_dir()
    rows = []
    for seed in profile_seeds(prof, seeds):
        for method, run in paper_runs(seed).items():
            try:
                key = finished_key(run, prof, data)
            except DataMissing:  # data never generated: no run of it is finished either
                key = None
            if key is None:
                continue
            cost = {"finetune": np.array(run_cost(folder / key)), "backbone": np.zeros(2)}
            parent = json.loads((folder / key / "config.json").read_text()).get("init_run")
            while parent:  # a stage-2 run's stage-1 run, a stage-1 run's pretrained backbone
                p_cfg = json.loads((folder / parent / "config.json").read_text())
                cost["backbone" if p_cfg["run"]["model"] == "backbone" else "finetune"] += run_cost(folder / parent)
                parent = p_cfg.get("init_run")
            metrics = json.loads((folder / key / "metrics.json").read_text())
            prov = json.loads((folder / key / "provenance.json").read_text())
            total = cost["finetune"] + cost["backbone"]
            rows.append({"profile": prof.name, "method": method, "seed": seed, "val_miou": metrics["mean_iou"],
                         "images_finetune": cost["finetune"][0], "images_total": total[0],
                         "minutes_finetune": cost["finetune"][1], "minutes_total": total[1],
                         "device": prov.get("device")})
    return pd.DataFrame(rows, columns=COLUMNS)


def train(profile, data=None, device: str = "auto") -> None:
    """Train the runs :func:`summarise` reads (and what they start from) that are not finished."""
    from .process_pool import ensure_all, training_jobs

    prof = get_profile(profile)
    runs = [run for seed in prof.seeds for run in paper_runs(seed).values()]
    ensure_all(runs, prof, data, device, jobs=training_jobs(device))


def budget_dir() -> Path:
    """Where the budget summaries are written and read: ``<results>/budget``."""
    return results_dir() / "budget"


def write(profile, data=None) -> Path:
    """``results/budget/<profile>.json`` from the profile's finished runs."""
    prof = get_profile(profile)
    df = summarise(prof, data)
    if df.empty:
        raise ValueError(f"profile {prof.name!r} has no finished runs in results/runs: build its book first")
    return atomic_write_json(budget_dir() / f"{prof.name}.json", {"profile": prof.name, "recipe": recipe_of(prof),
                                                                  "rows": df.to_dict("records")})


def _files(root: Path | None) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root or budget_dir()).glob("*.json"))]


def _current(doc: dict) -> bool:
    return doc["profile"] in PROFILES and doc.get("recipe") == recipe_of(doc["profile"])


def load_all(root: Path | None = None) -> pd.DataFrame:
    """Every committed budget file trained with its profile's present recipe (:func:`recipe_of`), one row
    per profile x method x seed; the others are :func:`stale`."""
    frames = [pd.DataFrame(doc["rows"]) for doc in _files(root) if _current(doc)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def stale(root: Path | None = None) -> list[str]:
    """The profiles whose committed budget file was trained with another recipe than the profile's
    present one (or records none): ``lipstudy budget --profile P --train`` rebuilds it."""
    return [doc["profile"] for doc in _files(root) if not _current(doc)]


def family(profile) -> list[str]:
    """The profiles that train on the same data and backbone as ``profile`` and differ only in
    their budget (for the cpu profile: cpu-short, cpu, cpu-long), fewest stage-1 epochs first."""
    prof = get_profile(profile)
    same = [p for p in PROFILES.values() if (p.lip_data, p.pretrain, p.width, p.crop, p.recipe, p.finetune)
            == (prof.lip_data, prof.pretrain, prof.width, prof.crop, prof.recipe, prof.finetune)]
    return [p.name for p in sorted(same, key=lambda p: (p.epochs_stage1, p.epochs_stage2))]


def trend(df: pd.DataFrame, profiles) -> pd.DataFrame:
    """Per method: validation mean IoU (%) at each of ``profiles`` (mean over seeds) and the points
    it gains per doubling of fine-tuning compute and of total compute (:data:`ACCOUNTS`): the
    least-squares slopes of mean IoU (%) against log2 of the images of each account over those
    profiles. ``profiles`` should share their data and backbone (the cpu family), so that only the
    fine-tuning budget differs. A method still gaining several points per doubling has not
    converged: its order against one that gains fewer may change with more training. Methods with
    fewer than two of the profiles are left out."""
    profiles = list(profiles)
    sub = df[df["profile"].isin(profiles)]
    means = sub.groupby(["method", "profile"], sort=False).agg(
        miou=("val_miou", "mean"), **{a: (a, "mean") for a in ACCOUNTS}).reset_index()
    slopes = {"images_finetune": "points per doubling of fine-tuning",
              "images_total": "points per doubling of total compute"}
    rows = []
    for method, m in means.groupby("method", sort=False):
        if len(m) < 2:
            continue
        at = dict(zip(m["profile"], 100 * m["miou"]))
        rows.append({"method": method, **{f"{p} (%)": at.get(p, np.nan) for p in profiles},
                     **{name: float(np.polyfit(np.log2(m[a].to_numpy(float)), 100 * m["miou"].to_numpy(float), 1)[0])
                        for a, name in slopes.items()}})
    out = pd.DataFrame(rows, columns=["method", *[f"{p} (%)" for p in profiles], *slopes.values()])
    return out.set_index("method")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lipstudy budget", description="Write results/budget/<profile>.json: "
                                "validation mean IoU against training compute of a profile's finished runs.")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data", default=None)
    p.add_argument("--train", action="store_true",
                   help="first train what is missing of the summarised runs (the four baselines and the two "
                        "SSL runs, every seed of the profile), side by side as the book does")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    try:
        if a.train:
            train(a.profile, a.data, a.device)
        print(write(a.profile, a.data))
    except ValueError as e:
        print(f"lipstudy budget: {e}")
        return 2
    return 0
