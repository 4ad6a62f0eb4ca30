"""The paper's claims (Sections 3 and 5), each as a statistic with this run's verdict.

A claim is turned into one number whose sign decides it, in percentage points of a score
(e.g. "Attention is the best baseline" -> mIoU(Attention) - mIoU(the best other baseline)).
The same statistic is computed on the paper's own tables where they print what it needs
(``paper_value``), on this run's per-image confusion matrices (``estimate``), and on bootstrap
resamples of the evaluated images (``low``/``high``, a percentile interval). Resampling is joint:
one draw of images per population (the validation set, ATR, ...) is shared by every method, subset
and input size that the statistic compares, so differences are paired. With several seeds the
statistic is averaged over seeds inside every resample, and the per-seed values are reported too.

Verdict: ``supported`` when the interval lies above 0, ``contradicted`` when it lies below 0,
``inconclusive`` when it contains 0, ``no data`` when a subset the claim needs has no images,
``too few images`` when it has fewer than ``MIN_IMAGES`` (an interval over a handful of images
says little, whatever its width), ``untestable here`` when the statistic averages over a class that
every compared model scores IoU 0 on (the models are too weak for the claim at this profile: the
number measures that, not the claim). A verdict whose seeds disagree on the sign is flagged
"within seed spread".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .. import metrics
from ..labels import LIP_CLASSES
from ..subsets import subset_mask

BASELINES = ("SegNet", "FCN-8s", "DeepLabV2", "Attention")
CHALLENGES = ("occlusion", "full_body", "upper_body", "head_missed", "back_view")
SIZE_BINS = ("small", "medium", "large")
MIN_IMAGES = 10


@dataclass(frozen=True)
class Term:
    """One score of one method: ``stat`` (a ``metrics.stat_fn`` name) on evaluation ``split``
    (``val``, ``test``, ``val@<size>``, ``atr``, ...), optionally on a subset of its images
    (an attribute column of attributes.csv such as ``back_view``, or ``size:<bin>``)."""

    method: str
    split: str = "val"
    subset: str | None = None
    stat: str = "mean_iou"


@dataclass(frozen=True)
class Verdict:
    section: str
    claim: str
    statistic: str
    paper_value: float | None       # the statistic on the paper's numbers (pp), None if not printed
    estimate: float                 # this run, mean over seeds (pp)
    low: float                      # bootstrap interval over images (pp)
    high: float
    per_seed: tuple[float, ...]
    verdict: str
    n_images: int
    note: str = ""

    @property
    def seed_spread(self) -> float:
        """max - min of the statistic over seeds (pp); NaN with one seed."""
        return (max(self.per_seed) - min(self.per_seed)) if len(self.per_seed) > 1 else np.nan

    @property
    def within_seed_spread(self) -> bool:
        """Whether the seeds disagree on the statistic's sign: then the verdict turns on the seed,
        whatever the bootstrap interval over images says."""
        return len(self.per_seed) > 1 and min(self.per_seed) < 0 < max(self.per_seed)

    def as_row(self) -> dict:
        return {"section": self.section, "claim": self.claim, "statistic": self.statistic,
                "paper (pp)": self.paper_value, "ours (pp)": self.estimate,
                "CI low": self.low, "CI high": self.high,
                "seeds": ", ".join(f"{v:.2f}" for v in self.per_seed), "seed spread": self.seed_spread,
                "within seed spread": ("yes" if self.within_seed_spread else "no") if len(self.per_seed) > 1 else "-",
                "verdict": self.verdict, "images": self.n_images, "note": self.note}


def decide(low: float, high: float) -> str:
    """The verdict of a statistic whose claimed sign is positive, from its interval."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no data"
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def _population(split: str) -> str:
    """Evaluations over the same images share bootstrap draws: val, val-flip and val@<size> are
    the validation set."""
    return split.split("@")[0].removesuffix("-flip")


