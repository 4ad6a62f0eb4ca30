"""Where a number came from: the commit, the packages, the machine, and each run's record.

A training run writes :func:`run_record` into its ``provenance.json`` when it finishes; every
chapter ends with :func:`provenance_block`, the table of the runs it used (commit, dirty flag,
device, wall time) and the environment the chapter itself ran in; the reproducibility chapter
lists every finished run (:func:`all_runs`).
"""
from __future__ import annotations

import html
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd

from .paths import REPO, runs_dir
from .tables import data_label

PACKAGES = ("torch", "numpy", "scipy", "pandas", "pillow", "scikit-image", "matplotlib", "seaborn",
            "papermill", "jupytext", "jupyter-book", "myst-nb", "lipstudy")
"""The packages a run's or a page's numbers depend on."""

KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16")
"""Instruction-set flags of /proc/cpuinfo by which PyTorch's CPU kernels differ (with every ``amx_*``
flag): the same run key computes other numbers on a CPU with another set (issue 36)."""


def now() -> str:
    """The current UTC time, as provenance records write it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_state() -> dict:
    """The checkout's commit and whether tracked files differ from it (None when not a git checkout)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if head.returncode:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (None for a package that is not installed)."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def device_name(device) -> str:
    """A device as a reader should see it: the GPU's name and CUDA version, or the CPU's cores and
    this process's threads (the CPU results depend on both)."""
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def cpu_info(cpuinfo: str | None = None) -> dict:
    """The CPU a number was computed on, as far as it changes the number: the model name, the
    instruction-set flags that select PyTorch's kernels (:data:`KERNEL_FLAGS` and every ``amx_*``)
    and ``torch.backends.cpu.get_cpu_capability()``. ``cpuinfo``: the text of /proc/cpuinfo (read
    here when None; absent on macOS and Windows, where model and flags are left empty)."""
    import torch

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's
    flags = set(fields.get("flags", "").split())
    kernel = [f for f in KERNEL_FLAGS if f in flags] + sorted(f for f in flags if f.startswith("amx"))
    return {"model": fields.get("model name") or platform.processor() or platform.machine(), "flags": kernel,
            "capability": str(torch.backends.cpu.get_cpu_capability())}


def cpu_label(cpu: dict | None) -> str:
    """A CPU record (:func:`cpu_info`) in one line: ``Intel(R) Xeon(R) ... (AVX512; avx2 avx512f)``."""
    if not cpu:
        return "an unrecorded CPU"
    flags = " ".join(cpu.get("flags") or []) or "no AVX2"
    return f"{cpu.get('model') or 'unknown model'} ({cpu.get('capability') or '?'}; {flags})"


def environment() -> dict:
    """Where this process runs: Python, platform, CPU count, accelerator, package versions."""
    import torch

    env = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
           "device": ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
           if torch.cuda.is_available() else "cpu", "torch_threads": torch.get_num_threads(), "cpu": cpu_info()}
    env["packages"] = package_versions()
    return env


def run_record(device, started: str, wall_time_s: float, resumed: bool, train_seconds: float) -> dict:
    """A finished run's ``provenance.json``."""
    return {"git": git_state(), "python": platform.python_version(), "packages": package_versions(),
            "device": device_name(device), "cpu": cpu_info(), "start": started, "end": now(), "wall_time_s": wall_time_s,
            "resumed": resumed, "train_seconds": train_seconds, "command": " ".join(sys.argv)}


# ---------------------------------------------------------------------------------------------
# what a page shows


def imported_from(run_dir: Path) -> str:
    """The bundle a run folder was imported from (lipstudy.bundles), or "" for a run trained here."""
    path = Path(run_dir) / "imported.json"
    return json.loads(path.read_text()).get("bundle", "") if path.is_file() else ""


def run_row(run_dir: Path, config: dict, provenance: dict) -> dict:
    """One run's provenance as a flat row (key, what it is, commit, dirty, device, CPU, duration,
    and the bundle it was imported from, if any)."""
    run, git = config.get("run", {}), provenance.get("git") or {}
    wall = provenance.get("wall_time_s")
    return {"run": Path(run_dir).name, "model": run.get("model", ""), "loss": run.get("loss", ""),
            "dataset": run.get("dataset", ""), "stage": run.get("stage", ""), "seed": run.get("seed", ""),
            "commit": str(git.get("commit") or "")[:10], "dirty": git.get("dirty", ""),
            "device": provenance.get("device", ""),
            "CPU": cpu_label(provenance["cpu"]) if provenance.get("cpu") else "",
            "wall time (s)": round(float(wall), 1) if wall is not None else float("nan"),
            "started": provenance.get("start", ""), "finished": provenance.get("end", ""),
            "imported from": imported_from(run_dir)}


