"""What a book build is built from: its chapters, profile, data, device and seeds.

The environment chooses (:data:`SETTINGS_ENV`), so that ``jupyter-book build book/`` builds what the
reader asked for; ``lipstudy book``'s options override it. Each chapter receives the same settings as
papermill parameters (:func:`chapter_parameters`).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..profiles import PROFILES

CHAPTERS: tuple[str, ...] = (
    "benchmark", "baselines", "challenges", "per_class_iou", "ssl", "pascal_person_part",
    "further_analyses", "qualitative", "claims", "reproducibility", "intro",
)
"""Executed chapters (each is ``book/<name>.md``), in the order they run: the book's order, then
the front page, which summarises the others (``_toc.yml`` lists the same chapters)."""

STATIC_FILES: tuple[str, ...] = ("_toc.yml",)
"""Book files that are not executed, copied as they are when the book is built elsewhere."""

SETTINGS_ENV = {"profile": "LIPSTUDY_PROFILE", "data": "LIPSTUDY_LIP_ROOT", "device": "LIPSTUDY_DEVICE",
                "seeds": "LIPSTUDY_SEEDS"}
"""The environment variables that choose what the book is built from (:func:`book_settings`)."""

EXECUTE_ENV = "LIPSTUDY_EXECUTE"
"""Set to 0 to make ``jupyter-book build`` render the executed notebooks as they are, executing
nothing (``lipstudy book`` does so for the build it starts after executing the chapters)."""


def book_settings(environ=None) -> dict:
    """The book's profile, real LIP root (None = synthetic), device and seeds (None = the
    profile's), from :data:`SETTINGS_ENV`; bad values are rejected naming the variable."""
    env = os.environ if environ is None else environ
    profile = env.get(SETTINGS_ENV["profile"]) or "cpu"
    if profile not in PROFILES:
        raise ValueError(f"{SETTINGS_ENV['profile']}={profile!r}: unknown profile "
                         f"(choose from {', '.join(PROFILES)})")
    data = env.get(SETTINGS_ENV["data"]) or None
    if data is not None and not Path(data).is_dir():
        raise ValueError(f"{SETTINGS_ENV['data']}={data!r}: not a directory")
    seeds = env.get(SETTINGS_ENV["seeds"]) or None
    if seeds is not None:
        try:
            seeds = [int(x) for x in seeds.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"{SETTINGS_ENV['seeds']}={seeds!r}: expected integers such as '0 1 2'") from None
    return {"profile": profile, "data": data, "device": env.get(SETTINGS_ENV["device"]) or "auto",
            "seeds": seeds}


def settings_environment(profile: str, data=None, device: str = "auto", seeds=None) -> dict:
    """The inverse of :func:`book_settings`: the variables that select these settings."""
    return {SETTINGS_ENV["profile"]: profile, SETTINGS_ENV["data"]: "" if data is None else str(Path(data).resolve()),
            SETTINGS_ENV["device"]: device, SETTINGS_ENV["seeds"]: " ".join(str(x) for x in seeds or [])}


def chapter_parameters(profile: str, data: str | None = None, device: str = "auto",
                       seeds: list[int] | None = None) -> dict:
    """The values papermill injects into each chapter's ``parameters`` cell."""
    return {"profile": profile, "data": None if data is None else str(Path(data).resolve()),
            "device": device, "seeds": None if seeds is None else [int(s) for s in seeds]}


RUN_CHAPTERS = frozenset(CHAPTERS) - {"benchmark"}
"""The book's chapters that use training runs: executing one of them trains the book's runs first
(the benchmark chapter alone, or a chapter outside the book, trains nothing)."""
