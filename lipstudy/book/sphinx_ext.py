"""The Sphinx extension of the book (``_config.yml`` lists it): ``jupyter-book build book/``
executes every chapter without an up-to-date executed notebook before Sphinx reads the pages, through
the same runner and cache as ``lipstudy book``, for the settings the environment gives
(:func:`lipstudy.settings.book_settings`), and fails on any warning, the ``-W --keep-going`` of the
command line. The Sphinx option ``lipstudy_execute: false`` (which ``lipstudy book`` gives the build
it starts after executing the chapters) renders the executed notebooks as they are."""
from __future__ import annotations

from pathlib import Path

from ..settings import book_settings
from . import pages
from .runner import ChapterError, execute, say

def execute_for_sphinx(app, config) -> None:
    """``config-inited``: execute (or reuse) every chapter of the book's ``_toc.yml`` whose source
    ``<srcdir>/<name>.md`` is there, for the settings of :func:`book_settings`, before Sphinx looks
    for its sources; then check that no page prints a plotting object's repr."""
    import logging

    import nbformat

    srcdir = Path(app.srcdir)
    toc = srcdir / "_toc.yml"
    listed = pages.execution_order(srcdir) if toc.is_file() else []
    if config.lipstudy_execute:
        runnable = tuple(c for c in listed if (srcdir / f"{c}.md").is_file())
        if runnable:
            s = book_settings()  # a bad value stops the build with the variable named
            say(f"[book] jupyter-book build: profile {s.profile}, data {s.data or 'synthetic'} "
                f"(set by $LIPSTUDY_PROFILE, $LIPSTUDY_LIP_ROOT, $LIPSTUDY_SEEDS)")
            try:
                execute(s.profile, data=s.data, seeds=s.seeds, book_dir=srcdir, src=srcdir, catalogue=runnable)
            except ChapterError as err:
                raise RuntimeError(f"lipstudy: {err}") from None
    # A logger in Sphinx's namespace: its handlers print and count the warning (the build fails).
    warn = logging.getLogger("sphinx.lipstudy.book").warning
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
    app.add_config_value("lipstudy_execute", True, "env", [bool])
    app.connect("config-inited", execute_for_sphinx, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
