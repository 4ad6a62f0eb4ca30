"""The claims as files a reader can download from the claims page: the JSON the build writes
(:func:`lipstudy.claims.evidence.claims_file`) and a CSV of the same table beside it, one row per
claim and one per bin of an "at every X" claim.

The page links both as ``data:`` URLs with a ``download`` name (``<profile>.json``,
``<profile>.csv``): the files travel inside the executed notebook, so a page reused from the
chapter cache or a book built in another folder links the very files its table shows, and the
link works offline (the built book loads nothing from outside itself).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write
from .evidence import claims_file

CSV_COLUMNS = ["section", "claim", "bin", "statistic", "paper", "paper_opposite", "ours", "low", "high",
               "per_seed", "seeds_used", "margin", "detectable", "control", "verdict", "reason", "images"]
"""The CSV's columns: each claim's (or bin's) fields of the JSON; lists as "a; b; c"."""


def _cell(v):
    if isinstance(v, list):
        return "; ".join(str(x) for x in v)
    return v


def claims_frame(records: list[dict]) -> pd.DataFrame:
    """The claims table (:data:`CSV_COLUMNS`) of claim records: one row per claim (``bin`` empty),
    followed by one row per bin of it, which carries the claim's section and statement."""
    rows = []
    for r in records:
        rows.append({c: _cell(r.get(c)) for c in CSV_COLUMNS if c != "bin"} | {"bin": ""})
        for b in r.get("bins") or []:
            rows.append({c: _cell(b.get(c, r.get(c) if c in ("section", "claim", "statistic", "control") else None))
                         for c in CSV_COLUMNS if c != "bin"} | {"bin": b["bin"]})
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def write_csv(profile) -> Path:
    """Write ``<profile>.csv`` beside the build's claims JSON, from it; returns its path."""
    src = claims_file(profile)
    records = json.loads(src.read_text())["claims"]
    out = src.with_suffix(".csv")
    atomic_write(out, claims_frame(records).to_csv(index=False))
    return out


def download_link(path: Path, mime: str) -> str:
    """An HTML link that downloads ``path`` under its own name (a ``data:`` URL of its bytes)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    name = html.escape(Path(path).name)
    return f'<a download="{name}" href="data:{mime};base64,{data}"><code>{name}</code></a>'


def download_links(profile) -> str:
    """One HTML sentence linking the build's claims JSON and CSV (writing the CSV first)."""
    csv = write_csv(profile)
    return (f"Download this table: {download_link(claims_file(profile), 'application/json')} (the claims file "
            f"the build wrote, every field) or {download_link(csv, 'text/csv')} (one row per claim and per bin).")
