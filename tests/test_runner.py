"""The book runner (papermill + cache + strict build), the pages it writes, its progress lines,
and the report tables, on tiny chapters written into tmp_path: parameters are injected and shown
once, unchanged chapters are reused, a changed label file reruns a chapter, a failing cell names
its chapter and cell and keeps the notebook, a broken cross-reference fails the build, the Sphinx
extension executes what is missing."""
from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lipstudy import process_pool, progress, provenance, subsets, tables
from lipstudy import settings
from lipstudy.book import contents, keys, pages, runner, sphinx_ext
from lipstudy.data import roots, statistics

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

PARAMS = """
```{code-cell} ipython3
:tags: [parameters]
profile = "cpu"
data = None
device = "auto"
seeds = None
train = True
```
"""


def chapter(body: str, title: str = "Toy", params: bool = True) -> str:
    return HEADER + f"\n# {title}\n" + (PARAMS if params else "") + body


def code(src: str) -> str:
    return f"\n```{{code-cell}} ipython3\n{src}\n```\n"


def outputs_text(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") or json.dumps(o.get("data", {})))
    return "\n".join(out)


def run(src, names, results, book, profile="smoke", **kw):
    assert runner.results_dir() == results  # where the fixture points $LIPSTUDY_RESULTS
    return runner.execute(profile, src=src, catalogue=tuple(names), manifests=kw.pop("manifests", {}),
                          book_dir=book, log=lambda *a: None, **kw)


@pytest.fixture(autouse=True)
def fixed_sources_and_no_plan(monkeypatch, tmp_path):
    """The toy chapters' keys must not change when someone edits the package while the tests run,
    and they train nothing, so there are no training runs to plan; results in ``tmp_path/res``."""
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "res"))
    monkeypatch.setattr(runner, "source_digest", lambda: "sources")
    monkeypatch.setattr(process_pool, "progress_plan", lambda *a, **k: [])


def visible_parameter_blocks(nb) -> list[str]:
    """Sources of the cells a page shows that assign ``profile``."""
    return [c.source for c in nb.cells if c.cell_type == "code" and "profile =" in c.source
            and "remove-cell" not in c.metadata.get("tags", [])]


def test_parameters_injected_and_cache_reused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.md").write_text(chapter(code('print("PROFILE=" + profile, "SEEDS=", seeds)')))
    (src / "b.md").write_text(chapter(code('print("B ran")')))
    res, book = tmp_path / "res", tmp_path / "book"

    first = run(src, ["a", "b"], res, book, seeds=[3, 4])
    assert [r.status for r in first] == ["ran", "ran"]
    text = outputs_text(res / "chapters" / "smoke" / "a.ipynb")
    assert "PROFILE=smoke" in text and "SEEDS= [3, 4]" in text
    # The book tree gets the executed copies the table of contents points at.
    assert (book / "_executed" / "a.ipynb").is_file() and (book / "_executed" / "b.ipynb").is_file()
    assert (book / "_executed" / "PROFILE").read_text().strip() == "smoke"
    # The page shows one parameters block, with the values used; papermill's cell is kept, hidden.
    page = nbformat.read(book / "_executed" / "a.ipynb", as_version=4)
    shown = visible_parameter_blocks(page)
    assert len(shown) == 1 and 'profile = "smoke"' in shown[0] and "seeds = [3, 4]" in shown[0], shown
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in page.cells)

    # The build records its time per chapter (the toy chapters use no training runs: no training phase).
    times = runner.build_times("smoke")
    assert set(times) == {"a", "b"} and all(t["seconds"] > 0 and t["finished"] for t in times.values())
    assert times["a"]["seconds"] == pytest.approx(first[0].seconds, abs=0.05)

    again = run(src, ["a", "b"], res, book, seeds=[3, 4])
    assert [r.status for r in again] == ["cached", "cached"]
    assert runner.build_times("smoke") == times  # a cached chapter keeps the time it took

    # A changed parameter, chapter text or data manifest reruns; the others stay cached.
    assert [r.status for r in run(src, ["a", "b"], res, book, seeds=[5])] == ["ran", "ran"]
    (src / "b.md").write_text(chapter(code('print("B ran, edited")')))
    assert [r.status for r in run(src, ["a", "b"], res, book, seeds=[5])] == ["cached", "ran"]
    assert "edited" in outputs_text(book / "_executed" / "b.ipynb")
    changed = run(src, ["a", "b"], res, book, seeds=[5], manifests={"lip": {"fingerprint": "x"}})
    assert [r.status for r in changed] == ["ran", "ran"]
    # Only the selected chapter runs; force ignores the cache.
    assert [(r.name, r.status) for r in run(src, ["a", "b"], res, book, seeds=[5], chapters=["b"],
                                           manifests={"lip": {"fingerprint": "x"}}, force=True)] == [("b", "ran")]


