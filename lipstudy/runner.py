"""Execute the book's chapters with papermill and build the book with Jupyter Book.

Each chapter is a jupytext MyST-markdown notebook in ``book/`` (the sources, never overwritten).
``lipstudy book`` does, per chapter:

    book/<chapter>.md --jupytext--> notebook --papermill (parameters injected)-->
        <results>/chapters/<profile>/<chapter>.ipynb        (the cache, with <chapter>.key)
        <book-dir>/_executed/<chapter>.ipynb               (what the table of contents points at)

and then ``jupyter-book build`` on ``<book-dir>`` (``book/`` by default), whose ``_toc.yml`` lists
the executed notebooks and whose ``_config.yml`` is the top-level one. A chapter is skipped when
its cache key (notebook text, parameters, ``lipstudy`` sources, lock file, data manifests) is
unchanged. A failed cell fails the build, naming the chapter and the cell; the failed notebook is
kept as ``<chapter>.failed.ipynb`` for reading.

This module is also a tiny Sphinx extension (``setup``): listed in ``_config.yml`` it makes every
Sphinx warning (a broken cross-reference, a missing glue key) fail ``jupyter-book build book/``,
the ``-W --keep-going`` of the command line, written into the config so a plain build is strict.
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

REPO = Path(__file__).resolve().parents[1]
BOOK_SRC = REPO / "book"

CHAPTERS: tuple[str, ...] = (
    "benchmark", "baselines", "challenges", "per_class_iou", "ssl", "pascal_person_part",
    "further_analyses", "qualitative", "claims", "reproducibility",
)
"""Executed chapters, in book order (each is ``book/<name>.md``)."""

STATIC_FILES: tuple[str, ...] = ("_toc.yml", "intro.md")
"""Book pages that are not executed, copied as they are when the book is built elsewhere."""

ALWAYS_RUN: frozenset[str] = frozenset({"reproducibility"})
"""Chapters rerun on every build: the provenance page lists whatever runs exist now."""

PROFILES: tuple[str, ...] = ("smoke", "cpu", "full")
DATASETS: tuple[str, ...] = ("lip", "ppp", "atr")


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


def cache_key(notebook_text: str, parameters: dict, sources: str, manifests: dict) -> str:
    """The cache key of one executed chapter; equal keys mean the executed notebook is reusable."""
    blob = json.dumps({"notebook": notebook_text, "parameters": parameters, "sources": sources,
                       "manifests": manifests}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


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
                src: Path = BOOK_SRC, cwd: Path = REPO, progress: bool = False) -> ChapterResult:
    """Execute one chapter with papermill into ``cache_dir/<name>.ipynb`` (atomically), record its
    key. On a failing cell raise :class:`ChapterError` and keep ``<name>.failed.ipynb``."""
    import nbformat
    import papermill as pm

    nb = load_chapter(name, src)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"{name}.ipynb"
    failed = cache_dir / f"{name}.failed.ipynb"
    tmp = cache_dir / f".{name}.{os.getpid()}.tmp.ipynb"
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(nb, str(tmp), parameters=parameters, kernel_name="python3",
                            cwd=str(cwd), progress_bar=progress, log_output=False)
    except pm.PapermillExecutionError as err:
        os.replace(tmp, failed)
        executed = nbformat.read(failed, as_version=4)
        raise ChapterError(
            f"chapter {name!r} failed at {_failed_cell(executed)}: "
            f"{err.ename}: {err.evalue}\n  the failed notebook is kept at {failed}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    failed.unlink(missing_ok=True)
    _write_atomic(cache_dir / f"{name}.key", key)
    return ChapterResult(name, "ran", time.perf_counter() - t0, final)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# data


def prepare_data(profile: str, data: str | None = None) -> dict:
    """Make sure every dataset the chapters read exists (generating the synthetic ones), and return
    their manifests (the data part of the cache key). ``data`` replaces the LIP root only."""
    from lipstudy import experiments as ex

    prof = ex.get_profile(profile)
    manifests = {}
    for dataset in DATASETS:
        root = Path(ex.data_root(prof, dataset=dataset, data=data if dataset == "lip" else None))
        manifests[dataset] = _manifest_digest(root)
    return manifests


def _manifest_digest(root: Path) -> dict:
    """The synthetic data's fingerprint, or for a real dataset (no manifest) its id lists'
    digest and mtimes: cheap, and changes when the dataset does."""
    manifest = root / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        return {"root": str(root), "fingerprint": m.get("fingerprint"), "style": m.get("style")}
    lists = sorted(p for p in root.rglob("*_id.txt"))
    h = hashlib.sha256()
    for p in lists:
        h.update(p.read_bytes())
    return {"root": str(root), "id_lists": h.hexdigest()}


# ---------------------------------------------------------------------------------------------
# the book


def assemble(book_dir: Path, src: Path = BOOK_SRC) -> None:
    """Make ``book_dir`` a buildable book: the config (a copy of the top-level ``_config.yml``)
    and the static pages. Executed notebooks are added by :func:`execute`."""
    book_dir.mkdir(parents=True, exist_ok=True)
    if book_dir.resolve() == src.resolve():
        return  # book/_config.yml is a link to the top-level file; nothing to copy
    shutil.copyfile(REPO / "_config.yml", book_dir / "_config.yml")
    for name in STATIC_FILES:
        shutil.copyfile(src / name, book_dir / name)


def execute(profile: str, chapters: list[str] | None = None, data: str | None = None,
            device: str = "auto", seeds: list[int] | None = None,
            results: str | os.PathLike | None = None, book_dir: str | os.PathLike | None = None,
            force: bool = False, src: Path = BOOK_SRC, catalogue: tuple[str, ...] = CHAPTERS,
            manifests: dict | None = None, log=print) -> list[ChapterResult]:
    """Run (or reuse) the chapters and place the executed notebooks in ``<book_dir>/_executed``.

    ``catalogue`` is every chapter of the book (``chapters`` a subset to run; chapters not
    selected keep their last executed notebook for this profile). ``manifests`` (the data part of
    the cache key) defaults to :func:`prepare_data`, which generates missing synthetic data.
    Raises :class:`ChapterError` listing every chapter that failed (the others still run).
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
    for name in selected:
        text = (src / f"{name}.md").read_text()
        key = cache_key(text, params, sources, manifests)
        cached = cache_dir / f"{name}.ipynb"
        key_file = cache_dir / f"{name}.key"
        if (not force and name not in ALWAYS_RUN and cached.is_file() and key_file.is_file()
                and key_file.read_text() == key):
            log(f"[book] {name}: unchanged, reusing {cached}")
            done.append(ChapterResult(name, "cached", 0.0, cached))
            continue
        log(f"[book] {name}: executing")
        try:
            res = run_chapter(name, params, cache_dir, key, src=src)
        except ChapterError as err:
            log(f"[book] {err}")
            errors.append(str(err))
            continue
        log(f"[book] {name}: done in {res.seconds:.1f} s")
        done.append(res)
    if errors:
        raise ChapterError("\n".join(errors))
    for name in catalogue:
        nb = cache_dir / f"{name}.ipynb"
        if nb.is_file():
            shutil.copyfile(nb, executed_dir / f"{name}.ipynb")
    _write_atomic(executed_dir / "PROFILE", profile + "\n")
    return done


