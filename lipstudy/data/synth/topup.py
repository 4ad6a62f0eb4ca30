"""The challenge top-up: more validation images of the challenge types a split holds too few of,
for the claims about them (Section 3.2), evaluated and never trained on.

The cpu profile's 400 validation images hold 30 head-missed and 31 back-view images (LIP's rates,
6.7% and 8.6%), too few for a claim about them to mean much. Rendering a validation split large
enough to hold 50 of each (about 750 images) would be evaluated by every run several times over;
instead this renders candidates of the benchmark's own distribution from another seed and keeps
every candidate of a type still short of ``target`` (rejection sampling): given its type, a kept
image is distributed as the validation images of that type, so the top-up's images of a type may
join that type's validation images. They join no other subset (a kept head-missed image that is
also occluded would over-represent head-missed images among the occluded), nor the whole-set
averages: :class:`lipstudy.claims.interval.Evidence` counts them only in the subsets of the types
listed in the manifest's ``topped_up``.

The folder has the LIP layout with one split, ``val`` (ids ``synth_challenge_<index>``); its
``attributes.csv`` names their split ``challenge``. Candidates are rendered in index order and the
first index at which every type has its images ends the top-up, so the folder is byte-identical
whatever the number of workers.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from multiprocessing import Pool
from pathlib import Path

from lipstudy.data.synth.dataset import (
    CSV_COLUMNS,
    GENERATOR_VERSION,
    SPLITS,
    _id_list_path,
    _render_item,
    _write,
    item_paths,
    read_attributes,
)
from lipstudy.data.synth.scene import render_scale

CHALLENGE_TYPES = ("occlusion", "full_body", "upper_body", "head_missed", "back_view")
"""The challenge types of Fig. 5 (the claims' subsets)."""
SPLIT = "challenge"
"""The split the top-up's images have in its attributes.csv."""
SEED = 2
"""The renderer's seed of the top-up (the benchmark is seed 0, the pretraining split seed 1)."""
CHUNK = 64
MAX_CANDIDATES = 100_000


def shortfall(base_root, target: int, split: str = "val") -> dict[str, int]:
    """How many images each challenge type of ``base_root``'s ``split`` lacks to reach ``target``."""
    attrs = read_attributes(base_root)
    held = attrs[attrs["split"] == split]
    return {k: max(0, target - int(held[k].sum())) for k in CHALLENGE_TYPES}


def generate_topup(out, base_root, target: int, max_side: int | None, workers: int = 1, seed: int = SEED) -> dict:
    """Render the top-up of ``base_root``'s validation split into ``out`` (see the module
    docstring) and return its manifest; written to ``<out>.tmp-<pid>`` and renamed."""
    need = shortfall(base_root, target)
    topped = [k for k, n in need.items() if n > 0]
    out = Path(out)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    kept, found, rendered = [], {k: 0 for k in topped}, 0
    pool = Pool(workers) if workers > 1 else None
    try:
        while topped and any(found[k] < need[k] for k in topped):
            if rendered >= MAX_CANDIDATES:
                raise RuntimeError(f"{out}: {rendered} candidates rendered and the top-up is still short: {found}")
            tasks = [(int(seed), "lip", "val", i, max_side) for i in range(rendered, rendered + CHUNK)]
            for _, _, jpg, png, attrs in (pool.imap(_render_item, tasks) if pool else map(_render_item, tasks)):
                rendered += 1
                if any(attrs[k] and found[k] < need[k] for k in topped):  # of a type still short
                    kept.append((f"synth_{SPLIT}_{rendered - 1:06d}", jpg, png, attrs))
                    for k in topped:
                        found[k] += int(attrs[k])
                if all(found[k] >= need[k] for k in topped):
                    break
    finally:
        if pool:
            pool.close()
            pool.join()
    try:
        digest = hashlib.sha256()
        for ident, jpg, png, _ in kept:
            img_rel, lab_rel = item_paths("lip", "val", ident)
            _write(tmp / img_rel, jpg)
            _write(tmp / lab_rel, png)
            digest.update(png)
            digest.update(jpg)
        for split in SPLITS:
            ids = [k[0] for k in kept] if split == "val" else []
            _write(tmp / _id_list_path("lip", split), "".join(f"{i}\n" for i in ids).encode())
        with open(tmp / "attributes.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows({"id": ident, "split": SPLIT, **attrs} for ident, _, _, attrs in kept)
        manifest = {"generator_version": GENERATOR_VERSION, "style": "lip", "seed": int(seed),
                    "counts": {"train": 0, "val": len(kept), "test": 0}, "max_side": max_side,
                    "scale": render_scale("lip", max_side), "fingerprint": digest.hexdigest(),
                    "topup": {"target": int(target), "topped_up": topped, "needed": need, "found": found,
                              "candidates": rendered}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def topped_up(root) -> frozenset:
    """The challenge types a top-up folder tops up (its manifest's ``topped_up``)."""
    return frozenset(json.loads((Path(root) / "manifest.json").read_text())["topup"]["topped_up"])
