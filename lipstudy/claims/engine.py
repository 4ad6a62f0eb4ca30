"""A claim of the paper as one statistic, and the rule that gives its verdict.

A claim is turned into one number whose sign decides it, in percentage points of a score (e.g.
"Attention is the best baseline" -> mIoU(Attention) - mIoU(the best other baseline)). The same
statistic is computed on the paper's own tables where they print what it needs (``paper_value``;
a claim whose paper value is negative is flagged: the paper's own numbers contradict that reading
of its sentence) and on this build's per-image confusion matrices (``estimate``: the mean over the
seeds every compared run has), with a 95% interval over images and seeds
(:mod:`lipstudy.claims.interval`).

**The decision rule** (:func:`rule`; one rule for every verdict the book prints, the budget table
of :mod:`lipstudy.claims.budgets` included). A claim is *supported* (or *contradicted*) only when

(a) every compared run has at least :data:`MIN_SEEDS` seeds;
(b) every seed's paired estimate has the sign: above 0 for supported, below 0 for contradicted;
(c) the interval clears 0 by the margin: ``low > margin`` (or ``high < -margin``). The margin is
    at least the change of that statistic between two machines with different CPUs: the same run
    keys compute other numbers on another instruction set (issue 36 measured 0.07-0.42 pp of
    validation mean IoU per run between an AVX2 EPYC and an AVX-512 Xeon). It is
    :data:`DEFAULT_MARGIN_PP` until a reference build on another CPU measures it (:func:`margin_of`:
    the larger of the default and |this build - the reference| for that statistic).

Otherwise *undecided*, with the reason (every condition that fails).

**Power.** ``detectable`` is the smallest true effect the build detects with 80% probability:
the estimate falls above ``margin + h`` (h the interval's half-width) with probability 0.8 when the
effect is ``margin + h + z_0.80 * se``, ``se`` the interval's standard error. For a normal interval
h = z_{1-a/2} * se, so ``detectable = (z_{1-a/2} + z_{0.80}) * se + margin``; here h is the
interval's own half-width (Student's t for the seed term, the bootstrap's percentiles), which is
wider with few seeds. Condition (b) is not counted in it: the power is at most this.

**"At every X" claims** (object sizes, input sizes, challenge types; ``Claim.bins``) are decided
per bin: each bin's estimate, interval and verdict by the rule, and the claim is *contradicted*
when any bin is, *supported* when every bin is, *undecided* otherwise, never from a minimum or
maximum alone. The claim's own numbers are its weakest bin's (the smallest estimate).

**The verdict** (:func:`verdict_of`), in this order:

1. ``untestable`` when a subset the claim needs has fewer than :data:`MIN_IMAGES` images, or when a
   model is too weak for the claim (:meth:`Evidence.gate`: it scores IoU of at least
   :data:`GATE_IOU` on fewer than half the classes of the ground truth, or under :data:`GATE_IOU`
   on a class the claim averages over). A claim that one group of methods beats another
   (``Claim.better``) is refused only when a method it says is *better* fails the gate: a weak
   method said to be worse is what the claim predicts. Other claims gate every compared method;
2. ``by construction`` for a claim about the data (``Claim.construction``) on synthetic data: the
   renderer's rule that makes it hold is named, beside what was observed (the rule's reading of
   the interval, and whether the renderer produced an effect this build detects);
3. ``undecided`` for an SSL claim whose control (the same network trained the same extra epochs
   without SSL) is not in the build: it is confounded with training length;
4. the decision rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import stats

from ..words import and_list, count, plural
from .interval import GATE_IOU, MIN_SEEDS, Evidence, Term  # noqa: F401  (the engine's vocabulary)

BASELINES = ("SegNet", "FCN-8s", "DeepLabV2", "Attention")
CHALLENGES = ("occlusion", "full_body", "upper_body", "head_missed", "back_view")
SIZE_BINS = ("small", "medium", "large")
VERDICTS = ("supported", "contradicted", "undecided", "untestable", "by construction")
DECIDED = ("supported", "contradicted")
MIN_IMAGES = 10
"""A subset with fewer images says little, whatever its interval."""
DEFAULT_MARGIN_PP = 0.5
"""The margin of condition (c) until a reference build on another CPU measures it (pp)."""
POWER = 0.8
"""The probability with which ``detectable`` is detected."""


@dataclass(frozen=True)
class Bin:
    """One bin of an "at every X" claim: its name (``small``, ``128 px``, ``back_view``), its
    statistic (``terms`` combined by ``combine``, positive when the claim holds in the bin) and the
    paper's value of it."""

    name: str
    terms: dict = field(compare=False)
    combine: Callable = field(compare=False)
    paper_value: float | None = None


