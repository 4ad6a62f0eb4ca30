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

from lipstudy import metrics
from lipstudy.labels import ATR_LIP_SHARED, LIP_CLASSES, LIP_TABLE4_NAMES

BASELINES = ("SegNet", "FCN-8s", "DeepLabV2", "Attention")
CHALLENGES = ("occlusion", "full_body", "upper_body", "head_missed", "back_view")
SIZE_BINS = ("small", "medium", "large")
MIN_IMAGES = 10

_ID = {name: i for i, name in enumerate(LIP_CLASSES)}


def _ids(*names: str) -> tuple[int, ...]:
    return tuple(_ID[n] for n in names)


# Class groups the claims name (Sections 3.2, 3.3, 5.2).
ARMS_LEGS_SHOES = _ids("left-arm", "right-arm", "left-leg", "right-leg", "left-shoe", "right-shoe")
SMALL_LABELS_52 = _ids("sunglasses", "socks", "glove")                 # Section 5.2's examples
SMALL_LABELS_33 = _ids("sunglasses", "scarf", "skirt")                 # Section 3.3's examples
LARGE_LABELS_33 = _ids("face", "upper-clothes", "coat", "pants")       # Section 3.3's examples
# Both sections' small labels, each once (sunglasses is in both lists), in a stable order.
SMALL_LABELS = tuple(dict.fromkeys(SMALL_LABELS_33 + SMALL_LABELS_52))
UPPER_BODY_LABELS = _ids("hat", "hair", "glove", "sunglasses", "upper-clothes", "coat", "scarf",
                         "face", "left-arm", "right-arm")
LOWER_BODY_LABELS = _ids("socks", "pants", "skirt", "left-leg", "right-leg", "left-shoe", "right-shoe")
OTHER_THAN_ARMS_LEGS_SHOES = tuple(i for i in range(1, len(LIP_CLASSES)) if i not in ARMS_LEGS_SHOES)


def miou_of(ids: Sequence[int]) -> str:
    """The metrics statistic 'mean IoU over these classes'."""
    return "miou:" + ",".join(str(i) for i in ids)


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
        attrs = self.attributes.reindex(list(ids))
        if attrs.isna().all(axis=None):
            raise ValueError(f"none of the {len(ids)} evaluated images has attributes")
        if subset.startswith("size:"):
            return (attrs["size_bin"] == subset[5:]).to_numpy()
        return attrs[subset].fillna(0).astype(int).to_numpy() == 1

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


def _verdict(evd: Evidence, section: str, claim: str, statistic: str, terms: dict, combine,
             paper_value: float | None, note: str = "") -> Verdict:
    r = evd.measure(terms, combine)
    pp = 100.0
    verdict = decide(r["low"], r["high"])
    if 0 < r["n"] < MIN_IMAGES:
        verdict = "too few images"
    zero = evd.zero_classes(terms)
    if zero and verdict in ("supported", "contradicted", "inconclusive"):
        verdict = "untestable here"
        note = "; ".join(x for x in (note, "every compared model scores IoU 0 on "
                                     + ", ".join(LIP_CLASSES[c] for c in zero)) if x)
    return Verdict(section, claim, statistic, None if paper_value is None else round(paper_value, 2),
                   r["value"] * pp, r["low"] * pp, r["high"] * pp, tuple(v * pp for v in r["per_seed"]),
                   verdict, r["n"], note)


def _stack_min(d: dict, names) -> np.ndarray:
    return np.min(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)


def _stack_max(d: dict, names) -> np.ndarray:
    return np.max(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)


def _stack_mean(d: dict, names) -> np.ndarray:
    return np.mean(np.stack([np.asarray(d[n], dtype=np.float64) for n in names]), axis=0)


# ---------------------------------------------------------------------------------------------
# The paper's numbers for the same statistics (None where the paper prints no number).


def _paper():
    from lipstudy import paper

    return paper


