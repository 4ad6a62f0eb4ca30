"""Run bundles: a profile's finished runs in one file, trained on one machine (a GPU server), read
on another (a laptop) that builds the book from them without training anything. This module holds
the format and the import; :mod:`lipstudy.bundle_reader` reads the file within bounds, and
:mod:`lipstudy.export` writes them.

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

:func:`import_bundle` trusts nothing in the file. It reads the bundle through
:mod:`lipstudy.bundle_reader` (sizes and counts bounded by the profile's limits before any member is
read, members streamed into a temporary folder and hashed), then verifies everything before it
writes anything: every hash, that no file is missing or extra, the engine version, the data
fingerprints (the synthetic data is generated here, deterministically, and must be the data the runs
trained on), each run's key recomputed here with :func:`lipstudy.store.key_plan`, each checkpoint
read without running code (:func:`lipstudy.checkpoints.load_checkpoint`) and holding exactly the
tensors of the network this checkout's config of the run builds, each evaluation's matrices decoded
back to the exact arrays that were exported, each figure set's label maps. A mismatch is refused
with the run and what differs named, and the temporary folder removed. Then each run folder is
moved in by one rename: an import stopped at any moment leaves whole runs or none.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .bundle_reader import SPARSE, BundleError, Limits, limits, read_bundle
# The format's names, where the writing side (lipstudy.export) and callers listing a bundle's runs find them.
from .bundle_reader import FORMAT, FORMAT_VERSION, RUN_FILES, read_manifest  # noqa: F401
from .data.roots import data_fingerprint, data_root
from .locks import is_locked
from .paths import runs_dir
from .profiles import get_profile
from .runs import Run
from .store import ENGINE_VERSION, is_finished, key_plan, train_config

CHECKPOINT_CHOICES = ("figures", "none", "all")


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
    from .config import PATH_FIELDS, config_changes

    try:
        ckpt = load_checkpoint(file)
    except ValueError as e:
        raise BundleError(f"{where} is refused: {str(e).removeprefix(f'{file}: ')}") from None
    if set(ckpt) != SLIM_FIELDS:
        raise BundleError(f"{where} is not a slim checkpoint (fields {', '.join(sorted(map(str, ckpt)))})")
    # The files a config names (data root, start checkpoint, ImageNet file) are the trainer's
    # machine's, written portable (``data/...``, ``results/...``: TrainConfig.resolved): where they
    # point is no part of what the run computes, which its key and data fingerprint already pin.
    ours = train_config(plan.run, prof, plan.root, None, plan.pretrained, device="cpu")
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
