"""The committed synthetic backbone (lipstudy.backbones): it is the cpu profiles' backbone, a build
imports it instead of training, a stage-1 run from it is the run from the backbone trained here,
and anything that does not match trains the backbone here instead."""
import dataclasses
import io
import tarfile

import pytest
import torch

from lipstudy import backbones, cache, schedule
from lipstudy.bundles import read_bundle
from lipstudy.data.roots import synthetic_root
from lipstudy.checkpoints import load_backbone, load_checkpoint
from lipstudy.models import build_model
from lipstudy.profiles import PROFILES, get_profile
from lipstudy.runs import BACKBONE, Run
from test_pretrain import TINY as PRETRAIN_TINY

TINY = dataclasses.replace(PRETRAIN_TINY, name="tinybackbone")  # a profile with a synthetic backbone
STAGE1 = Run("deeplabv2")


def _committed_cpu_backbone():
    files = sorted(backbones.committed_backbone("x").parent.glob("*.tar.xz"))
    assert len(files) == 1, f"expected one committed backbone, found {files}"
    return files[0]


def test_the_committed_backbone_is_the_one_the_cpu_profiles_start_from(monkeypatch, tmp_path):
    """Its key, recomputed from this checkout's settings and engine (with the pretraining split's
    fingerprint it records, so that nothing is generated here), is the one its file is named by:
    a change to the cpu pretraining settings makes it stale, and this test says so."""
    path = _committed_cpu_backbone()
    manifest, members = read_bundle(path, tmp_path)  # streamed into tmp_path, within the cpu profile's limits
    assert manifest["profile"] == "cpu" and set(manifest["datasets"]) == {"pretrain"}
    assert [r["run"]["dataset"] for r in manifest["runs"]] == ["pretrain"]
    recorded = manifest["datasets"]["pretrain"]
    monkeypatch.setattr(cache, "run_data", lambda run, profile, data=None: synthetic_root(profile, run.dataset))
    monkeypatch.setattr(cache, "data_fingerprint", lambda root: recorded)
    for name in ("cpu", "cpu-short", "cpu-long"):  # one backbone for the family
        key = cache.key_plan(BACKBONE, get_profile(name)).key
        assert backbones.committed_backbone(key) == path, name
    assert manifest["runs"][0]["key"] == path.name.removesuffix(".tar.xz")
    # Its weights fit the cpu profile's networks (width 1/16, batch norm).
    file = members[f"runs/{manifest['runs'][0]['key']}/checkpoint.pt"]
    ckpt = load_checkpoint(file)
    assert ckpt["slim"] and set(ckpt) == {"model", "config", "slim"}
    net = build_model("deeplabv2", width=get_profile("cpu").width, batch_norm=True)
    load_backbone(net, file)  # raises when it does not fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """TINY's backbone and a stage-1 run from it, trained here, and the backbone's committed file."""
    base = tmp_path_factory.mktemp("backbones")
    mp = pytest.MonkeyPatch()
    mp.setitem(PROFILES, TINY.name, TINY)
    mp.setenv("LIPSTUDY_DATA", str(base / "data"))
    mp.setenv("LIPSTUDY_RESULTS", str(base / "trained"))
    mp.setattr(backbones, "committed_results", lambda name: base / "committed" / name)
    stage1 = cache.ensure(STAGE1, TINY, device="cpu", progress=False)
    path = backbones.export_backbone(TINY, log=lambda *a: None)
    yield {"base": base, "stage1": stage1, "path": path, "mp": mp}
    mp.undo()


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def test_a_build_imports_the_backbone_and_its_runs_are_the_same(trained, monkeypatch):
    """A results folder without the backbone imports it (once), trains no backbone, and trains the
    stage-1 run to exactly the weights it had from the backbone trained in place."""
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(trained["base"] / "fresh"))
    lines = []
    assert trained["path"].name == cache.key_plan(BACKBONE, TINY).key + ".tar.xz"
    assert backbones.install(TINY, log=lines.append) == "imported"
    assert backbones.install(TINY, log=lines.append) == "finished"
    origin = backbones.origin(TINY)
    assert origin["imported"] == trained["path"].name and origin["key"] == cache.key_plan(BACKBONE, TINY).key
    # The scheduler (what `make book` trains through) then has only the stage-1 run to train.
    tasks, _ = schedule.pending_tasks([STAGE1], TINY)
    assert list(tasks) == [STAGE1]
    res = cache.ensure(STAGE1, TINY, device="cpu", progress=False)
    assert res.dir.name == trained["stage1"].dir.name
    ours, theirs = _weights(res.dir), _weights(trained["stage1"].dir)
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_ensure_all_imports_the_backbone_before_it_plans(trained, monkeypatch):
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(trained["base"] / "scheduled"))
    assert schedule.ensure_all([BACKBONE], TINY, device="cpu") == 0  # nothing left to train
    assert backbones.origin(TINY)["imported"] == trained["path"].name


def test_what_does_not_match_trains_the_backbone_here(trained, monkeypatch, tmp_path):
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    lines = []
    monkeypatch.setenv(backbones.TRAIN_ENV, "1")
    assert backbones.install(TINY, log=lines.append) == "train" and backbones.TRAIN_ENV in lines[-1]
    monkeypatch.setenv(backbones.TRAIN_ENV, "0")  # "0" means no
    # Other settings: another key, no file of that key.
    other = dataclasses.replace(TINY, name="tinybackbone2", lr=3e-3)
    monkeypatch.setitem(PROFILES, other.name, other)
    assert backbones.install(other, log=lines.append) == "train"
    assert "no committed backbone of key" in lines[-1]
    # A damaged file is refused, by name, and nothing is imported.
    with tarfile.open(trained["path"]) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    damaged = tmp_path / "damaged.tar.xz"
    with tarfile.open(damaged, "w:xz") as tar:
        for info, blob in members:
            if info.name.endswith("checkpoint.pt"):
                blob = blob[:-1] + bytes([blob[-1] ^ 1])
            tar.addfile(info, io.BytesIO(blob))
    monkeypatch.setattr(backbones, "committed_backbone", lambda key: damaged)
    assert backbones.install(TINY, log=lines.append) == "train"
    assert "refused" in lines[-1] and "corrupt" in lines[-1] and "checkpoint.pt" in lines[-1]
    assert backbones.origin(TINY) is None
    with pytest.raises(ValueError, match="no synthetic pretraining"):
        backbones.export_backbone(PROFILES["smoke"])
    assert backbones.install("smoke") == "none"
