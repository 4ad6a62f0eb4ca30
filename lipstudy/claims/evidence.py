"""The evidence of one book build: this run's evaluations (per-image confusion matrices of every
method and seed), the images' attributes, and the verdict of every claim on them."""
from __future__ import annotations

import re
from typing import Sequence

from ..cache import ensure
from ..data.roots import data_root
from ..data.statistics import image_attributes
from ..profiles import get_profile
from ..runs import control_runs, paper_runs, ppp_runs, profile_seeds
from .catalogue import CONTROL, all_claims
from .engine import Evidence, Verdict


def experiment_evidence(profile: str, data=None, device: str = "auto", seeds=None, n_boot: int = 1000) -> Evidence:
    """Evidence from the run cache: the paper's six LIP runs and the SSL controls per seed (method
    names as in :func:`lipstudy.runs.paper_runs`), the PASCAL-Person-Part runs as ``ppp/<method>``
    with split ``ppp-<split>``, and the LIP data's image attributes. Runs are trained only if
    missing."""
    prof = get_profile(profile)
    seeds = profile_seeds(prof, seeds)

    def evaluation(method: str, split: str, seed: int):
        if method.startswith("ppp/"):
            run = ppp_runs(seed)[method[4:]]
            return ensure(run, prof, device=device).evaluation(split.removeprefix("ppp-"))
        run = {**paper_runs(seed), **control_runs(seed)}[method]
        return ensure(run, prof, data=data, device=device).evaluation(split)

    extra = [s for s in prof.ssl_seeds if s not in seeds]
    ssl_methods = ("DeepLabV2", "DeepLabV2 + SSL", CONTROL)
    return Evidence(evaluation, seeds, image_attributes(data_root(prof, "lip", data)), n_boot=n_boot,
                    method_seeds={m: seeds + extra for m in ssl_methods} if extra else {})


def book_verdicts(profile: str, data=None, device: str = "auto", seeds=None) -> tuple[Evidence, list[Verdict]]:
    """The evidence and the verdicts of every claim for one book build (the claims chapter and
    the front page call this, so both show the same verdicts)."""
    evidence = experiment_evidence(profile, data=data, device=device, seeds=seeds)
    return evidence, all_claims(evidence, sizes=list(get_profile(profile).eval_sizes))


def claim_anchors(claims: Sequence[str]) -> list[str]:
    """An HTML id per claim, in order (``claim-attention-is-the-best-...``; a repeated text gets
    ``-2``, ``-3``): the claims chapter marks each row with it, the front page links to it."""
    out, seen = [], {}
    for text in claims:
        slug = "claim-" + (re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:60].rstrip("-") or "x")
        seen[slug] = seen.get(slug, 0) + 1
        out.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return out
