import json

import numpy as np
import pytest

from lipstudy import experiments as ex
from lipstudy.labels import ATR_LIP_SHARED, LIP_CLASSES
from lipstudy.train import load_checkpoint

TINY = ex.Profile(name="tiny", width=0.0625, crop=32, batch=4, lr=0.01, epochs_stage1=1, epochs_stage2=1,
                  lip_data={"train": 8, "val": 4, "test": 4, "max_side": 32},
                  ppp_data={"train": 8, "val": 4, "test": 4, "max_side": 32},
                  atr_data={"train": 4, "val": 4, "test": 4, "max_side": 32},
                  eval_sizes=(16, 32, 51), seeds=(0,), workers=0)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSTUDY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    return tmp_path


def test_run_labels_and_named_sets():
    assert list(ex.paper_runs()) == ["SegNet", "FCN-8s", "DeepLabV2", "Attention", "DeepLabV2 + SSL",
                                     "Attention + SSL"]
    assert ex.paper_runs()["Attention + SSL"] == ex.Run("attention", "paper", "lip", 2, 0)
    assert ex.PAPER_RUNS == ex.paper_runs(0)
    assert list(ex.control_runs(3)) == ["DeepLabV2 + stage-2 epochs without SSL", "DeepLabV2 + SSL (released code)",
                                        "DeepLabV2 + SSL (1 + L_joint)"]
    assert all(r.seed == 3 and r.stage == 2 for r in ex.control_runs(3).values())
    ppp = ex.ppp_runs()
    assert list(ppp) == ["DeepLab-LargeFOV", "Attention", "Attention + SSL"]
    assert all(r.dataset == "ppp" for r in ppp.values())
    assert ex.Run("deeplabv2", "paper", stage=2).stage1() == ex.Run("deeplabv2")
    with pytest.raises(ValueError, match="unknown model"):
        ex.Run("unet")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        ex.get_profile("huge")


def test_profiles():
    full = ex.get_profile("full")
    assert (full.width, full.crop, full.batch, full.lr, full.epochs_stage1, full.epochs_stage2) == \
        (1.0, 321, 10, 1e-3, 30, 20)
    assert full.eval_sizes == (153, 321, 513)
    for p in ex.PROFILES.values():
        assert p.eval_sizes[1] == p.crop and p.eval_sizes[0] < p.crop < p.eval_sizes[2]


def test_run_key_depends_on_what_determines_the_result():
    r = ex.Run("deeplabv2")
    k = ex.run_key(r, TINY, "abc")
    assert k == ex.run_key(r, TINY, "abc") and len(k) == 16
    assert k != ex.run_key(r, TINY, "abd")
    assert k != ex.run_key(ex.Run("deeplabv2", seed=1), TINY, "abc")
    import dataclasses
    assert k != ex.run_key(r, dataclasses.replace(TINY, lr=0.02), "abc")
    assert k == ex.run_key(r, dataclasses.replace(TINY, workers=3, seeds=(0, 1)), "abc")


