"""Run bundles: a profile's finished runs in one file, trained on one machine (a GPU server), read
on another (a laptop) that builds the book from them without training anything.

A bundle is a ``.tar.xz`` archive (the standard library's lzma; members sorted, times and owners
zeroed, so one set of runs always makes the same bytes) holding ``manifest.json`` and, per run,
``runs/<key>/``: its config, provenance, training log and val metrics, every evaluation (its
``metrics.json`` and its per-image confusion matrices, stored sparse as ``per_image_cm.sparse.npz``),
the label maps the chapters' figures show (``figures/<set>.npz``, :mod:`lipstudy.showcase`) and,
when asked for, the checkpoints of the runs the figures come from in their smallest faithful form
(weights and config, fp32; no optimiser, RNG states or log). The manifest lists every file with its
sha256 and size, the profile, :data:`lipstudy.cache.ENGINE_VERSION`, each dataset's fingerprint
and each run's key.

:func:`import_bundle` trusts nothing in the file. It reads the bundle through
:mod:`lipstudy.bundle_reader` (sizes and counts bounded by the profile's limits before any member is
read, members streamed into a temporary folder and hashed), then verifies everything before it
writes anything: every hash, that no file is missing or extra, the engine version, the data
fingerprints (the synthetic data is generated here, deterministically, and must be the data the runs
trained on), each run's key recomputed here with :func:`lipstudy.cache.key_plan`, each checkpoint
read without running code (:func:`lipstudy.checkpoints.load_checkpoint`) and holding exactly the
tensors of the network this checkout's config of the run builds, each evaluation's matrices decoded
back to the exact arrays that were exported, each figure set's label maps. A mismatch is refused
with the run and what differs named, and the temporary folder removed. Then each run folder is
moved in by one rename: an import stopped at any moment leaves whole runs or none.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .bundle_reader import FORMAT, FORMAT_VERSION, RUN_FILES, SPARSE, BundleError, Limits, limits, read_bundle
from .bundle_reader import read_manifest  # noqa: F401 (callers that list a bundle's runs find it here)
from .cache import (ENGINE_VERSION, _load_result, book_products, has_product, is_finished, key_plan, product,
                    train_config)
from .data.roots import data_fingerprint, data_root, profile_datasets
from .locks import is_locked
from .paths import runs_dir
from .profiles import get_profile
from .runs import Run, book_runs, with_ancestors
from .showcase import figure_sets

CHECKPOINT_CHOICES = ("figures", "none", "all")
PATH_FIELDS = ("data_root", "init", "backbone_init", "pretrained")
"""TrainConfig fields that name files of the machine that trained a run: they differ here."""


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


# ----------------------------------------------------------------------------- export

def bundle_runs(profile, seeds=None) -> list[Run]:
    """The runs a profile's book needs: :func:`lipstudy.runs.book_runs` and what they start from."""
    return with_ancestors(book_runs(profile, seeds), profile)


def slim_checkpoint(path: Path) -> bytes:
    """A training checkpoint reduced to what rebuilds the network (weights and config), read as every
    checkpoint is (:func:`lipstudy.checkpoints.load_checkpoint`)."""
    from .checkpoints import load_checkpoint, save_slim

    ckpt = load_checkpoint(path)
    buf = io.BytesIO()
    save_slim(ckpt["model"], ckpt["config"], buf)
    return buf.getvalue()


def _run_files(run_dir: Path, with_checkpoint: bool) -> tuple[dict[str, bytes], dict]:
    """A finished run folder's bundle members (relative names) and its matrices' digests."""
    from .evaluate import load_cms

    files = {name: (run_dir / name).read_bytes() for name in RUN_FILES if (run_dir / name).is_file()}
    matrices = {}
    for ev in sorted(p.parent for p in run_dir.glob("eval/*/metrics.json")):
        name = f"eval/{ev.name}"
        files[f"{name}/metrics.json"] = (ev / "metrics.json").read_bytes()
        ids, cms = load_cms(ev / "per_image_cm.npz")
        files[f"{name}/{SPARSE}"] = _npz_bytes(pack_cms(ids, cms))
        matrices[f"{name}/{SPARSE}"] = {"sha256": cms_digest(ids, cms), "images": len(ids)}
    for fig in sorted(run_dir.glob("figures/*.npz")):
        files[f"figures/{fig.name}"] = fig.read_bytes()
    if with_checkpoint and (run_dir / "checkpoint.pt").is_file():
        files["checkpoint.pt"] = slim_checkpoint(run_dir / "checkpoint.pt")
    files["metrics.json"] = (run_dir / "metrics.json").read_bytes()
    return files, matrices


