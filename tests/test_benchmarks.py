"""The benchmark scripts run their CUDA precision path on a CPU at tiny sizes and write complete
result files (no timing is asserted: timings belong in the scripts' output, not in tests)."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _common  # noqa: E402
import eval_throughput  # noqa: E402
import ssl_overhead  # noqa: E402
import torch  # noqa: E402
import train_profile  # noqa: E402
import train_throughput  # noqa: E402


def conv_training_flops(name: str, width: float, batch: int, size: int) -> int:
    """FLOPs of a training step derived from the layer shapes: a convolution's forward pass costs
    2 x (output elements) x (input channels / groups x kernel area) (a transposed one 2 x input
    elements x output channels / groups x kernel area); backward costs the same again for the
    weight gradient and again for the input gradient, except at the first layer, whose input
    (the image) needs none. Matmuls and convolutions are all FlopCounterMode counts."""
    from torch import nn

    from lipstudy.models import build_model

    model = build_model(name, width=width).train()
    forward = []

    def hook(m, inputs, output):
        k = m.kernel_size[0] * m.kernel_size[1] // m.groups
        n = inputs[0].numel() * m.out_channels if isinstance(m, nn.ConvTranspose2d) else output.numel() * m.in_channels
        forward.append(2 * n * k)

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    model(torch.randn(batch, 3, size, size))
    for h in hooks:
        h.remove()
    return 3 * sum(forward) - forward[0]


def test_train_throughput_counts_flops_and_mfu(tmp_path):
    out = tmp_path / "train.json"
    train_throughput.main(["--device", "cpu", "--width", "0.0625", "--size", "33", "--batch", "2", "--steps", "1",
                           "--amp", "bf16", "--channels-last", "--models", "segnet", "deeplabv2", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["precision"] == "bf16 autocast, channels_last" and r["matmul_dtype"] == "bf16"
    assert [m["model"] for m in r["models"]] == ["segnet", "deeplabv2"]
    assert r["timing"] == "torch.utils.benchmark.Timer, one block of 1 calls, after 1 warm-up call(s)"
    # DeepLabV2 resizes its 5 x 5 score maps (20 classes) to 33 x 33 by two matrix products (models.vgg.resize):
    # columns 2*B*C*5*5*33, then rows 2*B*C*33*5*33, and as much again backward (the input's gradient only).
    resize = 2 * (2 * 2 * 20 * 5 * 5 * 33 + 2 * 2 * 20 * 33 * 5 * 33)
    assert resize == 1_003_200
    for m in r["models"]:
        # SegNet at 33 x 33 (padded to 64): 244,187,136 in its convolutions; DeepLabV2: 62,778,816 + the resize.
        extra = resize if m["model"] == "deeplabv2" else 0
        assert m["train_flops_per_step"] == conv_training_flops(m["model"], 0.0625, 2, 33) + extra
        assert m["train_images_per_s"] == pytest.approx(2 / m["train_step_s"])
        assert m["train_flop_per_s"] == pytest.approx(m["train_flops_per_step"] / m["train_step_s"])
        assert m["mfu"] == pytest.approx(m["train_flop_per_s"] / r["matmul_flop_per_s"])
    assert [m["train_flops_per_step"] for m in r["models"]] == [244_187_136, 62_778_816 + 1_003_200]
    # Doubling the batch doubles the FLOPs of a step (every layer is per image).
    out2 = tmp_path / "train2.json"
    train_throughput.main(["--device", "cpu", "--width", "0.0625", "--size", "33", "--batch", "4", "--min-time", "0.05",
                           "--models", "segnet", "--out", str(out2)])
    r2 = json.loads(out2.read_text())
    assert r2["precision"] == "fp32, NCHW"
    assert r2["timing"].startswith("torch.utils.benchmark.Timer, blocked_autorange, median block, >= 0.05 s")
    assert r2["models"][0]["train_flops_per_step"] == 2 * r["models"][0]["train_flops_per_step"]


def test_eval_throughput_and_ssl_overhead_write_results(tmp_path):
    out = tmp_path / "eval.json"
    eval_throughput.main(["--device", "cpu", "--width", "0.0625", "--size", "33", "--batch", "2", "--min-time", "0.05",
                          "--amp", "bf16", "--channels-last", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["size"] == 33 and r["precision"] == "bf16 autocast, channels_last"
    assert set(r["inference_images_per_s"]) == {"single", "flip", "multi-scale 0.75/1/1.25",
                                                "batched forward (batch 2)"}
    out = tmp_path / "ssl.json"
    assert ssl_overhead.main(["--device", "cpu", "--width", "0.0625", "--size", "33", "--batch", "2",
                              "--steps", "2", "--warmup", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["loss_only_s_median"]) == {"off", "paper", "released", "plus_one", "unit", "shuffled"}
    step, loss = r["step_s_median"], r["loss_only_s_median"]
    assert r["step_overhead"] == pytest.approx((step["paper"] - step["off"]) / step["off"])
    assert r["joint_term_fraction_of_step"] == pytest.approx((loss["paper"] - loss["off"]) / step["off"])
    assert r["timed_steps"] == 2 and r["timing"].startswith("torch.utils.benchmark.Timer, one block of 1 calls")


def test_benchmark_table_reads_what_the_scripts_write(tmp_path):
    from lipstudy import measurements

    eval_throughput.main(["--device", "cpu", "--width", "0.0625", "--size", "33", "--batch", "2", "--min-time", "0.05",
                          "--out", str(tmp_path / "eval_throughput.json")])
    written = json.loads((tmp_path / "eval_throughput.json").read_text())
    (tmp_path / "ssl_overhead.json").write_text(json.dumps({
        "device": "GPU X", "torch": "2.13.0", "width": 1.0, "input_size": 321, "batch": 10,
        "joint_term_fraction_of_step": 0.0123, "paired_step_overhead": -0.004}))
    table = measurements.benchmark_table(tmp_path)
    ssl = table[table["benchmark"] == "ssl_overhead"].set_index("figure")
    assert ssl.loc["joint term, share of a training step", "value"] == "1.23%"
    assert ssl.loc["paired step overhead (median)", "value"] == "-0.40%"
    assert set(ssl["device"]) == {"GPU X"}
    ev = table[table["benchmark"] == "eval_throughput"].set_index("figure")
    single = ev.loc["inference images/s, single"]
    # The paper's 0.5 s per test image is 2 images/s.
    assert single["value"] == round(written["inference_images_per_s"]["single"], 1)
    assert single["paper / goal"].startswith("2 (paper")
    assert len(ev) == 5  # confusion matrices + single, flip, multi-scale, batched
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not a readable benchmark result"):
        measurements.benchmark_table(tmp_path)
    assert measurements.benchmark_table(tmp_path / "nowhere").empty


def test_seconds_per_call_counts_calls_and_keeps_the_thread_count():
    calls, threads = [], []

    def fn():
        calls.append(1)
        threads.append(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _common.seconds_per_call(fn, number=5, warmup=3)
        assert len(calls) == 3 + 2 + 5  # our warm-up calls, Timer.timeit's own two, one block of 5
        # Timer runs on one thread unless told otherwise: the figures must use the process's threads.
        assert set(threads) == {2}
        calls.clear()
        _common.seconds_per_call(fn, min_run_time=0.01, warmup=0)
        assert len(calls) >= 2  # block-size estimate, then at least one timed block
    finally:
        torch.set_num_threads(before)


def test_benchmark_table_train_throughput_rows(tmp_path):
    from lipstudy import measurements

    (tmp_path / "train_throughput.json").write_text(json.dumps({
        "device": "GPU X", "torch": "2.13.0", "width": 1.0, "input_size": 321, "batch": 10,
        "precision": "bf16 autocast, channels_last", "matmul_dtype": "bf16", "matmul_flop_per_s": 6.5e14,
        "models": [{"model": "deeplabv2", "train_images_per_s": 123.456, "mfu": 0.4123},
                   {"model": "attention", "train_images_per_s": 50.04, "mfu": 0.25}]}))
    table = measurements.benchmark_table(tmp_path)
    assert list(table["benchmark"]) == ["train_throughput"] * 4
    assert set(table["settings"]) == {"width 1.0, 321x321, batch 10, bf16 autocast, channels_last"}
    assert set(table["device"]) == {"GPU X"} and set(table["torch"]) == {"2.13.0"}
    rows = table.set_index("figure")
    assert rows.loc["deeplabv2 training images/s", "value"] == 123.5
    assert rows.loc["attention training images/s", "value"] == 50.0
    assert rows.loc["deeplabv2 MFU (vs bf16 matmul 650.00 TFLOP/s)", "value"] == "41.2%"
    assert rows.loc["attention MFU (vs bf16 matmul 650.00 TFLOP/s)", "paper / goal"] == ">= 50% on a GPU"
    assert rows.loc["attention training images/s", "paper / goal"] == ""


def test_benchmark_table_reads_a_machines_folder_too(tmp_path):
    """The GPU's figures (benchmarks/gpu_book.sh's, committed under results/benchmarks/gpu/) sit
    beside the CPU's; files of other names there (env.json, runs.json) are not benchmark results."""
    from lipstudy import measurements

    (tmp_path / "gpu").mkdir()
    for folder, device in ((tmp_path, "CPU"), (tmp_path / "gpu", "NVIDIA H200")):
        (folder / "ssl_overhead.json").write_text(json.dumps({
            "device": device, "torch": "2.13.0", "width": 1.0, "input_size": 321, "batch": 10,
            "joint_term_fraction_of_step": 0.01, "paired_step_overhead": 0.0}))
    (tmp_path / "gpu" / "env.json").write_text(json.dumps({"device": "NVIDIA H200"}))
    table = measurements.benchmark_table(tmp_path)
    assert sorted(set(table["device"])) == ["CPU", "NVIDIA H200"] and set(table["benchmark"]) == {"ssl_overhead"}


