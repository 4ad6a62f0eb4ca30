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


def _hub_dir() -> Path:
    """The torch hub cache's checkpoints folder, where the ImageNet weights are kept."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


_PORTABLE_BASES = (("data", data_dir), ("results", results_dir), ("torch-hub", _hub_dir))
"""The folders a path leaving this machine is written relative to, by the name it then starts with."""


def portable(path: str) -> str:
    """``path`` as a file that leaves this machine writes it (a bundle's configs): inside the data
    folder as ``data/<relative>``, inside the results folder as ``results/<relative>``, inside the
    torch hub cache as ``torch-hub/<relative>``; a relative path, or one outside them all (a real
    dataset of the user's), as it is. :func:`resolve` is its inverse on the machine that reads it."""
    p = Path(path)
    if not p.is_absolute():
        return str(path)
    for name, folder in _PORTABLE_BASES:
        base = folder()
        if p.resolve().is_relative_to(base):
            return str(Path(name) / p.resolve().relative_to(base))
    return str(path)


def resolve(path: str) -> str:
    """A path as :func:`portable` writes it, on this machine: ``data/...`` in the data folder,
    ``results/...`` in the results folder, ``torch-hub/...`` in the torch hub cache; any other as it is."""
    parts = Path(path).parts
    for name, folder in _PORTABLE_BASES:
        if not Path(path).is_absolute() and parts[:1] == (name,):
            return str(folder().joinpath(*parts[1:]))
    return str(path)


def portable_command(command: str) -> str:
    """A recorded command line (provenance's ``command``) with every absolute path in it made
    :func:`portable`, relative to the checkout when it is in it, else reduced to its file name."""
    words = []
    for word in command.split(" "):
        p = Path(word)
        if p.is_absolute():
            word = portable(word)
            if Path(word).is_absolute():
                word = str(p.relative_to(REPO)) if p.is_relative_to(REPO) else p.name
        words.append(word)
    return " ".join(words)