@dataclass(frozen=True)
class Claim:
    """A claim as data: what the paper says (``claim``, ``section``), the statistic that tests it
    (``terms`` combined by ``combine`` into a number whose positive sign supports the claim, or
    per bin: ``bins``), the same statistic on the paper's numbers, the control an SSL claim is
    measured against, the methods a comparison says are better (``better``: only they are gated;
    None: every compared method is), and, for a claim about the data, the renderer's rule that
    makes it hold on synthetic data."""

    section: str
    claim: str
    statistic: str
    terms: dict = field(compare=False)
    combine: Callable | None = field(default=None, compare=False)
    paper_value: float | None = None
    control: str | None = None
    construction: str | None = None
    ssl: bool = False
    note: str = ""
    better: tuple[str, ...] | None = None
    bins: tuple[Bin, ...] = ()


def binned(bins: tuple[Bin, ...]) -> dict:
    """Every term of ``bins`` by name (a binned claim's ``terms``, which the gate reads)."""
    return {name: t for b in bins for name, t in b.terms.items()}


def _num(x):
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


@dataclass(frozen=True)
class Reading:
    """One statistic read by the rule: a claim's, or one bin's of a binned claim (pp)."""

    name: str | None
    paper_value: float | None
    estimate: float
    low: float
    high: float
    per_seed: tuple[float, ...]
    margin: float
    margin_source: str
    detectable: float
    verdict: str
    reason: str
    n_images: int

    def as_record(self) -> dict:
        return {"bin": self.name, "paper": _num(self.paper_value), "ours": _num(self.estimate), "low": _num(self.low),
                "high": _num(self.high), "per_seed": [_num(v) for v in self.per_seed], "margin": _num(self.margin),
                "detectable": _num(self.detectable), "verdict": self.verdict, "reason": self.reason,
                "images": self.n_images}


@dataclass(frozen=True)
class Verdict:
    section: str
    claim: str
    statistic: str
    paper_value: float | None       # the statistic on the paper's numbers (pp), None if not printed
    estimate: float                 # this build, mean over seeds (pp); a binned claim's weakest bin
    low: float                      # interval with image and seed noise (pp)
    high: float
    detectable: float               # the smallest effect detected with 80% probability (pp)
    per_seed: tuple[float, ...]     # the statistic per seed, in the order of seeds_used
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
    seeds_used: tuple[int, ...] = ()  # the seeds every compared method has: those of per_seed
    margin: float = DEFAULT_MARGIN_PP
    margin_source: str = ""
    observed: str = ""              # the rule's reading of the numbers (a by-construction claim's observation)
    bins: tuple[Reading, ...] = ()
    weakest_bin: str | None = None

    @property
    def paper_opposite(self) -> bool:
        """The paper's own value of the statistic has the opposite sign to its sentence."""
        return self.paper_value is not None and self.paper_value < 0

    @property
    def seed_spread(self) -> float:
        """max - min of the statistic over seeds (pp); NaN with one seed."""
        return (max(self.per_seed) - min(self.per_seed)) if len(self.per_seed) > 1 else np.nan

    def as_record(self) -> dict:
        """The claim as ``results/claims/<profile>.json`` stores it."""
        return {"claim": self.claim, "section": self.section, "statistic": self.statistic,
                "paper": _num(self.paper_value), "paper_opposite": self.paper_opposite, "ours": _num(self.estimate),
                "low": _num(self.low), "high": _num(self.high), "seeds": {m: list(s) for m, s in self.seeds.items()},
                "seeds_used": list(self.seeds_used), "per_seed": [_num(v) for v in self.per_seed],
                "control": self.control, "margin": _num(self.margin), "margin_source": self.margin_source,
                "detectable": _num(self.detectable), "detectable_power": POWER, "verdict": self.verdict,
                "observed": self.observed, "reason": self.reason, "images": self.n_images,
                "bins": [b.as_record() for b in self.bins], "weakest_bin": self.weakest_bin,
                "image_low": _num(self.image_low), "image_high": _num(self.image_high),
                "seed_sd": _num(self.seed_sd), "seed_sd_source": self.seed_sd_source, "note": self.note}

    def as_row(self) -> dict:
        return {"section": self.section, "claim": self.claim, "statistic": self.statistic,
                "paper (pp)": self.paper_value, "ours (pp)": self.estimate, "CI low": self.low,
                "CI high": self.high, "margin (pp)": self.margin, "detectable at 80% power (pp)": self.detectable,
                "seeds": ", ".join(f"{v:.2f}" for v in self.per_seed), "seed spread": self.seed_spread,
                "control": self.control or "-", "verdict": self.verdict, "reason": self.reason,
                "images": self.n_images, "note": self.note}


