"""lipstudy.store and lipstudy.train_run: run keys (pinned, without side effects), training once and reusing, resume, evaluations, data roots."""
import dataclasses
import json

import numpy as np
import torch
import pytest

from lipstudy import process_pool, runs_cli, store, train_run
from lipstudy.data import roots
from lipstudy.labels import ATR_LIP_SHARED, LIP_CLASSES
from lipstudy.locks import file_lock, is_locked
from lipstudy.profiles import Profile, get_profile
from lipstudy.runs import Run, book_runs, ppp_runs
from lipstudy.runtime import load_checkpoint

TINY = Profile(name="tiny", width=0.0625, crop=32, batch=4, lr=0.01, epochs_stage1=1, epochs_stage2=1,
               lip_data={"train": 8, "val": 4, "test": 4, "max_side": 32},
               ppp_data={"train": 8, "val": 4, "test": 4, "max_side": 32},
               atr_data={"train": 4, "val": 4, "test": 4, "max_side": 32},
               eval_sizes=(16, 32, 51), seeds=(0,), workers=0)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSTUDY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    return tmp_path


# The key of every book run of the smoke and cpu profiles, with the data fingerprints replaced by
# "fp-<dataset>". Recorded anew by the fidelity work (issues 34 and 35), which changed every fine-tuning
# run: no dropout and fc6 / fc7 of at least 128 channels in the cpu heads (no dropout in smoke's),
# Attention without pool5a and with its attention at equal weights, DeepLabV2 and Attention resizing by
# matrix products (models.ARCHITECTURE_VERSIONS), stage 2 at a tenth of the base rate, constant, the
# controls on loss "unit", every method at 3 seeds and DeepLabV2's shuffled-weight control. The
# backbone's key (aef6fb604e613c2e, committed in results/backbones/) is unchanged. A run key names a
# folder of trained weights: a change that alters one must be deliberate (it retrains the run), so it
# must also change this table, with its reason.
PINNED_KEYS = {
    "smoke": {
        "attention/off/lip/1/0": "c7c23cda52385b46",
        "deeplabv2/off/lip/1/0": "42b20d02cf720caf",
        "fcn8s/off/lip/1/0": "8a443bbc81f3b948",
        "segnet/off/lip/1/0": "c72167e34d2c126f",
        "attention/paper/lip/2/0": "54f1d145546adf8b",
        "attention/unit/lip/2/0": "3603017dda8f6705",
        "deeplabv2/paper/lip/2/0": "b12843a5a0edd2e5",
        "deeplabv2/shuffled/lip/2/0": "0e376d004272e9c9",
        "deeplabv2/unit/lip/2/0": "b344f5d605bd80d8",
        "attention/off/ppp/1/0": "aea2789a9e7bc664",
        "deeplabv2/off/ppp/1/0": "a094bfad40b4706c",
        "attention/paper/ppp/2/0": "d21abb8766dbd39a",
        "attention/unit/ppp/2/0": "39189eac8000f9c0",
    },
    "cpu": {
        "attention/off/lip/1/0": "830a6d14447197ea",
        "deeplabv2/off/lip/1/0": "ac0e9d12b4f74cc6",
        "fcn8s/off/lip/1/0": "ad3a9c6223d11c78",
        "segnet/off/lip/1/0": "2cef3bcec17a1bd3",
        "attention/paper/lip/2/0": "47a5bfe2f5a2f24f",
        "attention/unit/lip/2/0": "952d19ebbb9beeaa",
        "deeplabv2/paper/lip/2/0": "ab61e012a3a202e0",
        "deeplabv2/shuffled/lip/2/0": "5b298b4b7921e4df",
        "deeplabv2/unit/lip/2/0": "9baac156535e83c2",
        "attention/off/ppp/1/0": "74fef42faf960262",
        "deeplabv2/off/ppp/1/0": "b7138a2ea47d81fb",
        "attention/paper/ppp/2/0": "24ef4422fea9dc94",
        "attention/unit/ppp/2/0": "6341ac3bf9a52584",
        "attention/off/lip/1/1": "a9141e76066c3169",
        "deeplabv2/off/lip/1/1": "c87216094a3a110a",
        "fcn8s/off/lip/1/1": "3071cbf8ec3f04d3",
        "segnet/off/lip/1/1": "9aacc5fbaca5bc41",
        "attention/paper/lip/2/1": "931fda75b50b8bac",
        "attention/unit/lip/2/1": "4452ca6ea95dc61a",
        "deeplabv2/paper/lip/2/1": "0500eb26baad5a89",
        "deeplabv2/shuffled/lip/2/1": "60ee72bd71fff257",
        "deeplabv2/unit/lip/2/1": "d7612939b1f30562",
        "attention/off/lip/1/2": "b65003221343e67f",
        "deeplabv2/off/lip/1/2": "45aa7efa9ca401fb",
        "fcn8s/off/lip/1/2": "6a2237785384d525",
        "segnet/off/lip/1/2": "263b0d7fec0fc2e1",
        "attention/paper/lip/2/2": "88d8dcf7df3b5f01",
        "attention/unit/lip/2/2": "2306e9edb3a1ded5",
        "deeplabv2/paper/lip/2/2": "99bbff4511b71765",
        "deeplabv2/shuffled/lip/2/2": "8e0ea69be38f0ec8",
        "deeplabv2/unit/lip/2/2": "50faaa862c4eb0d1",
    },
}