@dataclass
class Evidence:
    """Access to this run's evaluations, the image attributes, and the bootstrap settings.

    ``evaluation(method, split, seed)`` returns an object with ``ids`` (image ids) and ``cms``
    (per-image confusion matrices ``[N, C, C]``), e.g. ``experiments``' evaluation results.
    ``attributes`` is indexed by image id (columns of attributes.csv).
    """

    evaluation: Callable[[str, str, int], object]
    seeds: Sequence[int]
    attributes: pd.DataFrame | None = None
    n_boot: int = 1000
    alpha: float = 0.05
    boot_seed: int = 0
    # Methods trained with more seeds than ``seeds`` (the SSL comparison's): a statistic uses the
    # seeds every method it compares has.
    method_seeds: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    def seeds_for(self, methods) -> list[int]:
        """The seeds every one of ``methods`` was trained with."""
        common = None
        for m in methods:
            s = list(self.method_seeds.get(m, self.seeds))
            common = s if common is None else [x for x in common if x in s]
        return common if common else list(self.seeds)

    def zero_classes(self, terms: dict) -> list[int]:
        """Classes a statistic averages over that every compared model scores IoU 0 on (first seed):
        such a statistic measures the model's weakness, not the claim."""
        ids = set()
        for t in terms.values():
            if t.stat.startswith("miou:"):
                ids.update(int(i) for i in t.stat[5:].split(","))
            elif t.stat.startswith("iou:"):
                ids.add(int(t.stat[4:]))
        zero = []
        for c in sorted(ids):
            ious = []
            for t in terms.values():
                cm = np.asarray(self.ev(t.method, t.split, self.seeds[0]).cms, dtype=np.float64).sum(0)
                tp, gt, pr = cm[c, c], cm[c].sum(), cm[:, c].sum()
                ious.append(tp / (gt + pr - tp) if gt + pr - tp > 0 else np.nan)
            if all(v == 0 for v in ious):
                zero.append(c)
        return zero

    def ev(self, method: str, split: str, seed: int):
        key = (method, split, seed)
        if key not in self._cache:
            self._cache[key] = self.evaluation(method, split, seed)
        return self._cache[key]

    def mask(self, ids: Sequence[str], subset: str | None) -> np.ndarray:
        """Boolean mask of the images in ``subset`` (all when None)."""
        if subset is None:
            return np.ones(len(ids), dtype=bool)
        if self.attributes is None:
            raise ValueError(f"subset {subset!r} needs image attributes, none were given")
        if self.attributes.reindex(list(ids)).isna().all(axis=None):
            raise ValueError(f"none of the {len(ids)} evaluated images has attributes")
        return subset_mask(ids, self.attributes, subset)

    def measure(self, terms: dict[str, Term], combine: Callable[[dict], np.ndarray]) -> dict:
        """The statistic ``combine({name: score})`` (fractions) over seeds, with its interval.

        Returns value, low, high (fractions), per_seed values, and the smallest subset size.
        """
        pops = sorted({_population(t.split) for t in terms.values()})
        rng = np.random.default_rng(self.boot_seed)
        weights, ref_ids = {}, {}
        for pop in pops:
            t = next(t for t in terms.values() if _population(t.split) == pop)
            ids = list(self.ev(t.method, t.split, self.seeds[0]).ids)
            n = len(ids)
            draws = rng.integers(0, n, size=(self.n_boot, n))
            w = np.zeros((self.n_boot, n))
            np.add.at(w, (np.repeat(np.arange(self.n_boot), n), draws.ravel()), 1.0)
            weights[pop], ref_ids[pop] = w, ids
        points, boots, n_min = [], [], None
        for seed in self.seeds_for({t.method for t in terms.values()}):
            vals, bvals = {}, {}
            for name, t in terms.items():
                pop = _population(t.split)
                ev = self.ev(t.method, t.split, seed)
                cms = np.asarray(ev.cms, dtype=np.float64)
                if list(ev.ids) != ref_ids[pop]:
                    cms = cms[metrics.select(list(ev.ids), ref_ids[pop])]
                m = self.mask(ref_ids[pop], t.subset)
                n_min = int(m.sum()) if n_min is None else min(n_min, int(m.sum()))
                f = metrics.stat_fn(t.stat)
                with np.errstate(invalid="ignore", divide="ignore"):
                    vals[name] = f(cms[m].sum(0)) if m.any() else np.float64(np.nan)
                    bvals[name] = (f(np.einsum("bn,ncd->bcd", weights[pop][:, m], cms[m])) if m.any()
                                   else np.full(self.n_boot, np.nan))
            points.append(float(combine(vals)))
            boots.append(np.asarray(combine(bvals), dtype=np.float64))
        boot = np.mean(boots, axis=0)
        with np.errstate(invalid="ignore"):
            lo, hi = (np.nanquantile(boot, [self.alpha / 2, 1 - self.alpha / 2])
                      if np.isfinite(boot).any() else (np.nan, np.nan))
        return {"value": float(np.mean(points)), "low": float(lo), "high": float(hi),
                "per_seed": tuple(points), "n": n_min or 0}


def verdict_of(evidence: Evidence, section: str, claim: str, statistic: str, terms: dict, combine,
             paper_value: float | None, note: str = "") -> Verdict:
    r = evidence.measure(terms, combine)
    pp = 100.0
    verdict = decide(r["low"], r["high"])
    if 0 < r["n"] < MIN_IMAGES:
        verdict = "too few images"
    zero = evidence.zero_classes(terms)
    if zero and verdict in ("supported", "contradicted", "inconclusive"):
        verdict = "untestable here"
        note = "; ".join(x for x in (note, "every compared model scores IoU 0 on "
                                     + ", ".join(LIP_CLASSES[c] for c in zero)) if x)
    return Verdict(section, claim, statistic, None if paper_value is None else round(paper_value, 2),
                   r["value"] * pp, r["low"] * pp, r["high"] * pp, tuple(v * pp for v in r["per_seed"]),
                   verdict, r["n"], note)


def stack_min(d: dict, names) -> np.ndarray:
    return np.min(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)


def stack_max(d: dict, names) -> np.ndarray:
    return np.max(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)


def stack_mean(d: dict, names) -> np.ndarray:
    return np.mean(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)