def test_failing_cell_names_chapter_and_cell_and_keeps_notebook(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.md").write_text(chapter(code("x = 1")))
    (src / "bad.md").write_text(chapter(code("x = 1") + code("y = x / 0  # the culprit")))
    res, book = tmp_path / "res", tmp_path / "book"
    with pytest.raises(runner.ChapterError) as err:
        run(src, ["bad", "good"], res, book)
    msg = str(err.value)
    assert "chapter 'bad'" in msg and "code cell 3" in msg and "the culprit" in msg
    assert "ZeroDivisionError" in msg
    cache = res / "chapters" / "smoke"
    assert (cache / "bad.failed.ipynb").is_file() and not (cache / "bad.ipynb").exists()
    assert str(cache / "bad.failed.ipynb") in msg
    # The other chapter still ran, and no temporary file is left behind.
    assert (cache / "good.ipynb").is_file()
    assert not list(cache.glob(".*tmp*"))


def test_chapter_without_parameters_cell_is_rejected(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "np.md").write_text(chapter(code("x = 1"), params=False))
    with pytest.raises(runner.ChapterError, match=r"np\.md: no cell tagged 'parameters'"):
        runner.load_chapter("np", src)
    with pytest.raises(FileNotFoundError, match="missing.md"):
        runner.load_chapter("missing", src)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown chapters"):
        run(tmp_path, ["a"], tmp_path / "res", tmp_path / "b", chapters=["zzz"])
    with pytest.raises(ValueError, match="unknown profile"):
        runner.execute("huge", manifests={}, book_dir=tmp_path / "b")
    with pytest.raises(SystemExit):
        runner.main(["--profile", "smoke", "--data", str(tmp_path / "nope"), "--book-dir", str(tmp_path / "b")])


def test_cache_key_depends_on_every_input():
    base = dict(notebook_text="nb", parameters={"profile": "smoke"}, sources="s1", manifests={"lip": 1})
    k = keys.cache_key(**base)
    assert k == keys.cache_key(**base)
    for field, other in [("notebook_text", "nb2"), ("parameters", {"profile": "cpu"}),
                         ("sources", "s2"), ("manifests", {"lip": 2})]:
        assert keys.cache_key(**{**base, field: other}) != k, field
    assert keys.cache_key(**base, extra={"runs": []}) != k
    assert keys.cache_key(**base, extra={"runs": []}) != keys.cache_key(**base, extra={"runs": [["k1", 1]]})


def test_reproducibility_inputs_follow_the_runs_and_budget_files(tmp_path):
    first = keys.reproducibility_inputs(tmp_path)
    (tmp_path / "runs" / "k1").mkdir(parents=True)
    assert keys.reproducibility_inputs(tmp_path) == first  # an unfinished run is not listed
    (tmp_path / "runs" / "k1" / "metrics.json").write_text("{}")
    second = keys.reproducibility_inputs(tmp_path)
    assert [r[0] for r in second["runs"]] == ["k1"]
    (tmp_path / "budget").mkdir()
    (tmp_path / "budget" / "cpu.json").write_text("{}")
    assert keys.reproducibility_inputs(tmp_path)["budget"] != second["budget"]


def test_source_digest_covers_the_package(monkeypatch, tmp_path):
    # The digest is over lipstudy/**/*.py and the lock file of the repository it is given.
    monkeypatch.undo()
    repo = tmp_path / "repo"
    (repo / "lipstudy").mkdir(parents=True)
    (repo / "lipstudy" / "m.py").write_text("a = 1\n")
    (repo / "requirements.lock").write_text("torch==1\n")
    monkeypatch.setattr(keys, "REPO", repo)
    d1 = keys.source_digest()
    (repo / "lipstudy" / "m.py").write_text("a = 2\n")
    d2 = keys.source_digest()
    (repo / "requirements.lock").write_text("torch==2\n")
    assert len({d1, d2, keys.source_digest()}) == 3


def test_a_changed_label_file_reruns_the_chapter(tmp_path, monkeypatch):
    """A real dataset (no manifest) is fingerprinted as the training runs do
    (lipstudy.data.roots.data_fingerprint): a re-exported label PNG retrains the runs, so it must rerun
    the chapters too."""
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    real = tmp_path / "LIP"
    a = np.zeros((40, 20), np.uint8)
    a[10:30, 4:16] = 5
    _flat_lip(real, {"train": [a, a], "val": [a]})
    stand_in = tmp_path / "synth"
    stand_in.mkdir()
    (stand_in / "manifest.json").write_text(json.dumps({"fingerprint": "f" * 16, "style": "ppp"}))
    real_root = roots.data_root
    monkeypatch.setattr(roots, "data_root",
                        lambda prof, dataset="lip", data=None: real_root(prof, dataset, data) if data else stand_in)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.md").write_text(chapter(code('print("ran")')))
    res, book = tmp_path / "res", tmp_path / "book"

    def again():
        return [r.status for r in runner.execute("smoke", data=str(real), src=src, catalogue=("a",),
                                                 book_dir=book, log=lambda *a: None)]

    assert again() == ["ran"]
    assert again() == ["cached"]
    b = a.copy()
    b[2:8, 5:15] = 2  # the annotation gains hair; the id lists do not change
    Image.fromarray(b).save(real / "val_segmentations" / "val0.png")
    assert again() == ["ran"]


def test_merge_parameters_keeps_comments_and_takes_the_used_values():
    own = 'profile = "cpu"   # smoke | cpu | full\ndata = None       # root\nseeds = None'
    injected = '# Parameters\nprofile = "smoke"\ndata = None\nseeds = [0, 1]\n'
    assert pages.merge_parameters(own, injected) == (
        "# Parameters: the values this page was executed with\n"
        'profile = "smoke"   # smoke | cpu | full\n'
        "data = None         # root\n"
        "seeds = [0, 1]")
    # Not a plain list of one-line assignments, or a name the chapter does not declare: no merge.
    assert pages.merge_parameters(own, "# Parameters\nwidth = 2\n") is None
    assert pages.merge_parameters('profile = ("cpu"\n)', 'profile = "smoke"') is None
    assert pages.merge_parameters("import os", 'profile = "smoke"') is None


def test_page_notebook_shows_one_parameters_block():
    def cell(src, tags):
        return nbformat.v4.new_code_cell(src, metadata={"tags": tags})

    nb = nbformat.v4.new_notebook(cells=[cell('profile = "cpu"  # which', ["parameters"]),
                                         cell('# Parameters\nprofile = "smoke"\n', ["injected-parameters"]),
                                         cell("x = 1", [])])
    page = pages.page_notebook(nb)
    assert visible_parameter_blocks(page) == ['# Parameters: the values this page was executed with\n'
                                              'profile = "smoke"   # which']
    assert nb.cells[0].source == 'profile = "cpu"  # which'  # the executed notebook is not modified
    # When the cells cannot be merged, the chapter's own cell is hidden and papermill's shown.
    nb.cells[0].source = "import os\nprofile = 'cpu'"
    assert visible_parameter_blocks(pages.page_notebook(nb)) == ['# Parameters\nprofile = "smoke"\n']


def test_stray_reprs_are_found():
    def result(text, extra=None, kind="execute_result"):
        out = {"output_type": kind, "data": {"text/plain": text, **(extra or {})}, "metadata": {}}
        if kind == "execute_result":
            out["execution_count"] = 1
        return nbformat.from_dict(out)

    cells = [nbformat.v4.new_code_cell("a", outputs=[result("Text(0.5, 1.01, 'Real LIP photos')")]),
             nbformat.v4.new_code_cell("b", outputs=[result("<Figure size 640x480 with 1 Axes>",
                                                            {"image/png": "iVBOR"}, "display_data")]),
             nbformat.v4.new_code_cell("c", outputs=[result("<Figure size 640x480 with 0 Axes>")]),
             nbformat.v4.new_code_cell("d", outputs=[result("[<matplotlib.lines.Line2D at 0x7f00>]")]),
             nbformat.v4.new_code_cell("e", outputs=[result("<Axes: title={'center': 'x'}>")]),
             nbformat.v4.new_code_cell("f", outputs=[result("   a\n0  1")])]
    found = pages.stray_reprs(nbformat.v4.new_notebook(cells=cells))
    assert [f.split(":")[0] for f in found] == ["code cell 1", "code cell 3", "code cell 4", "code cell 5"]
    assert "Text(0.5, 1.01" in found[0]


def test_table_of_contents_lists_every_chapter():
    listed = pages.toc_chapters(runner.BOOK_SRC)
    assert set(listed) == set(contents.CHAPTERS) and len(listed) == len(contents.CHAPTERS)
    # The front page is the root and runs last: `lipstudy book` and the extension run one order.
    assert listed[0] == "intro" and pages.execution_order(runner.BOOK_SRC) == list(contents.CHAPTERS)
    for name in contents.CHAPTERS:
        assert (runner.BOOK_SRC / f"{name}.md").is_file(), name


def test_claim_anchors_are_unique_html_ids():
    from lipstudy.claims.evidence import claim_anchors

    texts = ["Attention is the best of the four baselines in mean IoU (val)", "SSL improves x", "SSL improves x", "!!"]
    got = claim_anchors(texts)
    assert got == ["claim-attention-is-the-best-of-the-four-baselines-in-mean-iou-val", "claim-ssl-improves-x",
                   "claim-ssl-improves-x-2", "claim-x"]
    assert claim_anchors(texts) == got  # the claims chapter and the front page compute the same


def test_book_settings_from_the_environment(tmp_path):
    assert settings.book_settings({}) == settings.BookSettings("cpu", None, None)
    env = {"LIPSTUDY_PROFILE": "smoke", "LIPSTUDY_LIP_ROOT": str(tmp_path), "LIPSTUDY_SEEDS": "0, 2"}
    assert settings.book_settings(env) == settings.BookSettings("smoke", str(tmp_path), [0, 2])
    with pytest.raises(ValueError, match="LIPSTUDY_PROFILE='huge'"):
        settings.book_settings({"LIPSTUDY_PROFILE": "huge"})
    with pytest.raises(ValueError, match="LIPSTUDY_LIP_ROOT=.*not a directory"):
        settings.book_settings({"LIPSTUDY_LIP_ROOT": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match="LIPSTUDY_SEEDS='0 x'"):
        settings.book_settings({"LIPSTUDY_SEEDS": "0 x"})


def test_sphinx_extension_executes_missing_chapters_and_flags_stray_reprs(tmp_path, monkeypatch, capsys, caplog):
    book = tmp_path / "book"
    book.mkdir()
    (book / "_toc.yml").write_text("format: jb-book\nroot: _executed/front\nchapters:\n  - file: _executed/plot\n"
                                   "  - file: other\n")
    (book / "front.md").write_text(chapter(code('print("front page", profile)')))
    (book / "plot.md").write_text(chapter(code("from matplotlib.text import Text\nText(0.5, 1.0, 'oops')")))
    monkeypatch.setenv("LIPSTUDY_PROFILE", "smoke")
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "res"))
    monkeypatch.setattr(runner, "prepare_data", lambda profile, data=None: {})
    app = SimpleNamespace(srcdir=str(book))

    config = SimpleNamespace(lipstudy_execute=True)
    sphinx_ext.execute_for_sphinx(app, config)
    out = capsys.readouterr().out
    assert "profile smoke" in out and "chapter 1/2 plot: executing" in out and "chapter 2/2 front: executing" in out
    assert "front page smoke" in outputs_text(book / "_executed" / "front.ipynb")
    assert any("plot.ipynb: code cell 2: Text(0.5, 1.0, 'oops')" in r.getMessage() for r in caplog.records)

    sphinx_ext.execute_for_sphinx(app, config)
    assert capsys.readouterr().out.count("unchanged") == 2
    # The Sphinx option lipstudy_execute: false (lipstudy book's build) renders what is there and executes nothing.
    (book / "_executed" / "front.ipynb").unlink()
    sphinx_ext.execute_for_sphinx(app, SimpleNamespace(lipstudy_execute=False))
    assert not (book / "_executed" / "front.ipynb").exists() and "executing" not in capsys.readouterr().out
    monkeypatch.setenv("LIPSTUDY_PROFILE", "huge")
    with pytest.raises(Exception, match="LIPSTUDY_PROFILE='huge'"):
        sphinx_ext.execute_for_sphinx(app, config)


