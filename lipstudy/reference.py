"""The reference build: a profile's book as trained on the developers' machine, committed as a
bundle of its runs' evaluations (``results/reference/<profile>.tar.xz``: per-image matrices, metrics,
provenance and the few label maps the figures show; no checkpoints), so that
any other build can be compared with it run by run and verdict by verdict (issue 36: the same run
keys compute other numbers on another CPU, and bit-identity across instruction sets is not in
reach by settings alone).

``lipstudy runs reference --profile P`` writes it from the finished runs of a results folder
(:func:`lipstudy.export.export`). :func:`read_reference` reads it without importing anything
(every member's hash checked by :func:`lipstudy.bundles.read_bundle`): each run's key, provenance
(whose ``cpu`` record names the machine, :func:`lipstudy.provenance.cpu_info`) and evaluations.
:mod:`lipstudy.compare` compares a build with it; :mod:`lipstudy.claims.evidence` measures the
decision rule's margin from it when it was trained on another CPU.
"""
from __future__ import annotations

import hashlib
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .bundles import SPARSE, BundleError, read_bundle, unpack_cms
from .export import export
from .paths import committed_results
from .profiles import get_profile
from .provenance import cpu_label


def reference_file(profile) -> Path:
    """Where the checkout keeps a profile's reference build."""
    return committed_results("reference") / f"{get_profile(profile).name}.tar.xz"


def write_reference(profile, data=None, seeds=None, log=print) -> Path:
    """Write the finished runs of ``profile``'s book, evaluations only, as its reference build."""
    path = reference_file(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    export(get_profile(profile), path, data, seeds, checkpoints="none", log=log)
    return path


def run_cpu(provenance: dict) -> str:
    """The CPU a run was trained on, as a line (:func:`lipstudy.provenance.cpu_label`); runs
    recorded before the CPU record existed are named by their device line."""
    if provenance.get("cpu"):
        return cpu_label(provenance["cpu"])
    return f"an unrecorded CPU ({provenance.get('device') or 'no device recorded'})"


@dataclass
class Reference:
    """A reference bundle read into memory: ``path``, its ``sha256``, ``manifest``, and per run key
    its manifest entry (``runs``), provenance and files."""

    path: Path
    sha256: str
    manifest: dict
    runs: dict
    members: dict = field(repr=False)

    def provenance(self, key: str) -> dict:
        return json.loads(self.members.get(f"runs/{key}/provenance.json", b"{}"))

    def cpu(self, key: str) -> str:
        return run_cpu(self.provenance(key))

    def evaluation(self, key: str, name: str):
        """``ids`` and ``cms`` of one evaluation of one run (KeyError naming both when absent)."""
        member = f"runs/{key}/eval/{name}/{SPARSE}"
        if member not in self.members:
            label = self.runs.get(key, {}).get("label", key)
            raise KeyError(f"{self.path}: the reference has no evaluation {name!r} of run {label!r} ({key})")
        with np.load(io.BytesIO(self.members[member]), allow_pickle=False) as z:
            ids, cms = unpack_cms({k: z[k] for k in z.files})
        return SimpleNamespace(ids=ids, cms=cms)


def read_reference(path) -> Reference:
    """A reference bundle, every member's hash checked (:func:`lipstudy.bundles.read_bundle`)."""
    path = Path(path)
    # read_bundle streams each member, checked, into a folder; a reference holds no checkpoint (a few
    # MiB of matrices and JSON in all, each member within the reader's limits), so it is kept in memory.
    with tempfile.TemporaryDirectory(prefix="lipstudy-reference-") as tmp:
        manifest, files = read_bundle(path, Path(tmp) / "members")
        members = {name: file.read_bytes() for name, file in files.items()}
    return Reference(path, hashlib.sha256(path.read_bytes()).hexdigest(), manifest,
                     {r["key"]: r for r in manifest["runs"]}, members)


def load_reference(profile, path=None) -> Reference | None:
    """The committed reference build of ``profile`` (or the bundle ``path``), None when there is
    none; a bundle of another profile is refused."""
    path = Path(path) if path is not None else reference_file(profile)
    if not path.is_file():
        return None
    ref = read_reference(path)
    if ref.manifest["profile"] != get_profile(profile).name:
        raise BundleError(f"{path}: a reference build of profile {ref.manifest['profile']!r}, not "
                          f"{get_profile(profile).name!r}")
    return ref
