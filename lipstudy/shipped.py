"""Runs the checkout ships: trained once, committed, imported by a build instead of trained again.

Two kinds of run are shipped. The synthetic backbone (:mod:`lipstudy.backbones`), the cpu profiles'
stand-in for downloaded ImageNet weights. And the runs a profile names in ``Profile.shipped``: at
the cpu profile's budget SegNet, FCN-8s, Attention, Attention + SSL and Attention's control learn
too few classes for any claim that compares them to pass the claims' gate (every such claim is
untestable there, or holds by construction of the renderer), so retraining them on every build
would spend a third of the book's minutes on runs that decide no verdict (issue 20). The book
still shows them in every table, from the committed runs, and says so; the claims chapter checks,
on every build, that no verdict it decides rests on a shipped run.

Each run is a one-run bundle ``results/shipped/<key>.tar.xz`` (:mod:`lipstudy.bundles`: every file
hashed, slim weights, every evaluation and figure map, provenance and training log). On import its
key is recomputed here from the profile, the engine and the regenerated data, so a file is never
used for settings it was not trained with: a checkout whose settings give a run another key finds
no file of that key and trains the run, as for any run. ``$LIPSTUDY_TRAIN_SHIPPED=1`` trains the
shipped runs here instead (``$LIPSTUDY_TRAIN_BACKBONE=1`` the backbone); ``lipstudy runs ship``
writes the files from the runs a results folder holds.
"""
from __future__ import annotations

from pathlib import Path

from . import backbones
from .store import is_finished, key_plan
from .committed import install_run, run_origin
from .paths import committed_results, runs_dir
from .profiles import get_profile
from .runs import Run, method_runs

TRAIN_ENV = "LIPSTUDY_TRAIN_SHIPPED"
"""Set (to anything but "" or "0") to train the profile's shipped runs here rather than import them."""

DECIDED = ("supported", "contradicted", "undecided")
"""Verdicts that weigh a run's numbers (a shipped run must appear in none of them)."""


def shipped_file(key: str) -> Path:
    """Where the checkout keeps the shipped run of run key ``key``."""
    return committed_results("shipped") / f"{key}.tar.xz"


def shipped_runs(profile, data=None) -> dict[str, Run]:
    """``{method: run}`` of the profile's shipped LIP methods (its first seed), each after the run
    it starts from. None on real LIP data: the shipped runs trained on the synthetic benchmark."""
    prof = get_profile(profile)
    if data is not None or not prof.shipped:
        return {}
    by_method = method_runs(prof)
    unknown = [m for m in prof.shipped if m not in by_method]
    if unknown:
        raise ValueError(f"profile {prof.name!r} ships {unknown}, which are not methods of its book "
                         f"({', '.join(by_method)})")
    runs = {m: by_method[m][prof.seeds[0]] for m in prof.shipped}
    return dict(sorted(runs.items(), key=lambda kv: kv[1].stage))


def install(profile, data=None, log=print) -> dict[str, str]:
    """Import the profile's backbone and shipped runs that ``results/runs`` lacks (before anything
    is planned or trained). Returns ``{name: what happened}`` (see :func:`install_run`)."""
    out = {"backbone": backbones.install(profile, data, log)}
    for method, run in shipped_runs(profile, data).items():
        key = key_plan(run, get_profile(profile)).key
        out[method] = install_run(run, profile, None, shipped_file(key), TRAIN_ENV, "shipped", log)
    return out


def export_shipped(profile, log=print) -> list[Path]:
    """Write each finished shipped run of ``profile`` to its committed file (weights and config, every
    evaluation and figure map, provenance and training log; not the runs it starts from, which are
    shipped on their own). Returns the paths."""
    from .bundles import export

    prof = get_profile(profile)
    runs = shipped_runs(prof)
    if not runs:
        raise ValueError(f"profile {prof.name!r} ships no runs")
    out = []
    for run in runs.values():
        path = shipped_file(key_plan(run, prof).key)
        path.parent.mkdir(parents=True, exist_ok=True)
        export(prof, path, runs=[run], checkpoints="all", ancestors=False, log=log)
        out.append(path)
    return out


def origins(profile, data=None) -> list[dict]:
    """Where each shipped run of this results folder came from, for the book: ``method``, ``key``,
    ``imported`` (the committed file's name, or None when trained here), ``commit`` and ``machine``
    that trained it, ``minutes`` of its training, ``val_miou``; runs not finished are left out."""
    prof = get_profile(profile)
    out = []
    for method, run in shipped_runs(prof, data).items():
        run_dir = runs_dir() / key_plan(run, prof).key
        if not is_finished(run_dir):
            continue
        out.append({"method": method, **run_origin(run_dir)})
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
