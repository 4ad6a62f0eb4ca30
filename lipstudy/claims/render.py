"""The claims as a page shows them: one block per claim (what the paper says, the paper's number,
ours with its interval and its value per seed, the margin, the smallest effect this build detects
with 80% probability, the seeds, the control, each bin of an "at every X" claim, the verdict and
why), readable at any width: nothing is a wide table that a phone would cut. A claim whose paper
value has the opposite sign to the paper's sentence is flagged.
"""
from __future__ import annotations

import html
from collections import Counter

from ..words import and_list, be, count, seeds_text
from .engine import VERDICTS
from .evidence import claim_anchors

COLOURS = {"supported": "#1a7f37", "contradicted": "#cf222e", "undecided": "#9a6700", "untestable": "#57606a",
           "by construction": "#0969da"}

STYLE = """<style>
.lipstudy-claim {border-left: 4px solid var(--lc); padding: .35em .7em; margin: .7em 0; max-width: 100%;
                 overflow-wrap: anywhere; box-sizing: border-box}
.lipstudy-claim .lc-verdict {color: var(--lc); font-weight: bold; white-space: nowrap}
.lipstudy-claim .lc-numbers, .lipstudy-claim .lc-reason {font-size: .9em; margin-top: .2em}
.lipstudy-claim .lc-reason, .lipstudy-claim .lc-bin-reason {color: #57606a}
.lipstudy-claim .lc-flag {font-size: .9em; margin-top: .2em; color: #9a6700; font-weight: bold}
.lipstudy-claim .lc-bins {font-size: .9em; margin: .2em 0; padding-left: 1.2em}
</style>"""


def _pp(x, signed: bool = True) -> str:
    if x is None:
        return "-"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _interval(r: dict) -> str:
    return f"[{_pp(r.get('low'))}, {_pp(r.get('high'))}]" if r.get("low") is not None else "(no interval)"


def seeds_text_of(record: dict) -> str:
    """The seeds a claim's value uses and those each compared run has: "seeds 0, 1 and 2 (DeepLabV2
    + SSL: seeds 0, 1 and 2; ...)"."""
    used = record.get("seeds_used") or []
    runs = "; ".join(f"{m.removeprefix('ppp/')}: {seeds_text(s)}" for m, s in record["seeds"].items())
    return f"{seeds_text(used)}, those every compared run has ({runs})"


def per_seed_text(record: dict) -> str:
    """"+0.41, +0.52, +0.66 pp (seeds 0, 1 and 2)"."""
    values = record.get("per_seed") or []
    used = record.get("seeds_used") or []
    return f"{', '.join(_pp(v) for v in values)} pp" + (f" ({seeds_text(used)})" if used else "")


def bins_html(record: dict) -> str:
    """The bins of an "at every X" claim, one line each."""
    items = []
    for b in record.get("bins") or []:
        paper = f"paper {_pp(b['paper'])} pp, " if b.get("paper") is not None else ""
        items.append(f"<li><b>{html.escape(str(b['bin']))}</b>: {paper}ours {_pp(b['ours'])} pp {_interval(b)}, "
                     f"per seed {html.escape(', '.join(_pp(v) for v in b['per_seed']))}, {count(b['images'], 'image')}"
                     f" &middot; <span class=\"lc-bin-verdict\">{html.escape(b['verdict'])}</span>"
                     f" <span class=\"lc-bin-reason\">({html.escape(b['reason'])})</span></li>")
    return f'<ul class="lc-bins">{"".join(items)}</ul>' if items else ""


def claim_block(record: dict, anchor: str) -> str:
    """One claim of ``results/claims/<profile>.json`` as an HTML block with id ``anchor``."""
    binned = bool(record.get("bins"))
    weakest = f" (its weakest bin, {html.escape(str(record.get('weakest_bin')))})" if binned else ""
    numbers = [f"paper {_pp(record.get('paper'))} pp",
               f"ours {_pp(record.get('ours'))} pp {_interval(record)}{weakest}",
               f"per seed {per_seed_text(record)}" if record.get("per_seed") else None,
               f"margin {_pp(record.get('margin'), False)} pp" if record.get("margin") is not None else None,
               f"detectable at 80% power: {_pp(record.get('detectable'), False)} pp"
               if record.get("detectable") is not None else None,
               f"seeds: {html.escape(seeds_text_of(record))}"]
    if record.get("control"):
        numbers.append(f"control: {html.escape(record['control'].removeprefix('ppp/'))}")
    verdict = record["verdict"]
    flag = ""
    if record.get("paper_opposite"):
        flag = (f'<div class="lc-flag">The paper\'s own numbers give {_pp(record.get("paper"))} pp for this statistic: '
                f"its tables contradict this reading of its sentence.</div>")
    return (f'<div class="lipstudy-claim" id="{anchor}" style="--lc: {COLOURS.get(verdict, "#57606a")}">'
            f'<div><span class="lc-section">{html.escape(record["section"])}</span> '
            f'<b>{html.escape(record["claim"])}</b> &middot; <span class="lc-verdict">{html.escape(verdict)}</span></div>'
            f"{flag}"
            f'<div class="lc-numbers">{" &middot; ".join(n for n in numbers if n)}</div>{bins_html(record)}'
            f'<div class="lc-reason">{html.escape(record["statistic"])}. {html.escape(record["reason"])}.</div></div>')


def claims_html(records: list[dict]) -> str:
    """Every claim as a block, in the paper's order, with the anchors the front page links to."""
    anchors = claim_anchors([r["claim"] for r in records])
    return STYLE + "".join(claim_block(r, a) for r, a in zip(records, anchors))


def tally(records: list[dict]) -> dict[str, int]:
    """How many claims got each verdict, every verdict word listed (zeros included)."""
    counts = Counter(r["verdict"] for r in records)
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def tally_sentence(counts: dict[str, int]) -> str:
    """"Of 28 claims tested by this build, 1 is supported, 3 are contradicted, ... and 9 hold by
    construction of the synthetic data." (Markdown, the supported count in bold)."""
    n = sum(counts.values())
    parts = [f"**{counts['supported']} {be(counts['supported'])} supported**",
             f"{counts['contradicted']} {be(counts['contradicted'])} contradicted",
             f"{counts['undecided']} {be(counts['undecided'])} undecided",
             f"{counts['untestable']} {be(counts['untestable'])} untestable here",
             f"{counts['by construction']} {'holds' if counts['by construction'] == 1 else 'hold'} by construction "
             f"of the synthetic data"]
    return f"Of {count(n, 'claim')} tested by this build, {and_list(parts)}."


def flagged(records: list[dict]) -> list[dict]:
    """The claims whose paper value has the opposite sign to the paper's sentence."""
    return [r for r in records if r.get("paper_opposite")]