def _t4(method_row: str, ids) -> float:
    t4 = _paper().TABLE4
    cols = [LIP_TABLE4_NAMES[LIP_CLASSES[i]] for i in ids]
    return float(t4.loc[method_row, cols].mean())


_ROW = {"SegNet": "SegNet [3]", "FCN-8s": "FCN-8s [21]", "DeepLabV2": "DeepLabV2 [4]",
        "Attention": "Attention [5]", "DeepLabV2 + SSL": "DeepLabV2 + SSL", "Attention + SSL": "Attention + SSL"}


# ---------------------------------------------------------------------------------------------
# Section 3


def attention_best_baseline(evd: Evidence, stat: str = "mean_iou", split: str = "val") -> Verdict:
    """3.1: "Attention [5] performs best with 42.92%" (mean IoU), also best mean accuracy (54.39%),
    and "similar performance is observed on the LIP test set"."""
    others = [m for m in BASELINES if m != "Attention"]
    terms = {m: Term(m, split, stat=stat) for m in BASELINES}
    col = {"mean_iou": "Mean IoU", "mean_acc": "Mean accuracy"}[stat]
    table = _paper().TABLE2 if split == "val" else _paper().TABLE3
    pv = table.loc["Attention [5]", col] - max(table.loc[_ROW[m], col] for m in others)
    name = {"mean_iou": "mean IoU", "mean_acc": "mean accuracy"}[stat]
    return _verdict(evd, "3.1", f"Attention is the best of the four baselines in {name} ({split})",
                    f"{name}(Attention) - max {name}(SegNet, FCN-8s, DeepLabV2), {split}",
                    terms, lambda d: d["Attention"] - _stack_max(d, others), pv)


def fcn_segnet_far_behind(evd: Evidence) -> Verdict:
    """3.1: "both FCN-8s (28.29%) and SegNet (18.17%) perform significantly worse"."""
    terms = {m: Term(m) for m in BASELINES}
    t2 = _paper().TABLE2["Mean IoU"]
    pv = min(t2["DeepLabV2 [4]"], t2["Attention [5]"]) - max(t2["FCN-8s [21]"], t2["SegNet [3]"])
    return _verdict(evd, "3.1", "FCN-8s and SegNet are far worse than DeepLabV2 and Attention",
                    "min mIoU(DeepLabV2, Attention) - max mIoU(FCN-8s, SegNet), val", terms,
                    lambda d: _stack_min(d, ["DeepLabV2", "Attention"]) - _stack_max(d, ["FCN-8s", "SegNet"]), pv)


def _challenge_terms(methods=BASELINES, subsets=CHALLENGES) -> dict:
    return {f"{m}|{s}": Term(m, subset=s) for m in methods for s in subsets}


def _subset_mean(d: dict, subset: str, methods=BASELINES) -> np.ndarray:
    return _stack_mean(d, [f"{m}|{subset}" for m in methods])


def back_view_hardest(evd: Evidence) -> Verdict:
    """3.2: "Back-view is clearly the most challenging case" (Attention: 42.92% -> 33.50%)."""
    others = [s for s in CHALLENGES if s != "back_view"]
    return _verdict(
        evd, "3.2", "Back-view is the hardest challenge",
        "min over other challenges - back-view, of mIoU averaged over the 4 baselines, val",
        _challenge_terms(),
        lambda d: np.min(np.stack([_subset_mean(d, s) for s in others]), axis=0) - _subset_mean(d, "back_view"),
        None, note="Fig. 5 prints no numbers; Attention's back-view drop is 42.92 -> 33.50")


def back_view_drop_attention(evd: Evidence) -> Verdict:
    """3.2: "the IoU of Attention [5] drops from 42.92% to 33.50%" on back-view images."""
    b = _paper().BACK_VIEW_IOU
    return _verdict(evd, "3.2", "Attention's mean IoU drops on back-view images",
                    "mIoU(Attention, all val) - mIoU(Attention, back-view)",
                    {"all": Term("Attention"), "back": Term("Attention", subset="back_view")},
                    lambda d: d["all"] - d["back"], b["all"] - b["back_view"])