def test_ensure_trains_once_and_caches(dirs, monkeypatch):
    run = ex.Run("deeplabv2", "paper", stage=2)
    res = ex.ensure(run, TINY, device="cpu", progress=False)
    first = ex.ensure(run.stage1(), TINY, device="cpu", progress=False)
    assert res.dir != first.dir and res.dir.parent == dirs / "results" / "runs"
    assert res.config["init_run"] == first.dir.name and res.config["label"] == "DeepLabV2 + SSL"
    assert res.config["run"] == {"model": "deeplabv2", "loss": "paper", "dataset": "lip", "stage": 2, "seed": 0}
    for f in ("config.json", "train_config.json", "provenance.json", "metrics.json", "train_log.csv",
              "checkpoint.pt", "eval/val/per_image_cm.npz"):
        assert (res.dir / f).is_file(), f
    prov = res.provenance
    assert {"git", "packages", "device", "start", "end", "wall_time_s"} <= set(prov)
    assert prov["packages"]["torch"] and prov["device"].startswith("CPU")
    assert load_checkpoint(res.checkpoint)["config"]["init"] == str(first.checkpoint)
    assert list(res.train_log.columns) == ["epoch", "step", "loss", "lr", "images_per_s", "seconds"]
    # The metrics file is the last one written.
    mtimes = {f.name: f.stat().st_mtime_ns for f in res.dir.iterdir() if f.is_file()}
    assert max(mtimes, key=mtimes.get) == "metrics.json"

    # Cached: no training happens again.
    import lipstudy.train
    monkeypatch.setattr(lipstudy.train, "train", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = ex.ensure(run, TINY, device="cpu", progress=False)
    assert again.dir == res.dir and again.evaluation("val").metrics == res.evaluation("val").metrics


def test_interrupted_run_is_not_finished_and_resumes(dirs, capsys):
    run = ex.Run("deeplabv2")
    res = ex.ensure(run, TINY, device="cpu", progress=False)
    weights = load_checkpoint(res.checkpoint)["model"]
    (res.dir / "metrics.json").unlink()  # as if killed before the end
    ex.runs_main([])
    out = capsys.readouterr().out
    assert res.dir.name in out and "interrupted" in out
    again = ex.ensure(run, TINY, device="cpu", progress=False)
    assert (again.dir / "metrics.json").is_file()
    after = load_checkpoint(again.checkpoint)["model"]
    assert all((weights[k] == after[k]).all() for k in weights)  # resumed a finished checkpoint: unchanged
    ex.runs_main(["--profile", "tiny"])
    assert "finished" in capsys.readouterr().out


def test_evaluations(dirs):
    res = ex.ensure(ex.Run("deeplabv2"), TINY, device="cpu", progress=False)
    val = res.evaluation("val")
    assert val.name == "val" and val.classes == LIP_CLASSES and len(val.ids) == 4
    assert val.cms.shape == (4, 20, 20) and val.cms.dtype == np.int64
    assert val.metrics["n_images"] == 4
    test = res.evaluation("test")  # the server's hidden labels
    assert len(test.ids) == 4 and set(test.ids).isdisjoint(val.ids)
    for name in ("val-flip", "val-ms", "val@16"):
        e = res.evaluation(name)
        assert e.cms.sum() == val.cms.sum()  # same pixels scored, at the annotation's size
    assert json.loads((res.dir / "eval" / "val@16" / "metrics.json").read_text())["settings"]["input_size"] == 16
    atr = res.evaluation("atr")
    assert set(atr.metrics["per_class_iou"]) == {LIP_CLASSES[i] for i in ATR_LIP_SHARED}
    with pytest.raises(ValueError, match="unknown evaluation"):
        res.evaluation("train")
    # A fresh RunResult reads the cached evaluation instead of recomputing it.
    again = ex.ensure(ex.Run("deeplabv2"), TINY, device="cpu", progress=False)
    (res.dir / "checkpoint.pt").rename(res.dir / "moved.pt")
    assert np.array_equal(again.evaluation("val-flip").cms, res.evaluation("val-flip").cms)


def test_ppp_ssl_run(dirs):
    res = ex.ensure(ex.ppp_runs()["Attention + SSL"], TINY, device="cpu", progress=False)
    assert res.config["train"]["num_classes"] == 7 and res.config["train"]["loss"] == "paper"
    assert res.evaluation("test").cms.shape[1:] == (7, 7)
    assert np.isfinite(res.train_log["loss"]).all()


def _lip_layout_digest(root) -> str:
    """sha256 over every item's label PNG then JPEG bytes, split by split in id-list order,
    read from the official LIP layout on disk (the test labels sit in the server's folder)."""
    import hashlib

    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        if split == "test":
            ids_file, images, labels = "Testing_images/test_id.txt", "Testing_images/testing_images", \
                "server/test_segmentations"
        else:
            ids_file, images, labels = f"TrainVal_images/{split}_id.txt", f"TrainVal_images/{split}_images", \
                f"TrainVal_parsing_annotations/{split}_segmentations"
        for i in (root / ids_file).read_text().split():
            h.update((root / labels / f"{i}.png").read_bytes())
            h.update((root / images / f"{i}.jpg").read_bytes())
    return h.hexdigest()


def test_data_root_and_locks(dirs, tmp_path, monkeypatch):
    root = ex.data_root(TINY, "lip")
    manifest = root / "manifest.json"
    assert root.parent == dirs / "data" and root.name.startswith("synth-tiny-lip") and manifest.is_file()
    before = (manifest.stat().st_ino, manifest.stat().st_mtime_ns)
    import lipstudy.data.synth
    monkeypatch.setattr(lipstudy.data.synth, "generate", lambda *a, **k: pytest.fail("regenerated the dataset"))
    assert ex.data_root(TINY, "lip") == root
    assert (manifest.stat().st_ino, manifest.stat().st_mtime_ns) == before  # not regenerated, not rewritten
    # The fingerprint is a digest of the images and labels themselves, recomputed here from the files.
    assert json.loads(manifest.read_text())["counts"] == {"train": 8, "val": 4, "test": 4}
    assert ex.data_fingerprint(root) == _lip_layout_digest(root)
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.txt").write_text("x")
    assert ex.data_root(TINY, "lip", data=real) == real
    fp1 = ex.data_fingerprint(real)
    (real / "a.txt").write_text("xy")
    assert ex.data_fingerprint(real) != fp1
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        ex.data_root(TINY, "lip", data=tmp_path / "nope")
    lock = tmp_path / "x.lock"
    assert not ex.is_locked(lock)
    with ex.file_lock(lock):
        assert ex.is_locked(lock)
    assert not ex.is_locked(lock)
