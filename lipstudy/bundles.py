"""Run bundles: a profile's finished runs in one file, trained on one machine (a GPU server), read
on another (a laptop) that builds the book from them without training anything. This module holds
the format and the reading side; :mod:`lipstudy.export` writes them.

A bundle is a ``.tar.xz`` archive (the standard library's lzma; members sorted, times and owners
zeroed, so one set of runs always makes the same bytes) holding ``manifest.json`` and, per run,
``runs/<key>/``: its config, provenance, training log and val metrics, every evaluation (its
``metrics.json`` and its per-image confusion matrices, stored sparse as ``per_image_cm.sparse.npz``),
the label maps the chapters' figures show (``figures/<set>.npz``, :mod:`lipstudy.showcase`) and,
when asked for, the checkpoints of the runs the figures come from in their smallest faithful form
(weights and config, fp32; no optimiser, RNG states or log). The manifest lists every file with its
sha256 and size, the profile, :data:`lipstudy.store.ENGINE_VERSION`, each dataset's fingerprint
and each run's key. The files a run's configs name are written relative to the data folder
(``data/...``) and the results folder (``results/...``) and resolved where they are used, so a
bundle names nothing of the machine that made it beyond its provenance (:func:`portable_run_file`).

:func:`import_bundle` verifies everything before it writes anything: every hash, that no file is
missing or extra, the engine version, the data fingerprints (the synthetic data is generated here,
deterministically, and must be the data the runs trained on), each run's key recomputed here with
:func:`lipstudy.store.key_plan`, and each evaluation's matrices decoded back to the exact arrays
that were exported. A mismatch is refused with the run and what differs named. Then each run
folder is assembled in a temporary folder beside ``results/runs`` and moved in by one rename: an
import stopped at any moment leaves whole runs or none.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from .data.roots import data_fingerprint, data_root
from .locks import is_locked
from .paths import runs_dir
from .profiles import PROFILES, get_profile
from .runs import Run
from .store import ENGINE_VERSION, is_finished, key_plan

FORMAT, FORMAT_VERSION = "lipstudy-bundle", 1
RUN_FILES = ("config.json", "train_config.json", "provenance.json", "train_log.json")
SPARSE = "per_image_cm.sparse.npz"
CHECKPOINT_CHOICES = ("figures", "none", "all")
MANIFEST_FIELDS = {"profile": str, "engine_version": str, "data": str, "datasets": dict, "runs": list,
                   "matrices": dict, "files": dict}
_MEMBER = re.compile(r"runs/[0-9a-f]{16}/[A-Za-z0-9_.@-]+(/[A-Za-z0-9_.@-]+)*")


class BundleError(ValueError):
    """A bundle that cannot be written or read; the message names the file, the run and the problem."""


# ----------------------------------------------------------------------------- compact matrices

def _uint(max_value: int) -> np.dtype:
    """The smallest unsigned dtype that holds ``max_value``."""
    return next(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64) if max_value <= np.iinfo(t).max)


def pack_cms(ids, cms: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image confusion matrices ``[N, C, C]`` as their non-zero cells: ``counts`` (cells per
    image), ``cells`` (``row * C + column`` of each, image by image) and ``values``, each in the
    smallest unsigned dtype that holds it. Most cells of a parsing map's matrix are 0 and the rest
    are pixel counts, so this is a few percent of the int64 array."""
    cms = np.asarray(cms)
    if cms.ndim != 3 or cms.shape[1] != cms.shape[2] or len(ids) != len(cms):
        raise ValueError(f"expected {len(ids)} square matrices, got an array of shape {cms.shape}")
    if cms.size and cms.min() < 0:
        raise ValueError("a confusion matrix has a negative count")
    n, c = cms.shape[0], cms.shape[1]
    flat = cms.reshape(n, c * c)
    image, cell = np.nonzero(flat)
    values = flat[image, cell]
    counts = np.bincount(image, minlength=n)
    return {"ids": np.array(list(ids), dtype=str), "shape": np.array([n, c], np.int64),
            "counts": counts.astype(_uint(int(counts.max(initial=0)))),
            "cells": cell.astype(_uint(max(c * c - 1, 0))), "values": values.astype(_uint(int(values.max(initial=0))))}


def unpack_cms(arrays) -> tuple[list[str], np.ndarray]:
    """The inverse of :func:`pack_cms`: (ids, int64 ``[N, C, C]``)."""
    n, c = (int(v) for v in arrays["shape"])
    counts = arrays["counts"].astype(np.int64)
    if len(counts) != n or counts.sum() != len(arrays["cells"]) or len(arrays["cells"]) != len(arrays["values"]):
        raise ValueError("the sparse matrices' counts, cells and values do not agree")
    flat = np.zeros((n, c * c), np.int64)
    flat[np.repeat(np.arange(n), counts), arrays["cells"].astype(np.int64)] = arrays["values"].astype(np.int64)
    return [str(i) for i in arrays["ids"]], flat.reshape(n, c, c) if n else np.zeros((0, c, c), np.int64)