def head_missed_second(evd: Evidence) -> Verdict:
    """3.2: "The second most influential factor is the appearance of head"."""
    easier = ["occlusion", "full_body", "upper_body"]
    return _verdict(
        evd, "3.2", "Head-missed is the second hardest challenge (after back-view)",
        "min mIoU(occlusion, full-body, upper-body) - mIoU(head-missed), 4-baseline average, val",
        _challenge_terms(),
        lambda d: np.min(np.stack([_subset_mean(d, s) for s in easier]), axis=0) - _subset_mean(d, "head_missed"),
        None, note="Fig. 5 prints no numbers")


def head_missed_below_average_all(evd: Evidence) -> Verdict:
    """3.2: "The scores of all approaches are much lower on head-missed images than the average"."""
    terms = {**{f"{m}|all": Term(m) for m in BASELINES}, **_challenge_terms(subsets=("head_missed",))}
    return _verdict(
        evd, "3.2", "Every baseline scores lower on head-missed images than on the whole set",
        "min over the 4 baselines of mIoU(all val) - mIoU(head-missed)", terms,
        lambda d: np.min(np.stack([d[f"{m}|all"] - d[f"{m}|head_missed"] for m in BASELINES]), axis=0),
        None, note="Fig. 5 prints no numbers")


def upper_body_easiest(evd: Evidence) -> Verdict:
    """3.2: "upper-body is relatively the easiest case"."""
    others = [s for s in CHALLENGES if s != "upper_body"]
    return _verdict(
        evd, "3.2", "Upper-body is the easiest challenge",
        "mIoU(upper-body) - max over other challenges, 4-baseline average, val", _challenge_terms(),
        lambda d: _subset_mean(d, "upper_body") - np.max(np.stack([_subset_mean(d, s) for s in others]), axis=0),
        None, note="Fig. 5 prints no numbers")


def full_body_closest_to_average(evd: Evidence) -> Verdict:
    """3.2: "the results of full-body images are the closest to the average level"."""
    terms = {**{f"{m}|all": Term(m) for m in BASELINES}, **_challenge_terms()}

    def combine(d):
        avg = _stack_mean(d, [f"{m}|all" for m in BASELINES])
        gap = {s: np.abs(_subset_mean(d, s) - avg) for s in CHALLENGES}
        return np.min(np.stack([gap[s] for s in CHALLENGES if s != "full_body"]), axis=0) - gap["full_body"]

    return _verdict(evd, "3.2", "Full-body images score closest to the whole-set average",
                    "min over other challenges |mIoU - all| - |mIoU(full-body) - all|, 4-baseline average",
                    terms, combine, None, note="Fig. 5 prints no numbers")


def lower_body_harder(evd: Evidence) -> Verdict:
    """3.2: "the parts or clothes on the lower-body are more difficult than the ones on the
    upper-body because of the existence of small labels such as shoes or socks"."""
    terms = {f"{m}|{g}": Term(m, stat=miou_of(ids)) for m in BASELINES
             for g, ids in (("up", UPPER_BODY_LABELS), ("low", LOWER_BODY_LABELS))}
    pv = np.mean([_t4(_ROW[m], UPPER_BODY_LABELS) - _t4(_ROW[m], LOWER_BODY_LABELS) for m in BASELINES])
    return _verdict(evd, "3.2", "Lower-body labels are harder than upper-body labels",
                    "mean IoU of upper-body labels - of lower-body labels, 4-baseline average, val", terms,
                    lambda d: _stack_mean(d, [f"{m}|up" for m in BASELINES]) - _stack_mean(d, [f"{m}|low" for m in BASELINES]),
                    pv)


