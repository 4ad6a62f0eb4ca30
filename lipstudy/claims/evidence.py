"""The evidence of one book build: this build's evaluations (per-image confusion matrices of every
method and seed), the images' attributes, the verdict of every claim on them, and the claims as data
(``results/claims/<profile>.json``), which the claims chapter renders and the front page counts.

The same catalogue reads a reference build (:mod:`lipstudy.reference`: the committed bundle of the
book as trained on the developers' machine) through :func:`reference_verdicts`; when that build ran
on another CPU than this one, the change of each statistic between the two is the decision rule's
margin (:func:`lipstudy.claims.engine.margin_of`, :func:`reference_margins`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import pandas as pd

from ..atomic import atomic_write_json
from ..bundles import BundleError
from ..data.roots import data_fingerprint, data_root
from ..data.statistics import image_attributes
from ..data.synth.topup import topped_up
from ..paths import results_dir, runs_dir
from ..profiles import get_profile
from ..reference import Reference, load_reference, run_cpu
from ..runs import method_runs
from ..store import CHALLENGE, VAL, key_plan
from ..tables import is_synthetic
from ..train_run import ensure
from .catalogue import all_claims
from .engine import Evidence, Verdict

CHALLENGE_SPLIT = "val+challenge"
"""The evaluation the challenge claims read when the build has the challenge top-up: the
validation images followed by the top-up's (:mod:`lipstudy.data.synth.topup`)."""


def experiment_evidence(profile: str, data=None, device: str = "auto", seeds=None, n_boot: int = 1000,
                        opener=None) -> Evidence:
    """Evidence from the run cache: every method of the build (:func:`lipstudy.runs.method_runs`:
    the paper's six LIP methods, the SSL controls, the PASCAL-Person-Part runs as ``ppp/<method>``
    with splits ``ppp-<split>``) with the seeds it is trained with, and the LIP data's image
    attributes (with the challenge top-up's, when the profile has one on synthetic data). Runs are
    trained only if missing. ``opener(run, evaluation name)``: where the evaluations come from
    instead of the run cache (a reference bundle, :func:`reference_verdicts`)."""
    prof = get_profile(profile)
    runs = method_runs(prof, seeds)

    def from_cache(run, name: str):
        if run.dataset == "ppp":
            return ensure(run, prof, device=device).evaluation(name)
        return ensure(run, prof, data=data, device=device).evaluation(name)

    opener = opener or from_cache

    def evaluation(method: str, split: str, seed: int):
        run = runs[method][seed]
        if split == CHALLENGE_SPLIT:
            parts = [opener(run, VAL.name), opener(run, CHALLENGE.name)]
            return SimpleNamespace(ids=[i for p in parts for i in p.ids],
                                   cms=np.concatenate([np.asarray(p.cms) for p in parts]))
        return opener(run, split.removeprefix("ppp-") if run.dataset == "ppp" else split)

    root = data_root(prof, "lip", data)
    attributes, topped = image_attributes(root), frozenset()
    if data is None and prof.challenge_topup:
        extra = data_root(prof, "challenge")
        topped = topped_up(extra)
        attributes = pd.concat([attributes, image_attributes(extra)]) if topped else attributes
    return Evidence(evaluation, {m: sorted(by_seed) for m, by_seed in runs.items()}, attributes,
                    synthetic=is_synthetic(root), n_boot=n_boot, challenge_split=CHALLENGE_SPLIT if topped else "val",
                    topped_up=topped)


def claims_file(profile) -> Path:
    """``<results>/claims/<profile>.json``: the claims of a profile's build, as data."""
    return results_dir() / "claims" / f"{get_profile(profile).name}.json"


