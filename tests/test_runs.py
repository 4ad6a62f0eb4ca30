"""lipstudy.runs: the run catalogue and the run graph (what each run starts from)."""
import pytest

from lipstudy import runs
from lipstudy.profiles import PROFILES, get_profile
from lipstudy.runs import BACKBONE, Run


def test_run_labels_and_named_sets():
    assert list(runs.paper_runs()) == ["SegNet", "FCN-8s", "DeepLabV2", "Attention", "DeepLabV2 + SSL",
                                       "Attention + SSL"]
    assert runs.paper_runs()["Attention + SSL"] == Run("attention", "paper", "lip", 2, 0)
    assert list(runs.control_runs(3)) == ["DeepLabV2 + stage-2 epochs without SSL", "DeepLabV2 + SSL (released code)",
                                          "DeepLabV2 + SSL (1 + L_joint)"]
    assert all(r.seed == 3 and r.stage == 2 for r in runs.control_runs(3).values())
    ppp = runs.ppp_runs()
    assert list(ppp) == ["DeepLab-LargeFOV", "Attention", "Attention + SSL"]
    assert all(r.dataset == "ppp" for r in ppp.values())
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
    assert len(book) == len(set(book)) == 15  # 6 paper + 3 controls + 3 PPP, + 3 extra-seed SSL runs
    assert {r for r in book if r.seed == 1} == {Run("deeplabv2", seed=1), Run("deeplabv2", "paper", stage=2, seed=1),
                                                Run("deeplabv2", "off", stage=2, seed=1)}
    ev = runs.book_evaluations(cpu)
    assert ev[Run("segnet")] == ["test", "atr", "val@61", "val@128", "val@205"]  # 153, 321, 513 x 128 / 321, rounded
    assert ev[Run("attention", dataset="ppp")] == ["test"]
    assert "test" not in runs.book_evaluations(cpu, data="/real/LIP")[Run("segnet")]  # LIP's test labels are hidden
    assert runs.epochs(BACKBONE, cpu) == 16 and runs.epochs(Run("fcn8s"), cpu) == 6
    assert runs.epochs(Run("fcn8s", "paper", stage=2), cpu) == 3 and runs.base_lr(BACKBONE, cpu) == 2e-3
