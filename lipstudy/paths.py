"""Where the study's files live: the checkout, the results folder and the data folder.

One function each, so that the run store, the book runner, the chapters and the budget summaries
agree on a location; two settings move them (:mod:`lipstudy.settings`: ``$LIPSTUDY_RESULTS``,
``$LIPSTUDY_DATA``), which every process of a build inherits (the chapters' kernels, the training
workers) and which is how the tests keep their runs out of the checkout's ``results/``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .settings import data_folder, results_folder

REPO = Path(__file__).resolve().parents[1]
"""The checkout (``lipstudy/`` is installed in editable mode from it)."""

REAL_SAMPLES = REPO / "data" / "real"
"""The real photos and the one real annotation the book shows and the tests read (with their
attribution in its README): six LIP person crops and one CIHP image in LIP's label scheme."""


def results_dir(override: str | os.PathLike | None = None) -> Path:
    """Runs, executed chapters, caches and summaries: ``override``, else ``$LIPSTUDY_RESULTS``,
    else ``<repo>/results``."""
    if override is not None:
        return Path(override).resolve()
    return results_folder() or REPO / "results"


def runs_dir(override: str | os.PathLike | None = None) -> Path:
    """``<results>/runs``: one folder per training run, named by its key."""
    return results_dir(override) / "runs"


def data_dir() -> Path:
    """Datasets: ``$LIPSTUDY_DATA``, else ``<repo>/data`` (the synthetic benchmarks are generated here)."""
    return data_folder() or REPO / "data"


def committed_results(name: str) -> Path:
    """A folder of committed result files in the checkout (``benchmarks``, ``budget``), which do
    not move with ``$LIPSTUDY_RESULTS``: they are the project's record, not a build's output."""
    return REPO / "results" / name
