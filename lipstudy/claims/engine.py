"""A claim of the paper as one statistic, its interval with image and seed noise, and its verdict.

A claim is turned into one number whose sign decides it, in percentage points of a score (e.g.
"Attention is the best baseline" -> mIoU(Attention) - mIoU(the best other baseline)). The same
statistic is computed on the paper's own tables where they print what it needs (``paper_value``)
and on this build's per-image confusion matrices (``estimate``: the mean over seeds).

**The interval** adds two sources of noise, as independent variances:

- *images*: a paired percentile bootstrap over the evaluated images. One draw of images per
  population (the validation set, ATR, ...) is shared by every method, subset and input size the
  statistic compares, and the statistic is averaged over seeds inside each draw;
- *seeds*: how much the statistic moves when the same runs are trained again. With at least
  :data:`MIN_SEEDS` seeds of every compared run it is the spread of the per-seed values (standard
  deviation, Student's t with n - 1 degrees of freedom, divided by sqrt(n) for the mean). With
  fewer, it is borrowed (:meth:`Evidence.run_noise`): the pooled run-to-run standard deviation of
  validation mean IoU over the build's methods trained with several seeds, times sqrt(k) for a
  statistic comparing k methods, with the pooled degrees of freedom.

``low`` / ``high`` = estimate -+ sqrt(image half-width^2 + seed half-width^2), and ``detectable``
is that half-width: the smallest effect this build can tell from zero.

**The verdict** (:func:`verdict_of`), in this order:

1. ``untestable`` when a subset the claim needs has fewer than :data:`MIN_IMAGES` images, or when a
   compared method is too weak for the claim: it scores IoU of at least :data:`GATE_IOU` on fewer
   than half the classes of the ground truth, or under :data:`GATE_IOU` on a class the claim
   averages over (the number would measure the model's weakness, not the claim);
2. ``by construction`` for a claim about the data (``Claim.construction``) on synthetic data: the
   renderer's rule that makes it hold is named;
3. ``undecided`` for an SSL claim whose control (the same network trained the same extra epochs
   without SSL) is not in the build: it is confounded with training length;
4. ``supported`` / ``contradicted`` when the interval lies above / below 0 and every compared run
   has at least :data:`MIN_SEEDS` seeds; otherwise ``undecided``, with the reason (the interval
   contains 0, or too few seeds to decide).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .. import metrics
from ..labels import DATASETS
from ..subsets import subset_mask

BASELINES = ("SegNet", "FCN-8s", "DeepLabV2", "Attention")
CHALLENGES = ("occlusion", "full_body", "upper_body", "head_missed", "back_view")
SIZE_BINS = ("small", "medium", "large")
VERDICTS = ("supported", "contradicted", "undecided", "untestable", "by construction")
MIN_IMAGES = 10
"""A subset with fewer images says little, whatever its interval."""
MIN_SEEDS = 3
"""Seeds of every compared run before a verdict is decided (the seed spread needs them)."""
GATE_IOU = 0.01
"""IoU under which a method is taken not to predict a class at all."""


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
class Claim:
    """A claim as data: what the paper says (``claim``, ``section``), the statistic that tests it
    (``terms`` combined by ``combine`` into a number whose positive sign supports the claim), the
    same statistic on the paper's numbers, the control an SSL claim is measured against, and, for a
    claim about the data, the renderer's rule that makes it hold on synthetic data."""

    section: str
    claim: str
    statistic: str
    terms: dict = field(compare=False)
    combine: Callable = field(compare=False)
    paper_value: float | None = None
    control: str | None = None
    construction: str | None = None
    ssl: bool = False
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    section: str
    claim: str
    statistic: str
    paper_value: float | None       # the statistic on the paper's numbers (pp), None if not printed
    estimate: float                 # this build, mean over seeds (pp)
    low: float                      # interval with image and seed noise (pp)
    high: float
    detectable: float               # the interval's half-width: the smallest effect this build resolves (pp)
    per_seed: tuple[float, ...]
    seeds: dict                     # method -> the seeds it was trained with in this build
    control: str | None
    verdict: str
    reason: str
    n_images: int
    image_low: float = math.nan     # the interval over images alone (pp)
    image_high: float = math.nan
    seed_sd: float = math.nan       # seed standard deviation of the statistic (pp), and where it came from
    seed_sd_source: str = ""
    note: str = ""

    @property
    def seed_spread(self) -> float:
        """max - min of the statistic over seeds (pp); NaN with one seed."""
        return (max(self.per_seed) - min(self.per_seed)) if len(self.per_seed) > 1 else np.nan

    def as_record(self) -> dict:
        """The claim as ``results/claims/<profile>.json`` stores it."""
        def num(x):
            return None if x is None or not np.isfinite(x) else round(float(x), 4)

        return {"claim": self.claim, "section": self.section, "statistic": self.statistic,
                "paper": num(self.paper_value), "ours": num(self.estimate), "low": num(self.low),
                "high": num(self.high), "seeds": {m: list(s) for m, s in self.seeds.items()},
                "control": self.control, "detectable": num(self.detectable), "verdict": self.verdict,
                "reason": self.reason, "per_seed": [num(v) for v in self.per_seed], "images": self.n_images,
                "image_low": num(self.image_low), "image_high": num(self.image_high),
                "seed_sd": num(self.seed_sd), "seed_sd_source": self.seed_sd_source, "note": self.note}

    def as_row(self) -> dict:
        return {"section": self.section, "claim": self.claim, "statistic": self.statistic,
                "paper (pp)": self.paper_value, "ours (pp)": self.estimate, "CI low": self.low,
                "CI high": self.high, "detectable (pp)": self.detectable,
                "seeds": ", ".join(f"{v:.2f}" for v in self.per_seed), "seed spread": self.seed_spread,
                "control": self.control or "-", "verdict": self.verdict, "reason": self.reason,
                "images": self.n_images, "note": self.note}