def test_strict_build_fails_on_a_broken_reference(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "_config.yml").write_text((runner.REPO / "_config.yml").read_text())
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: other\n")
    (book / "other.md").write_text("# Other\n\nText.\n")
    (book / "intro.md").write_text("# Intro\n\nSee {doc}`other`.\n")
    html = runner.build(book, require=(), log=lambda *a: None)
    assert (html / "index.html").is_file() or (html / "intro.html").is_file()
    (book / "intro.md").write_text("# Intro\n\nSee {doc}`no_such_page`.\n")
    with pytest.raises(RuntimeError, match="no_such_page"):
        runner.build(book, require=(), log=lambda *a: None)
    with pytest.raises(RuntimeError, match="never executed: benchmark"):
        runner.build(book, require=("benchmark",), log=lambda *a: None)
    # A page that prints a plotting object's repr fails the build too.
    (book / "intro.md").write_text("# Intro\n\nSee {doc}`other`.\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: other\n"
                                   "  - file: _executed/plot\n")
    result = nbformat.from_dict({"output_type": "execute_result", "execution_count": 1, "metadata": {},
                                 "data": {"text/plain": "Text(0.5, 1.0, 'oops')"}})
    (book / "_executed").mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Plot"),
                                                   nbformat.v4.new_code_cell("t", outputs=[result])]),
                   book / "_executed" / "plot.ipynb")
    with pytest.raises(RuntimeError, match=r"plot.ipynb: code cell 1: Text\(0.5, 1.0, 'oops'\)"):
        runner.build(book, require=(), log=lambda *a: None)


