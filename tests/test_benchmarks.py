"""The benchmark scripts run their CUDA precision path on a CPU at tiny sizes and write complete
result files (no timing is asserted: timings belong in the scripts' output, not in tests)."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import eval_throughput  # noqa: E402
import ssl_overhead  # noqa: E402
import train_throughput  # noqa: E402


def test_train_throughput_counts_flops_and_mfu(tmp_path):
    out = tmp_path / "train.json"
    train_throughput.main(["--device", "cpu", "--width", "0.0625", "--size", "33", "--batch", "2", "--steps", "1",
                           "--amp", "bf16", "--channels-last", "--models", "segnet", "deeplabv2", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["precision"] == "bf16 autocast, channels_last" and r["matmul_dtype"] == "bf16"
    assert [m["model"] for m in r["models"]] == ["segnet", "deeplabv2"]
    for m in r["models"]:
        assert m["train_flops_per_step"] > 0 and m["train_images_per_s"] > 0
        assert m["mfu"] == pytest.approx(m["train_flop_per_s"] / r["matmul_flop_per_s"])
    # Doubling the batch doubles the FLOPs of a step (every layer is per image).
    out2 = tmp_path / "train2.json"
    train_throughput.main(["--device", "cpu", "--width", "0.0625", "--size", "33", "--batch", "4", "--steps", "1",
                           "--models", "segnet", "--out", str(out2)])
    r2 = json.loads(out2.read_text())
    assert r2["precision"] == "fp32, NCHW"
    assert r2["models"][0]["train_flops_per_step"] == 2 * r["models"][0]["train_flops_per_step"]


def test_eval_throughput_and_ssl_overhead_write_results(tmp_path):
    out = tmp_path / "eval.json"
    eval_throughput.main(["--device", "cpu", "--width", "0.0625", "--size", "33", "--batch", "2",
                          "--amp", "bf16", "--channels-last", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["size"] == 33 and r["precision"] == "bf16 autocast, channels_last"
    assert set(r["inference_images_per_s"]) == {"single", "flip", "multi-scale 0.75/1/1.25",
                                                "batched forward (batch 2)"}
    out = tmp_path / "ssl.json"
    assert ssl_overhead.main(["--device", "cpu", "--width", "0.0625", "--size", "33", "--batch", "2",
                              "--steps", "2", "--warmup", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["loss_only_s_median"]) == {"off", "paper", "released", "plus_one"}
    assert r["step_s_median"]["off"] > 0


def test_benchmark_table_reads_what_the_scripts_write(tmp_path):
    from lipstudy import report

    eval_throughput.main(["--device", "cpu", "--width", "0.0625", "--size", "33", "--batch", "2",
                          "--out", str(tmp_path / "eval_throughput.json")])
    written = json.loads((tmp_path / "eval_throughput.json").read_text())
    (tmp_path / "ssl_overhead.json").write_text(json.dumps({
        "device": "GPU X", "torch": "2.13.0", "width": 1.0, "input_size": 321, "batch": 10,
        "joint_term_fraction_of_step": 0.0123, "paired_step_overhead": -0.004}))
    table = report.benchmark_table(tmp_path)
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
        report.benchmark_table(tmp_path)
    assert report.benchmark_table(tmp_path / "nowhere").empty
