"""The claims as a page shows them: one block per claim (what the paper says, the paper's number,
ours with its interval, the smallest effect this build can detect, the seeds, the control, the
verdict and why), readable at any width: nothing is a wide table that a phone would cut."""
from __future__ import annotations

import html
from collections import Counter

from .engine import VERDICTS
from .evidence import claim_anchors

COLOURS = {"supported": "#1a7f37", "contradicted": "#cf222e", "undecided": "#9a6700", "untestable": "#57606a",
           "by construction": "#0969da"}

STYLE = """<style>
.lipstudy-claim {border-left: 4px solid var(--lc); padding: .35em .7em; margin: .7em 0; max-width: 100%;
                 overflow-wrap: anywhere; box-sizing: border-box}
.lipstudy-claim .lc-verdict {color: var(--lc); font-weight: bold; white-space: nowrap}
.lipstudy-claim .lc-numbers, .lipstudy-claim .lc-reason {font-size: .9em; margin-top: .2em}
.lipstudy-claim .lc-reason {color: #57606a}
</style>"""


def _pp(x, signed: bool = True) -> str:
    if x is None:
        return "-"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def seeds_text(seeds: dict) -> str:
    """``DeepLabV2 x3, DeepLabV2 + SSL x3`` (how many seeds each compared method has)."""
    return ", ".join(f"{m.removeprefix('ppp/')} x{len(s)}" for m, s in seeds.items())


def claim_block(record: dict, anchor: str) -> str:
    """One claim of ``results/claims/<profile>.json`` as an HTML block with id ``anchor``."""
    r = {k: record.get(k) for k in ("paper", "ours", "low", "high", "detectable")}
    interval = f"[{_pp(r['low'])}, {_pp(r['high'])}]" if r["low"] is not None else "(no interval)"
    control = record.get("control")
    numbers = [f"paper {_pp(r['paper'])} pp", f"ours {_pp(r['ours'])} pp {interval}",
               f"detectable here &ge; {_pp(r['detectable'], False)} pp", f"seeds: {html.escape(seeds_text(record['seeds']))}"]
    if control:
        numbers.append(f"control: {html.escape(control.removeprefix('ppp/'))}")
    verdict = record["verdict"]
    return (f'<div class="lipstudy-claim" id="{anchor}" style="--lc: {COLOURS.get(verdict, "#57606a")}">'
            f'<div><span class="lc-section">{html.escape(record["section"])}</span> '
            f'<b>{html.escape(record["claim"])}</b> &middot; <span class="lc-verdict">{html.escape(verdict)}</span></div>'
            f'<div class="lc-numbers">{" &middot; ".join(numbers)}</div>'
            f'<div class="lc-reason">{html.escape(record["statistic"])}. {html.escape(record["reason"])}.</div></div>')


def claims_html(records: list[dict]) -> str:
    """Every claim as a block, in the paper's order, with the anchors the front page links to."""
    anchors = claim_anchors([r["claim"] for r in records])
    return STYLE + "".join(claim_block(r, a) for r, a in zip(records, anchors))


def tally(records: list[dict]) -> dict[str, int]:
    """How many claims got each verdict, every verdict word listed (zeros included)."""
    counts = Counter(r["verdict"] for r in records)
    return {v: int(counts.get(v, 0)) for v in VERDICTS}