# ---------------------------------------------------------------------------------------------
# report


def test_compare_paper_ours_difference():
    paper = pd.DataFrame({"Mean IoU": [40.0, 50.0], "Mean accuracy": [60.0, np.nan]},
                         index=pd.Index(["A", "B"], name="Method"))
    ours = pd.DataFrame({"Mean IoU": [42.5, 45.0], "Mean accuracy": [61.0, 70.0]}, index=["B", "A"])
    t = tables.compare(paper, ours)
    assert list(t.index) == ["A", "B"]
    assert t.loc["A", ("Mean IoU", "ours")] == 45.0
    assert t.loc["A", ("Mean IoU", "difference")] == pytest.approx(5.0)
    assert t.loc["B", ("Mean IoU", "difference")] == pytest.approx(-7.5)
    assert np.isnan(t.loc["B", ("Mean accuracy", "difference")])  # the paper has "-"
    # A method only we ran is kept, with no paper value.
    t2 = tables.compare(paper, pd.concat([ours, pd.DataFrame({"Mean IoU": [1.0]}, index=["C"])]))
    assert list(t2.index) == ["A", "B", "C"] and np.isnan(t2.loc["C", ("Mean IoU", "paper")])
    html = tables.style(t, caption="cap").to_html()
    assert "cap" in html and "45.00" in html