def large_labels_easier(evd: Evidence) -> Verdict:
    """3.3: labels "with larger regions like face, upper-clothes, coats and pants are much better
    than the ones on the small-region labels such as sunglasses, scarf and skirt"."""
    terms = {f"{m}|{g}": Term(m, stat=miou_of(ids)) for m in BASELINES
             for g, ids in (("large", LARGE_LABELS_33), ("small", SMALL_LABELS_33))}
    pv = np.mean([_t4(_ROW[m], LARGE_LABELS_33) - _t4(_ROW[m], SMALL_LABELS_33) for m in BASELINES])
    return _verdict(evd, "3.3", "Large-region labels score far above small-region labels",
                    "mIoU(face, u-clothes, coat, pants) - mIoU(sunglasses, scarf, skirt), 4-baseline average",
                    terms, lambda d: _stack_mean(d, [f"{m}|large" for m in BASELINES])
                    - _stack_mean(d, [f"{m}|small" for m in BASELINES]), pv)


def multiscale_better_on_small(evd: Evidence) -> Verdict:
    """3.3: "Attention and DeepLabV2 perform better on small labels thanks to the utilization of
    multi-scale features"."""
    small = SMALL_LABELS
    terms = {m: Term(m, stat=miou_of(small)) for m in BASELINES}
    pv = (np.mean([_t4(_ROW[m], small) for m in ("DeepLabV2", "Attention")])
          - np.mean([_t4(_ROW[m], small) for m in ("FCN-8s", "SegNet")]))
    return _verdict(evd, "3.3", "DeepLabV2 and Attention beat FCN-8s and SegNet on small labels",
                    "mean small-label IoU (sunglasses, scarf, skirt, socks, gloves): "
                    "avg(DeepLabV2, Attention) - avg(FCN-8s, SegNet)", terms,
                    lambda d: _stack_mean(d, ["DeepLabV2", "Attention"]) - _stack_mean(d, ["FCN-8s", "SegNet"]), pv)


# ---------------------------------------------------------------------------------------------
# Section 5


def ssl_improves(evd: Evidence, base: str = "Attention", split: str = "val") -> Verdict:
    """5.2: SSL improves the network it is added to (Tables 2 and 3)."""
    ssl = f"{base} + SSL"
    table = _paper().TABLE2 if split == "val" else _paper().TABLE3
    pv = table.loc[_ROW[ssl], "Mean IoU"] - table.loc[_ROW[base], "Mean IoU"]
    return _verdict(evd, "5.2", f"SSL improves {base} ({split})", f"mIoU({ssl}) - mIoU({base}), {split}",
                    {"ssl": Term(ssl, split), "base": Term(base, split)}, lambda d: d["ssl"] - d["base"], pv)


CONTROL = "DeepLabV2 + stage-2 epochs without SSL"


def ssl_beats_extra_epochs(evd: Evidence) -> Verdict:
    """5.2, implied: the gain of "+ SSL" comes from the structure-sensitive loss, not from the
    stage-2 epochs it adds. The paper has no such control; this run fine-tunes the same stage-1
    DeepLabV2 for the same epochs with plain cross-entropy."""
    return _verdict(evd, "5.2", "SSL beats training DeepLabV2 for the same extra epochs without it",
                    f"mIoU(DeepLabV2 + SSL) - mIoU({CONTROL}), val",
                    {"ssl": Term("DeepLabV2 + SSL"), "ctl": Term(CONTROL)}, lambda d: d["ssl"] - d["ctl"],
                    None, note="a control the paper lacks")


def attention_ssl_beats_deeplab(evd: Evidence) -> Verdict:
    """5.2: "3.09% better than DeepLabV2 and 1.81% better than Attention" (val)."""
    return _verdict(evd, "5.2", "Attention + SSL beats DeepLabV2 by a wide margin",
                    "mIoU(Attention + SSL) - mIoU(DeepLabV2), val",
                    {"ssl": Term("Attention + SSL"), "dl": Term("DeepLabV2")}, lambda d: d["ssl"] - d["dl"],
                    _paper().QUOTED_GAINS["lip_val_vs_deeplabv2"])


