"""Execute the book's chapters with papermill and build the book with Jupyter Book.

Each chapter is a jupytext MyST-markdown notebook in ``book/`` (the sources, never overwritten).
Per chapter:

    book/<chapter>.md --jupytext--> notebook --papermill (parameters injected)-->
        <results>/chapters/<profile>/<chapter>.ipynb        (the cache, with <chapter>.key)
        <book-dir>/_executed/<chapter>.ipynb               (the page: see lipstudy.pages)

A chapter is skipped when its cache key (notebook text, parameters, ``lipstudy`` sources, lock
file, data fingerprints, and for some chapters further inputs: :data:`EXTRA_INPUTS`) is unchanged.
A failed cell fails the build, naming the chapter and the cell; the failed notebook is kept as
``<chapter>.failed.ipynb`` for reading.

Two commands run this, with one cache: ``lipstudy book`` (``make book``) executes the chapters and
then runs ``jupyter-book build``; and ``jupyter-book build book/`` itself, because this module is a
Sphinx extension of the book (``setup``, listed in ``_config.yml``): before Sphinx reads a source
it executes every chapter of ``_toc.yml`` that has no up-to-date executed notebook. Both take the
book's settings from the environment (:func:`book_settings`): ``LIPSTUDY_PROFILE`` (smoke, cpu,
full; default cpu), ``LIPSTUDY_LIP_ROOT`` (a real LIP folder; default the synthetic benchmark),
``LIPSTUDY_DEVICE`` and ``LIPSTUDY_SEEDS``; ``lipstudy book``'s options override them. The
extension also makes every Sphinx warning (a broken cross-reference, a missing glue key, a page
that prints a plotting object's repr) fail the build, the ``-W --keep-going`` of the command line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lipstudy import pages, progress
from lipstudy.atomic import atomic_path, atomic_write

REPO = Path(__file__).resolve().parents[1]
BOOK_SRC = REPO / "book"

CHAPTERS: tuple[str, ...] = (
    "benchmark", "baselines", "challenges", "per_class_iou", "ssl", "pascal_person_part",
    "further_analyses", "qualitative", "claims", "reproducibility", "intro",
)
"""Executed chapters (each is ``book/<name>.md``), in the order they run: the book's order, then
the front page, which summarises the others (``_toc.yml`` lists the same chapters)."""

STATIC_FILES: tuple[str, ...] = ("_toc.yml",)
"""Book files that are not executed, copied as they are when the book is built elsewhere."""

PROFILES: tuple[str, ...] = ("smoke", "cpu", "cpu-short", "cpu-long", "full")
DATASETS: tuple[str, ...] = ("lip", "ppp", "atr")

SETTINGS_ENV = {"profile": "LIPSTUDY_PROFILE", "data": "LIPSTUDY_LIP_ROOT", "device": "LIPSTUDY_DEVICE",
                "seeds": "LIPSTUDY_SEEDS"}
"""The environment variables that choose what the book is built from (:func:`book_settings`)."""

EXECUTE_ENV = "LIPSTUDY_EXECUTE"
"""Set to 0 to make ``jupyter-book build`` render the executed notebooks as they are, executing
nothing (``lipstudy book`` does so for the build it starts after executing the chapters)."""

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


# ---------------------------------------------------------------------------------------------
# locations


def results_root(results: str | os.PathLike | None = None) -> Path:
    """Where runs and executed chapters live: ``results`` argument, else ``$LIPSTUDY_RESULTS``,
    else ``<repo>/results``."""
    if results is not None:
        return Path(results).resolve()
    env = os.environ.get("LIPSTUDY_RESULTS")
    return Path(env).resolve() if env else REPO / "results"


def chapter_cache_dir(profile: str, results: str | os.PathLike | None = None) -> Path:
    return results_root(results) / "chapters" / profile


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


# ---------------------------------------------------------------------------------------------
# notebooks


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


def chapter_parameters(profile: str, data: str | None = None, device: str = "auto",
                       seeds: list[int] | None = None) -> dict:
    """The values papermill injects into each chapter's ``parameters`` cell."""
    return {"profile": profile, "data": None if data is None else str(Path(data).resolve()),
            "device": device, "seeds": None if seeds is None else [int(s) for s in seeds]}