def _rows(rows: list[dict]) -> pd.DataFrame:
    """Rows as a frame; the "imported from" column only when some run was imported."""
    frame = pd.DataFrame(rows)
    for column in ("imported from", "CPU"):  # runs recorded before the column existed have none
        if column in frame and not frame[column].astype(bool).any():
            frame = frame.drop(columns=column)
    return frame


def training_origin(frame: pd.DataFrame) -> str:
    """Where and how the runs of a provenance frame (:func:`provenance_frame`, :func:`all_runs`)
    were trained, in one sentence: devices, dates, commits, and the bundles they were imported
    from; then the machine this text is written on."""
    here = environment()
    built = f"this page was built on {here['platform']} ({here['cpus']} CPUs, device {here['device']})"
    if not len(frame):
        return f"No training run is behind these numbers; {built}."
    devices = ", ".join(sorted({str(d) for d in frame["device"] if d})) or "an unrecorded device"
    days = sorted(str(t)[:10] for t in [*frame["started"], *frame["finished"]] if t)
    when = (days[0] if days[0] == days[-1] else f"{days[0]} to {days[-1]}") if days else "on unrecorded dates"
    commits = sorted({c for c in frame["commit"] if c})
    commits = f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}" if commits else "no recorded commit"
    origin = [b for b in frame.get("imported from", pd.Series(dtype=str)) if b]
    bundles = sorted(set(origin))
    source = (f"the bundle{'s' if len(bundles) > 1 else ''} {', '.join(bundles)}" if len(bundles) <= 3
              else f"{len(bundles)} bundles")
    which = "" if len(origin) == len(frame) else f" {len(origin)} of them"
    imported = f", and{which} were imported from {source} (lipstudy runs import)" if bundles else ""
    runs = "The training run behind these numbers" if len(frame) == 1 else \
        f"The {len(frame)} training runs behind these numbers"
    return f"{runs} ran on {devices}, {when}, from {commits}{imported}; {built}."


def provenance_frame(results) -> pd.DataFrame:
    """One row per run result (``.dir``, ``.config``, ``.provenance``), in the order given,
    duplicates removed."""
    seen, rows = set(), []
    for res in results:
        if str(res.dir) in seen:
            continue
        seen.add(str(res.dir))
        rows.append(run_row(res.dir, res.config, res.provenance))
    return _rows(rows)


def all_runs(results=None) -> pd.DataFrame:
    """Provenance of every finished run under ``<results>/runs`` (a run is finished when its
    ``metrics.json`` exists: runs write it last, by rename), oldest first."""
    folder = runs_dir(results)
    found = sorted((p for p in folder.glob("*") if (p / "metrics.json").is_file()),
                   key=lambda p: (p / "metrics.json").stat().st_mtime) if folder.is_dir() else []
    return _rows([run_row(p, json.loads((p / "config.json").read_text()),
                          json.loads((p / "provenance.json").read_text())) for p in found])


def provenance_html(results, data_roots=(), profile: str | None = None, seconds: float | None = None) -> str:
    """The HTML of a chapter's closing provenance block."""
    env = environment()
    frame = provenance_frame(results)
    pk = ", ".join(f"{k} {v or 'not installed'}" for k, v in env["packages"].items())
    items = [f"<b>profile</b>: {html.escape(str(profile))}" if profile else None,
             *(f"<b>data</b>: {html.escape(data_label(r))}" for r in data_roots),
             f"<b>this notebook ran on</b>: {html.escape(env['platform'])}, Python {env['python']}, "
             f"{env['cpus']} CPUs, device {html.escape(str(env['device']))}",
             f"<b>packages</b>: {html.escape(pk)}",
             f"<b>notebook time</b>: {seconds:.1f} s" if seconds is not None else None]
    if len(frame) and (frame["dirty"] == True).any():  # noqa: E712  (a column of True / False / "")
        items.append("<b>warning</b>: some runs were made from a working tree with uncommitted changes "
                     "(dirty = True): their commit alone does not reproduce them.")
    lis = "".join(f"<li>{i}</li>" for i in items if i)
    table = (frame.to_html(index=False, na_rep="-", border=0) if len(frame)
             else "<p>This chapter used no training runs.</p>")
    return (f"<details class='lipstudy-provenance' open><summary><b>Provenance</b> "
            f"({len(frame)} run{'s' if len(frame) != 1 else ''})</summary><ul>{lis}</ul>{table}</details>")


def provenance_block(results, data_roots=(), profile: str | None = None, seconds: float | None = None):
    """Display a chapter's provenance: its runs' commit and dirty flag, package versions, device,
    durations, and the data behind them (call it in the chapter's last cell)."""
    from IPython.display import HTML

    return HTML(provenance_html(results, data_roots, profile, seconds))
