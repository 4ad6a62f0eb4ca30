"""The cpu profiles' recipe: batch-norm backbones, the synthetic backbone pretraining, AdamW and
warm-up, the profile's deviations table, the parallel training of the book's runs, and the
budget summary."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from lipstudy import budget, deviations, measurements, process_pool, store, train_run
from lipstudy.data.roots import data_fingerprint, data_root
from lipstudy.profiles import PROFILES, Profile, get_profile
from lipstudy.runs import BACKBONE, MODEL_LABELS, PRETRAIN, Run, book_runs, paper_runs
from lipstudy.checkpoints import load_backbone
from lipstudy.models import (MODEL_NAMES, BackbonePretrainNet, backbone_of, build_model,
                             num_parameters)
from lipstudy.config import TrainConfig
from lipstudy.store import train_config
from lipstudy.train import make_optimizer, poly_lr, train

TINY = Profile(name="tinypre", width=0.0625, crop=32, batch=4, lr=2e-3, epochs_stage1=1, epochs_stage2=1,
               lip_data={"train": 8, "val": 4, "test": 4, "max_side": 32},
               ppp_data={"train": 8, "val": 4, "test": 4, "max_side": 32},
               atr_data={"train": 4, "val": 4, "test": 4, "max_side": 32},
               eval_sizes=(16, 32, 51), seeds=(0,), workers=0,
               recipe={"batch_norm": True, "optimizer": "adamw", "weight_decay": 1e-4,
                       "classifier_lr_mult": 1.0, "warmup_steps": 2},
               pretrain={"train": 8, "val": 4, "epochs": 1, "max_side": 32})


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSTUDY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path / "results"))
    return tmp_path


def _bn_count(module):
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())


def test_batch_norm_backbones_have_one_norm_per_conv():
    # VGG-16 has 13 convs; with batch_norm=True each gets a BatchNorm2d in its backbone.
    for name in MODEL_NAMES:
        plain, bn = build_model(name, width=0.0625), build_model(name, width=0.0625, batch_norm=True)
        assert _bn_count(backbone_of(bn)) == 13
        expected = 13 if name == "segnet" else 0  # the paper's: SegNet's encoder is VGG-16-BN
        assert _bn_count(backbone_of(plain)) == expected
        # 2 parameters (scale, shift) per channel of each norm
        channels = sum(m.num_features for m in backbone_of(bn).modules() if isinstance(m, torch.nn.BatchNorm2d))
        if name != "segnet":
            assert num_parameters(bn) - num_parameters(plain) == 2 * channels
    with pytest.raises(ValueError, match="SegNet's encoder is VGG-16-BN"):
        build_model("segnet", batch_norm=False)


def test_pretrain_net_shapes_and_thin_images():
    net = BackbonePretrainNet(num_classes=20, width=0.0625).eval()
    # A 40 x 17 image passes five 2x2 pools only because the net pads to a multiple of 32.
    assert net(torch.randn(1, 3, 40, 17)).shape == (1, 20, 40, 17)
    net.train()
    out = net(torch.randn(2, 3, 32, 32))
    assert out["out"].shape == (2, 20, 32, 32) and out["aux"] == []


def test_load_backbone_copies_exactly_the_backbone(tmp_path):
    torch.manual_seed(0)
    pre = build_model("backbone", width=0.0625)
    torch.save({"model": pre.state_dict(), "config": {}}, tmp_path / "bb.pt")
    for name in MODEL_NAMES:
        model = build_model(name, width=0.0625, batch_norm=True)
        head_before = {k: v.clone() for k, v in model.state_dict().items()
                       if not k.startswith(("backbone.", "encoder."))}
        load_backbone(model, tmp_path / "bb.pt")
        for k, v in backbone_of(model).state_dict().items():
            assert torch.equal(v, pre.backbone.state_dict()[k]), (name, k)
        for k, v in model.state_dict().items():  # nothing outside the backbone changed
            if k in head_before:
                assert torch.equal(v, head_before[k]), (name, k)
    with pytest.raises(ValueError, match="bb.pt: its backbone does not fit"):
        load_backbone(build_model("deeplabv2", width=0.0625), tmp_path / "bb.pt")  # no BN
    with pytest.raises(ValueError, match="bb.pt: its backbone does not fit"):
        load_backbone(build_model("deeplabv2", width=0.125, batch_norm=True), tmp_path / "bb.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable pretraining checkpoint"):
        load_backbone(build_model("deeplabv2", width=0.0625, batch_norm=True), tmp_path / "junk.pt")


def test_poly_lr_with_warmup_by_hand():
    # 4 warm-up steps: base * 1/4, 2/4, 3/4, 4/4; then poly from step 4 of 10 with power 1.
    assert [poly_lr(1.0, s, 10, 1.0, warmup=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert poly_lr(1.0, 4, 10, 1.0, warmup=4) == pytest.approx(0.6)
    assert poly_lr(1.0, 5, 10, 1.0) == pytest.approx(0.5)  # no warm-up: plain poly


def test_adamw_optimizer_groups():
    model = build_model("deeplabv2", width=0.0625, batch_norm=True)
    opt = make_optimizer(model, TrainConfig(optimizer="adamw", lr=2e-3, weight_decay=1e-4,
                                            classifier_lr_mult=1.0, momentum=0.9))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["lr"] for g in opt.param_groups] == [2e-3, 2e-3]
    assert opt.param_groups[0]["betas"] == (0.9, 0.999) and opt.param_groups[0]["weight_decay"] == 1e-4
    assert isinstance(make_optimizer(model, TrainConfig()), torch.optim.SGD)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="adam")


def test_deviations_are_computed_from_the_profile():
    full = deviations.deviations("full", device="cpu")
    # the full profile: the paper's recipe on other data, with the study's own additions (stage 2's schedule,
    # PPP's joints, the seeds, the controls), and what the code itself does differently
    assert list(full["setting"]) == ["data", "stage 2's schedule", "SSL on PASCAL-Person-Part", "seeds",
                                     "SSL controls"] + [
        row[0] for row in deviations.code_departures(get_profile("full"),
                                                      train_config(Run("deeplabv2"), "full", ""), "cpu")]
    tiny = deviations.deviations(TINY).set_index("setting")
    col = "profile tinypre"
    assert tiny.loc["training images", col] == "8" and tiny.loc["training images", "paper"] == "30,462"
    assert tiny.loc["validation / test images", col] == "4 / 4"
    assert tiny.loc["validation / test images", "paper"] == "10,000 / 10,000"
    assert tiny.loc["PASCAL-Person-Part training / test images", "paper"] == "1,716 / 1,817"
    assert tiny.loc["ATR test images (Table 6)", "paper"] == "1,000"
    assert tiny.loc["joint heatmap grid (stride 8)", col] == "4 x 4"  # (32 - 1) // 8 + 1
    assert tiny.loc["joint heatmap grid (stride 8)", "paper"] == "41 x 41"
    assert tiny.loc["batch", col] == 4 and tiny.loc["batch", "paper"] == 10
    assert "convolutions only" in tiny.loc["fc6 / fc7 (DeepLabV2's ASPP branches, Attention's LargeFOV head, FCN-8s)", col]
    assert "L_joint's scale (Eq. 2)" in tiny.index and "stage 2's schedule" in tiny.index
    assert tiny.loc["crop", col] == "32 x 32"
    assert tiny.loc["batch norm in the backbone", col] == "every baseline"
    assert tiny.loc["optimiser", col].startswith("AdamW (lr 0.002")
    assert tiny.loc["classifier learning rate", col] == "1x"
    assert tiny.loc["warm-up", col] == "2 steps, linear"
    assert "trained 1 epochs on 8 other synthetic images" in tiny.loc["initialisation", col]
    assert tiny["reason"].str.len().min() > 20
    # stage 2 in every profile: a tenth of the base rate (2e-3), constant, with the measurement behind it
    assert tiny.loc["stage 2's schedule", col] == "a new optimiser state at 0.1 x the base rate (0.0002), constant, no warm-up"
    assert "1e-4, constant" in tiny.loc["stage 2's schedule", "paper"]
    cpu = deviations.deviations("cpu").set_index("setting")
    assert cpu.loc["fc6 / fc7 channels", "profile cpu"] == "at least 128 (DeepLabV2 and Attention: 128; FCN-8s: 256)"
    assert cpu.loc["dropout", "profile cpu"] == "0 in fc6 / fc7; 0.5 in Attention's attention model"
    from lipstudy.measurements import search_rows
    cited = ["stage 2's schedule", "dropout", "fc6 / fc7 channels", "Attention's attention model at the start",
             "loss of DeepLabV2 and Attention"]
    if search_rows():  # every setting they cite is in the committed search
        assert not any("not measured" in cpu.loc[s, "reason"] for s in cited), cpu.loc[cited, "reason"]
    scratch = deviations.deviations(dataclasses.replace(TINY, pretrain=None, recipe={})).set_index("setting")
    assert scratch.loc["initialisation", "profile tinypre"] == "random (from scratch)"
    assert "optimiser" in scratch.index  # lr 0.002 differs from the paper's 0.001
    assert "warm-up" not in scratch.index and "classifier learning rate" not in scratch.index


def test_finetune_settings_leave_the_backbone_key_alone():
    """A change to how the baselines fine-tune changes their keys but reuses the cached backbone;
    the backbone trains with ``recipe`` alone, every other run with ``recipe`` + ``finetune``."""
    tuned = dataclasses.replace(TINY, finetune={"classifier_lr_mult": 10.0})
    backbone, dl = BACKBONE, Run("deeplabv2")
    assert store.run_key(backbone, TINY, "fp") == store.run_key(backbone, tuned, "fp")
    assert store.run_key(dl, TINY, "fp", "bb") != store.run_key(dl, tuned, "fp", "bb")
    assert train_config(backbone, tuned, "").classifier_lr_mult == 1.0
    assert train_config(dl, tuned, "").classifier_lr_mult == 10.0 and train_config(dl, tuned, "").optimizer == "adamw"
    # the paper's 10x: no longer a deviation of the baselines' recipe
    assert "classifier learning rate" not in set(deviations.deviations(tuned)["setting"])
    # the memory layout is execution only: same keys
    assert store.run_key(dl, dataclasses.replace(TINY, channels_last=True), "fp", "bb") == store.run_key(dl, TINY, "fp", "bb")


def test_book_runs_lists_every_chapter_run_at_every_seed():
    runs = book_runs(dataclasses.replace(TINY, seeds=(0, 1), ppp_seeds=(0,)))
    # per LIP seed: paper, controls, the shuffled-weight control; PPP (with its control) at seed 0
    assert len(runs) == len(set(runs)) == 2 * (6 + 2 + 1) + 4
    assert Run("attention", seed=1) in runs and Run("deeplabv2", "unit", stage=2, seed=1) in runs
    assert Run("attention", dataset="ppp", seed=1) not in runs


def test_plan_lists_missing_dependencies_and_what_each_task_waits_for(dirs):
    runs = [Run("deeplabv2", "paper", stage=2), Run("fcn8s")]
    for ds in ("lip", PRETRAIN):  # the keys read the data's fingerprints
        data_root(TINY, ds)
    tasks, waits = process_pool.pending_tasks(runs, TINY, products={Run("fcn8s"): [store.TEST]})
    backbone, dl = BACKBONE, Run("deeplabv2")
    # the stage-1 run and the backbone nobody listed are tasks, since the SSL run needs them
    assert set(tasks) == {runs[0], runs[1], dl, backbone}
    assert tasks[runs[1]] == [store.TEST] and tasks[dl] == []
    assert waits == {runs[0]: dl, dl: backbone, runs[1]: backbone}
    scratch = dataclasses.replace(TINY, pretrain=None)
    tasks, waits = process_pool.pending_tasks(runs, scratch)
    assert set(tasks) == {runs[0], runs[1], dl} and waits == {runs[0]: dl}


def test_pretrained_profile_end_to_end_with_two_workers(dirs, monkeypatch):
    """The backbone trains once; the stage-1 runs start from it (their keys name it); two
    processes train the stage-1 wave side by side; finished_key finds every run without training."""
    runs = [Run("deeplabv2"), Run("fcn8s"), Run("deeplabv2", "paper", stage=2)]
    # workers=1: each run's DataLoader worker is a child of a pool process, which must not be daemonic
    prof = dataclasses.replace(TINY, workers=1)
    process_pool.ensure_all(runs, prof, jobs=2, products={runs[0]: [store.TEST, store.Evaluation(size=16)],
                                                          runs[2]: [store.ATR]})
    keys = [store.finished_key(r, TINY) for r in runs]
    assert None not in keys
    for key, names in ((keys[0], ["val", "test", "val@16"]), (keys[2], ["val", "atr"])):
        assert sorted(p.name for p in (dirs / "results" / "runs" / key / "eval").iterdir()
                      if not p.name.startswith(".")) == sorted(names)
    backbone = store.finished_key(BACKBONE, TINY)
    run_dir = dirs / "results" / "runs"
    for key in keys[:2]:
        cfg = json.loads((run_dir / key / "config.json").read_text())
        assert cfg["init_run"] == backbone
        assert cfg["train"]["backbone_init"].endswith(f"{backbone}/checkpoint.pt")
        assert cfg["train"]["optimizer"] == "adamw" and cfg["train"]["batch_norm"] is True
    assert json.loads((run_dir / keys[2] / "config.json").read_text())["init_run"] == keys[0]
    # the pretraining split is a different synthetic set from the benchmark's
    pre = data_root(TINY, PRETRAIN)
    lip = data_root(TINY, "lip")
    assert data_fingerprint(pre) != data_fingerprint(lip)
    assert json.loads((pre / "manifest.json").read_text())["seed"] == 1
    # ensure() now reuses everything: same folders, nothing retrained
    mtimes = {k: (run_dir / k / "metrics.json").stat().st_mtime_ns for k in keys}
    assert [train_run.ensure(r, TINY).dir.name for r in runs] == keys
    assert {k: (run_dir / k / "metrics.json").stat().st_mtime_ns for k in keys} == mtimes

    # budget: fine-tuning counts the SSL run's stage-1 run; total adds the whole backbone, once
    df = budget.summarise(TINY).set_index("method")
    assert set(df.index) == {"DeepLabV2", "FCN-8s", "DeepLabV2 + SSL"}
    pre_images = 2 * 4  # 8 images, batch 4, 1 epoch: 2 steps of 4
    assert df.loc["DeepLabV2", "images_finetune"] == 8 and df.loc["DeepLabV2", "images_total"] == 8 + pre_images
    assert df.loc["DeepLabV2 + SSL", "images_finetune"] == 8 + 8
    assert df.loc["DeepLabV2 + SSL", "images_total"] == 8 + 8 + pre_images
    assert df.loc["DeepLabV2 + SSL", "minutes_total"] > df.loc["DeepLabV2 + SSL", "minutes_finetune"] > 0
    monkeypatch.setitem(budget.PROFILES, TINY.name, TINY)
    path = budget.write(TINY)
    again = budget.load_all(path.parent)
    assert len(again) == 3 and set(again["profile"]) == {"tinypre"} and budget.stale(path.parent) == []
    np.testing.assert_allclose(sorted(again["val_miou"]), sorted(df["val_miou"]))
    # a summary trained with another recipe (here: another stage-2 rate) is left out and named, not mixed in
    monkeypatch.setitem(budget.PROFILES, TINY.name, dataclasses.replace(TINY, stage2_lr=0.5))
    assert budget.load_all(path.parent).empty and budget.stale(path.parent) == ["tinypre"]
    monkeypatch.setitem(budget.PROFILES, TINY.name, dataclasses.replace(TINY, epochs_stage1=9))
    assert len(budget.load_all(path.parent)) == 3  # the epochs are the budget, not the recipe


def test_changed_data_spec_gets_a_new_folder(dirs):
    a = data_root(TINY, "atr")
    b = data_root(dataclasses.replace(TINY, atr_data={**TINY.atr_data, "test": 5}), "atr")
    assert a != b and a.name.startswith("synth-tinypre-atr-") and b.name.startswith("synth-tinypre-atr-")
    assert json.loads((b / "manifest.json").read_text())["counts"]["test"] == 5


def test_operating_point_table_from_a_result_file(tmp_path):
    row = {"setting": "s", "width": 0.0625, "crop": 128, "max_side": 192, "epochs": 8, "lr": 2e-3,
           "recipe": {"optimizer": "adamw", "batch_norm": True}, "pretrain": {"epochs": 8, "train": 3000}, "train_minutes": 8.75,
           "pretrain_minutes": 14.06, "minutes_per_book_run": 10.76, "val_miou": 0.1642, "background_iou": 0.7904,
           "drawn_classes": 20, "drawn_classes_above_0": 12}
    tuned = {**row, "setting": "t", "lr": 1e-2, "val_miou": 0.117, "backbone": "convs + fc6 / fc7",
             "finetune": {"optimizer": "sgd", "classifier_lr_mult": 10.0, "atrous_scale": 128 / 321}}
    path = tmp_path / "op.json"
    path.write_text(json.dumps({"rows": {"s": row, "t": tuned}}))
    t = measurements.operating_point_table(path)
    assert list(t.index) == ["t", "s"]  # by val mIoU
    assert t.loc["s", "width"] == "0.0625" and t.loc["s", "optimiser"] == "adamw (lr 0.002)"
    assert bool(t.loc["s", "batch norm"]) and t.loc["s", "fine-tuning"] == "-"
    # fine-tuning's settings override the recipe's optimiser and are listed
    assert t.loc["t", "optimiser"] == "sgd (lr 0.01)"
    assert t.loc["t", "fine-tuning"] == "atrous_scale 0.399, classifier_lr_mult 10"
    assert t.loc["s", "val mIoU (%)"] == 16.4 and t.loc["s", "background IoU (%)"] == 79.0
    assert t.loc["s", "drawn classes > 0"] == "12 / 20"
    assert t.loc["s", "init"] == "synthetic pretraining (8 ep x 3000 img, convs)"  # no field: the convs
    assert t.loc["t", "init"] == "synthetic pretraining (8 ep x 3000 img, convs + fc6 / fc7)"
    assert measurements.operating_point_table(tmp_path / "missing.json").empty


def test_budget_trend_is_points_per_doubling_by_hand():
    rows = []
    backbone = 3000  # total = fine-tuning + the backbone's images: 4000, 5000, 7000
    for prof, images, a, b in (("short", 1000, 0.10, 0.30), ("mid", 2000, 0.14, 0.31), ("long", 4000, 0.18, 0.29)):
        cost = {"images_finetune": images, "images_total": images + backbone}
        rows += [{"profile": prof, "method": "A", "seed": 0, "val_miou": a, **cost},
                 {"profile": prof, "method": "B", "seed": 0, "val_miou": b - 0.01, **cost},
                 {"profile": prof, "method": "B", "seed": 1, "val_miou": b + 0.01, **cost}]
    rows.append({"profile": "short", "method": "C", "seed": 0, "val_miou": 0.5, "images_finetune": 1000,
                 "images_total": 4000})
    rows.append({"profile": "smoke", "method": "A", "seed": 0, "val_miou": 0.9, "images_finetune": 10,
                 "images_total": 10})  # other data
    t = budget.trend(pd.DataFrame(rows), ["short", "mid", "long"])
    # A: 10, 14, 18 % at log2 fine-tuning images 0, 1, 2 (+ a constant) -> 4 points per doubling;
    # smoke is ignored
    assert t.loc["A", "points per doubling of fine-tuning"] == pytest.approx(4.0)
    assert t.loc["A", "mid (%)"] == pytest.approx(14.0)
    # of total compute: the least-squares slope against log2(4000, 5000, 7000), by hand
    x = np.log2([4000, 5000, 7000])
    assert t.loc["A", "points per doubling of total compute"] == pytest.approx(
        np.sum((x - x.mean()) * (np.array([10, 14, 18]) - 14)) / np.sum((x - x.mean()) ** 2))
    # B: the mean over seeds, 30, 31, 29 % -> slope -0.5; C has one budget only: left out
    assert t.loc["B", "points per doubling of fine-tuning"] == pytest.approx(-0.5)
    assert t.loc["B", "short (%)"] == pytest.approx(30.0)
    assert list(t.index) == ["A", "B"]
    # the cpu profile's budget family: same data and backbone, other fine-tuning epochs
    assert budget.family("cpu") == ["cpu-short", "cpu", "cpu-long"] == budget.family("cpu-long")
    assert budget.family("smoke") == ["smoke"]


def test_budget_train_trains_exactly_the_summarised_runs(dirs, monkeypatch, capsys):
    """`lipstudy budget --profile P --train`: the four baselines and the two SSL runs (with the
    backbone they start from), nothing else; then the summary file has one row per method."""
    monkeypatch.setitem(PROFILES, "tinypre", TINY)
    assert budget.main(["--profile", "tinypre", "--train"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("tinypre.json")
    doc = json.loads((dirs / "results" / "budget" / "tinypre.json").read_text())
    assert sorted(r["method"] for r in doc["rows"]) == sorted(paper_runs())
    trained = sorted(json.loads((d / "config.json").read_text())["label"]
                     for d in (dirs / "results" / "runs").iterdir())
    assert trained == sorted([*paper_runs(), MODEL_LABELS["backbone"]])
    # no runs and no --train: a clear refusal, exit 2
    # (another name with the same settings would find these very runs: keys hash settings, not names)
    monkeypatch.setitem(PROFILES, "tinyother", dataclasses.replace(TINY, name="tinyother", epochs_stage1=2))
    assert budget.main(["--profile", "tinyother"]) == 2
    assert "has no finished runs" in capsys.readouterr().out
