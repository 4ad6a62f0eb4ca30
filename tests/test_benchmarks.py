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
