"""This build against a reference build (:mod:`lipstudy.reference`): per run, both validation mean
IoUs and their difference, or "identical" when the run's per-image validation matrices are the
same; every verdict that differs, the claims recomputed from the reference's evaluations through
the same catalogue; and the CPU of each side. ``lipstudy runs compare BUNDLE`` prints it, and the
reproducibility chapter shows it against the committed reference.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .bundles import SPARSE, cms_digest
from .claims.evidence import reference_verdicts
from .export import bundle_runs
from .paths import runs_dir
from .profiles import get_profile
from .reference import Reference, load_reference, run_cpu
from .store import key_plan
from .words import count

RUN_COLUMNS = ["run", "dataset", "seed", "key", "this build (%)", "reference (%)", "difference (pp)"]
VERDICT_COLUMNS = ["claim", "bin", "this build", "reference", "ours here (pp)", "ours there (pp)"]


@dataclass
class Comparison:
    """``runs``: one row per run of the book (:data:`RUN_COLUMNS`); ``verdicts``: the verdicts
    that differ (:data:`VERDICT_COLUMNS`); the CPUs that trained each side's runs."""

    profile: str
    reference: Path
    runs: pd.DataFrame
    verdicts: pd.DataFrame
    here_cpus: list[str]
    reference_cpus: list[str]

    @property
    def identical(self) -> bool:
        """Every run of the book is in both builds with the same validation matrices."""
        return bool(len(self.runs)) and (self.runs["difference (pp)"] == "identical").all()

    def summary(self) -> str:
        """One paragraph: the CPUs, how many runs are identical, how many verdicts differ."""
        same = int((self.runs["difference (pp)"] == "identical").sum())
        return (f"This build's runs were trained on {'; '.join(self.here_cpus) or 'no CPU recorded'}; the reference "
                f"build's ({self.reference.name}) on {'; '.join(self.reference_cpus) or 'no CPU recorded'}. "
                f"{same} of the {count(len(self.runs), 'run')} {'is' if same == 1 else 'are'} identical "
                f"(the same per-image validation matrices), and "
                f"{count(len(self.verdicts), 'verdict')} {'differs' if len(self.verdicts) == 1 else 'differ'}.")


def _val(ref: Reference, key: str) -> tuple[float | None, str | None]:
    """The reference's validation mean IoU of a run (%) and its val matrices' digest."""
    blob = ref.members.get(f"runs/{key}/metrics.json")
    if blob is None:
        return None, None
    digest = ref.manifest["matrices"].get(f"runs/{key}/eval/val/{SPARSE}", {}).get("sha256")
    return 100 * float(json.loads(blob)["mean_iou"]), digest


def _val_here(key: str) -> tuple[float | None, str | None]:
    from .evaluate import load_cms

    folder = runs_dir() / key
    if not (folder / "metrics.json").is_file():
        return None, None
    cms = folder / "eval" / "val" / "per_image_cm.npz"
    digest = cms_digest(*load_cms(cms)) if cms.is_file() else None
    return 100 * float(json.loads((folder / "metrics.json").read_text())["mean_iou"]), digest


def run_table(profile, ref: Reference, data=None, seeds=None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """One row per run of the book and what it starts from (:data:`RUN_COLUMNS`), and the CPUs of
    this build's and the reference's runs."""
    prof = get_profile(profile)
    rows, here_cpus, their_cpus = [], set(), set()
    for run in bundle_runs(prof, seeds):
        key = key_plan(run, prof, data if run.dataset == "lip" else None).key
        ours, our_digest = _val_here(key)
        theirs, their_digest = _val(ref, key)
        if ours is not None:
            here_cpus.add(run_cpu(json.loads((runs_dir() / key / "provenance.json").read_text())))
        if theirs is not None:
            their_cpus.add(ref.cpu(key))
        if ours is None or theirs is None:
            diff = "not in the reference" if theirs is None else "not finished here"
        else:
            diff = "identical" if our_digest is not None and our_digest == their_digest else f"{ours - theirs:+.2f}"
        rows.append({"run": run.label, "dataset": run.dataset, "seed": run.seed, "key": key, "this build (%)": ours,
                     "reference (%)": theirs, "difference (pp)": diff})
    return pd.DataFrame(rows, columns=RUN_COLUMNS), sorted(here_cpus), sorted(their_cpus)


def verdict_changes(ours: list[dict], theirs: list[dict]) -> pd.DataFrame:
    """The claims (and bins of "at every X" claims) whose verdict differs between two builds'
    claim records (:meth:`lipstudy.claims.engine.Verdict.as_record`)."""
    by_claim = {r["claim"]: r for r in theirs}
    rows = []
    for mine in ours:
        other = by_claim.get(mine["claim"])
        if other is None:
            rows.append({"claim": mine["claim"], "bin": "", "this build": mine["verdict"], "reference": "not tested",
                         "ours here (pp)": mine["ours"], "ours there (pp)": None})
            continue
        if mine["verdict"] != other["verdict"]:
            rows.append({"claim": mine["claim"], "bin": "", "this build": mine["verdict"],
                         "reference": other["verdict"], "ours here (pp)": mine["ours"],
                         "ours there (pp)": other["ours"]})
        their_bins = {b["bin"]: b for b in other.get("bins") or []}
        for b in mine.get("bins") or []:
            t = their_bins.get(b["bin"])
            if t is not None and t["verdict"] != b["verdict"]:
                rows.append({"claim": mine["claim"], "bin": b["bin"], "this build": b["verdict"],
                             "reference": t["verdict"], "ours here (pp)": b["ours"], "ours there (pp)": t["ours"]})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def compare(profile, path=None, data=None, device: str = "auto", seeds=None,
            ours: list[dict] | None = None) -> Comparison | None:
    """This build against the reference build ``path`` (default the committed one of ``profile``);
    None when there is none. ``ours``: this build's claim records (default: computed now by
    :func:`lipstudy.claims.evidence.book_verdicts`, which also rewrites its claims file)."""
    from .claims.evidence import book_verdicts

    ref = load_reference(profile, path)
    if ref is None:
        return None
    runs, here_cpus, their_cpus = run_table(profile, ref, data, seeds)
    if ours is None:
        ours = [v.as_record() for v in book_verdicts(profile, data, device, seeds)[1]]
    theirs = [v.as_record() for v in reference_verdicts(profile, ref, seeds)]
    return Comparison(get_profile(profile).name, ref.path, runs, verdict_changes(ours, theirs), here_cpus, their_cpus)


def report(c: Comparison) -> str:
    """The comparison as text (what ``lipstudy runs compare`` prints)."""
    runs = c.runs.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.2f}")
    verdicts = (c.verdicts.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:+.2f}") if len(c.verdicts)
                else "every verdict is the same on both builds")
    return f"{c.summary()}\n\nValidation mean IoU per run:\n{runs}\n\nVerdicts that differ:\n{verdicts}\n"
