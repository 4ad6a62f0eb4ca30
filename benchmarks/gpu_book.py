"""The Python steps of benchmarks/gpu_book.sh that are not lipstudy commands.

    python benchmarks/gpu_book.py env --out OUT/env.json     # device, versions, the data canary
    python benchmarks/gpu_book.py report --profile gpu --bundle OUT/gpu.tar.xz --out OUT/runs.json

``env`` prints what the machine is (device, driver, torch, CUDA, cuDNN, Python, the packages the
synthetic data depends on) and renders the small datasets whose fingerprints the tests pin
(tests/test_synth.py): if this machine renders other bytes, its gpu data will have other
fingerprints and its bundle will be refused where the book is built, which is worth knowing before
spending the GPU's minutes. ``report`` lists every run of the profile's book with its training time
and speed, and whether the bundle holds it: what the next sizing of the gpu profile starts from.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import torch

from _common import write_result

CANARY = {
    "lip": "7a3c6b3ee5040c53bd8481e1c70622bec810f429322399fcf590fad987427335",
    "ppp": "b9ae5e452a76271e2e5d38516de43c923fc5587a67d021d0d25f1ffbdb43489f",
    "atr": "224263d686cb9ae8b0a01767d4a275b8d1ddc6ec24a927bcb5c1b440a0c9a4c8",
}
"""The fingerprints of tests/test_synth.py's pinned datasets (6 + 2 + 2 images of 64 px, seed 0, per
style); a test keeps the two in agreement."""


def canary() -> dict:
    """Render the pinned small datasets here; ``{style: True if the bytes are the pinned ones}``."""
    from lipstudy.data.synth import generate

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for style, pinned in CANARY.items():
            m = generate(Path(tmp) / style, train=6, val=2, test=2, seed=0, style=style, max_side=64, progress=False)
            out[style] = m["fingerprint"] == pinned
    return out


def environment() -> dict:
    gpu = torch.cuda.is_available()
    versions = {}
    for name in ("numpy", "pillow", "scipy", "pandas", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"device": torch.cuda.get_device_name(0) if gpu else f"CPU {platform.processor() or platform.machine()}",
            "cuda": torch.version.cuda if gpu else None,
            "cudnn": torch.backends.cudnn.version() if gpu else None,
            "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if gpu else None,
            "torch": torch.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "packages": versions,
            "numpy_disabled_cpu_features": os.environ.get("NPY_DISABLE_CPU_FEATURES")}


def report(profile, bundle) -> dict:
    """Every run of the profile's book: finished here or not, in the bundle or not, its times."""
    from lipstudy.bundles import read_manifest
    from lipstudy.export import bundle_runs
    from lipstudy.store import is_finished, key_plan
    from lipstudy.paths import runs_dir

    in_bundle = set()
    if bundle and Path(bundle).is_file():
        manifest = read_manifest(bundle)
        in_bundle = {r["key"] for r in manifest["runs"]}
    rows = []
    for run in bundle_runs(profile):
        key = key_plan(run, profile).key
        d = runs_dir() / key
        log = json.loads((d / "train_log.json").read_text()) if (d / "train_log.json").is_file() else []
        prov = json.loads((d / "provenance.json").read_text()) if (d / "provenance.json").is_file() else {}
        rows.append({"run": run.label, "dataset": run.dataset, "seed": run.seed, "key": key,
                     "finished": is_finished(d), "in_bundle": key in in_bundle, "epochs_done": len(log),
                     "train_seconds": sum(r["seconds"] for r in log),
                     "images_per_s": log[-1]["images_per_s"] if log else None,
                     "wall_time_s": prov.get("wall_time_s"), "start": prov.get("start"), "end": prov.get("end")})
    return {"profile": str(profile), "runs": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("env", help="device, versions and the data canary")
    e.add_argument("--out", required=True)
    r = sub.add_parser("report", help="the profile's runs: finished, bundled, their times")
    r.add_argument("--profile", required=True)
    r.add_argument("--bundle")
    r.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.command == "env":
        env = environment()
        for k, v in env.items():
            print(f"{k:30s} {v}")
        env["data_canary"] = canary()
        same = all(env["data_canary"].values())
        print(f"{'synthetic data as pinned':30s} {env['data_canary']}")
        if not same:
            print("WARNING: this machine renders the synthetic data differently from the pinned fingerprints: "
                  "a bundle trained here will be refused where the book is built (other numpy / Pillow / scipy?)")
        write_result("env", env, a.out)
        return 0
    rep = report(a.profile, a.bundle)
    done = sum(r["in_bundle"] for r in rep["runs"])
    for row in rep["runs"]:
        print(f"{row['run'][:44]:44s} {row['dataset']:8s} seed {row['seed']}  "
              f"{'bundled' if row['in_bundle'] else 'finished' if row['finished'] else 'NOT finished':12s} "
              f"train {row['train_seconds']:7.1f} s  wall {row['wall_time_s'] or 0:7.1f} s  "
              f"{row['images_per_s'] or 0:8.1f} img/s")
    print(f"{done} of {len(rep['runs'])} runs of profile {a.profile} are in the bundle")
    write_result("runs", {**rep, "bundled": done}, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