def ssl_improves_every_challenge(evd: Evidence) -> Verdict:
    """5.2 / Fig. 5: "With our structure-sensitive loss, the performance of all kinds of types are improved"."""
    terms = _challenge_terms(methods=("Attention", "Attention + SSL"))
    return _verdict(evd, "5.2", "SSL improves every challenge type",
                    "min over the 5 challenges of mIoU(Attention + SSL) - mIoU(Attention)", terms,
                    lambda d: np.min(np.stack([d[f"Attention + SSL|{s}"] - d[f"Attention|{s}"] for s in CHALLENGES]), axis=0),
                    None, note="Fig. 5 prints no numbers")


def ssl_helps_arms_legs_shoes_most(evd: Evidence) -> Verdict:
    """5.2: SSL "significantly improves the performance of the labels like arms, legs, and shoes"."""
    terms = {f"{m}|{g}": Term(m, stat=miou_of(ids)) for m in ("Attention", "Attention + SSL")
             for g, ids in (("als", ARMS_LEGS_SHOES), ("rest", OTHER_THAN_ARMS_LEGS_SHOES))}
    pv = ((_t4("Attention + SSL", ARMS_LEGS_SHOES) - _t4("Attention [5]", ARMS_LEGS_SHOES))
          - (_t4("Attention + SSL", OTHER_THAN_ARMS_LEGS_SHOES) - _t4("Attention [5]", OTHER_THAN_ARMS_LEGS_SHOES)))
    return _verdict(evd, "5.2", "SSL helps arms, legs and shoes more than the other labels",
                    "SSL gain in mean IoU of arms/legs/shoes - SSL gain on the other 13 part labels (Attention)",
                    terms, lambda d: (d["Attention + SSL|als"] - d["Attention|als"])
                    - (d["Attention + SSL|rest"] - d["Attention|rest"]), pv)


def ssl_helps_small_labels(evd: Evidence) -> Verdict:
    """5.2: "the labels covering small regions such as sunglasses, socks, gloves, are predicted better"."""
    terms = {m: Term(m, stat=miou_of(SMALL_LABELS_52)) for m in ("Attention", "Attention + SSL")}
    pv = _t4("Attention + SSL", SMALL_LABELS_52) - _t4("Attention [5]", SMALL_LABELS_52)
    return _verdict(evd, "5.2", "SSL improves small labels (sunglasses, socks, gloves)",
                    "mIoU over sunglasses, socks, gloves: Attention + SSL - Attention", terms,
                    lambda d: d["Attention + SSL"] - d["Attention"], pv)


def ssl_improves_ppp(evd: Evidence) -> Verdict:
    """5.2 / Table 5: on PASCAL-Person-Part "our best model achieves 59.36% ... 2.97% better than Attention"."""
    return _verdict(evd, "5.2", "SSL improves Attention on PASCAL-Person-Part",
                    "mIoU(Attention + SSL) - mIoU(Attention), PASCAL-Person-Part test",
                    {"ssl": Term("ppp/Attention + SSL", "ppp-test"), "base": Term("ppp/Attention", "ppp-test")},
                    lambda d: d["ssl"] - d["base"], _paper().QUOTED_GAINS["ppp_vs_attention"])


def lip_harder_than_atr(evd: Evidence) -> Verdict:
    """5.4 / Table 6 left: "the performance on ATR are better than those on LIP"."""
    shared = miou_of(ATR_LIP_SHARED)
    terms = {f"{m}|{s}": Term(m, s, stat=shared) for m in BASELINES for s in ("atr", "val")}
    t6 = _paper().TABLE6
    pv = float(np.mean([t6.loc[_ROW[m], "ATR"] - t6.loc[_ROW[m], "LIP"] for m in BASELINES]))
    return _verdict(evd, "5.4", "LIP is harder than ATR (models trained on LIP)",
                    "mIoU on ATR - on LIP val, shared categories, 4-baseline average", terms,
                    lambda d: _stack_mean(d, [f"{m}|atr" for m in BASELINES])
                    - _stack_mean(d, [f"{m}|val" for m in BASELINES]), pv,
                    note="the paper's average includes SegNet, the only baseline where LIP > ATR")