def cms_digest(ids, cms: np.ndarray) -> str:
    """sha256 of the ids and the int64 matrices: what an import must restore exactly."""
    h = hashlib.sha256(json.dumps(list(ids)).encode())
    h.update(np.ascontiguousarray(cms, dtype="<i8").tobytes())
    return h.hexdigest()


def _npz_bytes(arrays: dict, compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


# ----------------------------------------------------------------------------- import

def read_bundle(path) -> tuple[dict, dict[str, bytes]]:
    """The manifest and every member of a bundle, with each member's hash and size checked
    against the manifest and no member missing or extra (nothing is written)."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                name = info.name
                if not info.isfile() or name in members or not (name == "manifest.json" or _MEMBER.fullmatch(name)) \
                        or ".." in name.split("/"):
                    raise BundleError(f"{path}: unexpected member {name!r} (a bundle holds manifest.json and "
                                      f"runs/<key>/ files only)")
                members[name] = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BundleError(f"{path}: not a readable bundle ({e})") from None
    try:
        manifest = json.loads(members.pop("manifest.json"))
    except (KeyError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: no readable manifest.json ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: not a {FORMAT} of version {FORMAT_VERSION} (manifest says "
                          f"{manifest.get('format')!r} {manifest.get('format_version')!r})")
    missing = [k for k, t in MANIFEST_FIELDS.items() if not isinstance(manifest.get(k), t)]
    missing += [f"runs[{i}]" for i, r in enumerate(manifest.get("runs") or [])
                if not isinstance(r, dict) or not {"key", "label", "run", "finished_ns"} <= set(r)
                or not re.fullmatch(r"[0-9a-f]{16}", str(r["key"]))]
    if missing:
        raise BundleError(f"{path}: its manifest lacks or garbles {', '.join(missing)}")
    owner = {f"runs/{r['key']}/": r["label"] for r in manifest["runs"]}

    def whose(name):
        return next((f"run {label!r} ({prefix[5:-1]})" for prefix, label in owner.items() if name.startswith(prefix)),
                    "no run of the manifest")

    listed = manifest["files"]
    for name in sorted(set(members) | set(listed)):
        if not any(name.startswith(prefix) for prefix in owner):
            raise BundleError(f"{path}: {name} belongs to no run of the manifest")
        if name not in listed:
            raise BundleError(f"{path}: {name} ({whose(name)}) is not listed in the manifest")
        if name not in members:
            raise BundleError(f"{path}: {name} ({whose(name)}) is missing")
        blob = members[name]
        if len(blob) != listed[name]["bytes"] or hashlib.sha256(blob).hexdigest() != listed[name]["sha256"]:
            raise BundleError(f"{path}: {name} ({whose(name)}) is corrupt: its sha256 differs from the manifest's")
    return manifest, members


def _verify(path: Path, manifest: dict, members: dict, data) -> dict:
    """Every check of an import that needs this machine (nothing is written): engine, profile,
    data fingerprints, run keys, matrices. Returns ``{key: {relative name: bytes to write}}``."""
    label = {r["key"]: f"run {r['label']!r} ({r['key']})" for r in manifest["runs"]}
    if manifest.get("engine_version") != ENGINE_VERSION:
        which = ", ".join(label.values()) or "none"
        raise BundleError(f"{path}: its runs ({which}) were trained by engine version "
                          f"{manifest.get('engine_version')!r}; this checkout's is {ENGINE_VERSION!r}, whose runs "
                          f"would compute other numbers")
    if manifest.get("profile") not in PROFILES:
        raise BundleError(f"{path}: its runs are of profile {manifest.get('profile')!r}, unknown to this checkout "
                          f"(profiles: {', '.join(PROFILES)})")
    prof = get_profile(manifest["profile"])
    if manifest.get("data") == "real" and data is None:
        raise BundleError(f"{path}: its LIP runs trained on a real LIP folder: give that folder (--data)")
    lip = data if manifest.get("data") == "real" else None
    for ds, theirs in manifest["datasets"].items():
        ours = data_fingerprint(data_root(prof, ds, lip if ds == "lip" else None))
        if ours != theirs:
            users = [r["label"] for r in manifest["runs"] if r["run"].get("dataset") == ds] or ["its evaluations"]
            raise BundleError(
                f"{path}: dataset {ds!r} of profile {prof.name} differs: the bundle's runs ({', '.join(users[:4])}"
                f"{', ...' if len(users) > 4 else ''}) trained on data with fingerprint {theirs[:16]}..., this "
                f"machine's is {ours[:16]}... (another numpy or Pillow renders "
                f"other synthetic images; numpy's AVX-512 paths can be turned off with "
                f"NPY_DISABLE_CPU_FEATURES='X86_V4 AVX512_ICL AVX512_SPR')")
    out = {}
    for entry in manifest["runs"]:
        key, who = entry["key"], label[entry["key"]]
        try:
            run = Run(**entry["run"])
        except (TypeError, ValueError) as e:
            raise BundleError(f"{path}: {who}: not a run of this checkout ({e})") from None
        plan = key_plan(run, prof, lip if run.dataset == "lip" else None)
        if plan.key != key:
            raise BundleError(f"{path}: {who}: its key here is {plan.key}, the bundle's {key}: the profile's settings "
                              f"or the run graph differ from those of the checkout that trained it")
        prefix = f"runs/{key}/"
        files = {n[len(prefix):]: b for n, b in members.items() if n.startswith(prefix)}
        if "metrics.json" not in files or "config.json" not in files:
            raise BundleError(f"{path}: {who}: no metrics.json / config.json (an unfinished run)")
        cfg = json.loads(files["config.json"])
        if (cfg.get("key"), cfg.get("engine_version"), cfg.get("data", {}).get("fingerprint")) != \
                (key, ENGINE_VERSION, plan.fingerprint):
            theirs = str(cfg.get("data", {}).get("fingerprint"))[:16]
            raise BundleError(f"{path}: {who}: its config.json (key {cfg.get('key')}, engine "
                              f"{cfg.get('engine_version')!r}, data {theirs}...) disagrees with this checkout's "
                              f"key, engine and data")
        for name in [n for n in files if n.endswith("/" + SPARSE)]:
            try:
                with np.load(io.BytesIO(files.pop(name)), allow_pickle=False) as z:
                    ids, cms = unpack_cms({k: z[k] for k in z.files})
            except (ValueError, KeyError, OSError) as e:
                raise BundleError(f"{path}: {who}: {name} is not readable ({e})") from None
            if cms_digest(ids, cms) != manifest["matrices"].get(prefix + name, {}).get("sha256"):
                raise BundleError(f"{path}: {who}: {name} does not decode to the matrices that were exported")
            files[name.replace(SPARSE, "per_image_cm.npz")] = _npz_bytes(dict(zip(ids, cms)), compressed=True)
        target = runs_dir() / key
        if target.exists() and not is_finished(target) and is_locked(target / ".lock"):
            raise BundleError(f"{path}: {who} is being trained in {target} right now; import when it stops")
        out[key] = files
    return out


def import_bundle(path, data=None, log=print) -> dict:
    """Verify bundle ``path`` (:func:`read_bundle`, then engine, data and keys here) and move its
    runs into ``results/runs``; a run already finished here keeps its folder and gains the
    evaluations and figures it lacked. Returns ``{"imported": [keys], "kept": [keys]}``."""
    from .provenance import now

    path = Path(path)
    manifest, members = read_bundle(path)
    runs = _verify(path, manifest, members, data)
    record = json.dumps({"bundle": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                         "imported": now(), "profile": manifest["profile"]}, indent=1).encode()
    finished_at = {r["key"]: r["finished_ns"] for r in manifest["runs"]}
    folder = runs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-import-", dir=folder.parent))
    done = {"imported": [], "kept": []}
    try:
        for key, files in runs.items():
            new = staging / key
            files = {**files, "imported.json": record}
            for name, blob in sorted(files.items(), key=lambda kv: kv[0] == "metrics.json"):  # metrics.json last
                (new / name).parent.mkdir(parents=True, exist_ok=True)
                (new / name).write_bytes(blob)
            os.utime(new / "metrics.json", ns=(finished_at[key], finished_at[key]))
            target = folder / key
            if is_finished(target):  # keep what is here; add what it lacks, one whole folder or file at a time
                for sub in [*new.glob("eval/*"), *new.glob("figures/*.npz")]:
                    dest = target / sub.relative_to(new)
                    if dest.is_dir() and not (dest / "metrics.json").is_file():  # an evaluation cut short
                        os.replace(dest, staging / f"{key}.{sub.name}.replaced")
                    if not dest.exists():
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(sub, dest)
                done["kept"].append(key)
                continue
            if target.exists():  # an interrupted attempt at the same run: the bundle's finished one replaces it
                os.replace(target, staging / f"{key}.replaced")
            os.replace(new, target)
            done["imported"].append(key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"[bundle] imported {path.name}: {len(done['imported'])} runs of profile {manifest['profile']} into {folder}"
        + (f", {len(done['kept'])} already here" if done["kept"] else ""))
    return done
