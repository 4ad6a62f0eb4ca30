"""lipstudy.checkpoints: every checkpoint is read without running code from it (a pickle that would
create a file, handed to each reader and to ``lipstudy parse``, creates nothing), a file that is not
a lipstudy checkpoint is refused by name before a network is built, checkpoints of the old format
(numpy's RNG state pickled as an array) still load and resume bit for bit, and the RNG state is
kept as tensors."""
import dataclasses
import io
import os
import random
import shlex
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lipstudy.checkpoints import (check_weights, expected_tensors, load_backbone, load_checkpoint, model_from_checkpoint,
                                  rng_state, set_rng_state)
from lipstudy.config import TrainConfig
from lipstudy.models import build_model
from lipstudy.paths import REAL_SAMPLES
from lipstudy.train import train
from test_train import REPO, tiny_config, write_tiny_lip

WIDTH = 0.0625


class Touch:
    """What an attacker pickles: unpickling it runs ``touch <marker>`` (torch.load with
    ``weights_only=False`` calls os.system)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def slim(model: str = "deeplabv2", **config) -> dict:
    cfg = TrainConfig(model=model, width=WIDTH, **config)
    torch.manual_seed(0)
    return {"model": build_model(model, width=WIDTH, batch_norm=cfg.batch_norm).state_dict(),
            "config": cfg.to_dict(), "slim": True}


def evil_checkpoint(path: Path, marker: Path, where: str = "field") -> Path:
    """A checkpoint with every field a lipstudy checkpoint has, and a payload that creates ``marker``
    when unpickled: beside the fields, inside the config, or as a weight."""
    ckpt = slim()
    if where == "field":
        ckpt["slim"] = Touch(marker)
    elif where == "config":
        ckpt["config"]["data_root"] = Touch(marker)
    else:
        ckpt["model"]["backbone.stages.0.0.weight"] = Touch(marker)
    torch.save(ckpt, path)
    return path


@pytest.fixture
def tiny_run(tmp_path):
    root = write_tiny_lip(tmp_path / "d")
    cfg = tiny_config(root, epochs=1, dropout=0.5)
    return root, cfg, train(cfg, tmp_path / "run", progress=False)


@pytest.mark.parametrize("where", ["field", "config", "weight"])
def test_a_pickle_that_would_run_code_is_refused_by_every_reader(tmp_path, where):
    from lipstudy.export import slim_checkpoint

    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker, where)
    readers = {"load_checkpoint": load_checkpoint, "model_from_checkpoint": model_from_checkpoint,
               "slim_checkpoint (re-export)": slim_checkpoint,
               "load_backbone": lambda p: load_backbone(build_model("deeplabv2", width=WIDTH), p)}
    for name, read in readers.items():
        with pytest.raises(ValueError, match=r"evil\.pt: .*(refused|not a readable pretraining)") as err:
            read(evil)
        assert "posix.system" in str(err.value) or "os.system" in str(err.value), name
        assert not marker.exists(), f"{name} ran the pickle's code"


def test_lipstudy_parse_handed_a_code_running_pickle_exits_non_zero_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker)
    photo = sorted(REAL_SAMPLES.glob("*_*.jpg"))[0]
    done = subprocess.run([sys.executable, "-m", "lipstudy.cli", "parse", str(photo), "--checkpoint", str(evil),
                           "--out", str(tmp_path / "out"), "--device", "cpu"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"lipstudy parse: {evil}: refused" in done.stderr and "posix.system" in done.stderr
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # The evaluation command reads checkpoints the same way.
    from lipstudy.evaluate import main as evaluate_main

    assert evaluate_main(["--checkpoint", str(evil), "--data", str(tmp_path), "--workers", "0"]) == 2
    assert not marker.exists()


def _zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _saved(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not a checkpoint") and p, r"not a readable checkpoint \(not torch's zip format"),
    (lambda p: _saved(slim()["model"], p), r"not a lipstudy checkpoint \(no 'model' / 'config'\)"),
    (lambda p: _saved({**slim(), "notes": "hi"}, p), r"unknown fields: notes"),
    (lambda p: _saved({**slim(), "config": {**slim()["config"], "colour": 1}}, p), r"unknown TrainConfig fields: colour"),
    (lambda p: _saved({**slim(), "config": {**slim()["config"], "width": "wide"}}, p), r"width='wide'"),
    (lambda p: _saved({**slim(), "model": {"w": [1.0]}}, p), r"not a state dict of named tensors"),
    (lambda p: _saved({**slim(), "slim": np.arange(3, dtype=np.uint32)}, p), r"holds a numpy\.ndarray"),
    (lambda p: _saved({**slim(), "slim": np.array([1, "a"], dtype=object)}, p), r"refused: .*ObjectDType"),
    (lambda p: _saved({**slim(), "slim": io.BytesIO()}, p), r"refused: .*_io\.BytesIO"),
])
def test_a_file_that_is_not_a_lipstudy_checkpoint_is_refused_naming_it(tmp_path, make, message):
    path = make(tmp_path / "thing.pt")
    with pytest.raises(ValueError, match=message) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ")


def test_a_compressed_record_is_refused_before_torch_inflates_it(tmp_path):
    """torch reads deflated zip records, inflated to the size the record declares: a few kilobytes
    can declare gigabytes. torch.save stores its records, so a compressed one is refused."""
    plain = _saved(slim(), tmp_path / "plain.pt")
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in _zip_members(plain).items():
            z.writestr(name, blob)
    assert torch.load(packed, weights_only=True)["slim"]  # torch itself would read it
    with pytest.raises(ValueError, match=r"packed\.pt: not a lipstudy checkpoint \(compressed record"):
        load_checkpoint(packed)


def test_weights_of_another_network_are_refused_before_it_is_built(tmp_path):
    ckpt = slim()
    name = "backbone.stages.0.0.weight"
    ckpt["model"][name] = ckpt["model"][name][:, :2].clone()  # the right name, the wrong shape
    path = _saved(ckpt, tmp_path / "shapes.pt")
    with pytest.raises(ValueError, match=rf"shapes\.pt: its weights are not those of the network its config builds "
                                         rf"\(deeplabv2, width 0\.0625, 20 classes\): wrong {name} \(8, 2, 3, 3\)"):
        model_from_checkpoint(path)
    other = slim("fcn8s")
    other["config"] = slim()["config"]  # FCN-8s weights under DeepLabV2's config
    with pytest.raises(ValueError, match=r"missing .*; unexpected "):
        model_from_checkpoint(_saved(other, tmp_path / "other.pt"))
    cfg = TrainConfig(model="deeplabv2", width=WIDTH)
    check_weights(slim()["model"], expected_tensors(cfg), cfg, "ok")  # the right ones pass


def test_a_training_checkpoint_holds_no_pickled_type_beyond_torchs_own(tiny_run):
    _, _, path = tiny_run
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    ckpt = load_checkpoint(path)
    assert ckpt["rng"]["numpy"]["key"].dtype == torch.int64 and ckpt["rng"]["numpy"]["key"].shape == (624,)


def test_the_rng_state_restores_every_generator():
    np.random.seed(3)
    np.random.standard_normal()  # numpy now holds a cached Gaussian (has_gauss = 1)
    random.seed(4)
    torch.manual_seed(5)
    state = rng_state()
    assert state["numpy"]["has_gauss"] == 1
    drawn = (torch.rand(3), np.random.standard_normal(2), np.random.random(), random.random())
    buf = io.BytesIO()
    torch.save(state, buf)
    set_rng_state(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    again = (torch.rand(3), np.random.standard_normal(2), np.random.random(), random.random())
    assert torch.equal(drawn[0], again[0]) and np.array_equal(drawn[1], again[1]) and drawn[2:] == again[2:]


def _as_legacy(path: Path) -> None:
    """Rewrite a checkpoint as the trainer wrote them before its RNG state was tensors: numpy's own
    state tuple, with its uint32 key array."""
    ckpt = load_checkpoint(path)
    n = ckpt["rng"]["numpy"]
    ckpt["rng"]["numpy"] = ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    torch.save(ckpt, path)


def test_an_old_checkpoint_loads_and_resumes_bit_for_bit(tmp_path):
    root = write_tiny_lip(tmp_path / "d", n_train=12)
    cfg = tiny_config(root, epochs=2, dropout=0.5)  # dropout draws from torch's generator
    whole = load_checkpoint(train(cfg, tmp_path / "whole", progress=False))
    cut = train(dataclasses.replace(cfg, max_steps=4), tmp_path / "cut", progress=False)
    _as_legacy(cut)
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(cut)
    old = load_checkpoint(cut)
    assert old["step"] == 4 and old["rng"]["numpy"]["key"].dtype == torch.int64
    resumed = load_checkpoint(train(cfg, tmp_path / "cut", progress=False))
    assert resumed["step"] == whole["step"] == 6
    assert all(torch.equal(whole["model"][k], resumed["model"][k]) for k in whole["model"])
    # The numpy state converted from the legacy tuple draws what the tuple draws.
    legacy = ("MT19937", np.random.RandomState(7).get_state()[1], 5, 1, 0.25)
    np.random.set_state(legacy)
    expected = np.random.standard_normal(3)
    torch.save({**slim(), "rng": {**rng_state(), "numpy": legacy}}, tmp_path / "legacy.pt")
    set_rng_state(load_checkpoint(tmp_path / "legacy.pt")["rng"])
    assert np.array_equal(np.random.standard_normal(3), expected)


def test_the_committed_slim_checkpoints_load(tmp_path):
    """The slim checkpoints of results/backbones/ and results/shipped/ load under these rules and
    rebuild their networks (importing those bundles whole: tests/test_bundle_reader.py)."""
    bundles = sorted(p for d in ("backbones", "shipped") for p in (REPO / "results" / d).glob("*.tar.xz"))
    assert len(bundles) >= 1  # the backbone (the cpu profile ships no runs)
    for bundle in bundles:
        with tarfile.open(bundle) as tar:
            (member,) = [m for m in tar if m.name.endswith("/checkpoint.pt")]
            (tmp_path / "checkpoint.pt").write_bytes(tar.extractfile(member).read())
        model, cfg = model_from_checkpoint(tmp_path / "checkpoint.pt")
        assert cfg.width == WIDTH and not model.training, bundle.name
