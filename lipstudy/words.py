"""Counts and lists in generated sentences, correct for every count (0, 1, many): "1 claim is
supported", "2 claims are", "seed 0", "seeds 0, 1 and 2". A leaf: imports nothing of the package,
so the claims, the tables and the chapters all write their sentences with it."""
from __future__ import annotations

from typing import Iterable


def plural(n: int, singular: str, many: str | None = None) -> str:
    """``singular`` for n == 1, else ``many`` (default: ``singular`` + "s")."""
    return singular if n == 1 else (many if many is not None else singular + "s")


def count(n: int, singular: str, many: str | None = None) -> str:
    """"1 claim", "0 claims", "3 claims"."""
    return f"{n} {plural(n, singular, many)}"


def be(n: int) -> str:
    """The verb "to be" agreeing with a count: "is" for 1, "are" otherwise."""
    return "is" if n == 1 else "are"


def and_list(items: Iterable) -> str:
    """"a", "a and b", "a, b and c"; "" for nothing."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def seeds_text(seeds: Iterable) -> str:
    """"seed 0", "seeds 0, 1 and 2", "no seed"."""
    seeds = list(seeds)
    return f"{plural(len(seeds), 'seed')} {and_list(seeds)}" if seeds else "no seed"
