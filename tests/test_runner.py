"""The book runner (papermill + cache + strict build) and the report tables, on tiny chapters
written into tmp_path: parameters are injected, unchanged chapters are reused, a failing cell names
its chapter and cell and keeps the notebook, a broken cross-reference fails the build."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from lipstudy import report, runner

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
    return runner.execute(profile, src=src, catalogue=tuple(names), manifests=kw.pop("manifests", {}),
                          results=results, book_dir=book, log=lambda *a: None, **kw)


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

    again = run(src, ["a", "b"], res, book, seeds=[3, 4])
    assert [r.status for r in again] == ["cached", "cached"]

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
        run(tmp_path, ["a"], tmp_path / "r", tmp_path / "b", chapters=["zzz"])
    with pytest.raises(ValueError, match="unknown profile"):
        runner.execute("huge", manifests={}, results=tmp_path, book_dir=tmp_path / "b")
    with pytest.raises(SystemExit):
        runner.main(["--profile", "smoke", "--data", str(tmp_path / "nope"), "--book-dir", str(tmp_path / "b")])


def test_cache_key_depends_on_every_input():
    base = dict(notebook_text="nb", parameters={"profile": "smoke"}, sources="s1", manifests={"lip": 1})
    k = runner.cache_key(**base)
    assert k == runner.cache_key(**base)
    for field, other in [("notebook_text", "nb2"), ("parameters", {"profile": "cpu"}),
                         ("sources", "s2"), ("manifests", {"lip": 2})]:
        assert runner.cache_key(**{**base, field: other}) != k, field


def test_source_digest_covers_the_package(monkeypatch, tmp_path):
    # The digest is over lipstudy/**/*.py and the lock file of the repository it is given.
    repo = tmp_path / "repo"
    (repo / "lipstudy").mkdir(parents=True)
    (repo / "lipstudy" / "m.py").write_text("a = 1\n")
    (repo / "requirements.lock").write_text("torch==1\n")
    monkeypatch.setattr(runner, "REPO", repo)
    d1 = runner.source_digest()
    (repo / "lipstudy" / "m.py").write_text("a = 2\n")
    d2 = runner.source_digest()
    (repo / "requirements.lock").write_text("torch==2\n")
    assert len({d1, d2, runner.source_digest()}) == 3


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


# ---------------------------------------------------------------------------------------------
# report


def test_compare_paper_ours_difference():
    paper = pd.DataFrame({"Mean IoU": [40.0, 50.0], "Mean accuracy": [60.0, np.nan]},
                         index=pd.Index(["A", "B"], name="Method"))
    ours = pd.DataFrame({"Mean IoU": [42.5, 45.0], "Mean accuracy": [61.0, 70.0]}, index=["B", "A"])
    t = report.compare(paper, ours)
    assert list(t.index) == ["A", "B"]
    assert t.loc["A", ("Mean IoU", "ours")] == 45.0
    assert t.loc["A", ("Mean IoU", "difference")] == pytest.approx(5.0)
    assert t.loc["B", ("Mean IoU", "difference")] == pytest.approx(-7.5)
    assert np.isnan(t.loc["B", ("Mean accuracy", "difference")])  # the paper has "-"
    # A method only we ran is kept, with no paper value.
    t2 = report.compare(paper, pd.concat([ours, pd.DataFrame({"Mean IoU": [1.0]}, index=["C"])]))
    assert list(t2.index) == ["A", "B", "C"] and np.isnan(t2.loc["C", ("Mean IoU", "paper")])
    long = report.long_compare(paper, ours)
    assert list(long.columns) == ["paper", "ours", "difference"]
    assert long.loc[("A", "Mean IoU"), "difference"] == pytest.approx(5.0)
    html = report.style(t, caption="cap").to_html()
    assert "cap" in html and "45.00" in html


def test_ours_table_from_metrics():
    metrics = {"DeepLabV2": {"mean_iou": 0.41, "overall_acc": 0.8, "per_class_iou": {"hat": 0.5, "face": None}}}
    t = report.ours_table(metrics, {"Mean IoU": "mean_iou"}, rows={"DeepLabV2": "DeepLabV2 [4]"},
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
    assert report.is_synthetic(synth)
    label = report.data_label(synth)
    assert "synthetic" in label and "abcdef012345" in label and "8/4/2" in label
    assert "not LIP numbers" in report.ours_caption(synth, "smoke")
    real = tmp_path / "LIP"
    real.mkdir()
    assert not report.is_synthetic(real)
    assert "real data" in report.data_label(real) and "not LIP" not in report.ours_caption(real, "full")
    (real / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="manifest.json: not valid JSON"):
        report.data_label(real)


def test_provenance_of_runs(tmp_path):
    runs = tmp_path / "runs"
    for key, dirty in [("k1", False), ("k2", True)]:
        d = runs / key
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"model": "deeplabv2", "loss": "off", "seed": 0}))
        (d / "provenance.json").write_text(json.dumps({"commit": "0123456789abcdef", "dirty": dirty,
                                                       "device": "cpu", "wall_time_s": 12.34}))
        (d / "metrics.json").write_text("{}")
    (runs / "unfinished").mkdir()  # no metrics.json: not a finished run
    frame = report.all_runs(tmp_path)
    assert sorted(frame["run"]) == ["k1", "k2"]
    assert set(frame["commit"]) == {"0123456789"} and frame["wall time (s)"].tolist() == [12.3, 12.3]
    html = report.provenance_html([report._RunFiles(runs / "k2")], profile="smoke")
    assert "dirty" in html and "uncommitted" in html and "torch" in html and "smoke" in html


def _flat_lip(root: Path, splits: dict[str, list[np.ndarray]]) -> None:
    """A hand-made real-style LIP folder (flat layout, no manifest, no attributes.csv)."""
    from PIL import Image

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
    counts = report.images_per_label(root)
    assert counts["upper-clothes"] == 4 and counts["hair"] == 3 and counts["face"] == 3
    assert counts["pants"] == 2 and counts["hat"] == 0 and "background" not in counts.index
    attrs = report.image_attributes(root)
    assert list(attrs.index) == ["val0", "val1"] and set(attrs["split"]) == {"val"}
    assert attrs.loc["val0", "person_area"] == 20 * 12
    assert attrs.loc["val1", "person_area"] == int((b != 0).sum())
    assert set(attrs["size_bin"]) == {"small"}  # far below 153^2 pixels
    assert attrs.loc["val0", "head_missed"] == 1 and attrs.loc["val1", "head_missed"] == 0
    cached = list((tmp_path / "results" / "cache").glob("attributes-*.csv"))
    assert len(cached) == 1
    again = report.image_attributes(root)
    pd.testing.assert_frame_equal(again[attrs.columns], attrs, check_dtype=False)
    assert not report.is_synthetic(root)


def test_breakdown_aggregates_subsets():
    ids = ["x", "y", "z"]
    cms = np.zeros((3, 2, 2), np.int64)
    cms[0] = [[10, 0], [0, 10]]   # perfect
    cms[1] = [[5, 5], [5, 5]]     # IoU 1/3 for both classes
    cms[2] = [[10, 0], [10, 0]]   # class 1 never predicted
    attrs = pd.DataFrame({"back_view": [0, 1, 1], "size_bin": ["small", "small", "large"]}, index=ids)
    ev = type("Ev", (), {"ids": ids, "cms": cms})()
    t = report.breakdown({"M": ev}, attrs, {"all": None, "back": "back_view", "small": "size:small"}, n_boot=50)
    got = t.set_index("subset")
    # back-view = y + z: cm [[15,5],[15,5]]: IoU0 = 15/35, IoU1 = 5/25
    assert got.loc["back", "value"] == pytest.approx(100 * (15 / 35 + 5 / 25) / 2)
    assert got.loc["back", "images"] == 2 and got.loc["small", "images"] == 2
    assert got.loc["all", "value"] == pytest.approx(100 * report.stat_value(cms, "mean_iou"))
    assert got.loc["back", "low"] <= got.loc["back", "value"] <= got.loc["back", "high"]