def _datasets_of(entries: list[dict]) -> list[str]:
    """The datasets the bundled runs train or are evaluated on (a LIP run is also scored on ATR), so
    that a bundle of some runs (the committed backbone) asks an importer for no other dataset."""
    used = {e["run"]["dataset"] for e in entries}
    return sorted(used | ({"atr"} if "lip" in used else set()))


def export(profile, out, data=None, seeds=None, checkpoints: str = "figures", partial: bool = False,
           device: str = "auto", runs=None, ancestors: bool = True, log=print) -> dict:
    """Write the finished runs of ``profile``'s book (:func:`bundle_runs`) to the bundle ``out``;
    return its manifest. A run lacking one of the products the chapters read (its evaluations,
    its figures' label maps) gets it computed now from its checkpoint. ``partial``: leave out the
    runs not finished with every product yet (a bundle of what is done so far, rewritten as runs
    finish), instead of refusing. ``checkpoints``: "figures" (the runs the figures come from),
    "none" or "all". ``runs``: these runs (and, with ``ancestors``, what they start from) instead of
    the book's; the manifest then names only the datasets they train or are scored on."""
    if checkpoints not in CHECKPOINT_CHOICES:
        raise ValueError(f"checkpoints must be one of {CHECKPOINT_CHOICES}, got {checkpoints!r}")
    prof = get_profile(profile)
    products = book_products(prof, data, seeds)
    with_ckpt = set(figure_sets(prof, seeds)) if checkpoints == "figures" else None
    members, entries, matrices, left_out = {}, [], {}, []
    if runs is None:
        chosen = bundle_runs(prof, seeds)
    else:
        chosen = with_ancestors(runs, prof) if ancestors else list(runs)
    for run in chosen:
        plan = key_plan(run, prof, data)
        run_dir = runs_dir() / plan.key
        needs = ["val", *products.get(run, [])]
        if not is_finished(run_dir) or (partial and not all(has_product(run_dir, n) for n in needs)):
            if not partial:
                raise BundleError(f"{out}: run {run.label!r} ({run.dataset}, seed {run.seed}, key {plan.key}) is not "
                                  f"finished in {runs_dir()}: train it first (lipstudy book / lipstudy runs train)")
            left_out.append(run.label)
            continue
        res = _load_result(run, prof, run_dir, plan.root, device, reused=False)
        for name in needs:
            product(res, name)
        files, mats = _run_files(run_dir, checkpoints == "all" or (with_ckpt is not None and run in with_ckpt))
        prefix = f"runs/{plan.key}/"
        members.update({prefix + k: v for k, v in files.items()})
        matrices.update({prefix + k: v for k, v in mats.items()})
        entries.append({"key": plan.key, "label": run.label, "run": dataclasses.asdict(run), "parent": plan.parent_key,
                        "finished_ns": (run_dir / "metrics.json").stat().st_mtime_ns,
                        "checkpoint": prefix + "checkpoint.pt" in members})
    datasets = {ds: data_fingerprint(data_root(prof, ds, data if ds == "lip" else None))
                for ds in (profile_datasets(prof) if runs is None else _datasets_of(entries))}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "profile": prof.name,
                "engine_version": ENGINE_VERSION, "data": "real" if data is not None else "synthetic",
                "datasets": datasets, "runs": entries, "matrices": matrices,
                "files": {name: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
                          for name, b in sorted(members.items())}}
    with atomic_path(out, suffix=".tar.xz") as tmp, tarfile.open(tmp, "w:xz", preset=6) as tar:
        for name, blob in [("manifest.json", json.dumps(manifest, indent=1).encode()), *sorted(members.items())]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(blob), 0o644, 0
            tar.addfile(info, io.BytesIO(blob))
    log(f"[bundle] wrote {out}: {len(entries)} runs of profile {prof.name}, {Path(out).stat().st_size / 2**20:.2f} MiB"
        + (f"; not finished yet, left out: {', '.join(left_out)}" if left_out else ""))
    return manifest


