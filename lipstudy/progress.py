"""Progress of a book build that a person can follow: which chapter, which training run (i of N:
model, dataset, stage), epoch and step with loss and images/s, and the time left for the run and
for the book's training.

The book's runs train in worker processes before the chapters execute. They report through one
file: the book runner names a JSON-lines file (:meth:`BookProgress.watch`), which reaches each run
as an argument (``lipstudy.process_pool.ensure_all(events=...)`` down to
``lipstudy.train.train(events=...)``); the trainer appends events to it (:class:`RunProgress`),
and the runner's :class:`BookProgress` reads the file from a thread and prints one line per report
on the terminal. A chapter names each run it uses in one line on its stderr (:func:`report_reused`,
or the trainer's summary line for a run it trains itself; kept in the executed notebook, the pages
drop stderr). Without a progress file (``lipstudy train``, papermill by hand) the trainer keeps its
tqdm bar.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

EVERY_S = 15.0
"""A training run reports at most this often, and at the end of every epoch."""


def duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(max(seconds, 0.0))), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe(label: str, dataset: str, stage: int, loss: str) -> str:
    """``DeepLabV2 + SSL (lip, stage 2, loss paper)``."""
    return f"{label} ({dataset}, stage {stage}" + (f", loss {loss})" if loss != "off" else ")")


def _append(path: str, event: dict) -> None:
    # One short line per write in append mode: concurrent writers never interleave inside a line.
    with open(path, "a") as f:
        f.write(json.dumps(event) + "\n")


# ---------------------------------------------------------------------------------------------
# the training side


class RunProgress:
    """The reports of one training run (rank 0): ``start``, a ``step`` event at most every
    :data:`EVERY_S` seconds and at the end of each epoch (loss averaged since the last report,
    images/s, time left), ``end``; and one summary line on ``stream`` when the run finishes.

    ``cfg`` is the run's ``TrainConfig``; ``out`` its folder (named by the run key; the label is
    read from the ``config.json`` the run store writes there). ``path``: the progress file a book
    runner follows; without one, events are not written (:attr:`replaces_bar` is False).
    """

    def __init__(self, cfg, out, step: int, total: int, steps_per_epoch: int, *, path: str | None = None,
                 stream=None, clock=time.monotonic):
        out = Path(out)
        self.path = None if path is None else str(path)
        self.stream, self.clock = stream, clock
        label = cfg.model
        with contextlib.suppress(OSError, ValueError):
            label = json.loads((out / "config.json").read_text()).get("label") or label
        self.info = {"key": out.name, "label": label, "model": cfg.model, "dataset": cfg.dataset,
                     "seed": cfg.seed, "stage": 2 if cfg.init else 1, "loss_mode": cfg.loss}
        self.total, self.steps_per_epoch, self.batch = total, max(steps_per_epoch, 1), cfg.batch_size
        self.first = self.last_step = step
        self.t0 = self.last_t = clock()
        self.loss_sum, self.loss_n, self.last_loss = 0.0, 0, float("nan")
        self._emit({"event": "start", "step": step, "total": total,
                    "epochs": math.ceil(total / self.steps_per_epoch)})

    @property
    def replaces_bar(self) -> bool:
        """Whether a runner is reading the events (the tqdm bar would only clutter the notebook)."""
        return self.path is not None

    def _emit(self, event: dict) -> None:
        if self.path is not None:
            _append(self.path, {**self.info, **event})

    def step(self, step: int, loss: float) -> None:
        """After optimiser step ``step`` (1-based) with training loss ``loss``."""
        self.loss_sum += loss
        self.loss_n += 1
        now = self.clock()
        if now - self.last_t < EVERY_S and step % self.steps_per_epoch and step < self.total:
            return
        self.last_loss = self.loss_sum / self.loss_n
        rate = (step - self.last_step) * self.batch / max(now - self.last_t, 1e-9)
        per_step = (now - self.t0) / max(step - self.first, 1)
        self._emit({"event": "step", "step": step, "total": self.total,
                    "epoch": math.ceil(step / self.steps_per_epoch),
                    "epochs": math.ceil(self.total / self.steps_per_epoch), "loss": self.last_loss,
                    "images_per_s": rate, "seconds_per_step": per_step,
                    "left_s": (self.total - step) * per_step})
        self.last_step, self.last_t, self.loss_sum, self.loss_n = step, now, 0.0, 0

    def finish(self, step: int) -> None:
        """The run stopped at ``step``: the ``end`` event and the summary line."""
        seconds = self.clock() - self.t0
        done = step - self.first
        if self.loss_n:
            self.last_loss = self.loss_sum / self.loss_n
        self._emit({"event": "end", "step": step, "seconds": seconds, "loss": self.last_loss})
        stream = self.stream if self.stream is not None else sys.stderr
        i = self.info
        resumed = f", resumed at step {self.first}" if self.first else ""
        print(f"[lipstudy] trained {describe(i['label'], i['dataset'], i['stage'], i['loss_mode'])} run {i['key']}: "
              f"{done} steps in {duration(seconds)}{resumed}, final loss {self.last_loss:.4f}, "
              f"{done * self.batch / max(seconds, 1e-9):.1f} images/s", file=stream, flush=True)


_reported: set[str] = set()


def report_reused(run_dir, stream=None) -> None:
    """One line on stderr for a finished run a chapter reuses (once per run and process): the
    runner trains the book's runs before the chapters, so this is how each executed notebook still
    names every run it used, with how it was trained."""
    run_dir = Path(run_dir)
    if run_dir.name in _reported:
        return
    _reported.add(run_dir.name)
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
        log = json.loads((run_dir / "train_log.json").read_text())
    except (OSError, ValueError):
        return
    train, run = cfg.get("train", {}), cfg.get("run", {})
    seconds = sum(row["seconds"] for row in log)
    steps = log[-1]["step"] if log else 0
    loss = log[-1]["loss"] if log else float("nan")
    print(f"[lipstudy] reused {describe(cfg.get('label', '?'), train.get('dataset', '?'), run.get('stage', 1), run.get('loss', 'off'))} "
          f"run {run_dir.name}: trained earlier, {steps} steps in {duration(seconds)}, final loss {loss:.4f}",
          file=stream if stream is not None else sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# the book's runs


@dataclass(frozen=True)
class PlannedRun:
    label: str
    dataset: str    # the reader kind a run's events name (the pretraining split is LIP-style)
    seed: int
    model: str
    stage: int
    steps: int
    done: bool

    @property
    def ident(self) -> tuple:
        """What identifies the run in its events: (label, dataset, seed)."""
        return (self.label, self.dataset, self.seed)


# ---------------------------------------------------------------------------------------------
# the terminal side


class BookProgress:
    """Prints the book's progress: a line per chapter (:meth:`chapter`) and, while a chapter
    runs (:meth:`watch`), a line per event its training runs report.

    ``runs`` is :func:`lipstudy.process_pool.progress_plan`'s list: it gives N in "run i of N" (the runs still to train when the
    build started; a run it missed raises N) and the steps behind the book's time left, at the
    seconds per step measured for each model so far (the mean over models for one not seen yet).
    """

    def __init__(self, runs: list[PlannedRun] = (), log=print):
        self.log = log
        self.plan(runs)
        self.started: list[tuple] = []
        self.rate: dict[str, float] = {}     # model -> seconds per step
        self.current = ""
        self.jobs = 1  # runs trained side by side (lipstudy.process_pool): the rest takes 1/jobs as long
        self.lock = threading.Lock()

    def plan(self, runs: list[PlannedRun]) -> None:
        """The book's training runs, of which those not done are left to train (N in "run i of N")."""
        self.pending = {r.ident: r for r in runs if not r.done}
        self.total = len(self.pending)

    def chapter(self, name: str, i: int, n: int) -> None:
        self.current = name
        self.log(f"[book] chapter {i}/{n} {name}: executing")

    def _book_left(self, left: float) -> float | None:
        if not self.rate:
            return None
        mean = sum(self.rate.values()) / len(self.rate)
        rest = sum(r.steps * self.rate.get(r.model, mean) for k, r in self.pending.items()
                   if k not in self.started)
        return left + rest / max(1, self.jobs)

    def handle(self, e: dict) -> None:
        """Print one event of a training run."""
        with self.lock:
            key = (e.get("label"), e.get("dataset"), e.get("seed"))
            if e.get("event") == "start" and key not in self.started:
                self.started.append(key)
            i = self.started.index(key) + 1 if key in self.started else len(self.started)
            n = max(self.total, i)
            what = (f"[book] {self.current}: run {i}/{n} "
                    f"{describe(e.get('label', '?'), e.get('dataset', '?'), e.get('stage', 1), e.get('loss_mode', 'off'))}")
            if e.get("event") == "start":
                self.log(f"{what}: training {e['total'] - e['step']} steps"
                         + (f" (resuming at step {e['step']})" if e["step"] else ""))
            elif e.get("event") == "step":
                self.rate[e["model"]] = e["seconds_per_step"]
                self.log(f"{what}: epoch {e['epoch']}/{e['epochs']} step {e['step']}/{e['total']} "
                         f"loss {e['loss']:.4f} {e['images_per_s']:.1f} img/s, run {duration(e['left_s'])} left, "
                         f"book training ~{duration(self._book_left(e['left_s']))} left")
            elif e.get("event") == "end":
                self.pending.pop(key, None)
                self.log(f"{what}: trained in {duration(e['seconds'])}, final loss {e['loss']:.4f}")

    @contextlib.contextmanager
    def watch(self, path: Path, every: float = 0.5):
        """Print the events appended to the progress file ``path`` until the block ends; yields
        ``path``, for the training runs started inside the block to report to."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        stop = threading.Event()
        thread = threading.Thread(target=self._follow, args=(path, stop, every), daemon=True)
        thread.start()
        try:
            yield path
        finally:
            stop.set()
            thread.join()
            path.unlink(missing_ok=True)

    def _follow(self, path: Path, stop: threading.Event, every: float) -> None:
        offset, partial = 0, ""
        while True:
            finished = stop.is_set()  # read once more after the stop, so no event is lost
            with open(path) as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
            *lines, partial = (partial + chunk).split("\n")
            for line in lines:
                with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError, ValueError):
                    self.handle(json.loads(line))
            if finished:
                return
            stop.wait(every)
