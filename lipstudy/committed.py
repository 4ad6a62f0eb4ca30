"""Installing a committed one-run bundle: a run the checkout ships (the synthetic backbone,
:mod:`lipstudy.backbones`; the runs of ``Profile.shipped``, :mod:`lipstudy.shipped`) made a finished
run of ``results/runs`` by :func:`lipstudy.bundles.import_bundle`, which recomputes its key here,
or left for the scheduler to train when the file is absent, refused or not wanted."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .store import is_finished, key_plan
from .paths import runs_dir
from .profiles import get_profile
from .runs import Run


def wants_training(env: str) -> bool:
    """Whether environment variable ``env`` asks to train here (set to anything but "" or "0")."""
    return os.environ.get(env, "") not in ("", "0")


def install_run(run: Run, profile, data, path: Path, env: str, what: str, log=print) -> str:
    """Make ``run`` a finished run of ``results/runs`` from its committed file ``path`` when it is
    not one yet. Returns "finished" (already here), "imported", or "train" (``path`` absent or
    refused, or ``$env`` set: the scheduler then trains it, as any run). ``what`` names it in the log."""
    from .bundles import BundleError, import_bundle

    prof = get_profile(profile)
    plan = key_plan(run, prof, data if run.dataset == "lip" else None)
    if is_finished(runs_dir() / plan.key):
        return "finished"
    if wants_training(env):
        log(f"[{what}] ${env} is set: training {plan.key} here")
        return "train"
    if not path.is_file():
        log(f"[{what}] no committed {what} of key {plan.key} ({path} is absent: this checkout's settings, "
            f"engine or generated data differ from the committed run's); training it here")
        return "train"
    try:
        import_bundle(path, data if run.dataset == "lip" else None, log=log)
    except BundleError as err:
        log(f"[{what}] the committed {what} was refused ({err}); training it here")
        return "train"
    return "imported"


def run_origin(run_dir: Path) -> dict:
    """A finished run folder's origin: key, imported (bundle name or None), commit, machine, trained
    (end time), minutes, val_miou."""
    prov = json.loads((run_dir / "provenance.json").read_text())
    imported = run_dir / "imported.json"
    return {"key": run_dir.name,
            "imported": json.loads(imported.read_text())["bundle"] if imported.is_file() else None,
            "commit": prov.get("git", {}).get("commit"), "machine": prov.get("device"),
            "trained": prov.get("end"),
            "minutes": round(float(prov.get("train_seconds", prov.get("wall_time_s", 0.0))) / 60, 1),
            "val_miou": json.loads((run_dir / "metrics.json").read_text())["mean_iou"]}