def test_profile_step_benchmarks_time_the_trainers_own_step(tmp_path, monkeypatch):
    """``train_throughput.py --profile`` and ``train_profile.py`` time a profile's own training step
    (the smoke profile here: its data is generated in seconds); the profile's shares add up, and
    the reproducibility chapter's tables read both files."""
    from lipstudy import measurements

    monkeypatch.setenv("LIPSTUDY_DATA", str(tmp_path / "data"))
    out = tmp_path / "train_throughput_smoke.json"
    train_throughput.main(["--profile", "smoke", "--models", "deeplabv2", "--steps", "1", "--repeats", "1",
                           "--out", str(out)])
    r = json.loads(out.read_text())
    assert (r["profile"], r["threads"], r["precision"], r["batch"], r["input_size"]) == ("smoke", 1, "fp32, NCHW", 8, 64)
    m = r["models"][0]
    # + the resize of its 9 x 9 score maps (20 classes) to 64 x 64 by two matrix products, forward and backward
    resize = 2 * (2 * 8 * 20 * 9 * 9 * 64 + 2 * 8 * 20 * 64 * 9 * 64)
    assert m["model"] == "deeplabv2" and m["train_flops_per_step"] == conv_training_flops("deeplabv2", 0.0625, 8, 64) + resize
    assert m["train_images_per_s"] == pytest.approx(8 / m["train_step_s"])
    assert m["mfu"] == pytest.approx(m["train_flop_per_s"] / m["matmul_flop_per_s"])
    table = measurements.benchmark_table(tmp_path)
    assert set(table["settings"]) == {"smoke profile's step, width 0.0625, 64x64, batch 8, fp32, NCHW, 1 thread(s)"}

    prof = tmp_path / "train_profile.json"
    train_profile.main(["--parts", "profile", "--profile", "smoke", "--models", "deeplabv2", "--threads", "1",
                        "--steps", "1", "--out", str(prof)])
    doc = json.loads(prof.read_text())
    rows = doc["profile"]["rows"]
    assert [(x["model"], x["loss"], x["threads"]) for x in rows] == [("deeplabv2", "off", 1), ("deeplabv2", "paper", 1)]
    for x in rows:
        assert set(x["shares"]) == set(train_profile.CATEGORIES)
        assert sum(x["shares"].values()) == pytest.approx(1.0)
        assert min(x["shares"][c] for c in ("convolution", "loss", "optimizer", "data loading")) > 0
        assert x["train_flops_per_step"] == m["train_flops_per_step"]
    doc["levers"] = {"rows": [{"lever": "no dropout", "ratio": 1.14, "bit_identical": False, "adopted": False}]}
    prof.write_text(json.dumps(doc))
    (tmp_path / "book_step.json").write_text(json.dumps({  # benchmarks/book_step.py's result
        "commit": "1e251f8", "epochs": 2, "ratio_train_call": 200 / 160,
        "median": {"A": {"images_per_s_by_epoch": [40.0, 44.0], "wall_s": 200.0},
                   "B": {"images_per_s_by_epoch": [50.0, 44.0], "wall_s": 160.0}}}))
    t = measurements.train_profile_tables(prof)
    assert list(t) == ["shares", "levers", "book"]
    assert t["shares"].loc[("deeplabv2", 1), "convolution"] == round(100 * rows[0]["shares"]["convolution"], 1)
    assert t["levers"].loc["no dropout"].tolist() == [1.14, "no", "no"]
    assert t["book"]["speed-up"].tolist() == [1.25, 1.0, 1.25]
    assert t["book"]["1e251f8"].tolist() == [40.0, 44.0, 200.0]
    assert measurements.train_profile_tables(tmp_path / "missing.json") == {}
