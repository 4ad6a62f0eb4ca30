"""Committed runs: runs the checkout ships, trained once and imported by a build instead of trained
again, as the paper's runs start from ImageNet weights the authors downloaded rather than trained.

One table, :data:`KINDS`, of the kinds of committed file:

- the synthetic backbone, ``results/backbones/<key>.tar.xz``: the cpu profiles' stand-in for
  ImageNet weights, from which every stage-1 run starts (it decides no verdict);
- the shipped runs, ``results/shipped/<key>.tar.xz``: the LIP methods of ``Profile.shipped``,
  which at the profile's budget learn too few classes for any claim comparing them to pass the
  claims' gate; the book shows them in every table, and the claims chapter checks on every build
  that no verdict it decides rests on one (:func:`decided_with`);
- a profile's whole book, ``results/bundles/<profile>.tar.xz``, trained elsewhere (the gpu
  profile's, by ``benchmarks/gpu_book.sh``): with it a build trains nothing and a run the bundle
  lacks fails the build by name.

Each file is a bundle (:mod:`lipstudy.bundles`, :mod:`lipstudy.export`: every file hashed; on import every run key is
recomputed here from the profile, the engine and the regenerated data), so a file is never used
for settings it was not trained with: a checkout whose settings give a run another key finds no
file of that key and trains the run. :func:`install` is called where the book's runs are made
(:func:`lipstudy.process_pool.ensure_all`); ``train_here`` (``--train-committed`` of ``lipstudy
book`` and ``lipstudy runs train``) trains them here instead. :func:`export` writes the one-run
files from the runs a results folder holds (``lipstudy runs commit``); :func:`origins` says where
each committed run of a build came from (the reproducibility chapter).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .data.roots import DataMissing
from .paths import committed_results, runs_dir
from .profiles import get_profile
from .runs import BACKBONE, Run, method_runs, with_ancestors
from .store import VAL, is_finished, key_plan


@dataclass(frozen=True)
class Kind:
    """A kind of committed file: its folder under ``results/``, and whether it holds one run
    (named by its key) or a profile's book (named by the profile)."""

    name: str
    folder: str
    one_run: bool

    def file(self, name: str) -> Path:
        """The committed file of run key (or profile) ``name``."""
        return committed_results(self.folder) / f"{name}.tar.xz"


BACKBONE_FILE, SHIPPED, BOOK = Kind("backbone", "backbones", True), Kind("shipped", "shipped", True), \
    Kind("book", "bundles", False)
KINDS = (BACKBONE_FILE, SHIPPED, BOOK)
"""Every kind of committed file, in the order a build installs them (a run after the one it starts from)."""

DECIDED = ("supported", "contradicted", "undecided")
"""Verdicts that weigh a run's numbers (a shipped run must appear in none of them)."""


def committed_runs(profile, data=None) -> list[tuple[Kind, str, Run]]:
    """The one-run committed files a profile's build looks for, ``[(kind, name, run)]``, each after
    the run it starts from: its synthetic backbone ("backbone"), then its shipped LIP methods (first
    seed) by the names the claims use. No shipped run on real LIP data: they trained on the
    synthetic benchmark."""
    prof = get_profile(profile)
    out = [(BACKBONE_FILE, "backbone", BACKBONE)] if prof.pretrain else []
    if data is None and prof.shipped:
        by_method = method_runs(prof)
        unknown = [m for m in prof.shipped if m not in by_method]
        if unknown:
            raise ValueError(f"profile {prof.name!r} ships {unknown}, which are not methods of its book "
                             f"({', '.join(by_method)})")
        shipped = sorted(((m, by_method[m][prof.seeds[0]]) for m in prof.shipped), key=lambda mr: mr[1].stage)
        out += [(SHIPPED, m, run) for m, run in shipped]
    return out


def _key(run: Run, prof, data) -> str | None:
    """A committed run's key here, or None when its data has not been generated (then it is not here)."""
    try:
        return key_plan(run, prof, data if run.dataset == "lip" else None).key
    except DataMissing:
        return None


