"""The environment variables lipstudy reads, all of them, and only here.

Five settings a reader may want to give before any command, including the one no command line
reaches (``jupyter-book build book/``, whose Sphinx extension runs the book): where results and
data go, and what the book is built from. Everything else is a command-line option or a function
argument. README.md lists the same table (a test compares them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENVIRONMENT: dict[str, str] = {
    "LIPSTUDY_RESULTS": "the results folder: runs, executed chapters, caches (default: `results/` of the checkout)",
    "LIPSTUDY_DATA": "the data folder, where the synthetic benchmarks are generated (default: `data/` of the checkout)",
    "LIPSTUDY_PROFILE": "the profile the book is built with: smoke, cpu, cpu-short, cpu-long, full, gpu, gpu-smoke "
                        "(default: cpu; `lipstudy book --profile` overrides it)",
    "LIPSTUDY_LIP_ROOT": "a real LIP folder the book is built on (default: the synthetic benchmark; "
                         "`lipstudy book --data` overrides it)",
    "LIPSTUDY_SEEDS": "the book's seeds, e.g. `0 1 2` (default: the profile's; `lipstudy book --seeds` overrides it)",
}
"""Every variable lipstudy reads, with what it sets."""


def _folder(name: str, environ=None) -> Path | None:
    value = (os.environ if environ is None else environ).get(name)
    return Path(value).resolve() if value else None


def results_folder(environ=None) -> Path | None:
    """``$LIPSTUDY_RESULTS``, or None (then :func:`lipstudy.paths.results_dir` is the checkout's)."""
    return _folder("LIPSTUDY_RESULTS", environ)


def data_folder(environ=None) -> Path | None:
    """``$LIPSTUDY_DATA``, or None (then :func:`lipstudy.paths.data_dir` is the checkout's)."""
    return _folder("LIPSTUDY_DATA", environ)


@dataclass(frozen=True)
class BookSettings:
    """What a book is built from: its profile, a real LIP root (None: the synthetic benchmark) and
    its seeds (None: the profile's)."""

    profile: str = "cpu"
    data: str | None = None
    seeds: list[int] | None = None


def book_settings(environ=None) -> BookSettings:
    """The book's settings from ``$LIPSTUDY_PROFILE``, ``$LIPSTUDY_LIP_ROOT`` and ``$LIPSTUDY_SEEDS``;
    a bad value is refused naming the variable."""
    from .profiles import PROFILES

    env = os.environ if environ is None else environ
    profile = env.get("LIPSTUDY_PROFILE") or "cpu"
    if profile not in PROFILES:
        raise ValueError(f"LIPSTUDY_PROFILE={profile!r}: unknown profile (choose from {', '.join(PROFILES)})")
    data = env.get("LIPSTUDY_LIP_ROOT") or None
    if data is not None and not Path(data).is_dir():
        raise ValueError(f"LIPSTUDY_LIP_ROOT={data!r}: not a directory")
    seeds = env.get("LIPSTUDY_SEEDS") or None
    if seeds is not None:
        try:
            seeds = [int(x) for x in seeds.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"LIPSTUDY_SEEDS={seeds!r}: expected integers such as '0 1 2'") from None
    return BookSettings(profile, data, seeds)
