import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lipstudy.evaluate import predict_logits
from lipstudy.models import build_model
from lipstudy.batches import ShardedBatches
from lipstudy.config import TrainConfig, build_network, config_changes, parse_bool
from lipstudy.runtime import load_checkpoint, precision_plan
from lipstudy.train import classifier_parameter_names, main, make_optimizer, poly_lr, train

REPO = Path(__file__).resolve().parents[1]
# Distinct colours per class so that a tiny network can learn the mapping pixel by pixel.
CLASS_COLOURS = {0: (20, 20, 20), 2: (240, 200, 40), 5: (220, 30, 30), 9: (30, 30, 220),
                 14: (30, 200, 30), 15: (200, 30, 200)}


def write_tiny_lip(root: Path, n_train=8, n_val=4, n_test=2, size=(40, 32), seed=0) -> Path:
    """A small LIP dataset in the flat layout: blocky 'people' whose parts have fixed colours."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        (root / f"{split}_images").mkdir(parents=True, exist_ok=True)
        if split != "test":
            (root / f"{split}_segmentations").mkdir(exist_ok=True)
        ids = []
        for k in range(n):
            label = np.zeros((h, w), np.uint8)
            x0 = int(rng.integers(2, w // 2 - 4))
            y0 = int(rng.integers(1, 6))
            label[y0:y0 + 6, x0 + 4:x0 + 10] = 2
            label[y0 + 6:y0 + 18, x0 + 3:x0 + 11] = 5
            label[y0 + 6:y0 + 16, x0:x0 + 3] = 15   # the person's right arm is on the image's left
            label[y0 + 6:y0 + 16, x0 + 11:x0 + 14] = 14
            label[y0 + 18:h - 2, x0 + 3:x0 + 11] = 9
            image = np.zeros((h, w, 3), np.uint8)
            for c, col in CLASS_COLOURS.items():
                image[label == c] = col
            image = np.clip(image.astype(int) + rng.integers(-10, 11, image.shape), 0, 255).astype(np.uint8)
            i = f"{split}{k:03d}"
            ids.append(i)
            Image.fromarray(image).save(root / f"{split}_images" / f"{i}.jpg", quality=95)
            if split != "test":
                Image.fromarray(label).save(root / f"{split}_segmentations" / f"{i}.png")
        (root / f"{split}_id.txt").write_text("\n".join(ids) + "\n")
    return root


def tiny_config(root, **kw) -> TrainConfig:
    base = dict(model="deeplabv2", width=0.0625, dropout=0.0, data_root=str(root), epochs=2, batch_size=4,
                crop=32, lr=0.01, device="cpu", workers=0)
    base.update(kw)
    return TrainConfig(**base)


def test_sharded_batches_partition_the_global_batch():
    single = list(ShardedBatches(23, 10, seed=3, epoch=1))
    assert len(single) == 2  # the last incomplete batch is dropped
    r0 = list(ShardedBatches(23, 10, seed=3, epoch=1, rank=0, world=2))
    r1 = list(ShardedBatches(23, 10, seed=3, epoch=1, rank=1, world=2))
    for s, a, b in zip(single, r0, r1):
        assert s == a + b and len(a) == 5
    assert all(e == 1 for batch in single for e, _ in batch)
    assert len({i for batch in single for _, i in batch}) == 20
    other = [i for batch in ShardedBatches(23, 10, seed=3, epoch=2) for _, i in batch]
    assert other != [i for batch in single for _, i in batch]
    resumed = list(ShardedBatches(23, 10, seed=3, epoch=1, start=1))
    assert resumed == single[1:]
    with pytest.raises(ValueError, match="not divisible"):
        ShardedBatches(23, 10, 0, 0, world=3)


def test_poly_lr_and_classifier_multiplier():
    assert poly_lr(1e-3, 0, 100, 0.9) == 1e-3
    assert poly_lr(1e-3, 50, 100, 0.9) == pytest.approx(1e-3 * 0.5 ** 0.9)
    assert poly_lr(1e-3, 100, 100, 0.9) == 0.0
    cfg = TrainConfig(model="deeplabv2", width=0.0625)
    model = build_network(cfg)
    names = classifier_parameter_names(model)
    assert names and all(".fc8." in n for n in names)
    opt = make_optimizer(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-2]
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["weight_decay"] == 0.0005
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))


def test_paper_defaults():
    c = TrainConfig()
    assert (c.batch_size, c.crop, c.epochs, c.momentum, c.weight_decay) == (10, 321, 30, 0.9, 0.0005)
    assert (c.lr, c.lr_power, c.classifier_lr_mult, c.scale_min, c.scale_max) == (1e-3, 0.9, 10.0, 0.6, 1.4)
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="bogus")
    with pytest.raises(ValueError, match="unknown TrainConfig fields: colour"):
        TrainConfig.from_dict({"colour": 1})


def test_overfits_a_few_images(tmp_path):
    root = write_tiny_lip(tmp_path / "d", n_train=4)
    cfg = tiny_config(root, model="segnet", epochs=30, batch_size=4, lr=0.2, scale_min=1.0,
                      scale_max=1.0, flip=False)
    train(cfg, tmp_path / "run", progress=False)
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert len(log) == 30 and [r["step"] for r in log] == list(range(1, 31))
    first, last = log[0]["loss"], min(r["loss"] for r in log[-5:])
    # From chance level (ln 20 = 3.0) to below a third of it in 30 steps: well under the
    # background-only floor (~1.2 on these images), so the parts are being learnt.
    assert first == pytest.approx(np.log(20), abs=0.1)
    assert last < first / 3, (first, last)
    assert all(list(r) == ["epoch", "step", "loss", "lr", "images_per_s", "seconds"] for r in log)
    assert not (tmp_path / "run" / "train_log.csv").exists()  # one log format


def test_resume_refuses_changed_config(tmp_path):
    root = write_tiny_lip(tmp_path / "d")
    cfg = tiny_config(root, epochs=1)
    train(cfg, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["finished"] and ckpt["step"] == 2
    changed = tiny_config(root, epochs=1, lr=0.02, batch_size=2, workers=1)
    assert config_changes(ckpt["config"], changed) == ["batch_size: 4 -> 2", "lr: 0.01 -> 0.02"]
    with pytest.raises(ValueError, match=r"config changed: batch_size: 4 -> 2; lr: 0.01 -> 0.02"):
        train(changed, tmp_path / "run", progress=False)
    # Execution settings may change on resume; a finished run is simply returned.
    before = ckpt["model"]
    train(tiny_config(root, epochs=1, workers=1), tmp_path / "run", progress=False)
    after = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


_KILL_SCRIPT = """
import os, signal, sys
from lipstudy.config import TrainConfig
from lipstudy.train import train
cfg = TrainConfig(**{cfg})
kill_at = int(sys.argv[2])
def on_step(step):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
train(cfg, sys.argv[1], progress=False, on_step=on_step if kill_at > 0 else None)
"""


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    root = write_tiny_lip(tmp_path / "d", n_train=16)
    # deeplabv2 with dropout on: the resumed run must restore the RNG to draw the same masks.
    cfg = dict(model="deeplabv2", width=0.0625, dropout=0.5, data_root=str(root), epochs=3, batch_size=4,
               crop=24, lr=0.01, device="cpu", workers=0, checkpoint_every_steps=3)
    script = tmp_path / "run_train.py"
    script.write_text(_KILL_SCRIPT.replace("{cfg}", repr(cfg)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(out, kill_at):
        return subprocess.run([sys.executable, str(script), str(out), str(kill_at)], env=env,
                              capture_output=True, text=True, timeout=300)

    ref = run(tmp_path / "ref", 0)
    assert ref.returncode == 0, ref.stderr
    # 4 steps per epoch, checkpoints at steps 3, 4 (epoch end), 6, 8, ...: killed after step 7,
    # the run restarts from step 6, in the middle of epoch 2.
    killed = run(tmp_path / "cut", 7)
    assert killed.returncode == -9, killed.stderr
    ck = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (ck["step"], ck["epoch"], ck["step_in_epoch"], ck["finished"]) == (6, 1, 2, False)
    resumed = run(tmp_path / "cut", 0)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "ref" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert a["step"] == b["step"] == 12
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["loss"] for r in a["log"]] == [r["loss"] for r in b["log"]]
    assert len(json.loads((tmp_path / "cut" / "train_log.json").read_text())) == 3


_DDP_SCRIPT = """
import sys
from lipstudy.config import TrainConfig
from lipstudy.train import train
train(TrainConfig(**{cfg}), sys.argv[1], progress=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
    root = write_tiny_lip(tmp_path / "d", n_train=20)
    # DeepLabV2 (VGG-16) has no batch norm; dropout 0 and no padding (scale 1, crop <= image)
    # make the two runs compute the same mean gradient.
    cfg = dict(model="deeplabv2", width=0.0625, dropout=0.0, data_root=str(root), epochs=2, batch_size=10,
               crop=32, scale_min=1.0, scale_max=1.0, lr=0.01, device="cpu", workers=0)
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT.replace("{cfg}", repr(cfg)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    # The README's line, as a lab starts it: torchrun, `lipstudy train --config <run>/train_config.json`
    # (the gloo backend on a CPU); only the port is chosen, so that test workers do not collide.
    config = tmp_path / "train_config.json"
    config.write_text(json.dumps(TrainConfig(**cfg).to_dict()))
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={_free_port()}", "-m", "lipstudy.cli", "train", "--config", str(config),
                          "--out", str(tmp_path / "two"), "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert b["world_size"] == 2 and a["step"] == b["step"] == 4
    # the global batch is the config's (each process took 5 of its 10 images): same steps, same lr
    assert b["config"]["batch_size"] == 10 and [r["lr"] for r in a["log"]] == [r["lr"] for r in b["log"]]
    changed = 0
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-6), k
    init = TrainConfig(**cfg)
    torch.manual_seed(init.seed)
    fresh = build_network(init).state_dict()
    changed = sum(not torch.equal(fresh[k], a["model"][k]) for k in a["model"])
    assert changed > len(a["model"]) // 2  # training moved the weights: the match is not vacuous
    assert a["log"][0]["loss"] == pytest.approx(b["log"][0]["loss"], rel=1e-5)


def test_stage2_init_and_cli(tmp_path, capsys):
    root = write_tiny_lip(tmp_path / "d")
    stage1 = train(tiny_config(root, epochs=1), tmp_path / "s1", progress=False)
    cfg = tiny_config(root, epochs=1, loss="paper", init=str(stage1))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    assert main(["--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "s2"), "--no-progress"]) == 0
    s2 = load_checkpoint(tmp_path / "s2" / "checkpoint.pt")
    assert s2["config"]["loss"] == "paper" and s2["config"]["init"] == str(stage1)
    # A changed option on the command line is refused on resume, naming the field.
    rc = main(["--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "s2"), "--lr", "0.5",
               "--no-progress"])
    assert rc == 2 and "lr: 0.01 -> 0.5" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x"), "--data-root", str(tmp_path / "missing"), "--no-progress"]) == 2


def test_too_few_images_is_a_clear_error(tmp_path):
    root = write_tiny_lip(tmp_path / "d", n_train=2)
    with pytest.raises(ValueError, match="fewer than one batch of 4"):
        train(tiny_config(root), tmp_path / "run", progress=False)


def test_divergence_stops_with_a_clear_error(tmp_path):
    root = write_tiny_lip(tmp_path / "d")
    with pytest.raises(FloatingPointError, match="diverged; lower the learning rate"):
        train(tiny_config(root, lr=1e6, epochs=3), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists() or \
        all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"].values()
            if v.is_floating_point())


def test_precision_plan_defaults_and_overrides():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    # The defaults: fp32 NCHW on the CPU, bf16 NHWC on CUDA (the full profile).
    assert precision_plan(cpu) == precision_plan(cpu, "off", False)
    assert precision_plan(cpu).autocast_dtype is None and not precision_plan(cpu).channels_last
    assert precision_plan(cuda).autocast_dtype == torch.bfloat16 and precision_plan(cuda).channels_last
    # Forcing each on the CPU (how the CUDA paths are tested here), or off on CUDA.
    assert precision_plan(cpu, "bf16", True) == precision_plan(cuda)
    assert not precision_plan(cuda, "off", False).autocast and not precision_plan(cuda, "off", False).channels_last
    with pytest.raises(ValueError, match="amp must be one of"):
        precision_plan(cpu, "fp16")
    with pytest.raises(ValueError, match="amp must be one of"):
        TrainConfig(amp="half")


def test_old_checkpoint_without_new_fields_still_resumes():
    # A checkpoint written before amp / channels_last existed ran with their defaults.
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("amp", "channels_last")}
    assert config_changes(old, TrainConfig()) == []
    assert config_changes(old, TrainConfig(channels_last=True)) == []  # layout: execution only
    assert config_changes(old, TrainConfig(amp="bf16")) == ["amp: 'auto' -> 'bf16'"]


def test_bf16_channels_last_training_path_runs_on_cpu(tmp_path):
    """The CUDA code path (autocast bf16 + channels_last), run on the CPU: same schedule, and the
    first step's loss within bf16 rounding of the fp32 run's."""
    root = write_tiny_lip(tmp_path / "d", n_train=8)
    logs = {}
    for name, kw in (("fp32", {}), ("bf16", {"amp": "bf16", "channels_last": True})):
        train(tiny_config(root, epochs=3, **kw), tmp_path / name, progress=False)
        logs[name] = json.loads((tmp_path / name / "train_log.json").read_text())
    a, b = logs["fp32"], logs["bf16"]
    assert [r["step"] for r in a] == [r["step"] for r in b] == [2, 4, 6]
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    assert all(np.isfinite(r["loss"]) for r in b)
    # bf16 keeps 8 bits of mantissa: the epoch-1 mean loss agrees to ~1% (not bit for bit).
    assert b[0]["loss"] == pytest.approx(a[0]["loss"], rel=0.02)
    assert a[0]["loss"] != b[0]["loss"]  # autocast really ran in bf16
    w = load_checkpoint(tmp_path / "bf16" / "checkpoint.pt")["model"]
    assert all(v.dtype == torch.float32 for v in w.values() if v.is_floating_point())  # master weights


def test_predict_logits_bf16_channels_last_close_to_fp32():
    torch.manual_seed(0)
    model = build_model("deeplabv2", num_classes=20, width=0.0625).eval()
    x = torch.randn(3, 41, 33)
    ref = predict_logits(model, x, (41, 33), flip=True, flip_pairs=[(14, 15)], amp="off")
    low = predict_logits(model, x, (41, 33), flip=True, flip_pairs=[(14, 15)], amp="bf16", channels_last=True)
    assert ref.dtype == low.dtype == torch.float32 and ref.shape == low.shape == (20, 41, 33)
    err = (ref - low).abs().max() / ref.abs().max()
    assert 0 < err < 0.05, float(err)


# ----------------------------------------------------------------------------------------------
# the command line's boolean options, the auxiliary loss, the 10x classifier groups, loader workers


def test_boolean_options_are_strict(tmp_path, monkeypatch, capsys):
    import lipstudy.train as T

    words = {"true": True, "False": False, "1": True, "0": False, "yes": True, "NO": False,
             "on": True, "off": False, " true ": True}
    assert {w: parse_bool(w) for w in words} == words
    seen = []
    monkeypatch.setattr(T, "train", lambda cfg, out, progress=True: seen.append(cfg) or Path(out))
    assert main(["--out", str(tmp_path / "a"), "--flip", "false", "--channels-last", "on", "--no-progress"]) == 0
    assert seen[-1].flip is False and seen[-1].channels_last is True
    assert main(["--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert seen[-1].flip is True and seen[-1].channels_last is None  # unset: the config's default
    # A typo is an error naming the option, not a silent False.
    for bad in ("ture", "", "2", "enable"):
        with pytest.raises(SystemExit) as exit_:
            main(["--out", str(tmp_path / "c"), "--flip", bad, "--no-progress"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "argument --flip" in err and repr(bad) in err
    assert len(seen) == 2


@pytest.mark.parametrize("name,head", [
    ("segnet", {"classifier.weight", "classifier.bias"}),
    ("fcn8s", {f"{s}.{p}" for s in ("score_fr", "score_pool4", "score_pool3") for p in ("weight", "bias")}),
    ("deeplabv2", {f"aspp.{i}.fc8.{p}" for i in range(4) for p in ("weight", "bias")}),
    ("attention", {"head.fc8.weight", "head.fc8.bias", "attention.0.weight", "attention.0.bias",
                   "attention.3.weight", "attention.3.bias"}),
])
def test_classifier_gets_ten_times_the_learning_rate(name, head):
    """The layers new on top of VGG-16 (the released recipe's lr_mult 10) and nothing else: FCN's
    learned upsamplers and the LargeFOV / ASPP fc6-fc7 stay at the base rate."""

    cfg = TrainConfig(model=name, width=0.0625, lr=0.002)
    model = build_network(cfg)
    assert classifier_parameter_names(model) == head
    opt = make_optimizer(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == [0.002, 0.02]
    params = dict(model.named_parameters())
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(params[n]) for n in head}
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for n, p in params.items() if n not in head}


def test_loader_workers_give_the_same_weights(tmp_path):
    """The cpu and full profiles load with 1 and 8 workers: augmentation is seeded by
    (seed, epoch, index) and the loader has its own generator, so workers change nothing."""
    root = write_tiny_lip(tmp_path / "d", n_train=8)
    runs = {}
    for workers in (0, 2):
        # dropout on: a loader drawing from the global RNG would change the dropout masks
        cfg = tiny_config(root, epochs=2, dropout=0.5, workers=workers)
        runs[workers] = load_checkpoint(train(cfg, tmp_path / f"w{workers}", progress=False))
    a, b = runs[0], runs[2]
    assert a["step"] == b["step"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    torch.manual_seed(0)
    fresh = build_network(tiny_config(root, dropout=0.5)).state_dict()
    assert sum(not torch.equal(fresh[k], a["model"][k]) for k in fresh) > len(fresh) // 2  # not vacuous
    assert [r["loss"] for r in a["log"]] == [r["loss"] for r in b["log"]]


def test_a_config_of_an_earlier_version_loads_without_its_retired_options(tmp_path):
    """Checkpoints and bundles of earlier versions hold the frozen-backbone and frozen-statistics
    fields at their "off" values: they load (they trained what this version trains); a config that
    turned one on is refused by name, since this trainer cannot train it."""
    from lipstudy.config import RETIRED_FIELDS
    from lipstudy.runtime import model_from_checkpoint

    old = {**TrainConfig(model="deeplabv2", width=0.0625).to_dict(), **RETIRED_FIELDS}
    assert TrainConfig.from_dict(old) == TrainConfig(model="deeplabv2", width=0.0625)
    for field, on in (("frozen_backbone_steps", 200), ("frozen_bn_stats", True)):
        with pytest.raises(ValueError, match=f"{field}={on!r}.*no longer has"):
            TrainConfig.from_dict({**old, field: on})
    model = build_model("deeplabv2", width=0.0625)
    torch.save({"model": model.state_dict(), "config": old}, tmp_path / "old.pt")
    rebuilt, cfg = model_from_checkpoint(tmp_path / "old.pt")
    assert cfg.model == "deeplabv2" and all(torch.equal(v, rebuilt.state_dict()[k]) for k, v in model.state_dict().items())


def test_released_loss_trains_exactly_the_baseline_through_the_trainer(tmp_path):
    """The released code's loss through the real trainer (AdamW, batch norm, dropout masks drawn
    from the RNG, channels_last, warm-up): the same weights as plain cross-entropy, bit for bit;
    Eq. 2 ("paper") moves them. The SSL chapter shows this comparison on the profile's own recipe."""
    from lipstudy import loss_modes

    root = write_tiny_lip(tmp_path / "lip")
    cfg = tiny_config(root, dropout=0.5, batch_norm=True, optimizer="adamw", weight_decay=1e-4, warmup_steps=2,
                      classifier_lr_mult=1.0, channels_last=True, epochs=1)
    diffs = loss_modes.compare_training(cfg)
    assert diffs["off"] == 0.0 and diffs["released"] == 0.0
    assert diffs["paper"] > 1e-6
    # the profile's own config: its recipe, its crop, a few steps on its data
    prof_cfg = loss_modes.profile_config("cpu", root, steps=2)
    assert (prof_cfg.optimizer, prof_cfg.batch_norm, prof_cfg.crop, prof_cfg.max_steps) == ("adamw", True, 128, 2)
    assert prof_cfg.channels_last is True and prof_cfg.atrous_scale == pytest.approx(128 / 321)


_SPEEDUP_SCRIPT = """
import sys
import torch
from torch.utils.data import DataLoader
from lipstudy import train as T
from lipstudy.batches import collate
from lipstudy.config import TrainConfig


class FreshLoaders:  # the trainer before the levers: a new loader (and its workers) every epoch
    def __init__(self, data, workers, seed, pin_memory=False):
        self.data, self.workers, self.seed = data, workers, seed

    def epoch(self, batches):
        return DataLoader(self.data, batch_sampler=batches, num_workers=self.workers, collate_fn=collate,
                          generator=torch.Generator().manual_seed(self.seed))

    def close(self):
        pass


cfg, out, lever = TrainConfig(**{cfg}), sys.argv[1], sys.argv[2] == "on"
if not lever:  # and default malloc, no cache
    T.keep_freed_memory = lambda: False
    T.StageLoader = FreshLoaders
T.train(TrainConfig(**{**cfg.to_dict(), "cache_images": lever}), out, progress=False)
"""


def test_cpu_execution_levers_give_bit_identical_weights(tmp_path):
    """The cpu profile's execution levers (decoded images cached in memory, one loader with a
    persistent worker for the whole stage, glibc keeping freed memory) train exactly the weights,
    optimiser state and losses of the trainer without them, over several epochs (the cache and the
    worker outlive the first), with dropout, batch norm, AdamW and channels_last as the cpu
    profile trains."""
    root = write_tiny_lip(tmp_path / "d", n_train=12)
    cfg = dict(model="deeplabv2", width=0.0625, dropout=0.5, batch_norm=True, optimizer="adamw",
               weight_decay=1e-4, warmup_steps=2, channels_last=True, data_root=str(root), epochs=3,
               batch_size=4, crop=32, lr=0.01, device="cpu", workers=1)
    script = tmp_path / "levers.py"
    script.write_text(_SPEEDUP_SCRIPT.replace("{cfg}", repr(cfg)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for lever in ("off", "on"):
        done = subprocess.run([sys.executable, str(script), str(tmp_path / lever), lever], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    a = load_checkpoint(tmp_path / "off" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "on" / "checkpoint.pt")
    assert a["step"] == b["step"] == 9 and b["config"]["cache_images"] and not a["config"]["cache_images"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i][n], sb[i][n]) for i in sa for n in sa[i])
    assert [r["loss"] for r in a["log"]] == [r["loss"] for r in b["log"]]
    torch.manual_seed(0)
    fresh = build_network(TrainConfig(**cfg)).state_dict()
    assert sum(not torch.equal(fresh[k], a["model"][k]) for k in fresh) > len(fresh) // 2  # not vacuous


def test_decoded_cache_serves_each_item_decoded_once(tmp_path):
    from lipstudy.data.datasets import DecodedCache, open_dataset

    base = open_dataset(write_tiny_lip(tmp_path / "d", n_train=3), "train", kind="lip")
    reads = []
    load = base._load
    base._load = lambda i: reads.append(i) or load(i)
    cache = DecodedCache(base)
    first = [cache[i] for i in (0, 1, 0, 2, 1)]
    assert reads == [0, 1, 2] and len(cache) == 3
    assert first[0] is first[2] and np.array_equal(first[0]["image"], load(0)["image"])
