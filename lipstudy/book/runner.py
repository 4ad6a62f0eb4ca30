"""Execute the book's chapters with papermill and build the book with Jupyter Book.

Each chapter is a jupytext MyST-markdown notebook in ``book/`` (the sources, never overwritten).
Per chapter:

    book/<chapter>.md --jupytext--> notebook --papermill (parameters injected)-->
        <results>/chapters/<profile>/<chapter>.ipynb        (the cache, with <chapter>.key)
        <book-dir>/_executed/<chapter>.ipynb               (the page: see lipstudy.book.pages)

A chapter is skipped when its cache key (:mod:`lipstudy.book.keys`) is unchanged. A failed cell
fails the build, naming the chapter and the cell; the failed notebook is kept as
``<chapter>.failed.ipynb`` for reading. Before the first chapter that uses training runs, every run
the chapters will ask for is trained (:func:`train_book_runs`), several side by side.

Two commands run this, with one cache: ``lipstudy book`` (``make book``) executes the chapters and
then runs ``jupyter-book build``; and ``jupyter-book build book/`` itself, through the Sphinx
extension :mod:`lipstudy.book.sphinx_ext`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import progress
from ..atomic import atomic_path, atomic_write, atomic_write_json
from ..paths import REPO, results_dir
from ..profiles import PROFILES
from ..settings import book_settings
from . import pages
from .contents import CHAPTERS, RUN_CHAPTERS, STATIC_FILES, chapter_parameters
from .keys import EXTRA_INPUTS, cache_key, prepare_data, source_digest

BOOK_SRC = REPO / "book"

KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
"""The chapters' kernels keep their own log quiet: its start-up warning that the local connection
is not encrypted ("Kernel is running over TCP without encryption") and the "KeyboardInterrupt
caught in kernel" that jupyter_client's interrupt-before-shutdown can trigger are noise in a build
log. A failing cell is still reported (through the notebook), and a dead kernel fails the chapter."""


class ChapterError(RuntimeError):
    """A chapter's notebook failed; the message names the chapter, the cell and the kept notebook."""


@dataclass(frozen=True)
class ChapterResult:
    name: str
    status: str          # "ran" or "cached"
    seconds: float
    notebook: Path       # the executed notebook in the cache


def chapter_cache_dir(profile: str) -> Path:
    """Where a profile's executed chapters are cached: ``<results>/chapters/<profile>/``."""
    return results_dir() / "chapters" / profile


def load_chapter(name: str, src: Path = BOOK_SRC):
    """Read ``<src>/<name>.md`` (jupytext MyST) into an in-memory notebook."""
    import jupytext

    path = src / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such chapter (chapters: {', '.join(CHAPTERS)})")
    nb = jupytext.read(path)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise ChapterError(f"{path}: no cell tagged 'parameters' (papermill needs one)")
    return nb