def test_ours_table_from_metrics():
    metrics = {"DeepLabV2": {"mean_iou": 0.41, "overall_acc": 0.8, "per_class_iou": {"hat": 0.5, "face": None}}}
    t = tables.ours_table(metrics, {"Mean IoU": "mean_iou"}, rows={"DeepLabV2": "DeepLabV2 [4]"},
                          per_class={"hat": "hat", "face": "face", "scarf": "scarf"})
    assert t.loc["DeepLabV2 [4]", "Mean IoU"] == pytest.approx(41.0)
    assert t.loc["DeepLabV2 [4]", "hat"] == pytest.approx(50.0)
    assert np.isnan(t.loc["DeepLabV2 [4]", "face"]) and np.isnan(t.loc["DeepLabV2 [4]", "scarf"])


def test_data_label_synthetic_and_real(tmp_path):
    synth = tmp_path / "synth"
    synth.mkdir()
    (synth / "manifest.json").write_text(json.dumps(
        {"generator_version": "1", "style": "lip", "seed": 0, "counts": {"train": 8, "val": 4, "test": 2},
         "fingerprint": "abcdef0123456789"}))
    assert tables.is_synthetic(synth)
    label = tables.data_label(synth)
    assert "synthetic" in label and "abcdef012345" in label and "8/4/2" in label
    assert "not LIP numbers" in tables.ours_caption(synth, "smoke")
    real = tmp_path / "LIP"
    real.mkdir()
    assert not tables.is_synthetic(real)
    assert "real data" in tables.data_label(real) and "not LIP" not in tables.ours_caption(real, "full")
    (real / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="manifest.json: not valid JSON"):
        tables.data_label(real)


