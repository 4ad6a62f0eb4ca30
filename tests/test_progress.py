"""Progress of a book build: what a training run reports (events on a clock we control), how the
runner prints them (run i of N, epoch/step, loss, images/s, time left for the run and the book),
and the thread that follows the events file."""
from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest

from lipstudy import progress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def cfg(model="deeplabv2", init=None, loss="off"):
    return SimpleNamespace(model=model, dataset="lip", init=init, loss=loss, batch_size=4, seed=0)


def events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_duration():
    assert progress.duration(0) == "0:00"
    assert progress.duration(125.4) == "2:05"
    assert progress.duration(3 * 3600 + 61) == "3:01:01"
    assert progress.duration(None) == "?" and progress.duration(float("nan")) == "?"


def test_a_run_reports_each_epoch_and_every_interval(tmp_path, monkeypatch):
    out = tmp_path / "run-key"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"label": "DeepLabV2 + SSL"}))
    path, clock, stream = tmp_path / "events.jsonl", Clock(), io.StringIO()
    monkeypatch.setattr(progress, "EVERY_S", 15.0)
    rp = progress.RunProgress(cfg(init="stage1.pt", loss="paper"), out, 0, 40, 20, path=str(path),
                              stream=stream, clock=clock)
    assert rp.replaces_bar
    for step in range(1, 41):
        clock.t += 1.0  # one second per step
        rp.step(step, loss=float(step))
    rp.finish(40)
    ev = events(path)
    assert [e["event"] for e in ev] == ["start", "step", "step", "step", "step", "end"]
    start, *steps, end = ev
    assert start["key"] == "run-key" and start["label"] == "DeepLabV2 + SSL" and start["stage"] == 2
    assert start["epochs"] == 2 and start["total"] == 40
    # Reports at 15 s, at the end of epoch 1 (step 20), at 35 s and at the end (step 40).
    assert [e["step"] for e in steps] == [15, 20, 35, 40]
    assert [e["epoch"] for e in steps] == [1, 1, 2, 2]
    assert steps[0]["loss"] == pytest.approx(sum(range(1, 16)) / 15)      # mean since the last report
    assert steps[1]["loss"] == pytest.approx(sum(range(16, 21)) / 5)
    assert steps[1]["images_per_s"] == pytest.approx(4.0)                  # 5 steps x 4 images in 5 s
    assert steps[1]["left_s"] == pytest.approx(20.0) and steps[3]["left_s"] == 0
    assert end["seconds"] == pytest.approx(40.0)
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert line.startswith("[lipstudy] trained DeepLabV2 + SSL (lip, stage 2, loss paper) run run-key: 40 steps in 0:40")
    assert "final loss 38.0000" in line and "4.0 images/s" in line  # steps 36..40, mean 38


def test_without_a_runner_nothing_is_written_and_the_bar_stays(tmp_path):
    stream = io.StringIO()
    rp = progress.RunProgress(cfg(), tmp_path, 5, 10, 5, stream=stream, clock=Clock())
    assert not rp.replaces_bar
    rp.step(6, 1.0)
    rp.finish(6)
    assert "resumed at step 5" in stream.getvalue() and list(tmp_path.iterdir()) == []


def planned(label, model, steps, done=False):
    return progress.PlannedRun(label, "lip", 0, model, 1, steps, done)