def build(book_dir: str | os.PathLike | None = None, require: tuple[str, ...] = CHAPTERS, log=print) -> Path:
    """``jupyter-book build`` with warnings as errors (broken references fail); returns the HTML
    folder. Raises RuntimeError with the builder's output when the build fails, or before it when
    a chapter in ``require`` was never executed."""
    book = Path(book_dir).resolve() if book_dir is not None else BOOK_SRC
    missing = [c for c in require if not (book / "_executed" / f"{c}.ipynb").is_file()]
    if missing:
        raise RuntimeError(f"{book}: chapters never executed: {', '.join(missing)} "
                           f"(run `lipstudy book` without --chapters first)")
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(book), "-W", "--keep-going"]
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
    p = argparse.ArgumentParser(prog="lipstudy book", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--chapters", nargs="+", metavar="NAME", help=f"subset of: {' '.join(CHAPTERS)}")
    p.add_argument("--data", default=None, help="a real LIP root (default: the synthetic benchmark)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the profile's seeds")
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
        build(book)
    except RuntimeError as err:
        print(f"lipstudy book: {err}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# Sphinx extension


def setup(app):
    """Sphinx hook: count warnings and fail the build at the end if there were any (the CLI's
    ``-W --keep-going``), so ``jupyter-book build book/`` rejects broken references."""
    app.keep_going = True
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    sys.exit(main())