def book_verdicts(profile: str, data=None, device: str = "auto", seeds=None) -> tuple[Evidence, list[Verdict]]:
    """The evidence and the verdicts of every claim for one book build, written to
    :func:`claims_file` (the claims chapter and the front page call this, so both show the same
    verdicts, and the file is what they show). The margin of each statistic is measured against the
    committed reference build when it ran on another CPU (:func:`reference_margins`)."""
    evidence = experiment_evidence(profile, data=data, device=device, seeds=seeds)
    margins = reference_margins(profile, data, seeds)
    if margins is not None:
        evidence.reference, evidence.reference_cpu = margins
    verdicts = all_claims(evidence, sizes=list(get_profile(profile).eval_sizes))
    atomic_write_json(claims_file(profile), {
        "profile": get_profile(profile).name, "data": "synthetic" if evidence.synthetic else str(data),
        "reference_cpu": evidence.reference_cpu or None, "claims": [v.as_record() for v in verdicts]})
    return evidence, verdicts


# ---------------------------------------------------------------------------------------------
# the reference build


def reference_runs(profile, ref: Reference, data=None, seeds=None) -> dict:
    """``{run key: (this build's CPU or None when the run is not finished here, the reference's CPU
    or None when the reference lacks the run)}`` over the methods' runs of ``profile``'s book."""
    prof = get_profile(profile)
    out = {}
    for by_seed in method_runs(prof, seeds).values():
        for run in by_seed.values():
            key = key_plan(run, prof, data if run.dataset == "lip" else None).key
            prov = runs_dir() / key / "provenance.json"
            here = run_cpu(json.loads(prov.read_text())) if (runs_dir() / key / "metrics.json").is_file() else None
            out[key] = (here, ref.cpu(key) if key in ref.runs else None)
    return out


def reference_verdicts(profile, ref: Reference, seeds=None, n_boot: int = 1000) -> list[Verdict]:
    """Every claim on the reference build's evaluations, through the same catalogue and this
    machine's image attributes; refused (:class:`lipstudy.bundles.BundleError`) when a dataset the
    reference was trained or scored on differs here (its fingerprint, as an import checks it)."""
    prof = get_profile(profile)
    for ds, theirs in ref.manifest["datasets"].items():
        if data_fingerprint(data_root(prof, ds)) != theirs:
            raise BundleError(f"{ref.path}: dataset {ds!r} of profile {prof.name} differs from the reference build's "
                              f"(fingerprint {str(theirs)[:16]}...): its claims cannot be recomputed here")

    def opener(run, name):
        return ref.evaluation(key_plan(run, prof).key, name)

    evidence = experiment_evidence(prof, seeds=seeds, n_boot=n_boot, opener=opener)
    return all_claims(evidence, sizes=list(prof.eval_sizes))


def reference_margins(profile, data=None, seeds=None) -> tuple[dict, str] | None:
    """``({(claim, bin): the reference's estimate (pp)}, the reference's CPU)`` when the committed
    reference build (:func:`lipstudy.reference.load_reference`) holds every run of this build and
    trained some of them on another CPU than this build did; None otherwise (no reference, real
    data, a stale reference or one of other data, or the same CPU: then the margin is the default)."""
    if data is not None:
        return None
    ref = load_reference(profile)
    if ref is None:
        return None
    cpus = reference_runs(profile, ref, data, seeds)
    if any(theirs is None for _, theirs in cpus.values()):
        return None
    if all(here is None or here == theirs for here, theirs in cpus.values()):
        return None
    try:
        verdicts = reference_verdicts(profile, ref, seeds)
    except BundleError:
        return None
    estimates = {}
    for v in verdicts:
        estimates[(v.claim, None)] = v.estimate
        estimates.update({(v.claim, b.name): b.estimate for b in v.bins})
    theirs = sorted({t for here, t in cpus.values() if here != t})
    return estimates, "; ".join(theirs)


def load_claims(profile) -> list[dict]:
    """The claims a build wrote (:func:`book_verdicts`), in the paper's order."""
    path = claims_file(profile)
    try:
        return json.loads(path.read_text())["claims"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: no readable claims file ({err}); build the claims chapter first") from None


def claim_anchors(claims: Sequence[str]) -> list[str]:
    """An HTML id per claim, in order (``claim-attention-is-the-best-...``; a repeated text gets
    ``-2``, ``-3``): the claims chapter marks each row with it, the front page links to it."""
    out, seen = [], {}
    for text in claims:
        slug = "claim-" + (re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:60].rstrip("-") or "x")
        seen[slug] = seen.get(slug, 0) + 1
        out.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return out
