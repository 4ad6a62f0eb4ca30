"""What a book is made of: its chapters, in the order they execute, and the parameters each one
receives (papermill injects them into the chapter's ``parameters`` cell). What it is built from
(profile, data, seeds) is chosen by ``lipstudy book``'s options or, for ``jupyter-book build
book/``, by :func:`lipstudy.settings.book_settings`.
"""
from __future__ import annotations

from pathlib import Path

CHAPTERS: tuple[str, ...] = (
    "benchmark", "baselines", "challenges", "per_class_iou", "ssl", "pascal_person_part",
    "further_analyses", "qualitative", "figures_1_2", "claims", "reproducibility", "intro",
)
"""Executed chapters (each is ``book/<name>.md``), in the order they run: the book's order, then
the front page, which summarises the others (``_toc.yml`` lists the same chapters)."""

STATIC_FILES: tuple[str, ...] = ("_toc.yml",)
"""Book files that are not executed, copied as they are when the book is built elsewhere."""

RUN_CHAPTERS = frozenset(CHAPTERS) - {"benchmark"}
"""The book's chapters that use training runs: executing one of them trains the book's runs first
(the benchmark chapter alone, or a chapter outside the book, trains nothing)."""


def chapter_parameters(profile: str, data: str | None = None, device: str = "auto",
                       seeds: list[int] | None = None) -> dict:
    """The values papermill injects into each chapter's ``parameters`` cell. ``train`` is False: the
    runner has made every run the chapters read before they execute, so a run a chapter would have
    to train is a mistake to report, not to train in its kernel."""
    return {"profile": profile, "data": None if data is None else str(Path(data).resolve()),
            "device": device, "seeds": None if seeds is None else [int(s) for s in seeds], "train": False}