def _failed_cell(nb) -> str:
    """'code cell N ('first line')' of the cell papermill marked as failing, counting the
    chapter's own code cells (not papermill's injected-parameters cell)."""
    own = [c for c in nb.cells if c.cell_type == "code"
           and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for number, cell in enumerate(own, 1):
        if cell.get("metadata", {}).get("papermill", {}).get("exception"):
            lines = cell.source.strip().splitlines()
            return f"code cell {number} ({(lines[0] if lines else '')[:70]!r})"
    return "an unknown cell"


def run_chapter(name: str, parameters: dict, cache_dir: Path, key: str, *,
                src: Path = BOOK_SRC, cwd: Path = REPO, progress_bar: bool = False) -> ChapterResult:
    """Execute one chapter with papermill into ``cache_dir/<name>.ipynb`` (atomically), record its
    key. On a failing cell raise :class:`ChapterError` and keep ``<name>.failed.ipynb``."""
    import nbformat
    import papermill as pm

    nb = load_chapter(name, src)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"{name}.ipynb"
    failed = cache_dir / f"{name}.failed.ipynb"
    t0 = time.perf_counter()
    with atomic_path(final, suffix=".ipynb") as tmp:
        try:
            pm.execute_notebook(nb, str(tmp), parameters=parameters, kernel_name="python3", cwd=str(cwd),
                                progress_bar=progress_bar, log_output=False, extra_arguments=KERNEL_ARGUMENTS)
        except pm.PapermillExecutionError as err:
            atomic_write(failed, tmp.read_bytes())
            executed = nbformat.read(failed, as_version=4)
            raise ChapterError(
                f"chapter {name!r} failed at {_failed_cell(executed)}: "
                f"{err.ename}: {err.evalue}\n  the failed notebook is kept at {failed}") from None
    failed.unlink(missing_ok=True)
    atomic_write(cache_dir / f"{name}.key", key)
    return ChapterResult(name, "ran", time.perf_counter() - t0, final)


# ---------------------------------------------------------------------------------------------
# the book


def assemble(book_dir: Path, src: Path = BOOK_SRC) -> None:
    """Make ``book_dir`` a buildable book: the config (a copy of the top-level ``_config.yml``)
    and the static files. Executed notebooks are added by :func:`execute`."""
    book_dir.mkdir(parents=True, exist_ok=True)
    if book_dir.resolve() == src.resolve():
        return  # book/_config.yml is a link to the top-level file; nothing to copy
    shutil.copyfile(REPO / "_config.yml", book_dir / "_config.yml")
    for name in STATIC_FILES:
        shutil.copyfile(src / name, book_dir / name)


def say(*parts) -> None:
    """A progress line of the build, printed at once."""
    print(*parts, flush=True)


def execute(profile: str, chapters: list[str] | None = None, data: str | None = None,
            device: str = "auto", seeds: list[int] | None = None, book_dir: str | os.PathLike | None = None,
            force: bool = False, src: Path = BOOK_SRC, catalogue: tuple[str, ...] = CHAPTERS,
            manifests: dict | None = None, train: bool = True, train_committed: bool = False,
            log=say) -> list[ChapterResult]:
    """Run (or reuse) the chapters and place their pages in ``<book_dir>/_executed``.

    ``catalogue`` is every chapter of the book (``chapters`` a subset to run; chapters not
    selected keep their last executed notebook for this profile, and a chapter never executed for
    this profile has no page, so the build says so rather than show another profile's).
    ``manifests`` (the data part of the cache key) defaults to :func:`prepare_data`, which
    generates missing synthetic data. Before the first chapter that reads runs, every run the
    chapters read is made (:func:`train_book_runs`: the committed runs imported, unless
    ``train_committed``; nothing trained when ``train`` is False), with its progress printed through
    ``log`` (:mod:`lipstudy.progress`); the chapters then train nothing. Raises
    :class:`ChapterError` listing every chapter that failed (the others still run).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    selected = list(catalogue) if not chapters else list(chapters)
    unknown = [c for c in selected if c not in catalogue]
    if unknown:
        raise ValueError(f"unknown chapters {unknown} (chapters: {', '.join(catalogue)})")
    results = results_dir()
    cache_dir = chapter_cache_dir(profile)
    book = Path(book_dir).resolve() if book_dir is not None else src
    executed_dir = book / "_executed"
    executed_dir.mkdir(parents=True, exist_ok=True)

    if PROFILES[profile].pretrained:
        # Before any data is generated (LIP scale takes hours) or any run trains: a missing ImageNet
        # file must stop the build now, not when the first run starts.
        from ..models.imagenet import fetch_all

        log(f"[book] profile {profile}: checking the ImageNet weights")
        for arch, path in fetch_all().items():
            log(f"[book] ImageNet {arch}: {path}")
    if manifests is None:
        log(f"[book] profile {profile}: preparing data")
        manifests = prepare_data(profile, data)
    params = chapter_parameters(profile, data, device, seeds)
    sources = source_digest()
    done: list[ChapterResult] = []
    errors: list[str] = []
    tracker = None

    def key_of(name: str) -> str:
        extra = EXTRA_INPUTS[name](results) if name in EXTRA_INPUTS else None
        return cache_key((src / f"{name}.md").read_text(), params, sources, manifests, extra)

    def is_cached(name: str, key: str) -> bool:
        key_file = cache_dir / f"{name}.key"
        return (not force and (cache_dir / f"{name}.ipynb").is_file() and key_file.is_file()
                and key_file.read_text() == key)

    if any(name in RUN_CHAPTERS and not is_cached(name, key_of(name)) for name in selected):
        # Make every run the chapters will ask for first, several side by side where that is
        # faster (process_pool.ensure_all); the chapters then find them finished.
        from ..process_pool import training_jobs

        tracker = progress.BookProgress(log=log)
        tracker.current = "training"  # progress lines read "[book] training: run i/N ..."
        tracker.jobs = training_jobs(device)
        t0 = time.perf_counter()
        with tracker.watch(cache_dir / f".progress-{os.getpid()}.jsonl") as events:
            trained = train_book_runs(profile, data, device, seeds, train, train_committed, events,
                                      on_plan=lambda: tracker.plan(_planned_runs(profile, data, seeds, log)), log=log)
        if trained:
            record_time(cache_dir, "training", time.perf_counter() - t0)
    for i, name in enumerate(selected, 1):
        key = key_of(name)  # after training: the reproducibility chapter's inputs include the runs
        cached = cache_dir / f"{name}.ipynb"
        if is_cached(name, key):
            log(f"[book] chapter {i}/{len(selected)} {name}: unchanged, reusing {cached}")
            done.append(ChapterResult(name, "cached", 0.0, cached))
            continue
        if tracker is None:
            tracker = progress.BookProgress(log=log)
        tracker.chapter(name, i, len(selected))
        try:
            res = run_chapter(name, params, cache_dir, key, src=src)
        except ChapterError as err:
            log(f"[book] {err}")
            errors.append(str(err))
            continue
        log(f"[book] chapter {i}/{len(selected)} {name}: done in {progress.duration(res.seconds)}")
        record_time(cache_dir, name, res.seconds)
        done.append(res)
    if errors:
        raise ChapterError("\n".join(errors))
    for name in catalogue:
        install_page(cache_dir / f"{name}.ipynb", executed_dir / f"{name}.ipynb")
    atomic_write(executed_dir / "PROFILE", profile + "\n")
    return done


BUILD_TIMES = "build_times.json"
"""In a profile's chapter cache: the seconds the last build spent training the book's runs, and on each
chapter it executed (the reproducibility chapter reports them: no build time is typed by hand)."""


def record_time(cache_dir: Path, what: str, seconds: float) -> None:
    """Record that this build spent ``seconds`` on ``what`` (the training phase or a chapter)."""
    from ..provenance import environment, now

    path = cache_dir / BUILD_TIMES
    times = json.loads(path.read_text()) if path.is_file() else {}
    env = environment()
    times[what] = {"seconds": round(seconds, 1), "finished": now(),
                   "machine": f"{env['platform']}, {env['cpus']} CPUs, device {env['device']}"}
    atomic_write_json(path, times)


def build_times(profile: str) -> dict:
    """What :func:`record_time` recorded for ``profile``'s builds ({} before the first)."""
    path = chapter_cache_dir(profile) / BUILD_TIMES
    return json.loads(path.read_text()) if path.is_file() else {}


def train_book_runs(profile: str, data=None, device: str = "auto", seeds=None, train: bool = True,
                    train_committed: bool = False, events=None, on_plan=None, log=say) -> int:
    """Make every run of :func:`lipstudy.runs.book_runs`, with everything the chapters read of them
    (:func:`lipstudy.store.book_products`), before the chapters run
    (:func:`lipstudy.process_pool.ensure_all`, which imports the committed runs first); the number
    of runs and products that had to be done."""
    from .. import process_pool
    from ..runs import book_runs
    from ..store import book_products

    jobs = process_pool.training_jobs(device)
    log(f"[book] training the book's runs, {jobs} at a time")
    return process_pool.ensure_all(book_runs(profile, seeds), profile, data, device, jobs=jobs,
                                   products=book_products(profile, data, seeds), train=train,
                                   train_committed=train_committed, events=events, on_plan=on_plan, log=log)


def _planned_runs(profile, data, seeds, log) -> list:
    """The book's training runs, planned (N in "run i of N"), logged with those left to train."""
    try:
        from ..process_pool import progress_plan

        runs = progress_plan(profile, data, seeds)
    except Exception as err:  # noqa: BLE001  a count of runs must never stop a build
        log(f"[book] (cannot plan the training runs: {err}; progress shows no totals)")
        return []
    todo = [r for r in runs if not r.done]
    if runs:
        log(f"[book] {len(todo)} of the book's {len(runs)} training runs to do"
            + (": " + ", ".join(f"{r.label} ({r.dataset}, seed {r.seed})" for r in todo) if todo else ""))
    return runs


def install_page(executed: Path, page: Path) -> None:
    """Write the page of an executed notebook (:func:`pages.page_notebook`) at ``page``, only
    when it changed (Sphinx then rereads only changed pages); remove ``page`` when the chapter
    has no executed notebook."""
    import nbformat

    if not executed.is_file():
        page.unlink(missing_ok=True)
        return
    text = nbformat.writes(pages.page_notebook(nbformat.read(executed, as_version=4)))
    if not page.is_file() or page.read_text() != text:
        atomic_write(page, text)


def build(book_dir: str | os.PathLike | None = None, require: tuple[str, ...] = CHAPTERS, log=say) -> Path:
    """``jupyter-book build`` of the executed pages as they are, with warnings as errors (broken
    references fail); returns the HTML folder. The book's config is given with the Sphinx option
    ``lipstudy_execute: false`` (:mod:`lipstudy.book.sphinx_ext`), so the builder executes nothing.
    Raises RuntimeError with the builder's output when the build fails, or before it when a chapter
    in ``require`` was never executed."""
    import tempfile

    import yaml

    book = Path(book_dir).resolve() if book_dir is not None else BOOK_SRC
    missing = [c for c in require if not (book / "_executed" / f"{c}.ipynb").is_file()]
    if missing:
        raise RuntimeError(f"{book}: chapters never executed: {', '.join(missing)} "
                           f"(run `lipstudy book` without --chapters first)")
    config = yaml.safe_load((book / "_config.yml").read_text())
    config.setdefault("sphinx", {}).setdefault("config", {})["lipstudy_execute"] = False
    exe = Path(sys.executable).with_name("jupyter-book")
    with tempfile.TemporaryDirectory(prefix="lipstudy-build-") as tmp:
        rendering = Path(tmp) / "_config.yml"
        rendering.write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(book), "--config", str(rendering),
               "-W", "--keep-going"]
        log(f"[book] {' '.join(cmd)}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed ({proc.returncode}):\n"
                           f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    html = book / "_build" / "html"
    log(f"[book] built {html / 'index.html'}")
    return html


# ---------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    """``lipstudy book``: execute the chapters (cached) and build the book."""
    try:
        default = book_settings()
    except ValueError as err:
        print(f"lipstudy book: {err}", file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(prog="lipstudy book", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default=default.profile, choices=PROFILES, help="default $LIPSTUDY_PROFILE or cpu")
    p.add_argument("--chapters", nargs="+", metavar="NAME", help=f"subset of: {' '.join(CHAPTERS)}")
    p.add_argument("--data", default=default.data,
                   help="a real LIP root (default $LIPSTUDY_LIP_ROOT, else the synthetic benchmark)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1, ...")
    p.add_argument("--seeds", nargs="+", type=int, default=default.seeds,
                   help="default $LIPSTUDY_SEEDS, else the profile's seeds")
    p.add_argument("--book-dir", default=None,
                   help="build the book in this folder instead of book/ (sources are read from book/)")
    p.add_argument("--force", action="store_true", help="rerun chapters even when cached")
    p.add_argument("--no-build", action="store_true", help="execute the chapters only")
    p.add_argument("--no-train", action="store_true",
                   help="never train: every run must be in the results folder (e.g. imported with `lipstudy runs "
                        "import`); a missing one fails the build by name")
    p.add_argument("--train-committed", action="store_true",
                   help="train the runs the checkout commits (results/backbones/, results/shipped/, "
                        "results/bundles/) here instead of importing them")
    from .. import dryrun

    dryrun.add_arguments(p)
    args = p.parse_args(argv)
    if args.data is not None and not Path(args.data).is_dir():
        p.error(f"--data {args.data}: not a directory")
    dryrun.check_args(p, args)
    if args.dry_run:  # measures; builds nothing, generates no dataset
        return dryrun.main_from_args(p, args)
    book = Path(args.book_dir).resolve() if args.book_dir else BOOK_SRC
    assemble(book)
    from ..bundles import BundleError

    try:
        execute(args.profile, args.chapters, args.data, args.device, args.seeds, book, force=args.force,
                train=not args.no_train, train_committed=args.train_committed)
    except (ChapterError, BundleError) as err:
        print(f"lipstudy book: {err}", file=sys.stderr)
        return 1
    except FileNotFoundError as err:  # models.imagenet.WeightsUnavailable: nothing was generated or trained
        print(f"lipstudy book: {err}", file=sys.stderr)
        return 2
    if args.no_build:
        return 0
    try:
        build(book)
    except RuntimeError as err:
        print(f"lipstudy book: {err}", file=sys.stderr)
        return 1
    return 0