def ssl_better_every_size(evd: Evidence) -> Verdict:
    """5.4 / Table 6 middle: "SSL shows substantial superior performance for different sizes of objects"."""
    terms = {f"{m}|{b}": Term(m, subset=f"size:{b}") for m in ("Attention", "Attention + SSL") for b in SIZE_BINS}
    t6 = _paper().TABLE6
    pv = min(t6.loc["Attention + SSL", b] - t6.loc["Attention [5]", b] for b in SIZE_BINS)
    return _verdict(evd, "5.4", "SSL is better for every object size",
                    "min over small/medium/large of mIoU(Attention + SSL) - mIoU(Attention)", terms,
                    lambda d: np.min(np.stack([d[f"Attention + SSL|{b}"] - d[f"Attention|{b}"] for b in SIZE_BINS]), axis=0),
                    pv)


def ssl_better_every_input_size(evd: Evidence, sizes: Sequence[int]) -> Verdict:
    """5.4 / Table 6 right: SSL "is more robust for input size" (read as: better at every size)."""
    terms = {f"{m}|{s}": Term(m, f"val@{s}") for m in ("DeepLabV2", "DeepLabV2 + SSL") for s in sizes}
    t6 = _paper().TABLE6
    pv = min(t6.loc["DeepLab + SSL", c] - t6.loc["DeepLabV2 [4]", c] for c in ("153", "321", "513"))
    return _verdict(evd, "5.4", "SSL is better at every single input size",
                    f"min over input sizes {tuple(sizes)} of mIoU(DeepLabV2 + SSL) - mIoU(DeepLabV2)", terms,
                    lambda d: np.min(np.stack([d[f"DeepLabV2 + SSL|{s}"] - d[f"DeepLabV2|{s}"] for s in sizes]), axis=0),
                    pv, note="input sizes are the paper's 153/321/513 scaled to the profile")


def ssl_smaller_input_size_range(evd: Evidence, sizes: Sequence[int]) -> Verdict:
    """5.4: "more robust for input size" read literally: SSL's score varies less across input sizes."""
    terms = {f"{m}|{s}": Term(m, f"val@{s}") for m in ("DeepLabV2", "DeepLabV2 + SSL") for s in sizes}
    t6 = _paper().TABLE6
    cols = ["153", "321", "513"]

    def rng_(row):
        v = t6.loc[row, cols].astype(float)
        return v.max() - v.min()

    def combine(d):
        def spread(m):
            v = np.stack([np.asarray(d[f"{m}|{s}"], dtype=np.float64) for s in sizes])
            return v.max(0) - v.min(0)
        return spread("DeepLabV2") - spread("DeepLabV2 + SSL")

    return _verdict(evd, "5.4", "SSL's score varies less across input sizes",
                    "range over input sizes of mIoU: DeepLabV2 - DeepLabV2 + SSL", terms, combine,
                    rng_("DeepLabV2 [4]") - rng_("DeepLab + SSL"),
                    note="on the paper's own Table 6 this reading is negative (1.10 vs 1.57)")


UNTESTABLE = pd.DataFrame(
    [
        ("3.1", "Human parsing is more challenging than object-level segmentation (PASCAL VOC)",
         "needs PASCAL VOC results; no VOC models or data here"),
        ("5.1", "Training takes about two days (stage 1) and one and a half days (stage 2) on a TITAN X",
         "hardware-specific; our wall times are in each run's provenance"),
        ("5.3", "SSL outputs more semantically meaningful predictions (Fig. 8)",
         "qualitative; see the qualitative chapter's figures"),
    ],
    columns=["section", "claim", "why not tested"],
)


