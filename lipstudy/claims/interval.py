"""A claim's statistic on a build's evaluations: its value over seeds, its interval with image and
seed noise, its standard error, and the gate on the models it compares.

A claim is one number (in fractions here; the verdicts show percentage points) computed from the
scores of :class:`Term` s: ``combine({name: score})``, positive when the claim holds.

**The interval** adds two sources of noise, as independent variances:

- *images*: a paired percentile bootstrap over the evaluated images. One draw of images per
  population (the validation set, ATR, ...) is shared by every method, subset and input size the
  statistic compares, and the statistic is averaged over seeds inside each draw. A population made
  of several splits (the validation set with the challenge top-up, :mod:`lipstudy.data.topup`) is
  resampled within each split, as it was drawn;
- *seeds*: how much the statistic moves when the same runs are trained again. With at least
  :data:`MIN_SEEDS` seeds of every compared run it is the spread of the per-seed values (standard
  deviation, Student's t with n - 1 degrees of freedom, divided by sqrt(n) for the mean). With
  fewer, it is borrowed (:meth:`Evidence.run_noise`): the pooled run-to-run standard deviation of
  validation mean IoU over the build's methods trained with several seeds, times sqrt(k) for a
  statistic comparing k methods, with the pooled degrees of freedom.

``low`` / ``high`` = value -+ sqrt(image half-width^2 + seed half-width^2); ``se`` = sqrt(SD of
the bootstrap values^2 + (seed SD / sqrt(n))^2), the standard error the power of
:mod:`lipstudy.claims.engine` is computed from.
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

MIN_SEEDS = 3
"""Seeds of every compared run before a verdict is decided (the seed spread needs them)."""
GATE_IOU = 0.01
"""IoU under which a method is taken not to predict a class at all."""
TOPUP_SPLIT = "challenge"
"""The ``split`` of the challenge top-up's images in the attributes (:mod:`lipstudy.data.topup`)."""


@dataclass(frozen=True)
class Term:
    """One score of one method: ``stat`` (a ``metrics.stat_fn`` name) on evaluation ``split``
    (``val``, ``test``, ``val@<size>``, ``atr``, ``val+challenge``, ...), optionally on a subset of
    its images (an attribute column of attributes.csv such as ``back_view``, or ``size:<bin>``)."""

    method: str
    split: str = "val"
    subset: str | None = None
    stat: str = "mean_iou"


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
    data then hold by construction). ``challenge_split``: the evaluation the challenge claims read
    (``val``, or ``val+challenge`` when the build has the challenge top-up); ``topped_up``: the
    challenge types whose subsets include the top-up's images (every other subset, and the whole
    set, are the validation images alone). ``margin`` (a fraction) and ``reference``: the decision
    rule's margin, and the estimates (pp) of a reference build on another CPU by (claim, bin), from
    which :func:`lipstudy.claims.engine.margin_of` measures the cross-machine change.
    """

    evaluation: Callable[[str, str, int], object]
    method_seeds: dict
    attributes: pd.DataFrame | None = None
    synthetic: bool = False
    n_boot: int = 1000
    alpha: float = 0.05
    boot_seed: int = 0
    challenge_split: str = "val"
    topped_up: frozenset = frozenset()
    margin: float = 0.005
    reference: dict = field(default_factory=dict)
    reference_cpu: str = ""
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

    def _splits(self, ids: Sequence[str]) -> np.ndarray | None:
        """The split of each image (attributes' ``split`` column, "" where unknown), None without one."""
        if self.attributes is None or "split" not in self.attributes:
            return None
        return self.attributes["split"].reindex(list(ids)).fillna("").astype(str).to_numpy()

    def mask(self, ids: Sequence[str], subset: str | None) -> np.ndarray:
        """Boolean mask of the images in ``subset`` (all when None). The challenge top-up's images
        count only in the subsets of the types they top up (:attr:`topped_up`)."""
        if subset is None:
            m = np.ones(len(ids), dtype=bool)
        else:
            if self.attributes is None:
                raise ValueError(f"subset {subset!r} needs image attributes, none were given")
            if self.attributes.reindex(list(ids)).isna().all(axis=None):
                raise ValueError(f"none of the {len(ids)} evaluated images has attributes")
            m = subset_mask(ids, self.attributes, subset)
        if self.topped_up and subset not in self.topped_up and (split := self._splits(ids)) is not None:
            m = m & (split != TOPUP_SPLIT)
        return m

    def _draws(self, ids: Sequence[str], rng) -> np.ndarray:
        """Bootstrap draws ``[n_boot, n]`` of image indices, each split resampled within itself."""
        n = len(ids)
        split = self._splits(ids)
        if split is None or len(set(split)) <= 1:
            return rng.integers(0, n, size=(self.n_boot, n))
        draws = np.empty((self.n_boot, n), dtype=np.int64)
        for s in dict.fromkeys(split):
            idx = np.flatnonzero(split == s)
            draws[:, idx] = idx[rng.integers(0, len(idx), size=(self.n_boot, len(idx)))]
        return draws

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

    def gate(self, terms: dict[str, Term], classes, methods=None) -> str | None:
        """Why the compared methods are too weak for a claim (None when they are not): a method
        that scores IoU >= GATE_IOU on fewer than half the ground truth's classes, or under
        GATE_IOU on one of ``classes`` (the classes the claim averages over). ``methods``: only
        these of the compared methods are gated (the ones a claim says are better); all when None."""
        reasons = []
        for method, split in dict.fromkeys((t.method, t.split) for t in terms.values()):
            if methods is not None and method not in methods:
                continue
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
        image interval and its seed noise. Returns value, image_low / image_high, per_seed values
        and the seeds they are of, the smallest subset size, seed_sd (of one seed's value) with
        its degrees of freedom and source, and low / high / se with both noises."""
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
            draws = self._draws(ids, rng)
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
        finite = np.isfinite(boot).any()
        with np.errstate(invalid="ignore"):
            img_lo, img_hi = np.nanquantile(boot, [self.alpha / 2, 1 - self.alpha / 2]) if finite else (np.nan, np.nan)
            img_sd = float(np.nanstd(boot)) if finite else math.nan
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
        return {"value": value, "image_low": float(img_lo), "image_high": float(img_hi),
                "per_seed": tuple(points), "seeds": seeds, "n": n_min or 0, "seed_sd": sd, "seed_df": df,
                "seed_sd_source": source, "low": value - math.hypot(below, seed_half),
                "high": value + math.hypot(above, seed_half), "half": math.hypot(max(below, above), seed_half),
                "se": math.hypot(img_sd, sd / math.sqrt(n))}