# ---------------------------------------------------------------------------------------------
# the rule


def _pp(x: float) -> str:
    return f"{x:+.2f}"


def rule(low: float, high: float, per_seed, seeds: dict, margin: float, seeds_used=None) -> tuple[str, str]:
    """(verdict, reason) of a statistic claimed positive, all in pp: its interval ``low`` /
    ``high``, its value per seed (``per_seed``, of ``seeds_used``), the seeds each compared method
    has (``seeds``) and the ``margin`` (conditions (a), (b), (c) of the module docstring)."""
    per_seed = [float(v) for v in per_seed]
    used = list(seeds_used) if seeds_used is not None else list(range(len(per_seed)))
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undecided", "no interval"
    interval = f"the interval [{_pp(low)}, {_pp(high)}]"
    side = "supported" if low > margin else "contradicted" if high < -margin else None
    why = []
    few = {m: len(s) for m, s in seeds.items() if len(s) < MIN_SEEDS}
    if few:
        why.append(f"(a) a decided verdict needs {MIN_SEEDS} seeds of every compared run ("
                   + ", ".join(f"{m.removeprefix('ppp/')}: {k}" for m, k in few.items()) + ")")
    if side is None:
        where = "contains 0" if low <= 0 <= high else f"clears 0 by less than the {margin:.2f} pp margin"
        why.append(f"(c) {interval} {where}")
    sign = 1.0 if (side == "supported" or (side is None and np.mean(per_seed or [0]) >= 0)) else -1.0
    against = [(s, v) for s, v in zip(used, per_seed) if not sign * v > 0]
    if against:
        want = "above" if sign > 0 else "below"
        why.append(f"(b) {plural(len(against), 'seed')} {and_list(s for s, _ in against)} "
                   f"({', '.join(_pp(v) for _, v in against)}) {plural(len(against), 'is', 'are')} not {want} 0")
    if why:
        return "undecided", "; ".join(why)
    return side, (f"{interval} clears 0 by more than the {margin:.2f} pp margin, and "
                  + ("the one seed's estimate" if len(per_seed) == 1 else f"all {len(per_seed)} seeds' estimates")
                  + f" ({', '.join(_pp(v) for v in per_seed)}) {'lie' if len(per_seed) > 1 else 'lies'} "
                  + ("above" if side == "supported" else "below") + " 0")


def detectable(half: float, se: float, margin: float, alpha_power: float = POWER) -> float:
    """The smallest effect detected with probability ``alpha_power``: ``margin + half +
    z_power * se`` (module docstring), in the unit of its arguments."""
    return margin + half + float(stats.norm.ppf(alpha_power)) * se


def margin_of(evidence: Evidence, claim: str, bin_name: str | None, estimate: float) -> tuple[float, str]:
    """The margin of condition (c) for one statistic (pp), and where it came from: the default
    until a reference build on another CPU measures the change of that statistic, then the larger
    of the default and |this build - the reference|."""
    default = 100 * evidence.margin
    ref = evidence.reference.get((claim, bin_name))
    if ref is None or not np.isfinite(ref):
        return default, f"{default:.2f} pp, the default until a reference build on another CPU measures the change"
    change = abs(estimate - ref)
    where = evidence.reference_cpu or "another CPU"
    return max(default, change), (f"this statistic moved by {change:.2f} pp against the reference build on "
                                  f"{where} (the margin is at least {default:.2f} pp)")


def aggregate(readings) -> tuple[str, str]:
    """A binned claim's verdict from its bins' (:class:`Reading`): contradicted when any bin is,
    supported when every bin is, undecided otherwise."""
    by = {v: [r.name for r in readings if r.verdict == v] for v in ("supported", "contradicted", "undecided")}
    n = len(readings)
    if by["contradicted"]:
        return "contradicted", (f"{plural(len(by['contradicted']), 'bin')} {and_list(by['contradicted'])} "
                                f"{plural(len(by['contradicted']), 'is', 'are')} contradicted")
    if len(by["supported"]) == n:
        return "supported", f"every one of the {count(n, 'bin')} ({and_list(by['supported'])}) is supported"
    parts = [f"{and_list(names)} {v}" for v, names in by.items() if names]
    return "undecided", f"not every bin is supported: {'; '.join(parts)}"


