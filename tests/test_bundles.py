"""lipstudy.bundles: the sparse matrices restore exactly, a bundle round-trips a run (its
evaluations, figures and slim checkpoint), and a bundle that does not match this checkout or was
damaged is refused by name with nothing written. The smoke book built from a bundle is in
tests/test_book.py; the GPU script's bundle in tests/test_gpu_book.py."""
import dataclasses
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lipstudy import bundles, store, train_run
from lipstudy.bundles import BundleError, import_bundle, pack_cms, read_bundle, unpack_cms
from lipstudy.config import TrainConfig
from lipstudy.export import export
from lipstudy.evaluate import load_cms
from lipstudy.profiles import PROFILES, Profile
from lipstudy.runs import Run

TINY = Profile(name="tinybundle", width=0.0625, crop=32, batch=4, lr=0.01, epochs_stage1=1, epochs_stage2=1,
               lip_data={"train": 8, "val": 4, "test": 4, "max_side": 32},
               ppp_data={"train": 8, "val": 4, "test": 4, "max_side": 32},
               atr_data={"train": 4, "val": 4, "test": 4, "max_side": 32},
               eval_sizes=(16, 32, 51), seeds=(0,), workers=0)
RUN = Run("deeplabv2")  # one of the figures' runs: it gets a slim checkpoint