def test_provenance_of_runs(tmp_path):
    runs = tmp_path / "runs"
    for key, dirty in [("k1", False), ("k2", True)]:
        d = runs / key
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"run": {"model": "deeplabv2", "loss": "off", "seed": 0}}))
        (d / "provenance.json").write_text(json.dumps({"git": {"commit": "0123456789abcdef", "dirty": dirty},
                                                       "device": "cpu", "wall_time_s": 12.34}))
        (d / "metrics.json").write_text("{}")
    (runs / "unfinished").mkdir()  # no metrics.json: not a finished run
    frame = provenance.all_runs(tmp_path)
    assert sorted(frame["run"]) == ["k1", "k2"] and set(frame["model"]) == {"deeplabv2"}
    assert set(frame["commit"]) == {"0123456789"} and frame["wall time (s)"].tolist() == [12.3, 12.3]
    assert frame.set_index("run")["dirty"].to_dict() == {"k1": False, "k2": True}
    k2 = SimpleNamespace(dir=runs / "k2", config=json.loads((runs / "k2" / "config.json").read_text()),
                         provenance=json.loads((runs / "k2" / "provenance.json").read_text()))
    html = provenance.provenance_html([k2], profile="smoke")
    assert "dirty" in html and "uncommitted" in html and "torch" in html and "smoke" in html


def _flat_lip(root: Path, splits: dict[str, list[np.ndarray]]) -> None:
    """A hand-made real-style LIP folder (flat layout, no manifest, no attributes.csv)."""
    for split, labels in splits.items():
        (root / f"{split}_images").mkdir(parents=True)
        (root / f"{split}_segmentations").mkdir()
        ids = [f"{split}{k}" for k in range(len(labels))]
        for i, lab in zip(ids, labels):
            Image.fromarray(np.full(lab.shape + (3,), 128, np.uint8)).save(root / f"{split}_images" / f"{i}.jpg")
            Image.fromarray(lab).save(root / f"{split}_segmentations" / f"{i}.png")
        (root / f"{split}_id.txt").write_text("\n".join(ids) + "\n")


def test_images_per_label_and_derived_attributes(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    h, w = 40, 20
    a = np.zeros((h, w), np.uint8)
    a[2:8, 5:15] = 2            # hair
    a[8:14, 6:14] = 13          # face
    a[14:30, 4:16] = 5          # upper-clothes
    b = a.copy()
    b[30:38, 5:15] = 9          # pants
    c = np.zeros((h, w), np.uint8)
    c[10:30, 4:16] = 5          # upper-clothes only: a head-missed image
    root = tmp_path / "LIP"
    _flat_lip(root, {"train": [a, b], "val": [c, b]})
    counts = statistics.images_per_label(root)
    assert counts["upper-clothes"] == 4 and counts["hair"] == 3 and counts["face"] == 3
    assert counts["pants"] == 2 and counts["hat"] == 0 and "background" not in counts.index
    attrs = statistics.image_attributes(root)
    assert list(attrs.index) == ["val0", "val1"] and set(attrs["split"]) == {"val"}
    assert attrs.loc["val0", "person_area"] == 20 * 12
    assert attrs.loc["val1", "person_area"] == int((b != 0).sum())
    assert set(attrs["size_bin"]) == {"small"}  # far below 153^2 pixels
    assert attrs.loc["val0", "head_missed"] == 1 and attrs.loc["val1", "head_missed"] == 0
    cached = list((tmp_path / "results" / "cache").glob("attributes-*.csv"))
    assert len(cached) == 1
    again = statistics.image_attributes(root)
    pd.testing.assert_frame_equal(again[attrs.columns], attrs, check_dtype=False)
    assert not tables.is_synthetic(root)


def test_breakdown_aggregates_subsets():
    ids = ["x", "y", "z"]
    cms = np.zeros((3, 2, 2), np.int64)
    cms[0] = [[10, 0], [0, 10]]   # perfect
    cms[1] = [[5, 5], [5, 5]]     # IoU 1/3 for both classes
    cms[2] = [[10, 0], [10, 0]]   # class 1 never predicted
    attrs = pd.DataFrame({"back_view": [0, 1, 1], "size_bin": ["small", "small", "large"]}, index=ids)
    ev = type("Ev", (), {"ids": ids, "cms": cms})()
    t = subsets.breakdown({"M": ev}, attrs, {"all": None, "back": "back_view", "small": "size:small"}, n_boot=50)
    got = t.set_index("subset")
    # back-view = y + z: cm [[15,5],[15,5]]: IoU0 = 15/35, IoU1 = 5/25
    assert got.loc["back", "value"] == pytest.approx(100 * (15 / 35 + 5 / 25) / 2)
    assert got.loc["back", "images"] == 2 and got.loc["small", "images"] == 2
    assert got.loc["all", "value"] == pytest.approx(100 * subsets.stat_value(cms, "mean_iou"))
    assert got.loc["back", "low"] <= got.loc["back", "value"] <= got.loc["back", "high"]
