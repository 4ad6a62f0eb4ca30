"""Writing run bundles (:mod:`lipstudy.bundles` has the format and the reading side): a
profile's finished runs, or some of them, with every product the chapters read, in one verified
file (:func:`export`), the files a run's configs name written portable (:func:`portable_run_file`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path

from .atomic import atomic_path
from .bundles import (CHECKPOINT_CHOICES, FORMAT, FORMAT_VERSION, RUN_FILES, SPARSE, BundleError, _npz_bytes,
                      cms_digest, pack_cms)
from .config import portable_config
from .data.roots import CHALLENGE, DataMissing, data_fingerprint, data_root, profile_datasets
from .evaluate import JOINT_TERMS
from .paths import portable, portable_command, runs_dir
from .profiles import get_profile
from .runs import Run, book_runs, with_ancestors
from .showcase import figure_sets
from .store import ENGINE_VERSION, VAL, book_products, is_finished, key_plan, load_result


def bundle_runs(profile, seeds=None) -> list[Run]:
    """The runs a profile's book needs: :func:`lipstudy.runs.book_runs` and what they start from."""
    return with_ancestors(book_runs(profile, seeds), profile)


def slim_checkpoint(path: Path) -> bytes:
    """A training checkpoint reduced to what rebuilds the network (weights and config, the files
    it names made portable), read as every checkpoint is (:func:`lipstudy.checkpoints.load_checkpoint`)."""
    from .checkpoints import load_checkpoint, save_slim

    ckpt = load_checkpoint(path)
    buf = io.BytesIO()
    save_slim(ckpt["model"], portable_config(ckpt["config"]), buf)
    return buf.getvalue()


def portable_run_file(name: str, blob: bytes) -> bytes:
    """A run's JSON file (:data:`RUN_FILES`) as a bundle stores it: the data root relative to the
    data folder and the checkpoints relative to the results folder (:func:`lipstudy.paths.portable`,
    resolved where they are used: :meth:`lipstudy.config.TrainConfig.resolved`), and the recorded
    command without this machine's folders; so a bundle says nothing of the machine that made it
    beyond its provenance."""
    doc = json.loads(blob)
    if name == "train_config.json":
        doc = portable_config(doc)
    elif name == "config.json":
        doc["train"] = portable_config(doc["train"])
        doc["data"]["root"] = portable(doc["data"]["root"])
    elif name == "provenance.json" and isinstance(doc.get("command"), str):
        doc["command"] = portable_command(doc["command"])
    return json.dumps(doc, indent=1).encode()


def _run_files(run_dir: Path, with_checkpoint: bool) -> tuple[dict[str, bytes], dict]:
    """A finished run folder's bundle members (relative names) and its matrices' digests."""
    from .evaluate import load_cms

    files = {name: portable_run_file(name, (run_dir / name).read_bytes()) for name in RUN_FILES
             if (run_dir / name).is_file()}
    matrices = {}
    for ev in sorted(p.parent for p in run_dir.glob("eval/*/metrics.json")):
        name = f"eval/{ev.name}"
        files[f"{name}/metrics.json"] = (ev / "metrics.json").read_bytes()
        ids, cms = load_cms(ev / "per_image_cm.npz")
        files[f"{name}/{SPARSE}"] = _npz_bytes(pack_cms(ids, cms))
        matrices[f"{name}/{SPARSE}"] = {"sha256": cms_digest(ids, cms), "images": len(ids)}
        if (ev / JOINT_TERMS).is_file():  # the validation split's joint terms (the SSL chapter's L_joint)
            files[f"{name}/{JOINT_TERMS}"] = (ev / JOINT_TERMS).read_bytes()
    for part in sorted(run_dir.glob("attention/*.npz")):  # an Attention run's weights (baselines chapter)
        files[f"attention/{part.name}"] = part.read_bytes()
    for fig in sorted(run_dir.glob("figures/*.npz")):
        files[f"figures/{fig.name}"] = fig.read_bytes()
    if with_checkpoint and (run_dir / "checkpoint.pt").is_file():
        files["checkpoint.pt"] = slim_checkpoint(run_dir / "checkpoint.pt")
    files["metrics.json"] = (run_dir / "metrics.json").read_bytes()
    return files, matrices


def _datasets_of(entries: list[dict], prof) -> list[str]:
    """The datasets the bundled runs train or are evaluated on (a LIP run is also scored on ATR and,
    when the profile has one, on the challenge top-up), so that a bundle of some runs (the committed
    backbone) asks an importer for no other dataset."""
    used = {e["run"]["dataset"] for e in entries}
    scored = {"atr", CHALLENGE} if prof.challenge_topup else {"atr"}
    return sorted(used | (scored if "lip" in used else set()))


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
        try:
            plan = key_plan(run, prof, data)
        except DataMissing:  # never generated: nothing of it is trained
            plan = None
        run_dir = runs_dir() / plan.key if plan else None
        needs = [VAL, *products.get(run, [])]
        if plan is None or not is_finished(run_dir) or (partial and not all(p.made(run_dir) for p in needs)):
            if not partial:
                raise BundleError(f"{out}: run {run.label!r} ({run.dataset}, seed {run.seed}"
                                  f"{f', key {plan.key}' if plan else ''}) is not finished in {runs_dir()}: train it "
                                  f"first (lipstudy book / lipstudy runs train)")
            left_out.append(run.label)
            continue
        res = load_result(run, prof, data, device)
        for p in needs:
            p.make(res)
        files, mats = _run_files(run_dir, checkpoints == "all" or (with_ckpt is not None and run in with_ckpt))
        prefix = f"runs/{plan.key}/"
        members.update({prefix + k: v for k, v in files.items()})
        matrices.update({prefix + k: v for k, v in mats.items()})
        entries.append({"key": plan.key, "label": run.label, "run": dataclasses.asdict(run), "parent": plan.parent_key,
                        "finished_ns": (run_dir / "metrics.json").stat().st_mtime_ns,
                        "checkpoint": prefix + "checkpoint.pt" in members})
    datasets = {ds: data_fingerprint(data_root(prof, ds, data if ds == "lip" else None))
                for ds in (profile_datasets(prof) if runs is None else _datasets_of(entries, prof))}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "profile": prof.name,
                "engine_version": ENGINE_VERSION, "data": "real" if data is not None else "synthetic",
                "datasets": datasets, "runs": entries, "matrices": matrices,
                "files": {name: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
                          for name, b in sorted(members.items())}}
    _write(out, manifest, members)
    log(f"[bundle] wrote {out}: {len(entries)} runs of profile {prof.name}, {Path(out).stat().st_size / 2**20:.2f} MiB"
        + (f"; not finished yet, left out: {', '.join(left_out)}" if left_out else ""))
    return manifest


def _write(out, manifest: dict, members: dict[str, bytes]) -> None:
    """The bundle file: its manifest, then every member by name (times and owners zeroed)."""
    with atomic_path(out, suffix=".tar.xz") as tmp, tarfile.open(tmp, "w:xz", preset=6) as tar:
        for name, blob in [("manifest.json", json.dumps(manifest, indent=1).encode()), *sorted(members.items())]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(blob), 0o644, 0
            tar.addfile(info, io.BytesIO(blob))