def test_sparse_matrices_restore_exactly():
    cms = np.zeros((3, 4, 4), np.int64)
    cms[0] = [[5, 0, 0, 1], [0, 0, 0, 0], [0, 2, 7, 0], [0, 0, 0, 300]]
    cms[2, 1, 1] = 2**32 + 5  # beyond uint32: values then need uint64
    packed = pack_cms(["a", "b", "c"], cms)
    assert packed["counts"].tolist() == [5, 0, 1] and packed["counts"].dtype == np.uint8
    assert packed["cells"].tolist() == [0, 3, 9, 10, 15, 5] and packed["cells"].dtype == np.uint8
    assert packed["values"].tolist() == [5, 1, 2, 7, 300, 2**32 + 5] and packed["values"].dtype == np.uint64
    ids, back = unpack_cms(packed)
    assert ids == ["a", "b", "c"] and back.dtype == np.int64 and np.array_equal(back, cms)
    # Pixel counts of a 473 x 473 image fit 32 bits; 20 classes' cells fit 16.
    rng = np.random.default_rng(0)
    big = rng.integers(0, 473 * 473, (50, 20, 20)) * (rng.random((50, 20, 20)) < 0.1)
    packed = pack_cms([str(i) for i in range(50)], big)
    assert packed["cells"].dtype == np.uint16 and packed["values"].dtype == np.uint32
    assert np.array_equal(unpack_cms(packed)[1], big)
    empty = unpack_cms(pack_cms([], np.zeros((0, 20, 20), np.int64)))
    assert empty[0] == [] and empty[1].shape == (0, 20, 20)
    with pytest.raises(ValueError, match="negative"):
        pack_cms(["a"], -np.ones((1, 2, 2), np.int64))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run with every product the chapters read, and its bundle."""
    base = tmp_path_factory.mktemp("bundles")
    mp = pytest.MonkeyPatch()
    mp.setitem(PROFILES, TINY.name, TINY)
    mp.setenv("LIPSTUDY_DATA", str(base / "data"))
    mp.setenv("LIPSTUDY_RESULTS", str(base / "results"))
    res = train_run.ensure(RUN, TINY, device="cpu", progress=False)
    bundle = base / "tiny.tar.xz"
    manifest = export(TINY, bundle, runs=[RUN], device="cpu")
    yield {"base": base, "res": res, "bundle": bundle, "manifest": manifest, "mp": mp}
    mp.undo()


@pytest.fixture
def elsewhere(trained, tmp_path, monkeypatch):
    """An empty results folder and data folder, as on the machine that builds the book."""
    monkeypatch.setenv("LIPSTUDY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    return tmp_path


def test_a_bundle_round_trips_a_run(trained, elsewhere):
    res, manifest = trained["res"], trained["manifest"]
    assert [r["key"] for r in manifest["runs"]] == [res.dir.name] and manifest["runs"][0]["checkpoint"]
    assert manifest["engine_version"] == store.ENGINE_VERSION and manifest["profile"] == TINY.name
    assert set(manifest["datasets"]) == {"lip", "atr"}  # what the bundled LIP run trains and is scored on
    names = set(manifest["files"])
    prefix = f"runs/{res.dir.name}/"
    evals = ["val", "test", "atr", "val@16", "val@32", "val@51"]
    assert {prefix + f"eval/{e}/{bundles.SPARSE}" for e in evals} <= names
    assert {prefix + f"figures/{s}.npz" for s in ("fig8", "cihp", "photos")} <= names
    done = import_bundle(trained["bundle"])
    here = elsewhere / "results" / "runs" / res.dir.name
    assert done == {"imported": [res.dir.name], "kept": []}
    for e in evals:
        a, b = load_cms(res.dir / "eval" / e / "per_image_cm.npz"), load_cms(here / "eval" / e / "per_image_cm.npz")
        assert a[0] == b[0] and np.array_equal(a[1], b[1])
        assert (res.dir / "eval" / e / "metrics.json").read_bytes() == (here / "eval" / e / "metrics.json").read_bytes()
    for f in ("metrics.json", "train_log.json", "figures/fig8.npz"):
        assert (res.dir / f).read_bytes() == (here / f).read_bytes(), f
    # The configs name files relative to the data and results folders, resolved where they are used.
    _, members = members_of(trained["bundle"], elsewhere / "members")
    for f in ("config.json", "train_config.json", "provenance.json"):
        assert (here / f).read_bytes() == members[f"runs/{res.dir.name}/{f}"], f
        assert not absolute_paths(json.loads((here / f).read_text())), f
        # (the run folder's configs name this machine's files; its command depends on how pytest runs)
        assert f == "provenance.json" or absolute_paths(json.loads((res.dir / f).read_text())), f
    assert json.loads((here / "provenance.json").read_text()) == {
        **json.loads((res.dir / "provenance.json").read_text()),
        "command": json.loads((here / "provenance.json").read_text())["command"]}  # the record, but where it ran
    theirs, ours = (TrainConfig.from_dict(json.loads((d / "train_config.json").read_text())) for d in (res.dir, here))
    assert ours.data_root.startswith("data/synth-tinybundle-lip-") and ours.data_root != theirs.data_root
    assert ours.resolved().data_root == str(elsewhere / "data" / Path(ours.data_root).name)
    assert dataclasses.replace(ours.resolved(), data_root=theirs.data_root, backbone_init=theirs.backbone_init) == theirs
    assert (here / "metrics.json").stat().st_mtime == pytest.approx((res.dir / "metrics.json").stat().st_mtime)
    assert json.loads((here / "imported.json").read_text())["bundle"] == "tiny.tar.xz"
    # The slim checkpoint: weights and config only, the same network.
    from lipstudy.runtime import load_checkpoint, model_from_checkpoint

    slim = load_checkpoint(here / "checkpoint.pt")
    assert set(slim) == {"model", "config", "slim"} and (here / "checkpoint.pt").stat().st_size < \
        (res.dir / "checkpoint.pt").stat().st_size
    x = torch.randn(1, 3, 24, 20)
    with torch.no_grad():
        assert torch.equal(model_from_checkpoint(here / "checkpoint.pt")[0](x),
                           model_from_checkpoint(res.dir / "checkpoint.pt")[0](x))
    # The importing side finds the run finished, and re-exports the same bytes.
    assert store.finished_key(RUN, TINY) == res.dir.name
    again = elsewhere / "again.tar.xz"
    export(TINY, again, runs=[RUN], device="cpu")
    assert again.read_bytes() == trained["bundle"].read_bytes()
    # A second import keeps the run as it is.
    assert import_bundle(trained["bundle"]) == {"imported": [], "kept": [res.dir.name]}


def absolute_paths(doc) -> list[str]:
    """Every string of a JSON document that is, or holds (a command line), an absolute path."""
    if isinstance(doc, dict):
        return [p for v in doc.values() for p in absolute_paths(v)]
    if isinstance(doc, list):
        return [p for v in doc for p in absolute_paths(v)]
    return [doc] if isinstance(doc, str) and any(w.startswith("/") for w in doc.split()) else []


def test_paths_leave_the_machine_relative_and_resolve_where_they_arrive(tmp_path, monkeypatch):
    from lipstudy.paths import REPO, portable, portable_command, resolve

    monkeypatch.setenv("LIPSTUDY_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "r"))
    assert portable(str(tmp_path / "d" / "synth-x-lip-1")) == "data/synth-x-lip-1"
    assert portable(str(tmp_path / "r" / "runs" / "k" / "checkpoint.pt")) == "results/runs/k/checkpoint.pt"
    assert portable("/datasets/LIP") == "/datasets/LIP" and portable("relative/x") == "relative/x"
    monkeypatch.setenv("LIPSTUDY_DATA", str(tmp_path / "elsewhere"))
    assert resolve("data/synth-x-lip-1") == str(tmp_path / "elsewhere" / "synth-x-lip-1")
    assert resolve("results/runs/k/checkpoint.pt") == str(tmp_path / "r" / "runs" / "k" / "checkpoint.pt")
    assert resolve("/datasets/LIP") == "/datasets/LIP"
    assert portable_command(f"{REPO}/.venv/bin/lipstudy book --data {tmp_path}/elsewhere/x") == \
        ".venv/bin/lipstudy book --data data/x"
    assert portable_command("/work/notes/train_shipped.py") == "train_shipped.py"


def members_of(bundle, folder) -> tuple[dict, dict[str, bytes]]:
    """A bundle's manifest and members (streamed by read_bundle into ``folder``)."""
    manifest, files = read_bundle(bundle, folder)
    return manifest, {name: f.read_bytes() for name, f in files.items()}