# ----------------------------------------------------------------------------- import

def _npz(file: Path, limit: int, max_arrays: int) -> dict[str, np.ndarray]:
    """The arrays of an .npz member (none pickled), refused when it holds more than ``max_arrays``
    or they declare more than ``limit`` bytes: numpy reads the size an entry declares."""
    from .checkpoints import zip_records

    declared = sum(i.file_size for i in zip_records(file, max_arrays))
    if declared > limit:
        raise ValueError(f"its arrays declare {declared:,} bytes, more than {limit:,}")
    with np.load(file, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _matrices(file: Path, lim: Limits) -> tuple[list[str], np.ndarray]:
    """An evaluation's sparse matrices decoded, their image count and classes bounded by the
    profile's before the dense array is allocated."""
    from .labels import DATASETS

    arrays = _npz(file, lim.matrices, 5)
    if set(arrays) != {"ids", "shape", "counts", "cells", "values"} or arrays["shape"].shape != (2,) \
            or not all(arrays[k].dtype.kind == "u" for k in ("counts", "cells", "values")):
        raise ValueError("not the sparse matrices an export writes")
    n, c = (int(v) for v in arrays["shape"])
    if not (0 <= n <= lim.images and 0 < c <= max(len(d["classes"]) for d in DATASETS.values())):
        raise ValueError(f"{n} images of {c} classes, more than an evaluation of profile {lim.profile} scores")
    return unpack_cms(arrays)


def _check_figures(file: Path, lim: Limits) -> None:
    """A figure set's label maps: uint8 images, within the profile's limit."""
    maps = _npz(file, lim.figures, 64)
    if not all(a.dtype == np.uint8 and a.ndim == 2 for a in maps.values()):
        raise ValueError("not label maps (2-D uint8 arrays)")


def _check_checkpoint(file: Path, plan, prof, where: str) -> None:
    """Refuse a bundled checkpoint unless it reads as every checkpoint must (no code runs), is a
    slim one, was trained with this checkout's config of its run (but for the paths of the machine
    that trained it), and holds exactly the tensors (names, shapes, dtypes) of the network that
    config builds."""
    from .checkpoints import SLIM_FIELDS, check_weights, expected_tensors, load_checkpoint
    from .config import config_changes

    try:
        ckpt = load_checkpoint(file)
    except ValueError as e:
        raise BundleError(f"{where} is refused: {str(e).removeprefix(f'{file}: ')}") from None
    if set(ckpt) != SLIM_FIELDS:
        raise BundleError(f"{where} is not a slim checkpoint (fields {', '.join(sorted(map(str, ckpt)))})")
    ours = train_config(plan, prof, "cpu", None)
    changed = [c for c in config_changes(ckpt["config"], ours) if c.split(":")[0] not in PATH_FIELDS]
    if changed:
        raise BundleError(f"{where} was trained with another config than this checkout's run: {'; '.join(changed[:3])}")
    try:
        check_weights(ckpt["model"], expected_tensors(ours), ours, where)
    except ValueError as e:
        raise BundleError(str(e)) from None


def _verify(path: Path, manifest: dict, files: dict[str, Path], data) -> dict[str, Path]:
    """Every check of an import that needs this machine: engine, profile, data fingerprints, run
    keys, checkpoints, matrices, figure maps. The members (``files``, streamed by
    :func:`lipstudy.bundle_reader.read_bundle` under ``runs/<key>/``) become run folders in place:
    each evaluation's sparse matrices are replaced by the ``per_image_cm.npz`` a run holds. Returns
    ``{key: run folder}``."""
    label = {r["key"]: f"run {r['label']!r} ({r['key']})" for r in manifest["runs"]}
    if manifest.get("engine_version") != ENGINE_VERSION:
        which = ", ".join(label.values()) or "none"
        raise BundleError(f"{path}: its runs ({which}) were trained by engine version "
                          f"{manifest.get('engine_version')!r}; this checkout's is {ENGINE_VERSION!r}, whose runs "
                          f"would compute other numbers")
    prof = get_profile(manifest["profile"])
    lim = limits(prof, manifest["data"] == "real")
    if manifest.get("data") == "real" and data is None:
        raise BundleError(f"{path}: its LIP runs trained on a real LIP folder: give that folder (--data)")
    lip = data if manifest.get("data") == "real" else None
    for ds, theirs in manifest["datasets"].items():
        ours = data_fingerprint(data_root(prof, ds, lip if ds == "lip" else None))
        if ours != theirs:
            users = [r["label"] for r in manifest["runs"] if r["run"].get("dataset") == ds] or ["its evaluations"]
            raise BundleError(
                f"{path}: dataset {ds!r} of profile {prof.name} differs: the bundle's runs ({', '.join(users[:4])}"
                f"{', ...' if len(users) > 4 else ''}) trained on data with fingerprint {str(theirs)[:16]}..., this "
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
        mine = {n[len(prefix):]: f for n, f in files.items() if n.startswith(prefix)}
        if "metrics.json" not in mine or "config.json" not in mine:
            raise BundleError(f"{path}: {who}: no metrics.json / config.json (an unfinished run)")
        try:
            cfg = json.loads(mine["config.json"].read_text())
        except (ValueError, RecursionError) as e:
            raise BundleError(f"{path}: {who}: config.json is not readable ({str(e)[:200]})") from None
        data_cfg = cfg.get("data") if isinstance(cfg, dict) else None
        if not isinstance(cfg, dict) or not isinstance(data_cfg, dict) or \
                (cfg.get("key"), cfg.get("engine_version"), data_cfg.get("fingerprint")) != \
                (key, ENGINE_VERSION, plan.fingerprint):
            theirs = str((data_cfg or {}).get("fingerprint"))[:16]
            raise BundleError(f"{path}: {who}: its config.json (key {cfg.get('key') if isinstance(cfg, dict) else None}, "
                              f"engine {cfg.get('engine_version') if isinstance(cfg, dict) else None!r}, data "
                              f"{theirs}...) disagrees with this checkout's key, engine and data")
        if "checkpoint.pt" in mine:
            _check_checkpoint(mine["checkpoint.pt"], plan, prof, f"{path}: {who}: its checkpoint.pt")
        for name, file in mine.items():
            try:
                if name.endswith("/" + SPARSE):
                    ids, cms = _matrices(file, lim)
                    if cms_digest(ids, cms) != manifest["matrices"].get(prefix + name, {}).get("sha256"):
                        raise BundleError(f"{path}: {who}: {name} does not decode to the matrices that were exported")
                    np.savez_compressed(file.parent / "per_image_cm.npz", **dict(zip(ids, cms)))
                    file.unlink()
                elif name.startswith("figures/"):
                    _check_figures(file, lim)
            except BundleError:
                raise
            except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as e:
                raise BundleError(f"{path}: {who}: {name} is not readable ({str(e)[:200]})") from None
        target = runs_dir() / key
        if target.exists() and not is_finished(target) and is_locked(target / ".lock"):
            raise BundleError(f"{path}: {who} is being trained in {target} right now; import when it stops")
        out[key] = mine["metrics.json"].parent
    return out


def import_bundle(path, data=None, log=print) -> dict:
    """Verify bundle ``path`` (:func:`lipstudy.bundle_reader.read_bundle`, then engine, data, keys,
    checkpoints and matrices here) and move its runs into ``results/runs``; a run already finished
    here keeps its folder and gains the evaluations and figures it lacked. A refused bundle leaves
    nothing behind. Returns ``{"imported": [keys], "kept": [keys]}``."""
    from .provenance import now

    path = Path(path)
    folder = runs_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-import-", dir=folder.parent))
    done = {"imported": [], "kept": []}
    try:
        manifest, files = read_bundle(path, staging)
        runs = _verify(path, manifest, files, data)
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        record = json.dumps({"bundle": path.name, "sha256": digest, "imported": now(),
                             "profile": manifest["profile"]}, indent=1).encode()
        finished_at = {r["key"]: r["finished_ns"] for r in manifest["runs"]}
        folder.mkdir(parents=True, exist_ok=True)
        for key, new in runs.items():
            (new / "imported.json").write_bytes(record)
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