def test_run_keys_are_pinned(monkeypatch):
    monkeypatch.setattr(store, "run_data", lambda run, profile, data=None: run.dataset)
    monkeypatch.setattr(store, "data_fingerprint", lambda root: f"fp-{root}")
    for name, pinned in PINNED_KEYS.items():
        prof = get_profile(name)
        ours = {f"{r.model}/{r.loss}/{r.dataset}/{r.stage}/{r.seed}": store.key_plan(r, prof).key
                for r in book_runs(prof)}
        assert ours == pinned, name


def test_run_key_depends_on_what_determines_the_result():
    r = Run("deeplabv2")
    k = store.run_key(r, TINY, "abc")
    assert k == store.run_key(r, TINY, "abc") and len(k) == 16
    assert k != store.run_key(r, TINY, "abd")
    assert k != store.run_key(Run("deeplabv2", seed=1), TINY, "abc")
    assert k != store.run_key(r, TINY, "abc", parent_key="0123")
    assert k != store.run_key(r, dataclasses.replace(TINY, lr=0.02), "abc")
    assert k == store.run_key(r, dataclasses.replace(TINY, workers=3, seeds=(0, 1)), "abc")


def test_a_run_key_changes_exactly_when_what_the_run_computes_changes():
    """What identifies a run is defined once (store.run_settings): a profile change that changes a
    run's TrainConfig beyond the execution fields a resume may change (config.config_changes)
    changes its key, and a change the key ignores changes nothing a resume compares."""
    from lipstudy.config import config_changes
    from lipstudy.runs import BACKBONE

    base = get_profile("cpu")
    changes = {"width": 0.125, "crop": 96, "batch": 5, "lr": 1e-3, "epochs_stage1": 7, "epochs_stage2": 4,
               "recipe": {**base.recipe, "warmup_steps": 7}, "finetune": {"atrous_scale": 0.5},
               "paper_losses": {"aux_structure_weight": True}, "pretrain": {**base.pretrain, "lr": 1e-3},
               "workers": 3, "channels_last": False, "compile": True, "cache_images": False,
               "checkpoint_every_steps": 9, "seeds": (0, 1), "ppp_seeds": (0, 1), "jobs": 3, "shipped": (),
               "stage2_lr": 0.5, "shuffled": ("attention",), "challenge_topup": 7}
    for run in (BACKBONE, Run("deeplabv2"), Run("attention", "paper", stage=2)):
        cfg = store.train_config(run, base, "root", "start")
        key = store.run_key(run, base, "fp", "parent")
        for name, value in changes.items():
            other = dataclasses.replace(base, **{name: value})
            changed = config_changes(cfg.to_dict(), store.train_config(run, other, "root", "start"))
            assert bool(changed) == (store.run_key(run, other, "fp", "parent") != key), (run.label, name, changed)


def test_a_key_has_no_side_effect(dirs):
    """A key is read off the data's manifest: without the data it is an error naming the command
    that generates it, and nothing is generated or written."""
    with pytest.raises(roots.DataMissing, match="lipstudy runs data --profile tiny"):
        store.key_plan(Run("deeplabv2"), TINY)
    with pytest.raises(roots.DataMissing):
        store.finished_key(Run("deeplabv2", "paper", stage=2), TINY)
    assert not (dirs / "data").exists() and not (dirs / "results").exists()


def test_a_key_is_known_before_its_parent_is_trained(dirs):
    """key_plan derives a stage-2 key through its stage-1 key without training anything, and
    that key is the folder ensure() then trains into."""
    ssl = Run("deeplabv2", "paper", stage=2)
    roots.data_root(TINY, "lip")  # the data first: the key reads its fingerprint
    plan = store.key_plan(ssl, TINY)
    assert plan.parent_key == store.key_plan(ssl.stage1(), TINY).key
    assert not (dirs / "results" / "runs").exists()  # nothing trained
    assert store.finished_key(ssl, TINY) is None
    res = train_run.ensure(ssl, TINY, device="cpu", progress=False)
    assert res.dir.name == plan.key and store.finished_key(ssl, TINY) == plan.key


