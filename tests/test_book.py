"""The book end to end on the smoke profile: every chapter executes (papermill), the book builds
with warnings as errors, a rerun reuses every chapter, a chapter reruns by hand with jupytext +
papermill, and a real headless browser renders the first chapter with its figures.

Everything is written under a temporary folder: the runs and executed chapters (``--results``) and
the built book (``--book-dir``); the jupytext sources in ``book/`` are only read.
"""
from __future__ import annotations

import html.parser
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from lipstudy import runner

pytestmark = pytest.mark.slow

REPO = runner.REPO
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


def lipstudy_book(*args, env_extra=None, timeout=900):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "lipstudy.cli", "book", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    base = tmp_path_factory.mktemp("smoke_book")
    results, book = base / "results", base / "book"
    t0 = time.perf_counter()
    # The synthetic data is generated into the temporary folder too ($LIPSTUDY_DATA).
    proc = lipstudy_book("--profile", "smoke", "--results", str(results), "--book-dir", str(book), "--device", "cpu",
                         env_extra={"LIPSTUDY_DATA": str(base / "data")})
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"lipstudy book failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-8000:]}"
    return {"base": base, "results": results, "book": book, "html": book / "_build" / "html", "seconds": seconds,
            "log": proc.stdout + proc.stderr}


def test_every_chapter_executes_and_builds(smoke_book):
    html_dir, book = smoke_book["html"], smoke_book["book"]
    assert (html_dir / "index.html").is_file() or (html_dir / "intro.html").is_file()
    for name in runner.CHAPTERS:
        nb = nbformat.read(book / "_executed" / f"{name}.ipynb", as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{name}: error outputs {errors[:1]}"
        # papermill injected the smoke parameters after the chapter's own parameters cell
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and "profile = \"smoke\"" in injected[0].source, name
        page = (html_dir / "_executed" / f"{name}.html").read_text()
        assert "Provenance" in page, f"{name}: no provenance block"
    # The sources were not touched: the executed notebooks live in the build tree and the cache.
    assert not (runner.BOOK_SRC / "_executed" / "PROFILE").is_file() or \
        (runner.BOOK_SRC / "_executed" / "PROFILE").stat().st_mtime < time.time() - smoke_book["seconds"]
    assert (smoke_book["results"] / "chapters" / "smoke" / "benchmark.ipynb").is_file()


def test_synthetic_numbers_are_labelled(smoke_book):
    page = (smoke_book["html"] / "_executed" / "baselines.html").read_text()
    assert "not LIP numbers" in page and "synthetic" in page and "fingerprint" in page
    intro = (smoke_book["html"] / "intro.html").read_text()
    assert "is not a LIP number" in intro


def test_smoke_profile_is_fast_enough(smoke_book):
    # The budget of the smoke profile: every chapter in minutes (5 on 2 CPU cores, with the build).
    assert smoke_book["seconds"] < 600, f"smoke book took {smoke_book['seconds']:.0f} s"


def test_rerun_reuses_every_chapter(smoke_book):
    t0 = time.perf_counter()
    proc = lipstudy_book("--profile", "smoke", "--results", str(smoke_book["results"]),
                         "--book-dir", str(smoke_book["book"]), "--device", "cpu", "--no-build",
                         env_extra={"LIPSTUDY_DATA": str(smoke_book["base"] / "data")})
    assert proc.returncode == 0, proc.stderr[-4000:]
    reused = [c for c in runner.CHAPTERS if f"[book] {c}: unchanged" in proc.stdout]
    assert set(reused) == set(runner.CHAPTERS) - runner.ALWAYS_RUN, proc.stdout
    assert time.perf_counter() - t0 < smoke_book["seconds"]


def test_one_chapter_by_hand_with_papermill(smoke_book, tmp_path):
    bindir = Path(sys.executable).parent
    nb = tmp_path / "benchmark.ipynb"
    out = tmp_path / "benchmark.out.ipynb"
    subprocess.run([str(bindir / "jupytext"), "--to", "ipynb", str(REPO / "book" / "benchmark.md"), "-o", str(nb)],
                   check=True, capture_output=True)
    env = {**os.environ, "LIPSTUDY_RESULTS": str(smoke_book["results"]), "LIPSTUDY_DATA": str(smoke_book["base"] / "data")}
    proc = subprocess.run([str(bindir / "papermill"), str(nb), str(out), "-p", "profile", "smoke",
                           "-p", "device", "cpu"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = json.dumps(nbformat.read(out, as_version=4).dict())
    assert "Table 1" in text and "synthetic" in text


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src", ""))


def test_browser_renders_first_chapter_with_figures(smoke_book, tmp_path):
    assert Path(CHROMIUM).exists(), "headless Chromium is missing: run `make browser` (Debian's chromium)"
    page = smoke_book["html"] / "_executed" / f"{runner.CHAPTERS[0]}.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and "<html" in dom.stdout, dom.stderr[-2000:]
    parser = _Images()
    parser.feed(dom.stdout)
    figures = [s for s in parser.srcs if "_images/" in s]
    assert len(figures) >= 3, f"expected the chapter's figures, found img src {parser.srcs}"
    for src in figures:
        path = (page.parent / src).resolve()
        assert path.is_file(), f"{src}: the page references a missing file"
        with Image.open(path) as im:
            im.load()
            assert im.width > 50 and im.height > 50, f"{src}: {im.size}"
            assert np.asarray(im.convert("L")).std() > 5, f"{src}: a blank figure"
    shot = tmp_path / "shot.png"
    proc = subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape[0] >= 1000 and pixels.std() > 10, "the screenshot looks blank"
    # Something other than white page background: text and the rendered figures.
    assert (pixels < 128).mean() > 0.002