def repack(src, dst, edit_manifest=None, edit_member=None, extra=None):
    """A copy of bundle ``src`` with its manifest or one member changed."""
    manifest, members = members_of(src, dst.parent / f"{dst.name}.members")
    if edit_manifest:
        edit_manifest(manifest)
    if edit_member:
        name = next(n for n in members if n.endswith(edit_member))
        blob = bytearray(members[name])
        blob[len(blob) // 2] ^= 0x01
        members[name] = bytes(blob)
    members.update(extra or {})
    with tarfile.open(dst, "w:xz") as tar:
        for name, blob in [("manifest.json", json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return dst


def nothing_written(root):
    results = root / "results"
    return not (results / "runs").exists() or not any((results / "runs").iterdir()), \
        [p.name for p in results.glob(".bundle-import-*")] if results.exists() else []


@pytest.mark.parametrize("damage, message", [
    ({"edit_member": "checkpoint.pt"}, r"checkpoint\.pt \(run 'DeepLabV2' \([0-9a-f]{16}\)\) is corrupt"),
    ({"edit_member": "eval/val/per_image_cm.sparse.npz"}, r"per_image_cm\.sparse\.npz .*is corrupt"),
    ({"edit_manifest": lambda m: m.update(engine_version="0")},
     r"its runs \(run 'DeepLabV2' \([0-9a-f]{16}\)\) were trained by engine version '0'; this checkout's is '1'"),
    ({"edit_manifest": lambda m: m["datasets"].update(lip="0" * 64)},
     r"dataset 'lip' of profile tinybundle differs: the bundle's runs \(DeepLabV2\) trained on data with "
     r"fingerprint 0000000000000000\.\.\., this machine's is"),
    ({"edit_manifest": lambda m: m["runs"][0]["run"].update(seed=3)},
     r"run 'DeepLabV2' \([0-9a-f]{16}\): its key here is [0-9a-f]{16}, the bundle's"),
    ({"edit_manifest": lambda m: m.update(profile="nosuch")}, r"profile 'nosuch', unknown to this checkout"),
    ({"edit_manifest": lambda m: m.pop("matrices")}, r"its manifest lacks or garbles matrices"),
    ({"edit_manifest": lambda m: m["datasets"].update(mars="0" * 64)},
     r"its manifest garbles datasets or matrices \(datasets 'mars' are not profile tinybundle's\)"),
    ({"extra": {"runs/0123456789abcdef/x.json": b"{}"}}, r"x\.json belongs to no run of the manifest"),
])
def test_a_bundle_that_does_not_match_is_refused_and_nothing_written(trained, elsewhere, damage, message):
    bad = repack(trained["bundle"], elsewhere / "bad.tar.xz", **damage)
    with pytest.raises(BundleError, match=message) as err:
        import_bundle(bad)
    assert str(bad) in str(err.value)
    empty, staging = nothing_written(elsewhere)
    assert empty and not staging


def test_an_extra_file_and_a_missing_one_are_refused(trained, elsewhere):
    key = trained["manifest"]["runs"][0]["key"]
    extra = repack(trained["bundle"], elsewhere / "extra.tar.xz", extra={f"runs/{key}/notes.txt": b"hello"})
    with pytest.raises(BundleError, match=rf"runs/{key}/notes\.txt .* is not listed in the manifest"):
        import_bundle(extra)
    missing = repack(trained["bundle"], elsewhere / "missing.tar.xz",
                     edit_manifest=lambda m: m["files"].update({f"runs/{key}/eval/val-ms/metrics.json":
                                                                {"sha256": "0" * 64, "bytes": 1}}))
    with pytest.raises(BundleError, match=rf"runs/{key}/eval/val-ms/metrics\.json \(run 'DeepLabV2' .*\) is missing"):
        import_bundle(missing)
    (elsewhere / "junk.tar.xz").write_bytes(b"not an archive at all")
    with pytest.raises(BundleError, match="not a readable bundle"):
        import_bundle(elsewhere / "junk.tar.xz")
    assert nothing_written(elsewhere) == (True, [])


def test_an_unfinished_run_is_left_out_of_a_partial_bundle_and_refused_otherwise(trained, elsewhere, monkeypatch):
    ssl = Run("deeplabv2", "paper", stage=2)  # never trained: its parent is, in the fixture's results
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(trained["base"] / "results"))
    monkeypatch.setenv("LIPSTUDY_DATA", str(trained["base"] / "data"))
    with pytest.raises(BundleError, match=r"run 'DeepLabV2 \+ SSL' .* is not finished"):
        export(TINY, elsewhere / "b.tar.xz", runs=[ssl], device="cpu")
    assert not (elsewhere / "b.tar.xz").exists()
    manifest = export(TINY, elsewhere / "b.tar.xz", runs=[ssl], device="cpu", partial=True, checkpoints="none")
    assert [r["label"] for r in manifest["runs"]] == ["DeepLabV2"]
    assert not any(n.endswith("checkpoint.pt") for n in manifest["files"])


def test_without_runs_a_partial_bundle_holds_the_books_finished_runs(trained, elsewhere, monkeypatch):
    # runs=None is the book's whole run list (lipstudy runs export, the GPU script): of it, the
    # fixture finished one run, so a partial bundle holds that one and names every other as left out.
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(trained["base"] / "results"))
    monkeypatch.setenv("LIPSTUDY_DATA", str(trained["base"] / "data"))
    manifest = export(TINY, elsewhere / "book.tar.xz", device="cpu", partial=True, checkpoints="none")
    assert [r["label"] for r in manifest["runs"]] == ["DeepLabV2"]
    assert sorted(manifest["datasets"]) == ["atr", "lip", "ppp"]  # the book's datasets, not the runs'


def test_no_train_refuses_to_train_and_names_the_run(trained, elsewhere):
    with pytest.raises(RuntimeError, match=r"run 'SegNet' \(lip, seed 0\) of profile tinybundle .* training is off"):
        train_run.ensure(Run("segnet"), TINY, device="cpu", progress=False, train=False)
    assert not (elsewhere / "results" / "runs").exists()


def test_without_checkpoints_the_figures_and_evaluations_come_from_the_bundle(trained, elsewhere, monkeypatch):
    bundle = elsewhere / "slim.tar.xz"
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(trained["base"] / "results"))
    monkeypatch.setenv("LIPSTUDY_DATA", str(trained["base"] / "data"))
    export(TINY, bundle, runs=[RUN], device="cpu", checkpoints="none")
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(elsewhere / "results"))
    monkeypatch.setenv("LIPSTUDY_DATA", str(elsewhere / "data"))
    import_bundle(bundle)
    res = train_run.ensure(RUN, TINY, device="cpu", progress=False)  # found, not trained
    assert res.dir.parent == elsewhere / "results" / "runs" and not res.checkpoint.exists()
    original = trained["res"]
    for name in ("fig8", "cihp", "photos"):
        ours, theirs = res.figure_maps(name), original.figure_maps(name)
        assert list(ours) == list(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    assert np.array_equal(res.evaluation("atr").cms, original.evaluation("atr").cms)
    (res.dir / "figures" / "fig8.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"run 'DeepLabV2' has no predictions of figure set 'fig8'.*no checkpoint"):
        res.figure_maps("fig8")
    with pytest.raises(FileNotFoundError, match=r"run 'DeepLabV2' has no evaluation 'val-flip' and no checkpoint"):
        res.evaluation("val-flip")


def test_the_runs_whose_figures_the_chapters_draw():
    from lipstudy.showcase import figure_sets

    sets = figure_sets("cpu", seeds=[3])
    assert {r.label: s for r, s in sets.items()} == {
        "SegNet": ["fig8", "cihp"], "FCN-8s": ["fig8", "cihp"], "DeepLabV2": ["fig8", "cihp", "photos"],
        "Attention": ["fig8", "cihp"], "DeepLabV2 + SSL": ["fig8", "cihp", "ssl"],
        "Attention + SSL": ["fig8", "cihp", "photos"]}
    assert {r.seed for r in sets} == {3}
    products = store.book_products("smoke")
    assert products[Run("attention", "paper", stage=2)][-3:] == [store.FigureSet(s) for s in ("fig8", "cihp", "photos")]
    assert products[Run("deeplabv2", "paper", stage=2)][-3:] == [store.FigureSet(s) for s in ("fig8", "cihp", "ssl")]


def test_where_the_runs_were_trained_in_one_sentence():
    import pandas as pd

    from lipstudy.provenance import training_origin

    row = {"device": "NVIDIA H200 (CUDA 13.0)", "started": "2026-12-02T10:00:00", "finished": "2026-12-03T01:00:00",
           "commit": "abc1234567", "imported from": "gpu.tar.xz"}
    text = training_origin(pd.DataFrame([row, {**row, "commit": "def7654321"}]))
    assert text.startswith("The 2 training runs behind these numbers ran on NVIDIA H200 (CUDA 13.0), 2026-12-02 to "
                           "2026-12-03, from commits abc1234567, def7654321, and were imported from the bundle "
                           "gpu.tar.xz (lipstudy runs import); this page was built on ")
    # Some runs imported (the shipped ones), the others trained here: the sentence counts them.
    shipped = [{**row, "imported from": f"{k}.tar.xz"} for k in "abcd"]
    mixed = training_origin(pd.DataFrame([*shipped, {**row, "imported from": ""}]))
    assert "from commit abc1234567, and 4 of them were imported from 4 bundles (lipstudy runs import)" in mixed
    here = training_origin(pd.DataFrame([{**row, "imported from": ""}]))
    assert "imported" not in here and here.startswith("The training run behind these numbers ran on NVIDIA H200")


def test_an_import_completes_a_run_that_is_here_without_touching_the_rest(trained, elsewhere):
    key = trained["manifest"]["runs"][0]["key"]
    import_bundle(trained["bundle"])
    here = elsewhere / "results" / "runs" / key
    (here / "eval" / "atr" / "metrics.json").unlink()  # an evaluation cut short
    (here / "figures" / "cihp.npz").unlink()
    kept = (here / "eval" / "val" / "metrics.json").stat().st_mtime_ns
    assert import_bundle(trained["bundle"]) == {"imported": [], "kept": [key]}
    assert (here / "eval" / "atr" / "metrics.json").is_file() and (here / "figures" / "cihp.npz").is_file()
    assert (here / "eval" / "val" / "metrics.json").stat().st_mtime_ns == kept
    assert not list((elsewhere / "results").glob(".bundle-import-*"))