def install(profile, data=None, runs=None, products=None, train_here: bool = False, log=print) -> dict[str, str]:
    """Import into ``results/runs`` the committed runs a build of ``profile`` lacks, before anything
    is planned or trained: of the one-run files those among ``runs`` and what they start from (all
    when None), and the profile's book when a run or product of ``runs`` / ``products`` is missing.
    The data must have been generated (a key is read off it). Returns ``{name: what happened}``:
    "finished" (already here), "imported", or "train" (no file of its key, a file refused, or
    ``train_here``: then it is trained like any run); and ``"book": "imported"`` or "finished" when
    the profile's book is committed, which means nothing trains."""
    from .bundles import BundleError, import_bundle

    prof = get_profile(profile)
    wanted = None if runs is None else set(with_ancestors(runs, prof))
    out = {}
    for kind, name, run in committed_runs(prof, data):
        if wanted is not None and run not in wanted:
            continue
        plan = key_plan(run, prof, data if run.dataset == "lip" else None)
        path = kind.file(plan.key)
        if is_finished(runs_dir() / plan.key):
            out[name] = "finished"
        elif train_here:
            log(f"[committed] --train-committed: training {name} ({plan.key}) here")
            out[name] = "train"
        elif not path.is_file():
            log(f"[committed] no committed {kind.name} file of {name}'s key {plan.key} ({path} is absent: this "
                f"checkout's settings, engine or generated data differ from the committed run's); training it here")
            out[name] = "train"
        else:
            try:
                import_bundle(path, data if run.dataset == "lip" else None, log=log)
                out[name] = "imported"
            except BundleError as err:
                log(f"[committed] the committed file of {name} was refused ({err}); training it here")
                out[name] = "train"
    book = BOOK.file(prof.name)
    if book.is_file() and train_here:
        log(f"[committed] --train-committed: training the {prof.name} profile's book here, not importing {book}")
    elif book.is_file():
        out["book"] = "imported" if _book_incomplete(prof, data, runs, products) else "finished"
        if out["book"] == "imported":
            log(f"[committed] importing the runs of profile {prof.name} from {book}")
            import_bundle(book, data, log=log)
    return out


def _book_incomplete(prof, data, runs, products) -> bool:
    """Whether a run of ``runs`` (the profile's book when None) or one of its ``products`` is missing."""
    from .runs import book_runs

    for run in with_ancestors(book_runs(prof) if runs is None else runs, prof):
        key = _key(run, prof, data)
        if key is None or not is_finished(runs_dir() / key):
            return True
        if not all(p.made(runs_dir() / key) for p in [VAL, *(products or {}).get(run, [])]):
            return True
    return False


def export(profile, log=print) -> list[Path]:
    """Write each one-run committed file of ``profile`` (its backbone, its shipped runs) from the
    finished run in ``results/runs``: weights and config, every evaluation and figure map the
    chapters read, provenance and training log; not the runs it starts from, which have files of
    their own. Returns the paths."""
    from .export import export as export_bundle

    prof = get_profile(profile)
    out = []
    for kind, _, run in committed_runs(prof):
        path = kind.file(key_plan(run, prof).key)
        path.parent.mkdir(parents=True, exist_ok=True)
        export_bundle(prof, path, runs=[run], checkpoints="all", ancestors=False, log=log)
        out.append(path)
    if not out:
        raise ValueError(f"profile {prof.name!r} commits no runs (no synthetic backbone, no shipped runs)")
    return out


def run_origin(run_dir: Path) -> dict:
    """A finished run folder's origin: key, imported (the bundle's name, or None when trained
    here), commit and machine that trained it, trained (end time), minutes, val_miou."""
    prov = json.loads((run_dir / "provenance.json").read_text())
    imported = run_dir / "imported.json"
    return {"key": run_dir.name,
            "imported": json.loads(imported.read_text())["bundle"] if imported.is_file() else None,
            "commit": prov.get("git", {}).get("commit"), "machine": prov.get("device"),
            "trained": prov.get("end"),
            "minutes": round(float(prov.get("train_seconds", prov.get("wall_time_s", 0.0))) / 60, 1),
            "val_miou": json.loads((run_dir / "metrics.json").read_text())["mean_iou"]}


def origins(profile, data=None) -> list[dict]:
    """Where each committed run of this results folder came from, for the book: ``kind``
    ("backbone" or "shipped"), ``name`` (the method), and :func:`run_origin`'s fields; runs not
    finished here (or whose data was never generated) are left out. Generates nothing."""
    prof = get_profile(profile)
    out = []
    for kind, name, run in committed_runs(prof, data):
        key = _key(run, prof, data)
        if key is not None and is_finished(runs_dir() / key):
            out.append({"kind": kind.name, "name": name, **run_origin(runs_dir() / key)})
    return out


def decided_with(verdicts, methods) -> list[tuple[str, str, list[str]]]:
    """The verdicts (rows of ``results/claims/<profile>.json``: ``claim``, ``verdict``, ``seeds``
    per compared method) that weigh one of ``methods``: ``[(claim, verdict, [methods])]``. Empty
    when every claim comparing a shipped run is untestable or holds by construction, the condition
    under which the profile ships it."""
    methods = set(methods)
    out = []
    for v in verdicts:
        used = sorted(methods & set(v.get("seeds") or {}))
        if used and v["verdict"] in DECIDED:
            out.append((v["claim"], v["verdict"], used))
    return out
