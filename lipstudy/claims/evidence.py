"""The evidence of one book build: this build's evaluations (per-image confusion matrices of every
method and seed), the images' attributes, the verdict of every claim on them, and the claims as data
(``results/claims/<profile>.json``), which the claims chapter renders and the front page counts."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_write_json
from ..train_run import ensure
from ..data.roots import data_root
from ..data.statistics import image_attributes
from ..paths import results_dir
from ..profiles import get_profile
from ..runs import method_runs
from ..tables import is_synthetic
from .catalogue import all_claims
from .engine import Evidence, Verdict


def experiment_evidence(profile: str, data=None, device: str = "auto", seeds=None, n_boot: int = 1000) -> Evidence:
    """Evidence from the run cache: every method of the build (:func:`lipstudy.runs.method_runs`:
    the paper's six LIP methods, the SSL controls, the PASCAL-Person-Part runs as ``ppp/<method>``
    with splits ``ppp-<split>``) with the seeds it is trained with, and the LIP data's image
    attributes. Runs are trained only if missing."""
    prof = get_profile(profile)
    runs = method_runs(prof, seeds)

    def evaluation(method: str, split: str, seed: int):
        run = runs[method][seed]
        if run.dataset == "ppp":
            return ensure(run, prof, device=device).evaluation(split.removeprefix("ppp-"))
        return ensure(run, prof, data=data, device=device).evaluation(split)

    root = data_root(prof, "lip", data)
    return Evidence(evaluation, {m: sorted(by_seed) for m, by_seed in runs.items()}, image_attributes(root),
                    synthetic=is_synthetic(root), n_boot=n_boot)


def claims_file(profile) -> Path:
    """``<results>/claims/<profile>.json``: the claims of a profile's build, as data."""
    return results_dir() / "claims" / f"{get_profile(profile).name}.json"


def book_verdicts(profile: str, data=None, device: str = "auto", seeds=None) -> tuple[Evidence, list[Verdict]]:
    """The evidence and the verdicts of every claim for one book build, written to
    :func:`claims_file` (the claims chapter and the front page call this, so both show the same
    verdicts, and the file is what they show)."""
    evidence = experiment_evidence(profile, data=data, device=device, seeds=seeds)
    verdicts = all_claims(evidence, sizes=list(get_profile(profile).eval_sizes))
    atomic_write_json(claims_file(profile), {
        "profile": get_profile(profile).name, "data": "synthetic" if evidence.synthetic else str(data),
        "claims": [v.as_record() for v in verdicts]})
    return evidence, verdicts


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