def test_book_progress_counts_runs_and_estimates_the_time_left():
    lines = []
    bp = progress.BookProgress([planned("DeepLabV2", "deeplabv2", 10), planned("Attention", "attention", 20),
                                planned("SegNet", "segnet", 5, done=True)], log=lines.append)
    bp.chapter("baselines", 2, 11)
    bp.handle({"event": "start", "key": "a", "label": "DeepLabV2", "dataset": "lip", "seed": 0, "stage": 1, "loss_mode": "off",
               "model": "deeplabv2", "step": 0, "total": 10})
    bp.handle({"event": "step", "key": "a", "label": "DeepLabV2", "dataset": "lip", "seed": 0, "stage": 1, "loss_mode": "off",
               "model": "deeplabv2", "step": 5, "total": 10, "epoch": 1, "epochs": 2, "loss": 1.5,
               "images_per_s": 8.0, "seconds_per_step": 2.0, "left_s": 10.0})
    bp.handle({"event": "end", "key": "a", "label": "DeepLabV2", "dataset": "lip", "seed": 0, "stage": 1, "loss": 1.25,
               "model": "deeplabv2", "step": 10, "seconds": 20.0})
    assert lines[0] == "[book] chapter 2/11 baselines: executing"
    assert lines[1] == "[book] baselines: run 1/2 DeepLabV2 (lip, stage 1): training 10 steps"
    # The book's time left: this run's 10 s and run b's 20 steps at the 2 s per step seen so far.
    assert lines[2] == ("[book] baselines: run 1/2 DeepLabV2 (lip, stage 1): epoch 1/2 step 5/10 loss 1.5000 "
                        "8.0 img/s, run 0:10 left, book training ~0:50 left")
    assert lines[3] == "[book] baselines: run 1/2 DeepLabV2 (lip, stage 1): trained in 0:20, final loss 1.2500"
    bp.handle({"event": "start", "key": "k2", "label": "Attention", "dataset": "lip", "seed": 0, "stage": 1,
               "loss_mode": "off", "model": "attention", "step": 3, "total": 9})
    assert lines[4] == "[book] baselines: run 2/2 Attention (lip, stage 1): training 6 steps (resuming at step 3)"
    # A run the plan missed still counts, and raises N: the same label on another dataset or seed.
    for dataset, seed in (("ppp", 0), ("lip", 1)):
        bp.handle({"event": "start", "key": "k", "label": "Attention", "dataset": dataset, "seed": seed,
                   "stage": 1, "loss_mode": "off", "model": "attention", "step": 0, "total": 9})
    assert lines[5].startswith("[book] baselines: run 3/3 Attention (ppp, stage 1)")
    assert lines[6].startswith("[book] baselines: run 4/4 Attention (lip, stage 1)")


def test_watch_follows_the_events_file_and_leaves_nothing(tmp_path):
    import os

    environ = dict(os.environ)
    lines = []
    bp = progress.BookProgress([], log=lines.append)
    path = tmp_path / "p.jsonl"
    with bp.watch(path, every=0.01) as events_file:
        assert events_file == path  # what the training runs are given (no environment variable)
        rp = progress.RunProgress(cfg(), tmp_path, 0, 2, 1, path=events_file, stream=io.StringIO(), clock=Clock())
        rp.step(1, 0.5)
        rp.step(2, 0.25)
        rp.finish(2)
        with open(path, "a") as f:
            f.write("not json\n{\"half\": ")  # a torn or foreign line is skipped, never fatal
    assert dict(os.environ) == environ and not path.exists()
    assert [line.split(": ", 2)[-1].split(" ")[0] for line in lines] == ["training", "epoch", "epoch", "trained"]
    assert "run 1/1 deeplabv2" in lines[0]


def test_book_time_left_divides_the_runs_not_started_by_the_runs_trained_side_by_side():
    lines = []
    bp = progress.BookProgress([planned("DeepLabV2", "deeplabv2", 10), planned("Attention", "attention", 20)],
                               log=lines.append)
    bp.jobs = 2
    bp.chapter("training", 0, 11)
    bp.handle({"event": "start", "key": "a", "label": "DeepLabV2", "dataset": "lip", "seed": 0, "stage": 1,
               "loss_mode": "off", "model": "deeplabv2", "step": 0, "total": 10})
    bp.handle({"event": "step", "key": "a", "label": "DeepLabV2", "dataset": "lip", "seed": 0, "stage": 1,
               "loss_mode": "off", "model": "deeplabv2", "step": 5, "total": 10, "epoch": 1, "epochs": 2,
               "loss": 1.5, "images_per_s": 8.0, "seconds_per_step": 2.0, "left_s": 10.0})
    # 10 s left of this run, plus Attention's 20 steps x 2 s shared by two workers: 10 + 40 / 2 = 30 s.
    assert lines[-1].endswith("run 0:10 left, book training ~0:30 left")
