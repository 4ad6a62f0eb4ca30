"""lipstudy.runs: the run catalogue and the run graph (what each run starts from)."""
import dataclasses

import pytest

from lipstudy import runs
from lipstudy.profiles import PROFILES, get_profile
from lipstudy.runs import BACKBONE, Run


def test_run_labels_and_named_sets():
    assert list(runs.paper_runs()) == ["SegNet", "FCN-8s", "DeepLabV2", "Attention", "DeepLabV2 + SSL",
                                       "Attention + SSL"]
    assert runs.paper_runs()["Attention + SSL"] == Run("attention", "paper", "lip", 2, 0)
    assert list(runs.control_runs(3)) == ["DeepLabV2 + stage-2 epochs without SSL",
                                          "Attention + stage-2 epochs without SSL"]
    assert all(r.seed == 3 and r.stage == 2 and r.loss == "unit" for r in runs.control_runs(3).values())
    assert runs.shuffled_runs(3) == {"DeepLabV2 + SSL with shuffled L_joint": Run("deeplabv2", "shuffled", "lip", 2, 3)}
    assert runs.control_label("DeepLabV2") == "DeepLabV2 + stage-2 epochs without SSL"
    ppp = runs.ppp_runs()
    assert list(ppp) == ["DeepLabV2", "Attention", "Attention + SSL", "Attention + stage-2 epochs without SSL"]
    assert all(r.dataset == "ppp" for r in ppp.values())
    assert ppp["Attention + stage-2 epochs without SSL"] == Run("attention", "unit", "ppp", 2)
    assert Run("deeplabv2", "paper", stage=2).stage1() == Run("deeplabv2")
    with pytest.raises(ValueError, match="unknown model"):
        Run("unet")
    with pytest.raises(ValueError, match="the backbone is pretrained on the 'pretrain' split"):
        Run("backbone")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")


def test_profiles():
    full = get_profile("full")
    assert (full.width, full.crop, full.batch, full.lr, full.epochs_stage1, full.epochs_stage2) == \
        (1.0, 321, 10, 1e-3, 30, 20)
    assert full.eval_sizes == (153, 321, 513)
    for p in PROFILES.values():
        assert p.eval_sizes[1] == p.crop and p.eval_sizes[0] < p.crop < p.eval_sizes[2]


def test_what_a_run_starts_from():
    """One rule, known answers: stage 2 starts from its stage-1 run, a stage-1 run from the
    synthetic backbone when the profile pretrains one, otherwise from nothing of ours."""
    cpu, smoke = get_profile("cpu"), get_profile("smoke")
    ssl = Run("deeplabv2", "paper", stage=2, seed=1)
    assert ssl.parent(cpu) == Run("deeplabv2", seed=1)
    assert Run("deeplabv2", seed=1).parent(cpu) == BACKBONE
    assert BACKBONE.parent(cpu) is None
    assert Run("attention", dataset="ppp").parent(cpu) == BACKBONE
    assert Run("deeplabv2").parent(smoke) is None and Run("deeplabv2").parent("full") is None
    assert ssl.lineage(cpu) == [BACKBONE, Run("deeplabv2", seed=1), ssl]
    assert ssl.lineage(smoke) == [Run("deeplabv2", seed=1), ssl]
    ordered = runs.with_ancestors([ssl, Run("segnet")], cpu)
    assert ordered == [BACKBONE, Run("deeplabv2", seed=1), ssl, Run("segnet")]


def test_book_runs_and_evaluations():
    cpu = get_profile("cpu")
    book = runs.book_runs(cpu)
    # at each of 3 seeds: 6 paper methods + 2 controls + DeepLabV2's shuffled-weight control; 4 PPP runs at seed 0
    assert cpu.seeds == (0, 1, 2) and cpu.ppp_seeds == (0,)
    assert len(book) == len(set(book)) == 3 * (6 + 2 + 1) + 4 == 31
    seed1 = {Run(m, seed=1) for m in ("segnet", "fcn8s", "deeplabv2", "attention")}
    seed1 |= {Run(m, loss, stage=2, seed=1) for m in ("deeplabv2", "attention") for loss in ("paper", "unit")}
    assert {r for r in book if r.seed == 1} == seed1 | {Run("deeplabv2", "shuffled", stage=2, seed=1)}
    with_ppp = runs.book_runs(dataclasses.replace(cpu, ppp_seeds=(0, 1)))
    assert set(with_ppp) - set(book) == set(runs.ppp_runs(1).values())
    methods = runs.method_runs(cpu)
    assert sorted(methods["DeepLabV2 + SSL"]) == sorted(methods["SegNet"]) == [0, 1, 2]
    assert sorted(methods[runs.shuffled_label("DeepLabV2")]) == [0, 1, 2]
    assert set(methods["ppp/Attention + stage-2 epochs without SSL"]) == {0}
    from lipstudy.store import ATR, CHALLENGE, SCALE_WEIGHTS, TEST, Evaluation, FigureSet, book_products

    ev = book_products(cpu)
    # 153, 321, 513 x 128 / 321, rounded; the challenge top-up (synthetic data only)
    assert ev[Run("segnet")] == [TEST, ATR, CHALLENGE, Evaluation(size=61), Evaluation(size=128), Evaluation(size=205),
                                 FigureSet("fig8"), FigureSet("cihp")]
    assert [e.name for e in ev[Run("segnet")][:6]] == ["test", "atr", "challenge", "val@61", "val@128", "val@205"]
    assert ev[Run("attention", dataset="ppp")] == [TEST]
    # the controls are evaluated as the methods they stand beside (Table 6's input sizes included); the
    # shuffled-weight control on the validation split only; Attention without single input sizes (Table
    # 6's "-") but with its attention weights at stage 1
    assert set(ev[Run("deeplabv2", "unit", stage=2, seed=2)]) == set(ev[Run("segnet")][:6])
    assert ev[Run("deeplabv2", "shuffled", stage=2, seed=2)] == []
    assert ev[Run("attention", seed=1)] == [TEST, ATR, CHALLENGE, SCALE_WEIGHTS]
    assert ev[Run("attention", "paper", stage=2, seed=1)] == [TEST, ATR, CHALLENGE]
    real = book_products(cpu, data="/real/LIP")[Run("segnet")]
    assert TEST not in real and CHALLENGE not in real  # LIP's test labels are hidden; no top-up of real data
    assert runs.epochs(BACKBONE, cpu) == 16 and runs.epochs(Run("fcn8s"), cpu) == 6
    assert runs.epochs(Run("fcn8s", "paper", stage=2), cpu) == 3 and runs.base_lr(BACKBONE, cpu) == 2e-3


def test_the_profiles_table_is_read_off_the_profiles():
    from lipstudy.profiles import summary

    t = summary().set_index("profile")
    assert list(t.index) == list(PROFILES)
    smoke, cpu = get_profile("smoke"), get_profile("cpu")
    assert t.loc["smoke", "LIP train / val / test"] == (f"{smoke.lip_data['train']} / {smoke.lip_data['val']} / "
                                                       f"{smoke.lip_data['test']} synthetic images, up to "
                                                       f"{smoke.lip_data['max_side']} px")
    assert t.loc["cpu", "epochs (stage 1 + 2)"] == f"{cpu.epochs_stage1} + {cpu.epochs_stage2}"
    assert t.loc["cpu", "seeds"] == "3 (PASCAL-Person-Part: 1)"
    assert "from ImageNet VGG-16" in t.loc["full", "networks"] and "LIP-scale" in t.loc["full", "LIP train / val / test"]