def all_claims(evd: Evidence, sizes: Sequence[int] = (), with_ppp: bool = True,
               with_atr: bool = True) -> list[Verdict]:
    """Every claim this study tests, in the paper's order."""
    out = [
        attention_best_baseline(evd, "mean_iou", "val"),
        attention_best_baseline(evd, "mean_acc", "val"),
        attention_best_baseline(evd, "mean_iou", "test"),
        fcn_segnet_far_behind(evd),
        back_view_hardest(evd),
        back_view_drop_attention(evd),
        head_missed_second(evd),
        head_missed_below_average_all(evd),
        upper_body_easiest(evd),
        full_body_closest_to_average(evd),
        lower_body_harder(evd),
        large_labels_easier(evd),
        multiscale_better_on_small(evd),
        ssl_improves(evd, "Attention", "val"),
        ssl_improves(evd, "DeepLabV2", "val"),
        ssl_beats_extra_epochs(evd),
        ssl_improves(evd, "Attention", "test"),
        attention_ssl_beats_deeplab(evd),
        ssl_improves_every_challenge(evd),
        ssl_helps_arms_legs_shoes_most(evd),
        ssl_helps_small_labels(evd),
    ]
    if with_ppp:
        out.append(ssl_improves_ppp(evd))
    if with_atr:
        out.append(lip_harder_than_atr(evd))
    out.append(ssl_better_every_size(evd))
    if len(sizes) >= 2:
        out += [ssl_better_every_input_size(evd, sizes), ssl_smaller_input_size_range(evd, sizes)]
    return out


def verdict_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One row per claim (see :meth:`Verdict.as_row`)."""
    return pd.DataFrame([v.as_row() for v in verdicts])


def experiment_evidence(profile: str, data=None, device: str = "auto", seeds=None, n_boot: int = 1000) -> Evidence:
    """Evidence from ``lipstudy.experiments``: the paper's six LIP runs per seed (method names as
    in ``experiments.paper_runs``), the PASCAL-Person-Part runs as ``ppp/<method>`` with split
    ``ppp-<split>``, and the LIP data's image attributes. Runs are trained only if missing."""
    from lipstudy import experiments as ex
    from lipstudy import report

    prof = ex.get_profile(profile)
    seeds = [int(s) for s in seeds] if seeds else list(prof.seeds)
    root = ex.data_root(prof, dataset="lip", data=data)

    def evaluation(method: str, split: str, seed: int):
        if method.startswith("ppp/"):
            run = ex.ppp_runs(seed)[method[4:]]
            return ex.ensure(run, prof, device=device).evaluation(split.removeprefix("ppp-"))
        run = {**ex.paper_runs(seed), **ex.control_runs(seed)}[method]
        return ex.ensure(run, prof, data=data, device=device).evaluation(split)

    extra = [s for s in prof.ssl_seeds if s not in seeds]
    ssl_methods = ("DeepLabV2", "DeepLabV2 + SSL", CONTROL)
    return Evidence(evaluation, seeds, report.image_attributes(root), n_boot=n_boot,
                    method_seeds={m: seeds + extra for m in ssl_methods} if extra else {})


# ---------------------------------------------------------------------------------------------
# the book's claims, shared by the claims chapter and the front page


def book_verdicts(profile: str, data=None, device: str = "auto", seeds=None) -> tuple[Evidence, list[Verdict]]:
    """The evidence and the verdicts of every claim for one book build (the claims chapter and
    the front page call this, so both show the same verdicts)."""
    from lipstudy import experiments as ex

    evidence = experiment_evidence(profile, data=data, device=device, seeds=seeds)
    return evidence, all_claims(evidence, sizes=list(ex.get_profile(profile).eval_sizes))


def claim_anchors(claims: Sequence[str]) -> list[str]:
    """An HTML id per claim, in order (``claim-attention-is-the-best-...``; a repeated text gets
    ``-2``, ``-3``): the claims chapter marks each row with it, the front page links to it."""
    import re

    out, seen = [], {}
    for text in claims:
        slug = "claim-" + (re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:60].rstrip("-") or "x")
        seen[slug] = seen.get(slug, 0) + 1
        out.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return out