def decide(low: float, high: float) -> str:
    """The sign the interval of a statistic (claimed positive) shows: "supported" above 0,
    "contradicted" below, "undecided" across it or when it is not finite."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undecided"
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "undecided"


def _population(split: str) -> str:
    """Evaluations over the same images share bootstrap draws: val, val-flip and val@<size> are
    the validation set."""
    return split.split("@")[0].removesuffix("-flip")


def _val_split(method: str) -> str:
    return "ppp-val" if method.startswith("ppp/") else "val"


@dataclass
class Evidence:
    """A build's evaluations, the image attributes, and the settings of the intervals.

    ``evaluation(method, split, seed)`` returns an object with ``ids`` (image ids) and ``cms``
    (per-image confusion matrices ``[N, C, C]``), e.g. the run cache's evaluations.
    ``method_seeds`` lists the seeds each method was trained with (a statistic uses the seeds
    every method it compares has). ``attributes`` is indexed by image id (columns of
    attributes.csv). ``synthetic``: whether the data is the synthetic benchmark (claims about the
    data then hold by construction).
    """

    evaluation: Callable[[str, str, int], object]
    method_seeds: dict
    attributes: pd.DataFrame | None = None
    synthetic: bool = False
    n_boot: int = 1000
    alpha: float = 0.05
    boot_seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    def seeds_of(self, method: str) -> list[int]:
        if method not in self.method_seeds:
            raise KeyError(f"{method!r} is not a method of this build ({', '.join(self.method_seeds)})")
        return list(self.method_seeds[method])

    def seeds_for(self, methods) -> list[int]:
        """The seeds every one of ``methods`` was trained with."""
        common = None
        for m in methods:
            s = self.seeds_of(m)
            common = s if common is None else [x for x in common if x in s]
        return common or []

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

    # -- how good the compared models are (the gate) ---------------------------------------------

    def class_iou(self, method: str, split: str) -> np.ndarray:
        """Per-class IoU of ``method`` on ``split`` (mean over its seeds), NaN for classes absent
        from both ground truth and prediction."""
        per_seed = []
        for seed in self.seeds_of(method):
            cm = np.asarray(self.ev(method, split, seed).cms, dtype=np.float64).sum(0)
            tp, gt, pr = np.diag(cm), cm.sum(1), cm.sum(0)
            with np.errstate(invalid="ignore", divide="ignore"):
                per_seed.append(np.where(gt > 0, tp / (gt + pr - tp), np.nan))
        with np.errstate(invalid="ignore"):
            return np.nanmean(np.stack(per_seed), axis=0) if len(per_seed) > 1 else per_seed[0]

    def gate(self, terms: dict[str, Term], classes) -> str | None:
        """Why the compared methods are too weak for a claim (None when they are not): a method
        that scores IoU >= GATE_IOU on fewer than half the ground truth's classes, or under
        GATE_IOU on one of ``classes`` (the classes the claim averages over)."""
        reasons = []
        for method, split in dict.fromkeys((t.method, t.split) for t in terms.values()):
            iou = self.class_iou(method, split)
            drawn = np.isfinite(iou)
            learned = int((iou[drawn] >= GATE_IOU).sum())
            if learned < drawn.sum() / 2:
                reasons.append(f"{method} scores IoU >= {100 * GATE_IOU:g}% on only {learned} of its "
                               f"{int(drawn.sum())} classes")
                continue
            weak = [int(c) for c in classes if not (iou[c] >= GATE_IOU)]
            if weak:
                names = DATASETS["ppp" if method.startswith("ppp/") else "lip"]["classes"]
                reasons.append(f"{method} scores IoU under {100 * GATE_IOU:g}% on " + ", ".join(names[c] for c in weak))
        return "; ".join(dict.fromkeys(reasons)) or None

    # -- seed noise ------------------------------------------------------------------------------

    def run_noise(self) -> tuple[float, int, list[str]]:
        """(pooled run-to-run standard deviation of validation mean IoU as a fraction, its degrees
        of freedom, the methods pooled) over the methods trained with at least two seeds; (NaN, 0,
        []) when there are none."""
        ss, df, pooled = 0.0, 0, []
        for method, seeds in self.method_seeds.items():
            if len(seeds) < 2:
                continue
            split = _val_split(method)
            values = [float(metrics.stat_fn("mean_iou")(np.asarray(self.ev(method, split, s).cms, np.float64).sum(0)))
                      for s in seeds]
            ss += float(np.var(values, ddof=1)) * (len(values) - 1)
            df += len(values) - 1
            pooled.append(method)
        return (math.sqrt(ss / df) if df else math.nan), df, pooled

    # -- the statistic ---------------------------------------------------------------------------

    def measure(self, terms: dict[str, Term], combine: Callable[[dict], np.ndarray]) -> dict:
        """The statistic ``combine({name: score})`` (fractions) over the common seeds, with its
        image interval and its seed noise. Returns value, image_low / image_high, per_seed values,
        the smallest subset size, seed_sd (of the mean over seeds) with its degrees of freedom and
        source, and low / high / detectable with both noises."""
        methods = list(dict.fromkeys(t.method for t in terms.values()))
        seeds = self.seeds_for(methods)
        if not seeds:
            raise ValueError(f"the compared methods {methods} share no seed")
        pops = sorted({_population(t.split) for t in terms.values()})
        rng = np.random.default_rng(self.boot_seed)
        weights, ref_ids = {}, {}
        for pop in pops:
            t = next(t for t in terms.values() if _population(t.split) == pop)
            ids = list(self.ev(t.method, t.split, seeds[0]).ids)
            n = len(ids)
            draws = rng.integers(0, n, size=(self.n_boot, n))
            w = np.zeros((self.n_boot, n))
            np.add.at(w, (np.repeat(np.arange(self.n_boot), n), draws.ravel()), 1.0)
            weights[pop], ref_ids[pop] = w, ids
        points, boots, n_min = [], [], None
        for seed in seeds:
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
        value = float(np.mean(points))
        boot = np.mean(boots, axis=0)
        with np.errstate(invalid="ignore"):
            img_lo, img_hi = (np.nanquantile(boot, [self.alpha / 2, 1 - self.alpha / 2])
                              if np.isfinite(boot).any() else (np.nan, np.nan))
        n = len(seeds)
        if n >= MIN_SEEDS:
            sd, df, source = float(np.std(points, ddof=1)), n - 1, f"measured over {n} seeds"
        else:
            run_sd, df, pooled = self.run_noise()
            sd = run_sd * math.sqrt(len(methods))
            source = (f"borrowed: the pooled run-to-run SD of val mean IoU of {', '.join(pooled)} "
                      f"x sqrt({len(methods)}) compared methods" if pooled else "no method has several seeds")
        t = float(stats.t.ppf(1 - self.alpha / 2, df)) if df > 0 else math.nan
        seed_half = t * sd / math.sqrt(n)
        below, above = value - float(img_lo), float(img_hi) - value
        low = value - math.hypot(below, seed_half)
        high = value + math.hypot(above, seed_half)
        return {"value": value, "image_low": float(img_lo), "image_high": float(img_hi),
                "per_seed": tuple(points), "n": n_min or 0, "seeds": seeds, "seed_sd": sd, "seed_df": df,
                "seed_sd_source": source, "low": low, "high": high,
                "detectable": math.hypot(max(below, above), seed_half)}


def _classes_of(terms: dict[str, Term]) -> list[int]:
    """The classes the statistic averages over by name (``miou:`` and ``iou:`` terms)."""
    ids: set[int] = set()
    for t in terms.values():
        if t.stat.startswith("miou:"):
            ids.update(int(i) for i in t.stat[5:].split(","))
        elif t.stat.startswith("iou:"):
            ids.add(int(t.stat[4:]))
    return sorted(ids)


def verdict_of(evidence: Evidence, claim: Claim) -> Verdict:
    """The verdict of ``claim`` on ``evidence`` (see the module docstring for the rule)."""
    r = evidence.measure(claim.terms, claim.combine)
    pp = 100.0
    methods = list(dict.fromkeys(t.method for t in claim.terms.values()))
    seeds = {m: evidence.seeds_of(m) for m in methods}
    lo, hi = r["low"] * pp, r["high"] * pp
    if 0 <= r["n"] < MIN_IMAGES:
        verdict, reason = "untestable", (f"a subset the statistic needs has {r['n']} images "
                                         f"(fewer than {MIN_IMAGES})")
    elif claim.construction and evidence.synthetic:
        verdict, reason = "by construction", f"on the synthetic benchmark this follows from the renderer: {claim.construction}"
    elif (why := evidence.gate(claim.terms, _classes_of(claim.terms))) is not None:
        verdict, reason = "untestable", f"a compared model is too weak for this claim: {why}"
    elif claim.ssl and claim.control is None:
        verdict, reason = "undecided", "confounded with training length: this build has no control run"
    else:
        sign = decide(lo, hi)
        few = {m: len(s) for m, s in seeds.items() if len(s) < MIN_SEEDS}
        if sign == "undecided":
            verdict = "undecided"
            reason = (f"the interval [{lo:.2f}, {hi:.2f}] contains 0: an effect of {abs(r['value']) * pp:.2f} pp "
                      f"is below the {r['detectable'] * pp:.2f} pp this build can detect")
            if not np.isfinite(lo):
                reason = f"no interval: {r['seed_sd_source']}"
        elif few:
            verdict = "undecided"
            reason = (f"the interval [{lo:.2f}, {hi:.2f}] excludes 0 with seed noise {r['seed_sd_source']}, but a "
                      f"decided verdict needs {MIN_SEEDS} seeds of every compared run ("
                      + ", ".join(f"{m}: {k}" for m, k in few.items()) + ")")
        else:
            verdict = sign
            reason = (f"the interval [{lo:.2f}, {hi:.2f}] (images and seeds, seed noise {r['seed_sd_source']}) "
                      f"lies {'above' if sign == 'supported' else 'below'} 0")
    return Verdict(claim.section, claim.claim, claim.statistic,
                   None if claim.paper_value is None else round(float(claim.paper_value), 2),
                   r["value"] * pp, lo, hi, r["detectable"] * pp, tuple(v * pp for v in r["per_seed"]), seeds,
                   claim.control, verdict, reason, r["n"], r["image_low"] * pp, r["image_high"] * pp,
                   r["seed_sd"] * pp, r["seed_sd_source"], claim.note)


def stack_min(d: dict, names) -> np.ndarray:
    return np.min(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)


def stack_max(d: dict, names) -> np.ndarray:
    return np.max(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)


def stack_mean(d: dict, names) -> np.ndarray:
    return np.mean(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)
