"""The one setup call every chapter makes.

A chapter's parameters cell names a profile, a real LIP root (or None for the synthetic
benchmark), a device, seeds, and whether a missing run may be trained. :func:`setup` turns them
into a :class:`Chapter`: the profile, the seeds, the data roots, the runs (the book runner makes
them before the chapters and turns training off; a chapter run by hand trains what is missing),
the caption that says where "ours" came from, and the closing provenance block. The chapter
itself keeps its narrative, one or two calls into ``lipstudy`` and its plots.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data.roots import data_root
from ..progress import report_reused
from ..store import RunResult
from ..train_run import ensure
from ..profiles import Profile, get_profile
from ..runs import Run, paper_runs, profile_seeds
from ..tables import is_synthetic, ours_caption


@dataclass
class Chapter:
    """One chapter's build settings and the runs it used (for its provenance block)."""

    profile: Profile
    data: str | None
    device: str
    seeds: list[int]
    train: bool = True
    started: float = field(default_factory=time.perf_counter)
    used: list = field(default_factory=list, repr=False)

    def root(self, dataset: str = "lip") -> Path:
        """The dataset a chapter reads: the real LIP root for "lip" when one was given, else the
        profile's synthetic benchmark."""
        return data_root(self.profile, dataset, self.data if dataset == "lip" else None)

    @property
    def synthetic(self) -> bool:
        """Whether "ours" is the synthetic benchmark (then no number is a LIP number)."""
        return is_synthetic(self.root("lip"))

    def ensure(self, run: Run) -> RunResult:
        """The finished run (trained now, when it is missing and the chapter may train). A run found
        finished is named in one line of the notebook's stderr, as a trained one is by the trainer."""
        res = ensure(run, self.profile, data=self.data if run.dataset == "lip" else None, device=self.device,
                     train=self.train)
        if not res.trained:
            report_reused(res.dir)
        self.used.append(res)
        return res

    def results(self, runs: dict[str, Run]) -> dict[str, RunResult]:
        """``{name: finished run}`` for a ``{name: run}`` catalogue."""
        return {name: self.ensure(run) for name, run in runs.items()}

    def paper_results(self, seed: int | None = None) -> dict[str, RunResult]:
        """The paper's six LIP methods for one seed (the first by default), by the paper's names."""
        return self.results(paper_runs(self.seeds[0] if seed is None else seed))

    def caption(self, what: str = "", dataset: str = "lip") -> str:
        """A table caption naming the data (of ``dataset``) and profile behind "ours"."""
        return ours_caption(self.root(dataset), self.profile.name, what)

    def provenance(self, datasets=("lip",), extra=()):
        """The closing provenance block: every run this chapter used (and ``extra`` results), the
        data roots of ``datasets``, the chapter's own time."""
        from ..provenance import provenance_block

        return provenance_block([*self.used, *extra], data_roots=[self.root(d) for d in datasets],
                                profile=self.profile.name, seconds=time.perf_counter() - self.started)


def setup(profile: str = "cpu", data=None, device: str = "auto", seeds=None, train: bool = True) -> Chapter:
    """A chapter's settings from its parameters cell, with the book's plotting style applied."""
    from .. import figures

    figures.setup()
    prof = get_profile(profile)
    return Chapter(prof, None if data is None else str(data), device, profile_seeds(prof, seeds), bool(train))