def _sha256_files(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.relative_to(REPO)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def source_digest() -> str:
    """sha256 over the ``lipstudy`` sources and the lock file (what a chapter's numbers depend on
    besides its own text, its parameters and the data)."""
    files = sorted((REPO / "lipstudy").rglob("*.py"))
    lock = REPO / "requirements.lock"
    return _sha256_files(files + ([lock] if lock.is_file() else []))


def cache_key(notebook_text: str, parameters: dict, sources: str, manifests: dict, extra=None) -> str:
    """The cache key of one executed chapter; equal keys mean the executed notebook is reusable.
    ``extra``: the chapter's further inputs (:data:`EXTRA_INPUTS`), None for most chapters."""
    inputs = {"notebook": notebook_text, "parameters": parameters, "sources": sources, "manifests": manifests}
    if extra is not None:
        inputs["extra"] = extra
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def reproducibility_inputs(results: Path) -> dict:
    """What the reproducibility chapter reads besides its text, runs and data: every finished run
    (its folder and when it finished), the committed benchmark results, the budget summaries, and
    the machine executing it."""
    import platform

    def digest(folder: Path):
        h = hashlib.sha256()
        for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        return h.hexdigest()

    runs = sorted((p.parent.name, p.stat().st_mtime_ns) for p in (results / "runs").glob("*/metrics.json"))
    return {"runs": runs, "benchmarks": digest(REPO / "results" / "benchmarks"), "budget": digest(results / "budget"),
            "machine": [platform.python_version(), platform.platform(), os.cpu_count()]}


EXTRA_INPUTS = {"reproducibility": reproducibility_inputs}
"""Chapters that read more than their runs and data: name -> function of the results folder
returning those inputs (part of the chapter's cache key)."""


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
# data


def prepare_data(profile: str, data: str | None = None) -> dict:
    """Make sure every dataset the chapters read exists (generating the synthetic ones), and return
    their fingerprints (the data part of the cache key). ``data`` replaces the LIP root only.

    The fingerprint is ``experiments.data_fingerprint``, the one the training runs' keys use, so
    chapters and runs agree on what "the same data" is (a changed label file changes both)."""
    from lipstudy import experiments as ex

    prof = ex.get_profile(profile)
    datasets = list(DATASETS) + ([ex.PRETRAIN] if getattr(prof, "pretrain", None) else [])
    manifests = {}
    for dataset in datasets:
        root = Path(ex.data_root(prof, dataset=dataset, data=data if dataset == "lip" else None))
        manifests[dataset] = {"root": str(root), "fingerprint": ex.data_fingerprint(root)}
    return manifests


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


def _say(*parts) -> None:
    print(*parts, flush=True)


def execute(profile: str, chapters: list[str] | None = None, data: str | None = None,
            device: str = "auto", seeds: list[int] | None = None,
            results: str | os.PathLike | None = None, book_dir: str | os.PathLike | None = None,
            force: bool = False, src: Path = BOOK_SRC, catalogue: tuple[str, ...] = CHAPTERS,
            manifests: dict | None = None, log=_say) -> list[ChapterResult]:
    """Run (or reuse) the chapters and place their pages in ``<book_dir>/_executed``.

    ``catalogue`` is every chapter of the book (``chapters`` a subset to run; chapters not
    selected keep their last executed notebook for this profile, and a chapter never executed for
    this profile has no page, so the build says so rather than show another profile's).
    ``manifests`` (the data part of the cache key) defaults to :func:`prepare_data`, which
    generates missing synthetic data. While chapters execute, the training runs' progress is
    printed through ``log`` (:mod:`lipstudy.progress`). Raises :class:`ChapterError` listing
    every chapter that failed (the others still run).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    selected = list(catalogue) if not chapters else list(chapters)
    unknown = [c for c in selected if c not in catalogue]
    if unknown:
        raise ValueError(f"unknown chapters {unknown} (chapters: {', '.join(catalogue)})")
    results_dir = results_root(results)
    # Chapters run in a kernel subprocess; the environment carries the results location to them.
    os.environ["LIPSTUDY_RESULTS"] = str(results_dir)
    cache_dir = chapter_cache_dir(profile, results_dir)
    book = Path(book_dir).resolve() if book_dir is not None else src
    executed_dir = book / "_executed"
    executed_dir.mkdir(parents=True, exist_ok=True)

    if manifests is None:
        log(f"[book] profile {profile}: preparing data")
        manifests = prepare_data(profile, data)
    params = chapter_parameters(profile, data, device, seeds)
    sources = source_digest()
    done: list[ChapterResult] = []
    errors: list[str] = []
    tracker = None

    def key_of(name: str) -> str:
        extra = EXTRA_INPUTS[name](results_dir) if name in EXTRA_INPUTS else None
        return cache_key((src / f"{name}.md").read_text(), params, sources, manifests, extra)

    def is_cached(name: str, key: str) -> bool:
        key_file = cache_dir / f"{name}.key"
        return (not force and (cache_dir / f"{name}.ipynb").is_file() and key_file.is_file()
                and key_file.read_text() == key)

    if any(name in RUN_CHAPTERS and not is_cached(name, key_of(name)) for name in selected):
        # Train every run the chapters will ask for first, several side by side where that is
        # faster (schedule.ensure_all); the chapters then find them finished.
        tracker = _book_progress(profile, data, seeds, log)
        tracker.current = "training"  # progress lines read "[book] training: run i/N ..."
        from lipstudy.schedule import training_jobs

        tracker.jobs = training_jobs(device)
        with tracker.watch(cache_dir / f".progress-{os.getpid()}.jsonl"):
            train_book_runs(profile, data, device, seeds, log)
    for i, name in enumerate(selected, 1):
        key = key_of(name)  # after training: the reproducibility chapter's inputs include the runs
        cached = cache_dir / f"{name}.ipynb"
        if is_cached(name, key):
            log(f"[book] chapter {i}/{len(selected)} {name}: unchanged, reusing {cached}")
            done.append(ChapterResult(name, "cached", 0.0, cached))
            continue
        if tracker is None:
            tracker = _book_progress(profile, data, seeds, log)
        tracker.chapter(name, i, len(selected))
        try:
            with tracker.watch(cache_dir / f".progress-{os.getpid()}.jsonl"):
                res = run_chapter(name, params, cache_dir, key, src=src)
        except ChapterError as err:
            log(f"[book] {err}")
            errors.append(str(err))
            continue
        log(f"[book] chapter {i}/{len(selected)} {name}: done in {progress.duration(res.seconds)}")
        done.append(res)
    if errors:
        raise ChapterError("\n".join(errors))
    for name in catalogue:
        install_page(cache_dir / f"{name}.ipynb", executed_dir / f"{name}.ipynb")
    atomic_write(executed_dir / "PROFILE", profile + "\n")
    return done


RUN_CHAPTERS = frozenset(CHAPTERS) - {"benchmark"}
"""The book's chapters that use training runs: executing one of them trains the book's runs first
(the benchmark chapter alone, or a chapter outside the book, trains nothing)."""


def train_book_runs(profile: str, data=None, device: str = "auto", seeds=None, log=_say) -> None:
    """Train (or find finished) every run of ``experiments.book_runs`` before the chapters run."""
    from lipstudy import experiments as ex
    from lipstudy import schedule

    jobs = schedule.training_jobs(device)
    log(f"[book] training the book's runs, {jobs} at a time")
    schedule.ensure_all(ex.book_runs(profile, seeds), profile, data, device, jobs=jobs,
                        evaluations=schedule.book_evaluations(profile, data, seeds))


def _book_progress(profile, data, seeds, log) -> progress.BookProgress:
    """The progress printer, with the book's training runs planned (N in "run i of N")."""
    try:
        runs = progress.plan(profile, data, seeds)
    except Exception as err:  # noqa: BLE001  a count of runs must never stop a build
        log(f"[book] (cannot plan the training runs: {err}; progress shows no totals)")
        runs = []
    todo = [r for r in runs if not r.done]
    if runs:
        log(f"[book] {len(todo)} of the book's {len(runs)} training runs to do"
            + (": " + ", ".join(f"{r.label} ({r.dataset}, seed {r.seed})" for r in todo) if todo else ""))
    return progress.BookProgress(runs, log)


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


def build(book_dir: str | os.PathLike | None = None, require: tuple[str, ...] = CHAPTERS, log=_say,
          env: dict | None = None) -> Path:
    """``jupyter-book build`` of the executed pages as they are (``$LIPSTUDY_EXECUTE=0``), with
    warnings as errors (broken references fail); returns the HTML folder. ``env``: further
    environment variables for the builder. Raises RuntimeError with the builder's output when the
    build fails, or before it when a chapter in ``require`` was never executed."""
    book = Path(book_dir).resolve() if book_dir is not None else BOOK_SRC
    missing = [c for c in require if not (book / "_executed" / f"{c}.ipynb").is_file()]
    if missing:
        raise RuntimeError(f"{book}: chapters never executed: {', '.join(missing)} "
                           f"(run `lipstudy book` without --chapters first)")
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(book), "-W", "--keep-going"]
    log(f"[book] {' '.join(cmd)}")
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, **(env or {}), EXECUTE_ENV: "0"})
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
    p.add_argument("--profile", default=default["profile"], choices=PROFILES,
                   help=f"default ${SETTINGS_ENV['profile']} or cpu")
    p.add_argument("--chapters", nargs="+", metavar="NAME", help=f"subset of: {' '.join(CHAPTERS)}")
    p.add_argument("--data", default=default["data"],
                   help=f"a real LIP root (default ${SETTINGS_ENV['data']}, else the synthetic benchmark)")
    p.add_argument("--device", default=default["device"], help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--seeds", nargs="+", type=int, default=default["seeds"], help="default: the profile's seeds")
    p.add_argument("--results", default=None,
                   help="results folder (runs, executed chapters); default $LIPSTUDY_RESULTS or results/")
    p.add_argument("--book-dir", default=None,
                   help="build the book in this folder instead of book/ (sources are read from book/)")
    p.add_argument("--force", action="store_true", help="rerun chapters even when cached")
    p.add_argument("--no-build", action="store_true", help="execute the chapters only")
    args = p.parse_args(argv)
    if args.data is not None and not Path(args.data).is_dir():
        p.error(f"--data {args.data}: not a directory")
    book = Path(args.book_dir).resolve() if args.book_dir else BOOK_SRC
    assemble(book)
    try:
        execute(args.profile, args.chapters, args.data, args.device, args.seeds, args.results,
                book, force=args.force)
    except ChapterError as err:
        print(f"lipstudy book: {err}", file=sys.stderr)
        return 1
    if args.no_build:
        return 0
    try:
        build(book, env=settings_environment(args.profile, args.data, args.device, args.seeds))
    except RuntimeError as err:
        print(f"lipstudy book: {err}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# Sphinx extension


def execute_for_sphinx(app, config) -> None:
    """``config-inited``: execute (or reuse) every chapter of the book's ``_toc.yml`` whose source
    ``<srcdir>/<name>.md`` is there, for the settings of :func:`book_settings`, before Sphinx looks
    for its sources; then check that no page prints a plotting object's repr."""
    import logging

    import nbformat

    srcdir = Path(app.srcdir)
    toc = srcdir / "_toc.yml"
    listed = pages.execution_order(srcdir) if toc.is_file() else []
    if os.environ.get(EXECUTE_ENV, "1").strip().lower() not in ("0", "off", "no", "false"):
        runnable = tuple(c for c in listed if (srcdir / f"{c}.md").is_file())
        if runnable:
            s = book_settings()  # a bad value stops the build with the variable named
            _say(f"[book] jupyter-book build: profile {s['profile']}, data "
                 f"{s['data'] or 'synthetic'} (set by {', '.join(SETTINGS_ENV.values())})")
            try:
                execute(s["profile"], data=s["data"], device=s["device"], seeds=s["seeds"], book_dir=srcdir,
                        src=srcdir, catalogue=runnable)
            except ChapterError as err:
                raise RuntimeError(f"lipstudy: {err}") from None
    # A logger in Sphinx's namespace: its handlers print and count the warning (the build fails).
    warn = logging.getLogger("sphinx.lipstudy.runner").warning
    for name in listed:
        page = srcdir / "_executed" / f"{name}.ipynb"
        if page.is_file():
            for found in pages.stray_reprs(nbformat.read(page, as_version=4)):
                warn(f"{page}: {found} (a plotting object's repr: end the statement with ';' or assign it)")


def setup(app):
    """Sphinx hook: execute the chapters before Sphinx reads them (:func:`execute_for_sphinx`,
    ahead of the table-of-contents extension), and count warnings so that the build fails at the
    end if there were any (the CLI's ``-W --keep-going``): ``jupyter-book build book/`` rejects
    broken references."""
    app.keep_going = True
    app.connect("config-inited", execute_for_sphinx, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    sys.exit(main())