def _read(evidence: Evidence, claim: Claim, b: Bin | None, r: dict, seeds: dict) -> Reading:
    pp = 100.0
    value, low, high = r["value"] * pp, r["low"] * pp, r["high"] * pp
    margin, source = margin_of(evidence, claim.claim, b.name if b else None, value)
    per_seed = tuple(v * pp for v in r["per_seed"])
    verdict, reason = rule(low, high, per_seed, seeds, margin, r["seeds"])
    paper = (b.paper_value if b else claim.paper_value)
    return Reading(b.name if b else None, None if paper is None else round(float(paper), 2), value, low, high,
                   per_seed, margin, source, detectable(r["half"] * pp, r["se"] * pp, margin), verdict, reason, r["n"])


def _classes_of(terms: dict[str, Term]) -> list[int]:
    """The classes the statistic averages over by name (``miou:`` and ``iou:`` terms)."""
    ids: set[int] = set()
    for t in terms.values():
        if t.stat.startswith("miou:"):
            ids.update(int(i) for i in t.stat[5:].split(","))
        elif t.stat.startswith("iou:"):
            ids.add(int(t.stat[4:]))
    return sorted(ids)


def _observation(verdict: str, reason: str, low: float, high: float, margin: float) -> str:
    cleared = low > margin or high < -margin
    effect = ("the renderer's rule produced an effect this build detects" if cleared and low > 0 else
              "the effect observed goes against the rule" if cleared else
              "the renderer's rule produced no effect this build can detect at this size")
    return f"observed here: {verdict} ({reason}): {effect}"


def verdict_of(evidence: Evidence, claim: Claim) -> Verdict:
    """The verdict of ``claim`` on ``evidence`` (see the module docstring for the rule)."""
    methods = list(dict.fromkeys(t.method for t in claim.terms.values()))
    seeds = {m: evidence.seeds_of(m) for m in methods}
    parts = claim.bins or (None,)
    measured = [evidence.measure(b.terms, b.combine) if b else evidence.measure(claim.terms, claim.combine)
                for b in parts]
    readings = tuple(_read(evidence, claim, b, r, seeds) for b, r in zip(parts, measured))
    i = int(np.argmin([x.estimate if np.isfinite(x.estimate) else np.inf for x in readings]))
    head, r = readings[i], measured[i]
    observed, why = aggregate(readings) if claim.bins else (head.verdict, head.reason)
    n = min(x.n_images for x in readings)
    if 0 <= n < MIN_IMAGES:
        verdict, reason = "untestable", (f"a subset the statistic needs has {count(n, 'image')} "
                                         f"(fewer than {MIN_IMAGES})")
    elif claim.construction and evidence.synthetic:
        verdict = "by construction"
        reason = (f"on the synthetic benchmark this follows from the renderer: {claim.construction}; "
                  + _observation(observed, why, head.low, head.high, head.margin))
    elif (gate := evidence.gate(claim.terms, _classes_of(claim.terms), claim.better)) is not None:
        said = "a method it says is better" if claim.better is not None else "a compared model"
        verdict, reason = "untestable", f"{said} is too weak for this claim: {gate}"
    elif claim.ssl and claim.control is None:
        verdict, reason = "undecided", "confounded with training length: this build has no control run"
    else:
        verdict, reason = observed, why
    return Verdict(claim.section, claim.claim, claim.statistic,
                   None if claim.paper_value is None else round(float(claim.paper_value), 2),
                   head.estimate, head.low, head.high, head.detectable, head.per_seed, seeds, claim.control,
                   verdict, reason, n, r["image_low"] * 100, r["image_high"] * 100, r["seed_sd"] * 100,
                   r["seed_sd_source"], claim.note, tuple(r["seeds"]), head.margin, head.margin_source, observed,
                   readings if claim.bins else (), head.name)


def stack_min(d: dict, names) -> np.ndarray:
    return np.min(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)


def stack_max(d: dict, names) -> np.ndarray:
    return np.max(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)


def stack_mean(d: dict, names) -> np.ndarray:
    return np.mean(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)
