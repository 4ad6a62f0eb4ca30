"""When an executed chapter can be reused: its cache key, and the data it reads.

A chapter is executed again only when something it depends on changed: its text, its parameters,
the ``lipstudy`` sources, the lock file, the data fingerprints, and for some chapters further inputs
(:data:`EXTRA_INPUTS`).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..paths import REPO, committed_results

def _sha256_files(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.relative_to(REPO)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def source_digest() -> str:
    """sha256 over the ``lipstudy`` sources and the lock file (what a chapter's numbers depend on
    besides its own text, its parameters and the data)."""
    files = sorted((REPO / "lipstudy").rglob("*.py"))
    lock = REPO / "requirements.lock"
    return _sha256_files(files + ([lock] if lock.is_file() else []))


def cache_key(notebook_text: str, parameters: dict, sources: str, manifests: dict, extra=None) -> str:
    """The cache key of one executed chapter; equal keys mean the executed notebook is reusable.
    ``extra``: the chapter's further inputs (:data:`EXTRA_INPUTS`), None for most chapters."""
    inputs = {"notebook": notebook_text, "parameters": parameters, "sources": sources, "manifests": manifests}
    if extra is not None:
        inputs["extra"] = extra
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def reproducibility_inputs(results: Path) -> dict:
    """What the reproducibility chapter reads besides its text, runs and data: every finished run
    (its folder and when it finished), the committed benchmark results, the budget summaries, and
    the machine executing it."""
    import platform

    def digest(folder: Path):
        h = hashlib.sha256()
        for f in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
            h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes())
        return h.hexdigest()

    runs = sorted((p.parent.name, p.stat().st_mtime_ns) for p in (results / "runs").glob("*/metrics.json"))
    return {"runs": runs, "benchmarks": digest(committed_results("benchmarks")), "budget": digest(results / "budget"),
            "machine": [platform.python_version(), platform.platform(), os.cpu_count()], **reference_inputs(results)}


def reference_inputs(results: Path) -> dict:
    """The committed reference builds (``results/reference/``, :mod:`lipstudy.reference`), which the
    verdicts' margins and the reproducibility chapter's comparison read: each file's sha256."""
    folder = committed_results("reference")
    files = sorted(folder.glob("*.tar.xz")) if folder.is_dir() else []
    return {"reference": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}}


EXTRA_INPUTS = {"reproducibility": reproducibility_inputs, "claims": reference_inputs, "intro": reference_inputs}
"""Chapters that read more than their runs and data: name -> function of the results folder
returning those inputs (part of the chapter's cache key)."""


def prepare_data(profile: str, data: str | None = None) -> dict:
    """Make sure every dataset the chapters read exists (generating the synthetic ones), and return
    their fingerprints (the data part of the cache key). ``data`` replaces the LIP root only.

    The fingerprint is :func:`lipstudy.data.roots.data_fingerprint`, the one the training runs' keys
    use, so chapters and runs agree on what "the same data" is (a changed label file changes both)."""
    from ..data.roots import data_fingerprint, data_root, profile_datasets

    manifests = {}
    for dataset in profile_datasets(profile):
        root = Path(data_root(profile, dataset=dataset, data=data if dataset == "lip" else None))
        manifests[dataset] = {"root": str(root), "fingerprint": data_fingerprint(root)}
    return manifests


