"""`lipstudy book --dry-run` at a reduced scale (width 1/16, 33-px crops, batches of 2, images up to
48 px): every run of the full profile's book is built and takes one step, and the printed table
holds, per run, positive finite seconds per step, peak memory and the estimate, and the whole
book's total. It stops at once without the ImageNet weights."""
from __future__ import annotations

import math

import pytest

from lipstudy import dryrun
from lipstudy.book import runner
from lipstudy.models import imagenet
from lipstudy.profiles import get_profile
from lipstudy.runs import Run, book_runs, with_ancestors

SMALL = dryrun.Scale(width=0.0625, crop=33, batch=2, max_side=48)
SMALL_ARGS = ["--dry-width", "0.0625", "--dry-crop", "33", "--dry-batch", "2", "--dry-max-side", "48"]


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """Files of torchvision's names in an otherwise empty torch cache, and no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(imagenet, "URLS", {a: (tmp_path / "offline" / n).as_uri() for a, n in
                                           {"vgg16": "vgg16-397923af.pth", "vgg16_bn": "vgg16_bn-6c64b313.pth"}.items()})
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    for arch in imagenet.URLS:
        (cache / imagenet.cached_path(arch).name).write_bytes(b"weights")
    return cache


def test_every_run_of_the_full_book_takes_a_step(weights):
    full = get_profile("full")
    lines = []
    rows = dryrun.dry_run("full", device="cpu", scale=SMALL, isolate=False, log=lines.append)
    expected = with_ancestors(book_runs(full), full)
    assert [r["run"] for r in rows] == [f"{r.label} ({r.dataset}, seed {r.seed})" for r in expected]
    for row in rows:
        for col in ("s/step", "peak GiB", "eval s/image", "train h", "eval h", "total h"):
            assert math.isfinite(row[col]) and row[col] > 0, (row["run"], col)
    # the estimate's arithmetic: 30,462 training images // batch 10 x 30 epochs at the measured step
    dl = rows[[r.label for r in expected].index("DeepLabV2")]
    assert dl["steps"] == 30462 // 10 * 30
    assert dl["train h"] == pytest.approx(dl["steps"] * dl["s/step"] / 3600)
    table = lines[-1].splitlines()
    assert table[0].startswith("[dry-run] estimate on cpu")
    assert table[1].split()[:2] == ["run", "steps"] and "peak" in table[1] and "total" in table[1]
    assert len(table) == 2 + len(rows) + 1 and table[-1].lstrip().startswith("the whole book")
    total_h = float(table[-1].split()[-1])
    assert total_h == pytest.approx(sum(r["total h"] for r in rows), abs=0.006)
    assert any(str(weights / "vgg16_bn-6c64b313.pth") in line for line in lines)


def test_evaluation_images_known_answers():
    full = get_profile("full")
    dl = Run("deeplabv2")
    assert dryrun.evaluation_images(dl, "val", full) == 10000
    assert dryrun.evaluation_images(dl, "test", full) == 10000
    assert dryrun.evaluation_images(dl, "atr", full) == 1000
    assert dryrun.evaluation_images(dl, "val@513", full) == pytest.approx(10000 * (513 / 321) ** 2)
    assert dryrun.evaluation_images(Run("attention", dataset="ppp"), "test", full) == 1817


def test_the_command_measures_each_run_in_its_own_process(weights, monkeypatch, capsys):
    monkeypatch.setattr(dryrun, "book_runs", lambda profile, seeds=None: [Run("deeplabv2")])
    assert runner.main(["--profile", "full", "--dry-run", "--device", "cpu", *SMALL_ARGS]) == 0
    out = capsys.readouterr().out
    assert "memory: peak resident set per run" in out
    line = next(l for l in out.splitlines() if l.lstrip().startswith("DeepLabV2 (lip, seed 0)") and "GiB" not in l)
    values = [float(v) for v in line.split(")")[-1].split()]
    assert len(values) == 9 and all(math.isfinite(v) and v > 0 for v in values)


def test_without_the_weights_it_stops_before_any_work(weights, monkeypatch, capsys):
    for f in weights.iterdir():
        f.unlink()

    def no_data(*a, **k):
        raise AssertionError("no data before the weights are checked")

    monkeypatch.setattr(dryrun, "_tiny_data", no_data)
    assert runner.main(["--profile", "full", "--dry-run", *SMALL_ARGS]) == 2
    err = capsys.readouterr().err
    assert "vgg16-397923af.pth" in err and "TORCH_HOME" in err and str(weights) in err


def test_dry_run_options(tmp_path):
    with pytest.raises(SystemExit):
        runner.main(["--profile", "full", "--dry-crop", "33", "--book-dir", str(tmp_path)])  # needs --dry-run
    with pytest.raises(SystemExit):
        runner.main(["--profile", "full", "--dry-run", "--dry-batch", "0"])
