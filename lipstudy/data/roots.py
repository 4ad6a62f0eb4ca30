"""Where a profile's datasets are: a real dataset folder the user names, or the synthetic
benchmark generated under ``data/synth-<profile>-<dataset>-<spec digest>/``; and the fingerprint
that stands for a dataset's contents in every run key and chapter cache key.

:func:`data_root` generates a missing synthetic dataset (the steps that make things: the book
runner's data step, ``lipstudy runs data``, training a run); :func:`existing_root` only finds one
(what a run key reads), and says which command generates it when it is absent."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..labels import DATASETS as LABEL_SETS
from ..locks import file_lock
from ..paths import data_dir
from ..profiles import get_profile

DATASETS = tuple(LABEL_SETS)
"""The benchmarks a book reads: LIP (or its synthetic stand-in), PASCAL-Person-Part, ATR."""
PRETRAIN = "pretrain"
"""The dataset name of the synthetic pretraining split (a LIP-style split of its own)."""
CHALLENGE = "challenge"
"""The challenge top-up of the synthetic LIP validation split (:mod:`lipstudy.data.synth.topup`)."""


class DataMissing(FileNotFoundError):
    """A profile's synthetic dataset has not been generated; the message names the command that does."""


def profile_datasets(profile) -> tuple[str, ...]:
    """Every dataset a profile's book uses: the three benchmarks, the pretraining split when the
    profile pretrains a synthetic backbone, and the challenge top-up when it has one."""
    prof = get_profile(profile)
    return DATASETS + ((PRETRAIN,) if prof.pretrain else ()) + ((CHALLENGE,) if prof.challenge_topup else ())


def _spec(prof, dataset: str) -> dict:
    if dataset not in DATASETS + (PRETRAIN, CHALLENGE):
        raise ValueError(f"unknown dataset {dataset!r}; expected {', '.join(DATASETS)}, {PRETRAIN} or {CHALLENGE}")
    if dataset == PRETRAIN and not prof.pretrain:
        raise ValueError(f"profile {prof.name!r} has no synthetic pretraining split")
    if dataset == CHALLENGE:
        if not prof.challenge_topup:
            raise ValueError(f"profile {prof.name!r} has no challenge top-up")
        return {"target": prof.challenge_topup, "lip": _spec(prof, "lip")}
    spec = {"lip": prof.lip_data, "ppp": prof.ppp_data, "atr": prof.atr_data, PRETRAIN: prof.pretrain}[dataset]
    return {k: v for k, v in spec.items() if k not in ("epochs", "lr")}  # training settings, not data


def synthetic_root(profile, dataset: str = "lip") -> Path:
    """The folder of a profile's synthetic dataset (whether or not it exists yet). The name carries
    a digest of the spec it is generated from, so a changed spec is never served stale data."""
    prof = get_profile(profile)
    digest = hashlib.sha256(json.dumps(_spec(prof, dataset), sort_keys=True).encode()).hexdigest()[:8]
    return data_dir() / f"synth-{prof.name}-{dataset}-{digest}"


def existing_root(profile, dataset: str = "lip", data=None) -> Path:
    """The dataset a profile uses, which must exist: the real dataset folder ``data`` if given, else
    the synthetic benchmark (:class:`DataMissing` when it has not been generated)."""
    if data is not None:
        root = Path(data)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: dataset folder not found")
        return root
    prof = get_profile(profile)
    root = synthetic_root(prof, dataset)
    if not (root / "manifest.json").is_file():
        raise DataMissing(f"{root}: the {prof.name} profile's {dataset} data has not been generated; generate it "
                          f"with `lipstudy runs data --profile {prof.name}` (the book runner does so before it trains)")
    return root


def data_root(profile, dataset: str = "lip", data=None) -> Path:
    """The dataset a profile uses: the real dataset folder ``data`` if given, else the synthetic
    benchmark (generated, under a lock, if missing)."""
    if data is not None:
        return existing_root(profile, dataset, data)
    prof = get_profile(profile)
    spec = _spec(prof, dataset)
    root = synthetic_root(prof, dataset)
    if (root / "manifest.json").is_file():
        return root
    from .synth import generate

    if dataset == CHALLENGE:  # rendered from the LIP validation split's shortfall, so after it
        lip = data_root(prof, "lip")
        with file_lock(root.parent / f".{root.name}.lock"):
            if not (root / "manifest.json").is_file():
                from .synth.topup import generate_topup

                generate_topup(root, lip, prof.challenge_topup, prof.lip_data["max_side"],
                               workers=max(1, os.cpu_count() or 1))
        return root
    # The pretraining split is rendered from another seed, so it shares no scene with the benchmark.
    seed, style = (1, "lip") if dataset == PRETRAIN else (0, dataset)
    with file_lock(root.parent / f".{root.name}.lock"):
        if not (root / "manifest.json").is_file():
            generate(root, spec["train"], spec["val"], spec.get("test", 0), seed=seed, style=style,
                     workers=max(1, os.cpu_count() or 1), max_side=spec["max_side"], progress=False,
                     force=root.exists())
    return root


def data_fingerprint(root: Path) -> str:
    """The synthetic benchmark's manifest fingerprint, or for a real dataset a digest of its file
    names and sizes (cheap, and changes when the dataset does)."""
    manifest = Path(root) / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())["fingerprint"]
    h = hashlib.sha256()
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for f in sorted(files):
            p = Path(dirpath) / f
            h.update(f"{p.relative_to(root)}\0{p.stat().st_size}\n".encode())
    return h.hexdigest()