def test_ensure_trains_once_and_caches(dirs, monkeypatch):
    run = Run("deeplabv2", "paper", stage=2)
    res = train_run.ensure(run, TINY, device="cpu", progress=False)
    first = train_run.ensure(run.stage1(), TINY, device="cpu", progress=False)
    assert res.dir != first.dir and res.dir.parent == dirs / "results" / "runs"
    assert res.config["init_run"] == first.dir.name and res.config["label"] == "DeepLabV2 + SSL"
    assert res.config["run"] == {"model": "deeplabv2", "loss": "paper", "dataset": "lip", "stage": 2, "seed": 0}
    for f in ("config.json", "train_config.json", "provenance.json", "metrics.json", "train_log.json",
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
    again = train_run.ensure(run, TINY, device="cpu", progress=False)
    assert again.dir == res.dir and again.evaluation("val").metrics == res.evaluation("val").metrics


def test_interrupted_run_is_not_finished_and_resumes(dirs, capsys):
    run = Run("deeplabv2")
    res = train_run.ensure(run, TINY, device="cpu", progress=False)
    weights = load_checkpoint(res.checkpoint)["model"]
    (res.dir / "metrics.json").unlink()  # as if killed before the end
    runs_cli.runs_main([])
    out = capsys.readouterr().out
    assert res.dir.name in out and "interrupted" in out
    again = train_run.ensure(run, TINY, device="cpu", progress=False)
    assert (again.dir / "metrics.json").is_file()
    after = load_checkpoint(again.checkpoint)["model"]
    assert all((weights[k] == after[k]).all() for k in weights)  # resumed a finished checkpoint: unchanged
    runs_cli.runs_main(["--profile", "tiny"])
    assert "finished" in capsys.readouterr().out


def test_evaluations(dirs):
    res = train_run.ensure(Run("deeplabv2"), TINY, device="cpu", progress=False)
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
    # The challenge top-up (an evaluation-only split of its own; not in a run key): the same run.
    topped = dataclasses.replace(TINY, challenge_topup=2)
    challenge = train_run.ensure(Run("deeplabv2"), topped, device="cpu", progress=False).evaluation(store.CHALLENGE)
    top = roots.data_root(topped, "challenge")
    assert challenge.name == "challenge" and challenge.ids
    assert challenge.ids == (top / "TrainVal_images" / "val_id.txt").read_text().split()
    assert set(challenge.ids).isdisjoint(val.ids) and challenge.cms.shape == (len(challenge.ids), 20, 20)
    # A fresh RunResult reads the cached evaluation instead of recomputing it.
    again = train_run.ensure(Run("deeplabv2"), TINY, device="cpu", progress=False)
    (res.dir / "checkpoint.pt").rename(res.dir / "moved.pt")
    assert np.array_equal(again.evaluation("val-flip").cms, res.evaluation("val-flip").cms)


def test_evaluations_are_named_by_their_folder():
    """Every evaluation of the study and the folder it is kept in, both ways; a combination that is
    no evaluation of the study is refused."""
    named = {store.VAL: "val", store.TEST: "test", store.ATR: "atr", store.VAL_FLIP: "val-flip",
             store.VAL_MS: "val-ms", store.Evaluation(size=61): "val@61", store.CHALLENGE: "challenge"}
    for ev, name in named.items():
        assert ev.name == name and store.Evaluation.named(name) == ev
    for bad in ({"split": "test", "challenge": True}, {"split": "test", "atr": True, "challenge": True},
                {"challenge": True, "size": 64}, {"challenge": True, "flip": True}, {"split": "train"}):
        with pytest.raises(ValueError, match="not an evaluation of this study"):
            store.Evaluation(**bad)


def test_the_data_step_generates_what_the_products_read(dirs, monkeypatch):
    """process_pool.ensure_all generates, before anything else, the data of the products it is asked
    for (the challenge top-up, after the LIP split it tops up, as ATR's test split), then makes them."""
    topped = dataclasses.replace(TINY, challenge_topup=2)
    made = []

    def install(prof, *args, **kwargs):  # the step after the data's: what is generated by then
        made.extend(ds for ds in ("challenge", "atr") if (roots.synthetic_root(prof, ds) / "manifest.json").is_file())
        return {}

    monkeypatch.setattr(process_pool.committed, "install", install)
    run = Run("deeplabv2")
    assert process_pool.ensure_all([run], topped, device="cpu", products={run: [store.CHALLENGE, store.ATR]},
                                   log=lambda *a: None) == 1
    assert made == ["challenge", "atr"]  # both there before the committed runs and the tasks
    assert store.CHALLENGE.made(store.load_result(run, topped).dir)


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
    root = roots.data_root(TINY, "lip")
    manifest = root / "manifest.json"
    assert root.parent == dirs / "data" and root.name.startswith("synth-tiny-lip") and manifest.is_file()
    before = (manifest.stat().st_ino, manifest.stat().st_mtime_ns)
    import lipstudy.data.synth
    monkeypatch.setattr(lipstudy.data.synth, "generate", lambda *a, **k: pytest.fail("regenerated the dataset"))
    assert roots.data_root(TINY, "lip") == root
    assert (manifest.stat().st_ino, manifest.stat().st_mtime_ns) == before  # not regenerated, not rewritten
    # The fingerprint is a digest of the images and labels themselves, recomputed here from the files.
    assert json.loads(manifest.read_text())["counts"] == {"train": 8, "val": 4, "test": 4}
    assert roots.data_fingerprint(root) == _lip_layout_digest(root)
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.txt").write_text("x")
    assert roots.data_root(TINY, "lip", data=real) == real
    fp1 = roots.data_fingerprint(real)
    (real / "a.txt").write_text("xy")
    assert roots.data_fingerprint(real) != fp1
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        roots.data_root(TINY, "lip", data=tmp_path / "nope")
    lock = tmp_path / "x.lock"
    assert not is_locked(lock)
    with file_lock(lock):
        assert is_locked(lock)
    assert not is_locked(lock)


def test_ppp_ssl_run_trains_with_the_structure_loss_on_six_joints(dirs, monkeypatch):
    """Stage 2 on PASCAL-Person-Part trains with the "paper" structure-sensitive loss through the
    LIP joint view (20-channel logits, joint weights from the part centres); its stage-1 run with
    plain cross-entropy on 7 classes."""
    import lipstudy.losses as losses

    calls = []
    real = losses.structure_sensitive_loss

    def spy(logits, target, mode="paper", **kw):
        out = real(logits, target, mode=mode, return_terms=True, **{k: v for k, v in kw.items() if k != "return_terms"})
        calls.append((mode, logits.shape[1], out[1]))
        return out[0]

    monkeypatch.setattr(losses, "structure_sensitive_loss", spy)
    res = train_run.ensure(ppp_runs()["Attention + SSL"], TINY, device="cpu", progress=False)
    assert res.config["train"]["num_classes"] == 7 and res.config["train"]["loss"] == "paper"
    assert res.evaluation("test").cms.shape[1:] == (7, 7)
    stage1 = [c for c in calls if c[0] == "off"]
    stage2 = [c for c in calls if c[0] == "paper"]
    assert len(stage1) == len(stage2) == 2  # 8 images / batch 4, one epoch each
    assert all(channels == 7 for _, channels, _ in stage1)
    assert all(channels == 20 for _, channels, _ in stage2)
    # the joints of the parts weigh the loss: not all zero (a zero weight would stop learning)
    assert any(float(lj.sum()) > 0 for _, _, lj in stage2)


def test_prepared_run_folders_train_under_the_cli_and_the_book_finishes_them(dirs, capsys):
    """The README's several-GPU recipe: `lipstudy runs --prepare` writes each unfinished run's
    train_config.json in training order; `lipstudy train --config ... --out <folder>` (what each
    torchrun process runs) trains it there; ensure() then evaluates and finishes it without
    training again."""
    from lipstudy.runs import with_ancestors
    from lipstudy.train import main as train_main

    folders = train_run.prepare_runs(TINY)
    order = with_ancestors(book_runs(TINY), TINY)
    assert [f.name for f in folders] == [store.key_plan(r, TINY).key for r in order]
    dl, ssl = Run("deeplabv2"), Run("deeplabv2", "paper", stage=2)
    folder = dirs / "results" / "runs" / store.key_plan(dl, TINY).key
    cfg = json.loads((folder / "train_config.json").read_text())
    assert cfg["device"] == "auto" and cfg["init"] is None and cfg["loss"] == "off"
    ssl_cfg = json.loads((dirs / "results" / "runs" / store.key_plan(ssl, TINY).key / "train_config.json").read_text())
    assert ssl_cfg["init"] == str(folder / "checkpoint.pt") and ssl_cfg["loss"] == "paper"

    assert train_main(["--config", str(folder / "train_config.json"), "--out", str(folder), "--no-progress"]) == 0
    log = (folder / "train_log.json").read_text()
    weights = load_checkpoint(folder / "checkpoint.pt")["model"]
    res = train_run.ensure(dl, TINY, device="cpu", progress=False)
    assert res.dir == folder and store.is_finished(folder)
    assert (folder / "train_log.json").read_text() == log  # not trained again
    after = load_checkpoint(folder / "checkpoint.pt")["model"]
    assert all(torch.equal(weights[k], after[k]) for k in weights)
    assert folder not in train_run.prepare_runs(TINY)  # finished: not prepared again
    with pytest.raises(SystemExit):
        runs_cli.runs_main(["--prepare"])  # which profile?
